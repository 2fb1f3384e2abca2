//! What is written after the index: artifacts about a subject (the index or a platform
//! manifest), the one home of their mechanism.
//!
//! - [`referrer`]: an OCI 1.1 artifact manifest (`artifactType`, the empty config, one layer,
//!   `subject`), kept in a layout as an `index.json` entry with its `artifactType`;
//! - [`cosign`]: the manifests cosign keeps under the tags `sha256-<hex>.sig` and `.att`, other
//!   tools' entries kept (merged, never dropped);
//! - [`push`]: staging them beside the image's uploads and writing them after the index, before
//!   any tag: the referrers API where the registry has it, else the `sha256-<hex>` referrers tag;
//! - [`dsse`], [`provenance`], [`bundle`]: the signed SLSA v1 provenance (an in-toto statement
//!   in a DSSE envelope) and the Sigstore bundle it travels in; [`attest`]: making it into a
//!   layout; [`sigbundle`]: an image signature in the same bundle form (cosign 3's);
//!   [`verify`]: finding and checking them back.
//!
//! Every artifact is a function of its inputs (no wall-clock time, canonical JSON, RFC 6979
//! signatures), so a re-push finds it there and writes nothing.

pub mod attest;
pub mod bundle;
pub mod cosign;
pub mod dsse;
pub mod provenance;
pub mod push;
pub mod referrer;
pub mod sigbundle;
pub mod verify;

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::digest::Digest;
use crate::oci::Tag;

/// The empty config's bytes (`application/vnd.oci.empty.v1+json`).
pub const EMPTY: &[u8] = b"{}";
/// A DSSE envelope as cosign stores it in an `.att` layer.
pub const DSSE_ENVELOPE: &str = "application/vnd.dsse.envelope.v1+json";
/// A Sigstore bundle, v0.3 (cosign 3's and GitHub's attestation form).
pub const BUNDLE: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";
/// cosign's layer annotation for an attestation's predicate type.
pub const PREDICATE_TYPE_ANNOTATION: &str = "predicateType";
pub const BUNDLE_CONTENT_ANNOTATION: &str = "dev.sigstore.bundle.content";
pub const BUNDLE_PREDICATE_ANNOTATION: &str = "dev.sigstore.bundle.predicateType";

#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    #[error("{what}: {problem}")]
    Malformed { what: String, problem: String },
    /// The registry refused a manifest.
    #[error("{0}")]
    Put(String),
    #[error("{0}")]
    Verify(String),
    #[error(transparent)]
    Layout(#[from] crate::layout::LayoutError),
    #[error(transparent)]
    Registry(#[from] crate::registry::RegistryError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

pub(crate) fn malformed(what: &str, problem: impl Into<String>) -> ArtifactError {
    ArtifactError::Malformed {
        what: what.to_string(),
        problem: problem.into(),
    }
}

/// cosign's tags beside an image: signatures and attestations of a digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CosignTag {
    Sig,
    Att,
}

impl CosignTag {
    /// `sha256-<hex>.sig` or `sha256-<hex>.att`.
    pub fn of(self, digest: &Digest) -> Tag {
        let suffix = match self {
            CosignTag::Sig => "sig",
            CosignTag::Att => "att",
        };
        Tag::parse(&format!("sha256-{}.{suffix}", digest.hex()))
            .expect("an algorithm, a dash, hex digits and a suffix make a valid tag")
    }
}

/// The referrers tag of `subject`: `sha256-<hex>` (a [`Digest`] is sha256 only).
pub fn fallback_tag(subject: &Digest) -> Tag {
    Tag::parse(&format!("sha256-{}", subject.hex()))
        .expect("an algorithm, a dash and hex digits make a valid tag")
}

/// One layer of a cosign tag's manifest: its media type, its payload and its annotations (the
/// signature's among them for `.sig`; an empty signature and the predicate type for `.att`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layer {
    pub media_type: String,
    pub payload: Vec<u8>,
    pub annotations: BTreeMap<String, String>,
}

impl Layer {
    pub fn digest(&self) -> Digest {
        Digest::of(&self.payload)
    }

    /// The base64 signature annotation, if the layer has one.
    pub fn signature(&self) -> Option<&str> {
        self.annotations
            .get(cosign::SIGNATURE_ANNOTATION)
            .map(String::as_str)
    }
}
