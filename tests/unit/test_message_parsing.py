"""Wire messages: good input becomes a typed request, anything else a BadRequest naming the field."""
import copy
import json

import pytest

from dfly.errors import BadRequest
from dfly.protocol.messages import (
    HOP_HEADERS,
    MAX_REPORTS,
    MAX_URL_LEN,
    MAX_WANT,
    PROTOCOL_VERSION,
    Failure,
    PieceOrder,
    RegisterRequest,
    ScheduleRequest,
    TaskState,
)

DIGEST = "sha256:" + "ab" * 32


def register_body(**changes) -> dict:
    body = {"version": PROTOCOL_VERSION, "url": "http://origin.example/f.bin",
            "peer": {"id": "peer-1", "port": 8001}}
    body.update(changes)
    return body


def with_peer(**changes) -> dict:
    body = register_body()
    body["peer"] = dict(body["peer"], **changes)
    return body


def refused(parse, body, field: str = "") -> str:
    with pytest.raises(BadRequest) as info:
        parse(body)
    assert field in str(info.value)
    return str(info.value)


# RegisterRequest: good input -------------------------------------------------------

def test_a_minimal_registration_parses_with_defaults():
    req = RegisterRequest.parse(register_body())
    assert req == RegisterRequest(url="http://origin.example/f.bin", peer_id="peer-1", peer_port=8001)
    assert (req.peer_host, req.headers, req.filters, req.digest, req.identifier) == \
        (None, {}, [], None, None)


def test_a_full_registration_parses_every_field():
    body = register_body(headers={"Authorization": "Bearer t", "X-Trace": "1"},
                         filters=["token", "expires"], digest=DIGEST.upper().replace("SHA", "sha"),
                         identifier="build-42")
    body["peer"]["host"] = "10.1.2.3"
    req = RegisterRequest.parse(body)
    assert req.headers == {"Authorization": "Bearer t", "X-Trace": "1"}
    assert req.filters == ["token", "expires"]
    assert req.digest == DIGEST
    assert req.identifier == "build-42"
    assert req.peer_host == "10.1.2.3"


def test_a_registration_survives_a_json_round_trip():
    req = RegisterRequest(url="https://h/f?x=1", peer_id="p.1", peer_port=65535, peer_host="h",
                          headers={"Cookie": "a=b"}, filters=["x"], digest=DIGEST, identifier="i")
    assert RegisterRequest.parse(json.loads(json.dumps(req.to_json()))) == req


def test_parsing_does_not_alias_the_callers_lists():
    body = register_body(filters=["a"])
    req = RegisterRequest.parse(body)
    body["filters"].append("b")
    assert req.filters == ["a"]


@pytest.mark.parametrize("port", [1, 65535])
def test_the_port_range_ends_are_accepted(port):
    assert RegisterRequest.parse(with_peer(port=port)).peer_port == port


def test_limits_are_inclusive():
    body = register_body(url="http://h/" + "x" * (MAX_URL_LEN - len("http://h/")),
                         headers={"X-%d" % i: "v" * 8192 for i in range(64)},
                         filters=["f"] * 64, identifier="i" * 1024)
    body["peer"].update(id="p" * 64, host="h" * 255)
    req = RegisterRequest.parse(body)
    assert len(req.url) == MAX_URL_LEN
    assert len(req.headers) == 64


# RegisterRequest: bad input ---------------------------------------------------------

@pytest.mark.parametrize("url", [None, "", 42, ["http://h/f"], {"u": 1}, True])
def test_a_registration_without_a_string_url_is_refused(url):
    body = register_body(url=url)
    if url is None:
        del body["url"]
    refused(RegisterRequest.parse, body, "'url'")


def test_an_overlong_url_is_refused():
    refused(RegisterRequest.parse, register_body(url="http://h/" + "x" * MAX_URL_LEN), "'url'")


@pytest.mark.parametrize("peer", [None, "peer-1", ["peer-1", 8001], 5])
def test_a_registration_without_a_peer_object_is_refused(peer):
    body = register_body(peer=peer)
    refused(RegisterRequest.parse, body, "'peer'")


@pytest.mark.parametrize("peer_id", [None, "", 7, ["p"], "a b", "a/b", "../etc", "p:1", "é",
                                     "x" * 65, "a\r\nX-Injected: 1", "a\0"])
def test_a_bad_peer_id_is_refused(peer_id):
    refused(RegisterRequest.parse, with_peer(id=peer_id))


