//! The `ca-certificates` item's bundle, used the way a Rust service in the image uses it: rustls
//! with native roots (`rustls-native-certs`, which reads `$SSL_CERT_FILE`) accepts a real chain
//! issued by one of its roots, and refuses it once that root is taken out of the bundle. The chain
//! is letsencrypt.org's as served in March 2026 (`tests/fixtures/tls-chain/`), checked at a time
//! when it was valid: no network. Alone in its file, since it sets `SSL_CERT_FILE` for the process.

mod support;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::ServerCertVerifier as _;
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use support::common::*;

/// 2026-04-08 12:03 UTC: inside both certificates' validity.
const WHEN: u64 = 1_775_649_786;
const ISRG_ROOT_X1: &str = "ISRG Root X1";

/// The bundle the item writes, out of the rootfs layer of an image built with it.
fn bundle_of_the_item(dir: &Path) -> String {
    let out = dir.join("out");
    ok(ironstar()
        .args([
            "build",
            "--no-cache",
            "--rootfs",
            "ca-certificates",
            "--binary",
        ])
        .arg(format!("linux/amd64={}", fixtures().amd64.display()))
        .arg("-o")
        .arg(&out));
    let index = json(&std::fs::read(out.join("index.json")).unwrap());
    let top = json(&blob(
        &out,
        index["manifests"][0]["digest"].as_str().unwrap(),
    ));
    let manifest = json(&blob(&out, top["manifests"][0]["digest"].as_str().unwrap()));
    let rootfs = manifest["layers"][0]["digest"].as_str().unwrap();
    let entries = layer_entries(&blob(&out, rootfs));
    let pem = entries
        .iter()
        .find(|e| e.0 == "etc/ssl/certs/ca-certificates.crt")
        .expect("the bundle is in the rootfs layer");
    String::from_utf8(pem.5.clone()).unwrap()
}

/// What rustls says of the chain with the native roots `SSL_CERT_FILE=bundle` gives.
fn verify_with_native_roots(bundle: &Path) -> Result<(), rustls::Error> {
    std::env::set_var("SSL_CERT_FILE", bundle);
    std::env::remove_var("SSL_CERT_DIR");
    let native = rustls_native_certs::load_native_certs();
    assert!(native.errors.is_empty(), "{:?}", native.errors);
    let mut roots = rustls::RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(native.certs);
    assert!(added >= 100, "only {added} roots from the bundle");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .unwrap();
    let fixture = repo().join("tests/fixtures/tls-chain");
    let der = |f: &str| CertificateDer::from(std::fs::read(fixture.join(f)).unwrap());
    let name = ServerName::try_from("letsencrypt.org").unwrap();
    let now = UnixTime::since_unix_epoch(Duration::from_secs(WHEN));
    verifier
        .verify_server_cert(
            &der("letsencrypt.org.der"),
            &[der("e8.der")],
            &name,
            &[],
            now,
        )
        .map(drop)
}

#[test]
fn rustls_with_the_bundle_as_native_roots_accepts_a_chain_from_one_of_its_roots() {
    let tmp = tempfile::tempdir().unwrap();
    let bundle = bundle_of_the_item(tmp.path());
    let path = tmp.path().join("ca-certificates.crt");
    std::fs::write(&path, &bundle).unwrap();
    verify_with_native_roots(&path).expect("the chain to ISRG Root X1 is accepted");

    // The same bundle without ISRG Root X1: the chain has no root, so the acceptance above came
    // from that certificate of the bundle.
    let mut kept = Vec::new();
    let mut dropped = 0;
    for pem in bundle.split_inclusive("-----END CERTIFICATE-----\n") {
        let der = base64_der(pem);
        if der
            .windows(ISRG_ROOT_X1.len())
            .any(|w| w == ISRG_ROOT_X1.as_bytes())
        {
            dropped += 1;
        } else {
            kept.push(pem);
        }
    }
    assert_eq!(dropped, 1, "ISRG Root X1 is in the bundle once");
    std::fs::write(&path, kept.concat()).unwrap();
    let err = verify_with_native_roots(&path).unwrap_err();
    assert!(
        matches!(
            err,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer)
        ),
        "{err:?}"
    );
}

/// The DER bytes of one PEM certificate.
fn base64_der(pem: &str) -> Vec<u8> {
    use base64::Engine as _;
    let body: String = pem
        .lines()
        .filter(|l| !l.starts_with("-----") && !l.starts_with('#'))
        .collect();
    base64::engine::general_purpose::STANDARD
        .decode(body.trim())
        .unwrap_or_default()
}
