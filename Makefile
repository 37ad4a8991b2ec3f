# Support Inbox. `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help
export INBOX_TOOLS_DIR ?= $(HOME)/.cache/support-inbox
export PYTHONPATH := tools
PYTEST_ARGS ?=

## help: list the targets
.PHONY: help
help:
	@grep -E '^## ' $(MAKEFILE_LIST) | sed 's/^## /  /' | column -t -s ':'

## tools: install daprd (built from the Go module proxy), PostgreSQL, Redis, Chromium and the Python env; skips what is there
.PHONY: tools
tools:
	@tools/install.sh

## run: the whole inbox locally (3 services + 3 daprd, PostgreSQL, Redis), seeded with real messages; Ctrl-C stops it
.PHONY: run
run: tools
	@uv run --frozen python -m devstack.run

## test: unit, integration and end-to-end tests against real daprd, Redis, PostgreSQL and Chromium
.PHONY: test
test: tools
	@uv run --frozen pytest $(PYTEST_ARGS)

## test-unit: only the tests that need no running component
.PHONY: test-unit
test-unit:
	@uv run --frozen pytest -m "not integration and not e2e" $(PYTEST_ARGS)

## lint: ruff over the services, tools and tests
.PHONY: lint
lint:
	@uv run --frozen ruff check services tools tests

IMAGE_REGISTRY ?= ghcr.io/support-inbox
IMAGE_TAG ?= 0.1.0
IMAGE_SERVICES := gateway messaging ai-worker operator

## images: build the four service images with Docker (IMAGE_REGISTRY, IMAGE_TAG)
.PHONY: images
images:
	@command -v docker >/dev/null || { echo "make images needs Docker (https://docs.docker.com/engine/install/)"; exit 1; }
	@docker info >/dev/null 2>&1 || { echo "make images: the Docker engine is not running"; exit 1; }
	@for s in $(IMAGE_SERVICES); do \
	  echo "building $(IMAGE_REGISTRY)/$$s:$(IMAGE_TAG)"; \
	  docker build -f services/$$s/Dockerfile -t $(IMAGE_REGISTRY)/$$s:$(IMAGE_TAG) . || exit 1; \
	done

## clean: remove local run data and caches inside the repository (not the tool cache)
.PHONY: clean
clean:
	rm -rf .devstack test-output .pytest_cache .ruff_cache
