"""`dfly preheat`'s loop, driven by a hand-written fake supernode client and a
manual clock: success, failure with the reason, the --timeout bound."""
import io

import pytest

from dfly import preheat
from dfly.errors import BadRequest, DownloadTimeout, SourceError


class FakeSupernode:
    """Answers the job API with the states given, one per call."""

    def __init__(self, *states, error=""):
        self.address = "127.0.0.1:8002"
        self.states = list(states)
        self.error = error

    def _job(self):
        state = self.states.pop(0) if len(self.states) > 1 else self.states[0]
        return {"id": 4, "state": state, "args": {"type": "image"}, "progress": {"done": 1, "total": 2},
                "result": {"job_states": [{"state": state, "error": self.error, "note": ""}]}}

    def preheat(self, body, token):
        assert token == "t" and body["type"] == "preheat"
        return self._job()

    def preheat_job(self, job_id, token):
        return self._job()


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


BODY = preheat.job_body("127.0.0.1:5000/team/app:v1", {}, [], "", True)


def test_the_loop_follows_the_job_to_success():
    out, clock = io.StringIO(), Clock()
    job = preheat.run(FakeSupernode("PENDING", "PENDING", "SUCCESS"), BODY, "t", 60, out,
                      clock=clock, sleep=clock.sleep)
    assert job["state"] == "SUCCESS" and "SUCCESS, 1 of 2 blobs cached" in out.getvalue()


def test_a_failed_job_is_a_source_error_with_its_reason():
    clock = Clock()
    with pytest.raises(SourceError, match="404 Not Found"):
        preheat.run(FakeSupernode("PENDING", "FAILURE", error="the registry answered 404 Not Found"),
                    BODY, "t", 60, io.StringIO(), clock=clock, sleep=clock.sleep)


def test_a_job_not_over_by_the_timeout_is_a_timeout():
    clock = Clock()
    with pytest.raises(DownloadTimeout, match="not finished within 2s"):
        preheat.run(FakeSupernode("PENDING"), BODY, "t", 2, io.StringIO(), clock=clock, sleep=clock.sleep)
    assert clock.now == pytest.approx(2.0)


def test_the_body_is_checked_before_anything_is_sent():
    assert BODY["args"]["url"] == "http://127.0.0.1:5000/v2/team/app/manifests/v1"
    with pytest.raises(BadRequest, match="platform"):
        preheat.job_body("127.0.0.1:5000/team/app:v1", {}, ["linux"], "", True)
