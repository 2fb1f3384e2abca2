//! Reads for SBOMs and referrers: a manifest's bytes, a small blob, the referrers API. Bounded
//! (everything here is read into memory) and checked against the digest asked for.

use bytes::Bytes;
use futures_util::TryStreamExt as _;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, ACCEPT};
use reqwest::{Method, Response, StatusCode};
use url::Url;

use super::{header_str, transport, Body, Repository, Req, Result};
use crate::digest::Digest;
use crate::registry::RegistryError;

/// Manifests and indexes: the limit most registries share.
pub const MAX_MANIFEST: usize = 4 << 20;

impl Repository {
    fn pull_scopes(&self) -> Vec<String> {
        vec![format!("repository:{}:pull", self.reference.repository)]
    }

    /// `GET` `path` (under `/v2/<name>/`) with `accept`: `None` on 404, else the content type
    /// and at most `max` bytes of body.
    async fn get_bounded(
        &self,
        path: &str,
        accept: &str,
        max: usize,
    ) -> Result<Option<(String, Bytes)>> {
        let url = self.repo_path(path);
        let scopes = self.pull_scopes();
        let headers = one_header(ACCEPT, accept)?;
        self.retrying(&format!("GET {path}"), |_| async {
            let resp = self
                .execute(Req {
                    method: Method::GET,
                    url: url.clone(),
                    headers: headers.clone(),
                    body: Body::Empty,
                    scopes: &scopes,
                })
                .await?;
            if resp.status() == StatusCode::NOT_FOUND {
                return Ok(None);
            }
            let resp = self
                .expect(&Method::GET, &url, resp, &[StatusCode::OK])
                .await?;
            let media_type = header_str(&resp, "content-type")
                .unwrap_or_default()
                .to_string();
            Ok(Some((media_type, read_at_most(resp, &url, max).await?)))
        })
        .await
    }

    /// A manifest or index by tag or digest: its media type and bytes; `None` when absent. By
    /// digest, the bytes are checked against it.
    pub async fn get_manifest(&self, reference: &str) -> Result<Option<(String, Bytes)>> {
        let accept = [
            crate::layout::MEDIA_TYPE_INDEX,
            crate::layout::MEDIA_TYPE_MANIFEST,
            crate::layout::MEDIA_TYPE_DOCKER_LIST,
            crate::layout::MEDIA_TYPE_DOCKER_MANIFEST,
        ]
        .join(", ");
        let got = self
            .get_bounded(&format!("manifests/{reference}"), &accept, MAX_MANIFEST)
            .await?;
        if let (Some((_, bytes)), Ok(d)) = (&got, Digest::parse(reference)) {
            check_digest(&format!("manifest {reference}"), &d, bytes)?;
        }
        Ok(got)
    }

    /// A blob of at most `max` bytes, checked against its digest.
    pub async fn get_blob(&self, digest: &Digest, max: usize) -> Result<Bytes> {
        let what = format!("blob {digest}");
        let (_, bytes) = self
            .get_bounded(&format!("blobs/{digest}"), "*/*", max)
            .await?
            .ok_or_else(|| RegistryError::Protocol(format!("{what}: not in the registry")))?;
        check_digest(&what, digest, &bytes)?;
        Ok(bytes)
    }

    /// `GET /v2/<name>/referrers/<digest>`: the image index of the manifests whose `subject` is
    /// `digest`, or `None` when the registry has no referrers API (a 404 or another refusal).
    pub async fn referrers(&self, digest: &Digest) -> Result<Option<Bytes>> {
        let got = self
            .get_bounded(
                &format!("referrers/{digest}"),
                crate::layout::MEDIA_TYPE_INDEX,
                MAX_MANIFEST,
            )
            .await;
        match got {
            Ok(Some((media_type, bytes)))
                if media_type.starts_with(crate::layout::MEDIA_TYPE_INDEX) =>
            {
                Ok(Some(bytes))
            }
            Ok(_) => Ok(None),
            // Some registries answer an unknown route with 400 or 405.
            Err(e) if matches!(e.status(), Some(400 | 405)) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// Headers of one `name: value`, refusing a value that is not a header value.
pub(super) fn one_header(name: HeaderName, value: &str) -> Result<HeaderMap> {
    let v = HeaderValue::from_str(value)
        .map_err(|_| RegistryError::Protocol(format!("`{value}` is not a header value")))?;
    Ok(HeaderMap::from_iter([(name, v)]))
}

fn check_digest(what: &str, expected: &Digest, bytes: &[u8]) -> Result<()> {
    let got = Digest::of(bytes);
    if &got != expected {
        return Err(RegistryError::DigestMismatch {
            what: what.to_string(),
            expected: expected.clone(),
            got: got.to_string(),
        });
    }
    Ok(())
}

async fn read_at_most(resp: Response, url: &Url, max: usize) -> Result<Bytes> {
    let mut out = Vec::new();
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream
        .try_next()
        .await
        .map_err(|e| transport(&Method::GET, url, e))?
    {
        if out.len() + chunk.len() > max {
            return Err(RegistryError::Protocol(format!(
                "GET {}: more than {max} bytes",
                super::redact_url(url)
            )));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(out))
}
