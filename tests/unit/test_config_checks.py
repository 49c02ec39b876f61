"""configcheck: settings text in, compiler-style findings out (pure: the host's facts
are passed in as values)."""
import dataclasses
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dfly import configcheck, options
from dfly.configcheck import DirFacts, guess_kind, parse
from dfly.peer.config import PeerConfig
from dfly.peer.daemon_config import DaemonConfig
from dfly.supernode.config import SupernodeConfig

try:
    import tomllib
except ImportError:   # Python before 3.11
    tomllib = None

KINDS = {"supernode": SupernodeConfig, "daemon": DaemonConfig, "get": PeerConfig}
GiB = 1 << 30


def findings(cls, text, **facts):
    return configcheck.check(cls, parse(text.encode()), **facts)


def lines(cls, text, level="error", **facts):
    """{line: message} of the findings at `level`."""
    return {f.line: f.message for f in findings(cls, text, **facts) if f.level == level}


def json_lines(**values) -> str:
    """A settings file with one key per line, the first on line 2."""
    return "{\n" + ",\n".join("  %s: %s" % (json.dumps(k), json.dumps(v)) for k, v in values.items()) \
        + "\n}\n"


# parsing: where things are ----------------------------------------------------------------

def test_json_keys_are_found_on_their_lines_whatever_the_layout():
    text = '{"a": 1,\n\n  "b" :\n [1,\n {"x": "}"}],\n"c\\"d": {"e": [\n]}, "f": "\\n"\n}'
    parsed = parse(text.encode())
    assert parsed.lines == {"a": 1, "b": 3, 'c"d': 6, "f": 7}
    assert parsed.items["b"] == [4, 5]


def test_items_of_a_list_are_found_on_their_lines():
    parsed = parse(b'{"proxy_rule": [\n  "p2p a",\n\n  "p2p b"], "x": []}')
    assert parsed.items == {"proxy_rule": [2, 4], "x": []}


def test_a_key_given_twice_is_a_warning_on_its_second_line():
    found = findings(DaemonConfig, '{"parallel": 2,\n "parallel": 3}')
    assert [(f.line, f.level) for f in found if "more than once" in f.message] == [(2, "warning")]


@pytest.mark.parametrize("text, line, column", [
    ('{\n  "listen": "a",\n  "cache_size" "1G"\n}', 3, 16),
    ('{\n  "listen": "a",\n}', 3, 1),
    ('{"a": [1, 2', 1, 12),
])
def test_a_json_syntax_error_says_line_and_column(text, line, column):
    (finding,) = parse(text.encode()).findings
    assert (finding.line, finding.column, finding.level) == (line, column, "error")
    assert "not valid JSON" in finding.message


@pytest.mark.skipif(tomllib is None, reason="TOML needs Python 3.11+")
def test_a_toml_syntax_error_says_line_and_column():
    (finding,) = parse(b'listen = ":8002"\ncache_size = \n', tomllib.loads, is_toml=True).findings
    assert (finding.line, finding.column) == (2, 14)
    assert finding.message.startswith("not valid TOML") and "(at line" not in finding.message


@pytest.mark.skipif(tomllib is None, reason="TOML needs Python 3.11+")
def test_toml_keys_and_table_headers_are_found_on_their_lines():
    text = b'# c\nlisten = ":8002"\n\n"cache_size"="1G"\n[table]\nparallel = 2\n'
    parsed = parse(text, tomllib.loads, is_toml=True)
    assert parsed.lines == {"listen": 2, "cache_size": 4, "table": 5}


@pytest.mark.skipif(tomllib is None, reason="TOML needs Python 3.11+")
def test_a_toml_table_is_an_unknown_setting_on_its_header_line():
    text = b'listen = ":8002"\n\n[tls]\ncert = "c.pem"\n[[cluster]]\nx = 1\n'
    found = configcheck.check(SupernodeConfig, parse(text, tomllib.loads, is_toml=True))
    assert [(f.line, f.message.split(" (")[0]) for f in found] == [
        (3, "unknown setting 'tls'"),
        (5, "bad value for --cluster: expected text or a list of text, got an object")]


