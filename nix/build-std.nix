# ironstar with the standard library compiled from source for the target
# (`cargo -Z build-std`), as crane's examples/build-std: a nightly toolchain with
# `rust-src`, and std's own Cargo.lock vendored next to ironstar's so the build stays
# offline. Not the default: nightly, and slower to build, but it lets the whole binary,
# std included, be optimised for size (`opt-level = "z"`, LTO across std).
{
  callPackage,
  # crane's lib with a nightly toolchain carrying `rust-src` and the target's std.
  craneLib,
  # That same toolchain, for the build machine: its rust-src holds std's Cargo.lock.
  rustToolchain,
  src,
  # A row of nix/targets.nix; build-std always names a target.
  target,
}:

callPackage ./package.nix {
  inherit craneLib src target;
  extraArgs = {
    pname = "ironstar-build-std";

    cargoVendorDir = craneLib.vendorMultipleCargoDeps {
      inherit (craneLib.findCargoFiles src) cargoConfigs;
      cargoLockList = [
        "${src}/Cargo.lock"
        # Import-from-derivation: the lock file lives in the toolchain's store path. Hence
        # flake.nix exposes these builds as legacyPackages, which `nix flake check` skips.
        # (Committing std's Cargo.lock would avoid IFD but must match the pinned nightly's
        # rust-src byte for byte; the nightly here is rust-overlay's latest, so it would not.)
        "${rustToolchain.passthru.availableComponents.rust-src}/lib/rustlib/src/rust/library/Cargo.lock"
      ];
    };

    # CARGO_BUILD_TARGET (set by package.nix) names the target -Z build-std needs.
    cargoExtraArgs = "--locked -Z build-std=std,panic_abort";
    # The smallest binary is this variant's point: LTO across std and every crate, though it
    # slows deflate (the default build leaves LTO off for that reason, see Cargo.toml).
    CARGO_PROFILE_RELEASE_LTO = "true";
  };
}
