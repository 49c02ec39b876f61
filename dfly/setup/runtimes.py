"""Pointing container runtimes at the local daemon: pure transforms, text in, text out.

Each function takes what a file holds now (None: no file) and returns what it
should hold, or None when it already points at the daemon (so a second run
changes nothing). Files we own outright (containerd's certs.d hosts.toml) are
generated whole; files other people own are edited by inserting lines
(containerd's config.toml, registries.conf) or, for JSON, loaded and dumped
with every other key kept (Docker's daemon.json). What cannot be edited
safely raises ValueError naming the file's line: the writer then changes
nothing. No I/O here; writer.py does the files, app.py the wiring.
"""
import json
import re
from dataclasses import dataclass
from typing import List, Optional, Tuple

from dfly.setup.tomlscan import Entry, Header, TomlError, basic_string, scan, string_value

DOCKER_HUB = "docker.io"
# containerd's certs.d/_default/hosts.toml: for every registry without a folder of its own
DEFAULT_HOSTS = "_default"
CERTS_D = "/etc/containerd/certs.d"
MARK = "# added by dfly setup"
# containerd's CRI registry settings live under a plugin whose name changed with the
# config format: version 1 (no `version` key), 2 (containerd 1.x), 3 (containerd 2.x)
CRI_PLUGIN = {1: "cri", 2: "io.containerd.grpc.v1.cri", 3: "io.containerd.cri.v1.images"}
_HOST = re.compile(r"\A([A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\])(:[0-9]{1,5})?\Z")


@dataclass(frozen=True)
class Registry:
    host: str     # as image names spell it: docker.io, registry.example:5000
    server: str   # the URL containerd falls back to when the daemon is down


def parse_registry(text: str) -> Registry:
    """HOST[:PORT] (https), or http://HOST[:PORT] for a plain-HTTP registry; or
    _default (containerd: every registry without a hosts.toml of its own)."""
    if text == DEFAULT_HOSTS:
        return Registry(DEFAULT_HOSTS, "")   # containerd falls back to each registry itself
    scheme, sep, rest = text.partition("://")
    host = rest if sep else text
    scheme = scheme.lower() if sep else "https"
    if scheme not in ("http", "https") or not _HOST.match(host):
        raise ValueError("bad value for --registry: %r is not HOST[:PORT] or http://HOST[:PORT]" % text)
    if host == DOCKER_HUB:
        return Registry(host, "https://registry-1.docker.io")
    return Registry(host, "%s://%s" % (scheme, host))


def check_daemon_address(text: str) -> str:
    if not _HOST.match(text) or ":" not in text.rsplit("]", 1)[-1]:
        raise ValueError("bad value for --daemon: %r is not HOST:PORT" % text)
    return text


# containerd -------------------------------------------------------------------------------

def hosts_toml(registry: Registry, daemon: str) -> str:
    """certs.d/HOST/hosts.toml: pulls go to the daemon first, the registry itself after."""
    if registry.host == DEFAULT_HOSTS:
        # no `server`: after the daemon, containerd asks the registry the image names
        return ("%s: pulls from registries without a hosts.toml of their own go to the\n"
                "# local dfly daemon first (it answers 404 for those it does not mirror), then\n"
                "# to the registry itself.\n"
                "# Remove with: dfly setup containerd --undo --registry _default\n\n"
                "[host.%s]\n"
                "  capabilities = [\"pull\", \"resolve\"]\n"
                % (MARK, basic_string("http://" + daemon)))
    return ("%s: pulls of %s go to the local dfly daemon first, to %s when it is down.\n"
            "# Remove with: dfly setup containerd --undo\n"
            "server = %s\n\n"
            "[host.%s]\n"
            "  capabilities = [\"pull\", \"resolve\"]\n"
            % (MARK, registry.host, registry.server, basic_string(registry.server),
               basic_string("http://" + daemon)))


