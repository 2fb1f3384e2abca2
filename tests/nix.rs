//! What can be checked of the Nix flake, the lock and the CI files without fetching nixpkgs:
//! every `.nix` file parses, `nix/targets.nix` agrees with ironstar's platform table,
//! `flake.lock` is a consistent version-7 lock of `flake.nix`'s inputs, and the workflows and
//! `action.yml` match GitHub's schemas.
//!
//! Needs `nix-instantiate` (Nix) and `check-jsonschema` (`pip install check-jsonschema`) on
//! PATH; a missing tool fails the test with what to install, never skips it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use ironstar::platform::{Platform, PLATFORMS};
use serde_json::Value;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Run a tool, failing clearly if it is not installed.
fn run(program: &str, args: &[&str], install: &str) -> Output {
    match Command::new(program)
        .args(args)
        .current_dir(root())
        .output()
    {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            panic!("`{program}` is not on PATH; these checks need it: {install}")
        }
        Err(e) => panic!("running `{program}`: {e}"),
    }
}

const NIX: &str = "install Nix (`apt-get install nix-bin`, or https://nixos.org/download)";
const JSONSCHEMA: &str = "`pip install check-jsonschema` (or `pipx install check-jsonschema`)";

fn nix_instantiate(args: &[&str]) -> String {
    let out = run("nix-instantiate", args, NIX);
    assert!(
        out.status.success(),
        "nix-instantiate {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("nix-instantiate printed UTF-8")
}

/// Evaluate a Nix expression to JSON.
fn nix_json(args: &[&str]) -> Value {
    let mut all = vec!["--eval", "--strict", "--json"];
    all.extend_from_slice(args);
    serde_json::from_str(&nix_instantiate(&all)).expect("nix-instantiate --json printed JSON")
}

fn files_under(dir: &Path, keep: &dyn Fn(&Path) -> bool, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy();
        if (name.starts_with('.') && name != ".github")
            || name == "target"
            || name.starts_with("result")
        {
            continue;
        }
        if path.is_dir() {
            files_under(&path, keep, out);
        } else if keep(&path) {
            out.push(path);
        }
    }
}

#[test]
fn every_nix_file_parses() {
    let mut files = Vec::new();
    files_under(
        root(),
        &|p| p.extension().is_some_and(|e| e == "nix"),
        &mut files,
    );
    for required in [
        "flake.nix",
        "nix/targets.nix",
        "nix/package.nix",
        "nix/build-std.nix",
        "nix/lib.nix",
        "templates/default/flake.nix",
    ] {
        assert!(
            files.contains(&root().join(required)),
            "{required} is missing"
        );
    }
    for file in &files {
        nix_instantiate(&["--parse", file.to_str().unwrap()]);
    }
}

/// `nix/targets.nix`, evaluated without nixpkgs.
fn targets() -> BTreeMap<String, Value> {
    let value = nix_json(&["nix/targets.nix"]);
    serde_json::from_value(value).expect("nix/targets.nix is an attribute set of rows")
}

fn field<'a>(name: &str, row: &'a Value, key: &str) -> &'a Value {
    row.get(key)
        .unwrap_or_else(|| panic!("targets.nix row `{name}` has no `{key}`"))
}

fn str_field<'a>(name: &str, row: &'a Value, key: &str) -> &'a str {
    field(name, row, key)
        .as_str()
        .unwrap_or_else(|| panic!("targets.nix row `{name}`: `{key}` is not a string"))
}

#[test]
fn targets_agree_with_the_platform_table() {
    let targets = targets();
    let mut image_platforms = Vec::new();
    for (name, row) in &targets {
        let platform = str_field(name, row, "platform");
        let rust_target = str_field(name, row, "rustTarget");
        let kind = str_field(name, row, "kind");
        let is_static = field(name, row, "static")
            .as_bool()
            .unwrap_or_else(|| panic!("targets.nix row `{name}`: `static` is not a bool"));
        let config = field(name, row, "crossSystem")
            .get("config")
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("targets.nix row `{name}`: no crossSystem.config"));
        assert!(!config.is_empty());

        match kind {
            "image" => {
                let p: &Platform = Platform::parse(platform).unwrap_or_else(|e| {
                    panic!("targets.nix row `{name}`: image platform `{platform}`: {e}")
                });
                assert_eq!(
                    p.to_string(),
                    platform,
                    "row `{name}`: platform is not canonical"
                );
                assert_eq!(
                    p.rust_target, rust_target,
                    "row `{name}`: platform {platform} is built by {} in src/platform.rs",
                    p.rust_target
                );
                assert!(is_static, "row `{name}`: image binaries must be static");
                image_platforms.push(platform.to_string());
            }
            "release" => {
                assert!(
                    PLATFORMS.iter().all(|p| p.rust_target != rust_target),
                    "row `{name}`: {rust_target} is an image platform, so kind should be \"image\""
                );
            }
            other => panic!("targets.nix row `{name}`: unknown kind `{other}`"),
        }
        if is_static {
            assert!(
                rust_target.contains("-linux-musl"),
                "row `{name}`: static rows are musl"
            );
        }
    }

    for wanted in ["linux/amd64", "linux/arm64", "linux/386", "linux/arm/v6"] {
        assert!(
            image_platforms.iter().any(|p| p == wanted),
            "no image row for {wanted}"
        );
    }
    for default in ironstar::platform::DEFAULT_PLATFORMS {
        assert!(
            image_platforms.iter().any(|p| p == default),
            "no image row for default {default}"
        );
    }
    let windows = targets
        .get("x86_64-windows")
        .expect("an x86_64-windows row");
    assert_eq!(windows["rustTarget"], "x86_64-pc-windows-gnu");
    assert_eq!(windows["crossSystem"]["config"], "x86_64-w64-mingw32");
    assert_eq!(windows["crossSystem"]["libc"], "msvcrt");
    assert_eq!(windows["kind"], "release");
}

