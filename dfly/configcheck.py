"""What is wrong with a settings file, found before any program starts. Pure.

Bytes in, findings out: `parse` reads JSON (or TOML, given a loader) and finds
the line of each top-level key and of each item of a list (json has no positions
for keys, so a small scan of the text, which is valid JSON by then, walks the top
object; TOML's keys are found by a line scan before the first table). `check`
then goes through the config dataclass of the program (options.py's table, the
one source of truth): unknown keys (with a did-you-mean), values that do not
parse or are of the wrong type, values out of range, and the settings that
contradict each other. Facts about the host (data dir, free space, readable
files) are gathered by the caller and passed in; none given, none checked.
"""
import dataclasses
import difflib
import ipaddress
import json
import os
import re
from bisect import bisect_right
from typing import Any, Callable, Dict, List, Mapping, NamedTuple, Optional, Tuple
from urllib.parse import urlsplit

from dfly import options
from dfly.protocol.address import WILDCARDS_V4, parse_address

MAX_FILE_BYTES = 4 << 20     # a settings file is a few KiB; a bigger one is a mistake
MAX_RULES = 10000         # every proxied URL is tried against each rule in turn
MAX_RULE_CHARS = 4096     # a longer regex is no rule a person wrote (and compiling one costs GBs)
MAX_UNKNOWN_LISTED = 50   # more unknown keys than that is another file: one line counts them

MATCH_ALL = ("^", "$", ".", ".*", ".+", "^.*", "^.+", ".*$", ".+$", "^.*$", "^.+$", "(.*)",
             "(?s).*", "(?s).+")


class Finding(NamedTuple):
    line: int        # 1-based; 0: not in the file (a flag given at start)
    level: str       # "error" or "warning"
    message: str
    column: int = 0  # 1-based, for syntax errors; 0: none


class Parsed(NamedTuple):
    values: Optional[Dict[str, Any]]   # None when the file could not be read as settings
    lines: Dict[str, int]              # top-level key as written -> its line
    items: Dict[str, List[int]]        # key -> the line of each item of its list
    findings: List[Finding]


class DirFacts(NamedTuple):
    """What the host says about a data dir (gathered by the caller)."""
    path: str
    exists: bool
    is_dir: bool
    writable: bool        # the dir itself, or for a missing one its nearest existing parent
    free_bytes: Optional[int]


def error(line: int, message: str, column: int = 0) -> Finding:
    return Finding(line, "error", message, column)


def warning(line: int, message: str) -> Finding:
    return Finding(line, "warning", message)


# Parsing -------------------------------------------------------------------------------

def parse(raw: bytes, toml_loads: Optional[Callable[[str], Any]] = None, is_toml: bool = False) -> Parsed:
    """The settings in `raw`, with positions. `is_toml` with no `toml_loads`: this Python
    has no TOML reader (3.11+ has tomllib)."""
    if len(raw) > MAX_FILE_BYTES:
        return _failed(error(1, "too large for a settings file: over %s" % options.format_size(
            MAX_FILE_BYTES)))
    if is_toml and toml_loads is None:
        return _failed(error(1, "a TOML settings file needs Python 3.11+ (tomllib); use JSON here"))
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        return _failed(_at_offset(raw[:e.start].decode("utf-8", "replace"), len(raw[:e.start].decode(
            "utf-8", "replace")), "not UTF-8 text (byte 0x%02x)" % raw[e.start]))
    if text.startswith("\ufeff"):
        text = text[1:]
    if not text.strip():
        return _failed(error(1, "the file is empty: settings are %s" % (
            "key = value lines" if is_toml else "a JSON object ({} for none)")))
    return _parse_toml(text, toml_loads) if is_toml else _parse_json(text)


def _failed(finding: Finding) -> Parsed:
    return Parsed(None, {}, {}, [finding])


