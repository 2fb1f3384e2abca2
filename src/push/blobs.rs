//! The configs and layers of one push: each blob's existence check together with the `POST`
//! that opens its upload (or a mount), then its one `PUT` unless it was there, `jobs` at a time.
//! Mount sources, first first: `--mount-from`, the repository the cache says holds the blob, the
//! repository of the image's base when it is in the same registry.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use futures_util::stream::{self, TryStreamExt as _};

use super::report::Reporter;
use super::{blocking, PushError, PushOptions, PushOutcome};
use crate::cache::PushedBlobs;
use crate::layout::{Descriptor, Layout, ResolvedImage};
use crate::oci::{annotation, Reference};
use crate::registry::client::short;
use crate::registry::transport::ProgressFn;
use crate::registry::{BlobOutcome, Client, Repository};

/// The configs and layers of one push, `jobs` at a time.
pub(super) struct BlobPush<'a> {
    pub client: &'a Arc<Client>,
    pub layout: &'a Layout,
    pub opts: &'a PushOptions,
    pub mount_from: Option<&'a Repository>,
    /// The base image's repository, when it is another of the same registry.
    pub base: Option<&'a Repository>,
    pub report: &'a Reporter,
}

/// The repository of the image's base (its manifests' `org.opencontainers.image.base.name`)
/// when it is another repository of `target`'s registry: the base's layers mount from there. A
/// blob that is not there (ours) costs nothing more: the registry answers the mount with the
/// upload session the push would have opened anyway.
pub(super) fn base_repository(image: &ResolvedImage, target: &Repository) -> Option<Repository> {
    image.manifests.iter().chain([&image.top]).find_map(|m| {
        let v: serde_json::Value = serde_json::from_slice(&m.bytes).ok()?;
        let name = v["annotations"][annotation::BASE_NAME].as_str()?;
        let base = Reference::parse(name).ok()?.repository;
        (base.api_host() == target.api_host() && base != *target).then_some(base)
    })
}

impl BlobPush<'_> {
    /// Every blob: checked, then sent unless present; counted into `outcome`. The one place
    /// existence checks and uploads are scheduled.
    pub async fn run(
        &self,
        blobs: &[Descriptor],
        outcome: &mut PushOutcome,
    ) -> Result<(), PushError> {
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
        let from = self.mount_from.or(known.as_ref()).or(self.base);
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
