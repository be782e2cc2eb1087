#!/usr/bin/env bash
# Build the binaries the local stack needs from Go modules, once, into a cache outside the
# repository keyed by version. A second run with the same versions is a no-op. Prints the bin
# directory on stdout.
#
#   hack/build-testbins.sh            # control plane: kube-apiserver, etcd (kubectl of the
#                                     # pinned version if the machine has none),
#                                     # and tiny (hack/tiny, the test image's only program)
#   hack/build-testbins.sh node       # the node: kubelet, kube-controller-manager,
#                                     # kube-scheduler, containerd (+ shim, ctr), crictl
#   hack/build-testbins.sh helm
#   hack/build-testbins.sh ecr        # the official AWS ECR kubelet credential provider
#   PSU_CACHE_DIR=/somewhere hack/build-testbins.sh
#   KUBERNETES_VERSION=v1.30.14 hack/build-testbins.sh node   # another Kubernetes version
#
# Each build holds a lock, so two checkouts sharing the cache never build the same thing at once.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
# KUBERNETES_VERSION from the environment wins over the pinned default (the version matrix).
requested_kubernetes=${KUBERNETES_VERSION:-}
# shellcheck source=versions.env
source "$here/versions.env"
pinned_kubernetes=$KUBERNETES_VERSION
KUBERNETES_VERSION=${requested_kubernetes:-$KUBERNETES_VERSION}
KUBERNETES_VERSION=v${KUBERNETES_VERSION#v}

cache=${PSU_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/pull-secret-updater}
bindir="$cache/bin"
mkdir -p "$bindir"
export GOFLAGS=${GOFLAGS:--buildvcs=false}
export CGO_ENABLED=0

log() { printf '[build-testbins] %s\n' "$*" >&2; }

# Serialise builds that share a work directory (a wrapper module, or the same output).
lock() {  # name
  mkdir -p "$cache/build"
  exec {lock_fd}>"$cache/build/.lock-$1"
  flock "$lock_fd"
}

# k8s.io/kubernetes replaces every k8s.io/<staging> module with ./staging/src/...; a module that
# depends on it must replace each one with the published v0.N.x release of the same patch level.
build_kubernetes() {
  local want=("$@")
  local missing=()
  for b in "${want[@]}"; do
    [ -x "$bindir/$b-$KUBERNETES_VERSION" ] || missing+=("$b")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  lock "kubernetes-$KUBERNETES_VERSION"
  # Another build may have finished what was missing while this one waited for the lock.
  missing=()
  for b in "${want[@]}"; do
    [ -x "$bindir/$b-$KUBERNETES_VERSION" ] || missing+=("$b")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  local staging=v0.${KUBERNETES_VERSION#v1.}
  local work="$cache/build/kubernetes-$KUBERNETES_VERSION"
  mkdir -p "$work"
  log "building ${missing[*]} $KUBERNETES_VERSION (staging $staging); the first time takes 10-20 minutes"
  (
    cd "$work"
    local modfile
    modfile=$(go mod download -json "k8s.io/kubernetes@$KUBERNETES_VERSION" | sed -n 's/.*"GoMod": "\(.*\)",/\1/p')
    {
      echo "module psu-testbins/kubernetes"
      echo
      grep -E '^go ' "$modfile"
      echo
      echo "require k8s.io/kubernetes $KUBERNETES_VERSION"
      echo
      echo "replace ("
      sed -n 's#^[[:space:]]*\(k8s.io/[a-z0-9-]*\) => ./staging/src/.*#\t\1 => \1 '"$staging"'#p' "$modfile"
      echo ")"
    } > go.mod
    printf 'package tools\n\nimport (\n' > tools.go
    for b in "${missing[@]}"; do printf '\t_ "k8s.io/kubernetes/cmd/%s"\n' "$b" >> tools.go; done
    printf ')\n' >> tools.go
    go mod tidy >&2
    for b in "${missing[@]}"; do
      go build -trimpath -ldflags "-s -w -X k8s.io/component-base/version.gitVersion=$KUBERNETES_VERSION -X k8s.io/client-go/pkg/version.gitVersion=$KUBERNETES_VERSION" \
        -o "$bindir/$b-$KUBERNETES_VERSION.tmp" "k8s.io/kubernetes/cmd/$b"
      mv "$bindir/$b-$KUBERNETES_VERSION.tmp" "$bindir/$b-$KUBERNETES_VERSION"
      log "built $b"
    done
  )
}

build_etcd() {
  [ -x "$bindir/etcd-$ETCD_VERSION" ] && return 0
  lock "etcd-$ETCD_VERSION"
  [ -x "$bindir/etcd-$ETCD_VERSION" ] && return 0
  local work="$cache/build/etcd-$ETCD_VERSION"
  mkdir -p "$work"
  log "building etcd $ETCD_VERSION"
  (
    cd "$work"
    # etcd's server module replaces its sibling modules with ../ paths, so go install pkg@v refuses
    # it; a wrapper module that requires it (and the siblings at the same version) builds fine.
    printf 'module psu-testbins/etcd\n\ngo 1.26.0\n\nrequire go.etcd.io/etcd/server/v3 %s\n' "$ETCD_VERSION" > go.mod
    printf 'package tools\n\nimport _ "go.etcd.io/etcd/server/v3"\n' > tools.go
    go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION" "go.etcd.io/etcd/api/v3@$ETCD_VERSION" \
      "go.etcd.io/etcd/client/pkg/v3@$ETCD_VERSION" "go.etcd.io/etcd/client/v3@$ETCD_VERSION" \
      "go.etcd.io/etcd/pkg/v3@$ETCD_VERSION" >&2
    go mod tidy >&2 || true
    go build -trimpath -ldflags "-s -w" -o "$bindir/etcd-$ETCD_VERSION.tmp" go.etcd.io/etcd/server/v3
    mv "$bindir/etcd-$ETCD_VERSION.tmp" "$bindir/etcd-$ETCD_VERSION"
    log "built etcd"
  )
}

build_helm() {
  [ -x "$bindir/helm-$HELM_VERSION" ] && return 0
  lock "helm-$HELM_VERSION"
  [ -x "$bindir/helm-$HELM_VERSION" ] && return 0
  log "building helm $HELM_VERSION"
  # helm's own Makefile stamps its version and the Kubernetes version that `helm template` and
  # `helm lint` assume (.Capabilities.KubeVersion) from its client-go; without these it reports
  # "v3.N" and assumes Kubernetes 1.20.
  local modfile client_go k8s_minor pkg=helm.sh/helm/v3
  modfile=$(go mod download -json "$pkg@$HELM_VERSION" | sed -n 's/.*"GoMod": "\(.*\)",/\1/p')
  client_go=$(sed -n 's#^[[:space:]]*k8s.io/client-go \(v[0-9.]*\).*#\1#p' "$modfile" | head -n1)
  k8s_minor=$(echo "$client_go" | cut -d. -f2)
  local ldflags="-s -w -X $pkg/internal/version.version=$HELM_VERSION"
  ldflags+=" -X $pkg/pkg/lint/rules.k8sVersionMajor=1 -X $pkg/pkg/lint/rules.k8sVersionMinor=$k8s_minor"
  ldflags+=" -X $pkg/pkg/chartutil.k8sVersionMajor=1 -X $pkg/pkg/chartutil.k8sVersionMinor=$k8s_minor"
  GOBIN="$cache/build/helm-$HELM_VERSION" go install -trimpath -ldflags "$ldflags" "$pkg/cmd/helm@$HELM_VERSION"
  mv "$cache/build/helm-$HELM_VERSION/helm" "$bindir/helm-$HELM_VERSION"
  log "built helm"
}

# containerd 2.x with its runc shim and ctr, into one directory per version: containerd finds
# its shim by name on PATH. Static (CGO_ENABLED=0), without the btrfs, devmapper and zfs
# snapshotters (they need cgo or host tools); overlayfs and native remain.
build_containerd() {
  local dir="$bindir/containerd-$CONTAINERD_VERSION"
  [ -x "$dir/containerd" ] && return 0
  lock "containerd-$CONTAINERD_VERSION"
  [ -x "$dir/containerd" ] && return 0
  log "building containerd $CONTAINERD_VERSION (containerd, containerd-shim-runc-v2, ctr)"
  local pkg=github.com/containerd/containerd/v2 gobin="$cache/build/containerd-$CONTAINERD_VERSION"
  rm -rf "$gobin" "$dir.tmp"
  GOBIN="$gobin" go install -trimpath -tags "no_btrfs no_devmapper no_zfs" \
    -ldflags "-s -w -X $pkg/version.Version=$CONTAINERD_VERSION -X $pkg/version.Revision=module" \
    "$pkg/cmd/containerd@$CONTAINERD_VERSION" "$pkg/cmd/containerd-shim-runc-v2@$CONTAINERD_VERSION" \
    "$pkg/cmd/ctr@$CONTAINERD_VERSION"
  mv "$gobin" "$dir.tmp"
  mv "$dir.tmp" "$dir"
  log "built containerd"
}

build_crictl() {
  [ -x "$bindir/crictl-$CRI_TOOLS_VERSION" ] && return 0
  lock "crictl-$CRI_TOOLS_VERSION"
  [ -x "$bindir/crictl-$CRI_TOOLS_VERSION" ] && return 0
  log "building crictl $CRI_TOOLS_VERSION"
  local pkg=sigs.k8s.io/cri-tools gobin="$cache/build/crictl-$CRI_TOOLS_VERSION"
  GOBIN="$gobin" go install -trimpath -ldflags "-s -w -X $pkg/pkg/version.Version=$CRI_TOOLS_VERSION" \
    "$pkg/cmd/crictl@$CRI_TOOLS_VERSION"
  mv "$gobin/crictl" "$bindir/crictl-$CRI_TOOLS_VERSION"
  log "built crictl"
}

# The official ECR kubelet credential provider (k8s.io/cloud-provider-aws), the reference our
# AWS stand-in is checked against. Its go.mod replaces github.com/google/cel-go, so go install
# pkg@v refuses it; a wrapper module that requires it and repeats its (non-local) replace
# directives resolves the same versions. The ldflags are those of its Makefile.
build_ecr_credential_provider() {
  local v=$ECR_CREDENTIAL_PROVIDER_VERSION
  local out="$bindir/ecr-credential-provider-$v"
  [ -x "$out" ] && return 0
  lock "ecr-credential-provider-$v"
  [ -x "$out" ] && return 0
  local work="$cache/build/ecr-credential-provider-$v"
  mkdir -p "$work"
  log "building ecr-credential-provider $v"
  (
    cd "$work"
    local modfile
    modfile=$(go mod download -json "k8s.io/cloud-provider-aws@$v" | sed -n 's/.*"GoMod": "\(.*\)",/\1/p')
    {
      echo "module psu-testbins/ecr-credential-provider"
      echo
      grep -E '^go ' "$modfile"
      echo
      echo "require k8s.io/cloud-provider-aws $v"
      echo
      # Single-line replaces of a module by another module version (not by a ./ path).
      grep -E '^replace [^ ]+( v[^ ]+)? => [^ .][^ ]* v[^ ]+$' "$modfile" || true
    } > go.mod
    printf 'package tools\n\nimport _ "k8s.io/cloud-provider-aws/cmd/ecr-credential-provider"\n' > tools.go
    go mod tidy >&2
    go build -trimpath \
      -ldflags "-s -w -X k8s.io/component-base/version.gitVersion=$v -X main.gitVersion=$v" \
      -o "$out.tmp" k8s.io/cloud-provider-aws/cmd/ecr-credential-provider
    mv "$out.tmp" "$out"
    log "built ecr-credential-provider"
  )
}

# hack/tiny: the one static program of the test image and the node's pause image, keyed by
# the hash of its source (devstack/binaries.py computes the same name).
build_tiny() {
  local key out
  key=$(cat "$here/tiny/go.mod" "$here/tiny/main.go" | sha256sum | cut -c1-12)
  out="$bindir/tiny-$key"
  [ -x "$out" ] && return 0
  log "building tiny ($key)"
  (cd "$here/tiny" && go build -trimpath -ldflags "-s -w" -o "$out.tmp" .)
  mv "$out.tmp" "$out"
}

# One kubectl, the pinned version's, serves every version of the matrix (or the machine's).
build_kubectl() {
  command -v kubectl >/dev/null 2>&1 && return 0
  [ -x "$bindir/kubectl-$pinned_kubernetes" ] && return 0
  (KUBERNETES_VERSION=$pinned_kubernetes; build_kubernetes kubectl)
}

what=${1:-all}
case "$what" in
  all) build_tiny; build_etcd; build_kubernetes kube-apiserver; build_kubectl ;;
  node) build_tiny; build_containerd; build_crictl
    build_kubernetes kubelet kube-controller-manager kube-scheduler ;;
  helm) build_helm ;;
  ecr) build_ecr_credential_provider ;;
  *) echo "usage: $0 [all|node|helm|ecr]" >&2; exit 2 ;;
esac

echo "$bindir"
