# creditmodel: training pipeline, KServe predictor and kopf operator for credit-scoring models.
# `make help` lists the targets. Everything runs from the repo-local virtualenv (.venv) and the
# repo-local tool directory (./bin), both created on demand.

SHELL := /usr/bin/env bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

PYTHON_BOOTSTRAP ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(CURDIR)/bin
export PATH := $(BIN):$(CURDIR)/$(VENV)/bin:$(PATH)
PYTEST_ARGS ?=

##@ General

.PHONY: help
help: ## Show this help.
	@awk 'BEGIN {FS = ":.*##"; printf "Usage: make \033[36m<target>\033[0m\n"} \
	  /^[a-zA-Z0-9_-]+:.*?##/ { printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2 } \
	  /^##@/ { printf "\n\033[1m%s\033[0m\n", substr($$0, 5) }' $(MAKEFILE_LIST)

##@ Development

# hack/install.py prints each pip phase and the elapsed time at least every 30 s; pip's whole
# output goes to build/install.log.
$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON_BOOTSTRAP) hack/install.py --venv $(VENV) --constraint constraints.txt --spec '.[dev]'
	touch $@

.PHONY: install
install: $(VENV)/.installed ## Create .venv with every extra (predictor, operator, training, dev).

.PHONY: lock
lock: ## Re-resolve pyproject.toml's ranges in a scratch venv and pin the result in constraints.txt.
	rm -rf build/lock-venv
	$(PYTHON_BOOTSTRAP) -m venv build/lock-venv
	build/lock-venv/bin/pip install --quiet --upgrade pip
	build/lock-venv/bin/pip install --quiet '.[dev]'
	{ grep '^#' constraints.txt; \
	  build/lock-venv/bin/pip freeze --exclude-editable | grep -v '^creditmodel'; } > constraints.txt.new
	mv constraints.txt.new constraints.txt
	rm -rf build/lock-venv

.PHONY: tools
tools: ## Build or link the pinned real-component binaries (Kubernetes control plane, KServe manager, KWOK, etcd, MinIO, helm, Prometheus) into ./bin.
	hack/tools.sh

.PHONY: dev-cluster
dev-cluster: install tools ## Start a local cluster on loopback (real control plane, KServe with webhooks, a KWOK node); writes build/dev-cluster/kubeconfig.
	hack/dev-cluster.sh up

.PHONY: dev-cluster-down
dev-cluster-down: ## Stop the cluster that `make dev-cluster` started.
	hack/dev-cluster.sh down

.PHONY: fmt
fmt: install ## Format and auto-fix the code with ruff.
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

.PHONY: lint
lint: install ## Lint: ruff (check + format check), mypy (strict for predictor, operator, core), import-linter.
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy core predictor operator training
	$(VENV)/bin/lint-imports

##@ Testing

.PHONY: test
test: install tools ## Run every test that can run on this machine (unit + integration; e2e skips without Docker).
	$(VENV)/bin/pytest $(PYTEST_ARGS)

.PHONY: test-unit
test-unit: install ## Run the unit tests (pure logic, no processes).
	$(VENV)/bin/pytest -m unit $(PYTEST_ARGS)

.PHONY: test-integration
test-integration: install tools ## Run the integration tests against real kube-apiserver, etcd, MinIO, Prometheus.
	$(VENV)/bin/pytest -m integration $(PYTEST_ARGS)

.PHONY: test-e2e
test-e2e: install ## Run the kind end-to-end tests (need Docker; skip with the reason elsewhere).
	$(VENV)/bin/pytest -m e2e $(PYTEST_ARGS)

# Mutates each guard of the rollout state machine in a scratch copy of the package (the tree is
# never edited) and runs the unit tests that reach it; progress at least every 30 s.
MUTATE_ARGS ?=

