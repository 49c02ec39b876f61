"""Every parser that sees network (or config file) input, fed what an attacker
would send: each only ever returns a value or raises its typed error (a
DflyError, or the ValueError family its docstring names), never anything else
a listener would turn into a 500 or a `dfly` command into a traceback.

Property-based (Hypothesis): inputs are drawn near the valid shape (a real
field name with a value of any JSON type, a digit string with a unit glued on)
as well as at random, so the deep branches are reached too. Bugs found here
are pinned with @example. Example counts are bounded so the tier stays fast.
"""
import json
import string
import warnings
from urllib.parse import urlsplit

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from dfly import options
from dfly.errors import BadRequest
from dfly.httpd import Request, parse_server_timing, piece_number
from dfly.peer.config import PeerConfig
from dfly.peer.daemon_config import DaemonConfig
from dfly.protocol import address, bearer, oci, proxyrules
from dfly.protocol.digest import parse_digest
from dfly.protocol.handoff import HandoffRequest
from dfly.protocol.messages import (
    PROTOCOL_VERSION,
    HeartbeatReply,
    RegisterRequest,
    ScheduleRequest,
    TaskState,
)
from dfly.protocol.ranges import RangeNotSatisfiable, parse_range
from dfly.protocol.task import TASK_ID, filtered_url, split_filters, task_id
from dfly.supernode.config import SupernodeConfig

FAST = settings(max_examples=80, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])

# Values of every JSON type, NaN and the infinities included (Python's json accepts them).
scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=40))
json_values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)),
    max_leaves=12)
# Text with what breaks parsers: separators, controls, non-ASCII digits, encoded dots.
FRAGMENTS = list(string.printable) + ["\x00", "\u00b2", "\u0663", "\uff11", "\u212a", "\u0130",
                                      "%2e", "%2E%2e", "..", "../", "\u2028", "\ud7ff", "9" * 30]
hostile_text = st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.characters(blacklist_categories=("Cs",))),
                        max_size=30).map("".join)
urls = st.one_of(
    hostile_text,
    st.builds(lambda scheme, host, rest: scheme + "://" + host + rest,
              st.sampled_from(["http", "https", "HTTP", "ftp", "file", ""]),
              st.one_of(hostile_text, st.sampled_from(["127.0.0.1:1", "[::1]:1", "[", "[::1", "a]",
                                                        "h:99999", "h:-1", "u:p@h"])),
              hostile_text))
digests = st.one_of(hostile_text, st.builds(lambda a, h: a + ":" + h,
                                            st.sampled_from(["sha256", "SHA256", "sha512", "md5", "x"]),
                                            st.text(alphabet="0123456789abcdefABCDEF \n", max_size=130)))


def near(valid: dict, extra=json_values):
    """Dicts with the keys of `valid`, each value either the valid one or anything."""
    return st.fixed_dictionaries({}, optional={k: st.one_of(st.just(v), extra) for k, v in valid.items()})


def only_typed(call, *typed):
    """Run call(); a return, or one of `typed` raised, is fine (None then); anything else fails."""
    try:
        return call()
    except typed:
        return None


# JSON messages from peers ----------------------------------------------------------------

VALID_PEER = {"id": "p-1", "port": 8001, "host": "127.0.0.1"}
VALID_REGISTER = {"url": "http://127.0.0.1:1/f", "digest": "sha256:" + "a" * 64, "identifier": "x",
                  "headers": {"X-A": "b"}, "filters": ["sig"], "version": PROTOCOL_VERSION}


@FAST
@given(near(VALID_REGISTER, st.one_of(json_values, urls)), st.one_of(near(VALID_PEER), json_values))
@example({"url": "http://[abc/x?a=1", "filters": ["a"]}, VALID_PEER)
@example({"url": "http://127.0.0.1:1/v\x0e/blobs"}, VALID_PEER)
@example({"url": "http://127.0.0.1:1/\xff"}, VALID_PEER)
@example({"url": "http://127.0.0.1:@/x"}, VALID_PEER)
def test_register_request_is_a_value_or_bad_request(body, peer):
    body = dict(body, peer=peer)
    request = only_typed(lambda: RegisterRequest.parse(body), BadRequest)
    if request is not None:   # what the supernode does next with it must not fail either
        assert TASK_ID.match(task_id(request.url, request.filters, request.digest, request.identifier))
        # what urllib's request line is made of (found by the socket fuzzer: a URL with
        # a control character left its task running forever, the fetch thread dead)
        ("GET %s HTTP/1.1" % request.url).encode("ascii")
        assert not any(c <= " " or c == "\x7f" for c in request.url)
        parts = urlsplit(request.url)
        if parts.scheme in ("http", "https"):   # what urllib hands http.client as host:port
            assert parts.hostname and "@" not in parts.netloc
            i, j = parts.netloc.rfind(":"), parts.netloc.rfind("]")
            assert i <= j or parts.netloc[i + 1:] in ("",) or parts.netloc[i + 1:].isdigit()
        assert RegisterRequest.parse(json.loads(json.dumps(request.to_json()))) == request


