# Support Inbox. `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help
export INBOX_TOOLS_DIR ?= $(HOME)/.cache/support-inbox
export PYTHONPATH := tools
PYTEST_ARGS ?=

## help: list the targets
.PHONY: help
help:
	@grep -E '^## ' $(MAKEFILE_LIST) | sed 's/^## //' | awk -F': ' '{ n = $$1; sub(/^[^:]*: /, ""); printf "  %-10s %s\n", n, $$0 }'

## tools: install everything the tests need: daprd and Dapr's control plane, the Kubernetes binaries, etcd, helm, Jaeger, CoreDNS, local-path, Ollama (built from the Go module proxy), Kafka (Maven Central), PostgreSQL, Redis, RabbitMQ, NATS, Chromium, Docker, containerd (Debian) and the Python env; skips what is there
.PHONY: tools
tools:
	@tools/install.sh all

## tools-run: install only what `make run` starts: daprd, PostgreSQL, the broker and state store of BROKER and STATE_STORE, Ollama when OLLAMA=real, the Python env (Jaeger is used when `make tools` built it)
.PHONY: tools-run
tools-run:
	@tools/install.sh run

## frontend: bundle the OpenTelemetry web SDK from npm into frontend/vendor/otel.js (skips when up to date)
.PHONY: frontend
frontend:
	@tools/build-frontend.sh

## run: the whole inbox locally (3 services + 3 daprd, PostgreSQL, a broker), seeded with real messages; BROKER=redis|rabbitmq|kafka|jetstream, STATE_STORE=redis|postgresql, REPLICAS=N, OLLAMA=auto|real|stand-in (real: the built Ollama with the test model); Ctrl-C stops it
.PHONY: run
run: tools-run frontend
	@uv run --frozen python -m devstack.run

## test: unit, integration and end-to-end tests against real daprd, Redis, PostgreSQL and Chromium, the chart on a real node; prints the 25 slowest
.PHONY: test
test: tools frontend
	@uv run --frozen pytest --durations=25 $(PYTEST_ARGS)

## test-unit: only the tests that need no running component
.PHONY: test-unit
test-unit:
	@uv run --frozen pytest -m "not integration and not e2e and not cluster and not store" $(PYTEST_ARGS)

## test-store: messaging's store on a real PostgreSQL alone (tests/store)
.PHONY: test-store
test-store:
	@uv run --frozen pytest -m store $(PYTEST_ARGS)

## lint: ruff over the services, tools, tests and benchmarks
.PHONY: lint
lint:
	@uv run --frozen ruff check services tools tests bench

need = @command -v $(1) >/dev/null || { echo "make $@ needs $(1): $(2)"; exit 1; }
IMAGE_REGISTRY ?= ghcr.io/support-inbox
IMAGE_TAG ?= 0.1.0
IMAGE_SERVICES := gateway messaging ai-worker operator

