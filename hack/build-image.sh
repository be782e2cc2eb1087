#!/usr/bin/env bash
# Build the controller's image from the Dockerfile without a Docker engine and without pulling
# base images: buildah (chroot isolation, vfs storage) on bases made from Debian packages with
# mmdebstrap (hack/image/build-base.sh). Needs root and the Debian archive and PyPI.
#
#   hack/build-image.sh                      # build, or reuse the cached build; prints oci:DIR:TAG
#   hack/build-image.sh --push 127.0.0.1:5000/pull-secret-updater:dev \
#       --creds admin:PASSWORD --ca-file /path/to/ca.crt
#
# Options:
#   --push REF         also copy the image to REF (a registry reference, docker:// optional)
#   --creds USER:PASS  credentials for --push
#   --ca-file FILE     CA certificate the registry (and its token realm) is signed with
#   --rebuild          rebuild the image even when a cached build matches
#   --rebuild-bases    rebuild the Debian bases too
#
# Environment:
#   PSU_CACHE_DIR               cache root (default ~/.cache/pull-secret-updater)
#   PSU_DEBIAN_MIRROR           Debian mirror for the bases (default: this machine's apt sources)
#   PSU_IMAGE_BUILD_CA_BUNDLE   CA bundle the build stage trusts besides Debian's (default: this
#                               machine's /etc/ssl/certs/ca-certificates.crt)
#
# Cache, under ${PSU_CACHE_DIR:-~/.cache/pull-secret-updater}/image:
#   base/<kind>-<key>.tar   the builder and runtime root filesystems, keyed by the base scripts,
#                           the apt sources and the suite (and the build host's CA bundle for
#                           the builder); --rebuild-bases picks up Debian security updates
#   app/<key>/              the built image as an OCI layout (tag "dev"), keyed by the
#                           Dockerfile, .dockerignore, pyproject.toml, uv.lock, README.md, src/,
#                           these scripts and the bases' keys
# The build itself runs in a throwaway container storage that is removed afterwards.
#
# The bases stand in for the Dockerfile's defaults (docker.io/library/debian:12-slim and
# gcr.io/distroless/python3-debian12:nonroot), which a Docker engine pulls as usual.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
here="$repo/hack/image"
cache=${PSU_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/pull-secret-updater}/image
suite=bookworm  # Debian 12: Python 3.11 at /usr/bin/python3.11, as the Dockerfile expects
tag=dev

push="" creds="" ca_file="" rebuild=0 rebuild_bases=0
while [ $# -gt 0 ]; do
  case "$1" in
    --push) push=${2:?--push needs a reference}; shift 2 ;;
    --creds) creds=${2:?--creds needs USER:PASS}; shift 2 ;;
    --ca-file) ca_file=${2:?--ca-file needs a file}; shift 2 ;;
    --rebuild) rebuild=1; shift ;;
    --rebuild-bases) rebuild_bases=1; rebuild=1; shift ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown option: $1 (see --help)" >&2; exit 2 ;;
  esac
done