.PHONY: mutate-rollout
mutate-rollout: install ## Mutation check: every guard in operator/.../rollout must fail a unit test; writes docs/rollout-mutations.md (MUTATE_ARGS adds flags).
	$(PY) hack/mutate_rollout.py $(MUTATE_ARGS)

.PHONY: bench
bench: install tools ## Run the benchmarks side by side; JSON in build/bench/, the table on stdout and in docs/benchmarks.md.
	$(PY) -m tests.bench

.PHONY: perf-check
perf-check: install tools ## Instructions per request, single row and 1,000 rows (valgrind callgrind), vs the committed figures; fails above +10%.
	$(PY) -m tests.bench.callgrind

.PHONY: perf-baseline
perf-baseline: install tools ## Measure and commit new instructions-per-request figures (tests/bench/predictor_instructions.json).
	$(PY) -m tests.bench.callgrind --update

##@ Models

.PHONY: reference-bundle
reference-bundle: install ## Rebuild the reference bundle models/german-credit from the bundled German Credit data.
	$(PY) -m creditmodel.training.reference_bundle models/german-credit

# `make train`: the README's training command. Each run publishes into a new folder (bundles are
# immutable); without qemu-x86_64 (`make tools`) the cross-CPU gate is skipped, and said so.
TRAIN_DATA := training/creditmodel/training/data/german_credit
TRAIN_OUTPUT ?=
TRAIN_ARGS ?=

.PHONY: train
train: install ## Train german-credit from the bundled data into build/bundles/german-credit-<UTC time>; TRAIN_ARGS adds flags.
	@output='$(TRAIN_OUTPUT)'; output="$${output:-build/bundles/german-credit-$$(date -u +%Y%m%d-%H%M%S)}"; \
	skip_cpu=(); \
	if ! command -v qemu-x86_64 >/dev/null; then \
	  echo "train: qemu-x86_64 not found (make tools installs it): skipping the cross-CPU check (--cpu-models none)" >&2; \
	  skip_cpu=(--cpu-models none); \
	fi; \
	echo "train: training german-credit into $$output (progress on stderr, the JSON summary on stdout)" >&2; \
	$(VENV)/bin/creditmodel-train --data $(TRAIN_DATA).csv --features $(TRAIN_DATA).features.json \
	  --target credit_risk --positive-label bad --model-name german-credit \
	  --output "$$output" "$${skip_cpu[@]}" $(TRAIN_ARGS)

##@ Predictor

SERVE_HTTP_PORT ?= 8080
SERVE_GRPC_PORT ?= 8081
SERVE_ARGS ?=

models/german-credit/manifest.json: | $(VENV)/.installed
	$(MAKE) reference-bundle

.PHONY: serve
serve: install models/german-credit/manifest.json ## Serve the reference bundle on localhost (REST 8080, gRPC 8081); prints a curl example.
	@printf '\nWhen ready, score an applicant:\n  curl -s -H "content-type: application/json" -d @predictor/examples/german-credit-request.json http://localhost:$(SERVE_HTTP_PORT)/v2/models/german-credit/infer\n\n'
	$(VENV)/bin/creditmodel-predictor --host 127.0.0.1 --model_name german-credit --model_dir models/german-credit \
	  --http_port $(SERVE_HTTP_PORT) --grpc_port $(SERVE_GRPC_PORT) $(SERVE_ARGS)

##@ Operator

OPERATOR_ARGS ?= --all-namespaces --standalone --liveness=http://127.0.0.1:8090/healthz

.PHONY: run-operator
run-operator: install ## Run the CreditModel operator locally against the current kubeconfig (CRDs: make install-crds); OPERATOR_ARGS overrides.
	$(VENV)/bin/creditmodel-operator $(OPERATOR_ARGS)

##@ Deployment

