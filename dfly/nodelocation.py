"""A peer's --location from its Kubernetes node's labels (--location-from-kubernetes).

In a pod, the node's name comes from the downward API (NODE_NAME, set by the
DaemonSet from spec.nodeName), the API server's address from the
KUBERNETES_SERVICE_HOST/PORT every pod is given, and the proof from the pod's
service account (token and CA under /var/run/secrets/kubernetes.io/serviceaccount).
The program's wiring (cli.py) reads those once at start (in_cluster) and asks
for the node (GET /api/v1/nodes/NAME: its ServiceAccount needs `get` on nodes);
the location is then region/zone/rack from the well-known topology labels and
a rack label the operator names. Pure parts (location_of) take labels and
return text.

A node that cannot be read (no API server, a token it refuses, a certificate
not of its CA) is a start-up error naming the cause: a location asked for and
silently missing would schedule across zones with no one noticing, while the
DaemonSet restarts a failed pod with back-off (and pulls go to the registry
meanwhile). A node that simply has no topology labels runs with none, said in
one log line: that is the cluster's data, not a fault.
"""
import http.client
import json
import logging
import os
import re
import ssl
from typing import Dict, Mapping, NamedTuple

from dfly.protocol.location import format_location, parse_location

log = logging.getLogger("dfly")

REGION_LABEL = "topology.kubernetes.io/region"
ZONE_LABEL = "topology.kubernetes.io/zone"
SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
MAX_REPLY = 4 << 20   # a Node object is some KiB; bounded all the same
_NODE_NAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$")   # a DNS subdomain


class NodeApi(NamedTuple):
    host: str
    port: int
    node: str
    token: str
    ca_file: str


def in_cluster(environ: Mapping[str, str], account_dir: str) -> NodeApi:
    """Where and as whom to ask for this node; ValueError saying what is missing."""
    node = environ.get("NODE_NAME", "").strip()
    host = environ.get("KUBERNETES_SERVICE_HOST", "").strip()
    port = environ.get("KUBERNETES_SERVICE_PORT", "443").strip()
    if not node:
        raise ValueError("--location-from-kubernetes needs NODE_NAME (the DaemonSet sets it "
                         "from spec.nodeName with the downward API)")
    if not _NODE_NAME.match(node):
        raise ValueError("--location-from-kubernetes: NODE_NAME %r is not a node name" % node[:80])
    if not host or not port.isdigit():
        raise ValueError("--location-from-kubernetes needs KUBERNETES_SERVICE_HOST and "
                         "KUBERNETES_SERVICE_PORT (set in every pod): not running in a pod?")
    token_file = os.path.join(account_dir, "token")
    try:
        with open(token_file) as f:
            token = f.read().strip()
    except OSError as e:
        raise ValueError("--location-from-kubernetes: cannot read the service account token "
                         "%s: %s (automountServiceAccountToken off?)" % (token_file, e.strerror or e))
    return NodeApi(host, int(port), node, token, os.path.join(account_dir, "ca.crt"))


def node_labels(api: NodeApi, timeout_s: float) -> Dict[str, str]:
    """The node's labels from the API server; ValueError with the cause."""
    where = "https://%s/api/v1/nodes/%s" % (_netloc(api), api.node)
    try:
        context = ssl.create_default_context(cafile=api.ca_file)
        conn = http.client.HTTPSConnection(api.host, api.port, timeout=timeout_s, context=context)
        try:
            conn.request("GET", "/api/v1/nodes/" + api.node,
                         headers={"Authorization": "Bearer " + api.token,
                                  "Accept": "application/json"})
            reply = conn.getresponse()
            body = reply.read(MAX_REPLY)
        finally:
            conn.close()
    except ssl.SSLCertVerificationError as e:
        raise ValueError("--location-from-kubernetes: cannot read %s: its certificate is not "
                         "trusted by %s (%s)" % (where, api.ca_file, e.verify_message or e))
    except (OSError, ssl.SSLError, http.client.HTTPException) as e:
        raise ValueError("--location-from-kubernetes: cannot read %s: %s" % (where, e))
    if reply.status != 200:
        hint = {401: " (the service account token was refused)",
                403: " (the ServiceAccount needs a ClusterRole with get on nodes)",
                404: " (no such node: NODE_NAME wrong?)"}.get(reply.status, "")
        raise ValueError("--location-from-kubernetes: %s answered HTTP %d%s"
                         % (where, reply.status, hint))
    try:
        labels = json.loads(body.decode("utf-8"))["metadata"].get("labels") or {}
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError):
        raise ValueError("--location-from-kubernetes: %s answered no Node object" % where)
    return {str(k): str(v) for k, v in labels.items()} if isinstance(labels, dict) else {}


def location_of(labels: Mapping[str, str], rack_label: str = "") -> str:
    """region/zone/rack from the node's labels, as far as they go without a gap
    ("" with no region); ValueError for a value --location could not hold."""
    found = []
    for name in (REGION_LABEL, ZONE_LABEL, rack_label):
        value = labels.get(name, "") if name else ""
        if not value:
            break
        found.append(value)
    text = "/".join(found)
    try:
        return format_location(parse_location(text))
    except ValueError as e:
        raise ValueError("--location-from-kubernetes: the node's labels make no location: %s" % e)


def node_location(api: NodeApi, rack_label: str, timeout_s: float) -> str:
    location = location_of(node_labels(api, timeout_s), rack_label)
    if not location:
        log.warning("node %s has no %s label: running with no location", api.node, REGION_LABEL)
    return location


def _netloc(api: NodeApi) -> str:
    host = "[%s]" % api.host if ":" in api.host else api.host
    return "%s:%d" % (host, api.port)