def containerd_hosts_dir(config: Optional[str]) -> Tuple[Optional[str], str]:
    """(config.toml as it should be, or None if unchanged; the certs.d dir it names).
    containerd 1.x reads hosts.toml only when the CRI registry's config_path is set:
    an unset or empty one is set to /etc/containerd/certs.d by inserting one line."""
    if config is None:
        return ("version = 2\n\n%s: containerd reads registry hosts (hosts.toml) from here\n"
                "[plugins.%s.registry]\n  config_path = %s\n"
                % (MARK, basic_string(CRI_PLUGIN[2]), basic_string(CERTS_D))), CERTS_D
    items = _scan("config.toml", config)
    version = _config_version(items)
    registry = ("plugins", CRI_PLUGIN[version], "registry")
    _refuse_mirrors(items, registry)
    found = [i for i in items if isinstance(i, Entry) and i.table + i.key == registry + ("config_path",)]
    if found:
        value = _string("config.toml", found[-1])
        if value:
            return None, value.split(":")[0]
        return _replace_value(config, found[-1], basic_string(CERTS_D)), CERTS_D
    if version == 3:   # containerd 2.x reads /etc/containerd/certs.d unless told otherwise
        return None, CERTS_D
    _refuse_dotted(items, registry)
    line = basic_string(CERTS_D)
    tables = [i for i in items if isinstance(i, Header) and i.path == registry and not i.array]
    if tables:
        return _insert_after(config, tables[0].line, "  config_path = %s  %s\n" % (line, MARK)), CERTS_D
    header = ".".join([registry[0], basic_string(registry[1]), registry[2]])
    return _append(config, "%s: containerd reads registry hosts (hosts.toml) from here\n"
                           "[%s]\n  config_path = %s\n" % (MARK, header, line)), CERTS_D


def _config_version(items: List) -> int:
    found = [i for i in items if isinstance(i, Entry) and i.table == () and i.key == ("version",)]
    if not found:
        return 1
    try:
        version = int(found[-1].raw)
    except ValueError:
        version = 0
    if version not in CRI_PLUGIN:
        raise ValueError("config.toml line %d: unknown config version %s" % (found[-1].line, found[-1].raw))
    return version


def _refuse_mirrors(items: List, registry: Tuple[str, ...]) -> None:
    for item in items:
        path = item.path if isinstance(item, Header) else item.table + item.key
        if path[:4] == registry + ("mirrors",) and path != registry + ("mirrors",):   # empty is fine
            raise ValueError("config.toml line %d: registry.mirrors is set, and containerd refuses "
                             "it together with config_path: move those mirrors to certs.d "
                             "hosts.toml files, then run dfly setup again" % item.line)


def _refuse_dotted(items: List, registry: Tuple[str, ...]) -> None:
    """Registry settings given as dotted keys or an inline table under a parent table
    cannot take a [..registry] table after them: refused, not guessed at."""
    for item in items:
        if not isinstance(item, Entry):
            continue
        path = item.table + item.key
        inside = path[:len(registry)] == registry and item.table[:len(registry)] != registry
        inline = registry[:len(path)] == path and item.raw.startswith("{")
        if inside or inline:
            raise ValueError("config.toml line %d: the CRI registry settings are written as "
                             "dotted keys or an inline table; add config_path = %s there by hand"
                             % (item.line, basic_string(CERTS_D)))


# Docker -----------------------------------------------------------------------------------

def docker_daemon_json(text: Optional[str], registry: Registry, daemon: str) -> Optional[str]:
    """daemon.json with http://DAEMON first in registry-mirrors, every other key kept."""
    if registry.host != DOCKER_HUB:
        raise ValueError("Docker sends only Docker Hub pulls to registry-mirrors: use --registry "
                         "docker.io (the default) for docker")
    mirror = "http://" + daemon
    if text is None or not text.strip():
        return json.dumps({"registry-mirrors": [mirror]}, indent=2) + "\n"
    try:
        settings = json.loads(text, object_pairs_hook=_no_duplicates)
    except json.JSONDecodeError as e:
        raise ValueError("daemon.json line %d: not valid JSON: %s" % (e.lineno, e.msg))
    except _Duplicate as e:
        raise ValueError("daemon.json: the key %r is given twice" % e.args[0])
    if not isinstance(settings, dict):
        raise ValueError("daemon.json line 1: must hold a JSON object")
    mirrors = settings.get("registry-mirrors", [])
    if not isinstance(mirrors, list) or not all(isinstance(m, str) for m in mirrors):
        raise ValueError("daemon.json line %d: registry-mirrors must be a list of URLs"
                         % _line_of(text, '"registry-mirrors"'))
    if mirror in [m.rstrip("/") for m in mirrors]:
        return None
    settings["registry-mirrors"] = [mirror] + mirrors
    return json.dumps(settings, indent=2) + "\n"


