{
  description = "ironstar: pack static Rust binaries into reproducible multi-arch OCI images and push them, without a Docker daemon";

  inputs = {
    # crane v0.23.x is the last series that supports nixpkgs 25.11 (and needs Nix >= 2.31.2);
    # crane master wants nixpkgs >= 26.05. Move both together.
    nixpkgs.url = "github:NixOS/nixpkgs/nixos-25.11";

    crane.url = "github:ipetkov/crane/v0.23.4";

    rust-overlay = {
      url = "github:oxalica/rust-overlay";
      inputs.nixpkgs.follows = "nixpkgs";
    };
  };

  outputs =
    {
      self,
      nixpkgs,
      crane,
      rust-overlay,
    }:
    let
      inherit (nixpkgs) lib;

      # The one target table; everything below iterates it.
      targets = import ./nix/targets.nix;
      imageTargets = lib.filterAttrs (_: t: t.kind == "image") targets;
      staticTargets = lib.filterAttrs (_: t: t.static) targets;

      # Build machines. The Darwins evaluate the same outputs; cross-linking Linux musl
      # from them is nixpkgs' business and less travelled.
      systems = [
        "x86_64-linux"
        "aarch64-linux"
        "x86_64-darwin"
        "aarch64-darwin"
      ];

      # Image timestamps and tags come from the commit, so a rebuild is bit-identical.
      sourceDateEpoch = self.lastModified or 1;
      shortRev = self.shortRev or self.dirtyShortRev or "dirty";

      overlays = [ rust-overlay.overlays.default ];

      # A stable toolchain with the std of each given Rust target. A function of `p` so
      # crane can splice it (build-machine rustc, target std).
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

      mkMultiArchImage = import ./nix/lib.nix {
        inherit lib;
        ironstarFor = system: self.packages.${system}.default;
      };

      perSystem = lib.genAttrs systems (
        system:
        let
          pkgs = import nixpkgs { inherit system overlays; };

          # Per row: nixpkgs with this machine as build platform and the row's target as
          # host. Imported once per row and shared by everything below.
          pkgsFor = lib.mapAttrs (
            _: target:
            import nixpkgs {
              localSystem = system;
              inherit (target) crossSystem;
              inherit overlays;
            }
          ) targets;

          craneLib = (crane.mkLib pkgs).overrideToolchain (stableWith [ ]);

          # What the binary is built from: cargo's sources only, so editing the flake,
          # the docs or CI does not rebuild it. images/ and README.md may be read by
          # include_str!.
          src = lib.fileset.toSource {
            root = ./.;
            fileset = lib.fileset.unions [
              (craneLib.fileset.commonCargoSources ./.)
              (lib.fileset.maybeMissing ./images)
              (lib.fileset.maybeMissing ./README.md)
            ];
          };
          # The tests also read the flake, nix/, the workflows and their fixtures.
          testSrc = lib.cleanSource ./.;

          ironstar = pkgs.callPackage ./nix/package.nix { inherit craneLib src; };

          # One function from a table row to a package; no per-architecture copies.
          crossPackage =
            name: target:
            let
              p = pkgsFor.${name};
            in
            p.callPackage ./nix/package.nix {
              craneLib = (crane.mkLib p).overrideToolchain (stableWith [ target.rustTarget ]);
              inherit src target;
            };

          buildStdPackage =
            name: target:
            let
              p = pkgsFor.${name};
            in
            p.callPackage ./nix/build-std.nix {
              craneLib = (crane.mkLib p).overrideToolchain (nightlyWith [ target.rustTarget ]);
              rustToolchain = nightlyWith [ target.rustTarget ] p.pkgsBuildHost;
              inherit src target;
            };

          cross = lib.mapAttrs crossPackage targets;
          buildStd = lib.mapAttrs buildStdPackage staticTargets;

          # The static Linux row for this machine's CPU (the Darwins get Linux's).
          hostCpu = pkgs.stdenv.hostPlatform.parsed.cpu.name;
          hostStaticName = lib.findFirst (
            name: lib.hasPrefix "${hostCpu}-" staticTargets.${name}.crossSystem.config
          ) "x86_64-linux-musl" (lib.attrNames staticTargets);

          ironstarImage = mkMultiArchImage {
            inherit pkgs ironstar sourceDateEpoch;
            revision = self.rev or self.dirtyRev or null;
            name = "ironstar";
            repository = "ghcr.io/org/ironstar";
            tags = [
              "latest"
              shortRev
            ];
            binaries = lib.mapAttrs' (name: t: lib.nameValuePair t.platform cross.${name}) imageTargets;
            # The definition others edit; the binary paths in it are replaced by `binaries`.
            imageFile =
              if builtins.pathExists ./images/ironstar.toml then "${./images}/ironstar.toml" else null;
          };

          # Release assets: every row's binary, named by version and Rust target, and sums.
          release = pkgs.runCommand "ironstar-release-${ironstar.version}" { } ''
            mkdir -p "$out"
            ${lib.concatStrings (
              lib.mapAttrsToList (name: t: ''
                cp ${lib.getExe cross.${name}} "$out/ironstar-${ironstar.version}-${t.rustTarget}${
                  pkgsFor.${name}.stdenv.hostPlatform.extensions.executable
                }"
              '') targets
            )}
            cd "$out" && sha256sum ironstar-* > SHA256SUMS
          '';

          # ironstar's own ELF check on every static binary: static, and the right machine.
          staticBinaries = pkgs.runCommand "ironstar-static-binaries" { nativeBuildInputs = [ ironstar ]; } ''
            ${lib.concatStrings (
              lib.mapAttrsToList (name: t: ''
                ironstar check-binary --platform ${t.platform} ${lib.getExe cross.${name}}
              '') staticTargets
            )}
            touch "$out"
          '';

          inherit (ironstar.passthru) cargoArtifacts commonArgs;

          # The same stable toolchain, plus the std of every image target (for the cargo
          # path of `ironstar build`) and rust-src/rust-analyzer for editors.
          devCraneLib = (crane.mkLib pkgs).overrideToolchain (
            p:
            p.rust-bin.stable.latest.default.override {
              targets = lib.mapAttrsToList (_: t: t.rustTarget) imageTargets;
              extensions = [
                "rust-src"
                "rust-analyzer"
              ];
            }
          );
        in
        {
          packages = {
            default = ironstar;
            ironstar-release = release;
            ironstar-build-std = buildStd.${hostStaticName};
            image = ironstarImage.image;
          }
          // lib.mapAttrs' (name: drv: lib.nameValuePair "ironstar-${name}" drv) cross
          // lib.mapAttrs' (name: drv: lib.nameValuePair "ironstar-build-std-${name}" drv) buildStd;

          apps.push-image = ironstarImage.push;

          checks = {
            inherit ironstar;

            clippy = craneLib.cargoClippy (
              commonArgs
              // {
                inherit cargoArtifacts;
                cargoClippyExtraArgs = "--all-targets -- --deny warnings";
              }
            );

            fmt = craneLib.cargoFmt { inherit src; };

            tests = craneLib.cargoTest (
              commonArgs
              // {
                inherit cargoArtifacts;
                src = testSrc;
                # tests/nix.rs parses every .nix file and validates the workflows; other
                # tests push to a local registry.
                nativeBuildInputs = [
                  pkgs.nix
                  pkgs.check-jsonschema
                  pkgs.distribution
                ];
                # nix-instantiate only parses and evaluates pure files: no store needed.
                NIX_REMOTE = "dummy://";
                preBuild = ''
                  export HOME="$TMPDIR"
                '';
              }
            );
          }
          // lib.optionalAttrs pkgs.stdenv.hostPlatform.isLinux {
            static-binaries = staticBinaries;
            image = ironstarImage.image;
          };

          devShells.default = devCraneLib.devShell {
            packages = [
              pkgs.skopeo
              pkgs.distribution # `registry serve`, the registry the tests push to
              pkgs.check-jsonschema
              pkgs.actionlint
              pkgs.llvmPackages.clang # CC_<target> for crates that build C
            ];
          };
        }
      );
    in
    {
      packages = lib.mapAttrs (_: s: s.packages) perSystem;
      apps = lib.mapAttrs (_: s: s.apps) perSystem;
      checks = lib.mapAttrs (_: s: s.checks) perSystem;
      devShells = lib.mapAttrs (_: s: s.devShells) perSystem;

      # For other Rust flakes:
      #   ironstar.lib.mkMultiArchImage {
      #     inherit pkgs;
      #     binaries = { "linux/amd64" = amd64Drv; "linux/arm64" = arm64Drv; };
      #     config = { name = "app"; repository = "ghcr.io/me/app"; entrypoint = [ "/app" ]; };
      #   }
      # returns { image; push; pushScript; definition; }.
      lib = {
        inherit mkMultiArchImage targets;
      };

      overlays.default = final: _prev: {
        ironstar = self.packages.${final.stdenv.hostPlatform.system}.default;
      };

      templates.default = {
        path = ./templates/default;
        description = "A Rust flake that packs its static binaries into a multi-arch image with ironstar";
      };
    };
}