def test_a_relative_data_dir_is_a_warning():
    found = findings(DaemonConfig, json_lines(data_dir="cache/dfly", supernode=["a:1"]))
    assert [(f.level, f.line) for f in found] == [("warning", 2)] and "relative" in found[0].message


def test_toml_without_a_reader_is_one_clear_error():
    (finding,) = parse(b'listen = ":8002"\n', None, is_toml=True).findings
    assert "TOML" in finding.message and "Python 3.11+" in finding.message


@pytest.mark.parametrize("raw, says", [
    (b"", "empty"), (b"  \n", "empty"), (b"[1, 2]", "must be a JSON object"),
    (b'"text"', "must be a JSON object"), (b"\xff\xfe\x00junk", "not UTF-8"),
    (b"[" * 100000, "nested too deeply"), (b" " * (configcheck.MAX_FILE_BYTES + 1), "too large"),
], ids=["empty", "blank", "list", "text", "binary", "deep", "huge"])
def test_a_file_that_is_no_settings_at_all_is_one_error(raw, says):
    (finding,) = parse(raw).findings
    assert finding.level == "error" and says in finding.message
    assert parse(raw).values is None


def test_a_number_too_long_to_read_is_placed_on_its_line_and_column():
    (finding,) = parse(b'{"parallel": 2,\n "cache_size": ' + b"7" * 5000 + b"}").findings
    assert (finding.line, finding.column, finding.level) == (2, 16, "error")
    assert finding.message.startswith("not valid JSON")


def test_bytes_that_are_not_utf8_are_placed_on_their_line_and_column():
    (finding,) = parse(b'{\n  "a": "x\xff"}').findings
    assert (finding.line, finding.column) == (2, 10)


# settings, one at a time -------------------------------------------------------------------

@pytest.mark.parametrize("key, suggested", [
    ("cache_sise", "cache_size"), ("source_timeout", "source_timeout_s"),
    ("source-timeout", "source_timeout_s"), ("listne", "listen"),
])
def test_an_unknown_key_is_an_error_with_a_did_you_mean(key, suggested):
    found = lines(SupernodeConfig, json_lines(listen=":8002", **{key: "1"}))
    assert found == {3: "unknown setting %r (did you mean %r?)" % (key, suggested)}


def test_an_unknown_key_far_from_any_says_no_guess():
    assert lines(SupernodeConfig, json_lines(zzzzqqq=1)) == {2: "unknown setting 'zzzzqqq'"}


def test_many_unknown_keys_are_listed_up_to_a_bound_then_counted():
    text = json.dumps({"key%d" % i: i for i in range(5000)}, indent=0)
    found = lines(SupernodeConfig, text)
    assert len(found) == configcheck.MAX_UNKNOWN_LISTED + 1
    assert found[configcheck.MAX_UNKNOWN_LISTED + 2] == (
        "%d more unknown settings (is this the file of another program?)"
        % (5000 - configcheck.MAX_UNKNOWN_LISTED))


def test_keys_with_dashes_are_the_same_settings():
    assert lines(SupernodeConfig, json_lines(**{"cache-size": "1G", "max-uploads": 2})) == {}


@pytest.mark.parametrize("key, value, says", [
    ("cache_size", "lots", "bad value for --cache-size: not a size"),
    ("source_rate_limit", "20 Mbit", "bad value for --source-rate-limit: not a size"),
    ("peer_ttl_s", "5 minutes", "bad value for --peer-ttl: not a duration"),
    ("peer_ttl_s", -1, "bad value for --peer-ttl: must be a finite, non-negative number"),
    ("listen", "::1:8002", "bad value for --listen: '::1:8002': an IPv6 address needs brackets"),
    ("log_level", "loud", "bad value for --log-level: 'loud' is not one of"),
    ("data_dir", 5, "bad value for --data-dir: expected text, got a number"),
    ("data_dir", {"a": 1}, "bad value for --data-dir: expected text, got an object"),
    ("max_uploads", "x", "bad value for --max-uploads: invalid literal"),
    ("max_uploads", 1.5, "bad value for --max-uploads: expected a whole number"),
    ("max_uploads", True, "bad value for --max-uploads: max_uploads must be a number"),
    ("cluster", [1], "bad value for --cluster: expected text or a list of text, got a number"),
    ("cache_size", [], "bad value for --cache-size: expected a size, got a list"),
    ("scrub_rate", None, "bad value for --scrub-rate: expected a size, got null"),
])
def test_a_value_that_does_not_parse_names_its_flag_on_its_line(key, value, says):
    found = lines(SupernodeConfig, json_lines(max_connections=10, **{key: value}))
    assert list(found) == [3] and found[3].startswith(says), found


