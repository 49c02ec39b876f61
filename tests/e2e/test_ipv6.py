"""The zipapp on IPv6, as users run it: a supernode, a daemon and gets on ::1 against
an origin on ::1, skopeo pulling through a daemon on [::1], every address flag
refusing malformed input with one line and exit 2, and a host whose IPv6 is off
(a network namespace of our own) refusing `--listen [::1]:...` the same way."""
import http.client
import json
import os
import shutil
import subprocess
import sys

import pytest
from helpers import MiB, content, run_all
from origin import Origin

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests"))
from processes import Process  # noqa: E402
from registry import MISSING, Registry, build_image, dir_layers, mirror_conf, pull, push  # noqa: E402

TIMEOUT_S = 60


def _has_ipv6_loopback() -> bool:
    import socket
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


needs_ipv6 = pytest.mark.skipif(not _has_ipv6_loopback(), reason="this host has no IPv6 loopback")


def _stats(address: str) -> dict:
    host, port = address[1:].split("]:")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request("GET", "/v1/stats")
        return json.loads(conn.getresponse().read())
    finally:
        conn.close()


def _get(pyz, url, out, *extra):
    return subprocess.run([sys.executable, pyz, "get", url, "-o", out, "--json"] + list(extra),
                          capture_output=True, text=True, timeout=TIMEOUT_S,
                          cwd=os.path.dirname(out))


@needs_ipv6
@pytest.mark.time_limit(120)
def test_a_supernode_a_daemon_and_four_gets_on_ipv6_loopback_go_peer_to_peer(pyz, tmp_path):
    origin = Origin(str(tmp_path / "origin"), host="::1")
    size = 16 * MiB
    src = origin.add("f.bin", content(size, seed=71))
    supernode = Process(pyz, "supernode", "--listen", "[::1]:0", "--data-dir", str(tmp_path / "sn"))
    daemon = None
    try:
        assert supernode.address.startswith("[::1]:")
        daemon = Process(pyz, "daemon", "--listen", "[::1]:0", "--upload-listen", "[::1]:0",
                         "--supernode", supernode.address, "--registry-mirror", "",
                         "--data-dir", str(tmp_path / "d"))
        assert daemon.address.startswith("[::1]:")
        (tmp_path / "out").mkdir()
        handed = _get(pyz, src.url, str(tmp_path / "out" / "daemon.bin"), "--daemon", daemon.address,
                      "--daemon-token", str(tmp_path / "d" / "daemon" / "handoff.token"),
                      "--digest", src.digest)
        assert handed.returncode == 0, handed.stderr
        # Four gets at once: they fetch from the daemon (which keeps serving) and from each
        # other, and seed a little after, as gets do (so none leaves the swarm mid-way).
        outs = run_all([lambda i=i: _get(pyz, src.url, str(tmp_path / "out" / ("g%d.bin" % i)),
                                         "--no-daemon", "--supernode", supernode.address,
                                         "--upload-listen", "[::1]:0", "--seed-for", "2s",
                                         "--data-dir", str(tmp_path / ("g%d" % i)),
                                         "--digest", src.digest)
                        for i in range(4)], timeout=TIMEOUT_S + 10)
    finally:
        codes = [p.stop() for p in (daemon, supernode) if p is not None]
        origin.stop()
    assert codes == [0, 0]
    results = [json.loads(handed.stdout)]
    for done, error in outs:
        assert error is None and done.returncode == 0, error or done.stderr
        results.append(json.loads(done.stdout))
    assert all(r["via"] == "p2p" and r["bytes_from_source"] == 0 for r in results)
    assert all(r["bytes_from_peers"] > 0 for r in results[1:]), results
    assert origin.body_bytes("f.bin") == size          # the origin sent the file once
    for name in ["daemon.bin"] + ["g%d.bin" % i for i in range(4)]:
        assert (tmp_path / "out" / name).read_bytes() == src.data


def _hosts_of_its_own() -> str:
    if MISSING:
        return MISSING
    if os.geteuid() != 0 or not shutil.which("unshare"):
        return ("skopeo 1.9 reads no IPv6 literal in an image reference, so the mirror is named "
                "in a hosts file of skopeo's own: needs root and unshare")
    return ""


