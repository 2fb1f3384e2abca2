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
  # The entrypoint defaults to the binary, placed at /<its file name>. A `files[].source`
  # must be a Nix path (./rootfs/etc/passwd): it is copied into the store, where the
  # generated definition lives; a relative string would resolve inside the store.
  config ? { },
  # Or an existing image definition file. Its name, repository and tags are read (at
  # evaluation, so it must be a source file, not a build output). If it names other files
  # ([[files]]), pass it inside its directory ("${./images}/app.toml") so they are copied
  # too. `binaries` always wins over the file's binary paths.
  imageFile ? null,
  # Default: config's, else the file's, else "image".
  name ? null,
  # Default target of the push app ($IRONSTAR_REPOSITORY overrides it): config's, else the file's.
  repository ? null,
  # Default tags of the push app ($IRONSTAR_TAGS replaces them): config's, else the file's,
  # else [ "latest" ]. `latest` is dropped when `dirty`.
  tags ? null,
  # Time of every file and of the image config. From a flake: `self.lastModified`.
  sourceDateEpoch ? 1,
  # Source revision recorded as org.opencontainers.image.revision. From a flake:
  # `self.rev or self.dirtyRev or null`.
  revision ? null,
  # The source tree had uncommitted changes. From a flake: `!(self ? rev)`. The push app then
  # refuses unless IRONSTAR_ALLOW_DIRTY=1 and never tags `latest`.
  dirty ? false,
  # The ironstar that runs the build, for the machine doing it.
  ironstar ? ironstarFor pkgs.stdenv.buildPlatform.system,
}:

let
  fromFile = if imageFile != null then builtins.fromTOML (builtins.readFile imageFile) else { };
  pick =
    field: given: fallback:
    if given != null then given else config.${field} or fromFile.${field} or fallback;
  name' = pick "name" name "image";
  repository' = pick "repository" repository null;
  tags' = lib.filter (t: !(dirty && t == "latest")) (pick "tags" tags [ "latest" ]);

  binaryPath = bin: if lib.isDerivation bin then lib.getExe bin else toString bin;

  # A generated definition is a store file, so relative paths in it would resolve in the store.
  resolveFile =
    f:
    if !(f ? source) || builtins.isPath f.source || lib.hasPrefix "/" (toString f.source) then
      f // lib.optionalAttrs (f ? source) { source = "${f.source}"; }
    else
      throw "mkMultiArchImage ${name'}: files[].source \"${f.source}\" is relative; pass a Nix path (./${f.source}) so it is copied into the store";

  definition =
    if imageFile != null then
      imageFile
    else
      (pkgs.formats.toml { }).generate "${name'}.toml" (
        lib.recursiveUpdate (
          {
            name = name';
            tags = tags';
          }
          // lib.optionalAttrs (repository' != null) { repository = repository'; }
          // removeAttrs config [ "files" ]
          // lib.optionalAttrs (config ? files) { files = map resolveFile config.files; }
        ) { binaries = lib.mapAttrs (_: binaryPath) binaries; }
      );

  # The generated definition's sources are what the Nix expression named: store paths, or
  # absolute paths anywhere (resolveFile takes them), so it opts in to sources outside the
  # definition's directory. An image file keeps ironstar's rule (sources inside its directory,
  # workspace or repository).
  sourceFlags = lib.optionalString (imageFile == null) "--allow-outside-sources";

  binaryFlags = lib.concatStringsSep " " (
    lib.mapAttrsToList (
      platform: bin: "--binary ${lib.escapeShellArg "${platform}=${binaryPath bin}"}"
    ) binaries
  );

  image =
    pkgs.runCommand "${name'}-oci-layout"
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
        ironstar build --no-cache ${sourceFlags} ${definition} ${binaryFlags} --output "$TMPDIR/layout" > "$TMPDIR/digest"
        echo "${name'}: index $(cat "$TMPDIR/digest")"
        mv "$TMPDIR/layout" "$out"
      '';

  pushScript = pkgs.writeShellApplication {
    name = "push-${name'}";
    runtimeInputs = [ ironstar ];
    text = import ./push-script.nix {
      name = name';
      layout = image;
      repository = repository';
      tags = tags';
      inherit dirty;
    };
  };
in
{
  inherit image definition pushScript;
  push = {
    type = "app";
    program = lib.getExe pushScript;
    meta.description = "Push the ${name'} image layout to $IRONSTAR_REPOSITORY";
  };
}
