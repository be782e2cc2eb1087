# The two commands: `make demo` (a local stack with the controller, following the quickstart)
# and `make test` (lint, types, unit, integration and end-to-end tests on the local stack; the
# whole suite on the newest Kubernetes version, a compatibility subset on older ones).
# `KUBERNETES_VERSION=v1.34.4 make test` runs the whole suite on another version.
SHELL := /bin/bash
export PATH := $(HOME)/.local/bin:$(PATH)

.PHONY: setup test test-compat test-loaded lint unit devstack demo clean-host bench bench-quick docs image credential-provider

setup:
	@bash hack/setup.sh

lint: setup
	uv run ruff check .
	uv run ruff format --check .
	uv run mypy
	uv run lint-imports

# The version matrix (hack/test-matrix.sh, hack/versions.env); the whole suite runs last.
test: setup lint
	bash hack/test-matrix.sh

# Only the compatibility subset (tests/matrix.py), on KUBERNETES_VERSION (default the newest).
test-compat: setup
	uv run pytest -q --compat

# The suite three times in a row next to one busy loop per core (hack/loaded-test.sh).
test-loaded: setup
	bash hack/loaded-test.sh

# Every test that needs no local stack (marked by the fixtures it uses: tests/conftest.py).
unit: setup
	uv run pytest -q -m "not stack and not node"

# A node (containerd, kubelet; needs root) makes Pods really run: `make devstack NODE=1` adds
# one; `make demo` has one when run as root (NODE=0 leaves it out) and runs the controller there.
devstack: setup
	uv run python -m devstack $(if $(filter 1,$(NODE)),--node)

demo: setup
	uv run python -m devstack.demo --node=$(or $(NODE),auto)

# What a stack that could not clean up (SIGKILL, a crash) left on the host, put back: one line
# for each thing; running stacks are left alone (devstack/hoststate.py).
clean-host:
	uv run python -m devstack.hoststate

docs: setup
	uv run python hack/update-readme.py

image: setup
	bash hack/build-image.sh

# The kubelet plugin as one directory with its own Python: dist/pull-secret-updater-credential-provider/
# (the executable of the same name inside, and _internal/; link it once per provider name)
credential-provider: setup
	bash hack/build-credential-provider.sh --out dist

bench: setup
	uv run python -m bench --out bench-results

bench-quick: setup
	uv run python -m bench --quick --out bench-results
