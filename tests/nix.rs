//! What can be checked of the Nix flake, the lock and the CI files without fetching nixpkgs:
//! every `.nix` file parses, `nix/targets.nix` agrees with ironstar's platform table,
//! `flake.lock` is a consistent version-7 lock of `flake.nix`'s inputs, the workflows and
//! `action.yml` match GitHub's schemas, and the push app's script (rendered by nix-instantiate)
//! passes the right arguments to a fake `ironstar` and refuses a dirty tree.
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
    for (name, row) in &targets {
        if let Some(systems) = row.get("buildOn") {
            let systems = systems
                .as_array()
                .unwrap_or_else(|| panic!("targets.nix row `{name}`: `buildOn` is not a list"));
            assert!(!systems.is_empty(), "row `{name}`: empty `buildOn`");
        }
    }
    let windows = targets
        .get("x86_64-windows")
        .expect("an x86_64-windows row");
    // nixpkgs' wine64 (crane's emulator for MinGW) exists on x86_64 only.
    assert_eq!(
        windows["buildOn"],
        serde_json::json!(["x86_64-linux", "x86_64-darwin"])
    );
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

/// The push app as the flake makes it: `nix/push-script.nix` rendered by nix-instantiate, run by
/// bash with writeShellApplication's options, and a fake `ironstar` on PATH that records its
/// arguments (one a line) and whether it still saw `$IRONSTAR_TAGS`.
struct PushApp {
    dir: tempfile::TempDir,
}

impl PushApp {
    fn new(repository: Option<&str>, tags: &[&str], dirty: bool) -> PushApp {
        let nix_str = |s: &str| serde_json::to_string(s).unwrap();
        let expr = format!(
            "import {}/nix/push-script.nix {{ name = \"ironstar\"; layout = \"/nix/store/x-ironstar-oci-layout\"; repository = {}; tags = [ {} ]; dirty = {dirty}; }}",
            root().display(),
            repository.map_or("null".to_string(), nix_str),
            tags.iter().map(|t| nix_str(t)).collect::<Vec<_>>().join(" "),
        );
        let text: String = serde_json::from_value(nix_json(&["-E", &expr])).unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("push-ironstar"),
            format!("set -o errexit\nset -o nounset\nset -o pipefail\n\n{text}"),
        )
        .unwrap();
        std::fs::create_dir(dir.path().join("bin")).unwrap();
        let fake = dir.path().join("bin/ironstar");
        std::fs::write(
            &fake,
            "#!/bin/sh\nprintf '%s\\n' \"$@\" > \"$FAKE_ARGS\"\necho \"env ${IRONSTAR_TAGS-unset}\" >> \"$FAKE_ARGS\"\n",
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
        PushApp { dir }
    }

