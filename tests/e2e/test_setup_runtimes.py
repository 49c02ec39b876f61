"""What `dfly setup` writes is what real clients follow: Debian's containerd (on a
temporary root, the CRI plugin off) fetches an image with `ctr content fetch
--hosts-dir` over the generated certs.d, and skopeo pulls with the generated
registries.conf; both through the zipapp's daemon, in front of a real registry.
The daemon's counters show the blobs came through it, the registry's access log
that each was read from it once."""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.request

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests"))
from helpers import wait_until  # noqa: E402
from processes import Process  # noqa: E402
from registry import MISSING, Registry, build_image, dir_layers, pull, push  # noqa: E402

from dfly.setup.tomlscan import Entry, scan, string_value  # noqa: E402

DATA = os.path.join(ROOT, "tests", "data", "runtimes")
CONTAINERD, CTR = shutil.which("containerd"), shutil.which("ctr")
TIMEOUT_S = 60
# every plugin that would touch the host outside the temporary root, or probe kernel modules
DISABLED = ["io.containerd.grpc.v1.cri", "io.containerd.internal.v1.opt",
            "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
            "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",
            "io.containerd.tracing.processor.v1.otlp"]


class Containerd:
    """containerd on a temporary root and socket; stop() at teardown."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="dfly-ctd-")   # short: a socket path is <108 bytes
        self.socket = os.path.join(self.dir, "c.sock")
        config = os.path.join(self.dir, "config.toml")
        with open(config, "w") as f:
            f.write('version = 2\nroot = "%s/root"\nstate = "%s/state"\ndisabled_plugins = %s\n'
                    '[grpc]\n  address = "%s"\n[ttrpc]\n  address = "%s/t.sock"\n'
                    '[debug]\n  address = ""\n[metrics]\n  address = ""\n'
                    % (self.dir, self.dir, json.dumps(DISABLED), self.socket, self.dir))
        self.log = open(os.path.join(self.dir, "log"), "wb")
        self.process = subprocess.Popen([CONTAINERD, "--config", config], stdout=self.log,
                                        stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        wait_until(self._answers, timeout=30, interval=0.2, message="containerd answering")
        assert self.process.poll() is None, open(os.path.join(self.dir, "log")).read()

    def _answers(self) -> bool:
        return self.process.poll() is not None or self.ctr("version", check=False).returncode == 0

    def ctr(self, *args, check=True) -> subprocess.CompletedProcess:
        out = subprocess.run([CTR, "--address", self.socket, "--namespace", "dfly-test"] + list(args),
                             capture_output=True, text=True, timeout=TIMEOUT_S, stdin=subprocess.DEVNULL)
        if check:
            assert out.returncode == 0, out.stderr
        return out

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def daemon_stats(address: str) -> dict:
    with urllib.request.urlopen("http://%s/v1/stats" % address, timeout=10) as reply:
        return json.loads(reply.read())


def dfly_setup(pyz, *args) -> str:
    out = subprocess.run([sys.executable, pyz, "setup"] + list(args), capture_output=True, text=True,
                         timeout=TIMEOUT_S)
    assert out.returncode == 0, out.stderr
    return out.stdout


@pytest.mark.skipif(bool(MISSING), reason=MISSING)
@pytest.mark.skipif(not (CONTAINERD and CTR), reason="needs containerd (apt-get install containerd)")
@pytest.mark.skipif(os.geteuid() != 0, reason="containerd needs root")
@pytest.mark.time_limit(180)
def test_containerd_and_skopeo_pull_through_the_daemon_with_the_files_setup_wrote(pyz, tmp_path):
    registry = Registry(str(tmp_path / "registry"))
    daemon = containerd = None
    try:
        image = build_image(str(tmp_path / "layout"), "v1", layer_sizes=(1 << 20, 1 << 19))
        push(image, registry, "team/app")
        daemon = Process(pyz, "daemon", "--listen", "127.0.0.1:0", "--upload-listen", "127.0.0.1:0",
                         "--data-dir", str(tmp_path / "d"), "--registry-mirror", registry.url)
        root = tmp_path / "host"
        for path, name in (("etc/containerd/config.toml", "containerd-1.6-default.toml"),
                           ("etc/containers/registries.conf", "registries-with-others.conf")):
            (root / path).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(os.path.join(DATA, name), str(root / path))
        flags = ["--root", str(root), "--daemon", daemon.address]
        dfly_setup(pyz, "containerd", "--registry", registry.url, *flags)
        dfly_setup(pyz, "podman", "--registry", registry.host, *flags)

        containerd = Containerd()
        fetched = containerd.ctr("content", "fetch", "--hosts-dir", str(root / "etc/containerd/certs.d"),
                                 "--platform", "linux/amd64", "%s/team/app:v1" % registry.host)
        listed = containerd.ctr("content", "ls", "-q").stdout.split()
        assert set(image.layers["amd64"]) <= set(listed), fetched.stdout
        after_ctr = daemon_stats(daemon.address)
        assert after_ctr["bytes_from_source"] >= image.size_of("amd64")
        registry.settle()
        for layer in image.layers["amd64"]:
            assert len(registry.blob_gets(layer)) == 1   # the daemon's one fetch

        conf = str(root / "etc/containers/registries.conf")
        pull(conf, registry, "team/app", "v1", str(tmp_path / "pulled"), arch="arm64")
        assert dir_layers(str(tmp_path / "pulled")) == image.layers["arm64"]
        after_skopeo = daemon_stats(daemon.address)
        assert after_skopeo["bytes_from_source"] - after_ctr["bytes_from_source"] >= image.size_of("arm64")
        registry.settle()
        for layer in image.layers["arm64"]:
            assert len(registry.blob_gets(layer)) == 1
    finally:
        if containerd is not None:
            containerd.stop()
        if daemon is not None:
            daemon.stop()
        registry.stop()


def fetch(containerd: Containerd, hosts_dir: str, reference: str) -> None:
    containerd.ctr("content", "fetch", "--hosts-dir", hosts_dir, "--platform", "linux/amd64", reference)


@pytest.mark.skipif(bool(MISSING), reason=MISSING)
@pytest.mark.skipif(not (CONTAINERD and CTR), reason="needs containerd (apt-get install containerd)")
@pytest.mark.skipif(os.geteuid() != 0, reason="containerd needs root")
@pytest.mark.time_limit(180)
def test_containerd_default_hosts_toml_keeps_every_registry_pulling_via_the_daemon_or_past_it(pyz, tmp_path):
    """certs.d/_default (dfly setup --registry _default) with a daemon that mirrors
    registry `mine` only: `mine`'s pulls come through the daemon, `other`'s straight from
    `other` (the daemon's 404 sends containerd on), and while the daemon is down every
    pull, containerd's and skopeo's (dfly setup podman), goes to the registry itself."""
    mine, other = Registry(str(tmp_path / "mine")), Registry(str(tmp_path / "other"))
    daemon = containerd = None
    try:
        v1, v2, theirs = (build_image(str(tmp_path / name), tag, layer_sizes=(1 << 19,), arches=arches,
                                      seed=seed)
                          for name, tag, seed, arches in (("v1", "v1", 1, ("amd64",)),
                                                          ("v2", "v2", 2, ("amd64", "arm64")),
                                                          ("theirs", "v1", 3, ("amd64",))))
        push(v1, mine, "team/app")
        push(v2, mine, "team/app")
        push(theirs, other, "team/theirs")
        daemon = Process(pyz, "daemon", "--listen", "127.0.0.1:0", "--upload-listen", "127.0.0.1:0",
                         "--data-dir", str(tmp_path / "d"), "--registry-mirror", mine.url,
                         "--mirror-registry", "%s=%s" % (mine.host, mine.url))
        root = tmp_path / "host"
        root.mkdir()
        said = dfly_setup(pyz, "containerd", "--hosts-only", "--registry", "_default",
                          "--root", str(root), "--daemon", daemon.address)
        assert "--mirror-registry" in said
        hosts_dir = str(root / "etc/containerd/certs.d")
        assert os.listdir(hosts_dir) == ["_default"]
        dfly_setup(pyz, "podman", "--registry", mine.host, "--root", str(root), "--daemon", daemon.address)
        containerd = Containerd()

        fetch(containerd, hosts_dir, "%s/team/app:v1" % mine.host)
        through = daemon_stats(daemon.address)["bytes_from_source"]
        assert through >= v1.size_of("amd64")

        fetch(containerd, hosts_dir, "%s/team/theirs:v1" % other.host)
        assert daemon_stats(daemon.address)["bytes_from_source"] == through   # not via the daemon
        other.settle()
        for layer in theirs.layers["amd64"]:
            assert len(other.blob_gets(layer)) == 1

        daemon.stop()
        daemon = None
        fetch(containerd, hosts_dir, "%s/team/app:v2" % mine.host)
        listed = containerd.ctr("content", "ls", "-q").stdout.split()
        assert set(v2.layers["amd64"]) <= set(listed)
        conf = str(root / "etc/containers/registries.conf")
        pull(conf, mine, "team/app", "v2", str(tmp_path / "pulled"), arch="arm64")
        assert dir_layers(str(tmp_path / "pulled")) == v2.layers["arm64"]
        mine.settle()
        for layer in v2.layers["amd64"] + v2.layers["arm64"]:
            assert len(mine.blob_gets(layer)) == 1   # from the registry itself
    finally:
        if containerd is not None:
            containerd.stop()
        if daemon is not None:
            daemon.stop()
        mine.stop()
        other.stop()


@pytest.mark.skipif(not CONTAINERD, reason="needs containerd (apt-get install containerd)")
@pytest.mark.parametrize("config", ["containerd-1.6-default.toml", "containerd-no-registry.toml",
                                    "containerd-config-path-set.toml", None])
def test_containerd_reads_the_config_path_setup_wrote_into_its_config_toml(pyz, config, tmp_path):
    """Debian's containerd loads each config.toml dfly setup left (`containerd config
    dump`: parsed and merged, nothing started) and its CRI registry reads certs.d."""
    target = tmp_path / "etc/containerd/config.toml"
    if config:
        target.parent.mkdir(parents=True)
        shutil.copy(os.path.join(DATA, config), str(target))
    dfly_setup(pyz, "containerd", "--root", str(tmp_path))
    dump = subprocess.run([CONTAINERD, "--config", str(target), "config", "dump"], capture_output=True,
                          text=True, timeout=TIMEOUT_S, stdin=subprocess.DEVNULL)
    assert dump.returncode == 0, dump.stderr
    found = [string_value(i) for i in scan(dump.stdout) if isinstance(i, Entry)
             and i.table + i.key == ("plugins", "io.containerd.grpc.v1.cri", "registry", "config_path")]
    assert len(found) == 1 and "/etc/containerd/certs.d" in found[0].split(":"), found
    assert (tmp_path / "etc/containerd/certs.d/docker.io/hosts.toml").is_file()
