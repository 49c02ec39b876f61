"""A supernode's reply read by the client, field by field at its edges: the
largest value allowed is kept, one more is refused with the field's name (the
PieceOrder and TaskState survivors of a mutation run of protocol/messages.py,
docs/TESTING.md). A client that took a longer or larger field would hold what
the supernode was never allowed to send."""
import pytest

from dfly.errors import BadRequest
from dfly.protocol.messages import MAX_URL_LEN, PieceOrder, RegisterRequest, ScheduleRequest, TaskState


def piece(**fields):
    item = {"num": 0, "start": 0, "size": 4, "sha256": "ab", "holder": "h"}
    item.update(fields)
    return item


def refusal(parse, body) -> str:
    with pytest.raises(BadRequest) as refused:
        parse(body)
    return str(refused.value)


def test_a_piece_that_is_not_an_object_is_refused_in_words():
    assert refusal(PieceOrder.parse, ["num", 0]) == "each piece must be an object"


def test_a_piece_parsed_alone_is_of_no_known_content_version():
    assert PieceOrder.parse(piece()).content_version == ""


@pytest.mark.parametrize("name, high", [("num", 1 << 40), ("start", 1 << 62), ("size", 1 << 40)])
def test_a_piece_number_is_kept_from_zero_to_its_limit_and_refused_past_it_by_name(name, high):
    assert getattr(PieceOrder.parse(piece(**{name: 0})), name) == 0
    assert getattr(PieceOrder.parse(piece(**{name: high})), name) == high
    assert "field %r must be" % name in refusal(PieceOrder.parse, piece(**{name: high + 1}))


@pytest.mark.parametrize("name, limit", [("sha256", 128), ("holder", 64), ("addr", 300), ("token", 128)])
def test_a_piece_text_is_kept_up_to_its_limit_and_refused_past_it(name, limit):
    assert getattr(PieceOrder.parse(piece(**{name: "a" * limit})), name) == "a" * limit
    assert "field %r must be a string of at most %d" % (name, limit) \
        in refusal(PieceOrder.parse, piece(**{name: "a" * (limit + 1)}))


@pytest.mark.parametrize("name", ["sha256", "holder"])
def test_a_piece_without_its_digest_or_holder_is_refused(name):
    item = piece()
    del item[name]
    assert refusal(PieceOrder.parse, item) == "missing field %r" % name


def test_a_piece_token_is_kept_and_a_missing_one_is_empty():
    assert PieceOrder.parse(piece(token="t0k")).token == "t0k"
    assert PieceOrder.parse(piece()).token == ""


def test_a_task_state_that_is_not_an_object_is_refused_in_words():
    assert refusal(TaskState.parse, ["running"]) == "a task state must be an object"


@pytest.mark.parametrize("name, limit", [("state", 64), ("error", MAX_URL_LEN * 4), ("error_kind", 64)])
def test_a_task_state_text_is_kept_up_to_its_limit_and_refused_past_it(name, limit):
    body = {"state": "failed"}
    assert getattr(TaskState.parse(dict(body, **{name: "e" * limit})), name) == "e" * limit
    assert "field %r must be a string of at most %d" % (name, limit) \
        in refusal(TaskState.parse, dict(body, **{name: "e" * (limit + 1)}))


@pytest.mark.parametrize("name", ["length", "piece_size", "piece_count"])
def test_a_task_state_size_is_kept_from_zero_to_2_to_the_62_and_refused_past_it_by_name(name):
    body = {"state": "running"}
    assert getattr(TaskState.parse(dict(body, **{name: 0})), name) == 0
    assert getattr(TaskState.parse(dict(body, **{name: 1 << 62})), name) == 1 << 62
    assert "field %r must be an integer in 0..%d" % (name, 1 << 62) \
        in refusal(TaskState.parse, dict(body, **{name: (1 << 62) + 1}))


def test_a_validator_may_hold_any_letter():
    assert TaskState.parse({"state": "done", "validator": '"XX-1"'}).validator == '"XX-1"'


def test_a_bad_peer_port_is_refused_by_its_dotted_name():
    body = {"url": "http://origin/f", "peer": {"id": "p1", "port": 0}}
    assert "field 'peer.port' must be" in refusal(RegisterRequest.parse, body)


@pytest.mark.parametrize("body, name", [
    ({"done": ["x"]}, "'done[]'"),
    ({"failed": [{"num": -1, "holder": "p2"}]}, "'failed[].num'"),
])
def test_a_refused_report_quotes_its_field_exactly(body, name):
    assert "field %s must be" % name in refusal(ScheduleRequest.parse, dict(body, peer_id="p1"))
