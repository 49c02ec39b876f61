"""bench/harness.py's figures about the machine and its processes, read from real
files under /proc and from files made here."""
import os
import subprocess
import sys

import pytest

from bench import harness


@pytest.mark.parametrize("text, order", [("9\n", 9), ("10", 10), ("11\n", None), ("junk", None)])
def test_free_page_reporting_is_on_up_to_the_largest_free_block(tmp_path, text, order):
    path = tmp_path / "page_reporting_order"
    path.write_text(text)
    assert harness.free_page_reporting(str(path)) == order


def test_no_free_page_reporting_where_the_kernel_has_none(tmp_path):
    assert harness.free_page_reporting(str(tmp_path / "absent")) is None


def test_a_process_tree_s_cpu_counts_its_children():
    """nginx's CPU is its workers' (children of the master): a child that burns
    0.5 CPU-s shows in its parent's tree, not in the parent alone."""
    burn = ("import sys, time\n"
            "while time.process_time() < 0.5:\n"
            "    pass\n"
            "print('burnt', flush=True)\n"
            "sys.stdin.read()\n")
    child = subprocess.Popen([sys.executable, "-c", burn], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             text=True)
    try:
        assert child.stdout.readline() == "burnt\n"
        me = os.getpid()
        alone = harness.process_cpu_s(me)   # first: the tree, read after, holds all of this
        assert harness.tree_cpu_s(me) - alone >= 0.4   # /proc counts in ticks; the child started too
        assert harness.process_faults(child.pid) > 0
    finally:
        child.communicate("", timeout=10)