log() { printf '[build-image] %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }
now() { date +%s; }
sha() { sha256sum | cut -c1-16; }

[ "$(id -u)" -eq 0 ] || die "needs root (buildah chroot isolation, mmdebstrap root mode)"
for tool in buildah mmdebstrap skopeo python3; do
  command -v "$tool" >/dev/null || die "$tool is missing: run hack/setup.sh"
done

mkdir -p "$cache/base" "$cache/app" "$cache/tmp"
exec 9>"$cache/.lock"
flock 9
# What an interrupted build left (only one build runs at a time: the lock).
rm -rf --one-file-system "$cache"/tmp/storage.* "$cache"/base/.base-* "$cache"/app/*.tmp || true

# -- the Debian bases --------------------------------------------------------------------------
sources="$cache/tmp/sources.$$"
trap 'rm -f "$sources"' EXIT
python3 "$here/debian_sources.py" "$suite" >"$sources"
build_ca=${PSU_IMAGE_BUILD_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}

base_key() {  # kind
  {
    echo "$1 $suite"
    cat "$sources"
    cat "$here/build-base.sh"
    if [ "$1" = builder ]; then
      cat "$here/builder-trust.sh"
      cat "$build_ca" 2>/dev/null || true
    else
      cat "$here/finish-runtime.sh" "$here/keep_packages.py"
    fi
  } | sha
}

base_tar() {  # kind -> path of the cached tarball, built when missing
  local kind=$1 key tarball started
  key=$(base_key "$kind")
  tarball="$cache/base/$kind-$key.tar"
  if [ ! -f "$tarball" ] || [ "$rebuild_bases" = 1 ]; then
    started=$(now)
    log "building the $kind base from Debian packages ($suite)"
    bash "$here/build-base.sh" "$kind" "$sources" "$tarball"
    log "$kind base built in $(($(now) - started))s"
    find "$cache/base" -maxdepth 1 -name "$kind-*.tar*" ! -name "$kind-$key.tar*" -delete
  fi
  echo "$tarball"
}

builder_tar=$(base_tar builder)
runtime_tar=$(base_tar runtime)

# -- the image ---------------------------------------------------------------------------------
# The release, where pyproject.toml reads it from (hatch's dynamic version).
version=$(python3 -c 'import re, sys; print(re.search(r"^__version__ = \"([^\"]+)\"$", open(sys.argv[1]).read(), re.M).group(1))' "$repo/src/pull_secret_updater/__init__.py")
app_key=$(
  cd "$repo"
  {
    echo "$version $(basename "$builder_tar") $(basename "$runtime_tar")"
    find Dockerfile .dockerignore pyproject.toml uv.lock README.md hack/build-image.sh src \
      -type f ! -name '*.pyc' ! -path '*/__pycache__/*' -print0 | sort -z | xargs -0 sha256sum
  } | sha
)
layout="$cache/app/$app_key"

if [ -f "$layout/index.json" ] && [ "$rebuild" = 0 ]; then
  log "cached image $app_key (version $version)"
else
  started=$(now)
  storage=$(mktemp -d "$cache/tmp/storage.XXXXXX")
  trap 'buildah --root "$storage/root" --runroot "$storage/run" --storage-driver vfs rm --all >/dev/null 2>&1 || true; rm -rf --one-file-system "$storage" "$sources"' EXIT
  b() { buildah --root "$storage/root" --runroot "$storage/run" --storage-driver vfs "$@"; }
  import_base() {  # tarball name [buildah config options]
    local ctr
    ctr=$(b from scratch)
    b add --quiet "$ctr" "$1" / >/dev/null
    b config --os linux --arch "$(dpkg --print-architecture)" \
      --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "${@:3}" "$ctr"
    b commit --quiet --rm "$ctr" "$2" >/dev/null
  }
  builder_image=localhost/psu-base/builder:$(basename "$builder_tar" .tar | cut -d- -f2)
  runtime_image=localhost/psu-base/runtime:$(basename "$runtime_tar" .tar | cut -d- -f2)
  import_base "$builder_tar" "$builder_image"
  import_base "$runtime_tar" "$runtime_image" --user 65532:65532 --workingdir /home/nonroot
  log "building the image (bases $builder_image, $runtime_image)"
  b bud --quiet --isolation chroot --pull-never --layers=false --format oci \
    --build-arg "BUILDER_BASE=$builder_image" --build-arg "RUNTIME_BASE=$runtime_image" \
    --build-arg "VERSION=$version" --tag "localhost/pull-secret-updater:$tag" \
    --file "$repo/Dockerfile" "$repo" >/dev/null
  rm -rf "$layout.tmp"
  b push --quiet "localhost/pull-secret-updater:$tag" "oci:$layout.tmp:$tag"
  rm -rf "$layout"
  mv "$layout.tmp" "$layout"
  log "image $app_key built in $(($(now) - started))s"
  # Keep the three most recent builds (other checkouts may share the cache).
  find "$cache/app" -mindepth 1 -maxdepth 1 -type d -printf '%T@ %p\n' | sort -rn | tail -n +4 \
    | cut -d' ' -f2- | xargs -r rm -rf
fi
touch "$layout"

if [ -n "$push" ]; then
  started=$(now)
  args=(copy --quiet)
  [ -n "$creds" ] && args+=(--dest-creds "$creds")
  certs=""
  if [ -n "$ca_file" ]; then
    certs=$(mktemp -d)
    cp "$ca_file" "$certs/ca.crt"
    args+=(--dest-cert-dir "$certs")
  fi
  skopeo "${args[@]}" "oci:$layout:$tag" "docker://${push#docker://}"
  [ -n "$certs" ] && rm -rf "$certs"
  log "pushed to ${push#docker://} in $(($(now) - started))s"
fi
echo "oci:$layout:$tag"