def test_a_peer_id_with_a_trailing_newline_is_refused():
    refused(RegisterRequest.parse, with_peer(id="peer-1\n"), "peer id")


def test_the_reserved_holder_name_supernode_is_refused_as_a_peer_id():
    # A peer registered as "supernode" would be indistinguishable from the supernode
    # in the scheduler's assignments and upload counts.
    refused(RegisterRequest.parse, with_peer(id="supernode"), "peer id")


@pytest.mark.parametrize("port", [None, 0, -1, 65536, 1 << 70, "8001", 8001.0, True, False, [8001]])
def test_a_bad_peer_port_is_refused(port):
    refused(RegisterRequest.parse, with_peer(port=port), "peer.port")


@pytest.mark.parametrize("host", [5, ["h"], "h" * 256])
def test_a_bad_peer_host_is_refused(host):
    refused(RegisterRequest.parse, with_peer(host=host), "'host'")


@pytest.mark.parametrize("headers", [[], ["A: b"], "A: b", 5, True])
def test_headers_that_are_not_an_object_are_refused(headers):
    refused(RegisterRequest.parse, register_body(headers=headers), "'headers'")


def test_more_than_64_headers_are_refused():
    refused(RegisterRequest.parse, register_body(headers={"X-%d" % i: "v" for i in range(65)}),
            "'headers'")


@pytest.mark.parametrize("name, value", [
    ("X-A", 1), ("X-A", None), ("X-A", ["v"]), ("X-A", True),
    ("X-A", "v\r\nHost: evil"), ("X-A", "v\nX: y"), ("X-A", "v\rX"), ("X-A", "v\0"),
    ("X-A\r\nHost", "evil"), ("X\nA", "v"), ("X\0A", "v"),
    ("X" * 257, "v"), ("X-A", "v" * 8193),
])
def test_a_bad_header_is_refused(name, value):
    message = refused(RegisterRequest.parse, register_body(headers={name: value}), "bad header")
    assert len(message) < 200      # the name is cut short in the message


@pytest.mark.parametrize("name", sorted(HOP_HEADERS) + ["HOST", "Range", "Transfer-Encoding",
                                                         "If-None-Match", "Content-Length"])
def test_hop_by_hop_and_fetch_changing_headers_are_dropped(name):
    req = RegisterRequest.parse(register_body(headers={name: "x", "Authorization": "Basic a"}))
    assert req.headers == {"Authorization": "Basic a"}


def test_hop_by_hop_headers_are_exactly_the_documented_ones():
    assert HOP_HEADERS == {"host", "content-length", "connection", "range", "if-range",
                           "transfer-encoding", "if-none-match", "if-modified-since", "te",
                           "upgrade", "keep-alive", "proxy-connection", "expect"}


@pytest.mark.parametrize("name", ["Authorization", "Cookie", "User-Agent", "Accept", "X-Amz-Date"])
def test_identity_headers_are_passed_on(name):
    assert RegisterRequest.parse(register_body(headers={name: "v"})).headers == {name: "v"}


@pytest.mark.parametrize("filters", ["token", {"token": 1}, [1], ["a", None], [["a"]], ["f"] * 65])
def test_bad_filters_are_refused(filters):
    refused(RegisterRequest.parse, register_body(filters=filters), "'filters'")


@pytest.mark.parametrize("digest", ["sha256:abc", "sha1:" + "a" * 40, "ab" * 32, "sha256:" + "g" * 64,
                                    "md5:" + "a" * 64])
def test_a_malformed_digest_is_refused(digest):
    refused(RegisterRequest.parse, register_body(digest=digest), "digest")


@pytest.mark.parametrize("digest", [5, ["sha256:x"], "sha256:" + "a" * 2000])
def test_a_digest_that_is_not_a_short_string_is_refused(digest):
    refused(RegisterRequest.parse, register_body(digest=digest), "'digest'")


def test_a_digest_is_kept_in_canonical_form():
    # parse_digest accepts surrounding space and upper case; the stored digest is part
    # of the task id, so both spellings must end up as one task.
    req = RegisterRequest.parse(register_body(digest="  SHA256:%s  " % ("AB" * 32)))
    assert req.digest == DIGEST


@pytest.mark.parametrize("identifier", [5, ["i"], "i" * 1025])
def test_a_bad_identifier_is_refused(identifier):
    refused(RegisterRequest.parse, register_body(identifier=identifier), "'identifier'")


