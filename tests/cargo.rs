//! `ironstar build --cargo`: cross-building a crate for every platform without Nix.
//!
//! Fixtures under `tests/fixtures/`: `ring-hello` (ring: C and assembly), `jemalloc-hello`
//! (jemalloc as the global allocator: autoconf `configure` and make against libc) and
//! `zstd-hello` (zstd's C through the `cc` crate; its image defined in Cargo.toml, a feature and a
//! `.cargo/config.toml` cfg it prints). Crates with C are built with zig (cargo-zigbuild); `hello`
//! is pure Rust, linked by rust-lld. Each is built in its own target directory under ours
//! (`target/test-fixtures/`), so the fixture builds do not wait for the `cargo test` that runs
//! them, and stay cached between runs.

mod support;
use support::common;

use std::path::{Path, PathBuf};
use std::process::Command;

use ironstar::platform::Platform;
use support::common::{blob, digest_line, ironstar, json, ok, require_tool, run, stderr, stdout};
use support::fixture_crate::binary_from_layout;

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

/// The layout's manifest for `platform`.
fn manifest_of(layout: &Path, platform: &str) -> serde_json::Value {
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
    json(&blob(layout, manifest["digest"].as_str().unwrap()))
}

/// Static, for the right machine, and prints its line: natively on amd64, under qemu on arm64.
fn check_runs(bin: &Path, platform: &str, arch: &str) {
    assert_eq!(
        output_of(bin, platform).trim(),
        format!("ring-hello {arch} {SHA256_IRONSTAR}")
    );
}

#[test]
fn builds_the_fixture_static_for_both_platforms_and_reproducibly() {
    require_tool("zig", "zig: sh scripts/install-deps.sh");
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
    require_tool("zig", "zig: sh scripts/install-deps.sh");
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

/// `ironstar build --cargo --locked` of a fixture with crates.io dependencies (fetched once, then
/// cached), run from `cwd` so the layout lands in `cwd/target/oci/<image name>`.
fn cargo_build_locked(fixture: &str, target_dir: &Path, cwd: &Path) -> Command {
    let mut c = ironstar();
    c.current_dir(cwd)
        .args(["build", "--cargo", "--locked", "--manifest-path"])
        .arg(
            common::repo()
                .join("tests/fixtures")
                .join(fixture)
                .join("Cargo.toml"),
        )
        .arg("--target-dir")
        .arg(target_dir);
    c
}

/// What the binary prints: natively on amd64, under qemu on arm64; checked static first.
fn output_of(bin: &Path, platform: &str) -> String {
    let p = Platform::parse(platform).unwrap();
    ironstar::elf::check(bin, p).unwrap_or_else(|e| panic!("{platform}: {e}"));
    let mut cmd = if platform == "linux/arm64" {
        require_tool("qemu-aarch64-static", "qemu-user-static");
        let mut c = Command::new("qemu-aarch64-static");
        c.arg(bin);
        c
    } else {
        Command::new(bin)
    };
    ok(&mut cmd)
}

const PLATFORMS: [(&str, &str); 2] = [("linux/amd64", "x86_64"), ("linux/arm64", "aarch64")];

#[test]
fn jemalloc_fixture_without_image_file_or_metadata_runs_on_both_arches() {
    require_tool("zig", "zig: sh scripts/install-deps.sh");
    let tmp = tempfile::tempdir().unwrap();
    let start = std::time::Instant::now();
    // A fixed SOURCE_DATE_EPOCH: the C build scripts rerun whenever it changes.
    let digest = digest_line(&ok(cargo_build_locked(
        "jemalloc-hello",
        &fixture_target_dir("jemalloc-hello"),
        tmp.path(),
    )
    .env("SOURCE_DATE_EPOCH", "1")));
    eprintln!("jemalloc-hello, amd64 + arm64: {:?}", start.elapsed());
    // Named after the package; the default platforms; the binary is the entrypoint.
    let layout = tmp.path().join("target/oci/jemalloc-hello");
    assert!(
        layout.join("index.json").is_file(),
        "no layout at {}",
        layout.display()
    );
    for (platform, arch) in PLATFORMS {
        let bin = binary_from_layout(&layout, platform, "jemalloc-hello", tmp.path());
        // 1 + (1+2) + … + (1+…+1000), summed over memory jemalloc handed out.
        assert_eq!(
            output_of(&bin, platform).trim(),
            format!("jemalloc-hello {arch} 5.3.0 167167000"),
            "{platform} ({digest})"
        );
    }
    let config = image_config(&layout, "linux/arm64");
    assert_eq!(
        config["config"]["Entrypoint"],
        serde_json::json!(["/jemalloc-hello"])
    );
}

/// The image config of `platform` in the layout.
fn image_config(layout: &Path, platform: &str) -> serde_json::Value {
    let manifest = manifest_of(layout, platform);
    json(&blob(
        layout,
        manifest["config"]["digest"].as_str().unwrap(),
    ))
}

#[test]
fn zstd_fixture_from_cargo_metadata_with_config_features_and_two_target_dirs() {
    require_tool("zig", "zig: sh scripts/install-deps.sh");
    let tmp = tempfile::tempdir().unwrap();
    let build = |target_dir: &Path, cwd: &Path, extra: &[&str]| {
        let start = std::time::Instant::now();
        let out = ok(cargo_build_locked("zstd-hello", target_dir, cwd)
            .env("SOURCE_DATE_EPOCH", "1700000000")
            .args(extra));
        eprintln!("zstd-hello {extra:?}: {:?}", start.elapsed());
        digest_line(&out)
    };
    // No image file: [package.metadata.ironstar] names the image and its tags and platforms.
    let here = tmp.path().join("here");
    std::fs::create_dir(&here).unwrap();
    let digest = build(&fixture_target_dir("zstd-hello"), &here, &[]);
    let layout = here.join("target/oci/zstd-roundtrip");
    let index = json(&std::fs::read(layout.join("index.json")).unwrap());
    let tags: Vec<&str> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["annotations"]["org.opencontainers.image.ref.name"].as_str())
        .collect();
    assert_eq!(tags, ["latest", "v2"], "{index}");
    for (platform, arch) in PLATFORMS {
        let bin = binary_from_layout(&layout, platform, "zstd-hello", tmp.path());
        let out = output_of(&bin, platform);
        let lines: Vec<&str> = out.lines().collect();
        // The default feature, and the --cfg from the fixture's .cargo/config.toml.
        assert_eq!(lines.len(), 3, "{platform}: {out}");
        assert!(
            lines[0].starts_with(&format!("zstd-hello {arch} 289690 -> "))
                && lines[0].ends_with(" round trip ok"),
            "{platform}: {out}"
        );
        assert_eq!(lines[1..], ["feature shout", "cfg from_cargo_config"]);
    }

    // Another target directory: the same binaries, so the same digest.
    let there = tmp.path().join("there");
    std::fs::create_dir(&there).unwrap();
    let again = build(&fixture_target_dir("zstd-hello-elsewhere"), &there, &[]);
    assert_eq!(digest, again, "the target directory leaks into the image");

    // Cargo's feature flags reach the build.
    let features = tmp.path().join("features");
    std::fs::create_dir(&features).unwrap();
    let other = build(
        &fixture_target_dir("zstd-hello"),
        &features,
        &[
            "--no-default-features",
            "--features",
            "whisper",
            "--platform",
            "linux/amd64",
            // Fetched above; cargo's other flags pass as well.
            "--offline",
            "-j",
            "2",
        ],
    );
    assert_ne!(other, digest);
    let bin = binary_from_layout(
        &features.join("target/oci/zstd-roundtrip"),
        "linux/amd64",
        "zstd-hello",
        &features,
    );
    let out = output_of(&bin, "linux/amd64");
    assert_eq!(
        out.lines().skip(1).collect::<Vec<_>>(),
        ["feature whisper", "cfg from_cargo_config"]
    );
}