def _with_hosts(path: str, lines: str):
    """A runner giving the command a private /etc/hosts (its own mount namespace)."""
    with open(path, "w") as f:
        f.write("127.0.0.1 localhost\n" + lines)
    return ["unshare", "--mount", "sh", "-c", 'mount --bind "$0" /etc/hosts && exec "$@"', path]


@needs_ipv6
@pytest.mark.skipif(bool(_hosts_of_its_own()), reason=_hosts_of_its_own() or "-")
@pytest.mark.time_limit(120)
def test_skopeo_pulls_through_a_daemon_listening_on_ipv6_loopback(pyz, tmp_path):
    registry = Registry(str(tmp_path / "registry"))
    supernode = Process(pyz, "supernode", "--listen", "[::1]:0", "--data-dir", str(tmp_path / "sn"))
    daemon = None
    try:
        daemon = Process(pyz, "daemon", "--listen", "[::1]:0", "--upload-listen", "[::1]:0",
                         "--supernode", supernode.address, "--registry-mirror", registry.url,
                         "--data-dir", str(tmp_path / "d"))
        image = build_image(str(tmp_path / "layout"), "v1", layer_sizes=(2 * MiB, MiB))
        push(image, registry, "team/app")
        port = daemon.address.rsplit(":", 1)[1]
        assert daemon.address == "[::1]:" + port
        # The mirror's name resolves to ::1 only, so skopeo reaches the daemon over IPv6.
        runner = _with_hosts(str(tmp_path / "hosts"), "::1 dfly-v6-mirror\n")
        conf = mirror_conf(str(tmp_path / "registries.conf"), registry, "dfly-v6-mirror:" + port)
        pull(conf, registry, "team/app", "v1", str(tmp_path / "pulled"), arch="amd64",
             runner=runner)
        assert dir_layers(str(tmp_path / "pulled")) == image.layers["amd64"]
        registry.settle()
        for layer in image.layers["amd64"]:
            assert len(registry.blob_gets(layer)) == 1   # through the supernode, once each
        # ...and through the daemon (skopeo would go to the registry itself were the
        # mirror unreachable).
        stats = _stats(daemon.address)
        assert stats["downloads"] >= 2 and stats["bytes_from_supernode"] >= 3 * MiB, stats
    finally:
        codes = [p.stop() for p in (daemon, supernode) if p is not None]
        registry.stop()
    assert codes == [0, 0]


BAD_ADDRESSES = [
    ("supernode", "--listen", "[::1"),
    ("supernode", "--listen", "::1:8002"),
    ("supernode", "--advertise", "[fe80::1%lo]:8002"),
    ("supernode", "--cluster", "[::1]:8002,::1:8003"),
    ("daemon", "--listen", "fe80::1%lo"),
    ("daemon", "--upload-listen", "[::1"),
    ("daemon", "--supernode", "::1:8002"),
    ("daemon", "--advertise", "fe80::1%lo"),
    ("daemon", "--registry-mirror", "http://[fe80::1%25lo]:5000"),
    ("get", "--supernode", "[::1:8002"),
    ("get", "--upload-listen", "::1:0"),
    ("get", "--advertise", "[::1]:80"),
    ("get", "--daemon", "::1:65001"),
    ("bench", "--supernode", "fe80::1%lo"),
    ("daemon", "--gossip-listen", "::1:7946"),
    ("supernode", "--join", "[::1"),
    ("supernode", "--upstream-supernode", "::1:8002"),
    ("supernode", "--upstream-upload-listen", "[fe80::1%lo]:0"),
    ("supernode", "--s3-endpoint", "http://::1:9000"),
    ("get", "--s3-endpoint", "http://[fe80::1%25lo]:9000"),
    ("supernode", "--allow-source", "fe80::1%lo"),
    ("supernode", "--deny-source", "[::1"),
]


