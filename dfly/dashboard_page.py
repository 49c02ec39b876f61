"""The dashboards' pages: one self-contained HTML page per program, as Python strings.

Strings rather than .html files beside the code: the zipapp then carries them
in its bytecode like any module, with nothing to find at run time. Each page has
its CSS and script inline and loads nothing else (air-gapped hosts; the
Content-Security-Policy sent with it forbids any other origin), then polls its
program's JSON feed and redraws in place. Every value from the feed is put in
with textContent, never as HTML: a URL or a peer id cannot inject markup.
"""

# Sent with each page: nothing but this page's own inline code and its feed.
HEADERS = {"Content-Type": "text/html; charset=utf-8", "Cache-Control": "no-store",
           "X-Content-Type-Options": "nosniff",
           "Content-Security-Policy": "default-src 'none'; script-src 'unsafe-inline'; "
                                      "style-src 'unsafe-inline'; connect-src 'self'; img-src data:"}

_STYLE = """
body{font:13px/1.4 system-ui,sans-serif;margin:12px;color:#222;background:#fafafa}
h1{font-size:18px;margin:0 0 4px} h2{font-size:15px;margin:16px 0 4px}
table{border-collapse:collapse;background:#fff} td,th{padding:2px 8px;border-bottom:1px solid #eee;
text-align:left;white-space:nowrap} th{background:#f0f0f0} tr.sel{background:#eef4ff}
.num{text-align:right;font-variant-numeric:tabular-nums} .muted{color:#888}
.bar{display:inline-block;width:120px;height:10px;background:#e4e4e4;vertical-align:middle}
.bar>span{display:block;height:100%;background:#3a7bd5}
.split{display:flex;width:480px;height:14px;background:#e4e4e4}
.src{background:#d9822b}.sn{background:#7b5ea7}.p2p{background:#2e9e5b}
.key .sw{display:inline-block;width:10px;height:10px;margin:0 3px 0 10px}
canvas{vertical-align:middle;image-rendering:pixelated}
#status{margin-left:8px} .bad{color:#b00} .ok{color:#080} button{margin-right:6px}
.ev td{white-space:normal}
"""

_COMMON_JS = """
function el(tag, attrs, kids){const e=document.createElement(tag);
 for(const k in (attrs||{})){if(k==='text')e.textContent=attrs[k];else e.setAttribute(k,attrs[k]);}
 for(const c of (kids||[]))e.appendChild(c);return e;}
function td(text,cls){return el('td',cls?{text:String(text),class:cls}:{text:String(text)});}
function bytes(n){if(n===null||n===undefined)return '?';const u=['B','KiB','MiB','GiB','TiB'];
 let i=0;while(n>=1024&&i<u.length-1){n/=1024;i++;}return (i?n.toFixed(1):n)+' '+u[i];}
function pct(x){return (100*x).toFixed(0)+'%';}
function bar(frac){const b=el('span',{class:'bar'});const f=el('span');
 f.style.width=Math.max(0,Math.min(1,frac))*100+'%';b.appendChild(f);return b;}
function fill(id,rows){const t=document.getElementById(id);t.replaceChildren(...rows);}
function clock(t){return new Date(t*1000).toISOString().substr(11,8);}
function status(ok,text){const s=document.getElementById('status');s.textContent=text;
 s.className=ok?'ok':'bad';}
"""

SUPERNODE_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>dfly supernode</title>
<style>""" + _STYLE + """</style></head><body>
<h1>dfly supernode <span id="me"></span><span id="status" class="muted">loading</span></h1>
<div class="muted">Read-only; refreshes every second. Peers of the chosen task are shown a page
at a time, slowest first; piece maps fold the pieces into at most 256 cells.</div>
<h2>Tasks</h2>
<table><thead><tr><th>task</th><th>URL</th><th>state</th><th>size</th><th>cached</th>
<th>peers done</th><th>from source</th><th>served by supernode</th><th>between peers</th></tr></thead>
<tbody id="tasks"></tbody></table>
<div id="detail">
<h2>Task <span id="task-id"></span></h2>
<div class="split" id="split"></div>
<div class="key"><span class="sw src"></span>source (into the supernode)<span class="sw sn"></span>served
by the supernode<span class="sw p2p"></span>peer to peer <span id="totals" class="muted"></span></div>
<table><tbody id="maps"></tbody></table>
<h2>Peers <span id="peer-range" class="muted"></span></h2>
<div><button id="prev">&lt; slower</button><button id="next">faster &gt;</button></div>
<table><thead><tr><th>peer</th><th>address</th><th>progress</th><th></th><th>rate</th>
<th>from supernode</th><th>from peers</th><th>in flight</th><th>pieces
(<span style="color:#3a7bd5">held</span> <span style="color:#e0a000">in flight</span>)</th></tr></thead>
<tbody id="peers"></tbody></table>
</div>
<h2>Cluster</h2><table><thead><tr><th>member</th><th>health</th><th>last heard</th>
<th>active tasks</th><th>tasks owned</th></tr></thead><tbody id="cluster"></tbody></table>
<h2>Events</h2><table class="ev"><thead><tr><th>time</th><th>event</th><th>task</th><th>what</th>
</tr></thead><tbody id="events"></tbody></table>
<script>""" + _COMMON_JS + """
let chosen=new URLSearchParams(location.search).get('task')||'', offset=0, limit=50, last=null;
const COLOURS={'#':'#3a7bd5','~':'#e0a000','+':'#9bbbe8','.':'#e4e4e4'};
function cellWidth(n){return Math.max(2,Math.min(16,Math.floor(512/Math.max(1,n))));}
function pieceMap(map){const w=cellWidth(map.length);
 const c=el('canvas',{width:Math.max(1,map.length*w),height:10,'data-map':map});
 const g=c.getContext('2d');for(let i=0;i<map.length;i++){g.fillStyle=COLOURS[map[i]]||'#000';
 g.fillRect(i*w,0,w-(w>4?1:0),10);}return c;}
