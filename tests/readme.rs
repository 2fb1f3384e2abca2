//! The README, as a new user meets it: its install block is the script CI runs, its local-registry
//! block runs as written (twins: a fixture layout instead of a release build, a free port instead
//! of 5000, a temporary directory instead of /tmp), a fresh clone passes the schema-checking
//! tests, and output fits a terminal and a log. Its other blocks are the guide's (tests/guide.rs).

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use support::common::*;
use support::workdir::Workdir;

/// The ```sh blocks of the README, each with the `## ` section it is in.
fn sh_blocks() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let mut blocks = Vec::new();
    let (mut section, mut block) = (String::new(), None::<String>);
    for line in text.lines() {
        match (&mut block, line) {
            (None, l) if l.starts_with("## ") => section = l[3..].to_string(),
            (None, "```sh") => block = Some(String::new()),
            (Some(b), "```") => {
                blocks.push((section.clone(), std::mem::take(b)));
                block = None;
            }
            (Some(b), l) => {
                b.push_str(l);
                b.push('\n');
            }
            _ => {}
        }
    }
    blocks
}

fn blocks_of(section: &str) -> Vec<String> {
    let found: Vec<String> = sh_blocks()
        .into_iter()
        .filter(|(s, _)| s.starts_with(section))
        .map(|(_, b)| b)
        .collect();
    assert!(
        !found.is_empty(),
        "README has no sh block under `## {section}`"
    );
    found
}

#[test]
fn install_block_is_the_script_ci_runs_and_the_test_command_is_cargo_test() {
    let quick = blocks_of("Quickstart");
    assert_eq!(
        quick[0],
        "sh scripts/install-deps.sh\ncargo install --locked --path .\n"
    );
    let ci = std::fs::read_to_string(repo().join(".ci/run")).unwrap();
    assert!(
        ci.contains(&format!("\n{}", quick[0])),
        ".ci/run does not run the README's install block"
    );
    assert!(repo().join("scripts/install-deps.sh").is_file());
    assert!(quick[1].contains("\ncargo test --locked\n"), "{}", quick[1]);
    assert!(ci.contains("\ncargo test --locked\n"));
}

#[test]
fn local_registry_push_block_runs_as_written() {
    require_tool("docker-registry", "docker-registry");
    require_tool("curl", "curl");
    let w = Workdir::new();
    let block = blocks_of("Pushing").remove(0);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    assert!(block.contains("127.0.0.1:5000"), "{block}");
    let out = w.sh(&block.replace("127.0.0.1:5000", &format!("127.0.0.1:{port}")));
    let layout = w.path().join("target/oci/ironstar");
    let top = json(&std::fs::read(layout.join("index.json")).unwrap());
    let digest = top["manifests"][0]["digest"].as_str().unwrap();
    assert!(
        out.starts_with(&format!("127.0.0.1:{port}/ironstar@{digest}\n")),
        "{out}"
    );
    // skopeo inspect of the pushed tag names the same digest.
    assert!(out.contains(&format!("\"Digest\": \"{digest}\"")), "{out}");
}

#[test]
fn no_arguments_prints_the_usage_as_a_usage_error() {
    let o = run(&mut ironstar());
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(err.contains("Usage: ironstar [OPTIONS] <COMMAND>"), "{err}");
    assert!(err.contains("  load "), "{err}");
    assert!(o.stdout.is_empty());
}

#[test]
fn each_cause_of_an_error_is_said_once() {
    let o = run(ironstar().args([
        "check-binary",
        "--platform",
        "linux/amd64",
        "/nonexistent/app",
    ]));
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stderr(&o),
        "ironstar: error: /nonexistent/app: cannot read binary: No such file or directory (os error 2)\n"
    );
    // A binary missing from a cargo target directory: build it, or let ironstar build it.
    let o = run(ironstar().args([
        "build",
        "--binary",
        "linux/arm64=target/aarch64-unknown-linux-musl/release/nothing-here",
    ]));
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        err.contains("cargo build --release --target aarch64-unknown-linux-musl"),
        "{err}"
    );
    assert!(err.contains("ironstar build --cargo"), "{err}");
    assert_eq!(err.matches("os error").count(), 0, "{err}");
}

/// A layout and a stand-in `podman` (it swallows the archive and names the image), so that
/// `ironstar load` logs an INFO line without touching any image store.
fn load_setup() -> (tempfile::TempDir, String) {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    build_layout(&tmp.path().join("layout"));
    let engine = tmp.path().join("bin/podman");
    std::fs::create_dir_all(engine.parent().unwrap()).unwrap();
    std::fs::write(
        &engine,
        "#!/bin/sh\ncat >/dev/null\necho 'Loaded image: localhost/hello:latest'\n",
    )
    .unwrap();
    std::fs::set_permissions(&engine, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}",
        engine.parent().unwrap().display(),
        std::env::var("PATH").unwrap()
    );
    (tmp, path)
}

