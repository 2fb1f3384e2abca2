//! `ironstar push`: send one image of an OCI layout to a registry.
//!
//! Order, so that a failure anywhere before the tags never moves a tag:
//! 1. the layout's index and manifests are read and checked (digests are `sha256:` + 64 hex);
//! 2. the registry is pinged (reachability, auth scheme);
//! 3. if the registry already holds the index, nothing is sent but the tags that differ;
//! 4. otherwise every blob is verified against its digest before the first byte goes out, then
//!    every config and layer (`HEAD` first, skip what is there; mount from `--mount-from` or from
//!    the repository the cache says holds it; parallel uploads), then each platform manifest by
//!    digest, then the index by digest, each checked against the `Docker-Content-Digest` the
//!    registry answers;
//! 5. only then each tag, skipping those that already point at the index.

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use futures_util::stream::{self, TryStreamExt as _};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::cache::PushedBlobs;
use crate::digest::Digest;
use crate::layout::{Descriptor, Layout, LayoutError, ResolvedImage};
use crate::registry::auth::{find_credential, Credential, CredentialError};
use crate::registry::client::{
    short, BlobOutcome, ClientOptions, ProgressFn, RegistryError, Repository,
};
use crate::registry::reference::{check_tag, is_loopback, Reference, ReferenceError};

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
    #[error("refusing to send a password over plain http to {0}: --plain-http with credentials is for loopback registries only")]
    PlainHttpCredential(String),
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
    /// `REGISTRY/REPO` (a tag in it is ignored; pass tags in `tags`).
    pub repository: Reference,
    pub tags: Vec<String>,
    pub plain_http: bool,
    pub jobs: usize,
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressMode {
    /// Progress bars when stderr is a terminal, else a plain line per step.
    Auto,
    Plain,
    Quiet,
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
    pub tags_moved: Vec<String>,
    pub tags_unchanged: Vec<String>,
    /// SBOM manifests sent (not those the registry held).
    pub sboms_pushed: usize,
}

struct Reporter {
    bars: Option<MultiProgress>,
    quiet: bool,
}

impl Reporter {
    fn new(mode: ProgressMode) -> Self {
        let tty = std::io::stderr().is_terminal();
        Reporter {
            bars: (mode == ProgressMode::Auto && tty)
                .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr())),
            quiet: mode == ProgressMode::Quiet,
        }
    }

    fn line(&self, msg: impl AsRef<str>) {
        if self.quiet {
            return;
        }
        match &self.bars {
            Some(m) => {
                let _ = m.println(msg.as_ref());
            }
            None => eprintln!("{}", msg.as_ref()),
        }
    }

    fn bar(&self, digest: &Digest, size: u64) -> Option<ProgressBar> {
        let m = self.bars.as_ref()?;
        let bar = m.add(ProgressBar::new(size));
        bar.set_style(
            ProgressStyle::with_template("{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        bar.set_message(short(digest));
        Some(bar)
    }
}

/// Push one image of a layout. Returns once every tag points at the index.
pub async fn push(opts: &PushOptions) -> Result<PushOutcome, PushError> {
    if opts.repository.digest.is_some() {
        return Err(PushError::DigestInRepository(opts.repository.to_string()));
    }
    for t in &opts.tags {
        check_tag(t).map_err(PushError::Tag)?;
    }
    let host = opts.repository.host_only();
    if opts.plain_http && opts.credential.is_some() && !is_loopback(host) {
        return Err(PushError::PlainHttpCredential(host.to_string()));
    }
    let report = Reporter::new(opts.progress);
    let layout = Layout::open(&opts.layout)?;
    let image = layout.resolve(opts.image.as_deref())?;
    let digest = image.top.descriptor.digest.clone();
    let name = opts.repository.name();

    let credential = find_credential(&opts.repository, opts.credential.clone())?;
    let repo = Arc::new(Repository::new(
        &opts.repository,
        ClientOptions {
            plain_http: opts.plain_http,
            chunk_size: opts.chunk_size,
            max_attempts: opts.max_attempts.max(1),
            credential,
        },
    )?);
    repo.ping().await?;

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

    let have_index = repo.manifest_digest(&digest.to_string()).await?.is_some();
    if have_index {
        outcome.already_present = true;
        report.line(format!(
            "{name}@{digest} is already in the registry; no blob to send"
        ));
    } else {
        // Verified before any byte goes out. Not on the no-op path: there nothing local is sent
        // (the registry holds every blob by digest already), and hashing hundreds of megabytes
        // would make a re-push as slow as a build.
        verify_all(&layout, &image.blobs).await?;
        push_blobs(&repo, &layout, &image, opts, &report, &mut outcome).await?;
        for m in &image.manifests {
            let d = &m.descriptor;
            repo.put_manifest(&d.digest.to_string(), &d.media_type, &m.bytes, &d.digest)
                .await?;
            report.line(format!(
                "manifest {} {} pushed",
                short(&d.digest),
                d.platform.as_deref().unwrap_or("")
            ));
        }
        let top = &image.top.descriptor;
        repo.put_manifest(
            &digest.to_string(),
            &top.media_type,
            &image.top.bytes,
            &digest,
        )
        .await?;
        report.line(format!(
            "{} {} pushed",
            kind_of(&top.media_type),
            short(&digest)
        ));
    }

    if !opts.no_sbom {
        let line = |m: String| report.line(m);
        let sent = crate::sbom::push::push_sboms(&repo, &layout, &image, &line).await?;
        outcome.sboms_pushed = sent.pushed;
    }

    for tag in &opts.tags {
        let current = repo.manifest_digest(tag).await?;
        if current.as_deref() == Some(digest.to_string().as_str()) {
            report.line(format!("tag {tag} already points at {}", short(&digest)));
            outcome.tags_unchanged.push(tag.clone());
            continue;
        }
        let top = &image.top.descriptor;
        repo.put_manifest(tag, &top.media_type, &image.top.bytes, &digest)
            .await?;
        report.line(format!("tag {tag} -> {}", short(&digest)));
        outcome.tags_moved.push(tag.clone());
    }
    Ok(outcome)
}

fn kind_of(media_type: &str) -> &'static str {
    if media_type.contains("index") || media_type.contains("list") {
        "index"
    } else {
        "manifest"
    }
}

