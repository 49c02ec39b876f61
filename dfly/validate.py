"""`dfly validate`: check settings files before a rollout, and each program's
--config at start.

The checks themselves are configcheck.py's (pure); this module reads the files,
gathers the facts of this host they need (the data dir: there, writable or
creatable, free space; the TLS files readable), prints one compiler-style line
per finding (`FILE:LINE: error: ...`) and, with --live, tries what only the
network can tell: each listen address is bound and closed again, each supernode
asked for /healthz, the upstream registry for /v2/. It changes nothing: no
folder is created, nothing written.
"""
import http.client
import os
import shutil
import sys
from typing import IO, Any, Dict, List, Mapping, Optional, Tuple

from dfly import configcheck, options
from dfly.configcheck import DirFacts, Finding, Parsed
from dfly.datadir import default_data_dir
from dfly.protocol.redact import redact_urls_in

KINDS = ("supernode", "daemon", "get")
LIVE_TIMEOUT_S = 3.0
MAX_MESSAGE = 400


def config_class(kind: str):
    """The config dataclass of a program (imported only when asked for)."""
    if kind == "supernode":
        from dfly.supernode.config import SupernodeConfig
        return SupernodeConfig
    if kind == "daemon":
        from dfly.peer.daemon_config import DaemonConfig
        return DaemonConfig
    from dfly.peer.config import PeerConfig
    return PeerConfig


def _toml_loads():
    try:
        import tomllib
    except ImportError:   # Python before 3.11: JSON only
        return None
    return tomllib.loads


def read(path: str) -> Parsed:
    """The file at `path` parsed; a file that cannot be read is one finding."""
    try:
        with open(path, "rb") as f:
            raw = f.read(configcheck.MAX_FILE_BYTES + 1)
    except OSError as e:
        return Parsed(None, {}, {}, [configcheck.error(1, "cannot read config file: %s"
                                                       % (e.strerror or e))])
    return configcheck.parse(raw, _toml_loads(), is_toml=path.endswith(".toml"))


def dir_facts(path: str) -> DirFacts:
    """What this host says about data dir `path`, touching nothing."""
    path = os.path.abspath(path)
    existing = path
    while not os.path.exists(existing) and os.path.dirname(existing) != existing:
        existing = os.path.dirname(existing)
    exists = existing == path
    usable = os.path.isdir(existing) and os.access(existing, os.W_OK | os.X_OK)
    try:
        free: Optional[int] = shutil.disk_usage(existing).free
    except OSError:
        free = None
    return DirFacts(path, exists, os.path.isdir(path), usable, free)


def findings_of(path: str, kind: Optional[str], live: bool = False,
                environ: Mapping[str, str] = os.environ) -> Tuple[Optional[str], List[Finding]]:
    """(the program the file is for, what is wrong with it)."""
    parsed = read(path)
    if parsed.values is None:
        return kind, parsed.findings
    kind = kind or configcheck.guess_kind(parsed.values, {k: config_class(k) for k in KINDS}, path)
    if kind is None:
        return None, [configcheck.error(1, "cannot tell which program this file is for: pass "
                                           "--kind supernode, daemon or get")]
    cls = config_class(kind)
    default = default_data_dir(environ)
    data_dir = os.path.abspath(configcheck.data_dir_of(cls, parsed.values, default))
    dirs = {configcheck.data_dir_of(cls, parsed.values, default): dir_facts(data_dir)}
    readable = {f: os.access(f, os.R_OK) for f in configcheck.files_of(parsed.values)}
    found = configcheck.check(cls, parsed, dirs, readable, default)
    if live and any(f.level == "error" for f in found):
        found.append(configcheck.warning(1, "--live checks not tried: the file has errors"))
    elif live:
        found = sorted(found + live_findings(kind, cls, parsed), key=lambda f: f.line)
    return kind, found


def show(path: str, finding: Finding, level: bool = True) -> str:
    """One compiler-style line: FILE:LINE[:COL]: LEVEL: MESSAGE (without LEVEL: when
    the caller says it)."""
    message = redact_urls_in(" ".join(finding.message.split()))
    if len(message) > MAX_MESSAGE:
        message = message[:MAX_MESSAGE] + "..."
    shown = "%s%s" % (finding.level + ": " if level else "", message)
    if not finding.line:   # about a flag given beside the file, not in it
        return shown
    where = "%s:%d" % (path, finding.line)
    if finding.column:
        where += ":%d" % finding.column
    return "%s: %s" % (where, shown)


def run(paths: List[str], kind: Optional[str], live: bool, out: IO[str]) -> int:
    """`dfly validate`: 1 if any file has an error, else 0 (warnings only)."""
    failed = False
    for path in paths:
        _, found = findings_of(path, kind, live)
        for finding in found:
            out.write(show(path, finding) + "\n")
        failed = failed or any(f.level == "error" for f in found)
    return 1 if failed else 0


