//! Manifests and indexes: resolve, fetch and put by tag or digest, and the referrers API.

use std::fmt;

use bytes::Bytes;
use reqwest::header::{HeaderValue, ACCEPT, CONTENT_TYPE};
use reqwest::{Method, StatusCode};
use url::Url;

use super::client::Client;
use super::error::RegistryError;
use super::reference::Tag;
use super::transport::header_str;
use crate::digest::Digest;
use crate::layout::{
    MEDIA_TYPE_DOCKER_LIST, MEDIA_TYPE_DOCKER_MANIFEST, MEDIA_TYPE_INDEX, MEDIA_TYPE_MANIFEST,
};

const DOCKER_CONTENT_DIGEST: &str = "docker-content-digest";

type Result<T, E = RegistryError> = std::result::Result<T, E>;

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
        MEDIA_TYPE_INDEX,
        MEDIA_TYPE_MANIFEST,
        MEDIA_TYPE_DOCKER_LIST,
        MEDIA_TYPE_DOCKER_MANIFEST,
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
            .transport
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
        let get = self.transport.request(Method::GET, url.clone());
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
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| RegistryError::transport(&Method::GET, &url, e))?;
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
        let content_type = HeaderValue::from_str(media_type).map_err(|_| {
            RegistryError::Protocol(format!("media type `{media_type}` is not a header value"))
        })?;
        let resp = self
            .transport
            .request(Method::PUT, self.manifest_url(target))
            .header(CONTENT_TYPE, content_type)
            .bytes(Bytes::copy_from_slice(bytes))
            .ok(&[StatusCode::CREATED, StatusCode::OK])
            .send()
            .await?;
        match header_str(&resp, DOCKER_CONTENT_DIGEST) {
            Some(got) if got != digest.to_string() => Err(RegistryError::DigestMismatch {
                what: format!("manifest {target}"),
                expected: digest.clone(),
                got: got.chars().take(100).collect(),
            }),
            _ => Ok(()),
        }
    }

    /// `GET /v2/<name>/referrers/<digest>`: the index of manifests whose `subject` is `digest`,
    /// or `None` when the registry has no referrers API (404).
    pub async fn referrers(&self, digest: &Digest) -> Result<Option<Bytes>> {
        let url = self.repo_url(&format!("referrers/{digest}"));
        let get = self.transport.request(Method::GET, url.clone());
        let accept = HeaderValue::from_static(MEDIA_TYPE_INDEX);
        let Some(resp) = get.header(ACCEPT, accept).send_unless_404().await? else {
            return Ok(None);
        };
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| RegistryError::transport(&Method::GET, &url, e))?;
        Ok(Some(bytes))
    }
}
