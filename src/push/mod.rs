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
//! 5. then the layout's SBOMs, as referrers of the platform manifests ([`crate::sbom::push`]);
//! 6. only then the tags that differ, together.
//!
//! Files are read, credential helpers run and cache records written off the async threads.

mod plan;
mod report;
mod verify;

pub use plan::{split_layout_arg, Plan};
pub use report::ProgressMode;

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use futures_util::future::try_join_all;
use futures_util::stream::{self, TryStreamExt as _};

use crate::cache::PushedBlobs;
use crate::digest::Digest;
use crate::layout::{Descriptor, Layout, LayoutError, ManifestBlob, ResolvedImage};
use crate::registry::client::short;
use crate::registry::credential::{find_credential, Credential, CredentialError};
use crate::registry::transport::ProgressFn;
use crate::registry::{
    BlobOutcome, Client, ClientOptions, ReferenceError, RegistryError, Repository, Tag, Target,
};
use report::Reporter;

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
    #[error("internal: {0}")]
    Internal(String),
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
    /// Do not push the layout's SBOMs ([`crate::sbom::push`]).
    pub no_sbom: bool,
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
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, PushError> + Send + 'static,
) -> Result<T, PushError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| PushError::Internal(e.to_string()))?
}

/// The layout's image and the remote tags: those given, else the image's own, else `latest`.
async fn open(opts: &PushOptions) -> Result<(Layout, ResolvedImage, Vec<Tag>), PushError> {
    let (dir, image) = (opts.layout.clone(), opts.image.clone());
    let (layout, resolved) = blocking(move || {
        let layout = Layout::open(&dir)?;
        let resolved = layout.resolve(image.as_deref())?;
        Ok((layout, resolved))
    })
    .await?;
    let mut tags = opts.tags.clone();
    if tags.is_empty() {
        tags = resolved
            .tags
            .iter()
            .filter_map(|t| Tag::parse(t).ok())
            .collect();
    }
    if tags.is_empty() {
        tags.push(Tag::parse("latest").expect("a valid tag"));
    }
    Ok((layout, resolved, tags))
}

/// Push one image of a layout. Returns once every tag points at the index.
pub async fn push(opts: &PushOptions) -> Result<PushOutcome, PushError> {
    let mount_from = match &opts.mount_from {
        Some(m) => Some(opts.repository.sibling(m).map_err(PushError::MountFrom)?),
        None => None,
    };
    let report = Reporter::new(opts.progress);
    let (layout, image, tags) = open(opts).await?;
    let digest = image.top.descriptor.digest.clone();
    let name = opts.repository.to_string();

    let client = connect(opts).await?;
    let mut outcome = PushOutcome {
        image: format!("{name}@{digest}"),
        digest: digest.clone(),
        already_present: false,
        blobs_uploaded: 0,
        blobs_existing: 0,
        blobs_mounted: 0,
        tags_moved: Vec::new(),
        tags_unchanged: Vec::new(),
        sboms_pushed: 0,
    };

    // One round trip: whether the registry holds the index, and where each tag points. No
    // `/v2/` ping before it: its first answer (a 401 challenge, a refused connection, plain
    // http answered to https) tells what the ping would have.
    // The blobs are hashed meanwhile; nothing of them goes out before that is done.
    let verification = verify::Verification::start(&layout, &image.blobs);
    let (present, current) = tokio::try_join!(
        client.manifest_digest(Target::Digest(&digest)),
        try_join_all(tags.iter().map(|t| client.manifest_digest(Target::Tag(t)))),
    )?;
    let mut moving = Vec::new();
    for (tag, at) in tags.into_iter().zip(current) {
        if at.as_ref() == Some(&digest) {
            report.line(format!("tag {tag} already points at {}", short(&digest)));
            outcome.tags_unchanged.push(tag);
        } else {
            moving.push(tag);
        }
    }

    let sboms = !opts.no_sbom && has_sboms(&layout, &image).await?;
    // The index goes up under its one tag directly when nothing has to come between it and the
    // tag (several tags: by digest, then the tags, so that they move last and together).
    let mut index_by_tag = None;
    if present.is_some() {
        drop(verification);
        outcome.already_present = true;
        report.line(format!(
            "{name}@{digest} is already in the registry; no blob to send"
        ));
    } else {
        // Verified before any byte goes out. Not waited for on the no-op path: there nothing
        // local is sent (the registry holds every blob by digest already), and hashing hundreds
        // of megabytes would make a re-push as slow as a build.
        verification.finish().await?;
        let blobs = BlobPush {
            client: &client,
            layout: &layout,
            opts,
            mount_from: mount_from.as_ref(),
            report: &report,
        };
        blobs.run(&image.blobs, &mut outcome).await?;
        put_all(&client, &image.manifests, None, &report).await?;
        if moving.len() == 1 && !sboms {
            index_by_tag = moving.pop();
        }
        put_all(
            &client,
            std::slice::from_ref(&image.top),
            index_by_tag.as_ref(),
            &report,
        )
        .await?;
    }

    if sboms {
        let line = |m: String| report.line(m);
        let sent = crate::sbom::push::push_sboms(&client, &layout, &image, &line).await?;
        outcome.sboms_pushed = sent.pushed;
    }

    outcome.tags_moved.extend(index_by_tag);
    point_tags(&client, &image, &moving, &report).await?;
    outcome.tags_moved.extend(moving);
    Ok(outcome)
}

