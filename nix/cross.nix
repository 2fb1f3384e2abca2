# Static binaries of a crate for rows of nix/targets.nix, cross-compiled with crane and a
# rust-overlay toolchain from nixpkgs' cross package sets. ironstar builds itself with this,
# and the flake exports it as `lib.staticBinaries` for other crates (templates/default).
{
  lib,
  nixpkgs,
  crane,
  rust-overlay,
}:

let
  targets = import ./targets.nix;
  overlays = [ rust-overlay.overlays.default ];

  # A stable toolchain with the std of each given Rust target. A function of `p` so crane
  # can splice it (build-machine rustc, target std).
  stableWith = rustTargets: p: p.rust-bin.stable.latest.default.override { targets = rustTargets; };
  nightlyWith =
    rustTargets: p:
    p.rust-bin.selectLatestNightlyWith (
      toolchain:
      toolchain.default.override {
        extensions = [ "rust-src" ];
        targets = rustTargets;
      }
    );

  # The rows a build machine can build (`buildOn`, where nixpkgs cannot build a row everywhere).
  targetsOn = system: lib.filterAttrs (_: t: lib.elem system (t.buildOn or [ system ])) targets;

  # nixpkgs with `system` as build platform and the row's target as host.
  pkgsCrossFor =
    system: target:
    import nixpkgs {
      localSystem = system;
      inherit (target) crossSystem;
      inherit overlays;
    };

  # One row's build of the crate in `src`. `pkgs` is that row's pkgsCrossFor (pass it to share
  # one nixpkgs import between several crates); extraArgs go to crane.
  crate =
    {
      system ? null,
      target,
      src,
      pkgs ? pkgsCrossFor system target,
      toolchain ? stableWith [ target.rustTarget ],
      extraArgs ? { },
      binName ? null,
      meta ? { },
    }:
    pkgs.callPackage ./package.nix {
      craneLib = (crane.mkLib pkgs).overrideToolchain toolchain;
      inherit
        src
        target
        extraArgs
        binName
        meta
        ;
    };

  # { "linux/amd64" = <derivation>; ... }: the crate in `src` for each image platform asked for,
  # as `mkMultiArchImage` takes them. `binName` is the binary (default: the package name).
  staticBinaries =
    {
      system,
      src,
      platforms ? [
        "linux/amd64"
        "linux/arm64"
      ],
      extraArgs ? { },
      binName ? null,
      meta ? { },
    }:
    let
      rows = lib.filterAttrs (_: t: t.kind == "image" && lib.elem t.platform platforms) (targetsOn system);
      missing = lib.subtractLists (lib.mapAttrsToList (_: t: t.platform) rows) platforms;
    in
    assert lib.assertMsg (missing == [ ])
      "staticBinaries: no image row of ironstar's nix/targets.nix for ${toString missing}";
    lib.mapAttrs' (
      _: target:
      lib.nameValuePair target.platform (crate {
        inherit
          system
          target
          src
          extraArgs
          binName
          meta
          ;
      })
    ) rows;
in
{
  inherit
    targets
    overlays
    stableWith
    nightlyWith
    targetsOn
    pkgsCrossFor
    crate
    staticBinaries
    ;
}