/// Logs (an INFO line) and results with stderr piped: plain text for a log.
#[test]
fn piped_output_has_no_escape_bytes() {
    let (tmp, path) = load_setup();
    let o = run(ironstar()
        .args(["load", "--layout"])
        .arg(tmp.path().join("layout"))
        .env("PATH", path)
        .env_remove("NO_COLOR"));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("INFO loading linux/amd64"),
        "{}",
        stderr(&o)
    );
    assert_eq!(stdout(&o), "localhost/hello:latest\n");
    for bytes in [&o.stdout, &o.stderr] {
        assert!(!bytes.contains(&0x1b), "{}", String::from_utf8_lossy(bytes));
    }
    let usage = run(&mut ironstar());
    assert!(!usage.stderr.contains(&0x1b));
}

/// The same on a terminal (`script` gives the command a pty): colour by default, none with
/// `NO_COLOR=1`.
#[test]
fn no_color_on_a_terminal_has_no_escape_bytes() {
    require_tool("script", "bsdutils");
    let (tmp, path) = load_setup();
    let on_a_pty = |no_color: bool| {
        let cmd = format!(
            "{} load --layout {}",
            env!("CARGO_BIN_EXE_ironstar"),
            tmp.path().join("layout").display()
        );
        let mut c = Command::new("script");
        c.args(["-qec", &cmd, "/dev/null"])
            .env("PATH", &path)
            .env_remove("NO_COLOR");
        if no_color {
            c.env("NO_COLOR", "1");
        }
        let o = run(&mut c);
        assert!(o.status.success(), "{}", stdout(&o));
        o.stdout
    };
    let coloured = on_a_pty(false);
    assert!(
        coloured.contains(&0x1b),
        "no colour on a terminal: the test cannot tell NO_COLOR apart\n{}",
        String::from_utf8_lossy(&coloured)
    );
    let plain = on_a_pty(true);
    assert!(String::from_utf8_lossy(&plain).contains("INFO loading"));
    assert!(
        !plain.contains(&0x1b),
        "{}",
        String::from_utf8_lossy(&plain)
    );
}

/// The outer target directory (`…/target`), shared with the clone so its build scripts and proc
/// macros are not built again.
fn target_dir() -> PathBuf {
    let bin = Path::new(env!("CARGO_BIN_EXE_ironstar"));
    bin.parent().unwrap().parent().unwrap().to_path_buf()
}

/// The host's target triple, from rustc.
fn host_triple() -> String {
    let v = ok(Command::new("rustc").arg("-vV"));
    v.lines()
        .find_map(|l| l.strip_prefix("host: "))
        .expect("rustc -vV names the host")
        .to_string()
}

/// A fresh clone, with nothing beside it (no `../shared`) and no `OCI_SCHEMAS`, passes the
/// schema-checking build tests with only what the install script installs. A clone holds only
/// committed files: uncommitted changes are not what this tests.
///
/// cargo hashes a path package by its path relative to the workspace, so the clone's ironstar
/// would take the place of this one's artifacts (and `target/debug/ironstar`, which the other
/// tests run) in a shared target directory: `--target <host>` keeps the clone's artifacts under
/// `target/<host>/`, while the build scripts and proc macros are shared.
#[test]
fn a_fresh_clone_passes_the_schema_checking_tests() {
    require_tool("git", "git");
    let tmp = tempfile::tempdir().unwrap();
    let clone = tmp.path().join("ironstar");
    ok(Command::new("git")
        .args(["clone", "--quiet", "--no-hardlinks"])
        .arg(repo())
        .arg(&clone));
    assert!(!tmp.path().join("shared").exists());
    let o = run(Command::new(env!("CARGO"))
        .current_dir(&clone)
        .args([
            "test",
            "--locked",
            "--target",
            &host_triple(),
            "--test",
            "build",
        ])
        .args(["--", "--test-threads", "2"])
        .env_remove("OCI_SCHEMAS")
        .env("CARGO_TARGET_DIR", target_dir())
        .env("CARGO_TERM_COLOR", "never"));
    let (out, err) = (stdout(&o), stderr(&o));
    assert!(
        o.status.success(),
        "cargo test in a fresh clone failed:\n{out}\n{err}"
    );
    // The tests that validate against the schemas ran, and passed.
    for t in [
        "layout_is_valid_and_both_binaries_run_from_it",
        "image_file_sets_config_files_and_annotations",
    ] {
        assert!(
            out.contains(&format!("test {t} ... ok")),
            "{t} did not pass:\n{out}"
        );
    }
}

/// The schema oracle the build tests use can say no: with the installed schemas (draft-04 named by
/// `https` in Debian's package), a manifest with a bad digest and no layers is rejected.
#[test]
fn the_installed_schemas_reject_a_bad_manifest() {
    let manifest = |digest: &str| {
        let d = |media: &str| serde_json::json!({"mediaType": media, "size": 2, "digest": digest});
        serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": d("application/vnd.oci.image.config.v1+json"),
            "layers": [d("application/vnd.oci.image.layer.v1.tar+gzip")],
        })
    };
    validate(
        "image-manifest-schema.json",
        &manifest(&format!("sha256:{}", "a".repeat(64))),
    );
    let bad = manifest("not a digest");
    let refused = std::panic::catch_unwind(|| validate("image-manifest-schema.json", &bad));
    let message = *refused
        .expect_err("the schema accepted a bad digest")
        .downcast::<String>()
        .unwrap();
    assert!(message.contains("at /config/digest"), "{message}");
}