VALID_SCHEDULE = {"peer_id": "p-1", "done": [0, 1], "failed": [{"num": 1, "holder": "h", "reason": ""}],
                  "want": 4, "sequential": True, "wait_s": 1.5, "content_version": "v"}


@FAST
@given(near(VALID_SCHEDULE, st.one_of(json_values, st.lists(st.one_of(json_values, near(
    {"num": 1, "holder": "h", "reason": "r"})), max_size=3))))
def test_schedule_request_is_a_value_or_bad_request(body):
    request = only_typed(lambda: ScheduleRequest.parse(body), BadRequest)
    if request is not None:
        assert ScheduleRequest.parse(json.loads(json.dumps(request.to_json()))) == request


VALID_PIECE = {"num": 0, "start": 0, "size": 10, "sha256": "a" * 64, "holder": "h", "addr": "127.0.0.1:1"}
VALID_STATE = {"state": "running", "length": 10, "piece_size": 10, "piece_count": 1, "error": "",
               "error_kind": "", "waited_s": 0.1, "content_version": "v"}


@FAST
@given(near(VALID_STATE), st.one_of(json_values, st.lists(st.one_of(near(VALID_PIECE), json_values),
                                                          max_size=3)))
@example({}, None)
@example(dict(VALID_STATE, length="10"), [dict(VALID_PIECE, num="x")])
def test_a_supernode_reply_is_a_task_state_or_bad_request(body, pieces):
    """A peer parses what a supernode (or something posing as one) answered."""
    state = only_typed(lambda: TaskState.parse(dict(body, pieces=pieces)), BadRequest)
    if state is not None:
        assert isinstance(state.state, str)
        assert state.length is None or isinstance(state.length, int)
        for piece in state.pieces:
            assert isinstance(piece.num, int) and isinstance(piece.size, int)
            assert piece.addr is None or isinstance(piece.addr, str)


@FAST
@given(near({"content_version": "v", "check": [{"num": 0, "sha256": "a" * 64}]},
            st.one_of(json_values, st.lists(st.one_of(json_values, near({"num": 1, "sha256": "b" * 64})),
                                            max_size=3))))
def test_a_heartbeat_reply_is_parsed_whatever_it_holds(body):
    """Advice from the supernode to a seeder: what is not well formed is skipped."""
    reply = HeartbeatReply.parse(body)
    assert isinstance(reply.content_version, str)
    assert all(isinstance(c.num, int) and c.num >= 0 and len(c.sha256) == 64 for c in reply.checks)


@FAST
@given(st.binary(max_size=64) | st.text(max_size=64).map(str.encode))
@example(b"[" * 100000)
@example(b"\xff")
def test_a_request_body_is_a_json_object_or_bad_request(body):
    request = Request("POST", "/", {}, {}, body, ("127.0.0.1", 1))
    value = only_typed(request.json, BadRequest)
    assert value is None or isinstance(value, dict)


VALID_HANDOFF = {"url": "http://127.0.0.1:1/f", "output": "/tmp/out", "digest": "sha256:" + "a" * 64,
                 "headers": {"X-A": "b"}, "filters": ["sig"], "identifier": "i"}


@FAST
@given(near(VALID_HANDOFF, st.one_of(json_values, urls, hostile_text)))
def test_handoff_request_is_a_value_or_bad_request(body):
    request = only_typed(lambda: HandoffRequest.parse(body), BadRequest)
    if request is not None:
        assert request.output.startswith("/") and "\0" not in request.output
        assert HandoffRequest.parse(json.loads(json.dumps(request.to_json()))) == request


# HTTP headers and paths ------------------------------------------------------------------

range_headers = st.one_of(
    hostile_text,
    st.builds(lambda unit, a, b: "%s=%s-%s" % (unit, a, b),
              st.sampled_from(["bytes", "BYTES", "items", " bytes "]),
              st.one_of(st.integers(-5, 10 ** 25).map(str), st.just(""), hostile_text),
              st.one_of(st.integers(-5, 10 ** 25).map(str), st.just(""), hostile_text)))


@FAST
@given(range_headers, st.integers(0, 1 << 45))
@example("bytes=\u0663-", 10)
@example("bytes=-0", 0)
def test_a_range_header_is_a_range_inside_the_body_none_or_416(header, length):
    span = only_typed(lambda: parse_range(header, length), RangeNotSatisfiable)
    if span is not None:
        first, last = span
        assert 0 <= first <= last < length


