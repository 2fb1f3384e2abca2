#!/usr/bin/env bash
# ironstar benchmark (issues 7, 15, 21): ironstar vs buildah / skopeo / the zlib-rs deflate floor,
# and the puller's side: containerd and podman pulling gzip and zstd images.
#   bash bench/run.sh [--sizes fixture,5,50,500] [--rounds N] [--rounds-500 N] [--delay-ms 20]
#                     [--level N] [--zstd-level N] [--pull-sizes fixture]
#   bash bench/run.sh --workspace [--rounds N] [--delay-ms 20]   (issue 19: N images together
#     against N single publishes, bench/workspace.py; needs zig and cargo-zigbuild, no buildah)
#   bash bench/run.sh --merge [--rounds N] [--delay-ms 20]   (issue 30: `ironstar merge` of two
#     pushed platforms against buildah's manifest create + add + push, bench/merge.py)
#   bash bench/run.sh --alloc [--rounds N]   (issue 35: an 8-thread allocation-heavy program built
#     for glibc, by ironstar with musl's allocator and with --allocator mimalloc, bench/alloc.py;
#     needs zig, no registry)
#   bash bench/run.sh --reuse [--rounds N] [--delay-ms 20]   (issue 36: the workspace published
#     in full, unchanged from a fresh clone on a fresh runner, one member changed; bench/reuse.py)
# Needs: docker-registry, skopeo, buildah, containerd (+ ctr), podman, GNU time (/usr/bin/time,
# Debian package `time`),
# python3, cargo/rustc with the x86_64/aarch64 musl targets and rust-lld (the `fixture` size
# builds bench/fixture from crates.io the first time).
# Writes inputs, layouts, registries under target/bench/, JSON to target/bench/results.json.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = "--merge" ]; then
  shift
  cargo build --release --quiet --bins
  exec python3 bench/merge.py "$@"
fi
if [ "${1:-}" = "--reuse" ]; then
  shift
  cargo build --release --quiet --bins
  exec python3 bench/reuse.py "$@"
fi
if [ "${1:-}" = "--workspace" ]; then
  shift
  cargo build --release --quiet --bins
  exec python3 bench/workspace.py "$@"
fi
if [ "${1:-}" = "--alloc" ]; then
  shift
  cargo build --quiet --bins
  exec python3 bench/alloc.py "$@"
fi
for t in docker-registry skopeo buildah containerd ctr podman python3 rustc cargo; do
  command -v "$t" >/dev/null || { echo "bench: missing $t" >&2; exit 1; }
done
[ -x /usr/bin/time ] || { echo "bench: missing GNU time (apt-get install time)" >&2; exit 1; }
cargo build --release --quiet --bins --example floor
mkdir -p target/bench
py=""
# (`|| true`: a kill of the finished python fails, and under `set -e` that made a successful run
# exit 1.)
cleanup() { { [ -n "$py" ] && kill "$py" 2>/dev/null; } || true; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM
python3 bench/bench.py "$@" &
py=$!
wait "$py"