@pytest.mark.parametrize("command, flag, value", BAD_ADDRESSES, ids=lambda v: str(v))
def test_every_address_flag_refuses_a_malformed_address_with_one_line(pyz, tmp_path, command,
                                                                      flag, value):
    argv = [sys.executable, pyz, command]
    if command in ("get", "bench"):
        argv += ["http://127.0.0.1:1/f"] + (["-o", str(tmp_path / "out")] if command == "get" else [])
    argv += [flag, value, "--data-dir", str(tmp_path / "data")]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30, cwd=str(tmp_path))
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.startswith("dfly: error: bad value for %s: " % flag), done.stderr
    assert not (tmp_path / "out").exists()


OTHER_COMMANDS = [
    (["preheat", "app:1", "--token-file", "TOKEN", "--supernode", "::1:8002"], "--supernode"),
    (["publish", "app:1", "--token-file", "TOKEN", "--supernode", "[::1"], "--supernode"),
    (["setup", "containerd", "--root", ".", "--daemon", "::1:65001"], "--daemon"),
    (["setup", "containerd", "--root", ".", "--registry", "fe80::1%lo"], "--registry"),
    (["export", "::1:5000/app:1", "-o", "out"], "registry in image reference"),
    (["preheat", "[fe80::1%lo]:5000/app:1", "--token-file", "TOKEN", "--supernode", "[::1]:1"],
     "registry in image reference"),
    (["publish", "[::1/app:1", "--token-file", "TOKEN", "--supernode", "[::1]:1"],
     "registry in image reference"),
]


@pytest.mark.parametrize("argv, names", OTHER_COMMANDS,
                         ids=lambda v: " ".join(v) if isinstance(v, list) else v)
def test_the_other_commands_refuse_a_malformed_address_with_one_line(pyz, tmp_path, argv, names):
    (tmp_path / "TOKEN").write_text("t0k3n\n")
    done = subprocess.run([sys.executable, pyz] + argv, capture_output=True, text=True, timeout=30,
                          cwd=str(tmp_path))
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.startswith("dfly: error: ") and names in done.stderr, done.stderr
    assert not (tmp_path / "out").exists() and not (tmp_path / "etc").exists()


def test_a_scoped_address_in_a_url_is_a_usage_error(pyz, tmp_path):
    done = subprocess.run([sys.executable, pyz, "get", "http://[fe80::1%25lo]:8080/f", "-o",
                           str(tmp_path / "out"), "--no-daemon"],
                          capture_output=True, text=True, timeout=30, cwd=str(tmp_path))
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "zone ids" in done.stderr, done.stderr


def _can_make_namespaces() -> str:
    if os.geteuid() != 0:
        return "needs root (a network namespace of its own)"
    if not shutil.which("unshare") or not shutil.which("sysctl"):
        return "needs unshare and sysctl (util-linux, procps)"
    return ""


@pytest.mark.skipif(bool(_can_make_namespaces()), reason=_can_make_namespaces() or "-")
@pytest.mark.parametrize("flags, where", [
    (["--listen", "[::1]:8002"], "[::1]:8002"),
    (["--listen", "127.0.0.1:0", "--advertise", "127.0.0.1:8002", "--gossip", "--gossip-key-file",
      "KEY", "--gossip-listen", "[::1]:7946"], "[::1]:7946"),
], ids=["listen", "gossip-listen"])
def test_listening_on_ipv6_where_ipv6_is_off_is_one_line_and_exit_2(pyz, tmp_path, flags, where):
    (tmp_path / "KEY").write_text("a cluster key of enough length\n")
    # A fresh network namespace (gone when the command ends) with IPv6 switched off.
    script = ("sysctl -q -w net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1"
              " net.ipv6.conf.lo.disable_ipv6=1 && ip link set lo up && exec \"$@\"")
    done = subprocess.run(["unshare", "--net", "sh", "-c", script, "sh", sys.executable, pyz,
                           "supernode", "--data-dir", str(tmp_path / "sn")] + flags,
                          capture_output=True, text=True, timeout=30, cwd=str(tmp_path))
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert lines == ["dfly: error: cannot listen on %s: Cannot assign requested address "
                     "(not an address of this host, or IPv6 is off here)" % where], done.stderr
