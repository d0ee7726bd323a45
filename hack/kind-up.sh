#!/usr/bin/env bash
# A kind cluster with everything a CreditModel needs, for `make test-e2e` and local trials:
#   cert-manager (KServe's webhook certificates), Envoy Gateway (Gateway API CRDs + controller) and
#   one Gateway, KServe in Standard mode with the Gateway API, the Prometheus Operator + Prometheus
#   (kube-prometheus-stack, selecting every PodMonitor/PrometheusRule), and MinIO with the buckets
#   the samples use. Idempotent: a second run upgrades in place and creates nothing twice.
#
# Needs: docker (a running engine), kind, kubectl, helm. Versions are pinned below and can be
# overridden from the environment. This script was written on a machine without a Docker engine:
# tests/deploy runs shellcheck on it, but it has not been run end to end here (see README).
set -euo pipefail

CLUSTER="${KIND_CLUSTER:-creditmodel}"
KIND_NODE_IMAGE="${KIND_NODE_IMAGE:-kindest/node:v1.33.1}"
CERT_MANAGER_VERSION="${CERT_MANAGER_VERSION:-v1.17.2}"
ENVOY_GATEWAY_VERSION="${ENVOY_GATEWAY_VERSION:-v1.4.2}"
KSERVE_VERSION="${KSERVE_VERSION:-v0.20.0}"  # the version the tests run (README: supported range)
# Empty: the chart repository's newest kube-prometheus-stack.
KUBE_PROMETHEUS_STACK_VERSION="${KUBE_PROMETHEUS_STACK_VERSION:-}"
MINIO_IMAGE="${MINIO_IMAGE:-quay.io/minio/minio:RELEASE.2025-04-22T22-12-26Z}"
MC_IMAGE="${MC_IMAGE:-quay.io/minio/mc:RELEASE.2025-04-16T18-13-26Z}"
# MinIO's root credentials inside the throwaway cluster (never used outside it).
MINIO_USER="${MINIO_USER:-creditmodel}"
MINIO_PASSWORD="${MINIO_PASSWORD:-creditmodel-e2e-secret}"
GATEWAY_NAMESPACE=gateway-system
GATEWAY_NAME=creditmodel-gateway
BUCKETS=(creditmodel-data creditmodel-bundles)

