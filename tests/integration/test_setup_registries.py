"""`dfly setup` for several registries at once (a daemon mirroring each, its
--mirror-registry): one hosts.toml per registry for containerd, one mirror
block per registry for podman, refused for Docker (Docker Hub only); the undo
line it prints puts every byte back."""
import pytest

from tests.integration.test_setup_files import place, setup, tree


@pytest.mark.parametrize("runtime,files", [
    ("containerd", {"/etc/containerd/config.toml": "containerd-1.6-default.toml"}),
    ("podman", {"/etc/containers/registries.conf": "registries-with-others.conf"}),
])
def test_setup_for_two_registries_writes_both_and_its_undo_line_restores_all(
        runtime, files, tmp_path, capsys):
    for path, name in files.items():
        place(tmp_path, path, name)
    original = tree(tmp_path)
    code, out, err = setup(capsys, runtime, "--root", str(tmp_path), "--registry", "docker.io",
                           "--registry", "http://127.0.0.1:5000")
    assert (code, err) == (0, "")
    if runtime == "containerd":
        for host in ("docker.io", "127.0.0.1:5000"):
            hosts = (tmp_path / "etc/containerd/certs.d" / host / "hosts.toml").read_text()
            assert 'host."http://127.0.0.1:65001"' in hosts
    else:
        conf = (tmp_path / "etc/containers/registries.conf").read_text()
        assert conf.count("[[registry.mirror]]") >= 2 and '"127.0.0.1:5000"' in conf
    again = setup(capsys, runtime, "--root", str(tmp_path), "--registry", "docker.io",
                  "--registry", "http://127.0.0.1:5000")
    assert again[0] == 0 and "nothing changed" in again[1]
    line = next(x for x in out.splitlines() if x.startswith("undo with: dfly "))
    code, _, err = setup(capsys, *line[len("undo with: dfly setup "):].split())
    assert (code, err) == (0, "")
    assert tree(tmp_path) == original


def test_docker_takes_one_registry_only(tmp_path, capsys):
    code, _, err = setup(capsys, "docker", "--root", str(tmp_path), "--registry", "docker.io",
                         "--registry", "quay.io")
    assert code == 2 and "Docker Hub" in err
    assert tree(tmp_path) == {}


def test_containerd_default_hosts_toml_is_written_undone_and_says_what_the_daemon_needs(tmp_path, capsys):
    place(tmp_path, "/etc/containerd/config.toml", "containerd-1.6-default.toml")
    original = tree(tmp_path)
    code, out, err = setup(capsys, "containerd", "--hosts-only", "--root", str(tmp_path),
                           "--registry", "docker.io", "--registry", "_default")
    assert (code, err) == (0, "")
    default = (tmp_path / "etc/containerd/certs.d/_default/hosts.toml").read_text()
    assert 'host."http://127.0.0.1:65001"' in default and "server" not in default.replace("# ", "")
    assert "--mirror-registry" in out and "404" in out
    assert "nothing changed" in setup(capsys, "containerd", "--hosts-only", "--root", str(tmp_path),
                                      "--registry", "docker.io", "--registry", "_default")[1]
    line = next(x for x in out.splitlines() if x.startswith("undo with: dfly "))
    assert "--registry _default" in line
    code, _, err = setup(capsys, *line[len("undo with: dfly setup "):].split())
    assert (code, err) == (0, "")
    assert tree(tmp_path) == original


@pytest.mark.parametrize("runtime", ["docker", "podman"])
def test_default_is_containerds_alone(runtime, tmp_path, capsys):
    code, _, err = setup(capsys, runtime, "--root", str(tmp_path), "--registry", "_default")
    assert code == 2 and "containerd" in err and err.count("\n") == 1
    assert tree(tmp_path) == {}