registry_paths = st.one_of(
    hostile_text.map(lambda t: "/v2/" + t),
    st.builds(lambda name, kind, ref: "/v2/%s/%s/%s" % (name, kind, ref),
              st.one_of(hostile_text, st.sampled_from(["team/app", "a" * 300, "A/b", "a//b", "../x"])),
              st.sampled_from(["blobs", "manifests", "tags", "referrers"]),
              st.one_of(hostile_text, digests, st.sampled_from(["latest", "list", "sha256:" + "a" * 64]))))


@FAST
@given(registry_paths)
def test_a_registry_path_is_a_request_none_or_bad_name(path):
    parsed = only_typed(lambda: oci.parse_path(path), oci.BadName)
    if parsed is not None and parsed.kind in ("blob", "manifest"):
        # nothing that can leave the path it was found in reaches upstream
        assert ".." not in parsed.name and "?" not in parsed.reference and "/" not in parsed.reference
        assert oci.NAME.match(parsed.name)


challenge_params = st.lists(st.tuples(
    st.sampled_from(["realm", "service", "scope", "Realm", "x", "=", ""]),
    st.one_of(hostile_text, st.sampled_from(['"https://a/t"', '"http://127.0.0.1:1/t?x=1"', '"\\"', '"',
                                             "https://a/t", '"http://[::1/"']))), max_size=5)


@FAST
@given(st.sampled_from(["Bearer ", "bearer  ", "Basic realm=x, Bearer ", "Bearer", ""]), challenge_params)
@example("Bearer ", [("realm", '"http://[::1/t"')])
def test_a_bearer_challenge_is_a_challenge_or_none(prefix, params):
    header = prefix + ",".join("%s=%s" % kv for kv in params)
    challenge = only_typed(lambda: bearer.parse_challenge(header))
    if challenge is not None:
        assert challenge.realm.lower().startswith(("http://", "https://"))
        target = bearer.token_target(challenge)
        assert target.startswith("/") and "\r" not in target and "\n" not in target


@FAST
@given(st.one_of(st.binary(max_size=80), near({"token": "t", "access_token": "a", "expires_in": 30}).map(
    lambda d: json.dumps(d).encode())))
@example(b'{"token": "t", "expires_in": NaN}')        # found by a mutation run's clean pass
@example(b'{"token": "t", "expires_in": Infinity}')
def test_a_token_reply_is_a_token_or_none(body):
    reply = only_typed(lambda: bearer.parse_token_reply(body))
    if reply is not None:
        token, expires = reply
        assert token and "\n" not in token and expires > 0


@FAST
@given(st.one_of(urls, hostile_text), st.sampled_from(["GET", "HEAD", "CONNECT", "get"]))
@example("http://[::1", "GET")
@example("http://h:\u0663/", "GET")
@example("http://127.0.0.1\x00:80/", "GET")   # found by the socket fuzzer: a 500 in the proxy
@example("127..1:80", "CONNECT")               # found by the socket fuzzer: idna's UnicodeError
def test_a_proxied_target_is_split_or_value_error(url, method):
    """What the proxy connects to: a host the resolver and http.client take as it is."""
    rules = proxyrules.parse_rules(proxyrules.DEFAULT_RULES + ("p2p+https \\.bin$",))
    proxyrules.decide(rules, method, url)
    split = only_typed(lambda: proxyrules.split_target(url), ValueError)
    if split is not None:
        scheme, host, port, rest = split
        assert scheme in ("http", "https") and 0 < port < 65536 and rest.startswith("/")
        _assert_connectable(host)
    authority = only_typed(lambda: proxyrules.split_authority(url), ValueError)
    if authority is not None:
        assert 0 < authority[1] < 65536
        _assert_connectable(authority[0])


def _assert_connectable(host):
    """http.client and the resolver take it without an exception of their own."""
    assert host and not any(c <= " " or c == "\x7f" for c in host), host
    if ":" not in host:
        host.encode("idna")   # what socket.getaddrinfo does with it first


@FAST
@given(st.lists(st.one_of(hostile_text, st.builds(lambda a, p: a + " " + p, st.sampled_from(
    ["p2p", "direct", "p2p+https", "P2P", ""]), hostile_text)), max_size=3))
@example(["p2p (?P<x"])
def test_proxy_rules_parse_or_value_error(texts):
    with warnings.catch_warnings():   # re's FutureWarning on a random "[[" says nothing here
        warnings.simplefilter("ignore", FutureWarning)
        rules = only_typed(lambda: proxyrules.parse_rules(texts), ValueError)
    if rules is not None:
        assert [str(r) for r in proxyrules.parse_rules([str(r) for r in rules])] == [str(r) for r in rules]


# identities, numbers, addresses ----------------------------------------------------------