/// `github:OWNER/REPO[/REF]` as the `original` node `nix flake lock` writes.
fn github_original(url: &str) -> Value {
    let rest = url
        .strip_prefix("github:")
        .unwrap_or_else(|| panic!("input url `{url}`: only github: inputs are expected"));
    let parts: Vec<&str> = rest.splitn(3, '/').collect();
    let mut original = serde_json::json!({ "type": "github", "owner": parts[0], "repo": parts[1] });
    if let Some(reference) = parts.get(2) {
        let key = if reference.len() == 40 && reference.bytes().all(|b| b.is_ascii_hexdigit()) {
            "rev"
        } else {
            "ref"
        };
        original[key] = Value::from(*reference);
    }
    original
}

#[test]
fn flake_lock_pins_every_input() {
    let flake = root().join("flake.nix");
    let inputs = nix_json(&["-E", &format!("(import {}).inputs", flake.display())]);
    let lock: Value =
        serde_json::from_str(&std::fs::read_to_string(root().join("flake.lock")).unwrap()).unwrap();

    assert_eq!(lock["version"], 7, "flake.lock version");
    let root_name = lock["root"].as_str().expect("flake.lock root");
    let nodes = lock["nodes"].as_object().expect("flake.lock nodes");
    let root_inputs = nodes[root_name]["inputs"].as_object().expect("root inputs");

    let inputs = inputs.as_object().expect("flake.nix inputs");
    for name in ["nixpkgs", "crane", "rust-overlay"] {
        assert!(inputs.contains_key(name), "flake.nix has no input `{name}`");
    }
    assert_eq!(
        root_inputs.keys().collect::<Vec<_>>(),
        inputs.keys().collect::<Vec<_>>(),
        "flake.lock root inputs differ from flake.nix"
    );

    for (name, input) in inputs {
        let node_name = root_inputs[name].as_str().expect("root input names a node");
        let node = &nodes[node_name];
        let url = input["url"]
            .as_str()
            .unwrap_or_else(|| panic!("input `{name}` has no url"));
        assert_eq!(
            node["original"],
            github_original(url),
            "`{name}`: original vs {url}"
        );

        let locked = &node["locked"];
        assert_eq!(locked["type"], "github", "`{name}` locked type");
        assert_eq!(
            locked["owner"], node["original"]["owner"],
            "`{name}` locked owner"
        );
        assert_eq!(
            locked["repo"], node["original"]["repo"],
            "`{name}` locked repo"
        );
        let rev = locked["rev"]
            .as_str()
            .unwrap_or_else(|| panic!("`{name}` has no locked rev"));
        assert!(
            rev.len() == 40 && rev.bytes().all(|b| b.is_ascii_hexdigit()),
            "`{name}` rev `{rev}`"
        );
        let nar = locked["narHash"]
            .as_str()
            .unwrap_or_else(|| panic!("`{name}` has no narHash"));
        let b64 = nar
            .strip_prefix("sha256-")
            .unwrap_or_else(|| panic!("`{name}` narHash `{nar}`"));
        assert!(
            b64.len() == 44
                && b64.ends_with('=')
                && b64[..43]
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/'),
            "`{name}` narHash `{nar}` is not sha256-<44 base64 chars>"
        );
        let modified = locked["lastModified"]
            .as_u64()
            .unwrap_or_else(|| panic!("`{name}` has no lastModified"));
        assert!(modified > 1_600_000_000, "`{name}` lastModified {modified}");

        // `inputs.<x>.follows = "nixpkgs"` in flake.nix is ["nixpkgs"] in the lock.
        if let Some(sub) = input.get("inputs").and_then(Value::as_object) {
            for (sub_name, sub_input) in sub {
                let follows = sub_input["follows"]
                    .as_str()
                    .expect("only follows overrides");
                let path: Vec<&str> = follows.split('/').collect();
                assert_eq!(
                    node["inputs"][sub_name.as_str()],
                    serde_json::json!(path),
                    "`{name}/{sub_name}` should follow `{follows}`"
                );
            }
        }
    }
    assert_eq!(
        nodes["rust-overlay"]["inputs"]["nixpkgs"],
        serde_json::json!(["nixpkgs"]),
        "rust-overlay must follow nixpkgs"
    );
}

fn check_jsonschema(schema: &str, files: &[PathBuf]) {
    let mut args = vec!["--builtin-schema", schema];
    args.extend(files.iter().map(|f| f.to_str().unwrap()));
    let out = run("check-jsonschema", &args, JSONSCHEMA);
    assert!(
        out.status.success(),
        "check-jsonschema {schema}:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn workflows_and_action_match_githubs_schemas() {
    let mut workflows = Vec::new();
    files_under(
        &root().join(".github/workflows"),
        &|p| p.extension().is_some_and(|e| e == "yml" || e == "yaml"),
        &mut workflows,
    );
    workflows.sort();
    assert!(!workflows.is_empty(), "no workflows in .github/workflows");
    check_jsonschema("vendor.github-workflows", &workflows);
    check_jsonschema("vendor.github-actions", &[root().join("action.yml")]);
}

#[test]
fn the_action_runs_the_ironstar_image_without_a_shell() {
    let action = std::fs::read_to_string(root().join("action.yml")).unwrap();
    assert!(
        action.contains("using: docker"),
        "action.yml must be a Docker action"
    );
    assert!(
        action.contains("image: docker://ghcr.io/"),
        "action.yml must run the pushed image"
    );
    for output in ["digest:", "image:"] {
        assert!(
            action.contains(output),
            "action.yml must declare output {output}"
        );
    }
}
