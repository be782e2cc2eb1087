#!/usr/bin/env bash
# Turn the extracted Debian packages in ROOT (mmdebstrap --variant=extract, apt cache kept)
# into a distroless-style Python runtime, the way gcr.io/distroless images are assembled:
#   - only WANTED (comma-separated) and what they depend on are kept, not passing through the
#     tools that only serve to install packages (dpkg, tar, perl-base, debconf, mawk): the
#     other packages' files are removed (keep_packages.py), and so is every executable but
#     python3.11: no shell, no package manager;
#   - each remaining package is recorded in /var/lib/dpkg/status.d/<name> (its control file,
#     plus md5sums), where image scanners look for it;
#   - the CA bundle that ca-certificates' maintainer script would have generated, the users
#     root, nonroot (65532) and nobody, /tmp, /home/nonroot;
#   - the standard library is byte-compiled (unchecked-hash), as a read-only root filesystem
#     cannot take the .pyc files Python would otherwise write at every start.
# Prints "<package> <version>" for every package kept.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=${1:?root directory}
wanted=${2:?wanted packages, comma-separated}
archives="$root/var/cache/apt/archives"
python=python3.11
kept=" $(python3 "$here/keep_packages.py" "$archives" --want "$wanted" \
  --drop dpkg,tar,perl-base,debconf,mawk | tr '\n' ' ') "

status="$root/var/lib/dpkg/status.d"
mkdir -p "$status"
ctrl=$(mktemp -d)
trap 'rm -rf "$ctrl"' EXIT
for deb in "$archives"/*.deb; do
  pkg=$(dpkg-deb --field "$deb" Package)
  version=$(dpkg-deb --field "$deb" Version)
  if [[ $kept != *" $pkg "* ]]; then
    # Its files, then its directories that nothing else uses (deepest first).
    dpkg-deb --fsys-tarfile "$deb" | tar --list | sort -r | while IFS= read -r path; do
      path="$root/${path#./}"
      if [ -d "$path" ] && [ ! -L "$path" ]; then
        rmdir --ignore-fail-on-non-empty "$path"
      else
        rm -f "$path"
      fi
    done
    continue
  fi
  rm -rf "${ctrl:?}"/*
  dpkg-deb --control "$deb" "$ctrl"
  cp "$ctrl/control" "$status/$pkg"
  [ -f "$ctrl/md5sums" ] && cp "$ctrl/md5sums" "$status/$pkg.md5sums"
  echo "$pkg $version"
done

for dir in bin sbin usr/bin usr/sbin usr/local/bin usr/local/sbin; do
  [ -d "$root/$dir" ] && find "$root/$dir" -mindepth 1 ! -type d ! -name "$python" -delete
done
ln -sfn "$python" "$root/usr/bin/python3"

# What `update-ca-certificates` would write; OpenSSL's default file points at it too.
mkdir -p "$root/etc/ssl/certs" "$root/usr/lib/ssl"
find "$root/usr/share/ca-certificates" -name '*.crt' | sort | xargs cat \
  >"$root/etc/ssl/certs/ca-certificates.crt"
ln -sfn /etc/ssl/certs "$root/usr/lib/ssl/certs"
ln -sfn /etc/ssl/certs/ca-certificates.crt "$root/usr/lib/ssl/cert.pem"

cat >"$root/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin
nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin
EOF
cat >"$root/etc/group" <<'EOF'
root:x:0:
nobody:x:65534:
nonroot:x:65532:
EOF
printf 'passwd: files\ngroup: files\nshadow: files\nhosts: files dns\n' >"$root/etc/nsswitch.conf"
install -d -m 0700 "$root/root"
install -d -m 0700 -o 65532 -g 65532 "$root/home/nonroot"
install -d -m 1777 "$root/tmp" "$root/var/tmp"

chroot "$root" "/usr/bin/$python" -m compileall -q -j 0 --invalidation-mode unchecked-hash \
  "/usr/lib/$python" >/dev/null

rm -rf "$root"/etc/apt "$root"/var/lib/apt "$root"/var/cache/apt "$root"/var/cache/debconf \
  "$root"/var/log/* "$root"/usr/share/man "$root"/usr/share/info "$root"/usr/share/lintian
find "$root/var/lib/dpkg" -mindepth 1 -maxdepth 1 ! -name status.d -exec rm -rf {} +
# Keep each package's copyright file, drop the rest of its documentation.
find "$root/usr/share/doc" -mindepth 1 ! -type d ! -name copyright -delete
find "$root/usr/share/doc" -mindepth 1 -type d -empty -delete
