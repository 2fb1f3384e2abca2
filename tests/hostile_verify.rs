//! What a hostile signature manifest does to `ironstar verify` (issue 34, findings 11 and 12),
//! served by the in-process fake registry: an oversized signature layer beside a valid one, and
//! 3,000 layers naming one 1 MiB payload. Signatures are made here with p256, as cosign makes
//! them (ECDSA P-256 over the simple-signing payload, base64 DER in the layer's annotation).

mod support;

use std::process::Output;

use base64::Engine as _;
use p256::ecdsa::signature::Signer as _;
use p256::ecdsa::{Signature, SigningKey};
use p256::pkcs8::EncodePublicKey as _;
use serde_json::{json, Value};
use sha2::Digest as _;
use support::common::*;
use support::fake::{Behaviour, FakeRegistry};
use support::measure::{run_measured, MAX_RSS_MB};

const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const SIMPLESIGNING: &str = "application/vnd.dev.cosign.simplesigning.v1+json";

fn digest_of(b: &[u8]) -> String {
    format!("sha256:{:x}", sha2::Sha256::digest(b))
}

/// An image (one manifest) under `app:v1` on `fake`, and a key that signs it.
struct Signed {
    fake: FakeRegistry,
    key: SigningKey,
    subject: String,
    dir: tempfile::TempDir,
}

impl Signed {
    fn new() -> Signed {
        let fake = FakeRegistry::start(Behaviour::default());
        let config = b"{}".to_vec();
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2, "mediaType": MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": digest_of(&config), "size": config.len()},
            "layers": [],
        }))
        .unwrap();
        let subject = digest_of(&manifest);
        fake.state
            .blobs
            .lock()
            .unwrap()
            .insert(digest_of(&config), config);
        let mut manifests = fake.state.manifests.lock().unwrap();
        for name in [subject.clone(), "v1".to_string()] {
            manifests.insert(name, (MANIFEST.into(), manifest.clone()));
        }
        drop(manifests);
        let key = SigningKey::from_slice(&[7u8; 32]).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let pem = key
            .verifying_key()
            .to_public_key_pem(Default::default())
            .unwrap();
        std::fs::write(dir.path().join("cosign.pub"), pem).unwrap();
        Signed {
            fake,
            key,
            subject,
            dir,
        }
    }

    /// The payload cosign signs for this image.
    fn payload(&self) -> Vec<u8> {
        format!(
            r#"{{"critical":{{"identity":{{"docker-reference":"{}"}},"image":{{"docker-manifest-digest":"{}"}},"type":"cosign container image signature"}},"optional":null}}"#,
            self.fake.repository("app"),
            self.subject
        )
        .into_bytes()
    }

    fn sign(&self, payload: &[u8]) -> String {
        let sig: Signature = self.key.sign(payload);
        base64::engine::general_purpose::STANDARD.encode(sig.to_der().as_bytes())
    }

    fn put_blob(&self, bytes: Vec<u8>) -> String {
        let d = digest_of(&bytes);
        self.fake
            .state
            .blobs
            .lock()
            .unwrap()
            .insert(d.clone(), bytes);
        d
    }

    /// A signature layer: the payload blob (stored), its size as the descriptor says, a signature.
    fn layer(&self, payload: Vec<u8>, size: Option<usize>, sig: &str) -> Value {
        let len = payload.len();
        let digest = self.put_blob(payload);
        json!({"mediaType": SIMPLESIGNING, "digest": digest, "size": size.unwrap_or(len),
            "annotations": {"dev.cosignproject.cosign/signature": sig}})
    }

    /// Store the signature manifest of `layers` under the image's `.sig` tag.
    fn put_signatures(&self, layers: Vec<Value>) {
        let config = self.put_blob(b"{}".to_vec());
        let m = serde_json::to_vec(&json!({
            "schemaVersion": 2, "mediaType": MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config, "size": 2},
            "layers": layers,
        }))
        .unwrap();
        let tag = format!("sha256-{}.sig", self.subject.trim_start_matches("sha256:"));
        let mut manifests = self.fake.state.manifests.lock().unwrap();
        manifests.insert(tag, (MANIFEST.into(), m));
    }

    /// `ironstar verify` of `app:v1`, with its peak RSS in MB.
    fn verify(&self) -> (Output, u64) {
        let mut c = ironstar();
        c.env("HOME", self.dir.path())
            .env_remove("DOCKER_CONFIG")
            .env_remove("REGISTRY_AUTH_FILE")
            .env_remove("XDG_RUNTIME_DIR")
            .args(["verify", "--plain-http", "--key"])
            .arg(self.dir.path().join("cosign.pub"))
            .arg(format!("{}:v1", self.fake.repository("app")));
        run_measured(&c)
    }
}

