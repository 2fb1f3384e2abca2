//! cosign-compatible image signatures: what `cosign sign --recursive --key` stores, made inside the
//! push (or the build) rather than by a second tool afterwards.
//!
//! - [`key`]: cosign's encrypted key file (scrypt + nacl/secretbox around a PKCS#8 ECDSA P-256
//!   key) and plain PKCS#8/SEC1 PEM keys; the public key that verifies;
//! - [`payload`]: the simple-signing payload (`critical.identity`, `.image`, `.type`), in the
//!   bytes cosign writes, and its strict reading;
//! - [`store`] ([`crate::artifact::cosign`]): the signature manifest as cosign stores it under
//!   the tag `sha256-<hex>.sig`: an OCI image manifest, one
//!   `application/vnd.dev.cosign.simplesigning.v1+json` layer a signature, the base64 DER
//!   signature in the `dev.cosignproject.cosign/signature` annotation;
//! - [`layout`]: signatures kept in an OCI layout (`ironstar build --sign-key`);
//! - [`push`]: the step of a push that puts them up, after the index and before the tags;
//! - [`verify`]: `ironstar verify`, for a pushed image or a layout.
//!
//! What is signed: the index digest and every platform manifest digest. ECDSA nonces are RFC 6979
//! (deterministic) and the payload bytes canonical, so one image and one key always give the same
//! signature manifests, and a re-push writes nothing.

pub mod key;
pub mod layout;
pub mod payload;
pub mod push;
pub mod verify;

pub use crate::artifact::cosign as store;
pub use crate::artifact::cosign::SIGNATURE_ANNOTATION;
/// One signature as a layer of a signature manifest: its payload and the layer's annotations
/// (the signature's among them).
pub use crate::artifact::Layer as SignatureLayer;

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::digest::Digest;
use crate::oci::Tag;

pub use key::{KeySigner, PublicKey};

/// The media type of a simple-signing payload layer.
pub const SIMPLESIGNING: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// Keyless signing's annotations (a [`Signer`] may return them): the Fulcio certificate, its
/// chain, and the Rekor bundle.
pub const CERTIFICATE_ANNOTATION: &str = "dev.sigstore.cosign/certificate";
pub const CHAIN_ANNOTATION: &str = "dev.sigstore.cosign/chain";
pub const BUNDLE_ANNOTATION: &str = "dev.sigstore.cosign/bundle";

#[derive(Debug, thiserror::Error)]
pub enum SignError {
    #[error("--sign-key {path}: {problem}")]
    Key { path: PathBuf, problem: String },
    #[error("--key {path}: {problem}")]
    PublicKey { path: PathBuf, problem: String },
    #[error("signing: {0}")]
    Signer(String),
    #[error("{what}: {problem}")]
    Malformed { what: String, problem: String },
    #[error("{0}")]
    Identity(String),
    #[error("{0}")]
    Verify(String),
    /// The registry refused a signature manifest.
    #[error("{0}")]
    Put(String),
    #[error(transparent)]
    Layout(#[from] crate::layout::LayoutError),
    #[error(transparent)]
    Artifact(#[from] crate::artifact::ArtifactError),
    #[error("signatures: {0}")]
    Registry(#[from] crate::registry::RegistryError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// One signature: the DER bytes and what else goes on its layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    /// ASN.1 DER ECDSA signature over the payload bytes (SHA-256).
    pub signature: Vec<u8>,
    /// Further layer annotations: none for a key; a keyless signer's certificate, chain and
    /// Rekor bundle ([`CERTIFICATE_ANNOTATION`], [`CHAIN_ANNOTATION`], [`BUNDLE_ANNOTATION`]).
    pub annotations: BTreeMap<String, String>,
}

/// What makes signatures. A key file is one ([`KeySigner`]); a keyless signer (an OIDC token
/// traded at Fulcio for a certificate, each signature logged at Rekor) is another, returning the
/// certificate and bundle as annotations. It may block (a keyless signer makes requests): callers
/// run it off the async threads. It must never log what it holds secret.
pub trait Signer: Send + Sync {
    fn sign(&self, payload: &[u8]) -> Result<Signed, SignError>;
    /// What it is, for logs and errors (never a secret), e.g. `key cosign.key`.
    fn describe(&self) -> String;
    /// The public key's DER SubjectPublicKeyInfo, when it is a key (for a bundle's key hint).
    fn public_key_der(&self) -> Option<Vec<u8>> {
        None
    }
}

impl std::fmt::Debug for dyn Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

/// The tag cosign stores the signatures of `digest` under: `sha256-<hex>.sig`.
pub fn signature_tag(digest: &Digest) -> Tag {
    crate::artifact::CosignTag::Sig.of(digest)
}

/// `payload` signed by `signer`, as a simple-signing layer.
pub fn sign_layer(signer: &dyn Signer, payload: Vec<u8>) -> Result<SignatureLayer, SignError> {
    use base64::Engine as _;
    let signed = signer.sign(&payload)?;
    let mut annotations = signed.annotations;
    annotations.insert(
        SIGNATURE_ANNOTATION.to_string(),
        base64::engine::general_purpose::STANDARD.encode(&signed.signature),
    );
    Ok(SignatureLayer {
        media_type: SIMPLESIGNING.to_string(),
        payload,
        annotations,
    })
}

/// The signatures of one image: for the index and each platform manifest, the layers to store
/// under its signature tag.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageSignatures {
    /// (signed digest, its platform or `None` for the index, its layers), index first.
    pub subjects: Vec<(Digest, Option<String>, Vec<SignatureLayer>)>,
}

impl ImageSignatures {
    /// Sign the index and every platform manifest for `identity` (the repository the image is
    /// pulled from, e.g. `ghcr.io/org/app`).
    pub fn sign(
        signer: &dyn Signer,
        identity: &str,
        subjects: &[(Digest, Option<String>)],
    ) -> Result<Self, SignError> {
        let subjects = subjects
            .iter()
            .map(|(d, p)| {
                let layer = sign_layer(signer, payload::payload(identity, d))?;
                Ok((d.clone(), p.clone(), vec![layer]))
            })
            .collect::<Result<_, SignError>>()?;
        Ok(ImageSignatures { subjects })
    }

    pub fn is_empty(&self) -> bool {
        self.subjects.iter().all(|(_, _, l)| l.is_empty())
    }
}

/// `digest` with its platform, for messages: `sha256:… (linux/arm64)` or `sha256:… (index)`.
pub fn describe_subject(digest: &Digest, platform: Option<&str>) -> String {
    format!("{digest} ({})", platform.unwrap_or("index"))
}
