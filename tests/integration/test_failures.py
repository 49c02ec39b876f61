"""When the origin, the digest, the disk or the supernode fails, a download
fails promptly with the typed error, and leaves neither the target nor a
temporary `.dfly-part` file behind."""
import os
import time

import pytest
from helpers import MiB, content, leftovers, refused_address, run_all, sha256_file, wait_until
from origin import Fault

from dfly.errors import DigestMismatch, DownloadTimeout, LocalIOError, P2PUnavailable, SourceError

PROMPT_S = 10.0   # generous: every failure below is detected in well under a second or two

ORIGIN_FAULTS = {
    "404": Fault(status=404),
    "500": Fault(status=500),
    "die mid-transfer": Fault(die_after=MiB + 12345, reset=True),
    "cut after a clean close": Fault(die_after=MiB + 12345),
    "short body": Fault(short_by=4096),
    "stall": Fault(stall_after=MiB),
    "garbage status line": Fault(status_line=b"HTTP/1.1 two-hundred OK"),
    "not HTTP at all": Fault(status_line=b"SSH-2.0-OpenSSH_9.6"),
    "over 100 headers": Fault(extra_headers=120),
}


@pytest.fixture(params=["p2p", "source"])
def route(request, supernode_factory, client_factory):
    """A client that goes through a supernode, or one with none (back to source)."""
    if request.param == "p2p":
        supernode = supernode_factory(source_timeout_s=1.0)
        return client_factory([supernode.address], piece_timeout_s=1.0)
    return client_factory([], piece_timeout_s=1.0)


def _assert_nothing_left(target):
    assert not os.path.exists(target)
    assert leftovers(os.path.dirname(target)) == []


@pytest.mark.parametrize("fault", list(ORIGIN_FAULTS), ids=list(ORIGIN_FAULTS))
def test_a_failing_origin_makes_download_raise_source_error_and_leave_nothing(
        origin, route, downloads, fault):
    src = origin.add("broken.bin", content(3 * MiB, seed=10))
    origin.fault("broken.bin", ORIGIN_FAULTS[fault])
    target = str(downloads / "broken.bin")

    started = time.monotonic()
    with pytest.raises(SourceError):
        route.download(src.url, target)
    assert time.monotonic() - started < PROMPT_S
    _assert_nothing_left(target)


def test_an_unreachable_origin_makes_download_raise_source_error(route, downloads):
    target = str(downloads / "nowhere.bin")
    with refused_address() as (host, port):
        started = time.monotonic()
        with pytest.raises(SourceError):
            route.download("http://%s:%d/file.bin" % (host, port), target)
        assert time.monotonic() - started < PROMPT_S
    _assert_nothing_left(target)


@pytest.mark.time_limit(30)
def test_every_peer_waiting_on_a_failing_source_gets_the_source_error(
        origin, supernode, sn_client, client_factory, downloads):
    src = origin.add("dies-later.bin", content(3 * MiB, seed=11))
    origin.fault("dies-later.bin", stall_after=MiB, die_after=2 * MiB)
    clients = [client_factory([supernode.address]) for _ in range(4)]
    targets = [str(downloads / ("w%d.bin" % i)) for i in range(4)]

    def peers_waiting():
        tasks = [t for t in sn_client.tasks() if t["url"] == src.url]
        return tasks and tasks[0]["peers"] == len(clients) and tasks[0]["state"] == "running"

    def release_when_all_wait():
        wait_until(peers_waiting, timeout=10, message="all peers registered")
        origin.release()

    outcomes = run_all([lambda c=c, t=t: c.download(src.url, t) for c, t in zip(clients, targets)]
                       + [release_when_all_wait], timeout=20)

    assert outcomes[-1][1] is None, outcomes[-1][1]
    for (result, error), target in zip(outcomes, targets):
        assert isinstance(error, SourceError), (result, error)
        _assert_nothing_left(target)
    assert origin.requests("dies-later.bin") == 1


def test_a_wrong_digest_raises_digest_mismatch_and_leaves_nothing(origin, route, downloads):
    src = origin.add("digested.bin", content(2 * MiB, seed=12))
    wrong = "sha256:" + "ab" * 32
    target = str(downloads / "digested.bin")
    with pytest.raises(DigestMismatch):
        route.download(src.url, target, digest=wrong)
    _assert_nothing_left(target)


def test_a_right_digest_in_capitals_is_accepted(origin, route, downloads):
    src = origin.add("digested.bin", content(2 * MiB, seed=12))
    target = str(downloads / "digested.bin")
    route.download(src.url, target, digest=src.digest.upper().replace("SHA256", "sha256"))
    assert sha256_file(target) == src.sha256


