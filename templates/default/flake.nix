{
  description = "A Rust crate packed into a multi-arch OCI image by ironstar";

  # ironstar brings nixpkgs, crane and rust-overlay at the revisions its own flake.lock pins.
  inputs.ironstar.url = "github:org/ironstar";
  inputs.nixpkgs.follows = "ironstar/nixpkgs";

  outputs =
    {
      self,
      nixpkgs,
      ironstar,
    }:
    let
      inherit (nixpkgs) lib;

      # Every system ironstar's flake builds on: Linux natively, macOS by cross-compiling the
      # Linux musl binaries (or hand this to a Linux builder).
      perSystem =
        system:
        let
          app = ironstar.lib.mkMultiArchImage {
            pkgs = nixpkgs.legacyPackages.${system};
            # This crate, static for each platform: crane + rust-overlay, cross-compiled
            # from `system`, as ironstar builds itself.
            binaries = ironstar.lib.staticBinaries {
              inherit system;
              src = ./.;
              platforms = [
                "linux/amd64"
                "linux/arm64"
              ];
            };
            config = {
              name = "app";
              repository = "ghcr.io/me/app";
            };
            sourceDateEpoch = self.lastModified or 1;
            revision = self.rev or self.dirtyRev or null;
            # Uncommitted changes: the push app refuses unless IRONSTAR_ALLOW_DIRTY=1.
            dirty = !(self ? rev);
          };
        in
        {
          packages.default = app.image;
          apps.push-image = app.push;
        };
      outputs = lib.genAttrs ironstar.lib.systems perSystem;
    in
    {
      packages = lib.mapAttrs (_: o: o.packages) outputs;
      apps = lib.mapAttrs (_: o: o.apps) outputs;
    };
}
