# Every target ironstar is built for, and the only place one is named.
#
# Pure data (no nixpkgs, no functions) so that
#   nix-instantiate --eval --strict --json nix/targets.nix
# prints it, and tests/nix.rs checks it against ironstar's own platform table
# (src/platform.rs). Everything else in nix/ and flake.nix iterates over it.
#
#   crossSystem  what nixpkgs cross-compiles for (`import nixpkgs { crossSystem = ...; }`)
#   rustTarget   the rustc target; must equal crossSystem's `rust.rustcTarget` in nixpkgs
#   platform     the OCI platform (os/arch[/variant]) its binary is packed as
#   static       linked with `+crt-static` and checked with `ironstar check-binary`
#   kind         "image": goes into the multi-arch image; "release": a release artifact only
#   buildOn      optional: the only build systems that can build this row (default: every one)
{
  x86_64-linux-musl = {
    crossSystem = {
      config = "x86_64-unknown-linux-musl";
    };
    rustTarget = "x86_64-unknown-linux-musl";
    platform = "linux/amd64";
    static = true;
    kind = "image";
  };

  aarch64-linux-musl = {
    crossSystem = {
      config = "aarch64-unknown-linux-musl";
    };
    rustTarget = "aarch64-unknown-linux-musl";
    platform = "linux/arm64";
    static = true;
    kind = "image";
  };

  i686-linux-musl = {
    crossSystem = {
      config = "i686-unknown-linux-musl";
    };
    rustTarget = "i686-unknown-linux-musl";
    platform = "linux/386";
    static = true;
    kind = "image";
  };

  # nixpkgs' `pkgsCross.muslpi`: ARMv6 hard-float (Raspberry Pi 1 / Zero).
  armv6l-linux-musleabihf = {
    crossSystem = {
      config = "armv6l-unknown-linux-musleabihf";
    };
    rustTarget = "arm-unknown-linux-musleabihf";
    platform = "linux/arm/v6";
    static = true;
    kind = "image";
  };

  # As crane's examples/cross-windows. An .exe attached to releases, never an image:
  # it links the system msvcrt.dll, so it is not "static" in the sense checked here.
  # crane's cross setup asks for the host's emulator, which for MinGW is nixpkgs' wine64,
  # available on x86_64 Linux and Darwin only: elsewhere the row does not even evaluate.
  x86_64-windows = {
    buildOn = [
      "x86_64-linux"
      "x86_64-darwin"
    ];
    crossSystem = {
      config = "x86_64-w64-mingw32";
      libc = "msvcrt";
    };
    rustTarget = "x86_64-pc-windows-gnu";
    platform = "windows/amd64";
    static = false;
    kind = "release";
  };
}
