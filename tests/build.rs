//! `ironstar build`: the layout checked by the OCI schemas, skopeo and umoci; binaries taken back
//! out and run (arm64 under qemu); reproducibility; every refused input.

mod support;

use std::fs;
use std::path::Path;
use std::process::Command;

use support::common::*;

#[test]
fn layout_is_valid_and_both_binaries_run_from_it() {
    require_tool("skopeo", "skopeo");
    require_tool("umoci", "umoci");
    require_tool("qemu-aarch64-static", "qemu-user-static");
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("layout");
    let digest = build_layout(&out);

    let index = validate_layout(&out);
    let platforms: Vec<String> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            format!(
                "{}/{}",
                m["platform"]["os"].as_str().unwrap(),
                m["platform"]["architecture"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(platforms, ["linux/amd64", "linux/arm64"]);
    let top = json(&fs::read(out.join("index.json")).unwrap());
    assert_eq!(top["manifests"][0]["digest"], digest.as_str());
    assert_eq!(
        top["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"],
        "latest"
    );

    // skopeo reads the index byte for byte.
    let raw = Command::new("skopeo")
        .args(["inspect", "--raw"])
        .arg(format!("oci:{}:latest", out.display()))
        .output()
        .unwrap();
    assert!(raw.status.success(), "{}", stderr(&raw));
    assert_eq!(raw.stdout, blob(&out, &digest));

    for (arch, expected, emulator) in [
        ("arm64", "hello from aarch64", Some("qemu-aarch64-static")),
        ("amd64", "hello from x86_64", None),
    ] {
        // skopeo selects the platform's image into a single-image layout; umoci unpacks it.
        let single = tmp.path().join(format!("single-{arch}"));
        ok(Command::new("skopeo")
            .args([
                "copy",
                "-q",
                "--override-os",
                "linux",
                "--override-arch",
                arch,
            ])
            .arg(format!("oci:{}:latest", out.display()))
            .arg(format!("oci:{}:x", single.display())));
        let bundle = tmp.path().join(format!("bundle-{arch}"));
        ok(Command::new("umoci")
            .args(["unpack", "--rootless", "--image"])
            .arg(format!("{}:x", single.display()))
            .arg(&bundle));
        let bin = bundle.join("rootfs/hello");
        let meta = fs::metadata(&bin).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(meta.permissions().mode() & 0o7777, 0o755);
        let printed = match emulator {
            Some(q) => ok(Command::new(q).arg(&bin)),
            None => ok(&mut Command::new(&bin)),
        };
        assert_eq!(printed.trim(), expected);
        let stat = ok(Command::new("umoci")
            .args(["stat", "--image"])
            .arg(format!("{}:x", single.display())));
        assert!(stat.contains("ironstar build"), "{stat}");
    }
}

#[test]
fn layer_headers_are_fully_specified() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("l");
    let f = fixtures();
    let d = digest_line(&ok(ironstar()
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .arg("build")
        .arg(format!("--binary=linux/amd64={}", f.amd64.display()))
        .arg("-o")
        .arg(&out)));
    let index = json(&blob(&out, &d));
    assert_eq!(
        index["annotations"]["org.opencontainers.image.created"],
        "2023-11-14T22:13:20Z"
    );
    let manifest = json(&blob(
        &out,
        index["manifests"][0]["digest"].as_str().unwrap(),
    ));
    assert_eq!(
        manifest["layers"][0]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+gzip"
    );
    let layer = blob(&out, manifest["layers"][0]["digest"].as_str().unwrap());
    // Fixed gzip header: no name, mtime 0, OS unknown.
    assert_eq!(&layer[..10], &[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff]);
    let entries = layer_entries(&layer);
    assert_eq!(entries.len(), 1);
    let (path, mode, uid, gid, mtime, data) = &entries[0];
    assert_eq!(
        (path.as_str(), *mode, *uid, *gid, *mtime),
        ("hello", 0o755, 0, 0, 1_700_000_000)
    );
    assert_eq!(data, &fs::read(&f.amd64).unwrap());

    let config = json(&blob(&out, manifest["config"]["digest"].as_str().unwrap()));
    assert_eq!(config["created"], "2023-11-14T22:13:20Z");
    assert_eq!(
        config["config"]["Entrypoint"],
        serde_json::json!(["/hello"])
    );
    // diff_id is the digest of the uncompressed tar.
    let mut tar = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&layer[..]), &mut tar).unwrap();
    assert_eq!(
        config["rootfs"]["diff_ids"][0],
        ironstar::Digest::of(&tar).to_string()
    );
}

