#!/usr/bin/env bash
# Installs the pinned real-component binaries the tests start (kube-apiserver, etcd, the controller
# manager and scheduler, the KServe manager, KWOK, MinIO, helm, Prometheus) and links them into ./bin.
# Builds are cached outside the checkout, so a fresh clone on a machine that has built them before only
# relinks. Idempotent: a second run does no work. Third-party CRDs and config come out of the Go
# module cache; ./bin/stack.env names their directories (nothing third-party is committed).
set -euo pipefail

# --- pinned versions --------------------------------------------------------------------------
KUBERNETES_VERSION="${KUBERNETES_VERSION:-v1.34.4}"   # kube-apiserver, -controller-manager, -scheduler
KSERVE_VERSION="${KSERVE_VERSION:-v0.20.0}"            # manager + CRDs + webhook config
KWOK_VERSION="${KWOK_VERSION:-v0.8.0}"                 # fake nodes, pods driven by stage files
GATEWAY_API_VERSION="${GATEWAY_API_VERSION:-v1.5.1}"   # standard-channel CRDs
PROMETHEUS_OPERATOR_VERSION="${PROMETHEUS_OPERATOR_VERSION:-v0.89.0}"   # monitoring.coreos.com CRDs
ETCD_VERSION="${ETCD_VERSION:-v3.5.21}"                # >= 3.5.11, as Kubernetes >= 1.31 requires
HELM_VERSION="${HELM_VERSION:-v3.19.5}"
# MinIO tags are not semver, so the Go proxy knows its commits by pseudo-version.
MINIO_VERSION="${MINIO_VERSION:-v0.0.0-20260212201848-7aac2a2c5b7c}"
PROMETHEUS_DEB_VERSION="${PROMETHEUS_DEB_VERSION:-2.42.0}"   # Debian bookworm's prometheus + promtool
WRK_DEB="${WRK_DEB:-wrk}"

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BIN="${ROOT}/bin"
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/creditmodel"
mkdir -p "${BIN}" "${CACHE}"

log() { printf '[tools] %s\n' "$*" >&2; }

# A long build prints nothing for many minutes: a ticker says it is alive every 20 s. Its sleep gets
# no inherited stdout/stderr, so a reader waiting for EOF on our stderr is not held up after the stop.
TICKER_PID=""
ticker_start() {
  local what="$1" start
  start=$(date +%s)
  (
    while true; do
      sleep 20 >/dev/null 2>&1
      log "still building ${what}: $(( $(date +%s) - start ))s"
    done
  ) &
  TICKER_PID=$!
}
ticker_stop() {
  if [[ -n "${TICKER_PID}" ]]; then
    kill "${TICKER_PID}" 2>/dev/null || true
    wait "${TICKER_PID}" 2>/dev/null || true
    TICKER_PID=""
  fi
}
trap ticker_stop EXIT

# The build times in the log depend on it: how much the shared Go build cache already holds.
go_cache_state() {
  local dir
  dir="$(go env GOCACHE)"
  if [[ -d "${dir}" ]]; then
    printf '%s' "$(du -sh "${dir}" 2>/dev/null | cut -f1) in ${dir}"
  else
    printf 'empty'
  fi
}

# link NAME TARGET: point ./bin/NAME at TARGET (absolute), replacing a stale link.
link() {
  if [[ "$(readlink "${BIN}/$1" 2>/dev/null)" != "$2" ]]; then
    ln -sfn "$2" "${BIN}/$1"
  fi
}

# go_wrapper_build NAME VERSION MAIN_GO SETUP [LDFLAGS] [PACKAGE]: builds in a tiny wrapper module,
# either its own main.go calling the upstream entry point, or (MAIN_GO empty) an upstream main PACKAGE
# that the wrapper requires. A wrapper is needed because upstream go.mod files carry replace directives
# (Kubernetes staging modules, KServe's pins) that `go install pkg@version` refuses. No `go mod tidy`:
# it would also fetch the test-only dependencies of the whole graph, which is slow and not all on the
# proxy. All wrappers share the Go build cache, so a second Kubernetes binary reuses the first's work.
go_wrapper_build() {
  local name="$1" version="$2" main_go="$3" setup="$4" ldflags="${5:-}" package="${6:-.}"
  local dest="${CACHE}/${name}-${version}"
  if [[ -x "${dest}/${name}" ]]; then
    link "${name}" "${dest}/${name}"
    return
  fi
  log "building ${name} ${version} (first time on this machine; cached in ${dest}; Go build cache $(go_cache_state))"
  local start work
  start=$(date +%s)
  work="$(mktemp -d)"
  trap 'rm -rf "${work}"' RETURN
  [[ -z "${main_go}" ]] || printf '%s\n' "${main_go}" >"${work}/main.go"
  ticker_start "${name}"
  (cd "${work}" && go mod init "creditmodel.local/tools/${name}" >/dev/null 2>&1 && eval "${setup}" \
    && CGO_ENABLED=0 go build -mod=mod -trimpath -ldflags="-s -w ${ldflags}" -o "${work}/${name}" \
      "${package}")
  ticker_stop
  mkdir -p "${dest}"
  mv "${work}/${name}" "${dest}/${name}"
  log "built ${name} in $(( $(date +%s) - start ))s"
  link "${name}" "${dest}/${name}"
}

