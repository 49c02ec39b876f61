"""checkov on every rendered overlay (deploy/kubernetes/scan.sh, offline) finds exactly
the findings docs/DEPLOY.md justifies, no more: a new one (say, a service account
token mounted where it is not needed) fails here until it is fixed or justified.
checkov lives in a virtualenv of its own (.ci/run makes one and names it in $CHECKOV)."""
import json
import os
import re
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCAN = os.path.join(ROOT, "deploy", "kubernetes", "scan.sh")
DEPLOY_MD = os.path.join(ROOT, "docs", "DEPLOY.md")
CHECKOV = os.environ.get("CHECKOV") or shutil.which("checkov")
pytestmark = [
    pytest.mark.skipif(not (CHECKOV and os.access(CHECKOV, os.X_OK)),
                       reason="needs checkov in $CHECKOV (deploy/kubernetes/scan.sh says how)"),
    pytest.mark.skipif(not shutil.which("kubectl"),
                       reason="needs kubectl (apt-get install kubernetes-client)"),
]
SUPERNODE, DAEMON, CLEANUP = ("StatefulSet.dfly-system.dfly-supernode", "DaemonSet.dfly-system.dfly-daemon",
                              "DaemonSet.dfly-system.dfly-containerd-cleanup")
# check -> the workloads it fails on, over all four renders; each row is in DEPLOY.md's table
JUSTIFIED = {
    "CKV_K8S_43": {SUPERNODE, DAEMON, CLEANUP},   # image by digest: the tag is a placeholder
    "CKV_K8S_15": {SUPERNODE, DAEMON, CLEANUP},   # pull policy Always
    "CKV_K8S_35": {SUPERNODE},                    # the cluster secret in an environment variable
    "CKV_K8S_19": {DAEMON},                       # host network
    "CKV_K8S_26": {DAEMON},                       # hostPort
    "CKV_K8S_25": {DAEMON},                       # CHOWN for the cache-owner init container
    "CKV_K8S_8": {CLEANUP},                       # the idle container has no probes
    "CKV_K8S_9": {CLEANUP},
    "CKV2_K8S_6": {"Pod.dfly-system.dfly-daemon", "Pod.dfly-system.dfly-containerd-cleanup"},
}


@pytest.fixture(scope="module")
def scan() -> dict:
    env = dict(os.environ, CHECKOV=CHECKOV)
    out = subprocess.run(["bash", SCAN, "-o", "json"], capture_output=True, text=True, timeout=240,
                         env=env, stdin=subprocess.DEVNULL)
    assert out.returncode in (0, 1), out.stderr   # 1: some check failed
    report = json.loads(out.stdout)
    return report[0] if isinstance(report, list) else report


def findings(report: dict) -> dict:
    found: dict = {}
    for check in report["results"].get("failed_checks", []):
        resource = ".".join(check["resource"].split(".")[:3])   # a Pod's name carries its labels
        found.setdefault(check["check_id"], set()).add(resource)
    return found


@pytest.mark.time_limit(300)
def test_checkov_finds_only_what_deploy_md_justifies(scan):
    assert scan["summary"]["parsing_errors"] == 0
    assert findings(scan) == JUSTIFIED


@pytest.mark.time_limit(300)
def test_deploy_md_names_each_finding_and_the_counts_of_the_checkov_it_names(scan):
    with open(DEPLOY_MD) as f:
        section = f.read().split("### checkov findings", 1)[1].split("\n## ", 1)[0]
    for check in JUSTIFIED:
        assert check in section, check
    summary = scan["summary"]
    if "checkov %s" % summary["checkov_version"] in section:
        counts = re.search(r"(\d+) passed, (\d+) failed", section)
        assert counts, "no 'N passed, M failed' in DEPLOY.md's checkov section"
        assert (int(counts.group(1)), int(counts.group(2))) == (summary["passed"], summary["failed"])


@pytest.mark.time_limit(300)
def test_the_daemons_node_reader_account_passes_every_check(scan):
    """--location-from-kubernetes: ServiceAccount, ClusterRole and binding (base/rbac.yaml)."""
    rbac = [c for c in scan["results"].get("passed_checks", [])
            if c["resource"].split(".")[0] in ("ServiceAccount", "ClusterRole", "ClusterRoleBinding")]
    assert {c["check_id"] for c in rbac} >= {"CKV_K8S_41", "CKV_K8S_42", "CKV_K8S_49", "CKV2_K8S_5"}
    assert not [c for c in scan["results"].get("failed_checks", [])
                if c["resource"].split(".")[0] in ("ServiceAccount", "ClusterRole", "ClusterRoleBinding")]