@pytest.mark.parametrize("key, value, says", [
    ("max_uploads", 0, "must be at least 1"), ("max_connections", 0, "must be at least 1"),
    ("cache_size", 0, "must be at least 1"), ("peer_ttl_s", 0, "must be above 0"),
    ("source_timeout_s", "0s", "must be above 0"), ("failure_ttl_s", "100000d", "must be at most"),
    ("cache_size", "2000000T", "must be at most"), ("max_new_tasks_per_client", 10 ** 12,
                                                    "must be at most"),
])
def test_a_value_out_of_range_is_an_error(key, value, says):
    found = lines(SupernodeConfig, json_lines(**{key: value}))
    assert says in found[2]


def test_zero_is_fine_where_it_means_none():
    assert lines(SupernodeConfig, json_lines(source_rate_limit=0, failure_ttl_s=0, scrub_rate=0,
                                             max_new_tasks_per_client=0)) == {}


# settings against each other ---------------------------------------------------------------

@pytest.mark.parametrize("listen, upload, clash", [
    ("127.0.0.1:7000", "127.0.0.1:7000", True), ("127.0.0.1:7000", "0.0.0.0:7000", True),
    ("[::]:7000", "127.0.0.1:7000", True), ("127.0.0.1:7000", "127.0.0.2:7000", False),
    ("0.0.0.0:7000", "[::1]:7000", False), ("127.0.0.1:7000", "127.0.0.1:0", False),
    ("127.0.0.1:7000", "127.0.0.1:7001", False),
])
def test_two_listeners_on_one_port_are_an_error(listen, upload, clash):
    found = lines(DaemonConfig, json_lines(listen=listen, upload_listen=upload,
                                           supernode=["127.0.0.1:8002"]))
    assert (3 in found and "are one port" in found[3]) == clash, found


@pytest.mark.parametrize("values, clash", [
    (dict(listen="127.0.0.1:7946"), "--listen 127.0.0.1:7946 and --gossip-listen (default) port 7946"),
    (dict(listen="127.0.0.1:7000", gossip_listen="0.0.0.0:7000", advertise="127.0.0.1"),
     "--listen 127.0.0.1:7000 and --gossip-listen 0.0.0.0:7000"),
    (dict(listen="127.0.0.1:7000"), ""), (dict(listen="127.0.0.1:7946", gossip=False), ""),
])
def test_the_gossip_port_is_a_listener_too(values, clash):
    values = dict(dict(gossip=True, gossip_key_file="/k"), **values)
    errors = [f.message for f in findings(DaemonConfig, json_lines(**values)) if f.level == "error"]
    assert [m for m in errors if "one port" in m] == ([clash + " are one port: only one can "
                                                       "listen there"] if clash else [])


def test_gossip_needs_a_key_file_and_an_address_the_others_reach():
    found = lines(DaemonConfig, json_lines(gossip=True, listen="0.0.0.0:65001"))
    assert found == {2: "--gossip needs --gossip-key-file (the cluster's shared key)",
                     3: "--gossip on every address needs --advertise: the address other members reach"}
    assert lines(DaemonConfig, json_lines(gossip=True, gossip_key_file="/k", listen="0.0.0.0:65001",
                                          advertise="127.0.0.1")) == {}
    assert "--gossip-key-file /k cannot be read" in lines(
        SupernodeConfig, json_lines(gossip=True, gossip_key_file="/k"), readable={"/k": False})[3]


def test_a_gossip_daemon_without_a_supernode_is_no_warning():
    assert findings(DaemonConfig, json_lines(gossip=True, gossip_key_file="/k")) == []