# --- etcd -----------------------------------------------------------------------------------------
go_wrapper_build etcd "${ETCD_VERSION}" '
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
' "go get go.etcd.io/etcd/server/v3@${ETCD_VERSION} >/dev/null 2>&1"

# --- kube-apiserver -------------------------------------------------------------------------------
# Kubernetes publishes each staging module (k8s.io/api, k8s.io/apiserver, ...) as v0.<minor>.<patch>;
# k8s.io/kubernetes itself replaces them with ./staging paths, so the wrapper pins each one instead.
# shellcheck disable=SC2016  # expanded later, by eval in the wrapper directory
kube_setup='
  staging_version="v0${KUBERNETES_VERSION#v1}"
  gomod="$(go mod download -json "k8s.io/kubernetes@${KUBERNETES_VERSION}" | sed -n "s/.*\"GoMod\": \"\(.*\)\".*/\1/p")"
  for mod in $(sed -n "s#^\s*\(k8s.io/[a-z0-9-]*\) => ./staging/.*#\1#p" "${gomod}"); do
    go mod edit -replace "${mod}=${mod}@${staging_version}"
  done
  go get "k8s.io/kubernetes@${KUBERNETES_VERSION}" >/dev/null 2>&1
'
# Built as a dependency, Kubernetes does not know its own version unless the linker stamps it; clients
# (kubectl, helm's kubeVersion checks, kopf) read it from /version.
kube_version_ldflags() {
  local minor="${KUBERNETES_VERSION#v1.}"
  minor="${minor%%.*}"
  local pkg
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    printf -- '-X %s.gitVersion=%s -X %s.gitMajor=1 -X %s.gitMinor=%s -X %s.gitTreeState=clean ' \
      "${pkg}" "${KUBERNETES_VERSION}" "${pkg}" "${pkg}" "${minor}" "${pkg}"
  done
}
go_wrapper_build kube-apiserver "${KUBERNETES_VERSION}" '
package main

import (
	"os"

	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"
	_ "k8s.io/component-base/metrics/prometheus/clientgo"
	_ "k8s.io/component-base/metrics/prometheus/version"
	"k8s.io/kubernetes/cmd/kube-apiserver/app"
)

func main() { os.Exit(cli.Run(app.NewAPIServerCommand())) }
' "${kube_setup}" "$(kube_version_ldflags)"
# The other two control-plane binaries: the upstream main packages, built in the same kind of wrapper.
go_wrapper_build kube-controller-manager "${KUBERNETES_VERSION}" '' "${kube_setup}" \
  "$(kube_version_ldflags)" k8s.io/kubernetes/cmd/kube-controller-manager
go_wrapper_build kube-scheduler "${KUBERNETES_VERSION}" '' "${kube_setup}" \
  "$(kube_version_ldflags)" k8s.io/kubernetes/cmd/kube-scheduler

# --- KServe manager -------------------------------------------------------------------------------
# KServe's go.mod pins controller-runtime, the k8s.io modules and grpc with replace/exclude lines; they
# only apply in the main module, so the wrapper repeats them (local-path replaces excepted).
# shellcheck disable=SC2016  # expanded later, by eval in the wrapper directory
kserve_setup='
  gomod="$(go mod download -json "github.com/kserve/kserve@${KSERVE_VERSION}" | sed -n "s/.*\"GoMod\": \"\(.*\)\".*/\1/p")"
  awk -f "${ROOT}/hack/gomod-pins.awk" "${gomod}" >>go.mod
  go get "github.com/kserve/kserve@${KSERVE_VERSION}" >/dev/null 2>&1
'
go_wrapper_build kserve-manager "${KSERVE_VERSION}" '' "${kserve_setup}" "" \
  github.com/kserve/kserve/cmd/manager

# go_install NAME PACKAGE VERSION [LDFLAGS] [CACHE_KEY]: plain `go install` for modules without
# replace directives. CACHE_KEY (default VERSION) names the cache entry; it changes with the flags.
go_install() {
  local name="$1" pkg="$2" version="$3" ldflags="${4:-}" key="${5:-$3}"
  local dest="${CACHE}/${name}-${key}"
  if [[ ! -x "${dest}/${name}" ]]; then
    log "building ${name} ${version} (first time on this machine; cached in ${dest}; Go build cache $(go_cache_state))"
    local start
    start=$(date +%s)
    ticker_start "${name}"
    CGO_ENABLED=0 GOBIN="${dest}" go install -trimpath -ldflags="-s -w ${ldflags}" "${pkg}@${version}"
    ticker_stop
    log "built ${name} in $(( $(date +%s) - start ))s"
  fi
  link "${name}" "${dest}/${name}"
}