def _at_offset(text: str, offset: int, message: str) -> Finding:
    line = text.count("\n", 0, offset) + 1
    column = offset - (text.rfind("\n", 0, offset) + 1) + 1
    return error(line, message, column)


def _parse_json(text: str) -> Parsed:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        return _failed(error(e.lineno, "not valid JSON: %s" % e.msg, e.colno))
    except RecursionError:
        return _failed(error(1, "not valid settings: nested too deeply"))
    except ValueError as e:   # a number Python will not read (over 4300 digits, 3.11+)
        long_number = re.search(r"\d{4301}", text)
        where = long_number.start() if long_number else 0
        return _failed(_at_offset(text, where, "not valid JSON: %s" % str(e).split(";")[0]))
    if not isinstance(value, dict):
        return _failed(error(1, "settings must be a JSON object ({\"key\": value, ...}), not %s"
                             % _type_name(value)))
    lines, items, duplicates = _json_positions(text)
    findings = [warning(line, "%r is given more than once; the last one counts" % key)
                for key, line in duplicates]
    return Parsed(value, lines, items, findings)


def _json_positions(text: str) -> Tuple[Dict[str, int], Dict[str, List[int]], List[Tuple[str, int]]]:
    """Lines of the top object's keys and of their list items, in valid JSON `text`."""
    starts = [0] + [m.end() for m in re.finditer("\n", text)]

    def line_at(pos: int) -> int:
        return bisect_right(starts, pos)

    decoder = json.JSONDecoder()
    space = re.compile(r"[ \t\n\r]*")
    lines: Dict[str, int] = {}
    items: Dict[str, List[int]] = {}
    duplicates: List[Tuple[str, int]] = []
    pos = space.match(text, 0).end() + 1   # past "{"
    while True:
        pos = space.match(text, pos).end()
        if text[pos] == "}":
            break
        key, pos = json.decoder.scanstring(text, pos + 1)
        if key in lines:
            duplicates.append((key, line_at(pos)))
        lines[key] = line_at(pos)
        pos = space.match(text, pos).end() + 1   # past ":"
        pos = space.match(text, pos).end()
        if text[pos] == "[":
            items[key], pos = _item_lines(text, pos, decoder, space, line_at)
        else:
            pos = decoder.raw_decode(text, pos)[1]
        pos = space.match(text, pos).end()
        if text[pos] == "}":
            break
        pos += 1   # past ","
    return lines, items, duplicates


def _item_lines(text, pos, decoder, space, line_at) -> Tuple[List[int], int]:
    found = []
    pos = space.match(text, pos + 1).end()
    while text[pos] != "]":
        found.append(line_at(pos))
        pos = space.match(text, decoder.raw_decode(text, pos)[1]).end()
        if text[pos] == ",":
            pos = space.match(text, pos + 1).end()
    return found, pos + 1


_TOML_KEY = re.compile(r"""^[ \t]*(?:"([^"\\]*)"|'([^']*)'|([A-Za-z0-9_-]+))[ \t]*=""")
_TOML_TABLE = re.compile(r"""^[ \t]*\[\[?[ \t]*(?:"([^"\\]*)"|'([^']*)'|([A-Za-z0-9_-]+))""")
_TOML_WHERE = re.compile(r"\(at line (\d+), column (\d+)\)")


def _parse_toml(text: str, toml_loads: Callable[[str], Any]) -> Parsed:
    try:
        value = toml_loads(text)
    except RecursionError:
        return _failed(error(1, "not valid settings: nested too deeply"))
    except ValueError as e:   # tomllib.TOMLDecodeError says where in its message
        where = _TOML_WHERE.search(str(e))
        message = _TOML_WHERE.sub("", str(e)).strip()
        if where:
            return _failed(error(int(where.group(1)), "not valid TOML: %s" % message,
                                 int(where.group(2))))
        return _failed(error(1, "not valid TOML: %s" % message))
    lines: Dict[str, int] = {}
    in_table = False   # keys after a [table] header are the table's, not settings
    for number, line in enumerate(text.splitlines(), 1):
        header = _TOML_TABLE.match(line)
        in_table = in_table or bool(header)
        m = header or (None if in_table else _TOML_KEY.match(line))
        if m:
            lines.setdefault(m.group(1) or m.group(2) or m.group(3), number)
    return Parsed(value, lines, {}, [])


