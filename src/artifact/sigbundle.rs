//! An image signature in cosign 3's form: a Sigstore bundle ([`super::bundle`]) as an OCI 1.1
//! referrer of the signed manifest, beside the `sha256-<hex>.sig` tag that cosign 2 reads.
//!
//! What cosign 3 signs there is not the simple-signing payload nor a `messageSignature` over the
//! manifest: `cosign sign` (new bundle format, the default since v3.0) signs an in-toto
//! Statement v1 whose one subject is the manifest's digest, of predicate type
//! [`SIGN_PREDICATE`] with an empty predicate, in a DSSE envelope; and `cosign verify` refuses a
//! bundle without a DSSE envelope. The referrer is the attestation's shape:
//! `dev.sigstore.bundle.content: dsse-envelope` and the predicate type annotation. Sources:
//! sigstore/cosign `cmd/cosign/cli/sign/sign.go` (`signDigestBundle`), `pkg/types/predicate.go`,
//! `pkg/oci/remote/write.go` (`WriteAttestationNewBundleFormat`), `pkg/cosign/verify.go`
//! (`verifyImageAttestationsSigstoreBundle`: "bundle does not contain a DSSE envelope"),
//! `pkg/cosign/verifiers.go` (`IntotoSubjectClaimVerifier`).
//!
//! Unlike cosign's, the referrer carries no creation time: the bundle of one digest and one key
//! is then the same bytes whether a build or a push made it, and a re-push writes nothing.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::dsse::{Envelope, IN_TOTO};
use super::provenance::STATEMENT_TYPE;
use super::referrer::{self, Document, Referrer, Stored};
use super::{
    bundle, ArtifactError, BUNDLE, BUNDLE_CONTENT_ANNOTATION, BUNDLE_PREDICATE_ANNOTATION,
};
use crate::digest::Digest;
use crate::image::{canonical, BlobRef};
use crate::layout::{Descriptor, LayoutWriter};
use crate::sign::{PublicKey, SignError, Signer};

/// The predicate type of cosign 3's image signature statement.
pub const SIGN_PREDICATE: &str = "https://sigstore.dev/cosign/sign/v1";

/// The statement that signs `digest`: its one subject, the empty predicate.
pub fn statement(digest: &Digest) -> Vec<u8> {
    canonical(&json!({
        "_type": STATEMENT_TYPE,
        "subject": [{ "digest": { "sha256": digest.hex() } }],
        "predicateType": SIGN_PREDICATE,
        "predicate": {},
    }))
}

/// The referrer's annotations.
pub fn annotations() -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            BUNDLE_CONTENT_ANNOTATION.to_string(),
            "dsse-envelope".to_string(),
        ),
        (
            BUNDLE_PREDICATE_ANNOTATION.to_string(),
            SIGN_PREDICATE.to_string(),
        ),
    ])
}

/// Whether a bundle referrer with `annotations` says it holds a signature (not a provenance).
pub fn is_signature(annotations: &BTreeMap<String, String>) -> bool {
    annotations
        .get(BUNDLE_PREDICATE_ANNOTATION)
        .map(String::as_str)
        == Some(SIGN_PREDICATE)
}

/// The bundle signing `digest`; `None` for a signer without a public key to hint at (a bundle
/// names its key, or carries a certificate this form does not make).
fn bundle_of(signer: &dyn Signer, digest: &Digest) -> Result<Option<Vec<u8>>, SignError> {
    let Some(der) = signer.public_key_der() else {
        return Ok(None);
    };
    let envelope = Envelope::sign(signer, IN_TOTO, &statement(digest))?;
    Ok(Some(bundle::dsse(&envelope, &bundle::key_hint(&der))))
}

fn document(bytes: &[u8]) -> Document<'_> {
    Document {
        media_type: BUNDLE,
        bytes,
        title: None,
    }
}

/// Sign each of `subjects` and write its bundle referrer into the layout under construction;
/// the `index.json` entries.
pub fn write(
    writer: &LayoutWriter,
    signer: &dyn Signer,
    subjects: &[BlobRef],
) -> Result<Vec<Value>, SignError> {
    let mut entries = Vec::new();
    for s in subjects {
        if let Some(bytes) = bundle_of(signer, &s.digest)? {
            let r = referrer::write(writer, BUNDLE, &document(&bytes), s, annotations())?;
            entries.push(r.descriptor_json());
        }
    }
    Ok(entries)
}

/// Sign each of `subjects` now (a push with a key): the referrers, their documents in memory.
pub fn made(signer: &dyn Signer, subjects: &[BlobRef]) -> Result<Vec<Stored>, SignError> {
    let mut out = Vec::new();
    for s in subjects {
        let Some(bytes) = bundle_of(signer, &s.digest)? else {
            continue;
        };
        let manifest = referrer::manifest(BUNDLE, &document(&bytes), s, &annotations());
        out.push(Stored {
            referrer: Referrer {
                digest: Digest::of(&manifest),
                size: manifest.len() as u64,
                artifact_type: BUNDLE.to_string(),
                annotations: annotations(),
            },
            manifest,
            subject: s.digest.clone(),
            document: Descriptor {
                media_type: BUNDLE.to_string(),
                digest: Digest::of(&bytes),
                size: bytes.len() as u64,
                annotations: BTreeMap::new(),
                platform: None,
            },
            inline: Some(bytes),
        });
    }
    Ok(out)
}

/// The statement of a signature bundle's envelope, checked: in-toto, its signature good with
/// `key` (before the payload is read), a Statement v1 of [`SIGN_PREDICATE`] naming `digest`.
pub fn check(
    what: &str,
    envelope: &Envelope,
    key: &PublicKey,
    digest: &Digest,
) -> Result<Value, ArtifactError> {
    let other = "a signature of another manifest";
    super::dsse::statement_about(what, envelope, key, digest, SIGN_PREDICATE, other)
}

/// A payload read as cosign's signature statement.
pub fn statement_of(what: &str, body: &[u8]) -> Result<Value, ArtifactError> {
    super::dsse::statement_of(what, body, SIGN_PREDICATE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_statement_names_the_digest_and_cosigns_predicate() {
        let d = Digest::of(b"m");
        let v: Value = serde_json::from_slice(&statement(&d)).unwrap();
        assert_eq!(v["_type"], "https://in-toto.io/Statement/v1");
        assert_eq!(v["subject"][0]["digest"]["sha256"], d.hex());
        assert_eq!(v["predicateType"], SIGN_PREDICATE);
        assert_eq!(v["predicate"], json!({}));
        assert!(statement_of("s", &statement(&d)).is_ok());
        assert!(is_signature(&annotations()));
    }
}
