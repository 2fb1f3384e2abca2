{
  description = "A Rust crate packed into a multi-arch OCI image by ironstar";

  inputs.ironstar.url = "github:org/ironstar";
  inputs.nixpkgs.follows = "ironstar/nixpkgs";

  outputs =
    { self, nixpkgs, ironstar }:
    let
      system = "x86_64-linux";
      # A fully static build of this crate for one musl target.
      static =
        config:
        (import nixpkgs {
          localSystem = system;
          crossSystem = { inherit config; isStatic = true; };
        }).rustPlatform.buildRustPackage {
          pname = "app";
          version = "0.1.0";
          src = ./.;
          cargoLock.lockFile = ./Cargo.lock;
          meta.mainProgram = "app";
        };
      app = ironstar.lib.mkMultiArchImage {
        pkgs = nixpkgs.legacyPackages.${system};
        binaries."linux/amd64" = static "x86_64-unknown-linux-musl";
        binaries."linux/arm64" = static "aarch64-unknown-linux-musl";
        config = { name = "app"; repository = "ghcr.io/me/app"; };
        sourceDateEpoch = self.lastModified or 1;
      };
    in
    {
      packages.${system}.default = app.image;
      apps.${system}.push-image = app.push;
    };
}
