"""`dfly export` and `dfly import` from the built zipapp: the README's example
(files through a supernode process, in parts, into a fresh supernode's data
dir that then serves them with the origin stopped), and each documented exit
code as a user meets it (one line, no traceback, nothing left at the target)."""
import os
import subprocess
import sys

import pytest
from helpers import MiB, content, sha256_file
from processes import Process


def _dfly(pyz, *args):
    return subprocess.run([sys.executable, pyz] + list(args), capture_output=True, text=True,
                          timeout=60)


def _refused(out, code: int, words: str) -> None:
    assert out.returncode == code, (out.returncode, out.stderr)
    assert words in out.stderr and "Traceback" not in out.stderr, out.stderr
    assert out.stderr.splitlines()[-1].startswith("dfly: error: ")


@pytest.mark.time_limit(120)
def test_export_and_import_commands_carry_files_and_exit_with_the_documented_codes(pyz, origin, tmp_path):
    src = origin.add("tools.iso", content(3 * MiB, seed=91))
    archive = str(tmp_path / "site.tar")
    supernode = Process(pyz, "supernode", "--listen", "127.0.0.1:0", "--data-dir", str(tmp_path / "sn"))
    try:
        done = _dfly(pyz, "export", src.url, "-o", archive, "--part-size", "1M", "--supernode",
                     supernode.address, "--data-dir", str(tmp_path / "exporter"))
        assert done.returncode == 0, done.stderr
        assert "exported 0 images (0 blobs) and 1 files" in done.stderr
        failed = _dfly(pyz, "export", origin.url("missing.iso"), "-o", str(tmp_path / "bad.tar"),
                       "--supernode", supernode.address, "--data-dir", str(tmp_path / "exporter"))
    finally:
        assert supernode.stop() == 0
    _refused(failed, 3, "404")
    assert not [n for n in os.listdir(str(tmp_path)) if n.startswith("bad.tar")]
    parts = sorted(n for n in os.listdir(str(tmp_path)) if n.startswith("site.tar."))
    assert parts == ["site.tar.000", "site.tar.001", "site.tar.002", "site.tar.003"]

    with open(archive + ".003", "rb") as f:   # a copy cut short, as a full disk leaves one
        last = f.read()
    for n in range(3):
        os.link(archive + ".%03d" % n, str(tmp_path / ("cut.tar.%03d" % n)))
    with open(str(tmp_path / "cut.tar.003"), "wb") as f:
        f.write(last[:len(last) // 2])
    fresh = str(tmp_path / "fresh-sn")
    _refused(_dfly(pyz, "import", str(tmp_path / "cut.tar.000"), "--data-dir", fresh, "--into",
                   "supernode"), 4, "truncated")
    assert os.listdir(fresh) == ["supernode.lock"]   # nothing imported; the import's lock (datadir.py)
    _refused(_dfly(pyz, "import", str(tmp_path / "none.tar"), "--data-dir", fresh, "--into",
                   "supernode"), 6, "none.tar")
    _refused(_dfly(pyz, "import", archive, "--data-dir", str(tmp_path / "unknown")), 2, "--into")

    done = _dfly(pyz, "import", archive + ".000", "--data-dir", fresh)   # told: not yet; --into
    assert done.returncode == 2
    done = _dfly(pyz, "import", *[str(tmp_path / n) for n in parts], "--data-dir", fresh,
                 "--into", "supernode")   # as `dfly import site.tar.* ...` lists them
    assert done.returncode == 0, done.stderr
    origin.stop()
    served = Process(pyz, "supernode", "--listen", "127.0.0.1:0", "--data-dir", fresh)
    try:
        got = _dfly(pyz, "get", src.url, "-o", str(tmp_path / "got.iso"), "--supernode",
                    served.address, "--no-back-source", "--no-daemon", "--seed-for", "0",
                    "--data-dir", str(tmp_path / "getter"))
    finally:
        assert served.stop() == 0
    assert got.returncode == 0, got.stderr
    assert sha256_file(str(tmp_path / "got.iso")) == src.sha256


@pytest.fixture
def pushed(tmp_path):
    """A real registry holding team/app:v1 (one amd64 layer of 300 KiB), and that image."""
    from registry import MISSING, Registry, build_image, push
    if MISSING:
        pytest.skip(MISSING)
    registry = Registry(str(tmp_path / "registry"))
    try:
        image = build_image(str(tmp_path / "layout"), "v1", layer_sizes=(300 << 10,), arches=("amd64",))
        push(image, registry, "team/app")
        yield registry, image
    finally:
        registry.stop()


@pytest.mark.time_limit(90)
def test_export_and_import_commands_carry_an_image(pyz, tmp_path, pushed):
    registry, image = pushed
    archive = str(tmp_path / "app.tar")
    done = _dfly(pyz, "export", "%s/team/app:v1" % registry.host, "--plain-http", "-o", archive,
                 "--data-dir", str(tmp_path / "exporter"))
    registry.stop()   # the import needs no registry
    assert done.returncode == 0, done.stderr
    assert "exported 1 images (2 blobs) and 0 files" in done.stderr
    daemon_dir = str(tmp_path / "daemon")
    done = _dfly(pyz, "import", archive, "--data-dir", daemon_dir, "--into", "daemon")
    assert done.returncode == 0, done.stderr
    assert "import: 1 images (2 blobs) and 0 files" in done.stderr
    cached = os.listdir(os.path.join(daemon_dir, "daemon", "cache"))
    assert sorted(cached) == sorted(d.replace(":", "-") for d in image.blob_sizes)


def _nothing_at(folder, name: str) -> None:
    """No archive, part, or temporary file of `name` is left in `folder`."""
    assert [n for n in os.listdir(str(folder)) if name in n] == []


@pytest.mark.time_limit(120)
def test_export_exits_2_5_6_7_and_9_as_users_meet_them_leaving_nothing(pyz, origin, tmp_path):
    """README's other `dfly export` codes, from the zipapp: a bad flag, a stalled
    origin outlasting --timeout, an archive that cannot be written, no supernode
    with --no-back-source, a source the supernode's policy denies."""
    from helpers import refused_address
    src = origin.add("tools.iso", content(2 * MiB, seed=92))
    slow = origin.add("slow.iso", content(4 * MiB, seed=93))
    origin.fault("slow.iso", stall_after=MiB + 5)    # sends a little, then nothing until stopped
    data = ["--data-dir", str(tmp_path / "exporter")]
    out = str(tmp_path / "out.tar")

    _refused(_dfly(pyz, "export", src.url, "-o", out, "--part-size", "lots", *data), 2,
             "bad value for --part-size: not a size")
    _refused(_dfly(pyz, "export", slow.url, "-o", out, "--timeout", "2s", *data), 5, "timed out")
    assert origin.arrived("slow.iso") == 1
    _refused(_dfly(pyz, "export", src.url, "-o", str(tmp_path / "no" / "dir" / "out.tar"), *data),
             6, str(tmp_path / "no"))
    assert not (tmp_path / "no").exists()
    with refused_address() as (host, port):
        _refused(_dfly(pyz, "export", src.url, "-o", out, "--supernode", "%s:%d" % (host, port),
                       "--no-back-source", *data), 7, "no supernode reachable")
    denying = Process(pyz, "supernode", "--listen", "127.0.0.1:0", "--data-dir", str(tmp_path / "sn"),
                      "--deny-source", "127.0.0.0/8")
    try:
        denied = _dfly(pyz, "export", src.url, "-o", out, "--supernode", denying.address, *data)
    finally:
        assert denying.stop() == 0
    _refused(denied, 9, "source policy")
    assert origin.arrived("tools.iso") == 0
    _nothing_at(tmp_path, "out.tar")


@pytest.mark.time_limit(90)
def test_export_exits_4_when_a_blob_the_registry_sends_does_not_match_its_digest(pyz, tmp_path, pushed):
    registry, image = pushed
    layer = image.layers["amd64"][0][len("sha256:"):]
    stored = tmp_path / "registry" / "data" / "docker" / "registry" / "v2" / "blobs" / "sha256" \
        / layer[:2] / layer / "data"
    data = bytearray(stored.read_bytes())
    data[1000] ^= 0xFF   # one byte flipped on the registry's disk, the length kept
    stored.write_bytes(bytes(data))
    out = _dfly(pyz, "export", "%s/team/app:v1" % registry.host, "--plain-http",
                "-o", str(tmp_path / "app.tar"), "--data-dir", str(tmp_path / "exporter"))
    _refused(out, 4, layer[:12])
    _nothing_at(tmp_path, "app.tar")
