//! SBOMs: from cargo's graph (`--cargo`) and from `cargo auditable`'s `.dep-v0` section
//! (`--binary`), per platform, checked against the fixture's Cargo.lock and the SPDX project's own
//! validator; the layout still read by the OCI schemas, skopeo and umoci; pushed to a real
//! `docker-registry` (no referrers API) under the referrers tag; read back with `ironstar sbom`.

mod support;
use support::common;

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use serde_json::{json, Value};
use support::common::{
    blob, ironstar, json, ok, require_tool, run, stderr, validate, validate_layout,
};
use support::proxy::{Faults, Proxy};
use support::registry::{Auth, Registry};

const EPOCH: &str = "1700000000";

fn fixture() -> PathBuf {
    common::repo().join("tests/fixtures/sbom-hello")
}

/// The fixture's Cargo.lock: name → (version, checksum).
fn locked() -> BTreeMap<String, (String, Option<String>)> {
    let lock: toml::Value =
        toml::from_str(&fs::read_to_string(fixture().join("Cargo.lock")).unwrap()).unwrap();
    lock["package"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_string(),
                (
                    p["version"].as_str().unwrap().to_string(),
                    p.get("checksum").map(|c| c.as_str().unwrap().to_string()),
                ),
            )
        })
        .collect()
}

/// The crates each platform's binary is built from (the dev dependency memchr never).
fn expected(platform: &str) -> Vec<&'static str> {
    match platform {
        "linux/arm64" => vec!["cfg-if", "itoa", "sbom-hello"],
        _ => vec!["itoa", "sbom-hello"],
    }
}

/// The fixture built with `cargo auditable` for both musl targets, once per test process.
fn auditable_binaries() -> &'static (PathBuf, PathBuf) {
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

fn build(args: &[&str], out: &Path) -> (String, String) {
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

fn auditable_build(out: &Path, extra: &[&str]) -> (String, String) {
    let (amd64, arm64) = auditable_binaries();
    let a = format!("--binary=linux/amd64={}", amd64.display());
    let b = format!("--binary=linux/arm64={}", arm64.display());
    let mut args = vec![a.as_str(), b.as_str()];
    args.extend(extra);
    build(&args, out)
}

fn cargo_build(out: &Path, extra: &[&str]) -> (String, String) {
    let image = fixture().join("image.toml");
    let mut args = vec!["--cargo", image.to_str().unwrap()];
    args.extend(extra);
    build(&args, out)
}

fn sbom_of(layout: &Path, platform: &str) -> Vec<u8> {
    let o = run(ironstar()
        .args(["sbom", "--platform", platform, "--layout"])
        .arg(layout));
    assert!(o.status.success(), "{}", stderr(&o));
    o.stdout
}

/// Each platform's SPDX document lists exactly its crates, with Cargo.lock's versions and
/// checksums and a purl, and passes `pyspdxtools -i`.
fn check_spdx(layout: &Path, tmp: &Path, with_licenses: bool) {
    let lock = locked();
    for platform in ["linux/amd64", "linux/arm64"] {
        let bytes = sbom_of(layout, platform);
        let doc = json(&bytes);
        assert_eq!(doc["spdxVersion"], "SPDX-2.3");
        assert_eq!(doc["creationInfo"]["created"], "2023-11-14T22:13:20Z");
        let packages = doc["packages"].as_array().unwrap();
        let mut names: Vec<&str> = packages
            .iter()
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, expected(platform), "{platform}");
        for p in packages {
            let name = p["name"].as_str().unwrap();
            let (version, checksum) = &lock[name];
            assert_eq!(p["versionInfo"], version.as_str(), "{name}");
            let purl = format!("pkg:cargo/{name}@{version}");
            assert_eq!(p["externalRefs"][0]["referenceLocator"], purl.as_str());
            match checksum {
                Some(sum) => assert_eq!(p["checksums"][0]["checksumValue"], sum.as_str(), "{name}"),
                None => assert!(p.get("checksums").is_none(), "{name}"),
            }
            if with_licenses {
                let want = if name == "sbom-hello" {
                    "Apache-2.0"
                } else {
                    "MIT OR Apache-2.0"
                };
                assert_eq!(p["licenseDeclared"], want, "{name}");
            }
        }
        // The root is what the document describes.
        let root_id =
            packages.iter().find(|p| p["name"] == "sbom-hello").unwrap()["SPDXID"].clone();
        assert!(doc["relationships"].as_array().unwrap().iter().any(|r| {
            r["relationshipType"] == "DESCRIBES" && r["relatedSpdxElement"] == root_id
        }));
        pyspdxtools(tmp, &bytes);
    }
}