    /// Run it with these environment variables (and no other IRONSTAR_*): the fake's
    /// arguments, or Err(stderr) when the script refused before calling ironstar.
    fn run(&self, env: &[(&str, &str)], args: &[&str]) -> Result<Vec<String>, String> {
        let record = self.dir.path().join("args");
        let _ = std::fs::remove_file(&record);
        let path = format!(
            "{}:{}",
            self.dir.path().join("bin").display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let mut cmd = Command::new("bash");
        cmd.arg(self.dir.path().join("push-ironstar"))
            .args(args)
            .env("PATH", path)
            .env("FAKE_ARGS", &record);
        for (k, _) in std::env::vars() {
            if k.starts_with("IRONSTAR_") {
                cmd.env_remove(k);
            }
        }
        cmd.envs(env.iter().copied());
        let out = cmd.output().expect("run bash");
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        if !out.status.success() {
            assert!(!record.exists(), "ironstar ran although the script failed");
            return Err(stderr);
        }
        let args = std::fs::read_to_string(&record).expect("the script ran ironstar");
        Ok(args.lines().map(String::from).collect())
    }
}

/// `push --layout L --repository R --tag ...` then the fake's `env` line.
fn push_args(repository: &str, tags: &[&str]) -> Vec<String> {
    let mut v = vec![
        "push",
        "--layout",
        "/nix/store/x-ironstar-oci-layout",
        "--repository",
        repository,
    ];
    for t in tags {
        v.extend(["--tag", t]);
    }
    v.push("env unset");
    v.into_iter().map(String::from).collect()
}

#[test]
fn the_push_app_passes_ironstar_tags_split_on_commas_and_newlines() {
    let app = PushApp::new(Some("ghcr.io/org/ironstar"), &["latest", "ab64ad7"], false);
    let repo = "ghcr.io/org/ironstar";
    assert_eq!(
        app.run(&[], &[]).unwrap(),
        push_args(repo, &["latest", "ab64ad7"])
    );
    for (tags, want) in [
        ("", vec!["latest", "ab64ad7"]),
        (",\n, ", vec!["latest", "ab64ad7"]),
        ("v1", vec!["v1"]),
        ("a,b", vec!["a", "b"]),
        (",x", vec!["x"]),
        ("a,,b,", vec!["a", "b"]),
        ("a\nb\n\nc\n", vec!["a", "b", "c"]),
        (
            "sha, latest\nv1.2.3,1.2.3",
            vec!["sha", "latest", "v1.2.3", "1.2.3"],
        ),
        ("a\r\nb", vec!["a", "b"]),
    ] {
        assert_eq!(
            app.run(&[("IRONSTAR_TAGS", tags)], &[]).unwrap(),
            push_args(repo, &want),
            "IRONSTAR_TAGS={tags:?}"
        );
    }
    // An empty repository is unset; a set one wins; extra arguments reach ironstar.
    assert_eq!(
        app.run(&[("IRONSTAR_REPOSITORY", "")], &[]).unwrap(),
        push_args(repo, &["latest", "ab64ad7"])
    );
    let mut want = push_args("localhost:5000/me/app", &["v2"]);
    want.insert(want.len() - 1, "--plain-http".into());
    want.insert(want.len() - 1, "-j2".into());
    assert_eq!(
        app.run(
            &[
                ("IRONSTAR_REPOSITORY", "localhost:5000/me/app"),
                ("IRONSTAR_TAGS", "v2"),
                ("IRONSTAR_PLAIN_HTTP", "1")
            ],
            &["-j2"]
        )
        .unwrap(),
        want
    );

    let nowhere = PushApp::new(None, &["latest"], false);
    let err = nowhere
        .run(&[("IRONSTAR_REPOSITORY", "")], &[])
        .unwrap_err();
    assert!(err.contains("set IRONSTAR_REPOSITORY"), "{err}");
}

#[test]
fn the_push_app_refuses_a_dirty_tree_and_never_tags_it_latest() {
    let repo = "ghcr.io/org/ironstar";
    // As the flake renders it for a dirty tree: `latest` already dropped.
    let app = PushApp::new(Some(repo), &["ab64ad7-dirty"], true);
    let err = app.run(&[], &[]).unwrap_err();
    assert!(err.contains("IRONSTAR_ALLOW_DIRTY=1"), "{err}");
    for allow in ["", "0", "yes"] {
        assert!(app.run(&[("IRONSTAR_ALLOW_DIRTY", allow)], &[]).is_err());
    }
    let allowed = [("IRONSTAR_ALLOW_DIRTY", "1")];
    assert_eq!(
        app.run(&allowed, &[]).unwrap(),
        push_args(repo, &["ab64ad7-dirty"])
    );
    let err = app
        .run(&[allowed[0], ("IRONSTAR_TAGS", "edge,latest")], &[])
        .unwrap_err();
    assert!(err.contains("latest"), "{err}");

    // The script itself refuses `latest` even if a caller's default tags hold it.
    let app = PushApp::new(Some(repo), &["latest", "ab64ad7-dirty"], true);
    assert!(app.run(&allowed, &[]).unwrap_err().contains("latest"));
    // A clean tree pushes `latest` whatever IRONSTAR_ALLOW_DIRTY says.
    let clean = PushApp::new(Some(repo), &["latest"], false);
    assert_eq!(
        clean.run(&[("IRONSTAR_ALLOW_DIRTY", "0")], &[]).unwrap(),
        push_args(repo, &["latest"])
    );
}

/// The action passes blank optional inputs as empty IRONSTAR_* variables: ironstar itself must
/// read them as unset (the image file's repository and tags), not as `--repository ""`.
#[test]
fn ironstar_reads_empty_action_inputs_as_unset() {
    let out = Command::new(env!("CARGO_BIN_EXE_ironstar"))
        .args(["push", "--layout", "/nonexistent-layout"])
        .env("IRONSTAR_REPOSITORY", "")
        .env("IRONSTAR_TAGS", ",\n")
        // An empty sign-key input: no signing, not a key file named "".
        .env("IRONSTAR_SIGN_KEY", "")
        .env("COSIGN_PRIVATE_KEY", "")
        .env("COSIGN_PASSWORD", "")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("no repository to push to"), "{err}");
}

/// Every action a workflow runs is pinned by commit (the tag goes in a comment): a moved tag
/// cannot change what runs in a job holding `packages: write`.
#[test]
fn workflow_actions_are_pinned_by_commit() {
    let mut workflows = Vec::new();
    files_under(
        &root().join(".github/workflows"),
        &|p| p.extension().is_some_and(|e| e == "yml" || e == "yaml"),
        &mut workflows,
    );
    let mut seen = 0;
    for file in &workflows {
        for line in std::fs::read_to_string(file).unwrap().lines() {
            let Some(used) = line
                .trim_start()
                .trim_start_matches("- ")
                .strip_prefix("uses:")
            else {
                continue;
            };
            let used = used.split('#').next().unwrap().trim();
            if used.starts_with("docker://") || used.starts_with("./") {
                continue;
            }
            let (_, rev) = used
                .split_once('@')
                .unwrap_or_else(|| panic!("{}: `{used}` has no @ref", file.display()));
            assert!(
                rev.len() == 40 && rev.bytes().all(|b| b.is_ascii_hexdigit()),
                "{}: `{used}` is not pinned by commit",
                file.display()
            );
            seen += 1;
        }
    }
    assert!(seen > 0, "no actions found in the workflows");
}
