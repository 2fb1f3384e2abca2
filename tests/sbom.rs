//! SBOMs: from cargo's graph (`--cargo`) and from `cargo auditable`'s `.dep-v0` section
//! (`--binary`), per platform, checked against the fixture's Cargo.lock and the SPDX project's own
//! validator; the layout still read by the OCI schemas, skopeo and umoci; read back with
//! `ironstar sbom`. Pushed to a registry: `sbom_push.rs`.

mod support;
use support::common;
use support::sbom::*;

use std::collections::BTreeMap;
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use support::common::{ironstar, json, ok, require_tool, run, stderr};

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
