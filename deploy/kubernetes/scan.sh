#!/usr/bin/env bash
# checkov on every rendered overlay, offline (checkov and its dependencies are large,
# so it lives in its own virtualenv; .ci/run makes one). Findings and
# why each one stays are in docs/DEPLOY.md ("checkov findings").
#   python3 -m venv /tmp/checkov && /tmp/checkov/bin/pip install checkov
#   CHECKOV=/tmp/checkov/bin/checkov deploy/kubernetes/scan.sh
# Arguments replace the output options (default --compact --quiet), e.g. `-o json`:
# tests/integration/test_checkov_findings.py reads that, and CI runs it.
# No network: --skip-download and BC_SKIP_MAPPING (no guidelines, mappings or policies
# fetched), CKV_SKIP_PACKAGE_UPDATE_CHECK (no version check), no API key (nothing
# uploaded); as root it also runs in an empty network namespace, and
# `strace -f -e trace=connect` there showed no AF_INET/AF_INET6 connect at all.
set -euo pipefail
cd "$(dirname "$0")"
checkov="${CHECKOV:-checkov}"
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
for overlay in overlays/plain overlays/tls overlays/metrics cleanup; do
    kubectl kustomize "$overlay" > "$out/${overlay//\//-}.yaml" 2>/dev/null
done
export BC_SKIP_MAPPING=TRUE CKV_SKIP_PACKAGE_UPDATE_CHECK=true
isolate=()
if [ "$(id -u)" = 0 ] && command -v unshare >/dev/null; then
    isolate=(unshare --net)
fi
if [ "$#" = 0 ]; then
    set -- --compact --quiet
fi
"${isolate[@]}" "$checkov" --skip-download --framework kubernetes -d "$out" "$@"
