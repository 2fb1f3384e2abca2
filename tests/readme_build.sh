#!/usr/bin/env bash
# The README's first command, checked end to end: build ironstar's own image for linux/amd64 and
# linux/arm64 with `--cargo` (no Nix), then take each platform's binary out of the layout with
# skopeo and umoci (clients independent of ironstar), check it is static and for the right
# machine, and run `ironstar --version` from it: natively on amd64, under qemu on arm64.
# A second build of the same commit must give the same index digest.
#
# Needs: rustup targets x86_64-unknown-linux-musl and aarch64-unknown-linux-musl; apt packages
# clang, skopeo, umoci, qemu-user-static. Takes several minutes (release: lto, codegen-units 1).
set -euo pipefail
cd "$(dirname "$0")/.."

out=target/oci/ironstar
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# --- the README command ---
start=$(date +%s)
digest=$(cargo run --locked --release -- build --cargo images/ironstar.toml)
echo "built $digest into $out in $(($(date +%s) - start))s" >&2
# ---

[[ $digest =~ ^sha256:[0-9a-f]{64}$ ]] || {
  echo "stdout is not the index digest: $digest" >&2
  exit 1
}

version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -1)
for arch in amd64 arm64; do
  skopeo copy --quiet --override-os linux --override-arch "$arch" \
    "oci:$out:latest" "oci:$tmp/$arch:x"
  umoci raw unpack --rootless --image "$tmp/$arch:x" "$tmp/$arch-rootfs"
  bin="$tmp/$arch-rootfs/ironstar"
  target/release/ironstar check-binary --platform "linux/$arch" "$bin"
  case $arch in
    amd64) got=$("$bin" --version) ;;
    arm64) got=$(qemu-aarch64-static "$bin" --version) ;;
  esac
  echo "linux/$arch: $got" >&2
  [[ $got == "ironstar $version" ]] || {
    echo "linux/$arch: expected 'ironstar $version', got '$got'" >&2
    exit 1
  }
done

# --no-cache: compressed afresh, so this also checks a layer the cache served (first build).
again=$(target/release/ironstar -q build --no-cache --cargo images/ironstar.toml -o "$tmp/again")
[[ $again == "$digest" ]] || {
  echo "not reproducible: $digest then $again" >&2
  exit 1
}
echo "readme build: ok ($digest)" >&2