#[test]
fn missing_zig_is_one_line_naming_what_to_install() {
    // cargo, rustc and cargo-zigbuild on PATH, zig not.
    let tmp = tempfile::tempdir().unwrap();
    let bin = tmp.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    for tool in ["cargo", "rustc", "cargo-zigbuild", "git"] {
        let Some(found) = std::env::split_paths(&std::env::var_os("PATH").unwrap())
            .map(|d| d.join(tool))
            .find(|p| p.is_file())
        else {
            continue;
        };
        std::os::unix::fs::symlink(found, bin.join(tool)).unwrap();
    }
    let out = tmp.path().join("oci");
    let o = run(
        cargo_build_locked("zstd-hello", &fixture_target_dir("zstd-hello"), tmp.path())
            .env("PATH", &bin)
            .env_remove("CARGO_ZIGBUILD_ZIG_PATH")
            .arg("-o")
            .arg(&out),
    );
    assert!(!o.status.success());
    let err = stderr(&o);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("zig not found")
            && err.contains("sh scripts/install-deps.sh")
            && err.contains("pip install ziglang"),
        "{err}"
    );
    assert!(!out.exists());
}

#[test]
fn debug_info_is_shipped_and_noted_and_args_after_dashes_reach_cargo() {
    // `hello` is pure Rust (rust-lld); `-- --config …` turns debug info on for this build only.
    let tmp = tempfile::tempdir().unwrap();
    let fixture = common::repo().join("tests/fixtures/hello/Cargo.toml");
    let build = |extra: &[&str], out: &str| {
        let o = run(ironstar()
            .args([
                "build",
                "--cargo",
                "--offline",
                "--platform",
                "linux/amd64",
                "--manifest-path",
            ])
            .arg(&fixture)
            .arg("--target-dir")
            .arg(fixture_target_dir("hello"))
            .arg("-o")
            .arg(tmp.path().join(out))
            .args(extra));
        assert!(o.status.success(), "{}", stderr(&o));
        stderr(&o)
    };
    let plain = build(&[], "plain");
    assert!(!plain.contains("debug info"), "{plain}");
    let debug = build(
        &[
            "--",
            "--config",
            "profile.release.strip=false",
            "--config",
            "profile.release.debug=1",
        ],
        "debug",
    );
    assert!(
        debug.contains("note: linux/amd64: the binary carries debug info and is shipped as built")
            && debug.contains("[profile.release]"),
        "{debug}"
    );
    let bin = binary_from_layout(
        &tmp.path().join("debug"),
        "linux/amd64",
        "hello",
        tmp.path(),
    );
    assert!(ironstar::cargo::has_debug_info(&bin));
}
