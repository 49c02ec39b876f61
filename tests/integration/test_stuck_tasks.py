"""No task is ever stuck: whatever a supernode's fetch meets (a URL as users paste
it, an origin that breaks HTTP, one that drips its headers forever, a bug) ends
in a download or in a typed error for every waiter, promptly."""
import itertools
import logging
import threading
import time

import pytest
from daemons import fetch
from helpers import MiB, content, refused_address, run_all, wait_until
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from origin import Fault

from dfly.errors import BadRequest, SourceError
from dfly.protocol.messages import RegisterRequest, ScheduleRequest
from dfly.protocol.task import task_id
from dfly.supernode.cdn import Fetch
from dfly.supernode.client import SupernodeClient
from dfly.supernode.scheduler import SchedulerConfig
from dfly.supernode.task import FAILED, Task

PROMPT_S = 10.0
PASTED_NAME = "dir with space/ünï cödé.bin"
PROTOCOL_BREAKS = {
    "garbage status line": Fault(status_line=b"HTTP/1.1 two-hundred OK"),
    "not HTTP at all": Fault(status_line=b"SSH-2.0-OpenSSH_9.6"),
    "over 100 headers": Fault(extra_headers=120),
}


def _tasks(supernode):
    client = SupernodeClient(supernode.address, timeout_s=5)
    try:
        return client.tasks()
    finally:
        client.close()


def _fetch_threads(url):
    """The supernode's fetch threads for the task of `url` (named after its id)."""
    return [t for t in threading.enumerate() if t.name == "fetch-" + task_id(url)[:12]]


@pytest.mark.time_limit(40)
def test_a_pasted_url_with_a_raw_space_and_non_ascii_path_downloads_as_one_task(
        origin, supernode, client_factory, downloads):
    src = origin.add(PASTED_NAME, content(2 * MiB + 5, seed=40))
    pasted = "http://127.0.0.1:%d/%s" % (origin.address[1], PASTED_NAME)
    encoded = origin.url("dir%20with%20space/%C3%BCn%C3%AF%20c%C3%B6d%C3%A9.bin")
    for i, url in enumerate((pasted, encoded)):
        result = client_factory([supernode.address]).download(url, str(downloads / ("%d.bin" % i)))
        assert result.via == "p2p" and (downloads / ("%d.bin" % i)).read_bytes() == src.data
    assert [t["url"] for t in _tasks(supernode)] == [encoded]
    assert origin.body_bytes(PASTED_NAME) == src.size   # one task: the origin served it once


@pytest.mark.parametrize("fault", list(PROTOCOL_BREAKS), ids=list(PROTOCOL_BREAKS))
def test_an_origin_breaking_http_fails_every_waiter_at_once_and_logs_one_line(
        origin, supernode_factory, client_factory, downloads, caplog, fault):
    """At once: long before the source timeout, which is all a stuck task would get."""
    src = origin.add("broken.bin", content(MiB, seed=41))
    origin.fault("broken.bin", PROTOCOL_BREAKS[fault])
    supernode = supernode_factory(source_timeout_s=60.0)
    clients = [client_factory([supernode.address], no_back_source=True) for _ in range(3)]
    started = time.monotonic()
    outcomes = run_all([lambda c=c, i=i: c.download(src.url, str(downloads / ("%d.bin" % i)))
                        for i, c in enumerate(clients)], timeout=PROMPT_S + 5)
    assert time.monotonic() - started < PROMPT_S
    for _, error in outcomes:
        assert isinstance(error, SourceError) and "broke the HTTP protocol" in str(error)

    def warnings():
        return [r for r in caplog.records if r.name == "dfly.supernode" and r.levelno >= logging.WARNING]
    # The fetch's thread logs the line just after the task failed, which the gets saw first.
    logged = wait_until(warnings, timeout=10, message="the failure logged")
    assert len(logged) == 1 and logged[0].exc_info is None
    assert "broke the HTTP protocol" in logged[0].getMessage()


@pytest.mark.parametrize("fault", list(PROTOCOL_BREAKS), ids=list(PROTOCOL_BREAKS))
def test_the_daemons_proxy_answers_502_at_once_for_an_origin_breaking_http(
        origin, supernode_factory, daemons, fault):
    """Not after --fetch-timeout (30 s here, 30 min by default) waiting on a stuck task."""
    src = origin.add("broken.bin", content(MiB, seed=47))
    origin.fault("broken.bin", PROTOCOL_BREAKS[fault])
    supernode = supernode_factory(source_timeout_s=60.0)
    running = daemons.start(supernode=[supernode.address], proxy_rule=["p2p /broken"])
    started = time.monotonic()
    status, _, body = fetch(running.address, "GET", src.url)
    assert status == 502 and time.monotonic() - started < PROMPT_S


@pytest.mark.time_limit(40)
def test_an_origin_dripping_its_headers_is_failed_by_the_watchdog_for_every_waiter(
        origin, supernode_factory, client_factory, downloads):
    """No read ever times out (a byte comes every 0.1 s), yet the fetch gets nowhere."""
    src = origin.add("drip.bin", content(MiB, seed=42))
    origin.fault("drip.bin", drip_s=0.1)
    supernode = supernode_factory(source_timeout_s=1.0)
    clients = [client_factory([supernode.address], no_back_source=True, timeout_s=15)
               for _ in range(2)]
    outcomes = run_all([lambda c=c, i=i: c.download(src.url, str(downloads / ("%d.bin" % i)))
                        for i, c in enumerate(clients)], timeout=20)
    for _, error in outcomes:
        assert isinstance(error, SourceError) and "sent nothing for 1s" in str(error)
    origin.stop()   # the dripped fetch ends now, not when the supernode's stop gives up on it (5 s)