def test_an_upload_limit_above_the_total_contradicts_it():
    text = json_lines(total_rate_limit="10M", upload_rate_limit="20M")
    assert "--upload-rate-limit 20M is above --total-rate-limit 10M" in lines(DaemonConfig, text)[3]
    unlimited_uploads = json_lines(total_rate_limit="10M", supernode=["127.0.0.1:8002"])
    assert lines(DaemonConfig, unlimited_uploads) == {}
    assert lines(DaemonConfig, json_lines(total_rate_limit="20M", upload_rate_limit="10M",
                                          supernode=["127.0.0.1:8002"])) == {}


def test_a_per_client_share_above_its_whole_is_a_warning():
    found = lines(SupernodeConfig, json_lines(max_source_fetches=4, max_source_fetches_per_client=8),
                  level="warning")
    assert "above --max-source-fetches 4" in found[3]


def test_a_proxy_rule_whose_regex_does_not_compile_is_an_error_on_its_line():
    text = '{"proxy_rule": [\n "p2p \\\\.iso$",\n "p2p (unclosed",\n "teleport x"]}'
    found = lines(DaemonConfig, text)
    assert "bad regex" in found[3] and "ACTION" in found[4]


@pytest.mark.parametrize("rules, shadowed", [
    (["p2p \\.iso$", "direct \\.iso$"], [2]),
    (["direct .*", "p2p /blobs/", "p2p \\.iso$"], [2, 3]),
    (["p2p ^", "direct x"], [2]),
    (["p2p /blobs/", "direct /blobs/sha256"], []),    # shadowed in fact, but not provably here
    (["p2p \\.iso$", "direct \\.ISO$", "p2p (?i)\\.iso$"], []),
    (["p2p a", "p2p b", "direct a|b"], []),
])
def test_a_proxy_rule_an_earlier_rule_provably_shadows_is_an_error(rules, shadowed):
    text = "{\n  \"proxy_rule\": [\n" + ",\n".join("    " + json.dumps(r) for r in rules) + "]}"
    found = lines(DaemonConfig, text)
    assert sorted(line - 2 for line, message in found.items() if "never used" in message) == shadowed


def test_proxy_rules_beyond_what_a_person_writes_are_refused_without_compiling_them():
    many = json.dumps({"proxy_rule": ["p2p a%d" % i for i in range(configcheck.MAX_RULES + 1)]})
    assert lines(DaemonConfig, many) == {1: "%d proxy rules: at most %d (every proxied URL is tried "
                                            "against each in turn)" % (configcheck.MAX_RULES + 1,
                                                                       configcheck.MAX_RULES)}
    long_one = json.dumps({"proxy_rule": ["p2p x", "p2p " + "(a|b)*" * 10000]})
    assert lines(DaemonConfig, long_one)[1].startswith("proxy rule 2 is 60004 characters long")


@pytest.mark.parametrize("url, bad", [
    ("https://registry.example:5000", False), ("http://[::1]:5000", False),
    ("registry.example:5000", True), ("ftp://registry.example", True), ("https://", True),
    ("http://[::1", True),
])
def test_a_mirror_that_is_not_a_url_is_an_error(url, bad):
    found = lines(DaemonConfig, json_lines(registry_mirror=url, supernode=["127.0.0.1:8002"]))
    assert (2 in found) == bad, found


def test_a_cluster_list_without_this_member_is_an_error():
    secret = "s" * 32
    members = ["127.0.0.1:8002", "127.0.0.2:8002"]
    ok = json_lines(listen="127.0.0.1:8002", cluster=members, cluster_secret=secret)
    assert lines(SupernodeConfig, ok) == {}
    advertised = json_lines(listen="0.0.0.0:8002", advertise="127.0.0.2:8002", cluster=members,
                            cluster_secret=secret)
    assert lines(SupernodeConfig, advertised) == {}
    missing = json_lines(listen="127.0.0.3:8002", cluster=members, cluster_secret=secret)
    assert "127.0.0.3:8002 (--advertise, else --listen) is not among" in lines(SupernodeConfig,
                                                                               missing)[3]


def test_a_cluster_needs_a_secret_and_a_short_one_is_a_warning():
    no_secret = json_lines(listen="127.0.0.1:8002", cluster=["127.0.0.1:8002"])
    assert "needs --cluster-secret" in lines(SupernodeConfig, no_secret)[3]
    short = json_lines(listen="127.0.0.1:8002", cluster=["127.0.0.1:8002"], cluster_secret="abc")
    assert "short" in lines(SupernodeConfig, short, level="warning")[4]


