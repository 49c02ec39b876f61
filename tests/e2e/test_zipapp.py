"""The built dfly.pyz, driven as a user drives it, on every CPython 3.8-3.13 here.

The zipapp is built once per session from this checkout, so packaging cannot
drift from the code. Interpreters come from pyenv and PATH (pythons.py); the
ones that ran are listed in the test ids and at the end of the run.
"""
import hashlib
import json
import marshal
import os
import subprocess
import sys
import threading
import zipapp
import zipfile

import pytest
import pythons
from helpers import refused_address

from dfly.demo import CountingOrigin, write_random_file

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TIMEOUT_S = 120


PYTHONS = pythons.FOUND


@pytest.fixture()
def origin(tmp_path):
    root = tmp_path / "origin"
    root.mkdir()
    server = CountingOrigin(str(root))
    server.root = root
    yield server
    server.stop()


class SupernodeProcess:
    """`python dfly.pyz supernode` on 127.0.0.1:0; the port is read from its log."""

    def __init__(self, python, pyz, data_dir, *extra):
        self.proc = subprocess.Popen([python, pyz, "supernode", "--listen", "127.0.0.1:0",
                                      "--data-dir", data_dir] + list(extra),
                                     stderr=subprocess.PIPE, text=True)
        self.address = None
        found = threading.Event()

        def watch():
            for line in self.proc.stderr:
                if self.address is None and "listening on" in line:
                    self.address = line.split("listening on ")[1].split(",")[0]
                    found.set()
        threading.Thread(target=watch, daemon=True, name="supernode-log").start()
        assert found.wait(30), "supernode did not report its address"

    def stop(self):
        self.proc.terminate()
        self.proc.wait(15)


def _get(python, pyz, url, out, data_dir, *extra):
    return subprocess.run([python, pyz, "get", url, "-o", out, "--data-dir", data_dir,
                           "--upload-listen", "127.0.0.1:0"] + list(extra),
                          capture_output=True, text=True, timeout=TIMEOUT_S, cwd=data_dir)


@pytest.mark.parametrize("version", sorted(PYTHONS))
def test_zipapp_runs_a_swarm_on_each_python(version, pyz, origin, tmp_path):
    python = PYTHONS[version]
    help_out = subprocess.run([python, pyz, "--help"], capture_output=True, text=True,
                              timeout=30, cwd=str(tmp_path))
    assert help_out.returncode == 0
    for command in ("supernode", "get", "demo"):
        assert command in help_out.stdout
    digest = write_random_file(str(origin.root / "f.bin"), 9 * 1024 * 1024)
    supernode = SupernodeProcess(python, pyz, str(tmp_path / "sn"))
    try:
        first = _get(python, pyz, origin.url("f.bin"), str(tmp_path / "a.bin"), str(tmp_path),
                     "--supernode", supernode.address, "--digest", digest, "--seed-for", "5", "--json")
        assert first.returncode == 0, first.stderr
        # The first get returned, yet its detached seeder serves the second one.
        (tmp_path / "b").mkdir()
        second = _get(python, pyz, origin.url("f.bin"), str(tmp_path / "b" / "b.bin"),
                      str(tmp_path / "b"), "--supernode", supernode.address, "--digest", digest,
                      "--seed-for", "0", "--json")
        assert second.returncode == 0, second.stderr
    finally:
        supernode.stop()
    for name in ("a.bin", "b/b.bin"):
        assert "sha256:" + hashlib.sha256((tmp_path / name).read_bytes()).hexdigest() == digest
    assert origin.sent_bytes == 9 * 1024 * 1024
    summary = json.loads(second.stdout)
    assert summary["bytes_from_peers"] > 0
    assert summary["bytes_from_source"] == 0
    assert not list(tmp_path.glob(".*dfly-part"))
    pythons.ran_on(version)


def test_get_exit_codes_name_the_failure(pyz, origin, tmp_path):
    python = sys.executable
    write_random_file(str(origin.root / "f.bin"), 1024)
    missing = _get(python, pyz, origin.url("missing"), str(tmp_path / "x"), str(tmp_path))
    assert missing.returncode == 3 and "404" in missing.stderr
    wrong = _get(python, pyz, origin.url("f.bin"), str(tmp_path / "y"), str(tmp_path),
                 "--digest", "sha256:" + "0" * 64)
    assert wrong.returncode == 4 and "does not match" in wrong.stderr
    unwritable = _get(python, pyz, origin.url("f.bin"), str(tmp_path / "no" / "such" / "dir"),
                      str(tmp_path))
    assert unwritable.returncode == 6
    with refused_address() as (host, port):
        p2p_only = _get(python, pyz, origin.url("f.bin"), str(tmp_path / "z"), str(tmp_path),
                        "--supernode", "%s:%d" % (host, port), "--no-back-source")
    assert p2p_only.returncode == 7
    usage = _get(python, pyz, origin.url("f.bin"), str(tmp_path / "z"), str(tmp_path),
                 "--digest", "md5:nothex")
    assert usage.returncode == 2
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()
    assert not list(tmp_path.glob(".*dfly-part"))


