# `lib.mkMultiArchImage`: static binaries that are already built, one per OCI platform,
# become an OCI image layout in the Nix store plus an app that pushes it.
#
# ironstar itself runs inside the derivation with SOURCE_DATE_EPOCH fixed, so the same
# binaries give the same bytes, and so the same digest, on every machine.
{
  lib,
  # system -> the ironstar package that runs on it.
  ironstarFor,
}:

{
  pkgs,
  # { "linux/amd64" = <derivation with meta.mainProgram, or a path to an executable>; ... }
  binaries,
  # Image definition fields, as in images/*.toml (entrypoint, env, user, labels, files...).
  # The entrypoint defaults to the binary, placed at /<its file name>.
  config ? { },
  # Or an existing image definition file. If it names other files ([[files]]), pass it
  # inside its directory ("${./images}/app.toml") so they are copied too.
  # `binaries` always wins over the file's binary paths.
  imageFile ? null,
  name ? config.name or "image",
  # Default target of the push app; $IRONSTAR_REPOSITORY overrides it.
  repository ? config.repository or null,
  # Always pushed; $IRONSTAR_TAGS (comma or space separated) adds more.
  tags ? [ "latest" ],
  # Time of every file and of the image config. From a flake: `self.lastModified`.
  sourceDateEpoch ? 1,
  # Source revision recorded as org.opencontainers.image.revision. From a flake: `self.rev or null`.
  revision ? null,
  # The ironstar that runs the build, for the machine doing it.
  ironstar ? ironstarFor pkgs.stdenv.buildPlatform.system,
}:

let
  binaryPath = bin: if lib.isDerivation bin then lib.getExe bin else toString bin;

  definition =
    if imageFile != null then
      imageFile
    else
      (pkgs.formats.toml { }).generate "${name}.toml" (
        lib.recursiveUpdate (
          { inherit name; } // lib.optionalAttrs (repository != null) { inherit repository; } // config
        ) { binaries = lib.mapAttrs (_: binaryPath) binaries; }
      );

  binaryFlags = lib.concatStringsSep " " (
    lib.mapAttrsToList (
      platform: bin: "--binary ${lib.escapeShellArg "${platform}=${binaryPath bin}"}"
    ) binaries
  );

  image =
    pkgs.runCommand "${name}-oci-layout"
      (
        {
          nativeBuildInputs = [ ironstar ];
          SOURCE_DATE_EPOCH = toString sourceDateEpoch;
          passthru = { inherit binaries definition; };
        }
        // lib.optionalAttrs (revision != null) { IRONSTAR_REVISION = revision; }
      )
      ''
        # Built in $TMPDIR and moved: ironstar writes a layout atomically within its
        # parent directory, and the builder cannot create siblings of $out. No layer cache:
        # the sandbox has no home to keep one in, and Nix caches the whole derivation anyway.
        ironstar build --no-cache ${definition} ${binaryFlags} --output "$TMPDIR/layout" > "$TMPDIR/digest"
        echo "${name}: index $(cat "$TMPDIR/digest")"
        mv "$TMPDIR/layout" "$out"
      '';

  pushScript = pkgs.writeShellApplication {
    name = "push-${name}";
    runtimeInputs = [ ironstar ];
    text = ''
      default_repository=${lib.escapeShellArg (if repository == null then "" else repository)}
      repository="''${IRONSTAR_REPOSITORY:-$default_repository}"
      if [ -z "$repository" ]; then
        echo "push-${name}: set IRONSTAR_REPOSITORY to REGISTRY/REPO" >&2
        exit 2
      fi

      args=(push --layout ${image} --repository "$repository")
      extra_tags=()
      tag_list="''${IRONSTAR_TAGS:-}"
      IFS=', ' read -r -a extra_tags <<< "''${tag_list//$'\n'/ }"
      for tag in ${lib.escapeShellArgs tags} "''${extra_tags[@]}"; do
        args+=(--tag "$tag")
      done
      # For a local registry without TLS, as the tests use.
      if [ -n "''${IRONSTAR_PLAIN_HTTP:-}" ]; then
        args+=(--plain-http)
      fi

      # ironstar prints REGISTRY/REPO@sha256:... and, under GitHub Actions, writes
      # digest= and image= to $GITHUB_OUTPUT.
      exec ironstar "''${args[@]}" "$@"
    '';
  };
in
{
  inherit image definition pushScript;
  push = {
    type = "app";
    program = lib.getExe pushScript;
    meta.description = "Push the ${name} image layout to $IRONSTAR_REPOSITORY";
  };
}
