#!/usr/bin/env bash
# Install everything the demo and the tests need on a fresh Debian machine; quick when done.
#   apt: docker-registry (CNCF distribution 2.8), skopeo, buildah, podman, runc, mmdebstrap
#   PyPI: uv, then the project and its dev dependencies (uv sync --frozen)
#   Go modules: kube-apiserver, etcd, helm (and kubectl if missing), cached by version
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v docker-registry >/dev/null 2>&1 || need_apt+=(docker-registry)
command -v skopeo >/dev/null 2>&1 || need_apt+=(skopeo)
# The container image is built without a Docker engine, from Debian packages (tests/image).
command -v buildah >/dev/null 2>&1 || need_apt+=(buildah)
command -v podman >/dev/null 2>&1 || need_apt+=(podman)
command -v runc >/dev/null 2>&1 || need_apt+=(runc)
command -v mmdebstrap >/dev/null 2>&1 || need_apt+=(mmdebstrap)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "[setup] apt-get install ${need_apt[*]}" >&2
  sudo_=""; [ "$(id -u)" -eq 0 ] || sudo_=sudo
  $sudo_ apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >&2
fi
if ! command -v uv >/dev/null 2>&1; then
  echo "[setup] pip install uv" >&2
  python3 -m pip install -q --user uv >&2 || python3 -m pip install -q uv >&2
fi
export PATH="$HOME/.local/bin:$PATH"
uv sync --frozen -q
bash hack/build-testbins.sh >/dev/null
bash hack/build-testbins.sh helm >/dev/null
