#!/usr/bin/env bash
# Build the kubelet credential-provider plugin as one self-contained directory: a PyInstaller
# one-dir bundle of the plugin and the locked runtime dependencies it imports, with its own
# Python, for nodes that have none: DIR/pull-secret-updater-credential-provider (the executable)
# and DIR/_internal/ (its Python, libraries and archive of bytecode). Built once per input into a
# cache outside the repository (keyed by uv.lock, the plugin's sources, the Python and this
# script); a second run is a no-op. Prints the executable's path on stdout.
#
# One-dir, not one-file: a one-file bundle unpacks its whole Python into a temporary directory
# at every start, and the kubelet starts the plugin at every pull it has no cached credential
# for; that unpacking was most of a call. The executable finds _internal/ next to its own real
# path, so the kubelet's bin dir may hold links to it, one per provider name (see the README).
#
#   hack/build-credential-provider.sh                     # build if missing, print the path
#   hack/build-credential-provider.sh --out DIR           # and copy the directory to DIR/
#   PSU_CACHE_DIR=/somewhere hack/build-credential-provider.sh
#
# Reproducible: the build environment is made from uv.lock alone (runtime dependencies and the
# bundle group, no dev tools, which PyInstaller would otherwise find and pack), bytecode and
# archive timestamps come from SOURCE_DATE_EPOCH, and hash seeds are fixed. The bundle links the
# build machine's glibc: build it on the oldest distribution the nodes run.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
name=pull-secret-updater-credential-provider
out=""
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out=$2; shift 2 ;;
    --out=*) out=${1#--out=}; shift ;;
    *) echo "usage: $0 [--out DIR]" >&2; exit 2 ;;
  esac
done

log() { printf '[build-credential-provider] %s\n' "$*" >&2; }

# uv as hack/setup.sh installs it (pip --user) when it is not on the PATH.
uv=$(command -v uv || echo "$HOME/.local/bin/uv")
[ -x "$uv" ] || { log "uv is needed (hack/setup.sh installs it)"; exit 1; }

cache=${PSU_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/pull-secret-updater}
python=${PSU_BUNDLE_PYTHON:-$(cd "$root" && "$uv" python find)}
# Everything that decides the bundle's content goes into the key.
key=$(
  {
    cat "$root/uv.lock" "$root/pyproject.toml" "$0"
    "$python" -c 'import sys, sysconfig; print(sys.version, sysconfig.get_platform())'
    # The packages the plugin loads (import-linter and tests/credentialprovider hold it to these).
    (cd "$root/src/pull_secret_updater" && find __init__.py version.py credentialprovider tokens core providers \
        -name '*.py' -print0 | sort -z | xargs -0 sha256sum)
  } | sha256sum | cut -c1-16
)
dest="$cache/credential-provider/$key"
bundle="$dest/$name/$name"

# NB: the build directory's path ends up in the bundle (the console scripts' shebangs, hashed in
# the packed dist-info RECORD files), so it is the same wherever the cache is; a lock keeps two
# builds of the same key apart.
work=/tmp/psu-credential-provider-build/$key
mkdir -p "$(dirname "$work")"
exec 9>"$work.lock"
flock 9
if [ ! -x "$bundle" ]; then
  rm -rf "$work"
  mkdir -p "$work" "$dest"
  log "building $name (key $key) with $python"
  # The environment: the locked runtime dependencies and PyInstaller, then the project itself.
  (cd "$root" && "$uv" export --frozen --no-dev --group bundle --no-emit-project --no-hashes \
      --no-header --format requirements-txt) > "$work/requirements.txt"
  "$uv" venv --quiet --python "$python" "$work/venv" >&2
  VIRTUAL_ENV="$work/venv" "$uv" pip install --quiet --no-deps -r "$work/requirements.txt" >&2
  VIRTUAL_ENV="$work/venv" "$uv" pip install --quiet --no-deps "$root" >&2
  export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(cd "$root" && git log -1 --format=%ct 2>/dev/null || echo 0)}
  export PYTHONHASHSEED=0
  # NB: lightkube and yaml are reachable only through the TokenRequest source, which the plugin
  # never uses (import-linter holds the plugin to that); excluding them keeps the bundle small.
  # HTTP/2, WebSockets and SOCKS are never asked for: httpcore2 loads h2 when it is there
  # (a quarter of its import time) and does without it when it is not. multiprocessing is
  # never used (asyncio's executor is threads), and with it PyInstaller adds a start-up hook.
  # --debug noarchive: the bytecode as files in _internal/ rather than in one compressed
  # archive, which every start opened and inflated module by module (about 20 ms of a call's
  # CPU here). The plugin loads the one provider it serves by name (providers.kubelet), which
  # PyInstaller cannot see: each provider's description and exchange are named here.
  hidden=()
  for provider in chainguard ecr gar acr; do
    hidden+=(--hidden-import "pull_secret_updater.providers.$provider.kubelet"
             --hidden-import "pull_secret_updater.providers.$provider.exchange")
  done
  (
    cd "$work"
    "$work/venv/bin/pyinstaller" \
      --onedir --debug noarchive --strip --noconfirm --clean --log-level WARN \
      --name "$name" \
      --distpath "$work/dist" --workpath "$work/build" --specpath "$work" \
      --copy-metadata pull-secret-updater \
      --exclude-module lightkube --exclude-module yaml --exclude-module pydantic \
      --exclude-module pydantic_settings --exclude-module structlog \
      --exclude-module prometheus_client --exclude-module tkinter \
      --exclude-module h2 --exclude-module hpack --exclude-module hyperframe \
      --exclude-module wsproto --exclude-module socksio --exclude-module multiprocessing \
      "${hidden[@]}" \
      "$root/src/pull_secret_updater/credentialprovider/__main__.py" >&2
  )
  # A smoke test before the cache keeps it: --help runs the bundle's own Python, and each
  # provider's description loads (a usage error names the endpoint it does not have).
  "$work/dist/$name/$name" --help > /dev/null
  for provider in chainguard ecr gar acr; do
    said=$("$work/dist/$name/$name" --provider=$provider --endpoint=none=https://x 2>&1 \
      < /dev/null || true)
    case "$said" in
      *"has no endpoint 'none'"*) ;;
      *) log "the bundle cannot load the provider $provider: $said"; exit 1 ;;
    esac
  done
  rm -rf "$dest/$name" "$dest/$name.tmp"
  mv "$work/dist/$name" "$dest/$name.tmp"
  mv "$dest/$name.tmp" "$dest/$name"
  rm -rf "$work"
  log "built $bundle ($(du -sh "$dest/$name" | cut -f1) with _internal/)"
fi

if [ -n "$out" ]; then
  mkdir -p "$out"
  rm -rf "${out:?}/$name"
  cp -a "$dest/$name" "$out/$name"
  echo "$out/$name/$name"
else
  echo "$bundle"
fi