# Helm's release build stamps the Kubernetes version its client libraries speak (1.34 for 3.19);
# unstamped, `helm template`/`lint` assume v1.20 and fail charts with `kubeVersion: ">=1.29"`.
HELM_KUBE_MINOR="${HELM_KUBE_MINOR:-34}"
helm_ldflags="-X helm.sh/helm/v3/internal/version.version=${HELM_VERSION}"
helm_ldflags+=" -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
for pkg in helm.sh/helm/v3/pkg/chartutil helm.sh/helm/v3/pkg/lint/rules; do
  helm_ldflags+=" -X ${pkg}.k8sVersionMajor=1 -X ${pkg}.k8sVersionMinor=${HELM_KUBE_MINOR}"
done
go_install helm helm.sh/helm/v3/cmd/helm "${HELM_VERSION}" "${helm_ldflags}" \
  "${HELM_VERSION}-k8s1.${HELM_KUBE_MINOR}"
go_install minio github.com/minio/minio "${MINIO_VERSION}"
go_install kwok sigs.k8s.io/kwok/cmd/kwok "${KWOK_VERSION}"

# --- third-party CRDs and config, read from the Go module cache ---------------------------------------
# module_dir MODULE VERSION: download (if needed) and print the module's read-only source directory.
module_dir() {
  local dir
  dir="$(go mod download -json "$1@$2" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')"
  if [[ ! -d "${dir}" ]]; then
    log "go mod download $1@$2 gave no directory"
    exit 1
  fi
  printf '%s' "${dir}"
}
kserve_dir="$(module_dir github.com/kserve/kserve "${KSERVE_VERSION}")"
kwok_dir="$(module_dir sigs.k8s.io/kwok "${KWOK_VERSION}")"
gateway_dir="$(module_dir sigs.k8s.io/gateway-api "${GATEWAY_API_VERSION}")"
promop_dir="$(module_dir github.com/prometheus-operator/prometheus-operator "${PROMETHEUS_OPERATOR_VERSION}")"
# ./bin/stack.env: KEY=VALUE lines (shell-sourceable) for tests/support/cluster.py and
# hack/dev-cluster.sh; rewritten only when it changes.
stack_env="KSERVE_VERSION=${KSERVE_VERSION}
KSERVE_CRD_DIR=${kserve_dir}/config/crd/full
KSERVE_CONFIGMAP_DIR=${kserve_dir}/config/configmap
KSERVE_WEBHOOK_DIR=${kserve_dir}/config/webhook
GATEWAY_API_VERSION=${GATEWAY_API_VERSION}
GATEWAY_API_CRD_DIR=${gateway_dir}/config/crd/standard
PROMETHEUS_OPERATOR_VERSION=${PROMETHEUS_OPERATOR_VERSION}
PROMETHEUS_OPERATOR_CRD_DIR=${promop_dir}/example/prometheus-operator-crd
KWOK_VERSION=${KWOK_VERSION}
KWOK_NODE_STAGE_DIR=${kwok_dir}/kustomize/stage/node/fast
KWOK_POD_STAGE_DIR=${kwok_dir}/kustomize/stage/pod/fast"
while IFS='=' read -r var dir; do
  if [[ "${var}" == *_DIR && ! -d "${dir}" ]]; then
    log "${var}: ${dir} is not in the module"
    exit 1
  fi
done <<<"${stack_env}"
if [[ "$(cat "${BIN}/stack.env" 2>/dev/null)" != "${stack_env}" ]]; then
  printf '%s\n' "${stack_env}" >"${BIN}/stack.env"
fi

