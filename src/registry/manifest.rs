//! Manifests and indexes: resolve, fetch and put by tag or digest (learning from `OCI-Subject`
//! whether the registry indexes subjects), and the referrers API.

use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{HeaderValue, ACCEPT, CONTENT_TYPE};
use reqwest::{Method, StatusCode};
use url::Url;

use super::client::Client;
use super::error::RegistryError;
use super::transport::{header_str, read_at_most};
use crate::digest::Digest;
use crate::oci::media_type;
use crate::oci::reference::{Reference, Tag};

const DOCKER_CONTENT_DIGEST: &str = "docker-content-digest";

/// The largest manifest or index read: the limit most registries share.
pub const MAX_MANIFEST: usize = 4 << 20;

type Result<T, E = RegistryError> = std::result::Result<T, E>;

/// The first wait before a manifest `PUT` answered MANIFEST_BLOB_UNKNOWN goes again; it doubles,
/// 4 times (1.5 s in all).
const BLOB_UNKNOWN_WAIT: Duration = Duration::from_millis(100);

/// A manifest `PUT` refused for a blob the registry may hold: distribution 2.8 (filesystem
/// storage) rewrites a blob's link in place (truncated, then written) each time a push commits
/// or mounts that blob, and a manifest checked against it at that moment reads no link. Two
/// pushes of the same blobs at once meet it (2 to 5 rounds of 20 of two identical workspace
/// pushes); another try a moment later finds the link. A blob really missing fails the same way
/// each time.
fn blob_unknown(e: &RegistryError) -> bool {
    matches!(e, RegistryError::Status { status: 400, summary, .. } if summary.contains("MANIFEST_BLOB_UNKNOWN"))
}

/// What a manifest is stored under: a tag, or its digest. A digest where a tag belongs does not
/// compile:
///
/// ```compile_fail
/// use ironstar::registry::Target;
/// let digest = ironstar::Digest::of(b"{}");
/// let _ = Target::Tag(&digest);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target<'a> {
    Tag(&'a Tag),
    Digest(&'a Digest),
}

impl<'a> Target<'a> {
    /// What `reference` names: its digest when it has one, else its tag, else `latest`.
    pub fn of(reference: &'a Reference) -> Self {
        match (&reference.digest, &reference.tag) {
            (Some(d), _) => Target::Digest(d),
            (None, Some(t)) => Target::Tag(t),
            (None, None) => Target::Tag(Tag::latest()),
        }
    }
}

impl fmt::Display for Target<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Tag(t) => t.fmt(f),
            Target::Digest(d) => d.fmt(f),
        }
    }
}

impl<'a> From<&'a Tag> for Target<'a> {
    fn from(t: &'a Tag) -> Self {
        Target::Tag(t)
    }
}

impl<'a> From<&'a Digest> for Target<'a> {
    fn from(d: &'a Digest) -> Self {
        Target::Digest(d)
    }
}

/// A manifest as the registry serves it.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub media_type: String,
    pub digest: Digest,
    pub bytes: Bytes,
}

fn accept_manifests() -> HeaderValue {
    let all = [
        media_type::INDEX,
        media_type::MANIFEST,
        media_type::DOCKER_LIST,
        media_type::DOCKER_MANIFEST,
    ];
    HeaderValue::from_str(&all.join(", ")).expect("ascii")
}

impl Client {
    fn manifest_url(&self, target: Target<'_>) -> Url {
        self.repo_url(&format!("manifests/{target}"))
    }

    /// The digest `target` resolves to, or `None` when the registry has no such manifest.
    pub async fn manifest_digest(&self, target: Target<'_>) -> Result<Option<Digest>> {
        let head = self
            .session
            .request(Method::HEAD, self.manifest_url(target));
        let Some(resp) = head
            .header(ACCEPT, accept_manifests())
            .send_unless_404()
            .await?
        else {
            return Ok(None);
        };
        match header_str(&resp, DOCKER_CONTENT_DIGEST).map(Digest::parse) {
            Some(Ok(d)) => Ok(Some(d)),
            // Without a usable header, fetch the manifest and hash it.
            _ => Ok(self.get_manifest(target).await?.map(|m| m.digest)),
        }
    }