@FAST
@given(digests)
@example("sha256:" + "\u0663" * 64)
def test_a_digest_parses_or_value_error(text):
    parsed = only_typed(lambda: parse_digest(text), ValueError)
    if parsed is not None:
        algorithm, hexdigest = parsed
        assert all(c in "0123456789abcdef" for c in hexdigest)


@FAST
@given(urls, st.lists(hostile_text, max_size=3), st.one_of(st.none(), digests),
       st.one_of(st.none(), hostile_text))
def test_a_task_identity_is_an_id_or_bad_request(url, filters, digest, identifier):
    names = split_filters(filters)
    assert all(n and "&" not in n and "," not in n for n in names)
    tid = only_typed(lambda: task_id(url, names, digest, identifier), BadRequest)
    assert tid is None or TASK_ID.match(tid)
    only_typed(lambda: filtered_url(url, names), BadRequest)


@FAST
@given(hostile_text)
@example("\u00b2")
@example("9" * 40)
def test_a_piece_number_is_a_small_integer_or_bad_request(text):
    num = only_typed(lambda: piece_number(text), BadRequest)
    assert num is None or 0 <= num < 10 ** 12


addresses = st.one_of(hostile_text, st.sampled_from(
    ["[::1]:80", "[::1", "h:\u0663", ":", "h:99999", "::1", "127..1:80", "a" * 64 + ".example:1",
     "[fe80::1%eth0]:1", "b\u00fccher.example:1", "-:1", "[::ffff:1.2.3.4]:1"]))


@FAST
@given(addresses, st.sampled_from([None, 80, -1]))
@example("127..1:80", 80)   # the resolver's idna step refused it (UnicodeError) in a CONNECT
def test_an_address_parses_to_a_connectable_host_or_value_error(text, default_port):
    parsed = only_typed(lambda: address.parse_address(text, default_port), ValueError)
    if parsed is not None:
        host, port = parsed
        assert port == default_port or 0 <= port <= 65535
        if host:
            assert not any(c in host for c in "%[]/ \t\r\n\x00")
            if ":" not in host:
                host.encode("idna")   # what socket.getaddrinfo does with it first
        assert address.canonical_address(address.format_address(host, max(port, 0)))
    host = only_typed(lambda: address.parse_host(text), ValueError)
    assert host is None or address.format_host(host)
    only_typed(lambda: address.check_url("http://%s/x" % text), ValueError)


@FAST
@given(st.one_of(st.none(), hostile_text, st.floats().map(lambda f: "dfly;dur=%s" % f)))
@example("dfly;dur=" + "9" * 400)
def test_a_server_timing_header_is_seconds_or_none(value):
    seconds = only_typed(lambda: parse_server_timing(value))
    assert seconds is None or seconds >= 0


# config files ----------------------------------------------------------------------------

sizes = st.one_of(json_values, st.builds(lambda n, u: n + u, st.one_of(st.integers(-1, 10 ** 30).map(str),
                                                                       st.just("9" * 400), hostile_text),
                                         st.sampled_from(["", "K", "MiB", "g", "tb", "x"])))
config_values = st.one_of(json_values, sizes)


def config_files(cls):
    names = [name.replace("_", "-") for name in cls.__dataclass_fields__] + ["nope"]
    return st.dictionaries(st.sampled_from(names), config_values, max_size=4)


@FAST
@given(st.sampled_from([SupernodeConfig, PeerConfig, DaemonConfig]).flatmap(
    lambda cls: st.tuples(st.just(cls), config_files(cls))))
@example((SupernodeConfig, {"cache-size": "9" * 400}))
@example((SupernodeConfig, {"source-timeout-s": "9" * 400}))
def test_a_config_file_builds_a_config_or_value_error(case):
    cls, values = case
    config = only_typed(lambda: options.build(cls, values), ValueError)
    if config is not None:
        for name, f in cls.__dataclass_fields__.items():
            value = getattr(config, name)
            if f.metadata.get("kind") in ("size", "duration") and value is not None:
                assert value == value and 0 <= value < float("inf"), name


@FAST
@given(st.binary(max_size=120), st.sampled_from(["c.json", "c.toml"]))
@example(b"\xff\xfe", "c.toml")
@example(b'{"a": [' * 3000, "c.json")
def test_a_config_file_loads_or_value_error(tmp_path_factory, raw, name):
    path = tmp_path_factory.mktemp("config") / name
    path.write_bytes(raw)
    loaded = only_typed(lambda: options.load_file(str(path)), ValueError)
    assert loaded is None or isinstance(loaded, dict)


def test_a_missing_config_file_is_a_value_error_naming_it(tmp_path):
    missing = str(tmp_path / "nope.json")
    try:
        options.load_file(missing)
    except ValueError as e:
        assert missing in str(e)
    else:
        raise AssertionError("a missing config file loaded")
