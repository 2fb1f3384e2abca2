//! What a hostile repository, a signal or a full disk does to `build`, and what a hostile layout
//! does to `push`, `load` and `sbom --layout` (issue 23): definition sources confined to the
//! definition's directory, workspace or repository; NUL bytes refused where they stand; SIGTERM,
//! SIGHUP and SIGINT cleaning up the temporary layout (and cargo); ENOSPC naming the path;
//! symlinked blobs, tampered blobs and digests that are paths refused before anything is sent.

mod support;

use std::fs;
use std::path::Path;
use std::process::Output;

use support::cli::{expect_fail, expect_ok, layout, tag_status};
use support::common::*;
use support::registry::{Auth, Registry};

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
    assert_eq!(etc_x(&out, &o), b"host secret");
}

/// `/etc/x` as the first platform's layer of the build `o` (to `out`) holds it.
fn etc_x(out: &Path, o: &Output) -> Vec<u8> {
    let index = json(&blob(out, digest_line(&stdout(o)).trim()));
    let manifest = json(&blob(
        out,
        index["manifests"][0]["digest"].as_str().unwrap(),
    ));
    let layer = layer_entries(&blob(
        out,
        manifest["layers"][0]["digest"].as_str().unwrap(),
    ));
    layer
        .into_iter()
        .find(|e| e.0 == "etc/x")
        .expect("etc/x in the layer")
        .5
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
    assert_eq!(etc_x(&out, &o), b"root:x:0:0::/:/x\n");
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

fn send(signal: &str, pid: u32) {
    let ok = std::process::Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -{signal} {pid}");
}

#[test]
fn sigterm_sighup_and_sigint_during_a_build_remove_its_temporary_layout() {
    use std::os::unix::process::ExitStatusExt as _;
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("img");
    let first = build_layout(&out);
    let index_before = fs::read(out.join("index.json")).unwrap();
    let big = big_binary(tmp.path(), 300);
    // As under `nohup`: the children would inherit SIGHUP ignored, and ironstar keeps that.
    // SAFETY: setting a disposition to SIG_IGN runs no handler.
    unsafe { libc::signal(libc::SIGHUP, libc::SIG_IGN) };
    for (signal, number) in [("TERM", 15), ("HUP", 1), ("INT", 2)] {
        let mut child = spawn_build(&big, &out);
        // Once its temporary layout holds part of the layer.
        wait_for("the temporary layout", || {
            names_with(tmp.path(), ".img.tmp-").iter().any(|n| {
                fs::read_dir(tmp.path().join(n).join("blobs/sha256"))
                    .is_ok_and(|mut d| d.next().is_some())
            })
        });
        std::thread::sleep(std::time::Duration::from_millis(100));
        send(signal, child.id());
        let status = child.wait().unwrap();
        assert_eq!(
            status.signal(),
            Some(number),
            "SIG{signal}: ended by {status}, not by the signal (finished before it?)"
        );
        let left = names_with(tmp.path(), ".img");
        assert!(left.is_empty(), "SIG{signal} left {left:?}");
        assert_eq!(fs::read(out.join("index.json")).unwrap(), index_before);
        assert!(out.join("blobs/sha256").join(&first[7..]).is_file());
    }
}

/// Processes whose command line contains `token`.
fn processes_with(token: &str) -> Vec<String> {
    fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let cmdline = fs::read(e.path().join("cmdline")).ok()?;
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            cmdline
                .contains(token)
                .then(|| format!("{}: {cmdline}", e.file_name().to_string_lossy()))
        })
        .collect()
}

