"""The daemon as this host's one peer: `dfly get` hands downloads to it (and
still works alone), its cache stays under its size and age limits and stops
seeding what it deletes, and its rate limits are shared by every task."""
import json
import logging
import os
import time

import pytest
from daemons import handoff_client, stats
from helpers import MiB, content, refused_address, run_all, sha256_file, wait_until

from dfly import cli
from dfly.protocol.handoff import HandoffRequest
from dfly.protocol.task import task_id


def _get(*args) -> int:
    return cli.main(["get", "-q", "--seed-for", "0"] + list(args))


def _handed(running) -> list:
    """The flags that make `get` hand off to `running` (its own token file)."""
    return ["--daemon", running.address, "--daemon-token", running.handoff_token_path]


@pytest.mark.time_limit(30)
def test_two_gets_hand_off_to_the_daemon_and_share_one_download(origin, supernode, daemons, downloads):
    src = origin.add("shared.bin", content(10 * MiB, seed=31))
    running = daemons.start(supernode=[supernode.address])
    targets = [str(downloads / ("copy%d.bin" % i)) for i in range(2)]
    codes = run_all([lambda t=t: _get(src.url, "-o", t, *_handed(running), "--digest", src.digest)
                     for t in targets])
    assert codes == [(0, None), (0, None)]
    for target in targets:
        assert sha256_file(target) == src.sha256
    assert origin.requests("shared.bin") == 1
    after = stats(running)
    assert after["downloads"] == 1 and after["seeding"] == 1   # served on after the gets returned
    assert sorted(os.listdir(str(downloads))) == ["copy0.bin", "copy1.bin"]   # no temporary files


@pytest.mark.time_limit(30)
def test_get_works_alone_when_no_daemon_answers(origin, downloads, capsys):
    src = origin.add("alone.bin", content(MiB, seed=32))
    with refused_address() as (host, port):
        code = cli.main(["get", src.url, "-o", str(downloads / "alone.bin"), "--daemon",
                         "%s:%d" % (host, port), "--json", "--seed-for", "0"])
    assert code == 0
    assert json.loads(capsys.readouterr().out)["via"] == "source"
    assert sha256_file(str(downloads / "alone.bin")) == src.sha256


@pytest.mark.time_limit(30)
def test_handed_off_failures_keep_their_exit_codes_and_leave_nothing(origin, supernode, daemons, downloads):
    src = origin.add("checked.bin", content(MiB, seed=33))
    running = daemons.start(supernode=[supernode.address])
    wrong = "sha256:" + "0" * 64
    assert _get(src.url, "-o", str(downloads / "a.bin"), *_handed(running), "--digest", wrong) == 4
    assert _get(origin.url("absent.bin"), "-o", str(downloads / "b.bin"), *_handed(running)) == 3
    assert os.listdir(str(downloads)) == []
    client = handoff_client(running)
    with pytest.raises(Exception) as caught:
        client.download(HandoffRequest(src.url, "relative/path"), 10)
    assert "absolute" in str(caught.value)


@pytest.mark.time_limit(30)
def test_a_handed_off_get_of_a_source_the_supernode_denies_exits_9(origin, supernode_factory, daemons,
                                                                   downloads):
    src = origin.add("denied.bin", content(MiB, seed=34))
    supernode = supernode_factory(deny_source=["127.0.0.0/8"])
    running = daemons.start(supernode=[supernode.address])
    assert _get(src.url, "-o", str(downloads / "d.bin"), *_handed(running)) == 9
    assert os.listdir(str(downloads)) == [] and origin.requests("denied.bin") == 0


@pytest.mark.time_limit(30)
def test_the_cache_stays_under_its_size_limit_and_stops_seeding_what_it_deletes(
        origin, supernode, daemons, downloads):
    running = daemons.start(supernode=[supernode.address], cache_size=10 * MiB)
    client = handoff_client(running)
    results = []
    for i in range(3):
        src = origin.add("f%d.bin" % i, content(4 * MiB, seed=40 + i))
        results.append(client.download(HandoffRequest(src.url, str(downloads / ("f%d.bin" % i))), 20))
    # The fill's thread cleans up just after it hands the new file out (a get's answer does
    # not wait for the eviction); it stops seeding what it deleted last: wait for that.
    wait_until(lambda: results[0].task_id not in running.p2p.seeding, timeout=10,
               message="the first file evicted")
    assert stats(running)["cache_bytes"] <= 10 * MiB
    assert running.cache.keys() and len(running.cache.keys()) == 2
    assert results[2].task_id in running.p2p.seeding
    client.download(HandoffRequest(origin.url("f2.bin"), str(downloads / "again.bin")), 20)
    assert origin.requests("f2.bin") == 1   # still cached: served without the origin


@pytest.mark.time_limit(30)
def test_files_unused_longer_than_the_age_limit_are_removed(origin, daemons, downloads, caplog):
    caplog.set_level(logging.INFO, logger="dfly")
    src = origin.add("old.bin", content(MiB, seed=44))
    running = daemons.start(cache_max_age_s=0.5, heartbeat_s=0.1)
    handoff_client(running).download(HandoffRequest(src.url, str(downloads / "old.bin")), 20)
    # It was cached, then removed: its log line, the cleanup's last step (a count of 1 read
    # after the get could come after the janitor's pass on a loaded machine: 0.5 s is all
    # the file has).
    removed = "cache: removed task-" + task_id(src.url)
    wait_until(lambda: removed in [r.getMessage() for r in caplog.records], timeout=10,
               message="the old file was removed")
    assert stats(running)["cache_files"] == 0
    assert sha256_file(str(downloads / "old.bin")) == src.sha256


@pytest.mark.time_limit(30)
def test_the_total_download_rate_is_shared_by_tasks_running_at_once(origin, daemons, downloads):
    files = [origin.add("r%d.bin" % i, content(4 * MiB, seed=50 + i)) for i in range(2)]
    running = daemons.start(total_rate_limit=4 * MiB)
    client = handoff_client(running)
    started = time.monotonic()
    outcomes = run_all([lambda f=f: client.download(HandoffRequest(f.url, str(downloads / f.name)), 20)
                        for f in files])
    elapsed = time.monotonic() - started
    assert [e for _, e in outcomes] == [None, None]
    # one bucket for both: 8 MiB at 4 MiB/s with a one-second burst takes about 1 s;
    # a bucket each would let both finish in their bursts
    assert elapsed >= 0.9


@pytest.mark.time_limit(30)
def test_the_upload_rate_limit_caps_what_peers_get_from_this_daemon(origin, supernode, daemons, downloads):
    src = origin.add("up.bin", content(8 * MiB, seed=55))
    seed = daemons.start(supernode=[supernode.address], upload_rate_limit=2 * MiB)
    handoff_client(seed).download(HandoffRequest(src.url, str(downloads / "seed.bin")), 20)
    other = daemons.start(supernode=[supernode.address])
    started = time.monotonic()
    handoff_client(other).download(HandoffRequest(src.url, str(downloads / "other.bin")), 20)
    elapsed = time.monotonic() - started
    got = stats(other)
    # The seed holds every piece, so peers serve them (measured: all 8 MiB); at
    # least 6 MiB, so the bound below is 1.8 s or more and cannot collapse to 0.
    assert got["bytes_from_peers"] >= 6 * MiB
    assert stats(seed)["uploaded_bytes"] == got["bytes_from_peers"]
    # 2 MiB/s with a 2 MiB burst: every 2 MiB past the first costs a second
    assert elapsed >= (got["bytes_from_peers"] - 2 * MiB) / (2 * MiB) * 0.9
