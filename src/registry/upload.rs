//! Blobs: `HEAD`, cross-repository mount, upload (one monolithic `PUT`, or `PATCH` chunks that
//! follow the registry's `Range`). Reading them: [`super::download`].

use std::path::Path;

use reqwest::header::{HeaderValue, CONTENT_TYPE};
use reqwest::{Method, Response, StatusCode};
use tracing::warn;
use url::Url;

use super::client::{short, Client};
use super::error::{redact_url, RegistryError};
use super::transport::{header_str, ProgressFn};
use crate::digest::Digest;
use crate::oci::reference::Repository;

/// The chunk size when a registry refuses a blob in one `PUT` (413, as ACR does above ~20 MB):
/// below ghcr.io's per-request limit (a `PATCH` near 4 MiB gets 416 there).
pub const DEFAULT_CHUNK_SIZE: u64 = 3 << 20;
const DOCKER_CONTENT_DIGEST: &str = "docker-content-digest";
/// `PATCH`es in a row of which the registry kept nothing before the upload is given up.
const MAX_STALLS: u32 = 3;

type Result<T, E = RegistryError> = std::result::Result<T, E>;

/// How a blob got into the repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobOutcome {
    Existed,
    Mounted,
    Uploaded,
}

/// An upload session: where to send the bytes, and the least a chunk may be.
struct Session {
    location: Url,
    min_chunk: Option<u64>,
}

enum Mount {
    Mounted,
    Session(Session),
    Refused,
}

fn octet_stream() -> HeaderValue {
    HeaderValue::from_static("application/octet-stream")
}

impl Client {
    /// Whether the repository holds the blob.
    pub async fn blob_exists(&self, digest: &Digest) -> Result<bool> {
        let url = self.repo_url(&format!("blobs/{digest}"));
        let head = self.session.request(Method::HEAD, url);
        Ok(head.send_unless_404().await?.is_some())
    }

    /// One `HEAD`, not retried by itself (a blob push retries as a whole).
    async fn head_blob(&self, digest: &Digest) -> Result<bool> {
        let url = self.repo_url(&format!("blobs/{digest}"));
        let head = self.session.request(Method::HEAD, url).once();
        Ok(head.send_unless_404().await?.is_some())
    }

    /// Put the blob at `path` into the repository unless it holds it already: a
    /// cross-repository mount from `mount_from` when given, else (or when the mount is refused)
    /// an upload. The blob's `HEAD` goes together with the `POST` that opens the upload session
    /// (or mounts it), so a blob the registry lacks costs no round trip more than its upload;
    /// the session opened for a blob that was there is cancelled. A broken upload is restarted
    /// from a fresh session, checked the same way (the blob may have landed anyway); the requests
    /// of one attempt are not retried by themselves.
    pub async fn push_blob(
        &self,
        digest: &Digest,
        size: u64,
        path: &Path,
        mount_from: Option<&Repository>,
        progress: Option<ProgressFn>,
    ) -> Result<BlobOutcome> {
        let what = format!("upload of blob {}", short(digest));
        let attempts = self.session.max_attempts();
        self.session
            .retrying(&what, attempts, |_| {
                let progress = progress.clone();
                async move {
                    if let Some(p) = &progress {
                        p(0);
                    }
                    let (exists, opened) = tokio::join!(
                        self.head_blob(digest),
                        self.open_session(digest, mount_from)
                    );
                    // A mount that answered first is what the `HEAD` may have seen.
                    let session = match (exists?, opened) {
                        (true, Ok(Mount::Session(s))) => {
                            self.cancel_upload(s).await;
                            return Ok(BlobOutcome::Existed);
                        }
                        (true, Err(_)) => return Ok(BlobOutcome::Existed),
                        (_, opened) => match opened? {
                            Mount::Session(s) => s,
                            _ => return Ok(BlobOutcome::Mounted),
                        },
                    };
                    self.upload(digest, size, path, session, progress).await?;
                    Ok(BlobOutcome::Uploaded)
                }
            })
            .await
    }

    /// Mount the blob from `from`, another repository of this registry, with no bytes at hand:
    /// `false` when the registry would rather have an upload (the session it opened is
    /// cancelled) or refuses the mount.
    pub async fn mount_blob(&self, digest: &Digest, from: &Repository) -> Result<bool> {
        match self.try_mount(digest, from).await? {
            Mount::Mounted => Ok(true),
            Mount::Session(s) => {
                self.cancel_upload(s).await;
                Ok(false)
            }
            Mount::Refused => Ok(false),
        }
    }