def _type_name(value) -> str:
    return {dict: "an object", list: "a list", str: "text", bool: "true/false", type(None): "null"
            }.get(type(value), "a number")


# Which program a file is for ------------------------------------------------------------

def guess_kind(values: Mapping[str, Any], kinds: Mapping[str, type], file_name: str) -> Optional[str]:
    """The one program whose settings cover the file's keys best; else the one its file
    name says; else None (the caller asks for --kind)."""
    names = [k.replace("-", "_") for k in values]
    fields = {kind: field_names(cls) for kind, cls in kinds.items()}
    known = {kind: sum(n in fields[kind] for n in names) for kind in kinds}
    best = max(known.values()) if known else 0
    top = [kind for kind, count in known.items() if count == best]
    if len(top) == 1 and best:
        return top[0]
    base = os.path.basename(file_name).lower()
    named = [kind for kind in top if kind in base]
    return named[0] if len(named) == 1 else None


def field_names(cls) -> Dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(cls)}


# Checks ---------------------------------------------------------------------------------

class _Settings:
    """The converted values of one file, and where each key was written."""

    def __init__(self, cls, parsed: Parsed) -> None:
        self.fields = field_names(cls)
        self.cls = cls
        self.lines = {k.replace("-", "_"): line for k, line in parsed.lines.items()}
        self.items = {k.replace("-", "_"): found for k, found in parsed.items.items()}
        self.given: Dict[str, Any] = {}      # name -> converted value, for keys in the file
        self.findings: List[Finding] = []

    def line(self, *names: str) -> int:
        """The line of the first of `names` given (1: none; 0: given on the command line)."""
        return next((self.lines[n] for n in names if n in self.given and n in self.lines), 1)

    def item_line(self, name: str, index: int) -> int:
        found = self.items.get(name) or []
        return found[index] if index < len(found) else self.line(name)

    def get(self, name: str):
        if name in self.given:
            return self.given[name]
        f = self.fields[name]
        return f.default if f.default is not dataclasses.MISSING else f.default_factory()

    def error(self, message: str, *names: str) -> None:
        self.findings.append(error(self.line(*names), message))

    def warn(self, message: str, *names: str) -> None:
        self.findings.append(warning(self.line(*names), message))


def check(cls, parsed: Parsed, dirs: Optional[Mapping[str, DirFacts]] = None,
          readable: Optional[Mapping[str, bool]] = None, default_data_dir: str = "") -> List[Finding]:
    """Everything wrong with `parsed` as settings of `cls` (SupernodeConfig, DaemonConfig,
    PeerConfig), in line order. `dirs`: facts about the data dir (see data_dir_of);
    `readable`: whether each file named (TLS, gossip key) can be read."""
    if parsed.values is None:
        return list(parsed.findings)
    s = _Settings(cls, parsed)
    s.findings.extend(parsed.findings)
    unknown = [key for key in parsed.values if key.replace("-", "_") not in s.fields]
    for key in unknown[:MAX_UNKNOWN_LISTED]:
        s.findings.append(error(s.lines.get(key.replace("-", "_"), 1), "unknown setting %r%s"
                                % (key, _did_you_mean(key.replace("-", "_"), s.fields))))
    if len(unknown) > MAX_UNKNOWN_LISTED:
        s.findings.append(error(s.lines.get(unknown[MAX_UNKNOWN_LISTED].replace("-", "_"), 1),
                                "%d more unknown settings (is this the file of another program?)"
                                % (len(unknown) - MAX_UNKNOWN_LISTED)))
    for key, value in parsed.values.items():
        _check_key(s, key, value)
    for rule in _RULES:
        rule(s)
    if dirs is not None:
        _check_data_dir(s, dirs, default_data_dir)
    if readable is not None:
        _check_files(s, readable)
    return sorted(s.findings, key=lambda f: (f.line, f.level != "error"))


