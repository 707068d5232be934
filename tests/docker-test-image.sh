#!/usr/bin/env bash
# Builds allocd-test-busybox:latest without a registry: a rootfs holding Debian's static
# busybox, imported with `docker import`. Reuses the image when it exists. Exits non-zero
# (with the reason on stderr) when docker or a static busybox is unavailable.
set -euo pipefail
image=allocd-test-busybox:latest
docker version --format '{{.Server.Version}}' >/dev/null
docker image inspect "$image" >/dev/null 2>&1 && exit 0
busybox=$(command -v busybox || true)
[ -n "$busybox" ] || { echo "no busybox (apt-get install busybox-static)" >&2; exit 1; }
rootfs=$(mktemp -d)
trap 'rm -rf "$rootfs"' EXIT
mkdir -p "$rootfs/bin"
cp "$busybox" "$rootfs/bin/busybox"
for tool in sh sleep cat; do ln -s busybox "$rootfs/bin/$tool"; done
tar -C "$rootfs" -c . | docker import - "$image" >/dev/null