fn pyspdxtools(tmp: &Path, bytes: &[u8]) {
    require_tool(
        "pyspdxtools",
        "spdx-tools (scripts/install-deps.sh puts it in its venv)",
    );
    let f = tmp.join("doc.spdx.json");
    fs::write(&f, bytes).unwrap();
    let o = run(Command::new("pyspdxtools").arg("-i").arg(&f));
    assert!(
        o.status.success() && common::stdout(&o).trim().is_empty(),
        "pyspdxtools rejects the SBOM:\n{}{}",
        common::stdout(&o),
        stderr(&o)
    );
}

/// The whole layout (the image's documents, as every build test checks them) and its SBOM
/// manifests against the OCI schemas; each SBOM manifest's subject is a platform manifest of the
/// index. Returns the SBOM manifests.
fn check_layout(layout: &Path, index_digest: &str) -> Vec<Value> {
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

#[test]
fn cargo_path_sboms_list_each_targets_crates() {
    let tmp = tempfile::tempdir().unwrap();
    let (digest, log) = cargo_build(&tmp.path().join("l"), &[]);
    assert!(log.contains("linux/arm64 from cargo metadata"), "{log}");
    check_layout(&tmp.path().join("l"), &digest);
    check_spdx(&tmp.path().join("l"), tmp.path(), true);

    // The index digest does not depend on SBOMs; the SBOMs' bytes are reproducible.
    let (without, log) = cargo_build(&tmp.path().join("n"), &["--no-sbom"]);
    assert_eq!(without, digest);
    assert!(!log.contains("sbom:"), "{log}");
    let top = json(&fs::read(tmp.path().join("n/index.json")).unwrap());
    assert_eq!(top["manifests"].as_array().unwrap().len(), 1);
    let (again, _) = cargo_build(&tmp.path().join("m"), &[]);
    assert_eq!(again, digest);
    assert_eq!(
        fs::read(tmp.path().join("l/index.json")).unwrap(),
        fs::read(tmp.path().join("m/index.json")).unwrap()
    );
}

#[test]
fn auditable_binaries_sboms_come_from_dep_v0() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("l");
    let (digest, log) = auditable_build(&out, &[]);
    assert!(
        log.contains("sbom: linux/amd64 from .dep-v0, linux/arm64 from .dep-v0"),
        "{log}"
    );
    check_layout(&out, &digest);
    check_spdx(&out, tmp.path(), false);
}

#[test]
fn cyclonedx_on_request() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("l");
    auditable_build(&out, &["--sbom-format", "cyclonedx"]);
    let lock = locked();
    require_tool(
        "cyclonedx-validate",
        "cyclonedx-python-lib (scripts/install-deps.sh writes the wrapper)",
    );
    for platform in ["linux/amd64", "linux/arm64"] {
        let bytes = sbom_of(&out, platform);
        let file = tmp.path().join("bom.json");
        fs::write(&file, &bytes).unwrap();
        ok(Command::new("cyclonedx-validate").arg(&file));
        let bom = json(&bytes);
        assert_eq!(bom["bomFormat"], "CycloneDX");
        assert_eq!(bom["specVersion"], "1.5");
        assert_eq!(bom["metadata"]["timestamp"], "2023-11-14T22:13:20Z");
        assert_eq!(bom["metadata"]["component"]["name"], "sbom-hello");
        let mut names = vec!["sbom-hello"];
        for c in bom["components"].as_array().unwrap() {
            let name = c["name"].as_str().unwrap();
            let (version, sum) = &lock[name];
            assert_eq!(c["version"], version.as_str());
            assert_eq!(c["purl"], format!("pkg:cargo/{name}@{version}").as_str());
            assert_eq!(c["hashes"][0]["content"], sum.as_deref().unwrap());
            names.push(name);
        }
        names.sort();
        assert_eq!(names, expected(platform));
        let serial = bom["serialNumber"].as_str().unwrap();
        assert!(
            serial.starts_with("urn:uuid:") && serial.len() == 45,
            "{serial}"
        );
    }
    let top = json(&fs::read(out.join("index.json")).unwrap());
    assert_eq!(
        top["manifests"][1]["artifactType"],
        "application/vnd.cyclonedx+json"
    );
}

