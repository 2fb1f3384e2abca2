# The text of the push app (`mkMultiArchImage`'s `push`), run by writeShellApplication with
# errexit, nounset and pipefail. Pure: builtins only, so tests/nix.rs renders it with
# nix-instantiate and runs it against a fake `ironstar`.
{
  name,
  # The OCI layout to push (a store path).
  layout,
  repository ? null,
  # The default tags; $IRONSTAR_TAGS replaces them.
  tags,
  # Built from a tree with uncommitted changes: refused unless IRONSTAR_ALLOW_DIRTY=1, and
  # never as `latest`.
  dirty ? false,
}:

let
  quote = s: "'" + builtins.replaceStrings [ "'" ] [ "'\\''" ] (toString s) + "'";
in
''
  app=${quote "push-${name}"}
  layout=${quote layout}
  default_repository=${quote (if repository == null then "" else repository)}
  default_tags=(${builtins.concatStringsSep " " (map quote tags)})
  dirty=${if dirty then "1" else ""}

  if [ -n "$dirty" ] && [ "''${IRONSTAR_ALLOW_DIRTY:-}" != 1 ]; then
    echo "$app: the flake's tree has uncommitted changes; commit them, or set IRONSTAR_ALLOW_DIRTY=1 to push it (never as latest)" >&2
    exit 1
  fi

  # An empty IRONSTAR_REPOSITORY is unset, as for ironstar itself.
  repository="''${IRONSTAR_REPOSITORY:-$default_repository}"
  if [ -z "$repository" ]; then
    echo "$app: set IRONSTAR_REPOSITORY to REGISTRY/REPO" >&2
    exit 2
  fi

  # $IRONSTAR_TAGS, comma or newline separated (empty entries dropped), replaces the defaults.
  listed=()
  IFS=$', \t\r\n' read -r -d "" -a listed <<< "''${IRONSTAR_TAGS:-}" || true
  tags=()
  for tag in "''${listed[@]}"; do
    if [ -n "$tag" ]; then
      tags+=("$tag")
    fi
  done
  if [ "''${#tags[@]}" -eq 0 ]; then
    tags=("''${default_tags[@]}")
  fi

  args=(push --layout "$layout" --repository "$repository")
  for tag in "''${tags[@]}"; do
    if [ -n "$dirty" ] && [ "$tag" = latest ]; then
      echo "$app: refusing to tag latest from a tree with uncommitted changes" >&2
      exit 1
    fi
    args+=(--tag "$tag")
  done
  # For a local registry without TLS, as the tests use.
  if [ -n "''${IRONSTAR_PLAIN_HTTP:-}" ]; then
    args+=(--plain-http)
  fi

  # The tags are on the command line; ironstar must not read them again.
  unset IRONSTAR_TAGS IRONSTAR_REPOSITORY
  # ironstar prints REGISTRY/REPO@sha256:... and, under GitHub Actions, writes digest= and
  # image= to $GITHUB_OUTPUT.
  exec ironstar "''${args[@]}" "$@"
''
