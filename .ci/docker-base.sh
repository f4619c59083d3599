#!/usr/bin/env bash
# A local stand-in for the registry's python:3.11-slim-bookworm, for machines that can reach Debian's
# mirror and PyPI but not a container registry (like this project's CI machine). The Dockerfile then
# builds unchanged. Debian bookworm's own Python (3.11.2) in a venv whose python and pip come first on
# PATH (the official image has them in /usr/local/bin), plus this machine's extra CA certificates and
# pip's `cert` setting, so pip inside the build reaches PyPI the way it does on this host (through its
# TLS-inspecting proxy). Does nothing when the image exists locally or can be pulled.
# Usage: .ci/docker-base.sh [--force]   (needs root, debootstrap and a running Docker engine)
set -euo pipefail

tag=python:3.11-slim-bookworm
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}

if [ "${1:-}" != --force ]; then
  if docker image inspect "$tag" >/dev/null 2>&1; then
    echo "docker-base: $tag is present"
    exit 0
  fi
  if docker pull -q "$tag" >/dev/null 2>&1; then
    echo "docker-base: pulled $tag from the registry"
    exit 0
  fi
fi
echo "docker-base: building a stand-in for $tag with debootstrap (a few minutes)"

root=$(mktemp -d "${TMPDIR:-/var/tmp}/bookworm-rootfs.XXXXXX")
trap 'rm -rf "$root"' EXIT
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm "$root" "$mirror" \
  >"$root.log" 2>&1 || { tail -20 "$root.log" >&2; rm -f "$root.log"; exit 1; }
rm -f "$root.log"

# The host's locally added CA certificates (a TLS-inspecting proxy's among them) into the image's trust store.
if [ -d /usr/local/share/ca-certificates ]; then
  cp -a /usr/local/share/ca-certificates/. "$root/usr/local/share/ca-certificates/"
fi
in_root() { env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 chroot "$root" "$@"; }  # none of this host's env
in_root update-ca-certificates >/dev/null 2>&1 || { echo "docker-base: update-ca-certificates failed" >&2; exit 1; }
# pip's vendored certifi does not read the system store (pip < 24.2): point it there, as this host's pip.conf does.
printf '[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n' >"$root/etc/pip.conf"

in_root /usr/bin/python3 -m venv /opt/venv
# The official image's pip (24.0); proves pip reaches PyPI from inside the new root.
in_root /opt/venv/bin/pip install -q --disable-pip-version-check --no-cache-dir pip==24.0

rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb \
  "$root"/root/.cache "$root"/etc/resolv.conf "$root"/etc/hostname
tar -C "$root" --numeric-owner -cf - . | docker import \
  --change 'ENV PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LANG=C.UTF-8' \
  --change 'ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt' \
  --change 'ENV REQUESTS_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt' \
  --change 'CMD ["python3"]' \
  - "$tag" >/dev/null
echo "docker-base: built $tag ($(docker image inspect -f '{{.Size}}' "$tag" | awk '{printf "%.0f MB", $1/1e6}'))"