#[test]
fn image_file_sets_config_files_and_annotations() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("ironstar");
    let f = fixtures();
    let d = digest_line(&ok(ironstar()
        .arg("build")
        .arg(repo().join("images/ironstar.toml"))
        .arg(format!("--binary=linux/amd64={}", f.amd64.display()))
        .arg(format!("--binary=linux/arm64={}", f.arm64.display()))
        .args(["--tag", "latest", "--tag", "v0.1.0", "--revision", "abc123"])
        .arg("-o")
        .arg(&out)));
    validate_layout(&out);
    let top = json(&fs::read(out.join("index.json")).unwrap());
    let tags: Vec<_> = top["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            m["annotations"]["org.opencontainers.image.ref.name"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(tags, ["latest", "v0.1.0"]);
    let index = json(&blob(&out, &d));
    let a = &index["annotations"];
    assert_eq!(
        a["org.opencontainers.image.source"],
        "https://github.com/org/ironstar"
    );
    assert_eq!(a["org.opencontainers.image.revision"], "abc123");
    assert_eq!(a["org.opencontainers.image.version"], "0.1.0");
    assert_eq!(a["org.opencontainers.image.title"], "ironstar");
    assert!(a["org.opencontainers.image.description"].is_string());

    let manifest = json(&blob(
        &out,
        index["manifests"][1]["digest"].as_str().unwrap(),
    ));
    let config = json(&blob(&out, manifest["config"]["digest"].as_str().unwrap()));
    assert_eq!(config["architecture"], "arm64");
    let c = &config["config"];
    assert_eq!(c["Entrypoint"], serde_json::json!(["/ironstar"]));
    assert_eq!(c["Cmd"], serde_json::json!(["--help"]));
    assert_eq!(c["User"], "0:0");
    assert_eq!(c["Env"], serde_json::json!(["HOME=/root"]));
    assert_eq!(
        c["Labels"]["org.opencontainers.image.licenses"],
        "Apache-2.0"
    );

    let entries = layer_entries(&blob(
        &out,
        manifest["layers"][0]["digest"].as_str().unwrap(),
    ));
    let listing: Vec<(String, u32)> = entries.iter().map(|e| (e.0.clone(), e.1)).collect();
    assert_eq!(
        listing,
        [
            ("etc/".to_string(), 0o755),
            ("etc/group".to_string(), 0o644),
            ("etc/passwd".to_string(), 0o644),
            ("ironstar".to_string(), 0o755),
            ("root/".to_string(), 0o700),
            ("tmp/".to_string(), 0o1777),
        ]
    );
    assert!(entries.iter().all(|e| e.2 == 0 && e.3 == 0 && e.4 == 0));
    let passwd = &entries.iter().find(|e| e.0 == "etc/passwd").unwrap().5;
    assert_eq!(
        passwd,
        &fs::read(repo().join("images/rootfs/etc/passwd")).unwrap()
    );
}

