# A crate (ironstar, or another one through `lib.staticBinaries`), natively (`target = null`)
# or for one row of nix/targets.nix.
#
# callPackage-style, as crane's examples/cross-rust-overlay: called from a cross `pkgs`
# (`import nixpkgs { crossSystem = row.crossSystem; }`), nixpkgs splices the arguments so
# `nativeBuildInputs` run on the build machine and `buildInputs` are built for the target.
# crane then sees `buildPlatform != hostPlatform` and points cargo at the cross cc as linker
# and as CC_<target>/AR_<target> for crates that compile C.
{
  lib,
  stdenv,
  windows,
  installShellFiles,
  # crane's lib with a rust-overlay toolchain that carries the target's std (see flake.nix).
  craneLib,
  src,
  target ? null,
  # Extra arguments for both the dependency and the crate derivation (build-std uses this).
  extraArgs ? { },
  # The binary `lib.getExe` names; default: the package name in Cargo.toml.
  binName ? null,
  # ironstar's own package: install its man page and shell completions, made by the built binary
  # (`ironstar man`, `ironstar completions SHELL`), so only where this machine can run it.
  shellFiles ? false,
  meta ? { },
}:

let
  isCross = target != null;
  withShellFiles = shellFiles && stdenv.buildPlatform.canExecute stdenv.hostPlatform;
  crateName = craneLib.crateNameFromCargoToml { inherit src; };
  program = if binName != null then binName else crateName.pname;

  commonArgs = {
    inherit src;
    inherit (crateName) pname;
    strictDeps = true;

    # Build tools run on the build machine. crane already adds the toolchain and the
    # cross cc; ironstar is pure Rust and needs nothing else here.
    nativeBuildInputs = [ ];

    # What links into the binary, built for the target. The MinGW C runtime needs
    # winpthreads (crane also adds its -L for rustc).
    buildInputs = lib.optionals stdenv.hostPlatform.isMinGW [ windows.pthreads ];

    # Tests run in the native `checks.tests` derivation (which sets doCheck), not per target.
    doCheck = false;
  }
  // lib.optionalAttrs isCross {
    CARGO_BUILD_TARGET = target.rustTarget;
  }
  // lib.optionalAttrs (isCross && target.static) {
    # musl defaults to static already; say so explicitly so a toolchain or target-spec
    # change cannot quietly turn it into a dynamic binary (checks.static-binaries
    # would catch it, but later).
    CARGO_BUILD_RUSTFLAGS = "-C target-feature=+crt-static";
  }
  // extraArgs;

  # Dependencies are compiled once per target and reused by the crate, clippy and tests.
  cargoArtifacts = craneLib.buildDepsOnly commonArgs;
in
craneLib.buildPackage (
  commonArgs
  // {
    inherit cargoArtifacts;
    nativeBuildInputs = lib.optionals withShellFiles [ installShellFiles ];
    postInstall = lib.optionalString withShellFiles ''
      installShellCompletion --cmd ${program} \
        --bash <($out/bin/${program} completions bash) \
        --zsh <($out/bin/${program} completions zsh) \
        --fish <($out/bin/${program} completions fish)
      $out/bin/${program} man > ${program}.1
      installManPage ${program}.1
    '';
    passthru = {
      inherit cargoArtifacts commonArgs target;
    };
    meta = meta // {
      # `ironstar.exe` on Windows, so `lib.getExe` is right for every row.
      mainProgram = program + stdenv.hostPlatform.extensions.executable;
    };
  }
)