## images: build, offline from image registries, the four service images (IMAGE_REGISTRY, IMAGE_TAG) and every image the chart and a local node run (localhost/support-inbox/*); starts this machine's dockerd for the build if no Docker engine answers
.PHONY: images
images:
	$(call need,docker,https://docs.docker.com/engine/install/)
	@IMAGE_REGISTRY=$(IMAGE_REGISTRY) IMAGE_TAG=$(IMAGE_TAG) tools/build-images.sh

KIND_CLUSTER ?= support-inbox
NAMESPACE ?= support-inbox
HELM := $(INBOX_TOOLS_DIR)/bin/helm

# Where kind runs (a laptop with Docker and the internet) `make cluster` uses it; elsewhere, as on
# machines that cannot run privileged containers, one real node on this machine.
CLUSTER ?= $(if $(shell command -v kind 2>/dev/null),kind,local)
LOCAL_KUBECONFIG := $(INBOX_TOOLS_DIR)/cluster/admin.kubeconfig

## cluster: a cluster with Dapr to deploy to; CLUSTER=kind (k8s/kind-config.yaml, `dapr init -k`; the default where kind is installed) or CLUSTER=local (one real node on this machine: kubelet, containerd, CoreDNS, Dapr's chart; needs root)
.PHONY: cluster
cluster: tools
ifeq ($(CLUSTER),local)
	@tools/build-images.sh
	@uv run --frozen python -m devstack.node up
else
	$(call need,docker,https://docs.docker.com/engine/install/)
	$(call need,kind,https://kind.sigs.k8s.io/docs/user/quick-start/#installation)
	$(call need,dapr,https://docs.dapr.io/getting-started/install-dapr-cli/)
	kind get clusters | grep -qx $(KIND_CLUSTER) || kind create cluster --config k8s/kind-config.yaml
	dapr init -k --wait
endif

## cluster-down: delete the cluster of `make cluster` (CLUSTER=local: stops the node and undoes its host changes)
.PHONY: cluster-down
cluster-down:
ifeq ($(CLUSTER),local)
	@uv run --frozen python -m devstack.node down
else
	kind delete cluster --name $(KIND_CLUSTER)
endif

## eval: the AI scored on the demo set's held-out messages (603 of 3,000): intent accuracy and macro-F1, escalation precision and recall, retrieval recall@3 of the learned step against a majority-class baseline; EVAL_ARGS="--real-ollama" (the built Ollama, test model) or "--ollama-url URL --model TAG --limit 60" adds the whole analysis on a model: JSON-valid rate, ms and output tokens per insight
.PHONY: eval
eval:
	@uv run --frozen python -m bench.eval $(EVAL_ARGS)

## bench: streaming benchmark on its own stack: time to the first visible word of a suggested reply against the final insight (baseline), and events per reply
.PHONY: bench
bench: tools frontend
	@uv run --frozen python -m bench.streaming $(BENCH_ARGS)

## bench-parser: the model-output parser on hostile text (unbalanced braces, deep nesting, long strings, unclosed fences) at sizes up to its 20,000-character bound, in ms per call against json.loads of a valid document of the same size (baseline); BENCH_ARGS=--parser FILE times another parser.py
.PHONY: bench-parser
bench-parser:
	@uv run --frozen python -m bench.parser $(BENCH_ARGS)

## bench-ollama: the ai-worker's analyses on the real `ollama serve` (CPU build, test model inbox-tiny), made straight on Ollama and through the whole pipeline in one run: analyses/s, output tokens/s, latency p50/p95 and pipeline/direct; BENCH_ARGS="--messages 40 --concurrency 2", or "--ollama-url URL --model TAG" for a server of yours (a GPU node)

## bench-throughput: the pipeline flat out (messages offered above what it holds, stand-in model at 0 ms, Redis) against the floor of its own parts in the same run (a Redis-stream consumer storing in PostgreSQL with redis-py and psycopg, one at a time and in batches): msg/s of each and pipeline/floor, each process's CPU s per 1,000 messages and each service's and sidecar's RSS/USS MiB against their targets, then latencies at 20 msg/s and, with the AI saturated (2 s a call), at 50 msg/s; BENCH_ARGS="--messages 1000 --offered-rate 100 --batch 50 --replicas 1 --broker redis --paced-rate 20 --ai-delay 2 --saturated-rate 50"

## bench-inbox: one page of a large inbox through the gateway (100,000 conversations written straight into PostgreSQL): p50/p95/max ms at offset 0 (the list read model, baseline), across the list's end and deep in PostgreSQL (through messaging); BENCH_ARGS="--conversations 100000 --requests 30 --limit 50"

## bench-sockets: many operators on one gateway: 20 msg/s with 1, 1,000 and 2,000 operator sockets open (stand-in model at 0 ms, Redis); held or not, latencies in ms, the gateway's CPU s and MB, the sidecars' MB; BENCH_ARGS="--sockets 1,1000,2000 --rate 20 --messages 400"

## bench-widget: customers chatting with the AI assistant through the widget on its own stack (Redis, two replicas of each service): accepted, first streamed token and full answer p50/p95/p99 in ms, msg/s against the replaced system's reported figure, lost messages and 429s; BENCH_ARGS="--customers 100 --messages 3 --think-ms 500 --replicas 2 --token-delay-ms 0"
BENCHES := ollama throughput inbox sockets widget
.PHONY: $(addprefix bench-,$(BENCHES))
$(addprefix bench-,$(BENCHES)): bench-%: tools frontend
	@uv run --frozen python -m bench.$* $(BENCH_ARGS)

## deploy: build the images, load them into the cluster of `make cluster` and helm install the chart (k8s/kind-values.yaml or k8s/local-values.yaml)
.PHONY: deploy
deploy:
ifeq ($(CLUSTER),local)
	@tools/build-images.sh --load $(INBOX_TOOLS_DIR)/cluster/containerd/containerd.sock
	$(HELM) upgrade --install support-inbox charts/support-inbox -n $(NAMESPACE) --create-namespace \
	  --kubeconfig $(LOCAL_KUBECONFIG) -f k8s/local-values.yaml --wait --timeout 10m $(HELM_ARGS)
else
	@$(MAKE) --no-print-directory images
	$(call need,kind,https://kind.sigs.k8s.io/docs/user/quick-start/#installation)
	@for s in $(IMAGE_SERVICES); do kind load docker-image --name $(KIND_CLUSTER) $(IMAGE_REGISTRY)/$$s:$(IMAGE_TAG); done
	$(HELM) upgrade --install support-inbox charts/support-inbox -n $(NAMESPACE) --create-namespace \
	  --set image.registry=$(IMAGE_REGISTRY) --set image.tag=$(IMAGE_TAG) -f k8s/kind-values.yaml $(HELM_ARGS)
	kubectl apply -f k8s/kind-expose.yaml
endif

## dev: skaffold dev: rebuild and redeploy on every change (profiles: kind, minikube, gpu)
.PHONY: dev
dev: tools
	$(call need,skaffold,https://skaffold.dev/docs/install/)
	$(call need,docker,https://docs.docker.com/engine/install/)
	skaffold dev $(SKAFFOLD_ARGS)

## undeploy: helm uninstall the release (the CRD stays: Helm never deletes CRDs)
.PHONY: undeploy
undeploy:
	$(HELM) uninstall support-inbox -n $(NAMESPACE) $(if $(filter local,$(CLUSTER)),--kubeconfig $(LOCAL_KUBECONFIG))

## load: replay real customer messages at RATE msg/s for DURATION s (or COUNT messages) with SOCKETS operator sockets against URL with API_KEY (both printed by `make run`; or a cluster's); prints rate, latency percentiles, errors and lost messages
.PHONY: load
load:
	@$(if $(URL),INBOX_URL='$(URL)') $(if $(API_KEY),INBOX_API_KEY='$(API_KEY)') $(if $(OPERATOR),INBOX_OPERATOR='$(OPERATOR)') \
	  uv run --frozen python -m bench.load $(if $(RATE),--rate $(RATE)) $(if $(DURATION),--duration $(DURATION)) \
	  $(if $(COUNT),--count $(COUNT)) $(if $(SOCKETS),--sockets $(SOCKETS)) $(if $(TIMEOUT),--timeout $(TIMEOUT)) $(LOAD_ARGS)

## clean: remove local run data and caches inside the repository (not the tool cache)
.PHONY: clean
clean:
	rm -rf .devstack test-output .pytest_cache .ruff_cache