log() { printf '[kind-up] %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

for tool in docker kind kubectl helm; do
  command -v "${tool}" >/dev/null || die "${tool} is not installed (needed: docker, kind, kubectl, helm)"
done
docker info >/dev/null 2>&1 || die "no Docker engine is running; kind needs one"

# --- cluster -------------------------------------------------------------------------------------
if kind get clusters 2>/dev/null | grep -qx "${CLUSTER}"; then
  log "kind cluster ${CLUSTER} exists; reusing it"
else
  log "creating kind cluster ${CLUSTER} (${KIND_NODE_IMAGE})"
  kind create cluster --name "${CLUSTER}" --image "${KIND_NODE_IMAGE}" --wait 180s
fi
kubectl config use-context "kind-${CLUSTER}" >/dev/null

# --- cert-manager --------------------------------------------------------------------------------
log "cert-manager ${CERT_MANAGER_VERSION}"
helm upgrade --install cert-manager oci://quay.io/jetstack/charts/cert-manager \
  --version "${CERT_MANAGER_VERSION}" --namespace cert-manager --create-namespace \
  --set crds.enabled=true --wait --timeout 10m

# --- Gateway API: Envoy Gateway (ships the Gateway API CRDs) and the one Gateway -------------------
log "Envoy Gateway ${ENVOY_GATEWAY_VERSION}"
helm upgrade --install envoy-gateway oci://docker.io/envoyproxy/gateway-helm \
  --version "${ENVOY_GATEWAY_VERSION}" --namespace envoy-gateway-system --create-namespace \
  --wait --timeout 10m
kubectl apply -f - <<EOF
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata:
  name: envoy
spec:
  controllerName: gateway.envoyproxy.io/gatewayclass-controller
---
apiVersion: v1
kind: Namespace
metadata:
  name: ${GATEWAY_NAMESPACE}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata:
  name: ${GATEWAY_NAME}
  namespace: ${GATEWAY_NAMESPACE}
spec:
  gatewayClassName: envoy
  listeners:
    - name: http
      protocol: HTTP
      port: 80
      allowedRoutes:
        namespaces:
          from: All
EOF
kubectl wait --for=condition=Programmed --timeout=5m \
  -n "${GATEWAY_NAMESPACE}" "gateway/${GATEWAY_NAME}" || \
  log "Gateway not Programmed yet (kind has no LoadBalancer; the data plane still serves through port-forward)"

# --- KServe, Standard mode with the Gateway API ---------------------------------------------------
log "KServe ${KSERVE_VERSION} (Standard mode, Gateway API via ${GATEWAY_NAMESPACE}/${GATEWAY_NAME})"
helm upgrade --install kserve-crd oci://ghcr.io/kserve/charts/kserve-crd \
  --version "${KSERVE_VERSION}" --namespace kserve --create-namespace --wait --timeout 10m
# In v0.20 the controller chart is kserve-resources (hack/setup/quick-install in its source).
helm upgrade --install kserve-resources oci://ghcr.io/kserve/charts/kserve-resources \
  --version "${KSERVE_VERSION}" --namespace kserve \
  --set kserve.controller.deploymentMode=Standard \
  --set kserve.controller.gateway.ingressGateway.enableGatewayApi=true \
  --set "kserve.controller.gateway.ingressGateway.kserveGateway=${GATEWAY_NAMESPACE}/${GATEWAY_NAME}" \
  --wait --timeout 10m

# --- Prometheus Operator + Prometheus --------------------------------------------------------------
log "kube-prometheus-stack ${KUBE_PROMETHEUS_STACK_VERSION:-(newest)}"
version_flag=()
[[ -n "${KUBE_PROMETHEUS_STACK_VERSION}" ]] && version_flag=(--version "${KUBE_PROMETHEUS_STACK_VERSION}")
helm upgrade --install kube-prometheus-stack kube-prometheus-stack \
  --repo https://prometheus-community.github.io/helm-charts "${version_flag[@]}" \
  --namespace monitoring --create-namespace \
  --set grafana.enabled=false --set alertmanager.enabled=false \
  --set nodeExporter.enabled=false --set kubeStateMetrics.enabled=false \
  --set prometheus.prometheusSpec.podMonitorSelectorNilUsesHelmValues=false \
  --set prometheus.prometheusSpec.serviceMonitorSelectorNilUsesHelmValues=false \
  --set prometheus.prometheusSpec.ruleSelectorNilUsesHelmValues=false \
  --set prometheus.prometheusSpec.scrapeInterval=5s \
  --wait --timeout 10m

# --- MinIO and the buckets ------------------------------------------------------------------------
log "MinIO (${MINIO_IMAGE})"
kubectl apply -f - <<EOF
apiVersion: v1
kind: Namespace
metadata:
  name: storage
---
apiVersion: v1
kind: Secret
metadata:
  name: minio-root
  namespace: storage
stringData:
  MINIO_ROOT_USER: ${MINIO_USER}
  MINIO_ROOT_PASSWORD: ${MINIO_PASSWORD}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: minio
  namespace: storage
  labels: {app.kubernetes.io/name: minio}
spec:
  replicas: 1
  strategy: {type: Recreate}
  selector:
    matchLabels: {app.kubernetes.io/name: minio}
  template:
    metadata:
      labels: {app.kubernetes.io/name: minio}
    spec:
      containers:
        - name: minio
          image: ${MINIO_IMAGE}
          args: [server, /data, --address, ":9000"]
          envFrom: [{secretRef: {name: minio-root}}]
          ports: [{name: s3, containerPort: 9000}]
          readinessProbe:
            httpGet: {path: /minio/health/ready, port: s3}
          volumeMounts: [{name: data, mountPath: /data}]
      volumes: [{name: data, emptyDir: {}}]
---
apiVersion: v1
kind: Service
metadata:
  name: minio
  namespace: storage
spec:
  selector: {app.kubernetes.io/name: minio}
  ports: [{name: s3, port: 9000, targetPort: s3}]
EOF
kubectl -n storage rollout status deployment/minio --timeout=5m
kubectl -n storage delete job create-buckets --ignore-not-found --wait=true
kubectl apply -f - <<EOF
apiVersion: batch/v1
kind: Job
metadata:
  name: create-buckets
  namespace: storage
spec:
  backoffLimit: 3
  template:
    spec:
      restartPolicy: OnFailure
      containers:
        - name: mc
          image: ${MC_IMAGE}
          envFrom: [{secretRef: {name: minio-root}}]
          command: [sh, -ec]
          args:
            - |
              mc alias set local http://minio.storage.svc:9000 "\$MINIO_ROOT_USER" "\$MINIO_ROOT_PASSWORD"
              for bucket in ${BUCKETS[*]}; do mc mb --ignore-existing "local/\$bucket"; done
EOF
kubectl -n storage wait --for=condition=Complete job/create-buckets --timeout=5m

# The operator's own S3 credentials (hack/kind-values.yaml points the chart at this Secret).
kubectl create namespace creditmodel-system --dry-run=client -o yaml | kubectl apply -f -
kubectl -n creditmodel-system create secret generic creditmodel-s3 \
  --from-literal=AWS_ACCESS_KEY_ID="${MINIO_USER}" --from-literal=AWS_SECRET_ACCESS_KEY="${MINIO_PASSWORD}" \
  --dry-run=client -o yaml | kubectl apply -f -

log "ready: kubectl context kind-${CLUSTER}; next: make kind-load deploy DEPLOY_ARGS=\"--values hack/kind-values.yaml\""
