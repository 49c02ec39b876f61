"""deploy/kubernetes/: every overlay renders with `kubectl kustomize`, passes the
Kubernetes schemas (kubernetes-validate, offline: it ships them), and says what
docs/DEPLOY.md promises: the daemon on every node's host network, the cluster
list built from the StatefulSet's own DNS names, args that are real dfly flags,
probes on paths a real supernode and daemon answer, a config change that rolls
the pods. (checkov: test_checkov_findings.py, deploy/kubernetes/scan.sh.)"""
import json
import os
import shutil
import subprocess
import sys

import pytest

from dfly import cli, options
from dfly.peer.daemon_config import DaemonConfig
from dfly.protocol.address import parse_address
from dfly.setup.runtimes import parse_registry
from dfly.supernode.config import SupernodeConfig

yaml = pytest.importorskip("yaml")

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
KUSTOMIZE = os.path.join(ROOT, "deploy", "kubernetes")
KUBECTL = shutil.which("kubectl")
OVERLAYS = ["overlays/plain", "overlays/tls", "overlays/metrics", "cleanup"]
pytestmark = pytest.mark.skipif(not KUBECTL, reason="needs kubectl (apt-get install kubernetes-client)")
NAMESPACE = "dfly-system"
SAMPLE_ENV = {"POD_NAME": "dfly-supernode-1", "POD_NAMESPACE": NAMESPACE, "NODE_IP": "10.1.2.3",
              "DFLY_CLUSTER_SECRET": "0123456789abcdef0123456789abcdef"}