/// Hash every blob (in parallel, off the async threads) before anything is sent.
async fn verify_all(layout: &Layout, blobs: &[Descriptor]) -> Result<(), PushError> {
    let layout = layout.clone();
    let blobs = blobs.to_vec();
    tokio::task::spawn_blocking(move || {
        use rayon::prelude::*;
        blobs.par_iter().try_for_each(|d| layout.verify_blob(d))
    })
    .await
    .map_err(|e| PushError::Internal(e.to_string()))??;
    Ok(())
}

async fn push_blobs(
    repo: &Arc<Repository>,
    layout: &Layout,
    image: &ResolvedImage,
    opts: &PushOptions,
    report: &Reporter,
    outcome: &mut PushOutcome,
) -> Result<(), PushError> {
    let total = image.blobs.len();
    let done = AtomicUsize::new(0);
    let pushed = opts.cache_dir.as_deref().and_then(|dir| {
        PushedBlobs::open(dir, opts.repository.api_host())
            .map_err(|e| tracing::debug!("no record of pushed blobs: {e}"))
            .ok()
    });
    let here = opts.repository.repository.as_str();
    let results: Vec<BlobOutcome> = stream::iter(image.blobs.iter().map(Ok::<_, PushError>))
        .map_ok(|d| {
            let (done, pushed) = (&done, &pushed);
            async move {
                // `open_blob` checks the size on disk; the bytes were verified above.
                drop(layout.open_blob(d)?);
                let path = layout.blob_path(&d.digest);
                if repo.blob_exists(&d.digest).await? {
                    if let Some(p) = pushed {
                        p.record(&d.digest, here);
                    }
                    let n = done.fetch_add(1, Ordering::Relaxed) + 1;
                    report.line(format!("[{n}/{total}] blob {} exists", short(&d.digest)));
                    return Ok(BlobOutcome::Existed);
                }
                let bar = report.bar(&d.digest, d.size);
                let progress: Option<ProgressFn> = bar
                    .clone()
                    .map(|b| Arc::new(move |pos: u64| b.set_position(pos)) as ProgressFn);
                let known = pushed.as_ref().and_then(|p| p.source(&d.digest, here));
                let mount_from = opts.mount_from.as_deref().or(known.as_deref());
                let result = repo
                    .push_blob(&d.digest, d.size, &path, mount_from, progress)
                    .await;
                if let Some(b) = bar {
                    b.finish_and_clear();
                }
                let how = result?;
                if let Some(p) = pushed {
                    p.record(&d.digest, here);
                }
                let n = done.fetch_add(1, Ordering::Relaxed) + 1;
                let verb = match how {
                    BlobOutcome::Existed => "exists",
                    BlobOutcome::Mounted => "mounted",
                    BlobOutcome::Uploaded => "uploaded",
                };
                report.line(format!(
                    "[{n}/{total}] blob {} ({}) {verb}",
                    short(&d.digest),
                    crate::human_bytes(d.size)
                ));
                Ok(how)
            }
        })
        .try_buffer_unordered(opts.jobs.max(1))
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