function rarestMap(counts){const w=cellWidth(counts.length);
 const c=el('canvas',{width:Math.max(1,counts.length*w),height:10});
 const g=c.getContext('2d');const top=Math.max(1,...counts);for(let i=0;i<counts.length;i++){
 const v=counts[i]/top;g.fillStyle=counts[i]?'rgba(46,158,91,'+(0.2+0.8*v)+')':'#e4e4e4';
 g.fillRect(i*w,0,w-(w>4?1:0),10);}return c;}
function drawTasks(d){fill('tasks',d.tasks.map(t=>{const tr=el('tr',{'data-task':t.task_id},[
 td(t.task_id.substr(0,12)),td(t.url===null?'(shown on its host only)':t.url),
 td(t.state+(t.error?': '+t.error:'')),td(bytes(t.length),'num'),
 td(t.piece_count?t.pieces_cached+'/'+t.piece_count:'-','num'),td(t.peers_done+'/'+t.peers,'num'),
 td(bytes(t.bytes_from_source),'num'),td(bytes(t.bytes_from_supernode),'num'),
 td(bytes(t.bytes_from_peers),'num')]);
 if(d.task&&t.task_id===d.task.task_id)tr.className='sel';
 tr.onclick=()=>{chosen=t.task_id;offset=0;poll();};tr.style.cursor='pointer';return tr;}));}
function drawTask(d){const t=d.task;document.getElementById('detail').style.display=t?'':'none';
 if(!t)return;const row=d.tasks.find(x=>x.task_id===t.task_id)||{};
 document.getElementById('task-id').textContent=t.task_id.substr(0,12)+' ('+t.piece_count+
  ' pieces of '+bytes(t.piece_size)+')';
 const src=row.bytes_from_source||0,sn=t.totals.bytes_from_supernode,pp=t.totals.bytes_from_peers;
 const all=Math.max(1,src+sn+pp);
 fill('split',[['src',src],['sn',sn],['p2p',pp]].map(([c,v])=>{const s=el('span',{class:c,
  title:bytes(v)});s.style.width=(100*v/all)+'%';return s;}));
 document.getElementById('totals').textContent=' '+t.totals.peers_done+' of '+t.totals.peers+
  ' peers done, '+t.totals.pieces_in_flight+' pieces in flight';
 const name=t.supernode.name.endsWith(':0')?location.host:t.supernode.name;
 fill('maps',[el('tr',{},[td('supernode '+name),el('td',{},[pieceMap(t.supernode.map)])]),
  el('tr',{},[td('in flight (any peer)'),el('td',{},[pieceMap(t.in_flight_map)])]),
  el('tr',{},[td('copies (rarest piece per cell)'),el('td',{},[rarestMap(t.rarest)])])]);
 document.getElementById('peer-range').textContent=t.totals.peers?(t.offset+1)+'-'+
  (t.offset+t.peers.length)+' of '+t.totals.peers:'none';
 fill('peers',t.peers.map(p=>el('tr',{'data-peer':p.peer_id},[td(p.peer_id),td(p.addr===null?'':p.addr),
  el('td',{},[bar(p.progress)]),el('td',{class:'num progress',text:pct(p.progress)}),
  td(bytes(p.rate_bytes_per_s)+'/s','num'),td(bytes(p.bytes_from_supernode),'num'),
  td(bytes(p.bytes_from_peers),'num'),td(p.in_flight,'num'),el('td',{},[pieceMap(p.map)])])));}