def render(folder: str) -> list:
    out = subprocess.run([KUBECTL, "kustomize", folder], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return [d for d in yaml.safe_load_all(out.stdout) if d]


@pytest.fixture(scope="module")
def rendered():
    return {name: render(os.path.join(KUSTOMIZE, name)) for name in OVERLAYS}


def one(docs: list, kind: str, name: str = "") -> dict:
    found = [d for d in docs if d["kind"] == kind and (not name or d["metadata"]["name"] == name)]
    assert len(found) == 1, "%d %s %s" % (len(found), kind, name)
    return found[0]


def container(workload: dict, name: str, init: bool = False) -> dict:
    spec = workload["spec"]["template"]["spec"]
    return next(c for c in spec["initContainers" if init else "containers"] if c["name"] == name)


def expand(args: list) -> list:
    """Args as the kubelet passes them: $(VAR) from the container's env."""
    out = []
    for arg in args:
        for key, value in SAMPLE_ENV.items():
            arg = arg.replace("$(%s)" % key, value)
        assert "$(" not in arg, arg
        out.append(arg)
    return out


def configmap_file(docs: list, workload: dict, filename: str) -> dict:
    volume = next(v for v in workload["spec"]["template"]["spec"]["volumes"] if v["name"] == "config")
    return json.loads(one(docs, "ConfigMap", volume["configMap"]["name"])["data"][filename])


def built_config(docs: list, workload: dict, name: str, cls):
    """The settings the container runs with: its ConfigMap file under its real flags."""
    c = container(workload, name)
    argv = c["command"][2:] + expand(c["args"])
    args = cli.build_parser(only=argv[0], with_file=True).parse_args(argv)
    filename = args.config.rsplit("/", 1)[1]
    return options.build(cls, configmap_file(docs, workload, filename), args)


@pytest.mark.parametrize("name", OVERLAYS)
def test_every_overlay_passes_the_kubernetes_schemas(rendered, name):
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    for doc in rendered[name]:
        if doc["apiVersion"].startswith("monitoring.coreos.com/"):
            continue   # a CRD's kind: no schema ships for it (checked below)
        for version in ("1.25.0", kubernetes_validate.utils.latest_version()):
            kubernetes_validate.validate(doc, version, strict=True)


def test_supernodes_form_a_cluster_from_the_statefulsets_own_dns_names(rendered):
    docs = rendered["overlays/plain"]
    sts = one(docs, "StatefulSet", "dfly-supernode")
    service = one(docs, "Service", sts["spec"]["serviceName"])
    assert service["spec"]["clusterIP"] == "None" and service["spec"]["publishNotReadyAddresses"]
    labels = sts["spec"]["template"]["metadata"]["labels"]
    assert all(labels.get(k) == v for k, v in service["spec"]["selector"].items())
    replicas = sts["spec"]["replicas"]
    assert replicas == 3
    names = ["%s-%d.%s.%s.svc:8002" % (sts["metadata"]["name"], i, service["metadata"]["name"], NAMESPACE)
             for i in range(replicas)]
    config = built_config(docs, sts, "supernode", SupernodeConfig)
    assert config.cluster == [",".join(names)] or config.cluster == names
    assert config.advertise in names and config.cluster_secret == SAMPLE_ENV["DFLY_CLUSTER_SECRET"]
    assert parse_address(config.listen)[1] == 8002 == service["spec"]["ports"][0]["port"]
    secret = next(e for e in container(sts, "supernode")["env"] if e["name"] == "DFLY_CLUSTER_SECRET")
    assert secret["valueFrom"]["secretKeyRef"]["name"] == "dfly-cluster"
    pdb = one(docs, "PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == replicas // 2 + 1
    affinity = sts["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"]
    anti = affinity["requiredDuringSchedulingIgnoredDuringExecution"]
    assert anti[0]["topologyKey"] == "kubernetes.io/hostname"
    claim = sts["spec"]["volumeClaimTemplates"][0]
    assert any(m["name"] == claim["metadata"]["name"] and m["mountPath"] == "/var/lib/dfly"
               for m in container(sts, "supernode")["volumeMounts"])
    daemon = built_config(docs, one(docs, "DaemonSet", "dfly-daemon"), "daemon", DaemonConfig)
    assert daemon.supernode == names   # the daemons dial the same members


def test_the_daemon_runs_on_every_node_in_the_host_network(rendered):
    docs = rendered["overlays/plain"]
    ds = one(docs, "DaemonSet", "dfly-daemon")
    pod = ds["spec"]["template"]["spec"]
    assert pod["hostNetwork"] is True and pod["dnsPolicy"] == "ClusterFirstWithHostNet"
    assert pod["tolerations"] == [{"operator": "Exists"}]
    assert pod["priorityClassName"] == "system-node-critical"
    assert ds["spec"]["updateStrategy"]["rollingUpdate"]["maxUnavailable"]
    cache = next(v for v in pod["volumes"] if v["name"] == "cache")
    assert cache["hostPath"]["path"] == "/var/lib/dfly"
    config = built_config(docs, ds, "daemon", DaemonConfig)
    ports = {p["name"]: p for p in container(ds, "daemon")["ports"]}
    assert parse_address(config.listen) == ("127.0.0.1", ports["mirror"]["containerPort"])
    assert parse_address(config.upload_listen)[1] == ports["upload"]["hostPort"]
    assert config.advertise == SAMPLE_ENV["NODE_IP"]


def test_init_containers_validate_the_config_and_point_containerd_at_the_daemon(rendered):
    docs = rendered["overlays/plain"]
    ds = one(docs, "DaemonSet", "dfly-daemon")
    names = [c["name"] for c in ds["spec"]["template"]["spec"]["initContainers"]]
    assert names.index("validate") < names.index("containerd-hosts")   # check before changing the node
    validate = container(ds, "validate", init=True)
    assert validate["command"][2:] == ["validate", "--kind", "daemon", "/etc/dfly/daemon.json"]
    assert {"name": "config", "mountPath": "/etc/dfly", "readOnly": True} in validate["volumeMounts"]
    hosts = container(ds, "containerd-hosts", init=True)["command"]
    setup = cli.build_parser(only="setup").parse_args(hosts[2:])
    assert (setup.runtime, setup.hosts_only, setup.root, setup.undo) == ("containerd", True, "/host", False)
    for registry in setup.registry or ["docker.io"]:   # --registry is repeatable
        parse_registry(registry)
    assert setup.daemon == built_config(docs, ds, "daemon", DaemonConfig).listen
    mount = next(m for m in container(ds, "containerd-hosts", init=True)["volumeMounts"])
    volume = next(v for v in ds["spec"]["template"]["spec"]["volumes"] if v["name"] == mount["name"])
    assert (mount["mountPath"], volume["hostPath"]["path"]) == ("/host/etc/containerd", "/etc/containerd")
    undo = container(one(rendered["cleanup"], "DaemonSet"), "containerd-undo", init=True)["command"]
    assert [a for a in undo if a != "--undo"] == hosts and "--undo" in undo


def test_probes_ask_paths_a_real_supernode_and_daemon_answer(rendered, supernode, daemons):
    import http.client
    docs = rendered["overlays/plain"]
    running = {"supernode": supernode.address, "daemon": daemons.start().address}
    for workload, name in ((one(docs, "StatefulSet"), "supernode"), (one(docs, "DaemonSet"), "daemon")):
        c = container(workload, name)
        port_names = {p["name"] for p in c["ports"]}
        for probe in (c["readinessProbe"], c["livenessProbe"]):
            assert probe["httpGet"]["port"] in port_names
            host, port = running[name].rsplit(":", 1)
            conn = http.client.HTTPConnection(host, int(port), timeout=10)
            try:
                conn.request("GET", probe["httpGet"]["path"])
                assert conn.getresponse().status == 200
            finally:
                conn.close()


def test_a_config_change_renames_the_configmap_and_so_rolls_the_daemons(rendered, tmp_path):
    copy = tmp_path / "kubernetes"
    shutil.copytree(KUSTOMIZE, str(copy))
    settings = json.loads((copy / "base" / "daemon.json").read_text())
    settings["cache_size"] = "30G"
    (copy / "base" / "daemon.json").write_text(json.dumps(settings))
    before = one(rendered["overlays/plain"], "DaemonSet", "dfly-daemon")["spec"]["template"]
    after = one(render(str(copy / "overlays" / "plain")), "DaemonSet", "dfly-daemon")["spec"]["template"]
    assert before != after
    names = [next(v["configMap"]["name"] for v in t["spec"]["volumes"] if v["name"] == "config")
             for t in (before, after)]
    assert names[0] != names[1] and all(n.startswith("dfly-daemon-config-") for n in names)


def test_the_tls_overlay_gives_both_programs_the_certificate_and_probes_speak_https(rendered):
    docs = rendered["overlays/tls"]
    sts, ds = one(docs, "StatefulSet"), one(docs, "DaemonSet")
    for workload, name, cls in ((sts, "supernode", SupernodeConfig), (ds, "daemon", DaemonConfig)):
        config = built_config(docs, workload, name, cls)
        mounts = {m["mountPath"]: m["name"] for m in container(workload, name)["volumeMounts"]}
        for path in (config.tls_cert, config.tls_key, config.tls_ca):
            assert mounts[os.path.dirname(path)] == "tls"
        assert config.tls_client_auth == "optional"   # the kubelet's probe shows no certificate
    assert container(sts, "supernode")["readinessProbe"]["httpGet"]["scheme"] == "HTTPS"


def test_the_metrics_overlay_scrapes_the_supernodes_metrics_path(rendered):
    docs = rendered["overlays/metrics"]
    monitor = one(docs, "ServiceMonitor")
    service = one(docs, "Service", "dfly-supernode")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["endpoints"][0]["port"] in [p["name"] for p in service["spec"]["ports"]]
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"


def _mount_for(c: dict, path: str) -> dict:
    """The volume mount of container `c` that holds `path` (the longest mountPath prefix)."""
    found = [m for m in c.get("volumeMounts", []) if path == m["mountPath"]
             or path.startswith(m["mountPath"].rstrip("/") + "/")]
    assert found, "%s: nothing mounted at %s" % (c["name"], path)
    return max(found, key=lambda m: len(m["mountPath"]))


@pytest.mark.parametrize("overlay", ["overlays/plain", "overlays/tls"])
def test_validate_sees_every_file_and_folder_the_settings_name_as_the_program_does(rendered, overlay):
    """dfly validate checks the data dir (writable, free space for cache_size) and the
    TLS files: in its init container they must be the same volumes, the data dir writable."""
    docs = rendered[overlay]
    for workload, name, cls in ((one(docs, "StatefulSet"), "supernode", SupernodeConfig),
                                (one(docs, "DaemonSet"), "daemon", DaemonConfig)):
        config = built_config(docs, workload, name, cls)
        program, validate = container(workload, name), container(workload, "validate", init=True)
        paths = [config.data_dir] + [p for p in (config.tls_cert, config.tls_key, config.tls_ca) if p]
        assert config.data_dir == "/var/lib/dfly" and len(paths) == (4 if overlay.endswith("tls") else 1)
        for path in paths:
            assert _mount_for(validate, path)["name"] == _mount_for(program, path)["name"]
        assert not _mount_for(validate, config.data_dir).get("readOnly")
    names = [c["name"] for c in one(docs, "DaemonSet")["spec"]["template"]["spec"]["initContainers"]]
    assert names == ["cache-owner", "validate", "containerd-hosts"]   # the folder is the daemon's first


@pytest.mark.parametrize("kind", ["daemon", "supernode"])
def test_the_shipped_settings_pass_dfly_validate_as_the_init_container_runs_it(kind, tmp_path):
    with open(os.path.join(ROOT, "deploy", "kubernetes", "base", kind + ".json")) as f:
        settings = json.load(f)
    # The pod's data dir is its volume; here, one of ours whose disk is not the question.
    settings.update(data_dir=str(tmp_path / "data"), cache_size="1M")
    path = tmp_path / (kind + ".json")
    path.write_text(json.dumps(settings, indent=2))
    proc = subprocess.run([sys.executable, "-m", "dfly", "validate", "--kind", kind, str(path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "error" not in proc.stdout + proc.stderr


def test_the_daemon_reads_its_nodes_labels_with_an_account_that_may_only_get_nodes(rendered):
    docs = rendered["overlays/plain"]
    ds = one(docs, "DaemonSet", "dfly-daemon")
    pod = ds["spec"]["template"]["spec"]
    config = built_config(docs, ds, "daemon", DaemonConfig)
    assert config.location_from_kubernetes and not config.location
    env = {e["name"]: e for e in container(ds, "daemon")["env"]}
    assert env["NODE_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"
    account = one(docs, "ServiceAccount", pod["serviceAccountName"])
    binding = one(docs, "ClusterRoleBinding")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account["metadata"]["name"],
                                    "namespace": NAMESPACE}]
    role = one(docs, "ClusterRole", binding["roleRef"]["name"])
    assert role["rules"] == [{"apiGroups": [""], "resources": ["nodes"], "verbs": ["get"]}]
    # The token and CA only in the daemon container, where --kubernetes-account-dir looks.
    assert pod["automountServiceAccountToken"] is False
    mount = _mount_for(container(ds, "daemon"), config.kubernetes_account_dir + "/token")
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    paths = [s["serviceAccountToken"]["path"] if "serviceAccountToken" in s
             else s["configMap"]["items"][0]["path"] for s in volume["projected"]["sources"]]
    assert sorted(paths) == ["ca.crt", "token"]
    for init in pod["initContainers"]:
        assert all(m["name"] != mount["name"] for m in init.get("volumeMounts", []))


def _containers(workload: dict) -> list:
    spec = workload["spec"]["template"]["spec"]
    return spec.get("initContainers", []) + spec["containers"]


def test_the_image_the_dockerfile_builds_is_the_one_every_container_runs_as_it_expects(rendered):
    """deploy/Dockerfile: a stock Python, dfly.pyz where the commands look for it, the
    user the pods run as; every container names the kustomization's one image."""
    with open(os.path.join(ROOT, "deploy", "Dockerfile")) as f:
        lines = [line.split() for line in f if line.strip() and not line.startswith("#")]
    steps = {words[0]: words[1:] for words in lines}
    assert steps["FROM"] == ["python:${PYTHON}"] and steps["ARG"][0].startswith("PYTHON=3.")
    assert steps["COPY"] == ["dfly.pyz", "/opt/dfly/dfly.pyz"]
    user = int(steps["USER"][0].split(":")[0])
    with open(os.path.join(KUSTOMIZE, "base", "kustomization.yaml")) as f:
        image = yaml.safe_load(f)["images"][0]
    for name, docs in rendered.items():
        for workload in (d for d in docs if d["kind"] in ("StatefulSet", "DaemonSet")):
            pod = workload["spec"]["template"]["spec"].get("securityContext", {})
            for c in _containers(workload):
                assert c["image"] == "%s:%s" % (image["newName"], image["newTag"]), (name, c["name"])
                assert c["command"][0] == "python3"
                if c["command"][1:2] != ["-c"]:
                    assert c["command"][1] == "/opt/dfly/dfly.pyz", (name, c["name"])
                uid = c.get("securityContext", {}).get("runAsUser", pod.get("runAsUser", user))
                assert uid in (0, user), (name, c["name"])   # root only to own a host folder


SETPRIV = shutil.which("setpriv")


def _run_in_pod(command: list, host_root: str) -> subprocess.CompletedProcess:
    """An init container's `python3 /opt/dfly/dfly.pyz ...` as its securityContext runs it:
    root with no capabilities at all, no new privileges; the node's files under host_root."""
    argv = [sys.executable, "-m", "dfly"] + [host_root if a == "/host" else a for a in command[2:]]
    return subprocess.run([SETPRIV, "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs"] + argv,
                          cwd=ROOT, capture_output=True, text=True, timeout=60)


@pytest.mark.skipif(os.geteuid() != 0 or not SETPRIV, reason="needs root and setpriv (util-linux)")
def test_the_containerd_init_container_and_its_cleanup_need_no_capability(rendered, tmp_path):
    ds = one(rendered["overlays/plain"], "DaemonSet", "dfly-daemon")
    hosts = container(ds, "containerd-hosts", init=True)
    assert hosts["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    node = tmp_path / "node"
    certs = node / "etc/containerd/certs.d/docker.io"
    certs.mkdir(parents=True)
    shutil.copy(os.path.join(ROOT, "tests/data/runtimes/containerd-1.6-default.toml"),
                str(node / "etc/containerd/config.toml"))
    (certs / "hosts.toml").write_text('server = "https://registry-1.docker.io"\n')
    os.chmod(str(certs / "hosts.toml"), 0o600)   # root's own, unreadable to anyone else
    before = {p: p.read_bytes() for p in node.rglob("*") if p.is_file()}

    first = _run_in_pod(hosts["command"], str(node))
    assert first.returncode == 0, first.stderr
    assert "127.0.0.1:65001" in (certs / "hosts.toml").read_text()
    again = _run_in_pod(hosts["command"], str(node))   # the pod restarted
    assert again.returncode == 0 and "nothing changed" in again.stdout, again.stderr
    undo = container(one(rendered["cleanup"], "DaemonSet"), "containerd-undo", init=True)
    done = _run_in_pod(undo["command"], str(node))
    assert done.returncode == 0, done.stderr
    assert {p: p.read_bytes() for p in node.rglob("*") if p.is_file()} == before
    assert os.stat(str(certs / "hosts.toml")).st_mode & 0o777 == 0o600
