"""One live process per data dir (dfly/datadir.py): `dfly scrub` refuses the data
dir of a running supernode or daemon (it would race their own writes and
repairs), a second supernode or daemon on a data dir in use is refused, and a
supernode started while a scrub runs is refused too. Each refusal is one
DataDirInUse (exit 2) naming the holder, with nothing read or changed."""
import io
import os

import pytest
from daemons import fetch

from dfly.errors import DataDirInUse
from dfly.scrub import hold_data_dirs
from dfly.scrub import run as run_scrub


def _scrub(data_dir: str) -> int:
    return run_scrub(str(data_dir), 0, 5.0, io.StringIO())


def test_dfly_scrub_refuses_the_data_dir_of_a_running_supernode(supernode_factory, tmp_path):
    data_dir = tmp_path / "sn"
    running = supernode_factory(data_dir=data_dir)
    with pytest.raises(DataDirInUse) as refused:
        _scrub(data_dir)
    assert "in use by dfly supernode (pid %d)" % os.getpid() in str(refused.value)
    assert "\n" not in str(refused.value) and refused.value.exit_code == 2
    running.stop()
    assert _scrub(data_dir) == 0


def test_dfly_scrub_refuses_the_data_dir_of_a_running_daemon(daemons, tmp_path):
    data_dir = str(tmp_path / "d")
    running = daemons.start(data_dir=data_dir)
    with pytest.raises(DataDirInUse, match="in use by dfly daemon"):
        _scrub(data_dir)
    daemons.stop(running)
    assert _scrub(data_dir) == 0


def test_a_second_supernode_on_a_data_dir_in_use_is_refused_and_the_first_serves_on(
        supernode_factory, tmp_path):
    first = supernode_factory(data_dir=tmp_path / "sn")
    with pytest.raises(DataDirInUse, match="in use by dfly supernode"):
        supernode_factory(data_dir=tmp_path / "sn")
    assert fetch(first.address, "GET", "/healthz")[0] == 200
    first.stop()
    supernode_factory(data_dir=tmp_path / "sn")   # let go at stop: a restart takes it


def test_a_second_daemon_on_a_data_dir_in_use_is_refused(daemons, tmp_path):
    data_dir = str(tmp_path / "d")
    first = daemons.start(data_dir=data_dir)
    with pytest.raises(DataDirInUse, match="in use by dfly daemon"):
        daemons.start(data_dir=data_dir)
    assert fetch(first.address, "GET", "/healthz")[0] == 200


def test_a_supernode_started_while_a_scrub_runs_on_its_data_dir_is_refused(supernode_factory, tmp_path):
    data_dir = tmp_path / "sn"
    supernode_factory(data_dir=data_dir).stop()   # a supernode's data dir, tasks/ and all
    locks = hold_data_dirs(str(data_dir), [str(data_dir / "tasks")], daemon_cache=False)
    try:
        with pytest.raises(DataDirInUse, match="in use by dfly scrub"):
            supernode_factory(data_dir=data_dir)
    finally:
        for lock in locks:
            lock.release()
