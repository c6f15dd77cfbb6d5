#!/usr/bin/env bash
# Builds the Debian package of diemcau: the binary, the systemd unit, the settings file
# (a conffile: local changes survive upgrades) and the documents.
#
#   packaging/build-deb.sh                      # builds the release binary, then the package
#   packaging/build-deb.sh --binary PATH --out DIR [--fast]
#
# --fast compresses little (quicker to build, larger file: for tests).
# Prints the path of the .deb. Needs dpkg-deb (Debian's dpkg).
set -euo pipefail

binary=""
out=""
compression=()
while [ $# -gt 0 ]; do
  case "$1" in
    --binary) binary="$(realpath "$2")"; shift 2 ;;
    --out) mkdir -p "$2"; out="$(realpath "$2")"; shift 2 ;;
    --fast) compression=(-Zgzip -z1); shift ;;
    *) echo "build-deb.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
cd "$(dirname "$0")/.."
out="${out:-target/debian}"
if [ -z "$binary" ]; then
  cargo build --release --locked --bin diemcau >&2
  binary="target/release/diemcau"
fi
[ -x "$binary" ] || { echo "build-deb.sh: no executable at $binary" >&2; exit 1; }

version="$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)"
arch="$(dpkg --print-architecture)"
root="$(mktemp -d)"
chmod 0755 "$root"
trap 'rm -rf "$root"' EXIT

install -D -m 0755 "$binary" "$root/usr/bin/diemcau"
install -D -m 0644 packaging/diemcau.service "$root/lib/systemd/system/diemcau.service"
install -D -m 0640 packaging/diemcau.env "$root/etc/diemcau/diemcau.env"
for doc in README.md docs/operations.md docs/api.md docs/protocol.md; do
  install -D -m 0644 "$doc" "$root/usr/share/doc/diemcau/$(basename "$doc")"
done
printf 'diemcau\nLicense: Apache-2.0\n' > "$root/usr/share/doc/diemcau/copyright"

mkdir -p "$root/DEBIAN"
install -m 0755 packaging/deb/postinst packaging/deb/prerm packaging/deb/postrm "$root/DEBIAN/"
echo "/etc/diemcau/diemcau.env" > "$root/DEBIAN/conffiles"
size="$(du -sk --exclude=DEBIAN "$root" | cut -f1)"
cat > "$root/DEBIAN/control" <<CONTROL
Package: diemcau
Version: $version
Architecture: $arch
Maintainer: diemcau maintainers <diemcau@localhost>
Installed-Size: $size
Depends: adduser, libc6
Section: net
Priority: optional
Description: video conference hub for province-to-commune online meetings
 One hub runs a provincial online meeting from the studio to every commune hall:
 selective forwarding of the studio's media with simulcast, the chair's console,
 roll calls and head counts, and an attendance log with reports for staff.
 Runs as the systemd service diemcau, its data in /var/lib/diemcau.
CONTROL

mkdir -p "$out"
deb="$out/diemcau_${version}_${arch}.deb"
dpkg-deb --root-owner-group "${compression[@]}" --build "$root" "$deb" >&2
echo "$deb"