class _Duplicate(ValueError):
    pass


def _no_duplicates(pairs):
    keys = [k for k, _ in pairs]
    for key in keys:
        if keys.count(key) > 1:
            raise _Duplicate(key)
    return dict(pairs)


def _line_of(text: str, needle: str) -> int:
    return text[:max(text.find(needle), 0)].count("\n") + 1


# podman, skopeo, CRI-O (containers-registries.conf v2) -----------------------------------

def registries_conf(text: Optional[str], registry: Registry, daemon: str) -> Optional[str]:
    """registries.conf with the daemon as the first [[registry.mirror]] of HOST's
    [[registry]] (added at the end when there is none); other registries untouched."""
    block = ("[[registry.mirror]]\n%s: pulls of %s go to the local dfly daemon first\n"
             "location = %s\ninsecure = true\n\n" % (MARK, registry.host, basic_string(daemon)))
    if text is None or not text.strip():
        return "[[registry]]\nlocation = %s\n\n%s" % (basic_string(registry.host), block)
    items = _scan("registries.conf", text)
    for item in items:
        if isinstance(item, Header) and item.path[:1] == ("registries",):
            raise ValueError("registries.conf line %d: the old (v1) format; convert it to "
                             "[[registry]] tables first" % item.line)
    tables = _registry_tables(items)
    ours = [t for t in tables if t["prefix"] == registry.host]
    if not ours:
        return _append(text, "[[registry]]\nlocation = %s\n\n%s" % (basic_string(registry.host), block))
    table = ours[-1]
    if daemon in table["mirrors"]:
        return None
    if table["inline_mirror"]:
        raise ValueError("registries.conf line %d: this registry's mirrors are an inline list; "
                         "add {location = %s, insecure = true} to it by hand"
                         % (table["inline_mirror"], basic_string(daemon)))
    return _insert_before(text, table["next_line"], block)


def _registry_tables(items: List) -> List[dict]:
    """Each [[registry]]: its prefix (or location), mirror locations, where it ends."""
    tables: List[dict] = []
    current: Optional[dict] = None
    for item in items:
        if isinstance(item, Header):
            if current is not None and current["next_line"] is None:
                current["next_line"] = item.line
            if item.path == ("registry",) and item.array:
                current = {"prefix": "", "location": "", "mirrors": [], "inline_mirror": 0,
                           "next_line": None}
                tables.append(current)
            elif item.path != ("registry", "mirror"):
                current = None
            continue
        if current is None:
            continue
        if item.table == ("registry",) and item.key in (("prefix",), ("location",)):
            current[item.key[0]] = _string("registries.conf", item)
        elif item.table == ("registry",) and item.key == ("mirror",):
            current["inline_mirror"] = item.line
        elif item.table == ("registry", "mirror") and item.key == ("location",):
            current["mirrors"].append(_string("registries.conf", item))
    for table in tables:
        table["prefix"] = table["prefix"] or table["location"]
    return tables


# text edits -------------------------------------------------------------------------------

def _scan(name: str, text: str) -> List:
    try:
        return scan(text)
    except TomlError as e:
        raise ValueError("%s %s" % (name, e))


def _string(name: str, entry: Entry) -> str:
    try:
        return string_value(entry)
    except TomlError as e:
        raise ValueError("%s %s" % (name, e))


def _lines(text: str) -> List[str]:
    lines = text.splitlines(True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    return lines


def _insert_after(text: str, line: int, insert: str) -> str:
    lines = _lines(text)
    return "".join(lines[:line] + [insert] + lines[line:])


def _insert_before(text: str, line: Optional[int], insert: str) -> str:
    if line is None:
        return _append(text, insert)
    lines = _lines(text)
    return "".join(lines[:line - 1] + [insert] + lines[line - 1:])


def _append(text: str, insert: str) -> str:
    body = "".join(_lines(text))
    return body + ("" if body.endswith("\n\n") or not body else "\n") + insert


def _replace_value(text: str, entry: Entry, value: str) -> str:
    """The one-line `key = ""` at entry.line with `value` instead, the rest of the line kept."""
    lines = _lines(text)
    key, sep, rest = lines[entry.line - 1].partition("=")
    lines[entry.line - 1] = key + sep + rest.replace(entry.raw, value, 1)
    return "".join(lines)
