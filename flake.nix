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

      # The target table (nix/targets.nix) and the crane + rust-overlay cross builds over it,
      # shared with other flakes as `lib.staticBinaries`.
      cross = import ./nix/cross.nix {
        inherit
          lib
          nixpkgs
          crane
          rust-overlay
          ;
      };
      inherit (cross) targets overlays stableWith;
      staticTargets = lib.filterAttrs (_: t: t.static) targets;

      # Build machines. The Darwins evaluate the same outputs; cross-linking Linux musl
      # from them is nixpkgs' business and less travelled.
      systems = [
        "x86_64-linux"
        "aarch64-linux"
        "x86_64-darwin"
        "aarch64-darwin"
      ];

      # Image timestamps and tags come from the commit, so a rebuild is bit-identical. A tree
      # with uncommitted changes has no `rev`: its image is `<rev>-dirty`, and the push app
      # refuses it unless IRONSTAR_ALLOW_DIRTY=1 (and never tags it `latest`).
      sourceDateEpoch = self.lastModified or 1;
      dirty = !(self ? rev);
      revTag = self.shortRev or self.dirtyShortRev or "dirty";

      # The Rust targets the tests' fixtures are built for (tests/support/common.rs: `hello` for both).
      fixtureTargets = [
        "x86_64-unknown-linux-musl"
        "aarch64-unknown-linux-musl"
      ];

      ironstarMeta = {
        description = "Pack static Rust binaries into reproducible multi-arch OCI images and push them";
        license = lib.licenses.asl20;
      };

      mkMultiArchImage = import ./nix/lib.nix {
        inherit lib;
        ironstarFor = system: self.packages.${system}.default;
      };

      perSystem = lib.genAttrs systems (
        system:
        let
          pkgs = import nixpkgs { inherit system overlays; };

          # The rows this machine can build (the Windows row needs an x86_64 machine).
          rows = cross.targetsOn system;
          imageRows = lib.filterAttrs (_: t: t.kind == "image") rows;
          staticRows = lib.filterAttrs (_: t: t.static) rows;

          # Per row: nixpkgs with this machine as build platform and the row's target as
          # host. Imported once per row and shared by everything below.
          pkgsFor = lib.mapAttrs (_: cross.pkgsCrossFor system) rows;

          # The native toolchain also carries the musl std the tests' fixtures are built for.
          craneLib = (crane.mkLib pkgs).overrideToolchain (stableWith fixtureTargets);

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

          ironstar = pkgs.callPackage ./nix/package.nix {
            inherit craneLib src;
            shellFiles = true;
            meta = ironstarMeta;
          };

          # One function from a table row to a package; no per-architecture copies.
          crossPackages = lib.mapAttrs (
            name: target:
            cross.crate {
              pkgs = pkgsFor.${name};
              inherit target src;
              meta = ironstarMeta;
            }
          ) rows;

          # -Z build-std needs std's Cargo.lock, which lives in the nightly's rust-src: reading
          # it is import-from-derivation. So these are `legacyPackages` (`nix build
          # .#ironstar-build-std` finds them there), which `nix flake check` does not evaluate:
          # `packages` and `checks` stay free of IFD.
          buildStdPackage =
            name: target:
            let
              p = pkgsFor.${name};
            in
            p.callPackage ./nix/build-std.nix {
              craneLib = (crane.mkLib p).overrideToolchain (cross.nightlyWith [ target.rustTarget ]);
              rustToolchain = cross.nightlyWith [ target.rustTarget ] p.pkgsBuildHost;
              inherit src target;
            };
          buildStd = lib.mapAttrs buildStdPackage staticRows;

          # The static Linux row for this machine's CPU (the Darwins get Linux's).
          hostCpu = pkgs.stdenv.hostPlatform.parsed.cpu.name;
          hostStaticName = lib.findFirst (
            name: lib.hasPrefix "${hostCpu}-" staticTargets.${name}.crossSystem.config
          ) "x86_64-linux-musl" (lib.attrNames staticRows);

          ironstarImage = mkMultiArchImage {
            inherit
              pkgs
              ironstar
              sourceDateEpoch
              dirty
              ;
            revision = self.rev or self.dirtyRev or null;
            name = "ironstar";
            repository = "ghcr.io/org/ironstar";
            # `latest` is dropped from a dirty tree's tags.
            tags = [
              "latest"
              revTag
            ];
            binaries = lib.mapAttrs' (
              name: t: lib.nameValuePair t.platform crossPackages.${name}
            ) imageRows;
            # The definition others edit; the binary paths in it are replaced by `binaries`.
            imageFile =
              if builtins.pathExists ./images/ironstar.toml then "${./images}/ironstar.toml" else null;
          };

          # Release assets: every row this machine builds (the .exe on x86_64 only), named by
          # version and Rust target, the man page and shell completions, and sums.
          release = pkgs.runCommand "ironstar-release-${ironstar.version}" { } ''
            mkdir -p "$out"
            ${lib.concatStrings (
              lib.mapAttrsToList (name: t: ''
                cp ${lib.getExe crossPackages.${name}} "$out/ironstar-${ironstar.version}-${t.rustTarget}${
                  pkgsFor.${name}.stdenv.hostPlatform.extensions.executable
                }"
              '') rows
            )}
            # The man page and completions, from this machine's ironstar (the same for every row).
            ${lib.getExe ironstar} man > "$out/ironstar.1"
            for shell in bash zsh fish elvish powershell; do
              ${lib.getExe ironstar} completions "$shell" > "$out/ironstar.$shell"
            done
            cd "$out" && sha256sum ironstar-* ironstar.* > SHA256SUMS
          '';

          # ironstar's own ELF check on every static binary: static, and the right machine.
          staticBinaries = pkgs.runCommand "ironstar-static-binaries" { nativeBuildInputs = [ ironstar ]; } ''
            ${lib.concatStrings (
              lib.mapAttrsToList (name: t: ''
                ironstar check-binary --platform ${t.platform} ${lib.getExe crossPackages.${name}}
              '') staticRows
            )}
            touch "$out"
          '';

          inherit (ironstar.passthru) cargoArtifacts commonArgs;

          # The same stable toolchain, plus the std of every image target (for the cargo
          # path of `ironstar build`) and rust-src/rust-analyzer for editors.
          devCraneLib = (crane.mkLib pkgs).overrideToolchain (
            p:
            p.rust-bin.stable.latest.default.override {
              targets = lib.mapAttrsToList (_: t: t.rustTarget) (
                lib.filterAttrs (_: t: t.kind == "image") targets
              );
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
            image = ironstarImage.image;
          }
          // lib.mapAttrs' (name: drv: lib.nameValuePair "ironstar-${name}" drv) crossPackages;

          legacyPackages = {
            ironstar-build-std = buildStd.${hostStaticName};
          }
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
                # commonArgs turns tests off for the package builds; here they run.
                doCheck = true;
                # What the sandbox can run, by name (see the README's Nix section): unit
                # tests, tests/nix.rs (the flake, the lock, the workflows, the push app's
                # script against a fake ironstar), and tests/build.rs except the tests that
                # need the OCI schemas, skopeo, umoci, qemu or podman. tests/push.rs needs
                # docker-registry and skopeo; tests/cargo.rs needs ring from crates.io.
                # On Darwin the fixtures' Linux binaries cannot be checked against a glibc
                # twin, so tests/build.rs runs on Linux only.
                cargoTestExtraArgs = lib.concatStringsSep " " (
                  [
                    "--lib"
                    "--bins"
                    "--test nix"
                  ]
                  ++ lib.optional pkgs.stdenv.hostPlatform.isLinux "--test build"
                  ++ [ "--" ]
                  ++ map (t: "--skip ${t}") [
                    "layout_is_valid_and_both_binaries_run_from_it"
                    "image_file_sets_config_files_and_annotations"
                    "podman_runs_the_image_as_its_config_says"
                  ]
                );
                # nix-instantiate parses and evaluates pure files; check-jsonschema has
                # GitHub's schemas built in. The fixtures link with the toolchain's rust-lld.
                nativeBuildInputs = [
                  pkgs.nix
                  pkgs.check-jsonschema
                ];
                # nix-instantiate only parses and evaluates pure files: no store needed.
                NIX_REMOTE = "dummy://";
                preCheck = ''
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
            # What `cargo test` needs (tests/support), under the names the tests
            # call: nixpkgs' distribution installs `registry` and qemu `qemu-aarch64`.
            packages = [
              pkgs.skopeo
              pkgs.umoci
              pkgs.openssl # the token-auth tests make a certificate
              pkgs.apacheHttpd # htpasswd, for the basic-auth tests
              pkgs.check-jsonschema
              pkgs.actionlint
              pkgs.zig # the C compiler and linker of `--cargo` for crates that build C
              pkgs.cargo-zigbuild
              (pkgs.writeShellApplication {
                name = "docker-registry";
                runtimeInputs = [ pkgs.distribution ];
                text = ''exec registry "$@"'';
              })
              (pkgs.writeShellApplication {
                name = "qemu-aarch64-static";
                runtimeInputs = [ pkgs.qemu-user ];
                text = ''exec qemu-aarch64 "$@"'';
              })
            ]
            # podman needs the host's uid maps and container config: NixOS's
            # `virtualisation.podman`, or the distribution's package elsewhere.
            ++ lib.optionals pkgs.stdenv.hostPlatform.isLinux [ pkgs.podman ];
          };
        }
      );
    in
    {
      packages = lib.mapAttrs (_: s: s.packages) perSystem;
      apps = lib.mapAttrs (_: s: s.apps) perSystem;
      checks = lib.mapAttrs (_: s: s.checks) perSystem;
      devShells = lib.mapAttrs (_: s: s.devShells) perSystem;
      legacyPackages = lib.mapAttrs (_: s: s.legacyPackages) perSystem;

      # For other Rust flakes (templates/default uses both):
      #   binaries = ironstar.lib.staticBinaries { inherit system; src = ./.; };
      #   ironstar.lib.mkMultiArchImage {
      #     inherit pkgs binaries;
      #     config = { name = "app"; repository = "ghcr.io/me/app"; };
      #   }
      # returns { image; push; pushScript; definition; }.
      lib = {
        inherit mkMultiArchImage systems targets;
        inherit (cross) staticBinaries targetsOn;
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