def test_get_fetches_a_pasted_url_refuses_a_hopeless_one_and_names_a_broken_origin(pyz, tmp_path):
    """A raw space and non-ASCII path are encoded; a URL that cannot be made valid is a
    usage error (2) before anything starts; an origin breaking HTTP is a source error (3)."""
    from origin import Fault, Origin
    origin = Origin(str(tmp_path / "origin"))
    try:
        src = origin.add("dir with space/ünï cödé.bin", b"pasted" * 1000)
        pasted = _get(sys.executable, pyz, "http://127.0.0.1:%d/%s" % (origin.address[1], src.name),
                      str(tmp_path / "pasted.bin"), str(tmp_path))
        assert pasted.returncode == 0, pasted.stderr
        assert (tmp_path / "pasted.bin").read_bytes() == src.data
        hopeless = _get(sys.executable, pyz, "http://exa mple.invalid/x", str(tmp_path / "h"),
                        str(tmp_path))
        assert hopeless.returncode == 2 and hopeless.stderr.startswith("dfly: error: bad host name")
        origin.add("broken.bin", b"x")
        for fault in (Fault(status_line=b"HTTP/1.1 two-hundred OK"), Fault(extra_headers=120)):
            origin.fault("broken.bin", fault)
            broken = _get(sys.executable, pyz, origin.url("broken.bin"), str(tmp_path / "b"),
                          str(tmp_path))
            assert broken.returncode == 3 and "broke the HTTP protocol" in broken.stderr
            assert "Traceback" not in broken.stderr and len(broken.stderr.splitlines()) == 1
    finally:
        origin.stop()
    assert not (tmp_path / "h").exists() and not (tmp_path / "b").exists()
    assert not list(tmp_path.glob(".*dfly-part"))


def test_get_of_a_source_the_supernode_denies_exits_9_without_fetching_it(pyz, origin, tmp_path):
    python = sys.executable
    write_random_file(str(origin.root / "f.bin"), 1024)
    supernode = SupernodeProcess(python, pyz, str(tmp_path / "sn"), "--deny-source", "127.0.0.0/8")
    try:
        denied = _get(python, pyz, origin.url("f.bin"), str(tmp_path / "f.bin"), str(tmp_path),
                      "--supernode", supernode.address)
    finally:
        supernode.stop()
    assert denied.returncode == 9, denied.stderr
    assert "source policy" in denied.stderr and "Traceback" not in denied.stderr
    assert not (tmp_path / "f.bin").exists() and not list(tmp_path.glob(".*dfly-part"))


def test_get_streams_to_stdout_in_order(pyz, origin, tmp_path):
    digest = write_random_file(str(origin.root / "f.bin"), 5 * 1024 * 1024 + 7)
    supernode = SupernodeProcess(sys.executable, pyz, str(tmp_path / "sn"))
    try:
        out = subprocess.run([sys.executable, pyz, "get", origin.url("f.bin"), "-o", "-",
                              "--supernode", supernode.address, "--data-dir", str(tmp_path),
                              "--seed-for", "0", "--upload-listen", "127.0.0.1:0"],
                             capture_output=True, timeout=TIMEOUT_S)
    finally:
        supernode.stop()
    assert out.returncode == 0, out.stderr
    assert "sha256:" + hashlib.sha256(out.stdout).hexdigest() == digest


def test_readme_quick_start_demo_runs(pyz, tmp_path):
    out = subprocess.run([sys.executable, pyz, "demo", "--size", "8M", "--peers", "3"],
                         capture_output=True, text=True, timeout=TIMEOUT_S, cwd=str(tmp_path))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "origin sent 8.0 MiB for 3 copies (1.00 x the file)" in out.stdout
    assert os.listdir(str(tmp_path)) == []   # nothing left in the current directory


