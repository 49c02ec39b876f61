"""Config is data: one frozen dataclass per component, every field declared with
`option(default, help)`. The CLI flags and the config file keys are both derived
from those fields here, so a setting cannot exist in one and not the other.

Units are in the names: sizes (`20M`, `4GiB`) and durations (`300`, `5m`, `2h`)
are parsed by parse_size / parse_duration; binary multiples, as curl does.
Addresses (`HOST:PORT`, `[IPV6]:PORT`), hosts and URLs are checked by
protocol/address.py, the same for every flag and key that takes one.
"""
import argparse
import dataclasses
import json
import re
from typing import Any, Dict, Iterable, List, Optional

from dfly.protocol.address import canonical_address, check_url, parse_host
from dfly.protocol.location import format_location, parse_location

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b)?\s*$", re.I)
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$", re.I)
_SIZE_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def _number(value) -> float:
    """A plain JSON/TOML number that is finite and not negative; ValueError otherwise."""
    if value != value or value in (float("inf"), float("-inf")) or value < 0:
        raise ValueError("must be a finite, non-negative number, got %r" % value)
    return value


def _finite(text, number: float) -> float:
    """`number` (parsed from `text`) when finite: "9" * 400 reads as infinity."""
    if number in (float("inf"), float("-inf")):
        raise ValueError("too large: %r" % text[:40])
    return number


def parse_size(text) -> int:
    """Bytes from "4096", "20M", "1.5GiB"; ValueError otherwise."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        return int(_number(text))
    m = _SIZE.match(str(text))
    if not m:
        raise ValueError("not a size: %r (try 512K, 20M, 4G)" % text)
    return int(_finite(text, float(m.group(1)) * _SIZE_UNITS[m.group(2).lower()]))


def parse_duration(text) -> float:
    """Seconds from "30", "30s", "5m", "2h"; ValueError otherwise."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        return float(_number(text))
    m = _DURATION.match(str(text))
    if not m:
        raise ValueError("not a duration: %r (try 30s, 5m, 1h)" % text)
    return _finite(text, float(m.group(1)) * _DURATION_UNITS[(m.group(2) or "s").lower()])


