"""`dfly setup` on temporary roots holding real-world configs: the files it writes,
a second run that changes nothing, an --undo that puts back the very bytes, and
bad input (a file it cannot parse, a read-only root, a folder that refuses the
second of two files, a file edited after setup) refused with nothing changed."""
import os
import shutil
import subprocess
import sys

import pytest

from dfly import cli

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DATA = os.path.join(ROOT, "tests", "data", "runtimes")
UNSHARE = shutil.which("unshare")
IS_ROOT = os.geteuid() == 0


def tree(root) -> dict:
    """Every file below root -> its bytes; every folder -> None."""
    found = {}
    for folder, dirs, files in os.walk(str(root)):
        for name in dirs:
            found[os.path.relpath(os.path.join(folder, name), str(root))] = None
        for name in files:
            path = os.path.join(folder, name)
            with open(path, "rb") as f:
                found[os.path.relpath(path, str(root))] = f.read()
    return found


def place(root, path: str, data_name: str, mode: int = 0o644) -> None:
    target = root / path.lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(os.path.join(DATA, data_name), str(target))
    os.chmod(str(target), mode)


def setup(capsys, *args):
    code = cli.main(["setup"] + list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.parametrize("runtime,files", [
    ("containerd", {"/etc/containerd/config.toml": "containerd-1.6-default.toml"}),
    ("containerd", {"/etc/containerd/config.toml": "containerd-config-path-set.toml"}),
    ("containerd", {}),
    ("docker", {"/etc/docker/daemon.json": "docker-daemon.json"}),
    ("docker", {}),
    ("podman", {"/etc/containers/registries.conf": "registries-with-others.conf"}),
    ("podman", {"/etc/containers/registries.conf": "registries-debian-default.conf"}),
])
def test_setup_twice_then_undo_leaves_the_root_exactly_as_it_was(runtime, files, tmp_path, capsys):
    for path, name in files.items():
        place(tmp_path, path, name, mode=0o600)
    (tmp_path / "etc").mkdir(exist_ok=True)
    original = tree(tmp_path)
    code, out, err = setup(capsys, runtime, "--root", str(tmp_path))
    assert (code, err) == (0, "")
    assert "wrote " in out and "undo with: dfly setup %s --undo --root %s" % (runtime, tmp_path) in out
    once = tree(tmp_path)
    assert once != original
    for path in files:   # the owner's file mode is kept
        assert os.stat(str(tmp_path / path.lstrip("/"))).st_mode & 0o777 == 0o600
    code, out, _ = setup(capsys, runtime, "--root", str(tmp_path))
    assert code == 0 and out.endswith("nothing changed\n") and "wrote" not in out
    assert tree(tmp_path) == once
    code, out, err = setup(capsys, runtime, "--root", str(tmp_path), "--undo")
    assert (code, err) == (0, "")
    assert tree(tmp_path) == original
    assert setup(capsys, runtime, "--root", str(tmp_path), "--undo")[1].startswith("nothing to undo")


def test_containerd_setup_writes_hosts_toml_where_config_path_points(tmp_path, capsys):
    place(tmp_path, "/etc/containerd/config.toml", "containerd-config-path-set.toml")
    code, out, _ = setup(capsys, "containerd", "--root", str(tmp_path), "--registry", "registry.example:5000")
    assert code == 0
    hosts = tmp_path / "etc/containerd/certs.d/registry.example:5000/hosts.toml"
    assert 'server = "https://registry.example:5000"' in hosts.read_text()
    assert "nothing to restart" in out   # config.toml already named certs.d: untouched


@pytest.mark.parametrize("runtime,path,text,line", [
    ("containerd", "/etc/containerd/config.toml", 'version = 2\n[plugins\n', "config.toml line 2"),
    ("docker", "/etc/docker/daemon.json", '{\n  "debug": true,\n}\n', "daemon.json line 3"),
    ("podman", "/etc/containers/registries.conf", '[[registry]]\nlocation = "docker.io\n',
     "registries.conf line 2"),
    ("docker", "/etc/docker/daemon.json", '{"x": "\xff"}', "daemon.json line 1: not UTF-8"),
])
def test_a_file_it_cannot_parse_is_refused_with_its_line_and_nothing_is_written(
        runtime, path, text, line, tmp_path, capsys):
    target = tmp_path / path.lstrip("/")
    target.parent.mkdir(parents=True)
    target.write_bytes(text.encode("latin-1"))
    before = tree(tmp_path)
    code, out, err = setup(capsys, runtime, "--root", str(tmp_path))
    assert code == 2
    assert err.startswith("dfly: error: ") and line in err and err.count("\n") == 1
    assert tree(tmp_path) == before


def test_undo_refuses_to_throw_away_edits_made_after_setup(tmp_path, capsys):
    place(tmp_path, "/etc/docker/daemon.json", "docker-daemon.json")
    assert setup(capsys, "docker", "--root", str(tmp_path))[0] == 0
    edited = tmp_path / "etc/docker/daemon.json"
    edited.write_text(edited.read_text().replace('"live-restore": true', '"live-restore": false'))
    before = tree(tmp_path)
    code, _, err = setup(capsys, "docker", "--root", str(tmp_path), "--undo")
    assert code == 2 and "was changed after dfly setup wrote it" in err
    assert tree(tmp_path) == before


def _setup_with_read_only(root, read_only, *args):
    """`dfly setup` in a process that sees `read_only` (a folder) mounted read-only: as
    root via a private mount namespace (root ignores file modes), else by file mode."""
    command = [sys.executable, "-m", "dfly", "setup"] + list(args)
    env = dict(os.environ, PYTHONPATH=ROOT)
    if IS_ROOT:
        script = 'mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" && shift && exec "$@"'
        command = [UNSHARE, "--mount", "sh", "-c", script, "sh", str(read_only)] + command
    else:
        os.chmod(str(read_only), 0o555)
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=60, env=env)
    finally:
        os.chmod(str(read_only), 0o755)


