#!/usr/bin/env bash
# Build one base image root filesystem from Debian packages with mmdebstrap, as a tarball that
# `buildah add` turns into a one-layer image. hack/build-image.sh calls it (and caches the
# result); it needs root (mmdebstrap's root mode) and the Debian archive, nothing else.
#
#   hack/image/build-base.sh builder SOURCES_FILE OUT.tar
#       Debian 12 minbase + python3.11-venv + ca-certificates: the stage that builds the wheel
#       and the venv (what docker.io/library/debian:12-slim plus python3.11-venv is for users
#       with a Docker engine). It also trusts this machine's CA bundle, so that pip and uv
#       work behind a TLS-intercepting proxy; nothing of this stage reaches the final image.
#   hack/image/build-base.sh runtime SOURCES_FILE OUT.tar
#       distroless-style Debian 12 Python 3.11 (what gcr.io/distroless/python3-debian12 is for
#       users with a Docker engine): the packages' files only (no maintainer scripts), no shell,
#       no package manager, no other executable than python3.11; see finish-runtime.sh.
#
# SOURCES_FILE holds one-line apt sources (hack/image/debian_sources.py). Next to OUT.tar it
# writes OUT.tar.packages: the Debian packages and versions in it.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
kind=${1:?builder or runtime}
sources_file=${2:?sources file}
out=${3:?output tarball}
suite=bookworm

log() { printf '[build-base] %s\n' "$*" >&2; }

[ "$(id -u)" -eq 0 ] || { log "needs root (mmdebstrap root mode)"; exit 1; }
command -v mmdebstrap >/dev/null || { log "mmdebstrap is missing: apt-get install mmdebstrap"; exit 1; }

work=$(mktemp -d "$(dirname "$out")/.base-$kind.XXXXXX")
# --one-file-system: should mmdebstrap be killed, its mounts (proc, sys, dev) are left alone.
trap 'rm -rf --one-file-system "$work"' EXIT
root="$work/root"
mirrors=()
while IFS= read -r line; do
  [ -n "$line" ] && mirrors+=("$line")
done <"$sources_file"

case "$kind" in
  builder)
    mmdebstrap --quiet --variant=minbase \
      --include=python3.11-venv,ca-certificates \
      --customize-hook="$here/builder-trust.sh \"\$1\"" \
      --format=directory "$suite" "$root" "${mirrors[@]}"
    # shellcheck disable=SC2016  # dpkg-query's format, not the shell's
    chroot "$root" dpkg-query -W -f '${Package} ${Version}\n' >"$work/packages"
    rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin
    ;;
  runtime)
    # extract: unpack the packages and their dependencies, run no maintainer script. The debs
    # stay in the apt cache for finish-runtime.sh (package records, files to drop).
    packages=base-files,netbase,ca-certificates,python3.11-minimal,libpython3.11-stdlib
    mmdebstrap --quiet --variant=extract --include="$packages" --skip=cleanup/apt/cache \
      --format=directory "$suite" "$root" "${mirrors[@]}"
    "$here/finish-runtime.sh" "$root" "$packages" >"$work/packages"
    ;;
  *)
    log "unknown base kind: $kind (builder or runtime)"
    exit 2
    ;;
esac

# Device nodes and mount points' contents belong to the container runtime, not to a layer.
rm -rf --one-file-system "${root:?}"/dev/* "${root:?}"/proc/* "${root:?}"/sys/* "${root:?}"/run/*
mkdir -p "$root"/dev "$root"/proc "$root"/sys "$root"/run
tar --create --file "$work/rootfs.tar" --directory "$root" --numeric-owner --sort=name .
sort "$work/packages" >"$out.packages"
mv "$work/rootfs.tar" "$out"
log "$kind base: $(wc -l <"$out.packages") packages, $(du -h "$out" | cut -f1) uncompressed"