#[test]
fn sigterm_during_a_cargo_build_kills_and_reaps_cargo_and_its_compilers() {
    use std::os::unix::fs::PermissionsExt as _;
    use std::os::unix::process::ExitStatusExt as _;
    let tmp = tempfile::tempdir().unwrap();
    // A rustc wrapper that waits: cargo's first rustc call hangs there, a grandchild of ironstar.
    let token = format!("3600.{}", std::process::id());
    let wrapper = tmp.path().join("slow-rustc");
    fs::write(&wrapper, format!("#!/bin/sh\nsleep {token}\nexec \"$@\"\n")).unwrap();
    fs::set_permissions(&wrapper, fs::Permissions::from_mode(0o755)).unwrap();
    let mut child = default_signals(&mut ironstar())
        .env("RUSTC_WRAPPER", &wrapper)
        .args(["build", "--cargo", "--offline", "--platform", "linux/amd64"])
        .arg("--manifest-path")
        .arg(repo().join("tests/fixtures/hello/Cargo.toml"))
        .arg("--target-dir")
        .arg(tmp.path().join("target"))
        .arg("-o")
        .arg(tmp.path().join("img"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_for("cargo to call the wrapper", || {
        !processes_with(&token).is_empty()
    });
    send("TERM", child.id());
    let status = child.wait().unwrap();
    assert_eq!(status.signal(), Some(15), "ended by {status}");
    // cargo (its command line names the target directory), the wrapper and its sleep: killed
    // with their group. Only init's reaping of the orphaned grandchildren is waited for.
    let target = tmp.path().join("target").display().to_string();
    let left = || [processes_with(&token), processes_with(&target)].concat();
    let started = std::time::Instant::now();
    while !left().is_empty() && started.elapsed().as_secs() < 5 {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(left().is_empty(), "left running: {:?}", left());
    assert!(names_with(tmp.path(), ".img").is_empty());
}

/// A tmpfs of `size` mounted at `dir` while this lives; `None` (the reason printed) where this
/// process may not mount.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Option<Tmpfs> {
        fs::create_dir_all(dir).unwrap();
        let o = run(std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir));
        if !o.status.success() {
            eprintln!(
                "skipped: cannot mount a {size} tmpfs at {} (needs root or CAP_SYS_ADMIN): {}",
                dir.display(),
                stderr(&o).trim()
            );
            return None;
        }
        Some(Tmpfs(dir.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_names_the_path_and_whether_it_was_the_output_or_the_cache() {
    let tmp = tempfile::tempdir().unwrap();
    let big = big_binary(tmp.path(), 4);
    let small = tmp.path().join("small");
    let Some(_mounted) = Tmpfs::mount(&small, "1m") else {
        return;
    };
    // The output on the full disk: the failed file, as the output's, and what to do.
    let out = small.join("img");
    let o = run(ironstar()
        .arg("build")
        .arg(format!("--binary=linux/amd64={}", big.display()))
        .arg("-o")
        .arg(&out));
    let err = one_line_failure(
        &o,
        &[
            "writing the output layout: ",
            &format!("{}/.img.tmp-", small.display()),
            "No space left on device",
            "another --output",
        ],
    );
    assert!(err.contains("/blobs/sha256/"), "{err}");
    assert!(names_with(&small, "").is_empty(), "left on the disk: {err}");

    // The cache on the full disk: the build goes on, and says where the cache could not write.
    let out = tmp.path().join("img");
    let o = run(ironstar()
        .env_remove("IRONSTAR_NO_CACHE")
        .arg("build")
        .arg(format!("--binary=linux/amd64={}", big.display()))
        .arg("--cache-dir")
        .arg(small.join("cache"))
        .arg("-o")
        .arg(&out));
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    let warning = err
        .lines()
        .find(|l| l.contains("layer cache"))
        .unwrap_or_else(|| panic!("no word of the cache: {err}"));
    assert!(
        warning.contains(&format!("{}/layers/", small.join("cache").display()))
            && warning.contains("No space left on device")
            && warning.contains("--no-cache"),
        "{warning}"
    );
}

/// Copy the layout `from` to `to` (plain files), then replace `rel` in it by a link to a copy of
/// itself outside the layout: same bytes, same size, so only the link itself can be refused.
fn layout_with_link(from: &Path, to: &Path, rel: &str) {
    let copy = |src: &Path, dst: &Path| {
        fs::create_dir_all(dst.join("blobs/sha256")).unwrap();
        for name in ["oci-layout", "index.json"] {
            fs::copy(src.join(name), dst.join(name)).unwrap();
        }
        for e in fs::read_dir(src.join("blobs/sha256")).unwrap().flatten() {
            fs::copy(e.path(), dst.join("blobs/sha256").join(e.file_name())).unwrap();
        }
    };
    copy(from, to);
    let outside = to.with_extension("outside");
    fs::copy(to.join(rel), &outside).unwrap();
    fs::remove_file(to.join(rel)).unwrap();
    std::os::unix::fs::symlink(&outside, to.join(rel)).unwrap();
}

#[test]
fn symlinks_in_a_layout_are_refused_by_push_load_and_sbom() {
    let tmp = tempfile::tempdir().unwrap();
    let f = fixtures();
    let bom = tmp.path().join("bom.json");
    fs::write(&bom, br#"{"bomFormat":"CycloneDX","specVersion":"1.5"}"#).unwrap();
    let layout = tmp.path().join("good");
    ok(ironstar()
        .arg("build")
        .arg(format!("--binary=linux/amd64={}", f.amd64.display()))
        .arg(format!("--sbom=linux/amd64={}", bom.display()))
        .arg("-o")
        .arg(&layout));
    let top = json(&fs::read(layout.join("index.json")).unwrap());
    let hex = |v: &serde_json::Value| v.as_str().unwrap()["sha256:".len()..].to_string();
    let index = json(&blob(
        &layout,
        top["manifests"][0]["digest"].as_str().unwrap(),
    ));
    let manifest = json(&blob(
        &layout,
        index["manifests"][0]["digest"].as_str().unwrap(),
    ));
    let sbom = json(&blob(
        &layout,
        top["manifests"][1]["digest"].as_str().unwrap(),
    ));
    let layer = format!("blobs/sha256/{}", hex(&manifest["layers"][0]["digest"]));
    let document = format!("blobs/sha256/{}", hex(&sbom["layers"][0]["digest"]));
    let reg = support::registry::Registry::start(support::registry::Auth::None);
    let home = tmp.path().join("home");
    fs::create_dir_all(&home).unwrap();
    // As support::cli::push_cmd, with a layout of our own.
    let push = |layout: &Path| {
        let mut c = ironstar();
        c.env("HOME", &home)
            .env("DOCKER_CONFIG", home.join(".docker"))
            .env_remove("REGISTRY_AUTH_FILE")
            .env_remove("XDG_RUNTIME_DIR")
            .env_remove("GITHUB_TOKEN")
            .env_remove("GITHUB_OUTPUT")
            .stdin(std::process::Stdio::null())
            .arg("push")
            .arg("--layout")
            .arg(layout)
            .arg("--plain-http")
            .arg("--repository")
            .arg(format!("{}/hostile/app", reg.addr()));
        c
    };

    for (n, rel) in ["index.json", "oci-layout", &layer, &document]
        .into_iter()
        .enumerate()
    {
        let bad = tmp.path().join(format!("bad{n}"));
        layout_with_link(&layout, &bad, rel);
        let linked = bad.join(rel).display().to_string();
        let expect = [linked.as_str(), "symbolic link"];
        let push = run(&mut push(&bad));
        one_line_failure(&push, &expect);
        if rel != document {
            let load = run(ironstar()
                .args(["load", "--platform", "linux/amd64", "--layout"])
                .arg(&bad)
                .arg("--output")
                .arg(tmp.path().join(format!("bad{n}.tar"))));
            one_line_failure(&load, &expect);
        }
        if rel != layer {
            let sbom = run(ironstar()
                .args(["sbom", "--platform", "linux/amd64", "--layout"])
                .arg(&bad));
            one_line_failure(&sbom, &expect);
        }
    }
    // Nothing was pushed, and the layout without links goes through.
    let good = run(&mut push(&layout));
    assert!(good.status.success(), "{}", stderr(&good));
}

/// Copy a layout directory (flat enough for this: a file and one level of blobs).
fn copy_layout(from: &Path, to: &Path) {
    std::fs::create_dir_all(to.join("blobs/sha256")).unwrap();
    for f in ["oci-layout", "index.json"] {
        std::fs::copy(from.join(f), to.join(f)).unwrap();
    }
    for e in std::fs::read_dir(from.join("blobs/sha256")).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join("blobs/sha256").join(e.file_name())).unwrap();
    }
}

#[test]
fn a_corrupt_layout_is_refused_before_anything_is_sent() {
    let reg = Registry::start(Auth::None);
    let home = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let (dir, digest) = layout();
    let index = json(&blob(dir, digest));
    let manifest = json(&blob(
        dir,
        index["manifests"][0]["digest"].as_str().unwrap(),
    ));
    let layer = manifest["layers"][0]["digest"].as_str().unwrap();

    // A layer whose bytes no longer hash to its name.
    let bad = work.path().join("tampered");
    copy_layout(dir, &bad);
    let path = bad.join("blobs/sha256").join(&layer[7..]);
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&path, bytes).unwrap();
    let mut cmd = ironstar();
    cmd.env("HOME", home.path())
        .env("DOCKER_CONFIG", home.path().join(".docker"))
        .args(["push", "--plain-http", "--layout"])
        .arg(&bad)
        .args(["--repository", &format!("{}/x/tampered", reg.addr())]);
    let err = expect_fail(&run(&mut cmd), "tampered push");
    assert!(
        err.contains(&layer[..19]) && err.contains("hashes to"),
        "{err}"
    );
    assert_eq!(tag_status(&reg, "x/tampered", "latest"), Some(404));
    let blobs = reg.storage().join("storage/docker/registry/v2/blobs");
    assert!(!blobs.exists(), "a blob reached the registry");
    // The control: the intact layout does put blobs there.
    let mut cmd = ironstar();
    cmd.env("HOME", home.path())
        .env("DOCKER_CONFIG", home.path().join(".docker"))
        .args(["push", "--plain-http", "--layout"])
        .arg(dir)
        .args(["--repository", &format!("{}/x/intact", reg.addr())]);
    expect_ok(&run(&mut cmd), "intact push");
    assert!(blobs.is_dir(), "blobs are not stored where this test looks");

    // A digest that is a path.
    let evil = work.path().join("evil");
    copy_layout(dir, &evil);
    let text = std::fs::read_to_string(evil.join("index.json")).unwrap();
    std::fs::write(
        evil.join("index.json"),
        text.replace(digest.as_str(), "sha256:../../../../etc/passwd"),
    )
    .unwrap();
    let mut cmd = ironstar();
    cmd.env("HOME", home.path())
        .args(["push", "--plain-http", "--layout"])
        .arg(&evil)
        .args(["--repository", &format!("{}/x/evil", reg.addr())]);
    let err = expect_fail(&run(&mut cmd), "evil push");
    assert!(err.contains("invalid digest"), "{err}");
}