def _check_key(s: _Settings, key: str, value) -> None:
    name = key.replace("-", "_")
    line = s.lines.get(name, 1)
    f = s.fields.get(name)
    if f is None:   # listed by check
        return
    wrong = _wrong_type(f, value)
    if wrong:
        s.findings.append(error(line, "bad value for %s: %s" % (_flag(f), wrong)))
        return
    try:
        converted = options.convert_setting(f, value)
    except (TypeError, ValueError, OverflowError, RecursionError) as e:
        s.findings.append(error(line, "bad value for %s: %s" % (_flag(f), e)))
        return
    problem = options.out_of_range(f, converted)
    if problem:
        s.findings.append(error(line, "bad value for %s: %s" % (_flag(f), problem)))
        return
    s.given[name] = converted


def _did_you_mean(name: str, fields: Mapping[str, dataclasses.Field]) -> str:
    by_flag = {_flag(f)[2:].replace("-", "_"): n for n, f in fields.items()}
    if name in by_flag:
        return " (did you mean %r?)" % by_flag[name]
    close = difflib.get_close_matches(name, list(fields) + list(by_flag), n=1, cutoff=0.6)
    if close:
        return " (did you mean %r?)" % by_flag.get(close[0], close[0])
    return ""


def _flag(f: dataclasses.Field) -> str:
    return f.metadata.get("flag") or "--" + f.name.replace("_", "-")


def _wrong_type(f: dataclasses.Field, value) -> str:
    """Why `value` cannot be this setting at all ("" when its type may do)."""
    kind = f.metadata.get("kind", "")
    if isinstance(value, (dict, type(None))):
        return "expected %s, got %s" % (_expected(f), _type_name(value))
    if f.default is dataclasses.MISSING:   # a list setting: text or a list of text
        items = value if isinstance(value, list) else [value]
        bad = [v for v in items if not isinstance(v, str)]
        return "expected text or a list of text, got %s" % _type_name(bad[0]) if bad else ""
    if isinstance(value, list):
        return "expected %s, got a list" % _expected(f)
    if isinstance(f.default, str) and kind not in ("size", "duration") and not isinstance(value, str):
        return "expected text, got %s" % _type_name(value)
    if isinstance(value, float) and isinstance(f.default, int) and not kind and not (
            value == value and abs(value) != float("inf") and value.is_integer()):
        return "expected a whole number, got %r" % value
    return ""


def _expected(f: dataclasses.Field) -> str:
    kind = f.metadata.get("kind", "")
    if kind in ("size", "duration"):
        return "a %s" % kind
    if isinstance(f.default, bool):
        return "true or false"
    if isinstance(f.default, (int, float)):
        return "a number"
    return "a list" if f.default is dataclasses.MISSING else "text"


# Settings against each other ------------------------------------------------------------

def _has(s: _Settings, name: str) -> bool:
    return name in s.fields


def _addr(text: str, default_port: Optional[int] = None) -> Optional[Tuple[str, int]]:
    try:
        return parse_address(text, default_port)
    except ValueError:
        return None


def _overlap(a: str, b: str) -> bool:
    """Could listeners bound to hosts `a` and `b` (unbracketed) take the same port?"""
    if a == b or "::" in (a, b):
        return True
    wild = [h for h in (a, b) if h in WILDCARDS_V4]
    other = b if a in wild else a
    return bool(wild) and ":" not in other


GOSSIP_PORT = 7946   # gossip/node.py's DEFAULT_PORT: --gossip-listen's port when none is given


