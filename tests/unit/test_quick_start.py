"""The README's quick start works on a fresh machine: its test command installs
what the suite imports, and it is the command CI runs."""
import ast
import importlib.util
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _read(*parts: str) -> str:
    with open(os.path.join(ROOT, *parts)) as f:
        return f.read()


def _quick_start() -> list:
    block = re.search(r"## Quick start\s+```sh\n(.*?)```", _read("README.md"), re.S)
    assert block, "README.md has no ```sh block under '## Quick start'"
    return [line for line in block.group(1).splitlines() if line.strip()]


def _top_level_imports(folder: str) -> set:
    """Modules imported at the top of the files under `folder` (not optional ones in a try)."""
    names = set()
    for dirpath, _, files in os.walk(os.path.join(ROOT, folder)):
        for name in files:
            if name.endswith(".py"):
                with open(os.path.join(dirpath, name)) as f:
                    tree = ast.parse(f.read())
                for node in tree.body:   # module level only: an import inside a try is optional
                    if isinstance(node, ast.Import):
                        names.update(alias.name.split(".")[0] for alias in node.names)
                    elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                        names.add(node.module.split(".")[0])
    return names


def _third_party(names: set) -> set:
    local = {n[:-3] for d in ("tests", "bench") for _, _, fs in os.walk(os.path.join(ROOT, d))
             for n in fs if n.endswith(".py")} | {"dfly", "tests", "bench", "build_zipapp"}
    stdlib = getattr(sys, "stdlib_module_names", None)   # 3.10+
    out = set()
    for name in names - local:
        if stdlib is not None:
            if name not in stdlib:
                out.add(name)
            continue
        spec = importlib.util.find_spec(name)
        origin = getattr(spec, "origin", "") or ""
        if "site-packages" in origin or "dist-packages" in origin:
            out.add(name)
    return out


def test_the_quick_start_test_command_installs_what_the_suite_imports():
    command = _quick_start()[1]
    assert command.startswith("python3 -m pip install -r requirements-test.txt && "), command
    wanted = {line.split("#")[0].strip().lower() for line in _read("requirements-test.txt").splitlines()}
    missing = _third_party(_top_level_imports("tests") | _top_level_imports("bench")) - wanted
    assert not missing, "the suite imports %s, not in requirements-test.txt" % sorted(missing)
    assert "ruff" in wanted, ".ci/run lints with ruff"


def test_ci_ends_with_the_readme_test_command():
    lines = [line for line in _read(".ci", "run").splitlines() if line.strip()]
    assert lines[-1] == _quick_start()[1]