fn within_bound(rss: u64, what: &str) {
    assert!(
        rss <= MAX_RSS_MB,
        "{what}: peak RSS {rss} MB > {MAX_RSS_MB} MB"
    );
}

fn verified(o: &Output, subject: &str) {
    assert!(o.status.success(), "{}", stderr(o));
    assert!(stdout(o).trim().ends_with(subject), "{}", stdout(o));
}

/// Finding 11: an oversized signature layer (as its descriptor says, or as the registry sends
/// it) is skipped with a warning, and the valid signature beside it verifies.
#[test]
fn an_oversized_signature_layer_is_skipped_and_the_rest_verified() {
    let s = Signed::new();
    let payload = s.payload();
    let good = s.layer(payload.clone(), None, &s.sign(&payload));
    let mut big = payload[..payload.len() - 1].to_vec();
    big.extend(std::iter::repeat_n(b' ', 2 << 20));
    big.push(b'}');
    let sig = s.sign(&big);
    for (size, warning) in [
        (None, "more than the 1.0 MiB"),
        (Some(100), "more than 1048576 bytes"),
    ] {
        let oversized = s.layer(big.clone(), size, &sig);
        s.put_signatures(vec![oversized, good.clone()]);
        let (o, rss) = s.verify();
        verified(&o, &s.subject);
        let err = stderr(&o);
        let line = err
            .lines()
            .find(|l| l.contains("skipping the signature layer"));
        let line = line.unwrap_or_else(|| panic!("no warning: {err}"));
        assert!(
            line.contains(&digest_of(&big)) && line.contains(warning),
            "{line}"
        );
        within_bound(rss, "an oversized layer");
    }
}

/// Finding 12: 3,000 layers naming one 1 MiB payload: it is read once, the first 1,000 layers
/// are checked (a warning says so), and a valid signature among them verifies; in bounded memory.
#[test]
fn a_3000_layer_signature_manifest_is_read_in_bounded_memory() {
    let s = Signed::new();
    let payload = s.payload();
    let mut junk = b"{\"junk\":\"".to_vec();
    junk.extend(std::iter::repeat_n(b'j', (1 << 20) - 12));
    junk.extend(b"\"}");
    let junk_digest = digest_of(&junk);
    let junk_sig = s.sign(&junk);
    let junk_layer = s.layer(junk, None, &junk_sig);
    let good = s.layer(payload.clone(), None, &s.sign(&payload));
    let gets = |s: &Signed| {
        s.fake
            .state
            .count(&format!("GET /v2/app/blobs/{junk_digest}"))
    };

    // No valid signature among them: refused in one line, the payload fetched once.
    s.put_signatures(vec![junk_layer.clone(); 3_000]);
    let (o, rss) = s.verify();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("3000 layers; checking the first 1000 only"),
        "{err}"
    );
    let last = err.trim_end().lines().last().unwrap();
    assert!(last.contains("no signature verifies with the key"), "{err}");
    assert!(err.len() < 2_000, "stderr of {} bytes", err.len());
    assert_eq!(gets(&s), 1);
    within_bound(rss, "3,000 junk layers");

    // A valid one at layer 500 of 3,000.
    let mut layers = vec![junk_layer; 3_000];
    layers[500] = good;
    s.put_signatures(layers);
    let (o, rss) = s.verify();
    verified(&o, &s.subject);
    assert_eq!(gets(&s), 2);
    within_bound(rss, "3,000 layers, one valid");
}