def _listeners(s: _Settings) -> None:
    """Each pair of TCP listeners of one program that would take the same port."""
    found = [(n, s.get(n), _addr(s.get(n), 0)) for n in ("listen", "upload_listen") if _has(s, n)]
    if _has(s, "gossip") and s.get("gossip"):
        listen = _addr(s.get("listen"), 0)
        gossip = _addr(s.get("gossip_listen"), GOSSIP_PORT) if s.get("gossip_listen") else \
            (listen[0], GOSSIP_PORT) if listen else None
        found.append(("gossip_listen", s.get("gossip_listen") or "(default) port %d" % GOSSIP_PORT,
                      gossip))
    for i, (name, text, a) in enumerate(found):
        for other, other_text, b in found[i + 1:]:
            if a and b and a[1] and a[1] == b[1] and _overlap(a[0], b[0]):
                s.error("--%s %s and --%s %s are one port: only one can listen there"
                        % (name.replace("_", "-"), text, other.replace("_", "-"), other_text),
                        other, name)


def _gossip(s: _Settings) -> None:
    if not (_has(s, "gossip") and s.get("gossip")):
        return
    if not s.get("gossip_key_file"):
        s.error("--gossip needs --gossip-key-file (the cluster's shared key)", "gossip")
    host = (_addr(s.get("gossip_listen"), GOSSIP_PORT) or ("x",))[0] if s.get("gossip_listen") \
        else (_addr(s.get("listen"), 0) or ("x",))[0]
    if (host in WILDCARDS_V4 or host == "::") and not s.get("advertise"):
        s.error("--gossip on every address needs --advertise: the address other members reach",
                "gossip_listen", "listen", "gossip")


def _rates(s: _Settings) -> None:
    if not (_has(s, "upload_rate_limit") and _has(s, "total_rate_limit")):
        return
    up, total = s.get("upload_rate_limit"), s.get("total_rate_limit")
    if total and up > total:
        s.error("--upload-rate-limit %s is above --total-rate-limit %s: the total caps every "
                "byte this host moves" % (options.format_size(up), options.format_size(total)),
                "upload_rate_limit", "total_rate_limit")


def _shares(s: _Settings) -> None:
    pairs = (("max_source_fetches_per_client", "max_source_fetches"),
             ("max_connections_per_client", "max_connections"))
    for part, whole in pairs:
        if _has(s, part) and s.get(part) > s.get(whole):
            s.warn("--%s %s is above --%s %s: the whole caps it" % (
                part.replace("_", "-"), s.get(part), whole.replace("_", "-"), s.get(whole)), part, whole)


def _proxy_rules(s: _Settings) -> None:
    if "proxy_rule" not in s.given:
        return
    from dfly.protocol.proxyrules import parse_rules
    if len(s.get("proxy_rule")) > MAX_RULES:
        return s.error("%d proxy rules: at most %d (every proxied URL is tried against each in "
                       "turn)" % (len(s.get("proxy_rule")), MAX_RULES), "proxy_rule")
    seen: Dict[str, int] = {}
    match_all = None
    for index, text in enumerate(s.get("proxy_rule")):
        line = s.item_line("proxy_rule", index)
        if len(text) > MAX_RULE_CHARS:
            s.findings.append(error(line, "proxy rule %d is %d characters long: at most %d"
                                    % (index + 1, len(text), MAX_RULE_CHARS)))
            continue
        try:
            rule = parse_rules([text])[0]
        except ValueError as e:
            s.findings.append(error(line, str(e)))
            continue
        pattern = rule.pattern.pattern
        if match_all is not None:
            s.findings.append(error(line, "proxy rule %r is never used: rule %d (%r) before it "
                                    "matches every URL" % (text, match_all + 1,
                                                           s.get("proxy_rule")[match_all])))
        elif pattern in seen:
            s.findings.append(error(line, "proxy rule %r is never used: rule %d has the same "
                                    "regex and comes first" % (text, seen[pattern] + 1)))
        seen.setdefault(pattern, index)
        if match_all is None and pattern.strip() in MATCH_ALL:
            match_all = index


