"""Mutation testing of dfly's pure modules against the unit tier (not run in CI:
minutes per module). See docs/TESTING.md for the figures of record.

    python3 -m pip install mutmut            # 3.x
    python3 tests/mutation.py                # every module below, one at a time
    python3 tests/mutation.py dfly/supernode/eviction.py --json

Each module gets its own copy of the checkout (under --work, default a temporary
folder) with a [mutmut] section naming that module only, and mutmut runs there
under `nice -n 19` with one worker, so the machine stays usable. A mutant is
"killed" when some unit test fails with it; "survived" mutants are the ones to
read (`mutmut results` / `mutmut show NAME` in that copy): each is either a test
missing or an equivalent change, and docs/TESTING.md says which.
"""
import argparse
import fnmatch
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from typing import Dict, List, Optional

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# module -> mutant name glob (None: every function in it); filling.py is mostly
# threads and files, only servable_end is pure.
MODULES = {
    "dfly/supernode/scheduler.py": None,
    "dfly/supernode/cluster.py": None,
    "dfly/supernode/eviction.py": None,
    "dfly/peer/filling.py": "dfly.peer.filling.x_servable_end*",
}
PROTOCOL = sorted("dfly/protocol/" + n for n in os.listdir(os.path.join(ROOT, "dfly", "protocol"))
                  if n.endswith(".py") and n != "__init__.py")

# mutmut's exit codes per mutant (mutmut/stats.py)
STATUS = {1: "killed", 3: "killed", 0: "survived", 5: "no tests", 33: "no tests",
          34: "skipped", 36: "timeout", 24: "timeout", -24: "timeout", 152: "timeout", 255: "timeout"}


# What the unit tier reads besides dfly/ and tests/ (test_quick_start.py checks the
# README's test command against .ci/run, requirements-test.txt and bench/'s imports).
ALSO_COPY = ("bench", ".ci", "README.md", "requirements-test.txt")


def copy_checkout(target: str, module: str) -> None:
    for name in ("dfly", "tests", "bench", ".ci"):
        shutil.copytree(os.path.join(ROOT, name), os.path.join(target, name),
                        ignore=shutil.ignore_patterns("__pycache__", "mutants"))
    for name in ("pyproject.toml", "README.md", "requirements-test.txt"):
        shutil.copy(os.path.join(ROOT, name), target)
    with open(os.path.join(ROOT, "setup.cfg")) as f:
        setup = f.read()
    with open(os.path.join(target, "setup.cfg"), "w") as f:
        f.write(setup + "\n[mutmut]\nsource_paths = dfly\nonly_mutate = %s\n"
                "pytest_add_cli_args_test_selection = tests/unit\nalso_copy =\n%s\n"
                % (module, "".join("    %s\n" % name for name in ALSO_COPY)))


def run_module(module: str, names: Optional[str], work: str, mutmut: str, timeout_s: float) -> dict:
    target = os.path.join(work, module.replace("/", "_")[:-3])
    shutil.rmtree(target, ignore_errors=True)
    os.makedirs(target)
    copy_checkout(target, module)
    cmd = ["nice", "-n", "19", mutmut, "run", "--max-children", "1"] + ([names] if names else [])
    with open(os.path.join(target, "mutmut.log"), "w") as log:
        try:
            subprocess.run(cmd, cwd=target, stdout=log, stderr=subprocess.STDOUT, timeout=timeout_s,
                           env=dict(os.environ, DFLY_TEST_TIME_SCALE="10"))   # tests/conftest.py
        except subprocess.TimeoutExpired:
            pass   # report what was checked before the bound
    results = read_results(target, module)
    if names:   # only the functions asked for
        results = {name: code for name, code in results.items() if fnmatch.fnmatch(name, names)}
    counts = Counter(STATUS.get(code, "suspicious") for code in results.values())
    # A mutant no unit test runs ("no tests") is a survivor too: nothing would notice it.
    checked = sum(n for status, n in counts.items() if status != "skipped")
    return {"module": module, "folder": target, "counts": dict(counts),
            "kill_rate": round((counts["killed"] + counts["timeout"]) / checked, 3) if checked else None}


def read_results(target: str, module: str) -> Dict[str, int]:
    """Mutant name -> exit code, as mutmut/stats.py reads them."""
    try:
        with open(os.path.join(target, "mutants", module + ".meta")) as f:
            codes = json.load(f)["exit_code_by_key"]
    except (OSError, ValueError, KeyError):
        return {}
    # None: not run, because no unit test covers the function (mutmut then stops early)
    return {name: 5 if code is None else code for name, code in codes.items()}


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("modules", nargs="*", help="modules to mutate (default: all the pure ones)")
    parser.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "dfly-mutation"),
                        help="where the per-module copies go (default: %(default)s)")
    parser.add_argument("--mutmut", default=shutil.which("mutmut") or "mutmut", help="the mutmut command")
    parser.add_argument("--timeout", type=float, default=1800, help="bound per module, seconds")
    parser.add_argument("--json", action="store_true", help="one JSON line per module")
    args = parser.parse_args(argv)
    modules = args.modules or list(MODULES) + PROTOCOL
    for module in modules:
        result = run_module(module, MODULES.get(module), args.work, args.mutmut, args.timeout)
        if args.json:
            print(json.dumps(result), flush=True)
        else:
            counts = result["counts"]
            print("%-34s killed %3d  survived %3d  timeout %2d  other %2d  kill rate %s" % (
                module, counts.get("killed", 0), counts.get("survived", 0), counts.get("timeout", 0),
                sum(v for k, v in counts.items() if k not in ("killed", "survived", "timeout")),
                "-" if result["kill_rate"] is None else "%.0f%%" % (100 * result["kill_rate"])),
                flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