@pytest.mark.time_limit(40)
def test_a_fetch_the_watchdog_gave_up_on_neither_blocks_the_next_one_nor_spoils_it(
        origin, supernode_factory, client_factory, downloads):
    src = origin.add("drip.bin", content(3 * MiB, seed=43))
    origin.fault("drip.bin", drip_s=0.1)
    supernode = supernode_factory(source_timeout_s=1.0, failure_ttl_s=0.0)
    with pytest.raises(SourceError):
        client_factory([supernode.address], no_back_source=True).download(src.url, str(downloads / "a"))
    assert len(_fetch_threads(src.url)) == 1   # still held by the drip
    origin.heal("drip.bin")
    result = client_factory([supernode.address], no_back_source=True, timeout_s=15).download(
        src.url, str(downloads / "b"))
    assert result.via == "p2p" and (downloads / "b").read_bytes() == src.data
    origin.release()   # the first fetch wakes (its answer broken off) and must change nothing
    wait_until(lambda: not _fetch_threads(src.url), timeout=10, message="the abandoned fetch ended")
    [task] = _tasks(supernode)
    assert task["state"] == "done" and task["error"] == ""
    again = client_factory([supernode.address], no_back_source=True).download(src.url, str(downloads / "c"))
    assert (downloads / "c").read_bytes() == src.data and again.bytes_from_source == 0


def test_a_bug_in_a_fetch_fails_its_task_with_an_internal_error_not_a_running_task(origin, tmp_path):
    src = origin.add("f.bin", content(2 * MiB, seed=44))
    task = Task("2" * 64, src.url, {}, None, str(tmp_path / "task"), SchedulerConfig())

    def buggy(task, num, sha256_hex):
        raise KeyError("a bug")

    Fetch(task, 5.0, None, before_offer=buggy).run()
    assert task.state == FAILED and task.error_kind == "InternalError" and "KeyError" in task.error


def test_the_supernode_refuses_a_url_that_cannot_be_made_valid_with_400(supernode, sn_client):
    request = RegisterRequest(url="http://exa mple.invalid/x", peer_id="p1", peer_port=1)
    with pytest.raises(BadRequest, match="bad host name"):
        sn_client.register(request)
    assert sn_client.tasks() == []


# Paths: the origin's files typed raw or encoded, and anything at all. Ports: the
# origin's, a refused one, or text that is no port (never another listener's).
_PATHS = st.one_of(st.sampled_from([PASTED_NAME, "dir%20with%20space/%C3%BCn%C3%AF%20c%C3%B6d%C3%A9.bin",
                                    "ok.bin", "broken.bin", "ok.bin?x=1#y"]),
                   st.text(max_size=30))
_NOT_A_PORT = st.tuples(st.text("0123456789", max_size=3), st.text("abc -+", min_size=1, max_size=3)
                        ).map("".join)
_PORTS = st.one_of(st.sampled_from(["ORIGIN", "REFUSED"]), _NOT_A_PORT)


@pytest.fixture
def quick_supernode(origin, supernode_factory):
    """A supernode with a 1 s source timeout, and an origin with a few files (one broken)."""
    origin.add("ok.bin", content(3000, seed=45))
    origin.add(PASTED_NAME, content(5000, seed=46))
    origin.add("broken.bin", b"x")
    origin.fault("broken.bin", PROTOCOL_BREAKS["over 100 headers"])
    return supernode_factory(source_timeout_s=1.0)


_EXAMPLES = itertools.count()   # each example registers as a peer of its own


@pytest.mark.time_limit(120)
@settings(max_examples=80, deadline=10000, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(scheme=st.sampled_from(["http", "HTTP", "https"]), port=_PORTS, path=_PATHS)
def test_any_url_registered_either_downloads_or_fails_typed_within_the_source_timeout(
        origin, quick_supernode, scheme, port, path):
    """Registered as a peer would (no client-side normalising first), then followed until
    the supernode has the file or says why not. Hosts are loopback only: the port text
    has no ':', '@' or '/', so it cannot move the host."""
    sn = SupernodeClient(quick_supernode.address, timeout_s=5)
    try:
        with refused_address() as (_, refused):
            port_text = {"ORIGIN": str(origin.address[1]), "REFUSED": str(refused)}.get(port, port)
            url = "%s://127.0.0.1:%s/%s" % (scheme, port_text, path)
            peer_id = "prop%d" % next(_EXAMPLES)
            try:
                tid, _ = sn.register(RegisterRequest(url=url, peer_id=peer_id, peer_port=1))
            except BadRequest:
                return
            ask = ScheduleRequest(peer_id, want=0, wait_s=0.2)
            state = wait_until(lambda: _settled(sn.schedule(tid, ask)), timeout=1.0 + 5.0,
                               message="%r settles within the source timeout" % url)
        assert state.state == "done" or state.error_kind in ("SourceError", "DigestMismatch"), state
    finally:
        sn.close()


def _settled(state):
    return state if state.state in ("done", "failed") else None
