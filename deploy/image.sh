#!/usr/bin/env bash
# Builds a container image of allocd without a registry: a minimal root filesystem holding the
# binary, the bundled plugins and the shared libraries they load, imported with `docker import`.
#   deploy/image.sh [BUILD_DIR] [TAG]     # defaults: target/release, allocd:<crate version>
# Build first: cargo build --release --workspace
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-target/release}
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
tag=${2:-allocd:$version}
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT

mkdir -p "$root/usr/lib/allocd" "$root/etc/allocd" "$root/var/lib/allocd" "$root/tmp"
cp "$build/allocd" "$root/usr/lib/allocd/allocd"
for plugin in host_metrics local_disk cgroup docker overlay; do
    cp "$build/liballocd_plugin_$plugin.so" "$root/usr/lib/allocd/"
done
# Every shared library the binary and the plugins need, at the path the loader looks for it.
for file in "$root"/usr/lib/allocd/*; do
    ldd "$file" | awk '/=> \// { print $3 } /^[[:space:]]*\// { print $1 }'
done | sort -u | while read -r lib; do
    mkdir -p "$root$(dirname "$lib")"
    cp -L "$lib" "$root$lib"
done
cat > "$root/etc/allocd/allocd.hcl" <<'HCL'
# Replaced by the deployment (a Nomad template or a Kubernetes config map).
data_dir  = "/var/lib/allocd"
bind_addr = "0.0.0.0"
HCL

tar -C "$root" -c . | docker import \
    --change 'ENTRYPOINT ["/usr/lib/allocd/allocd", "agent", "-config", "/etc/allocd/allocd.hcl"]' \
    --change 'EXPOSE 4646' \
    - "$tag"
echo "built $tag"