    /// A mount from `mount_from` (another repository), else an upload session.
    async fn open_session(
        &self,
        digest: &Digest,
        mount_from: Option<&Repository>,
    ) -> Result<Mount> {
        if let Some(from) = mount_from.filter(|m| **m != self.repository) {
            match self.try_mount(digest, from).await? {
                Mount::Refused => {}
                m => return Ok(m),
            }
        }
        Ok(Mount::Session(self.start_upload().await?))
    }

    /// Cancel an upload session that is not needed; a registry that keeps it lets it expire.
    /// With the push's token as it is: a registry that wants a `delete` scope for it is not
    /// worth a token request (and a round trip) of its own.
    async fn cancel_upload(&self, session: Session) {
        let sent = self
            .session
            .request(Method::DELETE, session.location)
            .ok(&[StatusCode::NO_CONTENT, StatusCode::OK, StatusCode::ACCEPTED])
            .once()
            .unanswered()
            .send_unless_404()
            .await;
        if let Err(e) = sent {
            tracing::debug!("cancelling an unneeded upload session: {e}");
        }
    }

    /// Send the bytes into `session`: chunks when asked for, else one `PUT`, falling back to
    /// chunks when the registry refuses that as too large (ACR's 413).
    async fn upload(
        &self,
        digest: &Digest,
        size: u64,
        path: &Path,
        session: Session,
        progress: Option<ProgressFn>,
    ) -> Result<()> {
        let chunk = self
            .chunk_size
            .map(|c| c.max(session.min_chunk.unwrap_or(0)));
        if let Some(chunk) = chunk.filter(|c| size > *c) {
            return self
                .put_chunked(digest, size, path, session.location, chunk, progress)
                .await;
        }
        match self
            .put_monolithic(digest, size, path, session.location, progress.clone())
            .await
        {
            Err(e) if e.status() == Some(413) && size > 1 => {
                warn!(
                    "blob {}: 413 for one PUT; uploading in chunks instead",
                    short(digest)
                );
                let session = self.start_upload().await?;
                let chunk = size.div_ceil(2).min(DEFAULT_CHUNK_SIZE);
                self.put_chunked(digest, size, path, session.location, chunk, progress)
                    .await
            }
            other => other,
        }
    }

    async fn try_mount(&self, digest: &Digest, from: &Repository) -> Result<Mount> {
        let mut url = self.repo_url("blobs/uploads/");
        url.query_pairs_mut()
            .append_pair("mount", &digest.to_string())
            .append_pair("from", &from.path);
        let scopes = vec![
            format!("repository:{}:pull,push", self.repository.path),
            format!("repository:{}:pull", from.path),
        ];
        let sent = self
            .session
            .request(Method::POST, url.clone())
            .scopes(scopes)
            .ok(&[StatusCode::CREATED, StatusCode::ACCEPTED])
            .once()
            .send()
            .await;
        // A refused mount is no reason to fail the push (Harbor even answers 401 for a missing
        // source): upload instead, and say so, since the user asked for a mount.
        let refused = |why: String| {
            warn!(
                "blob {}: mount from {from} refused ({why}); uploading it instead",
                short(digest)
            );
            Ok(Mount::Refused)
        };
        match sent {
            Ok(resp) if resp.status() == StatusCode::CREATED => Ok(Mount::Mounted),
            Ok(resp) => Ok(Mount::Session(session(&url, &resp)?)),
            Err(RegistryError::Auth(m)) => refused(m),
            Err(e @ RegistryError::Status { status, .. })
                if !matches!(status, 408 | 429) && status < 500 =>
            {
                refused(e.to_string())
            }
            Err(e) => Err(e),
        }
    }

    async fn start_upload(&self) -> Result<Session> {
        let url = self.repo_url("blobs/uploads/");
        let resp = self
            .session
            .request(Method::POST, url.clone())
            .ok(&[StatusCode::ACCEPTED])
            .once()
            .send()
            .await?;
        session(&url, &resp)
    }

    async fn put_monolithic(
        &self,
        digest: &Digest,
        size: u64,
        path: &Path,
        location: Url,
        progress: Option<ProgressFn>,
    ) -> Result<()> {
        let resp = self
            .session
            .request(Method::PUT, with_digest(location, digest))
            .header(CONTENT_TYPE, octet_stream())
            .file(path, 0, size, progress)
            .ok(&[StatusCode::CREATED])
            .once()
            .send()
            .await?;
        check_blob_digest(&resp, digest)
    }