# Images: one per component, built from the repository root (see <component>/Dockerfile).
CONTAINER_TOOL ?= docker
IMAGE_REGISTRY ?= ghcr.io/creditmodel
IMAGE_TAG ?= $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
IMAGES := predictor operator training
KIND_CLUSTER ?= creditmodel
NAMESPACE ?= creditmodel-system
HELM_RELEASE ?= creditmodel-operator
CHART := charts/creditmodel-operator
# `make deploy` waits for the operator to be available; empty it for an API server without nodes.
DEPLOY_WAIT ?= --wait --timeout 5m

.PHONY: docker-build
docker-build: ## Build the predictor, operator and training images (needs a running Docker engine).
	@if ! $(CONTAINER_TOOL) info >/dev/null 2>&1; then \
	  echo "docker-build: no $(CONTAINER_TOOL) engine is running here; the images need one (set CONTAINER_TOOL=podman to use podman)." >&2; \
	  exit 1; \
	fi
	@for image in $(IMAGES); do \
	  echo "building $(IMAGE_REGISTRY)/$$image:$(IMAGE_TAG)"; \
	  $(CONTAINER_TOOL) build -f $$image/Dockerfile \
	    --build-arg VERSION=$(IMAGE_TAG) --build-arg REVISION=$$(git rev-parse --short HEAD 2>/dev/null || echo unknown) \
	    -t $(IMAGE_REGISTRY)/$$image:$(IMAGE_TAG) . ; \
	done

.PHONY: manifests
manifests: install tools ## Copy manifests/crd and manifests/rbac into the chart; render manifests/operator and manifests/monitoring from it.
	$(PY) hack/manifests.py

.PHONY: install-crds
install-crds: ## Apply the CRDs (manifests/crd) to the cluster of the current kubectl context.
	kubectl apply --server-side --force-conflicts -k manifests/crd

.PHONY: deploy
deploy: tools ## Install or upgrade the chart (operator, RBAC, CRDs) with the images IMAGE_REGISTRY/<component>:IMAGE_TAG; DEPLOY_ARGS adds helm flags.
	kubectl apply --server-side --force-conflicts -k manifests/crd
	helm upgrade --install $(HELM_RELEASE) $(CHART) --namespace $(NAMESPACE) --create-namespace $(DEPLOY_WAIT) \
	  --set image.repository=$(IMAGE_REGISTRY)/operator --set-string image.tag=$(IMAGE_TAG) \
	  --set defaults.predictorImage.repository=$(IMAGE_REGISTRY)/predictor --set-string defaults.predictorImage.tag=$(IMAGE_TAG) \
	  --set defaults.trainingImage.repository=$(IMAGE_REGISTRY)/training --set-string defaults.trainingImage.tag=$(IMAGE_TAG) \
	  $(DEPLOY_ARGS)

.PHONY: undeploy
undeploy: tools ## Uninstall the chart; the CRDs (and so every CreditModel) stay unless you delete them yourself.
	helm uninstall $(HELM_RELEASE) --namespace $(NAMESPACE) $(DEPLOY_WAIT)

.PHONY: kind-up
kind-up: tools ## Create a kind cluster with cert-manager, Envoy Gateway, KServe (Standard mode), Prometheus and MinIO (needs Docker).
	KIND_CLUSTER=$(KIND_CLUSTER) hack/kind-up.sh

.PHONY: kind-load
kind-load: docker-build ## Build the images and load them into the kind cluster.
	@for image in $(IMAGES); do kind load docker-image --name $(KIND_CLUSTER) $(IMAGE_REGISTRY)/$$image:$(IMAGE_TAG); done

.PHONY: kind-down
kind-down: ## Delete the kind cluster.
	KIND_CLUSTER=$(KIND_CLUSTER) hack/kind-down.sh

##@ Cleanup

.PHONY: clean
clean: ## Remove build outputs, caches and ./bin links (the shared tool cache is kept).
	rm -rf build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache .import_linter_cache bin
	find . -name __pycache__ -type d -prune -not -path './$(VENV)/*' -exec rm -rf {} +