    /// The manifest or index `target` names, or `None` when the registry has none.
    pub async fn get_manifest(&self, target: Target<'_>) -> Result<Option<Fetched>> {
        let url = self.manifest_url(target);
        let get = self.session.request(Method::GET, url.clone());
        let Some(resp) = get
            .header(ACCEPT, accept_manifests())
            .send_unless_404()
            .await?
        else {
            return Ok(None);
        };
        let media_type = header_str(&resp, "content-type")
            .unwrap_or_default()
            .to_string();
        let bytes = read_at_most(resp, &url, MAX_MANIFEST).await?;
        let digest = Digest::of(&bytes);
        if let Target::Digest(want) = target {
            if *want != digest {
                return Err(RegistryError::DigestMismatch {
                    what: format!("manifest {want}"),
                    expected: want.clone(),
                    got: digest.to_string(),
                });
            }
        }
        Ok(Some(Fetched {
            media_type,
            digest,
            bytes,
        }))
    }

    /// `PUT` a manifest's exact bytes under `target` and check the digest the registry
    /// computed against `digest`. A manifest with a `subject` is put the same way.
    pub async fn put_manifest(
        &self,
        target: Target<'_>,
        media_type: &str,
        bytes: &[u8],
        digest: &Digest,
    ) -> Result<()> {
        self.put_manifest_subject(target, media_type, bytes, digest)
            .await
            .map(drop)
    }

    /// [`put_manifest`](Self::put_manifest), returning whether the registry answered with an
    /// `OCI-Subject` header: it indexed the manifest's `subject`, so it has the referrers API.
    pub async fn put_manifest_subject(
        &self,
        target: Target<'_>,
        media_type: &str,
        bytes: &[u8],
        digest: &Digest,
    ) -> Result<bool> {
        let content_type = HeaderValue::from_str(media_type).map_err(|_| {
            RegistryError::Protocol(format!("media type `{media_type}` is not a header value"))
        })?;
        let body = Bytes::copy_from_slice(bytes);
        let mut wait = BLOB_UNKNOWN_WAIT;
        let resp = loop {
            let put = self
                .session
                .request(Method::PUT, self.manifest_url(target))
                .header(CONTENT_TYPE, content_type.clone())
                .bytes(body.clone())
                .ok(&[StatusCode::CREATED, StatusCode::OK]);
            match put.send().await {
                Err(e) if blob_unknown(&e) && wait <= BLOB_UNKNOWN_WAIT * 8 => {
                    tracing::debug!("{e}: again in {wait:?}");
                    tokio::time::sleep(wait).await;
                    wait *= 2;
                }
                resp => break resp?,
            }
        };
        match header_str(&resp, DOCKER_CONTENT_DIGEST) {
            Some(got) if got != digest.to_string() => Err(RegistryError::DigestMismatch {
                what: format!("manifest {target}"),
                expected: digest.clone(),
                got: got.chars().take(100).collect(),
            }),
            _ => Ok(header_str(&resp, "oci-subject").is_some()),
        }
    }

    /// `DELETE` what `target` names (a tag: the tag alone, where the registry can delete
    /// tags); `false` when there was nothing (404).
    pub async fn delete_manifest(&self, target: Target<'_>) -> Result<bool> {
        let delete = self
            .session
            .request(Method::DELETE, self.manifest_url(target));
        let resp = delete
            .ok(&[StatusCode::ACCEPTED, StatusCode::OK, StatusCode::NO_CONTENT])
            .send_unless_404()
            .await?;
        Ok(resp.is_some())
    }

    /// `GET /v2/<name>/referrers/<digest>`: the image index of the manifests whose `subject` is
    /// `digest`, or `None` when the registry has no referrers API: a 404, a 400 or 405 (how some
    /// registries answer an unknown route), or a 200 that is not an image index.
    pub async fn referrers(&self, digest: &Digest) -> Result<Option<Bytes>> {
        let url = self.repo_url(&format!("referrers/{digest}"));
        let get = self.session.request(Method::GET, url.clone());
        let accept = HeaderValue::from_static(media_type::INDEX);
        let resp = match get.header(ACCEPT, accept).send_unless_404().await {
            Ok(Some(resp)) => resp,
            Ok(None) => return Ok(None),
            Err(e) if matches!(e.status(), Some(400 | 405)) => return Ok(None),
            Err(e) => return Err(e),
        };
        let is_index =
            header_str(&resp, "content-type").is_some_and(|t| t.starts_with(media_type::INDEX));
        if !is_index {
            return Ok(None);
        }
        Ok(Some(read_at_most(resp, &url, MAX_MANIFEST).await?))
    }
}