/// The client, its credential found and its TLS roots read off the async threads (a credential
/// helper is a process, the roots are files).
async fn connect(opts: &PushOptions) -> Result<Arc<Client>, PushError> {
    let (repository, explicit) = (opts.repository.clone(), opts.credential.clone());
    let client_opts = ClientOptions {
        plain_http: opts.plain_http,
        chunk_size: opts.chunk_size,
        max_attempts: opts.max_attempts.max(1),
        credential: None,
        pull_only: false,
    };
    blocking(move || {
        let credential = find_credential(&repository, explicit)?;
        let opts = ClientOptions {
            credential,
            ..client_opts
        };
        Ok(Arc::new(Client::new(&repository, opts)?))
    })
    .await
}

/// Point each of `tags` at the index, together (the caller skipped those that already do).
async fn point_tags(
    client: &Client,
    image: &ResolvedImage,
    tags: &[Tag],
    report: &Reporter,
) -> Result<(), PushError> {
    let top = &image.top;
    let (digest, mt) = (&top.descriptor.digest, &top.descriptor.media_type);
    try_join_all(tags.iter().map(|tag| async move {
        client
            .put_manifest(Target::Tag(tag), mt, &top.bytes, digest)
            .await?;
        report.line(format!("tag {tag} -> {}", short(digest)));
        Ok::<_, PushError>(())
    }))
    .await?;
    Ok(())
}

/// Each manifest of `manifests` by digest (or, for the one index, under `tag`), together,
/// each checked against the digest the registry answers.
async fn put_all(
    client: &Client,
    manifests: &[ManifestBlob],
    tag: Option<&Tag>,
    report: &Reporter,
) -> Result<(), PushError> {
    try_join_all(manifests.iter().map(|m| async move {
        let d = &m.descriptor;
        let target = tag.map_or(Target::Digest(&d.digest), Target::Tag);
        client
            .put_manifest(target, &d.media_type, &m.bytes, &d.digest)
            .await?;
        report.line(format!(
            "{} {} pushed{}",
            kind_of(&d.media_type),
            short(&d.digest),
            d.platform
                .as_deref()
                .map(|p| format!(" ({p})"))
                .unwrap_or_default()
        ));
        if let Some(tag) = tag {
            report.line(format!("tag {tag} -> {}", short(&d.digest)));
        }
        Ok::<_, PushError>(())
    }))
    .await?;
    Ok(())
}