def test_an_unwritable_output_folder_raises_local_io_error(origin, route, downloads):
    src = origin.add("f.bin", content(MiB, seed=13))
    not_a_folder = downloads / "plain-file"
    not_a_folder.write_bytes(b"x")
    with pytest.raises(LocalIOError):
        route.download(src.url, str(not_a_folder / "f.bin"))
    with pytest.raises(LocalIOError):
        route.download(src.url, str(downloads / "missing" / "folder" / "f.bin"))
    assert leftovers(str(downloads)) == []


def test_a_target_that_is_a_folder_raises_local_io_error(origin, route, downloads):
    src = origin.add("f.bin", content(MiB, seed=13))
    (downloads / "taken").mkdir()
    with pytest.raises(LocalIOError):
        route.download(src.url, str(downloads / "taken"))
    assert leftovers(str(downloads)) == []


def test_an_unwritable_data_dir_makes_stream_raise_local_io_error(origin, client_factory, tmp_path):
    src = origin.add("f.bin", content(MiB, seed=13))
    blocker = tmp_path / "blocker"
    blocker.write_bytes(b"x")
    client = client_factory([], data_dir=str(blocker / "data"))
    with pytest.raises(LocalIOError):
        b"".join(client.stream(src.url))


def test_with_no_supernode_reachable_download_goes_back_to_source(origin, client_factory, downloads):
    src = origin.add("direct.bin", content(5 * MiB, seed=14))
    with refused_address() as (host, port):
        client = client_factory(["%s:%d" % (host, port)])
        result = client.download(src.url, str(downloads / "direct.bin"), digest=src.digest)
    assert result.via == "source"
    assert result.bytes_from_source == src.size and result.bytes_from_peers == 0
    assert sha256_file(str(downloads / "direct.bin")) == src.sha256


def test_with_no_supernode_configured_download_goes_back_to_source(origin, client_factory, downloads):
    src = origin.add("direct.bin", content(MiB, seed=14))
    result = client_factory([]).download(src.url, str(downloads / "direct.bin"))
    assert result.via == "source"
    assert sha256_file(str(downloads / "direct.bin")) == src.sha256


def test_with_no_supernode_reachable_and_no_back_source_download_raises_p2p_unavailable(
        origin, client_factory, downloads):
    src = origin.add("direct.bin", content(MiB, seed=14))
    target = str(downloads / "direct.bin")
    with refused_address() as (host, port):
        client = client_factory(["%s:%d" % (host, port)], no_back_source=True)
        with pytest.raises(P2PUnavailable):
            client.download(src.url, target)
    _assert_nothing_left(target)
    assert origin.requests("direct.bin") == 0


def test_with_no_supernode_configured_and_no_back_source_the_error_says_none_is_configured(
        origin, client_factory, downloads):
    src = origin.add("direct.bin", content(MiB, seed=14))
    with pytest.raises(P2PUnavailable, match="none configured"):
        client_factory([], no_back_source=True).download(src.url, str(downloads / "direct.bin"))


def test_a_stalled_source_behind_a_supernode_hits_the_download_timeout(
        origin, supernode_factory, client_factory, downloads):
    supernode = supernode_factory(source_timeout_s=30.0)
    src = origin.add("stalled.bin", content(3 * MiB, seed=15))
    origin.fault("stalled.bin", stall_after=MiB)
    target = str(downloads / "stalled.bin")
    started = time.monotonic()
    with pytest.raises(DownloadTimeout):
        client_factory([supernode.address], timeout_s=1.0).download(src.url, target)
    assert time.monotonic() - started < PROMPT_S
    _assert_nothing_left(target)
    origin.stop()   # the stalled fetch ends now, not when the supernode's stop gives up on it (5 s)


def test_a_stalled_source_without_a_supernode_hits_the_download_timeout(
        origin, client_factory, downloads):
    src = origin.add("stalled.bin", content(3 * MiB, seed=15))
    origin.fault("stalled.bin", stall_after=MiB)
    target = str(downloads / "stalled.bin")
    # how far it got, of how much (the origin said Content-Length), as every path words it
    with pytest.raises(DownloadTimeout, match=r"^download timed out after 1\.0 MiB of 3\.0 MiB$"):
        client_factory([], timeout_s=0.5, piece_timeout_s=3.0).download(src.url, target)
    _assert_nothing_left(target)
