#!/usr/bin/env bash
# Deletes the kind cluster hack/kind-up.sh created (everything in it goes with it).
set -euo pipefail
CLUSTER="${KIND_CLUSTER:-creditmodel}"
command -v kind >/dev/null || { echo "[kind-down] kind is not installed" >&2; exit 1; }
if kind get clusters 2>/dev/null | grep -qx "${CLUSTER}"; then
  kind delete cluster --name "${CLUSTER}"
else
  echo "[kind-down] no kind cluster named ${CLUSTER}" >&2
fi
