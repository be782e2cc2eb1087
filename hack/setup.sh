#!/usr/bin/env bash
# Install everything the demo and the tests need on a fresh Debian machine; quick when done.
#   apt: docker-registry (CNCF distribution 2.8), skopeo, buildah, podman, runc, mmdebstrap,
#        containernetworking-plugins and iproute2 (the node's Pod network), tinyproxy (an HTTP
#        proxy for the plugin's tests)
#   PyPI: uv, then the project and its dev dependencies (uv sync --frozen)
#   Go modules, cached by version: kube-apiserver, etcd, helm (and kubectl if missing); for the
#        node kubelet, kube-controller-manager, kube-scheduler, containerd, crictl; the official
#        AWS ECR credential provider (about a minute on a fresh machine); kube-apiserver and the
#        node's Kubernetes binaries again for each older version of the test matrix
#        (KUBERNETES_COMPAT_VERSIONS in hack/versions.env; empty builds none)
set -euo pipefail
cd "$(dirname "$0")/.."

# The Go builds need neither the apt packages nor Python: on a fresh machine they run (on every
# core) while apt and uv download.
build_all() {
  bash hack/build-testbins.sh >/dev/null
  bash hack/build-testbins.sh node >/dev/null
  # The older Kubernetes versions of the test matrix (make test): the same binaries, per version.
  local requested_compat=${KUBERNETES_COMPAT_VERSIONS-unset} compat version
  compat=$(source hack/versions.env && echo "$KUBERNETES_COMPAT_VERSIONS")
  [ "$requested_compat" = unset ] || compat=$requested_compat
  for version in ${compat//,/ }; do
    KUBERNETES_VERSION=$version bash hack/build-testbins.sh >/dev/null
    KUBERNETES_VERSION=$version bash hack/build-testbins.sh node >/dev/null
  done
  bash hack/build-testbins.sh helm >/dev/null
  bash hack/build-testbins.sh ecr >/dev/null
}
build_all &
builds=$!

need_apt=()
command -v docker-registry >/dev/null 2>&1 || need_apt+=(docker-registry)
command -v skopeo >/dev/null 2>&1 || need_apt+=(skopeo)
# The container image is built without a Docker engine, from Debian packages (tests/image).
command -v buildah >/dev/null 2>&1 || need_apt+=(buildah)
command -v podman >/dev/null 2>&1 || need_apt+=(podman)
command -v runc >/dev/null 2>&1 || need_apt+=(runc)
command -v mmdebstrap >/dev/null 2>&1 || need_apt+=(mmdebstrap)
# The node: runc (above) runs its containers; the CNI plugins give its Pods a network.
[ -x /usr/lib/cni/loopback ] || [ -x /opt/cni/bin/loopback ] || need_apt+=(containernetworking-plugins)
command -v ip >/dev/null 2>&1 || need_apt+=(iproute2)
# An HTTP proxy, as a node behind one has, for the plugin's tests.
command -v tinyproxy >/dev/null 2>&1 || need_apt+=(tinyproxy)
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
wait "$builds" || { echo "[setup] building the test binaries failed (see above)" >&2; exit 1; }
