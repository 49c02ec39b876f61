"""Config is data: sizes, durations, and defaults < file < command line < overrides."""
import argparse
import dataclasses
import json
from dataclasses import dataclass
from typing import List

import pytest

from dfly.options import add_arguments, build, option, parse_duration, parse_size

KiB, MiB, GiB, TiB = 1 << 10, 1 << 20, 1 << 30, 1 << 40


@dataclass(frozen=True)
class Settings:
    listen: str = option("0.0.0.0:8002", "address to listen on", metavar="HOST:PORT")
    cache_size: int = option(20 * MiB, "cache size limit", kind="size", metavar="SIZE")
    timeout_s: float = option(30.0, "read timeout", kind="duration", flag="--timeout")
    max_peers: int = option(5, "peers at once")
    ratio: float = option(0.5, "a plain float")
    verbose: bool = option(False, "say more")
    relay: bool = option(True, "pass blocks on")
    supernode: List[str] = option([], "supernode address")


def parse_args(argv) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser, Settings)
    return parser.parse_args(argv)


# sizes -------------------------------------------------------------------------------

@pytest.mark.parametrize("text, size", [
    ("4096", 4096), ("0", 0), ("512K", 512 * KiB), ("512k", 512 * KiB), ("20M", 20 * MiB),
    ("20MB", 20 * MiB), ("20MiB", 20 * MiB), ("20mib", 20 * MiB), ("4G", 4 * GiB),
    ("4GiB", 4 * GiB), ("1T", TiB), ("1.5GiB", 3 * GiB // 2), (" 2 m ", 2 * MiB), ("100B", 100),
    (4096, 4096), (2.9, 2),
])
def test_sizes_use_binary_multiples(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", " ", "abc", "M", "-1", "1.5.5", "20X", "1e3", "20 MBs",
                                  "20 M B", "0x10", True, None, [1]])
def test_things_that_are_not_sizes_are_refused(text):
    with pytest.raises(ValueError, match="not a size"):
        parse_size(text)


def test_an_infinite_size_is_refused_with_a_value_error():
    with pytest.raises(ValueError):
        parse_size(float("inf"))


@pytest.mark.parametrize("value", [-1, -0.5])
def test_a_negative_size_is_refused_as_a_number_too(value):
    with pytest.raises(ValueError):
        parse_size(value)


# durations ---------------------------------------------------------------------------

@pytest.mark.parametrize("text, seconds", [
    ("30", 30.0), ("30s", 30.0), ("30S", 30.0), ("5m", 300.0), ("2h", 7200.0), ("1d", 86400.0),
    ("250ms", 0.25), ("1.5h", 5400.0), (" 10 s ", 10.0), ("0", 0.0), (12, 12.0), (0.5, 0.5),
])
def test_durations_are_seconds_with_optional_units(text, seconds):
    value = parse_duration(text)
    assert value == pytest.approx(seconds)
    assert isinstance(value, float)


@pytest.mark.parametrize("text", ["", "s", "5 minutes", "-1", "1w", "1.2.3s", "5mm", "1e3",
                                  True, None])
def test_things_that_are_not_durations_are_refused(text):
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)


def test_a_negative_duration_is_refused_as_a_number_too():
    with pytest.raises(ValueError):
        parse_duration(-5)


# build -------------------------------------------------------------------------------

def test_defaults_apply_when_nothing_is_given():
    assert build(Settings) == Settings()
    assert build(Settings).supernode == []


def test_the_list_default_is_not_shared_between_instances():
    a, b = Settings(), Settings()
    a.supernode.append("x")
    assert b.supernode == []


def test_the_file_overrides_defaults():
    cfg = build(Settings, {"listen": "127.0.0.1:1", "cache-size": "1G", "timeout_s": "2m"})
    assert (cfg.listen, cfg.cache_size, cfg.timeout_s) == ("127.0.0.1:1", GiB, 120.0)
    assert cfg.max_peers == 5


def test_the_command_line_overrides_the_file():
    args = parse_args(["--listen", "127.0.0.1:2", "--timeout", "5s"])
    cfg = build(Settings, {"listen": "127.0.0.1:1", "timeout_s": 60, "max_peers": 9}, args)
    assert (cfg.listen, cfg.timeout_s, cfg.max_peers) == ("127.0.0.1:2", 5.0, 9)


def test_overrides_win_over_everything():
    args = parse_args(["--listen", "127.0.0.1:2"])
    cfg = build(Settings, {"listen": "127.0.0.1:1"}, args, listen="127.0.0.1:3", max_peers=7)
    assert (cfg.listen, cfg.max_peers) == ("127.0.0.1:3", 7)


def test_none_overrides_and_absent_flags_leave_lower_layers_alone():
    args = parse_args([])
    cfg = build(Settings, {"listen": "127.0.0.1:1", "verbose": True}, args, listen=None)
    assert (cfg.listen, cfg.verbose) == ("127.0.0.1:1", True)


def test_flags_are_typed_like_the_file():
    args = parse_args(["--cache-size", "512K", "--max-peers", "3", "--ratio", "0.25", "--verbose",
                       "--supernode", "a:1", "--supernode", "b:2"])
    cfg = build(Settings, None, args)
    assert cfg == Settings(cache_size=512 * KiB, max_peers=3, ratio=0.25, verbose=True,
                           supernode=["a:1", "b:2"])


