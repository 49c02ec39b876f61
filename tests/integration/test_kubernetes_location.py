"""--location-from-kubernetes against a stand-in API server on 127.0.0.1:0: real TLS
(trustme certificates, the CA given to the pod as ca.crt), a real bearer-token
check, a Node object with topology labels; a service account folder under
tmp_path as the kubelet would mount it. The wiring (cli.located) is driven with
an explicit environment, and `dfly get` as a subprocess for the exit code."""
import os
import ssl
import subprocess
import sys

import pytest
import trustme
from certs import Certs
from helpers import QuietHandler, Serving, send_json

from dfly import cli, options
from dfly.peer.config import PeerConfig
from dfly.peer.daemon_config import DaemonConfig

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOKEN = "eyJ-service-account-token"
LABELS = {"topology.kubernetes.io/region": "eu-west-1", "topology.kubernetes.io/zone": "eu-west-1a",
          "example.com/rack": "rack-7", "kubernetes.io/hostname": "node-a"}


class ApiServer(Serving):
    """GET /api/v1/nodes/NAME for the nodes in `nodes` (name -> labels), only with
    `Authorization: Bearer TOKEN`; `forbidden`: answer 403 as RBAC would."""

    def __init__(self, certs: Certs, nodes: dict, host: str = "127.0.0.1"):
        self.nodes = nodes
        self.forbidden = False
        self.asked = []
        api = self

        class Handler(QuietHandler):
            def do_GET(self):
                api.asked.append(self.path)
                name = self.path[len("/api/v1/nodes/"):] if self.path.startswith("/api/v1/nodes/") else None
                if self.headers.get("Authorization") != "Bearer " + TOKEN:
                    return send_json(self, {"kind": "Status", "code": 401}, 401)
                if api.forbidden:
                    return send_json(self, {"kind": "Status", "code": 403}, 403)
                if name not in api.nodes:
                    return send_json(self, {"kind": "Status", "code": 404}, 404)
                send_json(self, {"kind": "Node", "apiVersion": "v1",
                                 "metadata": {"name": name, "labels": api.nodes[name]}})

        files = certs.host("apiserver")
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(files["tls_cert"], files["tls_key"])
        # host "::1": the API server of an IPv6-only cluster (KUBERNETES_SERVICE_HOST=fd00::1)
        super().__init__(Handler, "k8s-api", host=host, context=context, quiet=True)


@pytest.fixture
def certs(tmp_path):
    return Certs(str(tmp_path / "certs"))


@pytest.fixture
def api(certs):
    server = ApiServer(certs, {"node-a": LABELS, "bare": {"kubernetes.io/hostname": "bare"}})
    yield server
    server.stop()


@pytest.fixture
def account(tmp_path, certs):
    """The pod's service account folder, as the kubelet mounts it."""
    folder = tmp_path / "serviceaccount"
    folder.mkdir()
    (folder / "token").write_text(TOKEN + "\n")
    with open(certs.ca, "rb") as f:
        (folder / "ca.crt").write_bytes(f.read())
    return str(folder)


def pod_env(api, node="node-a"):
    return {"NODE_NAME": node, "KUBERNETES_SERVICE_HOST": "127.0.0.1",
            "KUBERNETES_SERVICE_PORT": str(api.port)}


def config(cls, account, **settings):
    return options.build(cls, None, None, location_from_kubernetes=True,
                         kubernetes_account_dir=account, **settings)


@pytest.mark.parametrize("cls", [PeerConfig, DaemonConfig])
def test_the_location_comes_from_the_nodes_topology_labels_over_tls_with_the_pods_token(
        api, account, cls):
    got = cli.located(config(cls, account, kubernetes_rack_label="example.com/rack"), pod_env(api))
    assert got.location == "eu-west-1/eu-west-1a/rack-7"
    assert cli.located(config(cls, account), pod_env(api)).location == "eu-west-1/eu-west-1a"
    assert api.asked == ["/api/v1/nodes/node-a"] * 2


