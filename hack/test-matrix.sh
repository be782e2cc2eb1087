#!/usr/bin/env bash
# The version matrix (hack/versions.env): the compatibility subset (tests/matrix.py,
# pytest --compat) on each of KUBERNETES_COMPAT_VERSIONS, then the whole suite on
# KUBERNETES_VERSION (default: the newest), last, so that pytest's closing line and exit code
# are the whole suite's. Fails if any run failed. Extra arguments go to the whole suite's run.
#
#   hack/test-matrix.sh                                # what make test runs
#   KUBERNETES_VERSION=v1.34.4 hack/test-matrix.sh     # the whole suite on another version
#   KUBERNETES_COMPAT_VERSIONS= hack/test-matrix.sh    # no compatibility runs
set -uo pipefail
cd "$(dirname "$0")/.."
requested_kubernetes=${KUBERNETES_VERSION:-}
requested_compat=${KUBERNETES_COMPAT_VERSIONS-unset}
# shellcheck source=versions.env
source hack/versions.env
main=${requested_kubernetes:-$KUBERNETES_VERSION}
main=v${main#v}
[ "$requested_compat" = unset ] || KUBERNETES_COMPAT_VERSIONS=$requested_compat

failed=()
for version in ${KUBERNETES_COMPAT_VERSIONS//,/ }; do
  version=v${version#v}
  [ "$version" = "$main" ] && continue
  echo "[test-matrix] Kubernetes $version: the compatibility subset" >&2
  start=$(date +%s)
  KUBERNETES_VERSION=$version uv run pytest -q --compat -p no:cacheprovider || failed+=("$version")
  echo "[test-matrix] Kubernetes $version: $(( $(date +%s) - start ))s" >&2
done

echo "[test-matrix] Kubernetes $main: the whole suite" >&2
KUBERNETES_VERSION=$main uv run pytest -q "$@"
status=$?
if [ ${#failed[@]} -gt 0 ]; then
  echo "[test-matrix] the compatibility subset FAILED on ${failed[*]}" >&2
  [ "$status" -ne 0 ] || status=1
fi
exit "$status"