function drawCluster(d){const c=d.cluster;const owned={};for(const t of c.tasks)owned[t.owner]=
 (owned[t.owner]||0)+1;if(!c.members.length)owned[c.me]=d.tasks.length;
 const members=c.members.length?c.members:[{member:c.me,self:true,alive:true,
 last_seen_s_ago:0,active_tasks:d.tasks.length}];
 fill('cluster',members.map(m=>el('tr',{},[td(m.member+(m.self?' (this one)':'')),
  el('td',{class:m.alive?'ok':'bad',text:m.alive?'up':'down'}),td(m.last_seen_s_ago+' s ago','num'),
  td(m.active_tasks,'num'),td(owned[m.member]||0,'num')])));}
function drawEvents(d){fill('events',d.events.slice().reverse().map(e=>el('tr',{},[td(clock(e.at)),
 td(e.kind),td(e.task_id.substr(0,12)),td(e.text)])));}
function draw(d){document.getElementById('me').textContent=location.host;drawTasks(d);drawTask(d);
 drawCluster(d);drawEvents(d);}
let busy=false;   // one request at a time: a slow answer is not piled on
async function poll(){if(busy)return;busy=true;
 try{const q='?task='+encodeURIComponent(chosen)+'&offset='+offset+'&limit='+limit;
 const r=await fetch('/v1/dashboard'+q,{cache:'no-store'});if(!r.ok)throw new Error('HTTP '+r.status);
 last=await r.json();draw(last);status(true,' updated '+clock(last.at));}
 catch(e){status(false,' not updated: '+e.message);}finally{busy=false;}}
document.getElementById('prev').onclick=()=>{offset=Math.max(0,offset-limit);poll();};
document.getElementById('next').onclick=()=>{if(last&&last.task&&offset+limit<last.task.totals.peers)
 {offset+=limit;poll();}};
poll();setInterval(poll,1000);
</script></body></html>
"""

DAEMON_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>dfly daemon</title>
<style>""" + _STYLE + """</style></head><body>
<h1>dfly daemon <span id="me"></span><span id="status" class="muted">loading</span></h1>
<div class="muted">Read-only; refreshes every second.</div>
<h2>Downloads</h2><table><tbody id="totals"></tbody></table>
<h2>Cache <span id="cache-sum" class="muted"></span></h2>
<table><thead><tr><th>file</th><th>size</th><th>last used</th><th>seeded as task</th></tr></thead>
<tbody id="cache"></tbody></table>
<h2>Seeding</h2><table><thead><tr><th>task</th><th>file</th></tr></thead><tbody id="seeding"></tbody>
</table>
<h2>Mirror and proxy traffic</h2><table><thead><tr><th>kind</th><th>outcome</th><th>requests</th>
</tr></thead><tbody id="traffic"></tbody></table>
<h2>Last requests</h2><table><thead><tr><th>time</th><th>kind</th><th>method</th><th>status</th>
<th>target</th></tr></thead><tbody id="recent"></tbody></table>
<script>""" + _COMMON_JS + """
function draw(d){document.getElementById('me').textContent=d.peer_id;const s=d.stats;
 fill('totals',[['from source',bytes(s.bytes_from_source)],['from supernode',bytes(s.bytes_from_supernode)],
  ['from peers',bytes(s.bytes_from_peers)],['uploaded to peers',bytes(s.uploaded_bytes)],
  ['downloads',s.downloads],['fell back to the source',s.fallbacks]].map(([k,v])=>
  el('tr',{},[td(k),td(v,'num')])));
 document.getElementById('cache-sum').textContent=bytes(d.cache.bytes)+' of '+bytes(d.cache.limit_bytes)+
  ' in '+d.cache.files+' files'+(d.cache.files>d.cache.entries.length?' (largest '+d.cache.entries.length+
  ' shown)':'');
 fill('cache',d.cache.entries.map(e=>el('tr',{},[td(e.key),td(bytes(e.size),'num'),
  td(e.age_s+' s ago','num'),td(e.task_id?e.task_id.substr(0,12):'')])));
 fill('seeding',d.seeding.map(e=>el('tr',{},[td(e.task_id.substr(0,12)),td(e.path)])));
 fill('traffic',d.traffic.counts.map(e=>el('tr',{},[td(e.kind),td(e.outcome),td(e.requests,'num')])));
 fill('recent',d.traffic.recent.slice().reverse().map(e=>el('tr',{},[td(clock(e.at)),td(e.kind),
  td(e.method),td(e.status,'num'),td(e.target===null?'(shown on its host only)':e.target)])));}
let busy=false;
async function poll(){if(busy)return;busy=true;try{const r=await fetch('/v1/dashboard',{cache:'no-store'});
 if(!r.ok)throw new Error('HTTP '+r.status);const d=await r.json();draw(d);status(true,' updated '+
 clock(d.at));}catch(e){status(false,' not updated: '+e.message);}finally{busy=false;}}
poll();setInterval(poll,1000);
</script></body></html>
"""