def test_a_node_without_topology_labels_runs_with_no_location_said_in_one_line(api, account, caplog):
    caplog.set_level("WARNING")
    assert cli.located(config(PeerConfig, account), pod_env(api, "bare")).location == ""
    assert "node bare has no topology.kubernetes.io/region label" in caplog.text


def test_without_the_flag_nothing_is_asked(api, account):
    plain = options.build(PeerConfig, None, None, kubernetes_account_dir=account)
    assert cli.located(plain, pod_env(api)).location == "" and api.asked == []


@pytest.mark.parametrize("fault, expected", [
    ("token", "answered HTTP 401 (the service account token was refused)"),
    ("rbac", "answered HTTP 403 (the ServiceAccount needs a ClusterRole with get on nodes)"),
    ("node", "answered HTTP 404 (no such node: NODE_NAME wrong?)"),
    ("ca", "its certificate is not trusted by"),
    ("down", "cannot read https://127.0.0.1:"),
    ("no-node-name", "needs NODE_NAME"),
    ("no-token", "cannot read the service account token"),
])
def test_a_node_that_cannot_be_read_is_a_clear_start_up_error(api, account, certs, fault, expected):
    env = pod_env(api, "node-x" if fault == "node" else "node-a")
    if fault == "token":
        with open(os.path.join(account, "token"), "w") as f:
            f.write("someone-elses-token")
    if fault == "rbac":
        api.forbidden = True
    if fault == "ca":   # the pod trusts another CA than the API server's
        with open(os.path.join(account, "ca.crt"), "wb") as f:
            f.write(trustme.CA().cert_pem.bytes())
    if fault == "down":
        api.stop()
    if fault == "no-node-name":
        del env["NODE_NAME"]
    if fault == "no-token":
        os.remove(os.path.join(account, "token"))
    with pytest.raises(ValueError) as failed:
        cli.located(config(PeerConfig, account), env)
    assert expected in str(failed.value) and TOKEN not in str(failed.value)


def test_location_and_location_from_kubernetes_together_are_refused(account, api):
    with pytest.raises(ValueError, match="contradict"):
        cli.located(config(PeerConfig, account, location="a/b"), pod_env(api))


@pytest.mark.parametrize("command", [
    ["get", "http://127.0.0.1:9/x", "-o", "{out}", "--no-daemon"],
    ["daemon", "--listen", "127.0.0.1:0", "--upload-listen", "127.0.0.1:0"],
])
@pytest.mark.time_limit(60)
def test_get_and_daemon_with_an_unreadable_node_exit_2_in_one_line_before_any_work(
        api, account, tmp_path, command):
    api.forbidden = True
    env = dict(os.environ, **pod_env(api))
    out = tmp_path / "out.bin"
    argv = [a.replace("{out}", str(out)) for a in command]
    proc = subprocess.run([sys.executable, "-m", "dfly"] + argv +
                          ["--location-from-kubernetes", "--kubernetes-account-dir", account,
                           "--data-dir", str(tmp_path / "d")],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and "needs a ClusterRole with get on nodes" in proc.stderr
    assert not out.exists() and not (tmp_path / "d").exists()


def test_the_api_server_of_an_ipv6_only_cluster_is_reached_at_its_unbracketed_service_host(
        certs, account):
    # Kubernetes sets KUBERNETES_SERVICE_HOST to the bare address (fd00:10:96::1) there.
    server = ApiServer(certs, {"node-a": LABELS}, host="::1")
    try:
        env = {"NODE_NAME": "node-a", "KUBERNETES_SERVICE_HOST": "::1",
               "KUBERNETES_SERVICE_PORT": str(server.port)}
        assert cli.located(config(DaemonConfig, account), env).location == "eu-west-1/eu-west-1a"
        assert server.asked == ["/api/v1/nodes/node-a"]
    finally:
        server.stop()
    with pytest.raises(ValueError, match=r"cannot read https://\[::1\]:%d/api/v1/nodes/node-a" % server.port):
        cli.located(config(DaemonConfig, account), env)   # stopped: the error names it bracketed