needs_read_only = pytest.mark.skipif(IS_ROOT and not UNSHARE,
                                     reason="root needs unshare for a read-only mount")


@needs_read_only
def test_a_read_only_root_is_a_clear_error_and_nothing_is_written(tmp_path):
    place(tmp_path, "/etc/docker/daemon.json", "docker-daemon.json")
    before = tree(tmp_path)
    out = _setup_with_read_only(tmp_path, tmp_path, "docker", "--root", str(tmp_path))
    assert out.returncode == 6, out.stderr
    assert out.stderr.startswith("dfly: error: cannot write ") and "nothing was changed" in out.stderr
    assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr
    assert tree(tmp_path) == before


@needs_read_only
def test_when_the_second_file_cannot_be_written_the_first_is_put_back(tmp_path):
    """containerd: config.toml is writable, certs.d is not: config.toml must not keep
    the config_path pointing at hosts that were never written."""
    place(tmp_path, "/etc/containerd/config.toml", "containerd-1.6-default.toml")
    (tmp_path / "etc/containerd/certs.d").mkdir()
    before = tree(tmp_path)
    out = _setup_with_read_only(tmp_path, tmp_path / "etc/containerd/certs.d", "containerd",
                                "--root", str(tmp_path))
    assert out.returncode == 6, out.stderr
    assert "certs.d" in out.stderr and "nothing was changed" in out.stderr
    assert tree(tmp_path) == before


def test_bad_flags_are_usage_errors(tmp_path, capsys):
    assert setup(capsys, "docker", "--root", str(tmp_path / "missing"))[0] == 2
    code, _, err = setup(capsys, "podman", "--root", str(tmp_path), "--registry", "a b")
    assert code == 2 and "--registry" in err
    code, _, err = setup(capsys, "podman", "--root", str(tmp_path), "--daemon", "127.0.0.1")
    assert code == 2 and "--daemon" in err
    assert tree(tmp_path) == {}


def test_hosts_only_writes_the_hosts_file_alone_and_says_when_containerd_would_ignore_it(tmp_path, capsys):
    place(tmp_path, "/etc/containerd/config.toml", "containerd-1.6-default.toml")
    original = tree(tmp_path)
    code, out, _ = setup(capsys, "containerd", "--hosts-only", "--root", str(tmp_path))
    assert code == 0 and "does not set the CRI registry's config_path" in out
    written = {k for k, v in tree(tmp_path).items() if original.get(k, b"?") != v and v is not None}
    assert written == {"etc/containerd/certs.d/docker.io/hosts.toml",
                       "etc/containerd/certs.d/docker.io/hosts.toml.dfly-created"}
    assert "undo with: dfly setup containerd --undo --hosts-only --root" in out
    assert setup(capsys, "containerd", "--hosts-only", "--undo", "--root", str(tmp_path))[0] == 0
    assert tree(tmp_path) == original
    assert setup(capsys, "docker", "--hosts-only", "--root", str(tmp_path))[0] == 2


def test_a_symbolic_link_is_refused_not_replaced_by_a_file(tmp_path, capsys):
    place(tmp_path, "/usr/share/containers/registries.conf", "registries-with-others.conf")
    (tmp_path / "etc/containers").mkdir(parents=True)
    os.symlink("../../usr/share/containers/registries.conf", str(tmp_path / "etc/containers/registries.conf"))
    before = tree(tmp_path)
    code, _, err = setup(capsys, "podman", "--root", str(tmp_path))
    assert code == 2 and "is a symbolic link" in err
    assert tree(tmp_path) == before and os.path.islink(str(tmp_path / "etc/containers/registries.conf"))


def test_the_undo_line_it_prints_undoes_what_it_did(tmp_path, capsys):
    code, out, _ = setup(capsys, "containerd", "--hosts-only", "--root", str(tmp_path), "--daemon",
                         "127.0.0.1:7000", "--registry", "http://127.0.0.1:5000")
    assert code == 0
    line = next(x for x in out.splitlines() if x.startswith("undo with: dfly "))
    code, out, err = setup(capsys, *line[len("undo with: dfly setup "):].split())
    assert (code, err) == (0, "") and "removed " in out
    assert tree(tmp_path) == {}