def test_a_supernode_without_a_port_is_an_error_on_its_item_line():
    text = '{"supernode": [\n  "127.0.0.1:8002",\n  "127.0.0.2"]}'
    assert "is not HOST:PORT of a supernode" in lines(DaemonConfig, text)[3]


@pytest.mark.parametrize("cls, values, says", [
    (SupernodeConfig, dict(advertise="127.0.0.1:8002"), "loopback"),
    (DaemonConfig, dict(advertise="::1", supernode=["127.0.0.1:8002"]), "loopback"),
    (PeerConfig, dict(seed_for_s=0), "seeding is off"),
    (DaemonConfig, dict(parallel=2), "seeding is off"),
    (DaemonConfig, dict(insecure_upstream=True, supernode=["127.0.0.1:8002"]), "not checked"),
])
def test_risky_but_legal_choices_are_warnings(cls, values, says):
    found = findings(cls, json_lines(**values))
    assert [f.level for f in found] == ["warning"] and says in found[0].message


def test_no_back_source_without_a_supernode_can_never_download():
    assert "no download can ever succeed" in lines(PeerConfig, json_lines(no_back_source=True))[2]


def test_tls_settings_that_cannot_work_are_errors():
    assert "go together" in lines(SupernodeConfig, json_lines(tls_cert="/c.pem"))[2]
    assert "--tls-front needs" in lines(DaemonConfig, json_lines(tls_front=True, supernode=["a:1"]))[2]
    unreadable = json_lines(tls_cert="/c.pem", tls_key="/k.pem")
    assert "--tls-key /k.pem cannot be read" in lines(SupernodeConfig, unreadable, readable={
        "/c.pem": True, "/k.pem": False})[3]


# the host's facts ------------------------------------------------------------------------

def facts(path, exists=True, is_dir=True, writable=True, free=100 * GiB):
    return {path: DirFacts(path, exists, is_dir, writable, free)}


@pytest.mark.parametrize("fact, says", [
    (dict(exists=False, writable=False), "does not exist and cannot be created"),
    (dict(writable=False), "is not writable"),
    (dict(is_dir=False), "is not a directory"),
])
def test_a_data_dir_this_host_cannot_use_is_an_error(fact, says):
    found = lines(DaemonConfig, json_lines(data_dir="/d", supernode=["a:1"]), dirs=facts("/d", **fact))
    assert found == {2: "data dir /d %s" % says}


def test_a_missing_data_dir_that_can_be_created_is_fine():
    assert findings(DaemonConfig, json_lines(data_dir="/d", supernode=["a:1"]),
                    dirs=facts("/d", exists=False, is_dir=False)) == []


def test_less_free_space_than_the_cache_limit_is_an_error_when_the_file_sets_it():
    text = json_lines(data_dir="/d", cache_size="50G", supernode=["a:1"])
    found = lines(DaemonConfig, text, dirs=facts("/d", free=10 * GiB))
    assert found == {3: "the disk of data dir /d has 10G free, less than --cache-size 50G"}


def test_less_free_space_than_the_default_cache_limit_is_a_warning():
    found = findings(DaemonConfig, json_lines(supernode=["a:1"]), dirs=facts("/home/u/dfly", free=GiB),
                     default_data_dir="/home/u/dfly")
    assert [(f.level, f.line) for f in found] == [("warning", 1)]
    assert "less than --cache-size 20G (the default)" in found[0].message


def test_the_supernode_default_data_dir_is_its_own_folder():
    assert configcheck.data_dir_of(SupernodeConfig, {}, "/home/u/dfly") == "/home/u/dfly/supernode"
    assert configcheck.data_dir_of(DaemonConfig, {"data-dir": "/x"}, "/home/u/dfly") == "/x"
    found = lines(SupernodeConfig, "{}", dirs=facts("/home/u/dfly/supernode", writable=False),
                  default_data_dir="/home/u/dfly")
    assert "/home/u/dfly/supernode is not writable" in found[1]


# which program --------------------------------------------------------------------------