/// Whether the layout holds SBOMs of this image (they go after the index, before the tags).
async fn has_sboms(layout: &Layout, image: &ResolvedImage) -> Result<bool, PushError> {
    let (layout, image) = (layout.clone(), image.clone());
    blocking(move || Ok(!crate::sbom::push::sboms_of(&layout, &image)?.is_empty())).await
}

fn kind_of(media_type: &str) -> &'static str {
    if media_type.contains("index") || media_type.contains("list") {
        "index"
    } else {
        "manifest"
    }
}

/// The configs and layers of one push, `jobs` at a time.
struct BlobPush<'a> {
    client: &'a Arc<Client>,
    layout: &'a Layout,
    opts: &'a PushOptions,
    mount_from: Option<&'a Repository>,
    report: &'a Reporter,
}

impl BlobPush<'_> {
    /// Every blob: checked, then sent unless present; counted into `outcome`. The one place
    /// existence checks and uploads are scheduled.
    async fn run(&self, blobs: &[Descriptor], outcome: &mut PushOutcome) -> Result<(), PushError> {
        let api_host = self.opts.repository.api_host().to_string();
        let pushed = match self.opts.cache_dir.clone() {
            Some(dir) => {
                blocking(move || {
                    Ok(PushedBlobs::open(&dir, &api_host)
                        .map_err(|e| tracing::debug!("no record of pushed blobs: {e}"))
                        .ok())
                })
                .await?
            }
            None => None,
        };
        let done = AtomicUsize::new(0);
        let results: Vec<BlobOutcome> = stream::iter(blobs.iter().map(Ok::<_, PushError>))
            .map_ok(|d| self.one(d, pushed.as_ref(), &done, blobs.len()))
            .try_buffer_unordered(self.opts.jobs.max(1))
            .try_collect()
            .await?;
        for r in results {
            match r {
                BlobOutcome::Existed => outcome.blobs_existing += 1,
                BlobOutcome::Mounted => outcome.blobs_mounted += 1,
                BlobOutcome::Uploaded => outcome.blobs_uploaded += 1,
            }
        }
        Ok(())
    }

    async fn one(
        &self,
        d: &Descriptor,
        pushed: Option<&PushedBlobs>,
        done: &AtomicUsize,
        total: usize,
    ) -> Result<BlobOutcome, PushError> {
        let how = self.send(d, pushed).await?;
        if let Some(p) = pushed.cloned() {
            let (digest, here) = (d.digest.clone(), self.opts.repository.path.clone());
            blocking(move || {
                p.record(&digest, &here);
                Ok(())
            })
            .await?;
        }
        let n = done.fetch_add(1, Ordering::Relaxed) + 1;
        let verb = match how {
            BlobOutcome::Existed => "exists",
            BlobOutcome::Mounted => "mounted",
            BlobOutcome::Uploaded => "uploaded",
        };
        self.report.line(format!(
            "[{n}/{total}] blob {} ({}) {verb}",
            short(&d.digest),
            crate::human_bytes(d.size)
        ));
        Ok(how)
    }

    /// Mount or upload one blob unless the registry holds it (checked in the same round trip).
    async fn send(
        &self,
        d: &Descriptor,
        pushed: Option<&PushedBlobs>,
    ) -> Result<BlobOutcome, PushError> {
        let known = match (self.mount_from, pushed.cloned()) {
            (None, Some(p)) => {
                let (digest, here) = (d.digest.clone(), self.opts.repository.path.clone());
                let path = blocking(move || Ok(p.source(&digest, &here))).await?;
                path.and_then(|p| self.opts.repository.sibling(&p).ok())
            }
            _ => None,
        };
        let bar = self.report.bar(&d.digest, d.size);
        let progress: Option<ProgressFn> = bar
            .clone()
            .map(|b| Arc::new(move |pos: u64| b.set_position(pos)) as ProgressFn);
        let path = self.layout.blob_path(&d.digest);
        let from = self.mount_from.or(known.as_ref());
        let result = self
            .client
            .push_blob(&d.digest, d.size, &path, from, progress)
            .await;
        if let Some(b) = bar {
            b.finish_and_clear();
        }
        Ok(result?)
    }
}
