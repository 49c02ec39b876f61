"""What anyone who can reach a supernode learns from its task listing: task
URLs without their credentials (userinfo, signed-URL query values), in the
listing, in one task's status and in a failed task's error text."""
import json

import pytest
from helpers import content, wait_until

from dfly.protocol.messages import RegisterRequest


def _texts(sn_client, tid) -> str:
    return json.dumps([sn_client.tasks(), sn_client.task(tid)])


@pytest.mark.time_limit(20)
def test_a_signed_urls_query_values_are_not_listed(origin, sn_client):
    src = origin.add("signed.bin", content(100000, seed=71))
    url = src.url + "?X-Amz-Credential=AKIDSECRET&X-Amz-Signature=SIGSECRET&token=TOKSECRET"
    tid, _ = sn_client.register(RegisterRequest(url, "p1", 1, "127.0.0.1",
                                                filters=["X-Amz-Credential", "X-Amz-Signature"]))
    wait_until(lambda: sn_client.task(tid)["state"] == "done", timeout=10)
    shown = _texts(sn_client, tid)
    for secret in ("AKIDSECRET", "SIGSECRET", "TOKSECRET"):
        assert secret not in shown
    assert sn_client.task(tid)["url"] == src.url + "?X-Amz-Credential=***&X-Amz-Signature=***&token=***"


@pytest.mark.time_limit(20)
def test_a_failed_tasks_error_does_not_show_the_credentials_either(origin, sn_client):
    url = origin.url("absent.bin") + "?token=TOKSECRET"   # (userinfo: see the unit tests)
    tid, _ = sn_client.register(RegisterRequest(url, "p1", 1, "127.0.0.1"))
    wait_until(lambda: sn_client.task(tid)["state"] == "failed", timeout=10)
    _, state = sn_client.register(RegisterRequest(url, "p2", 2, "127.0.0.1"))
    shown = _texts(sn_client, tid) + json.dumps(state.error)
    assert sn_client.task(tid)["error"]
    assert "TOKSECRET" not in shown
