"""dfly.cli.main called by a program, as the command line is: its settings are
counted from the call, not from when the program imported dfly."""
import os
import subprocess
import sys

from helpers import MiB, content

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# The program imports dfly.cli, does other work for a while, then runs a get whose
# --timeout is shorter than that while: the limit is the get's, from its start.
PROGRAM = """
import sys, time
from dfly import cli
time.sleep(1.5)   # the program's own work before it downloads (not a synchronisation)
sys.exit(cli.main(["get", sys.argv[1], "-o", sys.argv[2], "--no-daemon", "--seed-for", "0",
                   "--data-dir", sys.argv[3], "--timeout", "1s"]))
"""


def test_get_timeout_counts_from_the_call_not_from_the_import(origin, tmp_path):
    src = origin.add("f.bin", content(MiB, seed=70))
    done = subprocess.run([sys.executable, "-c", PROGRAM, src.url, str(tmp_path / "f.bin"),
                           str(tmp_path / "data")], capture_output=True, text=True, timeout=30,
                          cwd=ROOT, env=dict(os.environ, PYTHONPATH=ROOT))
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "f.bin").read_bytes() == src.data