def test_parsing_never_changes_the_body():
    body = register_body(headers={"Host": "h", "X": "y"}, digest=DIGEST.upper().replace("SHA", "sha"))
    before = copy.deepcopy(body)
    RegisterRequest.parse(body)
    assert body == before


# ScheduleRequest: good input --------------------------------------------------------

def test_a_minimal_schedule_request_parses_with_defaults():
    assert ScheduleRequest.parse({"peer_id": "p"}) == ScheduleRequest(
        peer_id="p", done=[], failed=[], want=4, sequential=False, wait_s=0.0)


def test_a_full_schedule_request_parses_every_field():
    req = ScheduleRequest.parse({"peer_id": "p", "done": [0, 3],
                                 "failed": [{"num": 2, "holder": "h", "reason": "short read"},
                                            {"num": 5, "holder": "supernode"}],
                                 "want": 8, "sequential": True, "wait_s": 2.5})
    assert req.done == [0, 3]
    assert req.failed == [Failure(2, "h", "short read"), Failure(5, "supernode", "")]
    assert (req.want, req.sequential, req.wait_s) == (8, True, 2.5)


def test_a_schedule_request_survives_a_json_round_trip():
    req = ScheduleRequest("p-1", [1, 2], [Failure(3, "h", "bad sha")], 16, True, 10.0)
    assert ScheduleRequest.parse(json.loads(json.dumps(req.to_json()))) == req


def test_null_reports_mean_none():
    req = ScheduleRequest.parse({"peer_id": "p", "done": None, "failed": None})
    assert (req.done, req.failed) == ([], [])


def test_an_integer_wait_becomes_seconds_as_a_float():
    wait = ScheduleRequest.parse({"peer_id": "p", "wait_s": 3}).wait_s
    assert wait == 3.0 and isinstance(wait, float)


@pytest.mark.parametrize("want", [0, 1, MAX_WANT])
def test_want_accepts_0_to_max_want(want):
    assert ScheduleRequest.parse({"peer_id": "p", "want": want}).want == want


@pytest.mark.parametrize("wait", [0, 0.5, 60])
def test_wait_accepts_0_to_60_seconds(wait):
    assert ScheduleRequest.parse({"peer_id": "p", "wait_s": wait}).wait_s == wait


def test_report_numbers_up_to_2_to_the_40_are_accepted():
    req = ScheduleRequest.parse({"peer_id": "p", "done": [1 << 40],
                                 "failed": [{"num": 1 << 40, "holder": "h"}]})
    assert req.done == [1 << 40]
    assert req.failed[0].num == 1 << 40


# ScheduleRequest: bad input -----------------------------------------------------------

@pytest.mark.parametrize("peer_id", [None, "", 5, ["p"], "p" * 65])
def test_a_schedule_request_without_a_short_string_peer_id_is_refused(peer_id):
    body = {"peer_id": peer_id} if peer_id is not None else {}
    refused(ScheduleRequest.parse, body, "'peer_id'")


@pytest.mark.parametrize("peer_id", ["a b", "p\r\nX: 1", "../x"])
def test_a_schedule_request_with_a_malformed_peer_id_is_refused(peer_id):
    refused(ScheduleRequest.parse, {"peer_id": peer_id}, "peer")


@pytest.mark.parametrize("field, value", [("done", "1,2"), ("done", {"0": 1}), ("done", 7),
                                          ("failed", "x"), ("failed", {"num": 1}), ("failed", 3)])
def test_reports_that_are_not_lists_are_refused(field, value):
    refused(ScheduleRequest.parse, {"peer_id": "p", field: value}, "field %r must be a list" % field)


@pytest.mark.parametrize("field, value", [("done", {}), ("done", 0), ("failed", ""),
                                          ("failed", False)])
def test_falsy_reports_that_are_not_lists_are_refused(field, value):
    refused(ScheduleRequest.parse, {"peer_id": "p", field: value}, "field %r must be a list" % field)


def test_more_than_max_reports_are_refused():
    body = {"peer_id": "p", "done": list(range(MAX_REPORTS)), "failed": [{"num": 0, "holder": "h"}]}
    refused(ScheduleRequest.parse, body, "too many reports")


def test_exactly_max_reports_are_accepted():
    assert len(ScheduleRequest.parse({"peer_id": "p", "done": [0] * MAX_REPORTS}).done) == MAX_REPORTS


@pytest.mark.parametrize("num", [-1, (1 << 40) + 1, 1 << 100, "3", 3.0, None, True, False, [3]])
def test_a_bad_done_number_is_refused(num):
    refused(ScheduleRequest.parse, {"peer_id": "p", "done": [0, num]}, "done[]")


