#!/usr/bin/env bash
# A local cluster for people, on loopback and without Docker: the same real stack the `cluster`
# test fixture starts (etcd, kube-apiserver, kube-controller-manager, kube-scheduler, a KWOK node,
# the KServe manager with its webhooks, the KServe/Gateway API/Prometheus Operator CRDs).
#   hack/dev-cluster.sh up     start it in the background, write build/dev-cluster/kubeconfig
#   hack/dev-cluster.sh down   stop it (state is thrown away; the logs stay in build/dev-cluster)
# Pods never run: KWOK marks them Running and Ready. DEV_CLUSTER_API_PORT pins the API server port.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DIR="${DEV_CLUSTER_DIR:-${ROOT}/build/dev-cluster}"
PY="${ROOT}/.venv/bin/python"
PIDFILE="${DIR}/cluster.pid"
START_TIMEOUT="${DEV_CLUSTER_START_TIMEOUT:-180}"

log() { printf '[dev-cluster] %s\n' "$*" >&2; }

running_pid() {
  local pid
  pid="$(cat "${PIDFILE}" 2>/dev/null)" || return 1
  [[ -n "${pid}" ]] && kill -0 "${pid}" 2>/dev/null && printf '%s' "${pid}"
}

next_steps() {
  local kubectl="kubectl"
  [[ -x "${ROOT}/bin/kubectl" ]] && kubectl="${ROOT}/bin/kubectl"
  command -v "${kubectl}" >/dev/null || log "no kubectl on PATH: install one (v1.33 to v1.35) for the commands below"
  cat <<EOF

The cluster is up ($(sed -n 's/.*"server": "\([^"]*\)".*/\1/p' "${DIR}/ready.json")): one KWOK node, on which
pods become Running and Ready without running. Next:
  export KUBECONFIG=${DIR}/kubeconfig
  ${kubectl} get nodes
  make install-crds          # the CreditModel CRD
  make run-operator          # the operator, in a second terminal (same KUBECONFIG)
  ${kubectl} create namespace demo
  ${kubectl} -n demo apply -f manifests/samples/creditmodel.yaml
  # the reference bundle the predictor image embeds (no S3 here), as the README does:
  ${kubectl} -n demo patch creditmodel german-credit --type=merge \
    -p '{"spec":{"model":{"bundleURI":"/opt/creditmodel/models/german-credit"}}}'
  ${kubectl} -n demo get creditmodels,inferenceservices,deployments,pods -w
Logs: ${DIR}/*.log. Stop it with: make dev-cluster-down
EOF
}

up() {
  if running_pid >/dev/null; then
    log "already running (pid $(running_pid)); make dev-cluster-down first to restart it"
    next_steps
    return
  fi
  for name in kube-apiserver etcd kube-controller-manager kube-scheduler kwok kserve-manager; do
    if [[ ! -x "${ROOT}/bin/${name}" ]]; then
      log "${ROOT}/bin/${name} is missing: run make tools"
      exit 1
    fi
  done
  rm -rf "${DIR}"
  mkdir -p "${DIR}"
  local start pid
  start=$(date +%s)
  # nohup: the stack outlives this shell (and make); SIGTERM stops it and all its components.
  (cd "${ROOT}" && exec nohup "${PY}" -m tests.support.cluster "${DIR}" ${DEV_CLUSTER_API_PORT:+"${DEV_CLUSTER_API_PORT}"} \
    >"${DIR}/cluster.log" 2>&1) &
  pid=$!
  printf '%s\n' "${pid}" >"${PIDFILE}"
  log "starting (pid ${pid}, log ${DIR}/cluster.log)"
  until [[ -f "${DIR}/ready.json" ]]; do
    if ! kill -0 "${pid}" 2>/dev/null; then
      log "the stack exited before it was ready:"
      tail -n 40 "${DIR}/cluster.log" >&2
      exit 1
    fi
    if (( $(date +%s) - start > START_TIMEOUT )); then
      log "not ready after ${START_TIMEOUT}s; stopping it. Log: ${DIR}/cluster.log"
      down
      exit 1
    fi
    sleep 0.5
  done
  log "ready in $(( $(date +%s) - start ))s"
  next_steps
}

down() {
  local pid
  if ! pid="$(running_pid)"; then
    log "not running"
    return
  fi
  kill -TERM "${pid}"
  for _ in $(seq 1 60); do
    kill -0 "${pid}" 2>/dev/null || break
    sleep 0.5
  done
  if kill -0 "${pid}" 2>/dev/null; then
    log "pid ${pid} ignored SIGTERM for 30s; killing it"
    kill -KILL "${pid}" 2>/dev/null || true
  fi
  rm -f "${PIDFILE}"
  log "stopped"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  *)
    echo "usage: $0 up|down" >&2
    exit 2
    ;;
esac
