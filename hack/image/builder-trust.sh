#!/usr/bin/env bash
# mmdebstrap customize hook for the builder base: trust this machine's CA bundle as well as
# Debian's, so that pip and uv reach PyPI through a TLS-intercepting proxy. Only the builder
# stage sees it; the runtime image carries Debian's ca-certificates alone.
#   PSU_IMAGE_BUILD_CA_BUNDLE   the PEM bundle to add (default /etc/ssl/certs/ca-certificates.crt)
set -euo pipefail
root=${1:?chroot directory}
bundle=${PSU_IMAGE_BUILD_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
[ -r "$bundle" ] || exit 0
dest="$root/usr/local/share/ca-certificates/build-host"
mkdir -p "$dest"
# One certificate per file, as update-ca-certificates wants them.
awk -v dir="$dest" '
  /-----BEGIN CERTIFICATE-----/ { n++; file = sprintf("%s/host-%03d.crt", dir, n) }
  file { print > file }
  /-----END CERTIFICATE-----/ { close(file); file = "" }
' "$bundle"
chroot "$root" update-ca-certificates >/dev/null 2>&1
