# bake: self-documenting Makefile (`make help`). Every target installs what it needs first.
SHELL := /bin/bash
.DEFAULT_GOAL := help
PYTHON ?= python3
VENV := .venv
# checkov pins boto3 to an old release: it gets a venv of its own (tests/launch use it)
TOOLS_VENV := .venv-tools
BIN := $(VENV)/bin
BAKE := $(BIN)/bake
# Debian packages bake's local builder and its tests use (installed with apt-get when missing).
DEB_PACKAGES := mmdebstrap debootstrap e2fsprogs qemu-system-x86 qemu-utils shellcheck etcd-server etcd-client zstd containerd skopeo docker-registry cloud-image-utils genisoimage dnsmasq-base haproxy iproute2 openssl dpkg-dev
DEMO_DIR := .bake/demo
K8S ?= 1.30
PYTEST_ARGS ?=

.PHONY: help deps deb-deps venv demo test test-fast lint golden bench bench-cluster bench-boot-join wheel clean

help: ## Show this help
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | sed 's/$$(K8S)/$(K8S)/g' | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-12s\033[0m %s\n", $$1, $$2}'

deb-deps: ## Install the Debian packages bake uses (needs root; skipped when present)
	@missing=$$(for p in $(DEB_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages: $$missing"; \
	  if [ "$$(id -u)" != 0 ]; then echo "bake: error: need root to install $$missing (run: sudo make deb-deps)" >&2; exit 1; fi; \
	  DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing >/dev/null; \
	fi

$(VENV)/.installed: pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -e '.[dev]'
	@touch $@

$(TOOLS_VENV)/.installed:
	@test -x $(TOOLS_VENV)/bin/python || $(PYTHON) -m venv $(TOOLS_VENV)
	$(TOOLS_VENV)/bin/pip install -q 'checkov>=3.1'
	@touch $@

venv: $(VENV)/.installed $(TOOLS_VENV)/.installed ## Create .venv (bake + dev dependencies) and .venv-tools (checkov)

deps: deb-deps venv ## Install everything (Debian packages and the venv)

demo: deps ## Bake a Kubernetes $(K8S) node image locally into the embedded AWS (stand-in binaries)
	$(BIN)/python tools/demo.py --k8s $(K8S) --work $(DEMO_DIR)

test: deps lint ## Lint, then run the whole test suite, slow end-to-end tests included
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-fast: venv ## Run the tests that are not marked slow
	$(BIN)/python -m pytest -m 'not slow' $(PYTEST_ARGS)

lint: venv ## ruff over the package and tests
	$(BIN)/ruff check cli tests tools bench

golden: venv ## Regenerate the golden files of rendered artifacts (review the diff!)
	$(BIN)/python -m pytest -q tests -m golden --update-golden

bench: deps ## Print local bake, CLI latency and cluster formation figures (bench/)
	$(BIN)/python bench/bake_local.py
	$(BIN)/python bench/join_formation.py

bench-cluster: deps ## Print the figures of a 3+2 VM cluster (bench/local_cluster.py, ~15 min)
	$(BIN)/python bench/local_cluster.py

bench-boot-join: deps ## Print boot-to-joined of baked vs runtime-install nodes (bench/boot_join.py, ~30 min)
	$(BIN)/python bench/boot_join.py

wheel: venv ## Build the wheel into dist/
	$(BIN)/pip wheel -q --no-deps -w dist .

clean: ## Remove build output (keeps .venv and the rootfs cache)
	rm -rf dist build *.egg-info .pytest_cache $(DEMO_DIR)