#[test]
fn same_inputs_give_the_same_digest_whatever_the_environment() {
    let f = fixtures();
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    // Copies of the binaries and image file in two places, built from different directories,
    // flags in opposite orders, different umasks and thread counts.
    let mut digests = Vec::new();
    for (i, dir) in [a.path(), b.path()].into_iter().enumerate() {
        fs::copy(&f.amd64, dir.join("app-amd64")).unwrap();
        fs::copy(&f.arm64, dir.join("app-arm64")).unwrap();
        fs::create_dir_all(dir.join("etc")).unwrap();
        fs::write(dir.join("etc/passwd"), "root:x:0:0::/:/x\n").unwrap();
        fs::write(
            dir.join("image.toml"),
            "name = \"app\"\nentrypoint = [\"/app\"]\nbinary_path = \"/app\"\n\
             [labels]\nz = \"1\"\na = \"2\"\nm = \"3\"\n\
             [[files]]\nsource = \"etc/passwd\"\npath = \"/etc/passwd\"\n",
        )
        .unwrap();
        let mut flags = [
            "--binary=linux/amd64=app-amd64",
            "--binary=linux/arm64=app-arm64",
        ];
        if i == 1 {
            flags.reverse();
        }
        let umask = if i == 0 { "022" } else { "077" };
        let threads = if i == 0 { "1" } else { "2" };
        let script = format!(
            "umask {umask} && exec \"$0\" build image.toml {} -o out",
            flags.join(" ")
        );
        let o = ok(Command::new("sh")
            .current_dir(dir)
            .env("RAYON_NUM_THREADS", threads)
            .env("IRONSTAR_NO_CACHE", "true")
            .env_remove("SOURCE_DATE_EPOCH")
            .args(["-c", &script, env!("CARGO_BIN_EXE_ironstar")]));
        digests.push(digest_line(&o));
    }
    assert_eq!(digests[0], digests[1]);
    // Byte-identical layouts, file for file.
    let list = |d: &Path| {
        let mut v: Vec<_> = fs::read_dir(d.join("out/blobs/sha256"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        v.sort();
        v
    };
    assert_eq!(list(a.path()), list(b.path()));
    assert_eq!(
        fs::read(a.path().join("out/index.json")).unwrap(),
        fs::read(b.path().join("out/index.json")).unwrap()
    );

    // A different SOURCE_DATE_EPOCH is a different image.
    let o = ok(ironstar()
        .current_dir(a.path())
        .env("SOURCE_DATE_EPOCH", "86400")
        .args([
            "build",
            "image.toml",
            "--binary=linux/amd64=app-amd64",
            "--binary=linux/arm64=app-arm64",
            "-o",
            "out2",
        ]));
    assert_ne!(digest_line(&o), digests[0]);
}

/// Run a build that must fail; check the one-line message, no panic, nothing at the output.
fn refused(args: &[&str], dir: &Path, expect: &[&str]) {
    let out = dir.join("out");
    let o = run(ironstar()
        .current_dir(dir)
        .arg("build")
        .args(args)
        .arg("-o")
        .arg(&out));
    let err = stderr(&o);
    assert!(!o.status.success(), "{args:?} should fail; stderr: {err}");
    assert!(matches!(o.status.code(), Some(1 | 2)), "{args:?}: {err}");
    assert!(
        stdout(&o).is_empty(),
        "{args:?} printed on stdout: {}",
        stdout(&o)
    );
    assert!(!err.contains("panicked"), "{args:?} panicked: {err}");
    assert_eq!(
        err.trim_end().lines().count(),
        1,
        "{args:?}: not one line: {err}"
    );
    for e in expect {
        assert!(err.contains(e), "{args:?}: `{e}` missing from: {err}");
    }
    assert!(!out.exists(), "{args:?} left something at the output");
    let leftovers: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .filter(|n| n.to_string_lossy().starts_with(".out"))
        .collect();
    assert!(
        leftovers.is_empty(),
        "{args:?} left temporaries: {leftovers:?}"
    );
}

#[test]
fn bad_inputs_are_refused_with_one_clear_line() {
    let f = fixtures();
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    fs::write(d.join("notes.txt"), "not a program").unwrap();
    fs::write(d.join("x.c"), "int f(void) { return 1; }").unwrap();
    let cc = Command::new("cc")
        .current_dir(d)
        .args(["-c", "x.c", "-o", "x.o"])
        .status()
        .unwrap();
    assert!(cc.success());
    let amd = format!("linux/amd64={}", f.amd64.display());
    let arm = format!("linux/arm64={}", f.arm64.display());

    refused(
        &["--binary", "linux/amd64=missing"],
        d,
        &["missing", "No such file"],
    );
    refused(&["--binary", "linux/amd64=."], d, &["not a regular file"]);
    refused(
        &["--binary", "linux/amd64=notes.txt"],
        d,
        &["notes.txt", "not an ELF"],
    );
    refused(
        &["--binary", "linux/amd64=x.o"],
        d,
        &["x.o", "not an executable"],
    );
    refused(
        &["--binary", &format!("linux/amd64={}", f.dynamic.display())],
        d,
        &["dynamically linked", "crt-static", "musl"],
    );
    refused(
        &["--binary", &format!("linux/amd64={}", f.arm64.display())],
        d,
        &["AArch64", "linux/amd64", "x86_64-unknown-linux-musl"],
    );
    refused(
        &["--binary", &amd, "--binary", "linux/mips=x"],
        d,
        &["unknown platform", "linux/mips"],
    );
    refused(&[], d, &["--binary"]);
    refused(&["--binary", &amd, "--tag", "bad tag"], d, &["tag"]);

    // Image definitions: the file and the line.
    fs::write(
        d.join("typo.toml"),
        "name = \"app\"\n\nentrypont = [\"/app\"]\n",
    )
    .unwrap();
    refused(
        &["typo.toml", "--binary", &amd],
        d,
        &["typo.toml:3:", "entrypont"],
    );
    fs::write(d.join("broken.toml"), "name = \"app\"\ntags = [\n").unwrap();
    refused(&["broken.toml"], d, &["broken.toml:"]);
    fs::write(
        d.join("dots.toml"),
        "name = \"app\"\n[[files]]\npath = \"/etc/../../../x\"\n",
    )
    .unwrap();
    refused(&["dots.toml", "--binary", &amd], d, &["dots.toml:3:", ".."]);
    fs::write(
        d.join("plat.toml"),
        "name = \"app\"\n[binaries]\n\"linux/sparc\" = \"x\"\n",
    )
    .unwrap();
    refused(&["plat.toml"], d, &["plat.toml:3:", "unknown platform"]);
    fs::write(
        d.join("nobin.toml"),
        "name = \"app\"\nplatforms = [\"linux/amd64\", \"linux/arm64\"]\n",
    )
    .unwrap();
    refused(
        &["nobin.toml", "--binary", &amd],
        d,
        &["no binary for linux/arm64"],
    );
    refused(&["absent.toml", "--binary", &arm], d, &["absent.toml"]);
}

#[test]
fn a_failed_build_keeps_the_previous_layout_and_never_clobbers_other_files() {
    let f = fixtures();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("img");
    let first = build_layout(&out);
    let index_before = fs::read(out.join("index.json")).unwrap();
    let o = run(ironstar()
        .arg("build")
        .arg(format!("--binary=linux/amd64={}", f.dynamic.display()))
        .arg("-o")
        .arg(&out));
    assert!(!o.status.success());
    assert_eq!(fs::read(out.join("index.json")).unwrap(), index_before);
    assert!(out.join("blobs/sha256").join(&first[7..]).is_file());

    // A directory that is not a layout is never replaced.
    let precious = tmp.path().join("home");
    fs::create_dir(&precious).unwrap();
    fs::write(precious.join("thesis.txt"), "years of work").unwrap();
    let o = run(ironstar()
        .arg("build")
        .arg(format!("--binary=linux/amd64={}", f.amd64.display()))
        .arg("-o")
        .arg(&precious));
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("not an OCI image layout"),
        "{}",
        stderr(&o)
    );
    assert_eq!(
        fs::read_to_string(precious.join("thesis.txt")).unwrap(),
        "years of work"
    );
}

#[test]
fn a_killed_build_leaves_the_previous_layout() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("img");
    let first = build_layout(&out);
    let index_before = fs::read(out.join("index.json")).unwrap();

    // A large static binary (the fixture plus 300 MiB of trailing data) makes the build slow
    // enough to be killed in the middle.
    let big = big_binary(tmp.path(), 300);
    let mut child = spawn_build(&big, &out);
    // Kill once it has started writing its temporary layout.
    wait_for("the temporary layout", || {
        !names_with(tmp.path(), ".img.tmp-").is_empty()
    });
    std::thread::sleep(std::time::Duration::from_millis(200));
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert!(
        !status.success(),
        "the build finished before it could be killed"
    );
    assert_eq!(fs::read(out.join("index.json")).unwrap(), index_before);
    assert!(out.join("blobs/sha256").join(&first[7..]).is_file());

    // The next build succeeds and clears the dead build's temporary directory.
    build_layout(&out);
    let left = names_with(tmp.path(), ".img");
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn check_binary_and_platforms_commands() {
    let f = fixtures();
    ok(ironstar()
        .args(["check-binary", "--platform", "linux/arm64"])
        .arg(&f.arm64));
    let o = run(ironstar()
        .args(["check-binary", "--platform", "linux/arm64"])
        .arg(&f.amd64));
    assert!(!o.status.success());
    assert!(stderr(&o).contains("x86-64"), "{}", stderr(&o));
    let o = run(ironstar()
        .args(["check-binary", "--platform", "linux/amd64"])
        .arg(&f.dynamic));
    assert!(!o.status.success());
    let list: serde_json::Value =
        serde_json::from_str(&ok(ironstar().args(["platforms", "--json"]))).unwrap();
    assert_eq!(list[0]["platform"], "linux/amd64");
    assert_eq!(list[1]["rust_target"], "aarch64-unknown-linux-musl");
}

/// A real container runtime (podman with runc, private vfs storage) runs the amd64 image and
/// applies its config: entrypoint, cmd, env, user, working directory. (arm64 binaries run under
/// qemu in the other tests; podman would need binfmt for them.)
#[test]
fn podman_runs_the_image_as_its_config_says() {
    require_tool("podman", "podman");
    require_tool("runc", "runc");
    let f = fixtures();
    // podman names an `oci:` image after its path, which must be lowercase: no random suffix.
    struct Dir(std::path::PathBuf);
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }
    let tmp = Dir(std::env::temp_dir().join(format!("ironstar-podman-{}", std::process::id())));
    let _ = fs::remove_dir_all(&tmp.0);
    let dir = tmp.0.as_path();
    fs::create_dir_all(dir.join("etc")).unwrap();
    fs::copy(&f.amd64, dir.join("app")).unwrap();
    fs::write(
        dir.join("etc/passwd"),
        "root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n",
    )
    .unwrap();
    fs::write(
        dir.join("image.toml"),
        r#"name = "runme"
entrypoint = ["/usr/local/bin/app", "from-entrypoint"]
cmd = ["from-cmd"]
user = "65532:65532"
workdir = "/work"
binary_path = "/usr/local/bin/app"
[env]
FIXTURE_REPORT = "1"
GREETING = "hi from the config"
[binaries]
"linux/amd64" = "app"
[[files]]
source = "etc/passwd"
path = "/etc/passwd"
[[files]]
path = "/work"
mode = 0o1777
"#,
    )
    .unwrap();
    let layout = dir.join("layout");
    ok(ironstar()
        .current_dir(dir)
        .args(["build", "image.toml", "-o"])
        .arg(&layout));

    // podman needs `default_ulimits = []` in this sandbox; a private config and storage keep
    // the machine's own untouched.
    let conf = dir.join("containers.conf");
    fs::write(&conf, "[containers]\ndefault_ulimits = []\n").unwrap();
    let podman = |extra: &[&str]| {
        let o = run(Command::new("podman")
            .env("CONTAINERS_CONF", &conf)
            .arg("--root")
            .arg(dir.join("storage"))
            .arg("--runroot")
            .arg(dir.join("run"))
            .args(["--storage-driver", "vfs", "--runtime", "runc"])
            .args(["run", "--rm", "--network", "none"])
            .arg(format!("oci:{}:latest", layout.display()))
            .args(extra));
        assert!(o.status.success(), "podman run failed: {}", stderr(&o));
        stdout(&o)
    };
    assert_eq!(
        podman(&[]),
        "hello from x86_64\nargs: from-entrypoint from-cmd\ncwd: /work\nuid: 65532\n\
         greeting: hi from the config\n"
    );
    // Arguments replace cmd, not the entrypoint.
    assert!(
        podman(&["given"]).contains("\nargs: from-entrypoint given\n"),
        "arguments did not replace cmd"
    );
}
