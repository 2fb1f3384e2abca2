//! The Sigstore bundle, v0.3 (`application/vnd.dev.sigstore.bundle.v0.3+json`), in which cosign 3
//! and GitHub store an attestation: the DSSE envelope, and as verification material the public
//! key's hint (no certificate, no transparency-log entry: a key-signed bundle, verified with
//! `--key` and `--insecure-ignore-tlog`). The hint is the standard base64 of the SHA-256 of the
//! key's DER SubjectPublicKeyInfo.

use serde::Deserialize;
use serde_json::json;

use super::dsse::Envelope;
use super::{malformed, ArtifactError, BUNDLE};
use crate::image::canonical;

/// The hint naming the public key whose DER SubjectPublicKeyInfo is `spki`.
pub fn key_hint(spki: &[u8]) -> String {
    use base64::Engine as _;
    use sha2::Digest as _;
    base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(spki))
}

/// The bundle of `envelope`, signed by the key `hint` names (canonical JSON).
pub fn dsse(envelope: &Envelope, hint: &str) -> Vec<u8> {
    canonical(&json!({
        "mediaType": BUNDLE,
        "verificationMaterial": { "publicKey": { "hint": hint } },
        "dsseEnvelope": envelope,
    }))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Bundle {
    media_type: String,
    dsse_envelope: Option<Envelope>,
}

/// The envelope a bundle carries.
pub fn envelope(what: &str, bytes: &[u8]) -> Result<Envelope, ArtifactError> {
    if bytes.len() > super::dsse::MAX_ENVELOPE {
        return Err(malformed(what, "a bundle larger than 1 MiB; refused"));
    }
    let b: Bundle = serde_json::from_slice(bytes)
        .map_err(|e| malformed(what, format!("not a Sigstore bundle: {e}")))?;
    if !b
        .media_type
        .starts_with("application/vnd.dev.sigstore.bundle")
    {
        return Err(malformed(
            what,
            format!("a bundle of type `{}`", b.media_type),
        ));
    }
    b.dsse_envelope
        .ok_or_else(|| malformed(what, "a bundle without a DSSE envelope"))
}