@pytest.mark.parametrize("values, name, kind", [
    ({"cluster": []}, "x.json", "supernode"), ({"registry_mirror": "http://r"}, "x.json", "daemon"),
    ({"seed_for_s": 0}, "x.json", "get"), ({"listen": ":1"}, "x.json", None),
    ({"listen": ":1"}, "/etc/dfly/daemon.json", "daemon"), ({}, "supernode.toml", "supernode"),
    ({}, "dfly.json", None), ({"cache_sise": 1, "cluster": []}, "x.json", "supernode"),
])
def test_the_program_is_told_by_the_keys_else_by_the_file_name(values, name, kind):
    assert guess_kind(values, KINDS, name) == kind


# never a crash -----------------------------------------------------------------------------

NASTY = [None, True, False, 0, -1, 1.5, -0.0, float("inf"), float("-inf"), float("nan"), 10 ** 400,
         1e308, "", " ", "-1", "nan", "inf", "1e999", "9" * 400, "\x00", "[::1", "::1:80",
         "http://[::1", "p2p (", "p2p .*", [], [None], [1, "a"], [[]], {}, {"a": {"b": []}}]


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_nasty_value_at_every_key_is_a_finding_never_a_crash(kind):
    for f in dataclasses.fields(KINDS[kind]):
        for value in NASTY:
            text = json.dumps({f.name: value})
            for finding in findings(KINDS[kind], text, dirs=facts("/d"), readable={}):
                assert finding.line == 1 and finding.level in ("error", "warning"), (text, finding)


_FIELDS = sorted({f.name for cls in KINDS.values() for f in dataclasses.fields(cls)})
_LEAVES = (st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
           | st.sampled_from(["1G", "-1", "5m", "nan", "inf", "1e999", "9" * 400, "0", "[::1]:0",
                              "http://[::1", "p2p (", "p2p .*", ":8002", "0.0.0.0:0", "a,b"]))
_VALUES = _LEAVES | st.lists(_LEAVES, max_size=3) | st.dictionaries(st.text(max_size=4), _LEAVES,
                                                                    max_size=2)


@settings(max_examples=120, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(st.dictionaries(st.sampled_from(_FIELDS) | st.text(max_size=6), _VALUES, max_size=8),
       st.sampled_from(sorted(KINDS)), st.sampled_from([None, 1, "\t"]))
def test_wrong_types_at_every_key_are_findings_never_a_crash(values, kind, indent):
    text = json.dumps(values, indent=indent).encode()
    parsed = parse(text)
    found = configcheck.check(KINDS[kind], parsed, facts("/d"), {}, "/d")
    for finding in found:
        assert finding.level in ("error", "warning") and finding.line >= 1
    if parsed.values is not None:
        assert set(parsed.lines) == set(values)


@settings(max_examples=150, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(st.binary(max_size=300) | st.text(max_size=300).map(str.encode), st.booleans(),
       st.sampled_from(sorted(KINDS)))
def test_any_bytes_are_findings_never_a_crash(raw, is_toml, kind):
    parsed = parse(raw, tomllib.loads if tomllib else None, is_toml=is_toml)
    configcheck.check(KINDS[kind], parsed, facts("/d"), {}, "/d")



def test_every_bound_names_a_setting_of_some_program():
    names = {f.name for cls in KINDS.values() for f in dataclasses.fields(cls)}
    assert set(options.RANGES) | set(options.POSITIVE_DURATIONS) <= names


def test_a_bad_subscribe_pattern_is_an_error_on_its_line_and_needs_a_supernode():
    text = '{"supernode": ["127.0.0.1:8002"], "subscribe": [\n "r:5000/library/*",\n "a b",\n "' \
           + "*a" * 17 + '"]}'
    found = lines(DaemonConfig, text)
    assert "no spaces" in found[3] and "at most 16" in found[4] and 2 not in found
    alone = lines(DaemonConfig, '{"subscribe": ["r/*"]}')
    assert any("needs --supernode" in m for m in alone.values())
    platform = lines(DaemonConfig, '{"supernode": ["127.0.0.1:8002"],\n "subscribe_platform": ["amd64"]}')
    assert "os/arch" in platform[2]
