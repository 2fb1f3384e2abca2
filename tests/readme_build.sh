#!/usr/bin/env bash
# The README's first command, checked end to end: build ironstar's own image for linux/amd64 and
# linux/arm64 with `--cargo` (no Nix), then take each platform's binary out of the layout with
# skopeo and umoci (clients independent of ironstar), check it is static and for the right
# machine, and run `ironstar --version` from it: natively on amd64, under qemu on arm64.
# A second build of the same commit must give the same index digest, and so must ironstar running
# on arm64 (under qemu) packing the same binaries as ironstar on amd64 (gzip and zstd layers). Last, the image is used
# the way CI uses it: podman runs the amd64 image (a scratch image: the binary and nothing else)
# as a step would, and it pushes a layout from the mounted workspace to a loopback registry.
#
# Needs: rustup targets x86_64-unknown-linux-musl and aarch64-unknown-linux-musl; apt packages
# skopeo, umoci, qemu-user-static, docker-registry, podman, runc; zig and cargo-zigbuild (ring
# has C). All from scripts/install-deps.sh. Takes several minutes
# (release: codegen-units 1).
set -euo pipefail
cd "$(dirname "$0")/.."

out=target/oci/ironstar
tmp=$(mktemp -d)
registry_pid=""
cleanup() {
  [[ -n $registry_pid ]] && kill "$registry_pid" 2>/dev/null
  rm -rf "$tmp" 2>/dev/null || true
}
trap cleanup EXIT

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
# Built from this checkout, --version names its commit and the commit's date (build.rs).
commit=$(TZ=UTC git log -1 --format='%h %cd' --abbrev=7 --date=format-local:%Y-%m-%d)
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
  [[ $got == "ironstar $version ($commit)" ]] || {
    echo "linux/$arch: expected 'ironstar $version ($commit)', got '$got'" >&2
    exit 1
  }
done

# --no-cache: compressed afresh, so this also checks a layer the cache served (first build).
again=$(target/release/ironstar -q build --no-cache --cargo images/ironstar.toml -o "$tmp/again")
[[ $again == "$digest" ]] || {
  echo "not reproducible: $digest then $again" >&2
  exit 1
}

# The digest does not depend on the machine ironstar runs on: the arm64 ironstar (zlib-rs takes
# its NEON code paths there) under qemu packs the same two binaries as the amd64 one, to the byte.
pair=(--binary "linux/amd64=$tmp/amd64-rootfs/ironstar" --binary "linux/arm64=$tmp/arm64-rootfs/ironstar")
on_amd64=$(SOURCE_DATE_EPOCH=1700000000 "$tmp/amd64-rootfs/ironstar" -q build --no-cache \
  -o "$tmp/on-amd64" --tag x "${pair[@]}")
on_arm64=$(SOURCE_DATE_EPOCH=1700000000 qemu-aarch64-static "$tmp/arm64-rootfs/ironstar" -q build \
  --no-cache -o "$tmp/on-arm64" --tag x "${pair[@]}")
[[ $on_amd64 == "$on_arm64" && $on_amd64 =~ ^sha256: ]] || {
  echo "ironstar on amd64 packed $on_amd64, on arm64 $on_arm64" >&2
  exit 1
}
echo "the same index from ironstar on amd64 and on arm64: $on_amd64" >&2
# The same for zstd layers: libzstd built for each target (its x86 and aarch64 code paths) makes
# the same frames.
on_amd64=$(SOURCE_DATE_EPOCH=1700000000 "$tmp/amd64-rootfs/ironstar" -q build --no-cache \
  --compression zstd -o "$tmp/on-amd64-zstd" --tag x "${pair[@]}")
on_arm64=$(SOURCE_DATE_EPOCH=1700000000 qemu-aarch64-static "$tmp/arm64-rootfs/ironstar" -q build \
  --no-cache --compression zstd -o "$tmp/on-arm64-zstd" --tag x "${pair[@]}")
[[ $on_amd64 == "$on_arm64" && $on_amd64 =~ ^sha256: ]] || {
  echo "zstd: ironstar on amd64 packed $on_amd64, on arm64 $on_arm64" >&2
  exit 1
}
echo "zstd: the same index from ironstar on amd64 and on arm64: $on_amd64" >&2

# --- ironstar's image as a CI step: podman runs it, it pushes a layout to a loopback registry ---
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
mkdir -p "$tmp/registry" "$tmp/ws"
cat >"$tmp/registry/config.yml" <<YAML
version: 0.1
log: {level: error}
storage: {filesystem: {rootdirectory: $tmp/registry/data}}
http: {addr: 127.0.0.1:$port}
YAML
docker-registry serve "$tmp/registry/config.yml" >"$tmp/registry/log" 2>&1 &
registry_pid=$!
python3 - "$port" <<'PY'
import sys, time, urllib.request
for _ in range(100):
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/v2/", timeout=1)
        sys.exit(0)
    except Exception:
        time.sleep(0.1)
sys.exit("docker-registry did not start")
PY
cp -r "$out" "$tmp/ws/layout"
# A private podman config and storage (podman needs `default_ulimits = []` in some sandboxes).
printf '[containers]\ndefault_ulimits = []\n' >"$tmp/containers.conf"
pushed=$(CONTAINERS_CONF="$tmp/containers.conf" podman --root "$tmp/podman" \
  --runroot "$tmp/podman-run" --storage-driver vfs --runtime runc \
  run --rm --network host --arch amd64 -v "$tmp/ws:/github/workspace" -w /github/workspace \
  -e GITHUB_OUTPUT=/github/workspace/output \
  "oci:$out:latest" push --layout layout --plain-http \
  --repository "127.0.0.1:$port/org/ironstar" --tag ci)
[[ $pushed == "127.0.0.1:$port/org/ironstar@$digest" ]] || {
  echo "the image's push printed '$pushed'" >&2
  exit 1
}
grep -qx "digest=$digest" "$tmp/ws/output" || {
  echo "no digest=$digest in \$GITHUB_OUTPUT" >&2
  exit 1
}
cmp <(skopeo inspect --raw --tls-verify=false "docker://127.0.0.1:$port/org/ironstar:ci") \
  "$out/blobs/sha256/${digest#sha256:}" || {
  echo "the registry's index differs from the layout's" >&2
  exit 1
}
echo "ironstar's image pushed $pushed from inside a container" >&2
echo "readme build: ok ($digest)" >&2