def _mirror(s: _Settings) -> None:
    if "registry_mirror" not in s.given:
        return
    url = s.get("registry_mirror")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        s.error("bad value for --registry-mirror: %r is not an http:// or https:// URL of a "
                "registry" % url, "registry_mirror")


def _subscribe(s: _Settings) -> None:
    """A daemon's topics (peer/subscriber.py): each pattern as the daemon checks it at start."""
    from dfly.errors import BadRequest
    from dfly.protocol import publications, topics
    if "subscribe_platform" in s.given:
        try:
            publications.parse_platforms(s.get("subscribe_platform"))
        except ValueError as e:
            s.error(str(e), "subscribe_platform")
    if "subscribe" not in s.given:
        return
    patterns = s.get("subscribe")
    if len(patterns) > topics.MAX_PATTERNS:
        return s.error("%d --subscribe patterns: at most %d" % (len(patterns), topics.MAX_PATTERNS),
                       "subscribe")
    for index, text in enumerate(patterns):
        try:
            topics.parse_pattern(text)
        except BadRequest as e:
            s.findings.append(error(s.item_line("subscribe", index), "--subscribe: %s" % e))
    if patterns and not s.get("supernode"):
        s.error("--subscribe needs --supernode: publications come from the supernodes", "subscribe")


def _cluster(s: _Settings) -> None:
    if not _has(s, "cluster") or not s.get("cluster"):
        return
    me = s.get("advertise") or s.get("listen")
    members = s.get("cluster")
    if me not in members:
        s.error("this supernode's address %s (--advertise, else --listen) is not among the "
                "--cluster members %s" % (me, ", ".join(members)), "cluster")
    if not s.get("cluster_secret"):
        s.error("a supernode cluster needs --cluster-secret (the same on every member)", "cluster")
    elif len(s.get("cluster_secret")) < 16:
        s.warn("--cluster-secret is short: use 32 random bytes (openssl rand -hex 32)",
               "cluster_secret")


def _supernodes(s: _Settings) -> None:
    if not _has(s, "supernode"):
        return
    for index, text in enumerate(s.get("supernode")):
        host_port = _addr(text)
        if host_port is None or host_port[0] in WILDCARDS_V4 or host_port[0] == "::" \
                or not host_port[1]:
            s.findings.append(error(s.item_line("supernode", index), "bad value for --supernode: "
                                    "%r is not HOST:PORT of a supernode (as in 10.0.0.5:8002)" % text))


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _warnings(s: _Settings) -> None:
    advertised = s.get("advertise") if _has(s, "advertise") else ""
    host = (_addr(advertised, 0) or ("",))[0] if _has(s, "cluster") else advertised
    if advertised and _loopback(host.strip("[]")):
        s.warn("--advertise %s is a loopback address: no other host can reach this one there"
               % advertised, "advertise")
    if _has(s, "seed_for_s") and s.get("seed_for_s") == 0:
        s.warn("--seed-for 0: seeding is off, so what this host downloads is never served to "
               "other peers", "seed_for_s")
    if _has(s, "registry_mirror") and not s.get("supernode") and not s.get("gossip"):
        s.warn("no --supernode: seeding is off and every download comes straight from the "
               "source", "supernode")
    if s.given.get("data_dir") and not os.path.isabs(s.given["data_dir"]):
        s.warn("--data-dir %s is relative: where it is depends on the folder the program "
               "starts in" % s.given["data_dir"], "data_dir")
    if _has(s, "insecure_upstream") and s.get("insecure_upstream"):
        s.warn("--insecure-upstream: upstream certificates are not checked", "insecure_upstream")
    if _has(s, "no_back_source") and s.get("no_back_source") and not s.get("supernode"):
        s.error("--no-back-source without a --supernode: no download can ever succeed",
                "no_back_source")


