#!/usr/bin/env bash
# Build the kubelet credential-provider plugin as one self-contained directory: a PyInstaller
# one-dir bundle of the plugin and the locked runtime dependencies it imports, with its own
# Python, for nodes that have none: DIR/pull-secret-updater-credential-provider (the executable)
# and DIR/_internal/ (its Python, libraries and bytecode). Built once per input into a cache
# outside the repository (keyed by uv.lock, the plugin's sources, the Python, the spec and this
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
# What goes in is in hack/credential-provider.spec; the bundle's Python is the distribution's
# own where it has one of the project's minor version (see below).
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
# The bundle's Python: PSU_BUNDLE_PYTHON, else the distribution's own of the project's minor
# version when it has a shared libpython (as PyInstaller needs), else the project's. NB: the
# distribution's is the one to prefer: it is built for speed (Debian's runs a call's imports
# 5-8% faster here than a plain source build of a newer 3.11), it gets the distribution's
# security fixes, and it is what a node of that distribution would run.
project_python=$(cd "$root" && "$uv" python find)
minor=$("$project_python" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
python=${PSU_BUNDLE_PYTHON:-}
if [ -z "$python" ] && [ -x "/usr/bin/python$minor" ] &&
    [ "$("/usr/bin/python$minor" -c 'import sysconfig; print(sysconfig.get_config_var("Py_ENABLE_SHARED"))' 2>/dev/null)" = 1 ]; then
  python=/usr/bin/python$minor
fi
python=${python:-$project_python}
# Everything that decides the bundle's content goes into the key.
key=$(
  {
    cat "$root/uv.lock" "$root/pyproject.toml" "$0" "$here/credential-provider.spec"
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
  # httpx2 looks its own version up with importlib.metadata when it is imported, which costs
  # the plugin importlib.metadata, zipfile and their imports (about 4 ms) at every start: in
  # this build environment, and so in the bundle, the version is written into the module.
  version_py=$("$work/venv/bin/python" -c 'import importlib.util as u; print(u.find_spec("httpx2.__version__").origin)')
  httpx2_version=$("$work/venv/bin/python" -c 'import importlib.metadata as m; print(m.version("httpx2"))')
  if grep -qx '__version__ = version("httpx2")' "$version_py"; then
    sed -i -e '/^from importlib.metadata import version$/d' \
      -e "s/^__version__ = version(\"httpx2\")\$/__version__ = \"$httpx2_version\"/" "$version_py"
  else
    log "httpx2's __version__.py changed: its version look-up is left as it is"
  fi
  export PSU_ROOT=$root PSU_BUNDLE_NAME=$name
  (
    cd "$work"
    "$work/venv/bin/pyinstaller" --noconfirm --clean --log-level WARN \
      --distpath "$work/dist" --workpath "$work/build" "$here/credential-provider.spec" >&2
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