def test_a_single_list_value_in_the_file_becomes_a_list():
    assert build(Settings, {"supernode": "a:1"}).supernode == ["a:1"]
    assert build(Settings, {"supernode": ["a:1", 2]}).supernode == ["a:1", "2"]


def test_an_unknown_key_in_the_file_is_refused_by_name():
    with pytest.raises(ValueError, match="unknown setting 'cache-sise' in config file"):
        build(Settings, {"listen": "h:1", "cache-sise": "1G"})


def test_an_unknown_override_is_refused_by_name():
    with pytest.raises(ValueError, match="unknown setting 'colour'"):
        build(Settings, None, None, colour="red")


@pytest.mark.parametrize("values, flag", [
    ({"cache_size": "lots"}, "--cache-size"),
    ({"timeout_s": "soon"}, "--timeout"),
    ({"max_peers": "many"}, "--max-peers"),
    ({"max-peers": [1, 2]}, "--max-peers"),
    ({"ratio": "half"}, "--ratio"),
    ({"verbose": "yes"}, "--verbose"),
    ({"verbose": 1}, "--verbose"),
])
def test_a_bad_value_names_the_flag(values, flag):
    with pytest.raises(ValueError, match="bad value for %s" % flag):
        build(Settings, values)


def test_a_bad_command_line_value_names_the_flag():
    with pytest.raises(ValueError, match="bad value for --cache-size"):
        build(Settings, None, parse_args(["--cache-size", "20Q"]))


def test_an_infinite_size_from_a_json_file_names_the_flag():
    # json.loads turns 1e999 into float("inf"); int(inf) raises OverflowError, which
    # build() does not turn into the documented ValueError
    with pytest.raises(ValueError, match="bad value for --cache-size"):
        build(Settings, json.loads('{"cache_size": 1e999}'))


def test_a_boolean_is_not_taken_for_a_count():
    with pytest.raises(ValueError, match="bad value for --max-peers"):
        build(Settings, {"max_peers": True})


# add_arguments -----------------------------------------------------------------------

def test_every_field_gets_a_flag_whose_default_leaves_room_for_the_file():
    args = parse_args([])
    assert vars(args) == {f.name: None for f in dataclasses.fields(Settings)}


def test_a_custom_flag_name_is_used():
    assert parse_args(["--timeout", "1m"]).timeout_s == "1m"
    with pytest.raises((SystemExit, argparse.ArgumentError)):
        parse_args(["--timeout-s", "1m"])


def test_skipped_fields_get_no_flag():
    parser = argparse.ArgumentParser()
    add_arguments(parser, Settings, skip=["listen"])
    assert "listen" not in vars(parser.parse_args([]))


def test_help_shows_the_defaults_and_survives_percent_signs():
    @dataclass(frozen=True)
    class Pct:
        share: str = option("50%", "share of 100% bandwidth")
    parser = argparse.ArgumentParser()
    add_arguments(parser, Pct)
    add_arguments(parser, Settings)
    text = parser.format_help()
    assert "share of 100% bandwidth (default: 50%)" in text
    assert "cache size limit (default: 20M)" in text
    assert "(repeatable)" in text



@pytest.mark.parametrize("values, says", [
    ({"max_peers": -1}, "bad value for --max-peers: must be at least 0"),
    ({"timeout_s": "100000d"}, "bad value for --timeout: must be at most 3650d"),
    ({"cache_size": 0}, "bad value for --cache-size: must be at least 1"),
])
def test_a_value_validate_refuses_is_refused_when_the_user_gives_it(values, says):
    with pytest.raises(ValueError, match=says):
        build(Settings, values)
    with pytest.raises(ValueError, match=says):   # the same from the command line
        flag, value = next(iter(values.items()))
        build(Settings, None, parse_args([_flag_of(flag), str(value)]))


def test_values_the_program_sets_itself_are_not_range_checked():
    # Overrides come from the code (a get's seeder with seed_for 0, tests' tiny timeouts).
    assert build(Settings, None, None, cache_size=0).cache_size == 0


def _flag_of(name):
    return {"timeout_s": "--timeout"}.get(name, "--" + name.replace("_", "-"))


def test_zero_stays_a_count_where_no_range_says_otherwise():
    assert build(Settings, {"max_peers": 0}).max_peers == 0


def test_a_setting_on_by_default_is_turned_off_by_its_no_flag_and_its_flag_still_parses():
    assert build(Settings, args=parse_args([])).relay is True
    assert build(Settings, args=parse_args(["--no-relay"])).relay is False
    assert build(Settings, args=parse_args(["--relay"])).relay is True   # older command lines
    assert build(Settings, {"relay": False}, args=parse_args([])).relay is False   # a file
    assert build(Settings, {"relay": False}, args=parse_args(["--relay"])).relay is True
    assert build(Settings, args=parse_args([])).verbose is False   # off by default: no --no-verbose
    with pytest.raises(SystemExit):
        parse_args(["--no-verbose"])
