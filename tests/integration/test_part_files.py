"""Temporary parts beside a download's target (dfly/peer/output.py): a part is
locked by its writer while open, so a sweep removes only the parts whose writer
is gone, only of that target, and a part swept between its creation and its
lock is replaced by another, never shared."""
import os

from helpers import leftovers

from dfly.peer import output


def test_a_sweep_removes_a_part_once_its_writer_closed_it_and_only_that_targets(tmp_path):
    target = str(tmp_path / "f.bin")
    held, fd = output.create_part(target, "ab12", target)
    assert os.path.basename(held) == ".f.bin.ab12.dfly-part"
    assert output.remove_stale_parts(target) == 0 and os.path.exists(held)
    os.close(fd)   # as a killed writer's lock goes with its process
    other, other_fd = output.create_part(str(tmp_path / "f.bin.gz"), "cd34", "other")
    os.close(other_fd)
    (tmp_path / ".f.bin.not-a-tag.dfly-part").write_bytes(b"x")
    (tmp_path / "f.bin.keep").write_bytes(b"x")
    assert output.remove_stale_parts(target) == 1
    assert not os.path.exists(held)
    assert leftovers(str(tmp_path)) == sorted([".f.bin.gz.cd34.dfly-part", ".f.bin.not-a-tag.dfly-part"])
    assert (tmp_path / "f.bin.keep").exists()


def test_a_sweep_never_follows_a_symlink_named_like_a_part(tmp_path):
    target = str(tmp_path / "f.bin")
    victim = tmp_path / "victim"
    victim.write_bytes(b"keep me")
    os.symlink(str(victim), str(tmp_path / ".f.bin.ee.dfly-part"))
    assert output.remove_stale_parts(target) == 0
    assert victim.read_bytes() == b"keep me"


def test_a_sweep_of_a_missing_folder_removes_nothing(tmp_path):
    assert output.remove_stale_parts(str(tmp_path / "no" / "f.bin")) == 0