# --- Debian packages: prometheus (+ promtool), wrk, redis, qemu-user -----------------------------
# Only the binaries are used; the packaged systemd service is never started.
apt_binary() {
  local name="$1" package="$2" path="$3"
  if [[ ! -x "${path}" ]]; then
    log "installing Debian package ${package}"
    local sudo=""
    [[ "$(id -u)" == 0 ]] || sudo="sudo"
    export DEBIAN_FRONTEND=noninteractive
    # Another apt (unattended upgrades, a second tools run) may hold the lock: wait, do not fail.
    ${sudo} apt-get -o DPkg::Lock::Timeout=900 update -qq >/dev/null
    ${sudo} apt-get -o DPkg::Lock::Timeout=900 install -y -qq --no-install-recommends "${package}" \
      >/dev/null
  fi
  link "${name}" "${path}"
}
apt_binary prometheus "prometheus=${PROMETHEUS_DEB_VERSION}*" /usr/bin/prometheus
apt_binary promtool "prometheus=${PROMETHEUS_DEB_VERSION}*" /usr/bin/promtool
apt_binary wrk "${WRK_DEB}" /usr/bin/wrk
apt_binary h2load nghttp2-client /usr/bin/h2load       # gRPC load in the predictor benchmark
# valgrind (make perf-check) is used from the PATH: Debian's /usr/bin/valgrind is a wrapper that
# runs "$0.bin", which a link in ./bin would not find; the link made here is of the binary itself.
apt_binary valgrind.bin valgrind /usr/bin/valgrind.bin
apt_binary redis-server redis-server /usr/bin/redis-server   # response-cache benchmark
# qemu-user runs a bundle under other CPU models (AVX2-only, SSE4.2-only): the cross-CPU gate.
apt_binary qemu-x86_64 qemu-user /usr/bin/qemu-x86_64
# Lua 5.4 runs the Argo CD health check of docs/argocd-health.lua (tests/docs/test_argocd_health.py).
apt_binary lua5.4 lua5.4 /usr/bin/lua5.4

# --- verify: each binary reports the pinned version (a stale cache entry is an error, not a surprise) ---
expect_version() {
  local name="$1" want="$2"
  shift 2
  local got
  # The whole output, not `| head`: under pipefail an early-closing reader fails with SIGPIPE.
  got="$("$@" 2>&1)" || true
  if [[ "${got}" != *"${want}"* ]]; then
    log "${name}: expected version ${want}, got: ${got}"
    log "remove ${CACHE}/${name}-* and run again"
    exit 1
  fi
}
expect_version kube-apiserver "${KUBERNETES_VERSION}" "${BIN}/kube-apiserver" --version
expect_version kube-controller-manager "${KUBERNETES_VERSION}" "${BIN}/kube-controller-manager" --version
expect_version kube-scheduler "${KUBERNETES_VERSION}" "${BIN}/kube-scheduler" --version
expect_version kwok "${KWOK_VERSION#v}" "${BIN}/kwok" --version
expect_version kserve-manager "webhook-port" "${BIN}/kserve-manager" --help
expect_version etcd "${ETCD_VERSION#v}" "${BIN}/etcd" --version
expect_version helm "${HELM_VERSION}" "${BIN}/helm" version --short
helm_kube_version() {  # the Kubernetes version helm assumes when offline (.Capabilities)
  local chart
  chart="$(mktemp -d)"
  mkdir -p "${chart}/templates"
  printf 'apiVersion: v2\nname: probe\nversion: 0.1.0\n' >"${chart}/Chart.yaml"
  printf '# {{ .Capabilities.KubeVersion.Version }}\n' >"${chart}/templates/probe.yaml"
  "${BIN}/helm" template probe "${chart}"
  rm -rf "${chart}"
}
expect_version helm "v1.${HELM_KUBE_MINOR}." helm_kube_version
expect_version prometheus "${PROMETHEUS_DEB_VERSION}" "${BIN}/prometheus" --version

# --- report -----------------------------------------------------------------------------------------
{
  echo "kube-apiserver $("${BIN}/kube-apiserver" --version 2>&1 | awk '{print $2}')"
  echo "controller-mgr $("${BIN}/kube-controller-manager" --version 2>&1 | awk '{print $2}')"
  echo "scheduler      $("${BIN}/kube-scheduler" --version 2>&1 | awk '{print $2}')"
  echo "kserve-manager ${KSERVE_VERSION}"
  echo "kwok           $("${BIN}/kwok" --version 2>&1 | awk '{print $3}')"
  echo "etcd           $("${BIN}/etcd" --version 2>&1 | sed -n 's/^etcd Version: //p')"
  echo "helm           $("${BIN}/helm" version --short 2>&1)"
  echo "minio          ${MINIO_VERSION}"
  echo "prometheus     $("${BIN}/prometheus" --version 2>&1 | awk 'NR==1{print $3}')"
  echo "wrk            $("${BIN}/wrk" -v 2>&1 | awk 'NR==1{print $2}')"
  echo "redis-server   $("${BIN}/redis-server" --version | awk '{print $3}')"
  echo "qemu-x86_64    $("${BIN}/qemu-x86_64" --version | awk 'NR==1{print $3}')"
  echo "crds, config   ${BIN}/stack.env (KServe ${KSERVE_VERSION}, Gateway API ${GATEWAY_API_VERSION}, Prometheus Operator ${PROMETHEUS_OPERATOR_VERSION})"
  echo "cache          ${CACHE} ($(du -sh "${CACHE}" 2>/dev/null | cut -f1))"
} >&2