# Runs the archive as `python dfly.pyz get --help` does (runpy: the get's options, so its
# settings modules, are loaded; --version loads no command's), then says which loader
# brought in each dfly module, from which bytecode, and what a traceback would show.
PROBE = """
import contextlib, io, json, linecache, runpy, sys
archive = sys.argv[1]
sys.argv = [archive, "get", "--help"]
try:
    with contextlib.redirect_stdout(io.StringIO()):
        runpy.run_path(archive, run_name="__main__")
except SystemExit as e:
    code = e.code
cli = sys.modules["dfly.cli"]
finder = sys.meta_path[0]
never_imported = (finder.get_source("dfly.supernode.scheduler")
                  if type(finder).__name__ == "ArchiveBytecode" else "")
print(json.dumps({"code": code, "tag": sys.implementation.cache_tag,
                  "never_imported_source": never_imported.splitlines()[:1],
                  "urllib_request": "urllib.request" in sys.modules,
                  "first_line": linecache.getline(cli.__file__, 1, cli.__dict__),
                  "modules": {name: [type(m.__spec__.loader).__name__, m.__spec__.cached]
                              for name, m in sys.modules.items() if name.startswith("dfly")}}))
"""


def _probe(python, archive):
    out = subprocess.run([python, "-S", "-c", PROBE, archive], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.splitlines()[-1])


@pytest.mark.parametrize("version", sorted(PYTHONS))
def test_zipapp_loads_dfly_from_the_bytecode_built_for_each_python(version, pyz):
    """No interpreter compiles dfly's sources at start (50-60 ms of CPU each time)."""
    got = _probe(PYTHONS[version], pyz)
    assert got["code"] == 0
    assert len(got["modules"]) > 10
    for name, (loader, cached) in got["modules"].items():
        assert loader == "ArchiveBytecode", name
        assert cached == os.path.join(pyz, "__bytecode__", got["tag"]), name
    assert got["first_line"].startswith('"""The command line')   # tracebacks show the source
    # also of a module not (or no longer) imported, as after an import that failed
    assert got["never_imported_source"][0].startswith('"""Which peer fetches which piece from whom')
    # Every module a `get` uses is loaded by now; urllib.request (and the tempfile and more
    # it brings) only by a get that goes to the source itself.
    assert got["urllib_request"] is False


def _rebuilt(pyz, folder, change):
    """A copy of the archive whose bytecode file for this Python went through change()."""
    tree = folder / "tree"
    with zipfile.ZipFile(pyz) as archive:
        archive.extractall(str(tree))
    path = tree / "__bytecode__" / sys.implementation.cache_tag
    form, magic, modules = marshal.loads(path.read_bytes())
    path.write_bytes(marshal.dumps(change(form, magic, modules)))
    target = str(folder / "changed.pyz")
    zipapp.create_archive(str(tree), target)
    return target


def test_zipapp_leaves_to_zipimport_the_modules_its_bytecode_lacks(pyz, tmp_path):
    def drop_options(form, magic, modules):
        del modules["dfly.options"]
        return form, magic, modules

    got = _probe(sys.executable, _rebuilt(pyz, tmp_path, drop_options))

    assert got["code"] == 0
    assert got["modules"]["dfly.options"][0] == "zipimporter"   # which compiles the source
    assert got["modules"]["dfly.cli"][0] == "ArchiveBytecode"


def test_zipapp_ignores_bytecode_of_another_python(pyz, tmp_path):
    """A wrong magic number (the file of another version under this name): every
    module is left to zipimport, and the command works."""
    got = _probe(sys.executable, _rebuilt(pyz, tmp_path, lambda form, magic, modules:
                                          (form, b"\0\0\r\n", modules)))

    assert got["code"] == 0
    assert {loader for loader, _ in got["modules"].values()} == {"zipimporter"}


def test_build_says_which_named_interpreter_gave_no_bytecode_and_builds_anyway(tmp_path):
    target = str(tmp_path / "dfly.pyz")
    out = subprocess.run([sys.executable, os.path.join(ROOT, "build_zipapp.py"), "-o", target,
                          "--python", sys.executable, "--python", str(tmp_path / "no-such-python")],
                         capture_output=True, text=True, timeout=120)

    assert out.returncode == 0, out.stderr
    assert "no bytecode from %s" % (tmp_path / "no-such-python") in out.stderr
    with zipfile.ZipFile(target) as archive:
        assert [n for n in archive.namelist() if n.startswith("__bytecode__/")] == \
            ["__bytecode__/" + _probe(sys.executable, target)["tag"]]