def format_size(n: int) -> str:
    """A size as the flags take it: 21474836480 -> "20G", 4096 -> "4K", 1000 -> "1000"."""
    for unit in ("T", "G", "M", "K"):
        if n and n % _SIZE_UNITS[unit.lower()] == 0:
            return "%d%s" % (n // _SIZE_UNITS[unit.lower()], unit)
    return str(n)


def format_duration(seconds: float) -> str:
    """A duration as the flags take it: 300.0 -> "5m", 604800 -> "7d", 1.5 -> "1.5s", 0 -> "0"."""
    if not seconds:
        return "0"
    for unit in ("d", "h", "m", "s"):
        count = seconds / _DURATION_UNITS[unit]
        if count == int(count):
            return "%d%s" % (count, unit)
    return "%gs" % seconds if seconds >= 1 else "%gms" % (seconds * 1000)


MAX_DURATION_S = 10 * 365 * 86400.0   # longer overflows some waits (threading.TIMEOUT_MAX)
MAX_SIZE = 1 << 60
MAX_COUNT = 10 ** 9

# Bounds of the counts and durations that 0 (or less) would break; field name -> (min, max).
RANGES = {
    "max_uploads_per_peer": (1, 10000), "max_uploads": (1, 10000),
    "max_assignments_per_peer": (1, 100000), "max_source_fetches": (1, 100000),
    "max_connections": (1, 10 ** 6), "parallel": (1, 1024),
    "cache_size": (1, MAX_SIZE),
    "client_ipv6_prefix": (1, 128),
    "fanout": (0, 1024),
}
POSITIVE_DURATIONS = ("source_timeout_s", "peer_ttl_s", "assignment_start_timeout_s",
                      "task_idle_ttl_s", "member_dead_after_s", "upstream_timeout_s",
                      "fetch_timeout_s", "piece_timeout_s", "connect_timeout_s", "heartbeat_s")


def out_of_range(f: dataclasses.Field, value) -> str:
    """Why `value` is outside what field `f` can work with ("must be at least 1"), or ""."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return ""
    kind = f.metadata.get("kind", "")
    low, high = RANGES.get(f.name, (0, MAX_SIZE if kind == "size" else
                                    MAX_DURATION_S if kind == "duration" else MAX_COUNT))
    if f.name in POSITIVE_DURATIONS and value <= 0:
        return "must be above 0"
    if value < low:
        return "must be at least %s" % low
    if value > high:
        return "must be at most %s" % (format_size(high) if kind == "size" else
                                       format_duration(high) if kind == "duration" else high)
    return ""


def option(default, help: str, kind: str = "", flag: str = "", metavar: str = "",
           choices: Iterable[str] = (), required: bool = False):
    """A config field: its default, one line of help, and how to parse it. `choices`: the
    values allowed; `required`: the flag (or its config key) must be given."""
    meta = {"help": help, "kind": kind, "flag": flag, "metavar": metavar,
            "choices": tuple(choices), "required": required}
    if isinstance(default, list):
        return dataclasses.field(default_factory=lambda: list(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def parse_url(text) -> str:
    """A URL whose host is well formed (no zone id); ValueError otherwise."""
    if not isinstance(text, str):
        raise ValueError("a URL must be text, got %r" % (text,))
    check_url(text.strip())
    return text.strip()


def parse_addresses(value) -> List[str]:
    """Addresses from a list and/or comma-separated text ("h1:1,[::1]:2"), each checked."""
    items = value if isinstance(value, list) else [value]
    out = []
    for item in items:
        if not isinstance(item, str):
            raise ValueError("an address must be text, got %r" % (item,))
        out.extend(canonical_address(part) for part in item.split(",") if part.strip())
    return out


def parse_source_rules(value) -> List[str]:
    """Source policy rules from a list and/or comma-separated text, each checked."""
    from dfly.protocol.sourcepolicy import Rules
    items = [str(v) for v in (value if isinstance(value, list) else [value])]
    Rules.parse(items)
    return items


def parse_location_text(text) -> str:
    """A peer's `region/zone/rack`, checked; ValueError otherwise."""
    if not isinstance(text, str):
        raise ValueError("a location must be text, got %r" % (text,))
    return format_location(parse_location(text.strip()))


_PARSERS = {"size": parse_size, "duration": parse_duration, "address": canonical_address,
            "host": parse_host, "url": parse_url}
_PARSERS["location"] = parse_location_text


def _flag(f: dataclasses.Field) -> str:
    return f.metadata.get("flag") or "--" + f.name.replace("_", "-")


def _no_flag(f: dataclasses.Field) -> str:
    """The flag that turns off a setting that is on by default."""
    return "--no-" + _flag(f)[2:]


def _convert(f: dataclasses.Field, value):
    kind = f.metadata.get("kind", "")
    choices = f.metadata.get("choices")
    if choices:
        if not isinstance(value, str) or value.lower() not in choices:
            raise ValueError("%r is not one of %s" % (value, ", ".join(choices)))
        return value.lower()
    if kind == "address" and f.default is dataclasses.MISSING:   # a list of addresses
        return parse_addresses(value)
    if kind == "source_rule":   # --allow-source / --deny-source: checked here, kept as typed
        return parse_source_rules(value)
    if value == "" and f.default == "":   # an optional setting left unset
        return value
    if kind in _PARSERS:
        return _PARSERS[kind](value)
    if isinstance(f.default, bool):
        if not isinstance(value, bool):
            raise ValueError("%s must be true or false" % f.name)
        return value
    if isinstance(f.default, (int, float)) and isinstance(value, bool):
        raise ValueError("%s must be a number, not %r" % (f.name, value))
    if isinstance(f.default, int):
        return int(value)
    if isinstance(f.default, float):
        return float(value)
    if f.default is dataclasses.MISSING:   # list fields
        return [str(v) for v in (value if isinstance(value, list) else [value])]
    return str(value)


def convert_setting(f: dataclasses.Field, value):
    """`value` (from a file or a flag) as field `f` holds it; ValueError (or TypeError,
    OverflowError) saying why not. What build does per setting, for configcheck.py."""
    return _convert(f, value)


def shown_default(f: dataclasses.Field) -> str:
    """The default as a user would type it ("" when there is none to show)."""
    default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
    kind = f.metadata.get("kind", "")
    if default in ("", [], None) or isinstance(default, bool):
        return ""
    if isinstance(default, list):
        return ", ".join(str(v) for v in default)
    if kind == "size":
        return format_size(default)
    if kind == "duration":
        return format_duration(default)
    return str(default)


def _metavar(f: dataclasses.Field) -> Optional[str]:
    """What the flag takes, in the help: the field's own, else by its kind or type."""
    kind = f.metadata.get("kind", "")
    if f.metadata.get("metavar"):
        return f.metadata["metavar"]
    if kind in ("size", "duration"):
        return kind.upper()
    if isinstance(f.default, (int, float)) and not isinstance(f.default, bool):
        return "N"
    return None


def add_arguments(parser: argparse.ArgumentParser, cls, skip: Iterable[str] = ()) -> None:
    """One flag per field of `cls`; defaults stay None so the file can fill gaps.
    Fields `cls` inherits (the TLS options every program shares) come after its own. The
    help shows defaults in the flag's units, choices, and (repeatable) for list settings;
    required settings are listed as required (with --config, the program checks them)."""
    own = vars(cls).get("__annotations__", {})
    for f in sorted(dataclasses.fields(cls), key=lambda f: f.name not in own):
        if f.name in skip:
            continue
        helptext = f.metadata.get("help", "")
        default = shown_default(f)
        choices = f.metadata.get("choices") or None
        if choices:
            helptext = "%s: %s" % (helptext, ", ".join(choices)) if helptext else ", ".join(choices)
        if default:
            helptext += " (default: %s)" % default
        required = f.metadata.get("required", False)
        if required:
            helptext += " (required)"
        kwargs = dict(dest=f.name, default=None, help=helptext.replace("%", "%%"))
        if isinstance(f.default, bool):
            if f.default:   # on unless turned off; the flag itself is kept for older command lines
                kwargs["help"] += " (default: on; %s turns it off)" % _no_flag(f)
            parser.add_argument(_flag(f), action="store_true", **kwargs)
            if f.default:
                parser.add_argument(_no_flag(f), dest=f.name, action="store_false", default=None,
                                    help="turn %s off" % _flag(f))
        elif f.default is dataclasses.MISSING:   # a list
            if "repeat" not in helptext:
                kwargs["help"] += " (repeatable)"
            parser.add_argument(_flag(f), action="append", metavar=_metavar(f), **kwargs)
        else:
            parser.add_argument(_flag(f), metavar=_metavar(f) or (None if choices else "VALUE"),
                                choices=choices, required=required, **kwargs)


def build(cls, file_values: Optional[Dict[str, Any]] = None,
          args: Optional[argparse.Namespace] = None, **overrides):
    """A `cls` from defaults < config file < command line < overrides.
    ValueError names the setting that is wrong."""
    known = {f.name: f for f in dataclasses.fields(cls)}
    values: Dict[str, Any] = {}
    for key, value in (file_values or {}).items():
        name = key.replace("-", "_")
        if name not in known:
            raise ValueError("unknown setting %r in config file" % key)
        values[name] = value
    for name in known:
        value = getattr(args, name, None) if args is not None else None
        if value is not None:
            values[name] = value
    values.update({k: v for k, v in overrides.items() if v is not None})
    given = set(values) - {k for k, v in overrides.items() if v is not None}   # by the user
    converted = {}
    for name, value in values.items():
        if name not in known:
            raise ValueError("unknown setting %r" % name)
        try:
            converted[name] = _convert(known[name], value)
            # What `dfly validate` refuses is refused at start too (--parallel 0 fetched nothing).
            problem = out_of_range(known[name], converted[name]) if name in given else ""
        except (TypeError, ValueError, OverflowError) as e:
            raise ValueError("bad value for %s: %s" % (_flag(known[name]), e))
        if problem:
            raise ValueError("bad value for %s: %s" % (_flag(known[name]), problem))
    return cls(**converted)


def replace(config, **overrides):
    """`config` with `overrides` (None: not given) over it, each converted and checked
    as build() does its overrides: ValueError names an unknown or bad setting."""
    given = {k: v for k, v in overrides.items() if v is not None}
    converted = build(type(config), **given)
    return dataclasses.replace(config, **{name: getattr(converted, name) for name in given})


def load_file(path: str) -> Dict[str, Any]:
    """Settings from a JSON file (or TOML where tomllib exists, Python 3.11+)."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise ValueError("cannot read config file %s: %s" % (path, e.strerror or e))
    if path.endswith(".toml"):
        try:
            import tomllib
        except ImportError:
            raise ValueError("TOML config needs Python 3.11+; use JSON: %s" % path)
        try:
            return tomllib.loads(raw.decode("utf-8"))
        except (ValueError, RecursionError) as e:
            raise ValueError("config file %s is not valid TOML: %s" % (path, e))
    try:
        value = json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError) as e:
        raise ValueError("config file %s is not valid JSON: %s" % (path, e))
    if not isinstance(value, dict):
        raise ValueError("config file %s must hold a JSON object" % path)
    return value
