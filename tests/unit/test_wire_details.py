"""Details of the wire messages a mutation run showed untested: a failed task's
error reaches the client, piece 0 can be reported failed, every refusal names the
field at fault, and a Bearer challenge is read whatever the scheme's case."""
import pytest

from dfly.errors import BadRequest
from dfly.protocol.bearer import Challenge, parse_challenge, token_target
from dfly.protocol.messages import ScheduleRequest, TaskState


def test_a_failed_task_state_carries_its_error_and_kind_to_the_client():
    state = TaskState.parse({"state": "failed", "length": None, "piece_size": None,
                             "piece_count": None, "error": "origin answered 404",
                             "error_kind": "SourceError"})
    assert (state.error, state.error_kind) == ("origin answered 404", "SourceError")
    assert TaskState.parse({"state": "running", "error": None}).error == ""


def test_piece_0_can_be_reported_done_or_failed():
    req = ScheduleRequest.parse({"peer_id": "p1", "done": [0],
                                 "failed": [{"num": 0, "holder": "p2", "reason": "short"}]})
    assert req.done == [0]
    assert [(f.num, f.holder, f.reason) for f in req.failed] == [(0, "p2", "short")]


@pytest.mark.parametrize("body, field", [
    ({"done": ["x"]}, "done[]"),
    ({"failed": [5]}, "'failed' entry"),
    ({"failed": [{"num": -1, "holder": "p2"}]}, "failed[].num"),
    ({"wait_s": 61}, "wait_s"),
    ({"sequential": "yes"}, "sequential"),
    ({"done": list(range(100001))}, "too many reports"),
])
def test_a_refused_schedule_request_names_the_field_at_fault(body, field):
    with pytest.raises(BadRequest) as refused:
        ScheduleRequest.parse(dict(body, peer_id="p1"))
    assert field in str(refused.value)


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER"])
def test_a_bearer_challenge_is_read_whatever_the_case_of_its_scheme(scheme):
    got = parse_challenge('%s realm="https://auth.example/token",service="reg"' % scheme)
    assert got == Challenge("https://auth.example/token", "reg", "")


def test_a_bearer_challenge_with_unquoted_values_is_read():
    got = parse_challenge("Bearer realm=https://auth.example/token,service=reg,scope=repo:a:pull")
    assert got == Challenge("https://auth.example/token", "reg", "repo:a:pull")


def test_a_token_request_without_service_or_scope_has_no_query():
    assert token_target(Challenge("https://auth.example/token")) == "/token"
    assert token_target(Challenge("https://auth.example/token?a=1", "reg")) == "/token?a=1&service=reg"
