//! SBOMs pushed to a real `docker-registry` (no referrers API: under the referrers tag, other
//! tools' entries kept) and to one with the API, read back with `ironstar sbom`; a failed SBOM
//! push moves no tag.

mod support;

use std::fs;
use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;

use serde_json::{json, Value};
use support::common::{self, blob, ironstar, json, require_tool, run, stderr, validate};
use support::proxy::{Faults, Proxy};
use support::registry::{Auth, Registry};
use support::sbom::*;

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
    // The documents are checked before any request: nothing went up.
    let index = top["manifests"][0]["digest"].as_str().unwrap();
    let head = manifest_request(&reg, "HEAD", "bad/app", index, imt, b"");
    assert_eq!(head, 404, "refused before the image went up");

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
        // No referrers tag was written (they are read beside the referrers API's probe, in
        // the same round trip, and dropped).
        let requests = proxy.stats.log.lock().unwrap().clone();
        let written = |r: &&String| r.contains("sha256-") && r.starts_with("PUT");
        assert!(
            !requests.iter().any(|r| written(&r)),
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
