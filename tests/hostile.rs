//! What a hostile repository, a signal or a full disk does to `build`, and what a hostile layout
//! does to `push`, `load` and `sbom --layout` (issue 23): definition sources confined to the
//! definition's directory, workspace or repository; NUL bytes refused where they stand; SIGTERM,
//! SIGHUP and SIGINT cleaning up the temporary layout (and cargo); ENOSPC naming the path;
//! symlinked blobs refused.

mod support;

use std::fs;
use std::path::Path;
use std::process::Output;

use support::common::*;

/// A failed build: one line (no panic, nothing on stdout), containing every `expect`.
fn one_line_failure(o: &Output, expect: &[&str]) -> String {
    let err = stderr(o);
    assert!(!o.status.success(), "should fail; stderr: {err}");
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(stdout(o).is_empty(), "printed on stdout: {}", stdout(o));
    assert!(!err.contains("panicked"), "panicked: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "not one line: {err}");
    for e in expect {
        assert!(err.contains(e), "`{e}` missing from: {err}");
    }
    err
}

fn build_file(def: &Path, out: &Path, extra: &[&str]) -> Output {
    let f = fixtures();
    run(ironstar()
        .arg("build")
        .arg(def)
        .arg(format!("--binary=linux/amd64={}", f.amd64.display()))
        .args(extra)
        .arg("-o")
        .arg(out))
}

const HEAD: &str = "name = \"app\"\nplatforms = [\"linux/amd64\"]\n";

fn with_source(source: &str) -> String {
    format!("{HEAD}[[files]]\nsource = \"{source}\"\npath = \"/etc/x\"\n")
}

#[test]
fn sources_outside_the_definitions_directory_or_repository_are_refused_unless_allowed() {
    let tmp = tempfile::tempdir().unwrap();
    let top = tmp.path().canonicalize().unwrap();
    let images = top.join("repo/images");
    fs::create_dir_all(&images).unwrap();
    fs::write(top.join("secret"), "host secret").unwrap();
    fs::write(top.join("repo/shared.txt"), "in the repository").unwrap();
    std::os::unix::fs::symlink(top.join("secret"), images.join("link")).unwrap();
    let def = images.join("app.toml");
    let out = top.join("out");

    // A symlink leaving the directory, an absolute path, a `..`: each at the source's line:col.
    for (source, resolved) in [
        ("link", top.join("secret")),
        ("/etc/hostname", "/etc/hostname".into()),
        ("../../secret", top.join("secret")),
        ("../shared.txt", top.join("repo/shared.txt")),
    ] {
        if !resolved.exists() {
            continue;
        }
        fs::write(&def, with_source(source)).unwrap();
        let o = build_file(&def, &out, &[]);
        let at = format!("{}:4:10:", def.display());
        one_line_failure(
            &o,
            &[
                &at,
                &resolved.display().to_string(),
                "--allow-outside-sources",
            ],
        );
        assert!(!out.exists());
    }

    // Inside a git work tree its top is allowed too, but never `.git` itself.
    fs::create_dir_all(top.join("repo/.git")).unwrap();
    fs::write(top.join("repo/.git/config"), "[http] extraheader = token").unwrap();
    fs::write(&def, with_source("../shared.txt")).unwrap();
    let o = build_file(&def, &out, &[]);
    assert!(
        o.status.success(),
        "a source in the repository: {}",
        stderr(&o)
    );
    fs::write(&def, with_source("../.git/config")).unwrap();
    one_line_failure(
        &build_file(&def, &out, &[]),
        &[".git", "--allow-outside-sources"],
    );

    // The opt-in: the file is taken, as it was before the rule.
    fs::write(&def, with_source("link")).unwrap();
    let o = build_file(&def, &out, &["--allow-outside-sources"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let index = json(&blob(&out, digest_line(&stdout(&o)).trim()));
    let manifest = json(&blob(
        &out,
        index["manifests"][0]["digest"].as_str().unwrap(),
    ));
    let layer = layer_entries(&blob(
        &out,
        manifest["layers"][0]["digest"].as_str().unwrap(),
    ));
    let x = layer
        .iter()
        .find(|e| e.0 == "etc/x")
        .expect("etc/x in the layer");
    assert_eq!(x.5, b"host secret");
}

#[test]
fn cargo_metadata_sources_stay_in_the_package_or_workspace() {
    let tmp = tempfile::tempdir().unwrap();
    let top = tmp.path().canonicalize().unwrap();
    let pkg = top.join("ws/app");
    fs::create_dir_all(pkg.join("src")).unwrap();
    fs::write(top.join("secret"), "host secret").unwrap();
    fs::write(top.join("ws/passwd"), "root:x:0:0::/:/x\n").unwrap();
    fs::write(
        top.join("ws/Cargo.toml"),
        "[workspace]\nmembers = [\"app\"]\nresolver = \"2\"\n",
    )
    .unwrap();
    fs::write(pkg.join("src/main.rs"), "fn main() {}\n").unwrap();
    let manifest = |source: &str| {
        format!(
            "[package]\nname = \"app\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n\
             [package.metadata.ironstar]\nplatforms = [\"linux/amd64\"]\n\
             [[package.metadata.ironstar.files]]\nsource = \"{source}\"\npath = \"/etc/x\"\n"
        )
    };
    // Only the definition is read before cargo would run: a refused source stops it first.
    fs::write(pkg.join("Cargo.toml"), manifest("../../secret")).unwrap();
    let o = run(ironstar()
        .current_dir(&pkg)
        .args(["build", "--cargo", "--offline", "-o"])
        .arg(top.join("out")));
    let at = format!("{}:9:10:", pkg.join("Cargo.toml").display());
    one_line_failure(&o, &[&at, &top.join("secret").display().to_string()]);
    // The workspace's own file is fine.
    fs::write(pkg.join("Cargo.toml"), manifest("../passwd")).unwrap();
    let out = top.join("out");
    let o = run(ironstar()
        .current_dir(&pkg)
        .args(["build", "--cargo", "--offline", "--target-dir"])
        .arg(top.join("target"))
        .arg("-o")
        .arg(&out));
    assert!(o.status.success(), "{}", stderr(&o));
    let index = json(&blob(&out, digest_line(&stdout(&o)).trim()));
    let manifest = json(&blob(
        &out,
        index["manifests"][0]["digest"].as_str().unwrap(),
    ));
    let layer = layer_entries(&blob(
        &out,
        manifest["layers"][0]["digest"].as_str().unwrap(),
    ));
    let x = layer
        .iter()
        .find(|e| e.0 == "etc/x")
        .expect("etc/x in the layer");
    assert_eq!(x.5, b"root:x:0:0::/:/x\n");
}

#[test]
fn nul_bytes_in_config_strings_are_refused_where_they_stand() {
    let tmp = tempfile::tempdir().unwrap();
    let def = tmp.path().join("app.toml");
    let out = tmp.path().join("out");
    // Each case: the line to add after HEAD, and the column of the offending string.
    let cases = [
        (r#"entrypoint = ["/app", "/a\u0000b"]"#, 23),
        (r#"cmd = ["serve\u0000"]"#, 8),
        (r#"user = "0\u0000:0""#, 8),
        (r#"workdir = "/\u0000""#, 11),
        (r#"stop_signal = "SIGTERM\u0000""#, 15),
        (r#"version = "1\u00002""#, 11),
        ("[env]\nRUST_LOG = \"in\\u0000fo\"", 12),
        ("[env]\n\"A\\u0000B\" = \"x\"", 1),
        ("[labels]\n\"a\" = \"b\\u0000\"", 7),
        ("[labels]\n\"a\\u0000\" = \"b\"", 1),
        ("[annotations]\n\"org.x\" = \"\\u0000\"", 11),
    ];
    for (line, column) in cases {
        fs::write(&def, format!("{HEAD}{line}\n")).unwrap();
        let o = build_file(&def, &out, &[]);
        let row = 3 + line.matches('\n').count();
        let at = format!("{}:{row}:{column}:", def.display());
        one_line_failure(&o, &[&at, "NUL"]);
        assert!(!out.exists(), "{line}");
    }
}
