//! `ironstar build --cargo`: cross-building a crate for every platform without Nix.
//!
//! The fixture `tests/fixtures/ring-hello` depends on ring, which compiles C and assembly, so
//! these tests exercise rust-lld as the musl linker and clang as the cross C compiler. It is built
//! in its own target directory under ours (`target/test-fixtures/`), so the fixture builds do not
//! wait for the `cargo test` that runs them, and stay cached between runs.

mod support;
use support::common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use ironstar::platform::Platform;
use support::common::{blob, ironstar, json, layer_entries, ok, require_tool, run, stderr, stdout};

/// SHA-256 of "ironstar", as the fixture prints it.
const SHA256_IRONSTAR: &str = "091cf2851ba3b0e6860e40058595efb47a4a6aae0a961e47a8c762d387461026";

fn fixture() -> PathBuf {
    common::repo().join("tests/fixtures/ring-hello")
}

fn fixture_target_dir(name: &str) -> PathBuf {
    common::repo().join("target/test-fixtures").join(name)
}

/// `ironstar build --cargo`, offline (the fixture's dependencies are ironstar's own, so they are
/// in the cargo cache) and with the fixture's own target directory.
fn cargo_build(target_dir: &Path) -> Command {
    let mut c = ironstar();
    c.env("CARGO_TARGET_DIR", target_dir)
        .env("CARGO_NET_OFFLINE", "true")
        .args(["build", "--cargo"]);
    c
}

/// The layout's binary for `platform`, written to `dir` as an executable file.
fn binary_from_layout(layout: &Path, platform: &str, name: &str, dir: &Path) -> PathBuf {
    let mut index = json(&std::fs::read(layout.join("index.json")).unwrap());
    // index.json points at the image index, which points at the platforms' manifests.
    while index["manifests"][0]["mediaType"] == "application/vnd.oci.image.index.v1+json" {
        index = json(&blob(
            layout,
            index["manifests"][0]["digest"].as_str().unwrap(),
        ));
    }
    let (os, arch) = platform.split_once('/').unwrap();
    let manifest = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["platform"]["os"] == os && m["platform"]["architecture"] == arch)
        .unwrap_or_else(|| panic!("no {platform} manifest in {index}"));
    let manifest = json(&blob(layout, manifest["digest"].as_str().unwrap()));
    let layers = manifest["layers"].as_array().unwrap();
    for layer in layers {
        let entries = layer_entries(&blob(layout, layer["digest"].as_str().unwrap()));
        if let Some(e) = entries.into_iter().find(|e| e.0 == name) {
            let out = dir.join(format!("{}-{name}", platform.replace('/', "-")));
            std::fs::write(&out, &e.5).unwrap();
            std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o755)).unwrap();
            return out;
        }
    }
    panic!("no {name} in the {platform} image");
}

/// Static, for the right machine, and prints its line: natively on amd64, under qemu on arm64.
fn check_runs(bin: &Path, platform: &str, arch: &str) {
    let p = Platform::parse(platform).unwrap();
    ironstar::elf::check(bin, p).unwrap_or_else(|e| panic!("{platform}: {e}"));
    let mut cmd = if arch == "aarch64" {
        require_tool("qemu-aarch64-static", "qemu-user-static");
        let mut c = Command::new("qemu-aarch64-static");
        c.arg(bin);
        c
    } else {
        Command::new(bin)
    };
    assert_eq!(
        ok(&mut cmd).trim(),
        format!("ring-hello {arch} {SHA256_IRONSTAR}")
    );
}

fn digest_line(out: &str) -> String {
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines.len() == 1 && lines[0].starts_with("sha256:") && lines[0].len() == 71,
        "stdout must be the index digest alone, got {out:?}"
    );
    lines[0].to_string()
}

#[test]
fn builds_the_fixture_static_for_both_platforms_and_reproducibly() {
    require_tool("clang", "clang");
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("oci");
    let target_dir = fixture_target_dir("ring-hello");
    // The package that owns the image file is built; its platforms are amd64 and arm64.
    let out = ok(cargo_build(&target_dir)
        .arg(fixture().join("image.toml"))
        .arg("-o")
        .arg(&layout));
    let digest = digest_line(&out);

    check_runs(
        &binary_from_layout(&layout, "linux/amd64", "ring-hello", tmp.path()),
        "linux/amd64",
        "x86_64",
    );
    check_runs(
        &binary_from_layout(&layout, "linux/arm64", "ring-hello", tmp.path()),
        "linux/arm64",
        "aarch64",
    );

    // The same commit again (SOURCE_DATE_EPOCH from its time both times): the same digest.
    let again = tmp.path().join("again");
    let out = ok(cargo_build(&target_dir)
        .arg(fixture().join("image.toml"))
        .arg("-o")
        .arg(&again));
    assert_eq!(digest_line(&out), digest);
}