@pytest.mark.parametrize("entry", [3, "3", None, [3, "h"]])
def test_a_failed_entry_that_is_not_an_object_is_refused(entry):
    refused(ScheduleRequest.parse, {"peer_id": "p", "failed": [entry]}, "'failed'")


@pytest.mark.parametrize("num", [None, -1, (1 << 40) + 1, "2", 2.5, True])
def test_a_failed_entry_with_a_bad_number_is_refused(num):
    refused(ScheduleRequest.parse, {"peer_id": "p", "failed": [{"num": num, "holder": "h"}]},
            "failed[].num")


@pytest.mark.parametrize("holder", [None, "", 5, ["h"], "h" * 65])
def test_a_failed_entry_with_a_bad_holder_is_refused(holder):
    entry = {"num": 1}
    if holder is not None:
        entry["holder"] = holder
    refused(ScheduleRequest.parse, {"peer_id": "p", "failed": [entry]}, "'holder'")


@pytest.mark.parametrize("reason", [5, ["r"], "r" * 513])
def test_a_failed_entry_with_a_bad_reason_is_refused(reason):
    refused(ScheduleRequest.parse,
            {"peer_id": "p", "failed": [{"num": 1, "holder": "h", "reason": reason}]}, "'reason'")


@pytest.mark.parametrize("want", [-1, MAX_WANT + 1, 1 << 62, "4", 4.0, None, True, False, [4]])
def test_a_bad_want_is_refused(want):
    refused(ScheduleRequest.parse, {"peer_id": "p", "want": want}, "'want'")


@pytest.mark.parametrize("wait", [-0.1, 60.001, 1e308, float("inf"), float("nan"), "1", None,
                                  True, [1]])
def test_a_bad_wait_is_refused(wait):
    refused(ScheduleRequest.parse, {"peer_id": "p", "wait_s": wait}, "'wait_s'")


def test_nan_from_the_wire_is_refused_as_a_wait():
    refused(ScheduleRequest.parse, json.loads('{"peer_id": "p", "wait_s": NaN}'), "'wait_s'")


@pytest.mark.parametrize("sequential", ["false", "no", "0", [True]])
def test_a_sequential_flag_that_is_not_a_boolean_is_refused(sequential):
    # bool("false") is True: a client sending the string would silently get sequential mode
    refused(ScheduleRequest.parse, {"peer_id": "p", "sequential": sequential}, "'sequential'")


# replies ------------------------------------------------------------------------------

def test_a_task_state_reply_parses_its_piece_orders():
    state = TaskState.parse({"state": "running", "length": 10, "piece_size": 4, "piece_count": 3,
                             "error": None, "pieces": [
                                 {"num": 2, "start": 8, "size": 2, "sha256": "ab", "holder": "h",
                                  "addr": "10.0.0.1:8001"},
                                 {"num": 0, "start": 0, "size": 4, "sha256": "cd",
                                  "holder": "supernode"}]})
    assert state.pieces == [PieceOrder(2, 8, 2, "ab", "h", "10.0.0.1:8001"),
                            PieceOrder(0, 0, 4, "cd", "supernode", None)]
    assert (state.state, state.length, state.piece_size, state.piece_count) == ("running", 10, 4, 3)
    assert (state.error, state.error_kind) == ("", "")


def test_a_task_state_reply_without_pieces_has_none():
    state = TaskState.parse({"state": "pending", "piece_size": 4194304})
    assert state.pieces == []
    assert state.length is None and state.piece_count is None


def test_a_schedule_reply_says_how_long_the_supernode_waited_on_purpose():
    state = TaskState.parse({"state": "running", "piece_size": 4, "waited_s": 0.75, "pieces": []})
    assert state.waited_s == 0.75
    assert TaskState.parse({"state": "running", "waited_s": 2}).waited_s == 2.0


def test_a_reply_from_a_supernode_older_than_waited_s_still_parses():
    state = TaskState.parse({"state": "running", "length": 10, "piece_size": 4, "piece_count": 3,
                             "error": "", "error_kind": "", "pieces": []})
    assert state.waited_s is None


@pytest.mark.parametrize("waited", [None, "0.5", True, -1, float("nan"), float("inf"), [1]])
def test_a_waited_s_that_is_not_a_sane_duration_is_taken_as_unknown(waited):
    assert TaskState.parse({"state": "running", "waited_s": waited}).waited_s is None
