//! `ironstar push`: send one image of an OCI layout to a registry.
//!
//! Order, so that a failure anywhere before the tags never moves a tag, and in as few round
//! trips as that allows (a first push: 5; a re-push of what the registry holds: 1):
//! 1. the layout's index and manifests are read and checked (digests are `sha256:` + 64 hex);
//! 2. one round trip asks whether the registry holds the index and where each tag points (no
//!    `/v2/` ping: the first answer carries the auth challenge, or the connection error);
//! 3. if the registry already holds the index, nothing is sent but the tags that differ;
//! 4. otherwise every blob is verified against its digest before the first byte goes out, then
//!    every config and layer, in parallel: its `HEAD` together with the `POST` that opens its
//!    upload (a mount from `--mount-from` or from the repository the cache says holds it), then
//!    its one `PUT` unless it was there; then the platform manifests by digest, together; then
//!    the index, each checked against the `Docker-Content-Digest` the registry answers. The
//!    index goes up under its tag directly when there is one tag to move and no SBOM to push
//!    (that `PUT` is then the last step, as a tag's is), else by digest;
//! 5. then the artifacts about the image ([`crate::artifact::push`]): the layout's SBOMs and
//!    attestation bundles as referrers, the signatures and attestations under cosign's tags,
//!    their tags fetched and blobs uploaded beside step 4, their manifests put now, together;
//!    without the referrers API, then the referrers tags that change;
//! 6. only then the tags that differ, together, all or none as far as the registry allows
//!    ([`tags`]: a failed tag `PUT` undoes those that moved); none with `by_digest`
//!    (`push --by-digest`).
//!
//! Steps 2, 3–5 and 6 are [`check`], [`Checked::upload`] and [`Uploaded::tag`]: [`push_all`]
//! runs each for several images before the next, their clients sharing one session per registry. Files are read, credential helpers
//! run and cache records written off the async threads.

mod blobs;
mod many;
mod phases;
mod plan;
pub(crate) mod report;
pub(crate) mod tags;
mod verify;

pub use many::{one_repository_each, push_all, NamedPush, SameRepository};
pub use phases::{check, check_with, connect_shared as connect_shared_clients, Checked, Uploaded};
pub use plan::{split_layout_arg, Plan};
pub use report::ProgressMode;
pub use tags::TagsNotMoved;

use std::path::PathBuf;

use crate::digest::Digest;
use crate::layout::LayoutError;
use crate::registry::credential::{Credential, CredentialError};
use crate::registry::{ReferenceError, RegistryError, Repository, Tag};

#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error(transparent)]
    Layout(#[from] LayoutError),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    #[error(transparent)]
    Credential(#[from] CredentialError),
    #[error("invalid tag: {0}")]
    Tag(String),
    #[error("--repository `{0}` must not carry a digest")]
    DigestInRepository(String),
    #[error("nothing to push: give an image file or --layout DIR")]
    NothingToPush,
    #[error("no repository to push to: pass --repository REGISTRY/REPO or set `repository` in the image file")]
    NoRepository,
    #[error("--mount-from: {0}")]
    MountFrom(ReferenceError),
    #[error("pushing the SBOMs: {0} (--no-sbom pushes the image without them)")]
    Sbom(#[from] crate::sbom::SbomError),
    #[error(transparent)]
    Sign(#[from] crate::sign::SignError),
    #[error(transparent)]
    SameRepository(#[from] SameRepository),
    #[error(transparent)]
    Tags(Box<TagsNotMoved>),
    #[error(transparent)]
    Artifact(#[from] crate::artifact::ArtifactError),
    #[error("internal: {0}")]
    Internal(String),
    /// One image of several failed.
    #[error("image `{name}` ({repository}): {source}; {note}")]
    Image {
        name: String,
        repository: String,
        source: Box<PushError>,
        note: &'static str,
    },
}

/// What to push where.
#[derive(Debug, Clone)]
pub struct PushOptions {
    pub layout: PathBuf,
    /// Which image of the layout (its `org.opencontainers.image.ref.name`); `None` = the only one.
    pub image: Option<String>,
    pub repository: Repository,
    /// The remote tags; empty: the image's tags in the layout, else `latest`.
    pub tags: Vec<Tag>,
    pub plain_http: bool,
    pub jobs: usize,
    /// A repository of the same registry, by its path (`org/base`), to mount blobs from.
    pub mount_from: Option<String>,
    /// The local cache ([`crate::cache`]): where blobs were pushed before, to mount them from
    /// another repository of the same registry rather than upload them; `None` for none.
    pub cache_dir: Option<PathBuf>,
    /// Chunked uploads above this size; `None`: one `PUT` a blob.
    pub chunk_size: Option<u64>,
    pub credential: Option<Credential>,
    pub max_attempts: u32,
    pub progress: ProgressMode,
    /// Do not push the layout's SBOMs ([`crate::artifact::push`]).
    pub no_sbom: bool,
    /// Sign the index and every platform manifest ([`crate::sign`]); `None`: send the layout's
    /// own signatures, if it holds any.
    pub signer: Option<std::sync::Arc<dyn crate::sign::Signer>>,
    /// Send no signature, neither made nor stored (nor attestation).
    pub no_sign: bool,
    /// Every phase but the tags: the image (and what is about it) goes up by digest, no tag
    /// is read or moved (a per-platform part for `ironstar merge`).
    pub by_digest: bool,
    /// Send none of the layout's provenance attestations ([`crate::artifact::attest`]).
    pub no_provenance: bool,
}

impl PushOptions {
    /// Options for `plan`, with defaults for the rest (4 jobs, no cache, 6 attempts).
    pub fn from_plan(plan: Plan) -> Self {
        PushOptions {
            layout: plan.layout,
            image: plan.image,
            repository: plan.repository,
            tags: plan.tags,
            plain_http: false,
            jobs: 4,
            mount_from: None,
            cache_dir: None,
            chunk_size: None,
            credential: None,
            max_attempts: crate::registry::client::DEFAULT_MAX_ATTEMPTS,
            progress: ProgressMode::Auto,
            no_sbom: false,
            signer: None,
            no_sign: false,
            by_digest: false,
            no_provenance: false,
        }
    }
}

#[derive(Debug, Clone)]
pub struct PushOutcome {
    /// `REGISTRY/REPO@sha256:…`
    pub image: String,
    pub digest: Digest,
    /// The registry held the index already: no blob or manifest was sent.
    pub already_present: bool,
    pub blobs_uploaded: usize,
    pub blobs_existing: usize,
    pub blobs_mounted: usize,
    pub tags_moved: Vec<Tag>,
    pub tags_unchanged: Vec<Tag>,
    /// SBOM manifests sent (not those the registry held).
    pub sboms_pushed: usize,
    /// Signature and attestation tag manifests written (0 when the registry held every one).
    pub signatures_pushed: usize,
    /// Signature bundles (cosign 3's form) sent as referrers (not those the registry held).
    pub signature_bundles_pushed: usize,
    /// Attestation bundles sent as referrers (not those the registry held).
    pub attestations_pushed: usize,
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, PushError> + Send + 'static,
) -> Result<T, PushError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| PushError::Internal(e.to_string()))?
}

/// Push one image of a layout. Returns once every tag points at the index.
pub async fn push(opts: &PushOptions) -> Result<PushOutcome, PushError> {
    let checked = phases::check(opts).await?;
    // Alone, the index may go up under its one tag directly (no step left between it and the tag).
    checked.upload(true).await?.tag().await
}