def at_start(path: str, kind: str, args: Any, err: Optional[IO[str]] = None) -> Dict[str, Any]:
    """The settings of --config FILE for a program starting, checked with the flags given
    over them as the program will see them: ValueError (one line, exit 2) at the first
    error. Warnings of a long-running program are written to `err`. The data dir is
    checked by the program itself (make_data_dir: exit 6)."""
    parsed = read(path)
    if parsed.values is None:
        raise ValueError(show(path, parsed.findings[0], level=False))
    cls = config_class(kind)
    flags = {name: getattr(args, name) for name in configcheck.field_names(cls)
             if getattr(args, name, None) is not None}   # each wins over the file's key
    values = {k: v for k, v in parsed.values.items() if k.replace("-", "_") not in flags}
    lines = {k: n for k, n in parsed.lines.items() if k.replace("-", "_") not in flags}
    items = {k: n for k, n in parsed.items.items() if k.replace("-", "_") not in flags}
    values.update(flags)
    lines.update(dict.fromkeys(flags, 0))   # no line in the file
    found = configcheck.check(cls, Parsed(values, lines, items, parsed.findings))
    errors = [f for f in found if f.level == "error"]
    if errors:
        more = " (and %d more: `dfly validate %s` lists them)" % (len(errors) - 1, path) \
            if len(errors) > 1 else ""
        raise ValueError(show(path, errors[0], level=False) + more)
    if kind != "get":   # a get's warnings would follow every download
        for finding in found:
            (err or sys.stderr).write("dfly: %s\n" % show(path, finding))
    return parsed.values


# --live ---------------------------------------------------------------------------------

def live_findings(kind: str, cls, parsed: Parsed) -> List[Finding]:
    """What does not answer: listen addresses this host cannot bind, supernodes without a
    /healthz, an upstream registry without /v2/."""
    config = options.build(cls, parsed.values)
    line = {k.replace("-", "_"): n for k, n in parsed.lines.items()}
    found = []
    for name in ("listen", "upload_listen"):
        problem = _cannot_bind(getattr(config, name, None), getattr(config, "advertise", ""), name)
        if problem:
            found.append(configcheck.error(line.get(name, 1), problem))
    problem = _cannot_bind_gossip(config)
    if problem:
        found.append(configcheck.error(line.get("gossip_listen", line.get("gossip", 1)), problem))
    for name, address in _supernodes(kind, config):
        problem = _probe(config, address, "/healthz", ok=lambda status: status == 200)
        if problem:
            found.append(configcheck.error(line.get(name, 1), "supernode %s: %s" % (address, problem)))
    if kind == "daemon":
        problem = _probe_url(config, config.registry_mirror.rstrip("/") + "/v2/")
        if problem:
            found.append(configcheck.error(line.get("registry_mirror", 1), "registry %s: %s"
                                           % (config.registry_mirror, problem)))
    return found


def _supernodes(kind: str, config) -> List[Tuple[str, str]]:
    if kind == "supernode":
        me = config.advertise or config.listen
        return [("cluster", m) for m in config.cluster if m != me]
    return [("supernode", m) for m in config.supernode]


def _cannot_bind(address: Optional[str], advertise: str, name: str) -> str:
    from dfly import errors
    from dfly.httpd import Server
    from dfly.protocol.address import parse_address, upload_address
    if not address:
        return ""
    if name == "upload_listen":
        host_port = upload_address(address, advertise)
    else:
        host_port = parse_address(address, 0)
    try:
        Server(host_port, None).server_close()
    except errors.CannotListen as e:
        return str(e)
    return ""


def _cannot_bind_gossip(config) -> str:
    """The gossip member's UDP and TCP address (--gossip-listen, else port 7946 on the
    --listen host), tried as the member binds it."""
    if not getattr(config, "gossip", False):
        return ""
    from dfly import errors
    from dfly.gossip.node import DEFAULT_PORT, _bind_pair
    from dfly.protocol.address import parse_address
    bind = (parse_address(config.gossip_listen, DEFAULT_PORT) if config.gossip_listen
            else (parse_address(config.listen, 0)[0], DEFAULT_PORT))
    try:
        for sock in _bind_pair(bind):
            sock.close()
    except errors.CannotListen as e:
        return str(e)
    return ""


def _probe(config, address: str, path: str, ok) -> str:
    """A supernode asked as every dfly client dials one (TLS with the config's CA, its
    --tls-server-name), so a certificate it would refuse is reported too."""
    from dfly import tls
    from dfly.protocol.address import parse_address
    host, port = parse_address(address, 8002)
    try:
        context = tls.TLS.from_config(config)
    except (ValueError, OSError) as e:   # the TLS files do not load
        return "cannot use the TLS settings: %s" % e
    return _ask(lambda: tls.http_connection(context, host, port, LIVE_TIMEOUT_S), path, ok,
                lambda e: tls.refusal(e, context))


def _probe_url(config, url: str) -> str:
    from dfly.protocol.proxyrules import split_target
    try:
        scheme, host, port, path = split_target(url)
    except ValueError as e:
        return str(e)
    insecure = getattr(config, "insecure_upstream", False)

    def connect() -> http.client.HTTPConnection:
        if scheme == "https":
            return http.client.HTTPSConnection(host, port, timeout=LIVE_TIMEOUT_S,
                                               context=_client_context(insecure))
        return http.client.HTTPConnection(host, port, timeout=LIVE_TIMEOUT_S)
    return _ask(connect, path, lambda status: status < 500)


def _ask(connect, path: str, ok, refusal=lambda e: None) -> str:
    """"" when GET `path` on connect()'s connection answers as `ok` says, else what happened."""
    try:
        conn = connect()
        try:
            conn.request("GET", path)
            status = conn.getresponse().status
        finally:
            conn.close()
    except (OSError, http.client.HTTPException, ValueError) as e:
        why = refusal(e) or getattr(e, "strerror", None) or str(e) or type(e).__name__
        return "did not answer %s: %s" % (path, why)
    return "" if ok(status) else "answered %s with status %d" % (path, status)


def _client_context(insecure: bool):
    """As the daemon's upstream client checks a registry: the system's CAs, or nothing
    with --insecure-upstream."""
    import ssl
    context = ssl.create_default_context()
    if insecure:
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    return context