    /// `PATCH` chunks, each starting where the registry's `Range` says its copy ends (a registry
    /// may keep less than a chunk), then the closing `PUT`.
    async fn put_chunked(
        &self,
        digest: &Digest,
        size: u64,
        path: &Path,
        mut location: Url,
        chunk: u64,
        progress: Option<ProgressFn>,
    ) -> Result<()> {
        let mut offset = 0;
        let mut stalls = 0;
        while offset < size {
            let end = offset + chunk.min(size - offset);
            // `start-end`, inclusive, without a `bytes ` prefix: what distribution and ACR take.
            let range = HeaderValue::from_str(&format!("{offset}-{}", end - 1)).expect("ascii");
            let resp = self
                .session
                .request(Method::PATCH, location.clone())
                .header(CONTENT_TYPE, octet_stream())
                .header(reqwest::header::CONTENT_RANGE, range)
                .file(path, offset, end - offset, progress.clone())
                // ECR answers 201 where the spec says 202.
                .ok(&[StatusCode::ACCEPTED, StatusCode::CREATED])
                .once()
                .send()
                .await?;
            if let Some(loc) = header_str(&resp, "location") {
                location = join_location(&location, loc)?;
            }
            let kept = header_str(&resp, "range")
                .and_then(range_end)
                .unwrap_or(end);
            if kept > end {
                return Err(RegistryError::Protocol(format!(
                    "PATCH {}: the registry says it holds {kept} bytes of the blob, {end} were sent",
                    redact_url(&location)
                )));
            }
            if kept < end {
                warn!(
                    "blob {}: the registry kept {kept} of {end} bytes; sending from there",
                    short(digest)
                );
            }
            stalls = if kept <= offset { stalls + 1 } else { 0 };
            if stalls >= MAX_STALLS {
                return Err(RegistryError::Protocol(format!(
                    "PATCH {}: the registry kept none of {MAX_STALLS} chunks in a row",
                    redact_url(&location)
                )));
            }
            offset = kept;
        }
        let resp = self
            .session
            .request(Method::PUT, with_digest(location, digest))
            .header(CONTENT_TYPE, octet_stream())
            .ok(&[StatusCode::CREATED])
            .once()
            .send()
            .await?;
        check_blob_digest(&resp, digest)
    }
}

/// The upload session a `POST` (or a mount that became an upload) answered.
fn session(request_url: &Url, resp: &Response) -> Result<Session> {
    let loc = header_str(resp, "location").ok_or_else(|| {
        RegistryError::Protocol(format!(
            "POST {}: upload session started without a Location",
            redact_url(request_url)
        ))
    })?;
    Ok(Session {
        location: join_location(request_url, loc)?,
        min_chunk: header_str(resp, "oci-chunk-min-length").and_then(|v| v.trim().parse().ok()),
    })
}

/// A `Location` is opaque: relative, absolute, on another host; its query is kept.
fn join_location(base: &Url, loc: &str) -> Result<Url> {
    base.join(loc)
        .map_err(|e| RegistryError::Protocol(format!("upload Location is not a URL: {e}")))
}

fn with_digest(mut location: Url, digest: &Digest) -> Url {
    location
        .query_pairs_mut()
        .append_pair("digest", &digest.to_string());
    location
}

/// The byte after the last one a `Range: 0-N` (or `bytes=0-N`) header says the registry holds.
fn range_end(v: &str) -> Option<u64> {
    let v = v.trim();
    let v = v.strip_prefix("bytes=").unwrap_or(v);
    let (start, end) = v.split_once('-')?;
    let (start, end): (u64, u64) = (start.trim().parse().ok()?, end.trim().parse().ok()?);
    (start == 0).then_some(end + 1)
}

fn check_blob_digest(resp: &Response, digest: &Digest) -> Result<()> {
    match header_str(resp, DOCKER_CONTENT_DIGEST) {
        Some(got) if got != digest.to_string() => Err(RegistryError::DigestMismatch {
            what: format!("blob {digest}"),
            expected: digest.clone(),
            got: got.chars().take(100).collect(),
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(range_end("0-1023"), Some(1024));
        assert_eq!(range_end("bytes=0-9"), Some(10));
        assert_eq!(range_end("5-9"), None);
        assert_eq!(range_end("junk"), None);
    }
}
