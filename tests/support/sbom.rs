//! The SBOM tests' fixture (`tests/fixtures/sbom-hello`): built with `cargo auditable` or by
//! `ironstar build --cargo`, and the checks every SBOM layout passes.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use serde_json::Value;

use super::common::{
    self, blob, ironstar, json, ok, require_tool, run, stderr, validate, validate_layout,
};

pub const EPOCH: &str = "1700000000";

pub fn fixture() -> PathBuf {
    common::repo().join("tests/fixtures/sbom-hello")
}

/// The fixture built with `cargo auditable` for both musl targets, once per test process.
pub fn auditable_binaries() -> &'static (PathBuf, PathBuf) {
    static B: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    B.get_or_init(|| {
        require_tool("cargo-auditable", "cargo install --locked cargo-auditable");
        let target_dir = common::repo().join("target/test-fixtures/sbom-hello");
        let build = |t: &str| {
            let var = t.to_uppercase().replace('-', "_");
            ok(Command::new(env!("CARGO"))
                .current_dir(fixture())
                .args(["auditable", "build", "--release", "--quiet", "--locked"])
                .args(["--target", t])
                .env("CARGO_TARGET_DIR", &target_dir)
                .env_remove("RUSTFLAGS")
                .env(format!("CARGO_TARGET_{var}_LINKER"), "rust-lld")
                .env(
                    format!("CARGO_TARGET_{var}_RUSTFLAGS"),
                    "-C target-feature=+crt-static",
                ));
            target_dir.join(t).join("release/sbom-hello")
        };
        (
            build("x86_64-unknown-linux-musl"),
            build("aarch64-unknown-linux-musl"),
        )
    })
}

pub fn build(args: &[&str], out: &Path) -> (String, String) {
    // `--cargo` builds outside the fixture's directory.
    let target_dir = common::repo().join("target/test-fixtures/sbom-hello-cargo");
    let o = run(ironstar()
        .env("SOURCE_DATE_EPOCH", EPOCH)
        .env("CARGO_TARGET_DIR", target_dir)
        .arg("build")
        .args(args)
        .arg("-o")
        .arg(out));
    assert!(o.status.success(), "{}", stderr(&o));
    (common::stdout(&o).trim().to_string(), stderr(&o))
}

pub fn auditable_build(out: &Path, extra: &[&str]) -> (String, String) {
    let (amd64, arm64) = auditable_binaries();
    let a = format!("--binary=linux/amd64={}", amd64.display());
    let b = format!("--binary=linux/arm64={}", arm64.display());
    let mut args = vec![a.as_str(), b.as_str()];
    args.extend(extra);
    build(&args, out)
}

pub fn cargo_build(out: &Path, extra: &[&str]) -> (String, String) {
    let image = fixture().join("image.toml");
    let mut args = vec!["--cargo", image.to_str().unwrap()];
    args.extend(extra);
    build(&args, out)
}

pub fn sbom_of(layout: &Path, platform: &str) -> Vec<u8> {
    let o = run(ironstar()
        .args(["sbom", "--platform", platform, "--layout"])
        .arg(layout));
    assert!(o.status.success(), "{}", stderr(&o));
    o.stdout
}

/// The whole layout (the image's documents, as every build test checks them) and its SBOM
/// manifests against the OCI schemas; each SBOM manifest's subject is a platform manifest of the
/// index. Returns the SBOM manifests.
pub fn check_layout(layout: &Path, index_digest: &str) -> Vec<Value> {
    let index = validate_layout(layout);
    let top = json(&fs::read(layout.join("index.json")).unwrap());
    let platforms: Vec<&Value> = index["manifests"].as_array().unwrap().iter().collect();
    let entries = top["manifests"].as_array().unwrap();
    assert_eq!(entries[0]["digest"], index_digest);
    let sboms: Vec<Value> = entries[1..]
        .iter()
        .map(|d| {
            assert_eq!(d["artifactType"], "application/spdx+json");
            assert!(d["annotations"]
                .get("org.opencontainers.image.ref.name")
                .is_none());
            let m = json(&blob(layout, d["digest"].as_str().unwrap()));
            validate("image-manifest-schema.json", &m);
            assert_eq!(m["artifactType"], "application/spdx+json");
            assert_eq!(
                m["config"]["mediaType"],
                "application/vnd.oci.empty.v1+json"
            );
            assert_eq!(blob(layout, m["config"]["digest"].as_str().unwrap()), b"{}");
            m
        })
        .collect();
    assert_eq!(sboms.len(), platforms.len());
    for (m, p) in sboms.iter().zip(&platforms) {
        assert_eq!(m["subject"]["digest"], p["digest"]);
        assert_eq!(m["subject"]["size"], p["size"]);
    }
    // skopeo reads the tagged index byte for byte; umoci lists the tag and its gc keeps every
    // SBOM blob (they are reachable from index.json).
    require_tool("skopeo", "skopeo");
    require_tool("umoci", "umoci");
    let raw = ok(Command::new("skopeo")
        .args(["inspect", "--raw"])
        .arg(format!("oci:{}:latest", layout.display())));
    assert_eq!(raw.as_bytes(), blob(layout, index_digest));
    let ls = ok(Command::new("umoci").args(["ls", "--layout"]).arg(layout));
    assert_eq!(ls.trim(), "latest");
    let copy = layout.with_extension("gc");
    let _ = fs::remove_dir_all(&copy);
    ok(Command::new("cp").arg("-r").arg(layout).arg(&copy));
    ok(Command::new("umoci").args(["gc", "--layout"]).arg(&copy));
    for m in &sboms {
        let doc = m["layers"][0]["digest"].as_str().unwrap();
        assert!(!blob(&copy, doc).is_empty());
    }
    sboms
}
