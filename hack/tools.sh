#!/usr/bin/env bash
# Installs the pinned real-component binaries the tests start (kube-apiserver, etcd, MinIO, helm,
# Prometheus) and links them into ./bin. Builds are cached outside the checkout, so a fresh clone on a
# machine that has built them before only relinks. Idempotent: a second run does no work.
set -euo pipefail

# --- pinned versions --------------------------------------------------------------------------
KUBERNETES_VERSION="${KUBERNETES_VERSION:-v1.34.4}"   # kube-apiserver
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

# link NAME TARGET: point ./bin/NAME at TARGET (absolute), replacing a stale link.
link() {
  if [[ "$(readlink "${BIN}/$1" 2>/dev/null)" != "$2" ]]; then
    ln -sfn "$2" "${BIN}/$1"
  fi
}

# go_wrapper_build NAME VERSION MAIN_GO SETUP [LDFLAGS]: builds a tiny wrapper module whose main calls the
# upstream entry point. A wrapper is needed because upstream go.mod files carry replace directives
# (Kubernetes staging modules) that `go install pkg@version` refuses. No `go mod tidy`: it would
# also fetch the test-only dependencies of the whole graph, which is slow and not all on the proxy.
go_wrapper_build() {
  local name="$1" version="$2" main_go="$3" setup="$4" ldflags="${5:-}"
  local dest="${CACHE}/${name}-${version}"
  if [[ -x "${dest}/${name}" ]]; then
    link "${name}" "${dest}/${name}"
    return
  fi
  log "building ${name} ${version} (first time on this machine; cached in ${dest})"
  local start work
  start=$(date +%s)
  work="$(mktemp -d)"
  trap 'rm -rf "${work}"' RETURN
  printf '%s\n' "${main_go}" >"${work}/main.go"
  (cd "${work}" && go mod init "creditmodel.local/tools/${name}" >/dev/null 2>&1 && eval "${setup}" \
    && CGO_ENABLED=0 go build -mod=mod -trimpath -ldflags="-s -w ${ldflags}" -o "${work}/${name}" .)
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

# go_install NAME PACKAGE VERSION [LDFLAGS] [CACHE_KEY]: plain `go install` for modules without
# replace directives. CACHE_KEY (default VERSION) names the cache entry; it changes with the flags.
go_install() {
  local name="$1" pkg="$2" version="$3" ldflags="${4:-}" key="${5:-$3}"
  local dest="${CACHE}/${name}-${key}"
  if [[ ! -x "${dest}/${name}" ]]; then
    log "building ${name} ${version} (first time on this machine; cached in ${dest})"
    local start
    start=$(date +%s)
    CGO_ENABLED=0 GOBIN="${dest}" go install -trimpath -ldflags="-s -w ${ldflags}" "${pkg}@${version}"
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
apt_binary redis-server redis-server /usr/bin/redis-server   # response-cache benchmark
# qemu-user runs a bundle under other CPU models (AVX2-only, SSE4.2-only): the cross-CPU gate.
apt_binary qemu-x86_64 qemu-user /usr/bin/qemu-x86_64

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
  echo "etcd           $("${BIN}/etcd" --version 2>&1 | sed -n 's/^etcd Version: //p')"
  echo "helm           $("${BIN}/helm" version --short 2>&1)"
  echo "minio          ${MINIO_VERSION}"
  echo "prometheus     $("${BIN}/prometheus" --version 2>&1 | awk 'NR==1{print $3}')"
  echo "wrk            $("${BIN}/wrk" -v 2>&1 | awk 'NR==1{print $2}')"
  echo "redis-server   $("${BIN}/redis-server" --version | awk '{print $3}')"
  echo "qemu-x86_64    $("${BIN}/qemu-x86_64" --version | awk 'NR==1{print $3}')"
  echo "cache          ${CACHE} ($(du -sh "${CACHE}" 2>/dev/null | cut -f1))"
} >&2