/// A copy of the amd64 auditable binary with its `.dep-v0` section replaced.
fn with_section(tmp: &Path, name: &str, content: &[u8]) -> PathBuf {
    require_tool("llvm-objcopy", "llvm");
    let section = tmp.join(format!("{name}.section"));
    fs::write(&section, content).unwrap();
    let out = tmp.join(name);
    ok(Command::new("llvm-objcopy")
        .arg(format!("--update-section=.dep-v0={}", section.display()))
        .arg(&auditable_binaries().0)
        .arg(&out));
    out
}

fn zlib(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

#[test]
fn a_malformed_or_oversized_dep_v0_is_one_warning_and_no_sbom() {
    let tmp = tempfile::tempdir().unwrap();
    let cases = [
        ("not-zlib", b"definitely not zlib".repeat(8)),
        ("not-json", zlib(br#"{"packages": 5}"#)),
        ("bad-index", zlib(br#"{"packages":[{"name":"a","version":"1.0.0","source":"local","dependencies":[7],"root":true}]}"#)),
        // 9 MiB of spaces, 9 KiB compressed: past the 8 MiB limit.
        ("oversized", zlib(&vec![b' '; 9 << 20])),
    ];
    for (name, content) in cases {
        let bin = with_section(tmp.path(), name, &content);
        let out = tmp.path().join(format!("l-{name}"));
        let o = run(ironstar()
            .arg("build")
            .arg(format!("--binary=linux/amd64={}", bin.display()))
            .arg("-o")
            .arg(&out));
        let log = stderr(&o);
        assert!(o.status.success(), "{name}: {log}");
        let warnings: Vec<&str> = log.lines().filter(|l| l.contains("WARN")).collect();
        assert_eq!(warnings.len(), 1, "{name}: {log}");
        assert!(warnings[0].contains(".dep-v0"), "{name}: {log}");
        assert!(!log.contains("panicked"), "{name}: {log}");
        assert!(log.contains("sbom: none"), "{name}: {log}");
        let top = json(&fs::read(out.join("index.json")).unwrap());
        assert_eq!(top["manifests"].as_array().unwrap().len(), 1, "{name}");
    }
}

#[test]
fn a_users_sbom_file_is_attached_as_it_is() {
    let tmp = tempfile::tempdir().unwrap();
    // The hello fixture has no .dep-v0 section.
    let f = common::fixtures();
    let doc = br#"{"bomFormat":"CycloneDX","specVersion":"1.5","version":1}"#;
    fs::write(tmp.path().join("bom.json"), doc).unwrap();
    let out = tmp.path().join("l");
    let (_, log) = build(
        &[
            &format!("--binary=linux/amd64={}", f.amd64.display()),
            &format!("--binary=linux/arm64={}", f.arm64.display()),
            &format!(
                "--sbom=linux/arm64={}",
                tmp.path().join("bom.json").display()
            ),
        ],
        &out,
    );
    assert!(log.contains("none for linux/amd64"), "{log}");
    assert_eq!(sbom_of(&out, "linux/arm64"), doc);
    let top = json(&fs::read(out.join("index.json")).unwrap());
    assert_eq!(
        top["manifests"][1]["artifactType"],
        "application/vnd.cyclonedx+json"
    );

    // Bad input: one line, and no layout.
    fs::write(tmp.path().join("bad.json"), b"[1, 2").unwrap();
    let refused = |sbom: &str, file: &str, message: &str| {
        let out = tmp.path().join("refused");
        let o = run(ironstar()
            .arg("build")
            .arg(format!("--binary=linux/amd64={}", f.amd64.display()))
            .arg(format!("--sbom={sbom}={}", tmp.path().join(file).display()))
            .arg("-o")
            .arg(&out));
        let log = stderr(&o);
        assert!(!o.status.success() && log.contains(message), "{log}");
        assert_eq!(log.trim().lines().count(), 1, "{log}");
        assert!(!out.exists());
    };
    refused("linux/amd64", "bad.json", "not JSON");
    refused("linux/riscv64", "bom.json", "not a platform of this image");
}

// ---------------------------------------------------------------------------------------------
// Push

fn push(layout: &Path, reg: &Registry, repo: &str, extra: &[&str]) -> String {
    push_to(layout, &reg.addr(), repo, extra)
}

fn push_to(layout: &Path, addr: &str, repo: &str, extra: &[&str]) -> String {
    let home = tempfile::tempdir().unwrap();
    let o = run(ironstar()
        .env("HOME", home.path())
        .env("DOCKER_CONFIG", home.path().join(".docker"))
        .env_remove("REGISTRY_AUTH_FILE")
        .args(["push", "--plain-http", "--repository"])
        .arg(format!("{addr}/{repo}"))
        .arg("--layout")
        .arg(layout)
        .args(extra));
    assert!(o.status.success(), "{}", stderr(&o));
    stderr(&o)
}

fn skopeo_raw(reg: &Registry, repo: &str, reference: &str) -> Vec<u8> {
    let sep = if reference.starts_with("sha256:") {
        "@"
    } else {
        ":"
    };
    let o = run(Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{}/{repo}{sep}{reference}", reg.addr())));
    assert!(o.status.success(), "{}", stderr(&o));
    o.stdout
}

fn fallback_tag(digest: &str) -> String {
    digest.replace(':', "-")
}

/// One plain HTTP/1.1 `PUT` of a manifest to the registry; the status.
fn put_manifest(reg: &Registry, repo: &str, reference: &str, media_type: &str, body: &[u8]) -> u16 {
    manifest_request(reg, "PUT", repo, reference, media_type, body)
}

/// One plain HTTP/1.1 request for a manifest of `media_type` (sent and accepted); the status.
fn manifest_request(
    reg: &Registry,
    method: &str,
    repo: &str,
    reference: &str,
    media_type: &str,
    body: &[u8],
) -> u16 {
    let mut s = TcpStream::connect(("127.0.0.1", reg.port)).unwrap();
    write!(
        s,
        "{method} /v2/{repo}/manifests/{reference} HTTP/1.1\r\nHost: {}\r\nContent-Type: {media_type}\r\nAccept: {media_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        reg.addr(),
        body.len()
    )
    .unwrap();
    s.write_all(body).unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    resp.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn canonical(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).unwrap()
}

fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    format!("sha256:{:x}", sha2::Sha256::digest(bytes))
}

#[test]
fn push_uses_the_referrers_tag_and_keeps_other_tools_entries() {
    require_tool("skopeo", "skopeo");
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("l");
    let (index_digest, _) = cargo_build(&layout, &[]);
    let top = json(&fs::read(layout.join("index.json")).unwrap());
    let sbom_entries: Vec<Value> = top["manifests"].as_array().unwrap()[1..].to_vec();
    let index = json(&blob(&layout, &index_digest));
    let platforms = index["manifests"].as_array().unwrap().clone();
    let reg = Registry::start(Auth::None);

    // First the image alone; then another tool's referrer of amd64 under the referrers tag.
    let log = push(&layout, &reg, "sb/app", &["--no-sbom"]);
    assert!(!log.contains("sbom sha256:"), "{log}");
    let amd64 = &platforms[0];
    let amd64_manifest = json(&blob(&layout, amd64["digest"].as_str().unwrap()));
    let foreign = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "artifactType": "application/vnd.example.signature",
        "config": amd64_manifest["config"],
        "layers": amd64_manifest["layers"],
        "subject": {"mediaType": amd64["mediaType"], "digest": amd64["digest"], "size": amd64["size"]},
    });
    let foreign_bytes = canonical(&foreign);
    let foreign_digest = sha256(&foreign_bytes);
    let mt = "application/vnd.oci.image.manifest.v1+json";
    assert_eq!(
        put_manifest(&reg, "sb/app", &foreign_digest, mt, &foreign_bytes),
        201
    );
    let foreign_entry = json!({
        "mediaType": mt, "digest": foreign_digest, "size": foreign_bytes.len(),
        "artifactType": "application/vnd.example.signature",
    });
    let amd64_tag = fallback_tag(amd64["digest"].as_str().unwrap());
    let existing = canonical(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [foreign_entry],
    }));
    let imt = "application/vnd.oci.image.index.v1+json";
    assert_eq!(
        put_manifest(&reg, "sb/app", &amd64_tag, imt, &existing),
        201
    );

    // The push adds the SBOMs: each referrers tag lists its platform's SBOM manifest, amd64's
    // after the other tool's entry.
    let log = push(&layout, &reg, "sb/app", &[]);
    assert_eq!(log.matches("sbom sha256:").count(), 2, "{log}");
    for (p, sbom) in platforms.iter().zip(&sbom_entries) {
        let tag = fallback_tag(p["digest"].as_str().unwrap());
        let fallback = json(&skopeo_raw(&reg, "sb/app", &tag));
        validate("image-index-schema.json", &fallback);
        let listed = fallback["manifests"].as_array().unwrap();
        let ours = listed
            .iter()
            .find(|d| d["digest"] == sbom["digest"])
            .unwrap();
        assert_eq!(ours["artifactType"], "application/spdx+json");
        assert_eq!(ours["size"], sbom["size"]);
        // skopeo reads the SBOM manifest; its subject is the platform's manifest.
        let m = json(&skopeo_raw(
            &reg,
            "sb/app",
            sbom["digest"].as_str().unwrap(),
        ));
        assert_eq!(m["subject"]["digest"], p["digest"]);
        if tag == amd64_tag {
            assert_eq!(listed.len(), 2, "{fallback}");
            assert_eq!(listed[0], foreign_entry);
        } else {
            assert_eq!(listed.len(), 1, "{fallback}");
        }
    }

    // `ironstar sbom REFERENCE` prints the same bytes as the local one.
    for platform in ["linux/amd64", "linux/arm64"] {
        let remote = run(ironstar()
            .args(["sbom", "--plain-http", "--platform", platform])
            .arg(format!("{}/sb/app:latest", reg.addr())));
        assert!(remote.status.success(), "{}", stderr(&remote));
        assert_eq!(remote.stdout, sbom_of(&layout, platform), "{platform}");
    }

    // A second push writes nothing: no SBOM, no referrers tag, no duplicate entry.
    let before = skopeo_raw(&reg, "sb/app", &amd64_tag);
    let log = push(&layout, &reg, "sb/app", &[]);
    assert!(
        !log.contains("sbom sha256:") && !log.contains("referrers tag"),
        "{log}"
    );
    assert_eq!(skopeo_raw(&reg, "sb/app", &amd64_tag), before);
}

/// An SBOM that cannot be pushed (its document corrupted in the layout) fails the push after the
/// image's manifests and before any tag, naming `--no-sbom`; with it the push goes through.
#[test]
fn a_failed_sbom_push_moves_no_tag_and_names_no_sbom() {
    let tmp = tempfile::tempdir().unwrap();
    let f = common::fixtures();
    fs::write(tmp.path().join("bom.json"), br#"{"bomFormat":"CycloneDX"}"#).unwrap();
    let layout = tmp.path().join("l");
    build(
        &[
            &format!("--binary=linux/amd64={}", f.amd64.display()),
            &format!(
                "--sbom=linux/amd64={}",
                tmp.path().join("bom.json").display()
            ),
        ],
        &layout,
    );
    let top = json(&fs::read(layout.join("index.json")).unwrap());
    let sbom_manifest = json(&blob(
        &layout,
        top["manifests"][1]["digest"].as_str().unwrap(),
    ));
    let document = sbom_manifest["layers"][0]["digest"].as_str().unwrap();
    let path = layout
        .join("blobs/sha256")
        .join(&document["sha256:".len()..]);
    fs::write(&path, br#"{"bomFormat":"CycloneDx"}"#).unwrap();
    let reg = Registry::start(Auth::None);
    let imt = "application/vnd.oci.image.index.v1+json";
    let latest = |reg: &Registry| manifest_request(reg, "HEAD", "bad/app", "latest", imt, b"");

    let home = tempfile::tempdir().unwrap();
    let o = run(ironstar()
        .env("HOME", home.path())
        .env("DOCKER_CONFIG", home.path().join(".docker"))
        .args(["push", "--plain-http", "--repository"])
        .arg(format!("{}/bad/app", reg.addr()))
        .arg("--layout")
        .arg(&layout));
    let log = stderr(&o);
    assert!(!o.status.success(), "{log}");
    assert!(log.contains("SBOM") && log.contains("--no-sbom"), "{log}");
    assert_eq!(latest(&reg), 404, "no tag moved: {log}");
    let index = top["manifests"][0]["digest"].as_str().unwrap();
    let head = manifest_request(&reg, "HEAD", "bad/app", index, imt, b"");
    assert_eq!(head, 200, "the image itself went up before the SBOMs");

    push(&layout, &reg, "bad/app", &["--no-sbom"]);
    assert_eq!(latest(&reg), 200);
}

#[test]
fn a_registry_with_the_referrers_api_gets_no_referrers_tag() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("l");
    let (index_digest, _) = cargo_build(&layout, &[]);
    let index = json(&blob(&layout, &index_digest));
    let top = json(&fs::read(layout.join("index.json")).unwrap());
    let reg = Registry::start(Auth::None);
    // Known by `OCI-Subject` on the manifest PUT, or by a 200 from the referrers endpoint.
    let by_subject = Faults {
        oci_subject: true,
        ..Default::default()
    };
    let by_endpoint = Faults {
        referrers_api: true,
        ..Default::default()
    };
    for (repo, faults) in [("api/subject", by_subject), ("api/endpoint", by_endpoint)] {
        let proxy = Proxy::start(reg.port, faults);
        let log = push_to(&layout, &proxy.addr(), repo, &[]);
        assert_eq!(log.matches("sbom sha256:").count(), 2, "{repo}: {log}");
        assert!(!log.contains("referrers tag"), "{repo}: {log}");
        let sboms = &top["manifests"].as_array().unwrap()[1..];
        for (p, sbom) in index["manifests"].as_array().unwrap().iter().zip(sboms) {
            let m = json(&skopeo_raw(&reg, repo, sbom["digest"].as_str().unwrap()));
            assert_eq!(m["subject"]["digest"], p["digest"]);
        }
        // No referrers tag was read or written.
        let requests = proxy.stats.log.lock().unwrap().clone();
        assert!(
            !requests.iter().any(|r| r.contains("sha256-")),
            "{repo}: {requests:?}"
        );
    }
}

/// A zstd image carries the same SBOMs: made from `.dep-v0`, read from its layout, pushed with
/// it, and read back from the registry; the image's layers are zstd, the SBOM documents are not
/// layers of the image and keep their own media type.
#[test]
fn a_zstd_image_has_the_same_sboms_in_the_layout_and_the_registry() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("z");
    let (digest, log) = auditable_build(&out, &["--compression", "zstd"]);
    assert!(log.contains("linux/arm64 from .dep-v0"), "{log}");
    check_layout(&out, &digest);
    let index = json(&blob(&out, &digest));
    for m in index["manifests"].as_array().unwrap() {
        let m = json(&blob(&out, m["digest"].as_str().unwrap()));
        assert_eq!(
            m["layers"][0]["mediaType"],
            "application/vnd.oci.image.layer.v1.tar+zstd"
        );
    }
    let gzip = tmp.path().join("g");
    auditable_build(&gzip, &[]);
    for platform in ["linux/amd64", "linux/arm64"] {
        // The SBOM of a binary does not depend on how its layer is compressed.
        assert_eq!(sbom_of(&out, platform), sbom_of(&gzip, platform));
    }
    let reg = Registry::start(Auth::None);
    push(&out, &reg, "zstd-sbom", &[]);
    let remote = run(ironstar()
        .args(["sbom", "--plain-http", "--platform", "linux/arm64"])
        .arg(format!("{}/zstd-sbom:latest", reg.addr())));
    assert!(remote.status.success(), "{}", stderr(&remote));
    assert_eq!(remote.stdout, sbom_of(&out, "linux/arm64"));
}