def _tls(s: _Settings) -> None:
    from types import SimpleNamespace

    from dfly import tls
    names = [f.name for f in dataclasses.fields(tls.TLSOptions)]
    try:
        tls.check(SimpleNamespace(**{n: s.get(n) for n in names}))
    except ValueError as e:
        s.error(str(e), *names)
    if _has(s, "tls_front") and s.get("tls_front") and not (s.get("tls_cert") and s.get("tls_key")):
        s.error("--tls-front needs --tls-cert and --tls-key", "tls_front")


def _tiers(s: _Settings) -> None:
    """--upstream-supernode that is this supernode; --mirror-registry that is no registry URL."""
    from dfly.peer.mirrors import parse_mirror_registry
    from dfly.protocol.tiers import check_upstreams
    upstreams = _texts(s, "upstream_supernode")
    if upstreams:
        own = [s.get("listen"), s.get("advertise")] + _texts(s, "cluster")
        try:
            check_upstreams([a for a in upstreams if _addr(a, 8002)],
                            [a for a in own if isinstance(a, str) and _addr(a, 8002)])
        except ValueError as e:
            s.error(str(e), "upstream_supernode")
    for index, text in enumerate(_texts(s, "mirror_registry")):
        try:
            parse_mirror_registry(text)
        except ValueError as e:
            s.findings.append(error(s.item_line("mirror_registry", index), str(e)))


def _texts(s: _Settings, name: str) -> List[str]:
    """A list setting's values when it is a list of strings (else its type error is reported)."""
    value = s.get(name) if _has(s, name) else []
    return list(value) if isinstance(value, list) and all(isinstance(v, str) for v in value) else []


_RULES = (_listeners, _rates, _shares, _proxy_rules, _mirror, _cluster, _supernodes, _warnings, _tls,
          _gossip, _tiers, _subscribe)


# Facts of the host ----------------------------------------------------------------------

def data_dir_of(cls, values: Mapping[str, Any], default_data_dir: str) -> str:
    """The data dir a program with these settings would use (as cli.py picks it)."""
    given = values.get("data_dir", values.get("data-dir"))
    if isinstance(given, str) and given:
        return given
    if "cluster" in field_names(cls):   # the supernode keeps its own folder in the default
        return os.path.join(default_data_dir, "supernode")
    return default_data_dir


_FILES = ("tls_cert", "tls_key", "tls_ca", "gossip_key_file")


def files_of(values: Mapping[str, Any]) -> List[str]:
    """The files the settings name (TLS, gossip key) (to be checked readable)."""
    return [v for k, v in values.items()
            if k.replace("-", "_") in _FILES and isinstance(v, str) and v]


def _check_data_dir(s: _Settings, dirs: Mapping[str, DirFacts], default: str) -> None:
    path = s.get("data_dir") or data_dir_of(s.cls, {}, default)
    facts = dirs.get(path)
    if facts is None:
        return
    where = ("data_dir",)
    if facts.exists and not facts.is_dir:
        return s.error("data dir %s is not a directory" % path, *where)
    if not facts.writable:
        return s.error("data dir %s %s" % (path, "is not writable" if facts.exists else
                                           "does not exist and cannot be created"), *where)
    limit = s.get("cache_size") if _has(s, "cache_size") else 0
    if limit and facts.free_bytes is not None and facts.free_bytes < limit:
        text = "the disk of data dir %s has %s free, less than --cache-size %s" % (
            path, options.format_size(facts.free_bytes), options.format_size(limit))
        if "cache_size" in s.given:
            s.error(text, "cache_size")
        else:   # the default limit on a small disk: say so, but it is not this file's mistake
            s.warn(text + " (the default)", "data_dir")


def _check_files(s: _Settings, readable: Mapping[str, bool]) -> None:
    for name in _FILES:
        path = s.given.get(name) if _has(s, name) else ""
        if path and not readable.get(path, True):
            s.error("--%s %s cannot be read" % (name.replace("_", "-"), path), name)