#[test]
fn the_digest_does_not_depend_on_where_the_crate_is_built() {
    require_tool("clang", "clang");
    // The fixture copied elsewhere and built in another target directory, from its
    // manifest with --platform: the binaries, so the digest, are the same as in place.
    let tmp = tempfile::tempdir().unwrap();
    let copy = tmp.path().join("elsewhere/ring-hello");
    std::fs::create_dir_all(copy.join("src")).unwrap();
    for f in ["Cargo.toml", "Cargo.lock", "src/main.rs"] {
        std::fs::copy(fixture().join(f), copy.join(f)).unwrap();
    }
    let build = |manifest: &Path, target_dir: &Path, out: &Path| {
        digest_line(&ok(cargo_build(target_dir)
            .env("SOURCE_DATE_EPOCH", "1700000000")
            .arg("--manifest-path")
            .arg(manifest)
            .args(["--platform", "linux/amd64,linux/arm64", "-o"])
            .arg(out)))
    };
    let here = build(
        &fixture().join("Cargo.toml"),
        &fixture_target_dir("ring-hello"),
        &tmp.path().join("here"),
    );
    let there = build(
        &copy.join("Cargo.toml"),
        &fixture_target_dir("ring-hello-elsewhere"),
        &tmp.path().join("there"),
    );
    assert_eq!(here, there, "the build directory leaks into the image");
}

/// A failed preflight: exit status ≠ 0, `message` on stderr, nothing on stdout or disk.
fn assert_refused(cmd: &mut Command, out: &Path, message: &str) {
    let o = run(cmd);
    assert!(!o.status.success(), "{cmd:?} succeeded");
    assert!(
        stderr(&o).contains(message),
        "stderr lacks {message:?}:\n{}",
        stderr(&o)
    );
    assert_eq!(stdout(&o), "");
    assert!(!out.exists(), "{} was written", out.display());
}

#[test]
fn a_missing_rust_target_is_refused_before_building() {
    let sysroot = ok(Command::new("rustc").args(["--print", "sysroot"]));
    let installed = |t: &str| {
        Path::new(sysroot.trim())
            .join("lib/rustlib")
            .join(t)
            .join("lib")
            .is_dir()
    };
    let Some(p) = ironstar::platform::PLATFORMS
        .iter()
        .find(|p| !installed(p.rust_target))
    else {
        eprintln!("every target of the platform table is installed; nothing to test");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("oci");
    assert_refused(
        cargo_build(&fixture_target_dir("ring-hello"))
            .arg(fixture().join("image.toml"))
            .arg("--platform")
            .arg(p.to_string())
            .arg("-o")
            .arg(&out),
        &out,
        &format!("run: rustup target add {}", p.rust_target),
    );
}

#[test]
fn a_missing_linker_or_c_compiler_is_refused_before_building() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("oci");
    assert_refused(
        cargo_build(&fixture_target_dir("ring-hello"))
            .env(
                "CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER",
                "/nonexistent/ld.lld",
            )
            .arg(fixture().join("image.toml"))
            .arg("-o")
            .arg(&out),
        &out,
        "/nonexistent/ld.lld not found",
    );
    assert_refused(
        cargo_build(&fixture_target_dir("ring-hello"))
            .env("CC_aarch64_unknown_linux_musl", "no-such-clang")
            .arg(fixture().join("image.toml"))
            .arg("-o")
            .arg(&out),
        &out,
        "no-such-clang not found: a dependency compiles C for aarch64-unknown-linux-musl",
    );
}

#[test]
fn a_crate_without_a_binary_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let krate = tmp.path().join("only-a-lib");
    std::fs::create_dir_all(krate.join("src")).unwrap();
    std::fs::write(
        krate.join("Cargo.toml"),
        "[package]\nname = \"only-a-lib\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[workspace]\n",
    )
    .unwrap();
    std::fs::write(krate.join("src/lib.rs"), "").unwrap();
    let out = tmp.path().join("oci");
    assert_refused(
        cargo_build(&tmp.path().join("target"))
            .arg("--manifest-path")
            .arg(krate.join("Cargo.toml"))
            .arg("-o")
            .arg(&out),
        &out,
        "package `only-a-lib` has no binary target",
    );
}
