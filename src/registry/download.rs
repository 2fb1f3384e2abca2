//! The read side for blobs: a small one into memory, bounded (an SBOM, a signature payload), and
//! one of any size (a base image's layers) streamed to a file, hashed on the way, and named by
//! its digest only once it hashes to it.

use std::io::Write as _;
use std::path::Path;

use bytes::Bytes;
use futures_util::TryStreamExt as _;
use reqwest::header::{HeaderValue, ACCEPT};
use reqwest::{Method, Response};
use url::Url;

use super::client::Client;
use super::error::{redact_url, RegistryError};
use super::transport::read_at_most;
use crate::digest::{Digest, HashWriter};

type Result<T, E = RegistryError> = std::result::Result<T, E>;

impl Client {
    /// Download the blob `digest` of `size` bytes to `dest`: into a temporary file beside it,
    /// renamed to `dest` once its size and digest are right. A broken transfer is retried from
    /// the start, as a request is.
    pub async fn download_blob(&self, digest: &Digest, size: u64, dest: &Path) -> Result<()> {
        let what = format!("GET blob {digest}");
        let attempts = self.session.max_attempts();
        self.session
            .retrying(&what, attempts, |_| self.download_once(digest, size, dest))
            .await
    }

    /// `GET` of the blob `digest`: its URL, and the response unless 404. `once`: not retried
    /// here (the caller retries the whole transfer).
    async fn get_blob_response(
        &self,
        digest: &Digest,
        once: bool,
    ) -> Result<(Url, Option<Response>)> {
        let url = self.repo_url(&format!("blobs/{digest}"));
        let mut get = self.session.request(Method::GET, url.clone());
        if once {
            get = get.once();
        }
        let resp = get
            .header(ACCEPT, HeaderValue::from_static("*/*"))
            .send_unless_404()
            .await?;
        Ok((url, resp))
    }

    /// A blob of at most `max` bytes, checked against its digest; an error when absent.
    pub async fn get_blob(&self, digest: &Digest, max: usize) -> Result<Bytes> {
        let (url, resp) = self.get_blob_response(digest, false).await?;
        let Some(resp) = resp else {
            return Err(RegistryError::Protocol(format!(
                "blob {digest}: not in the registry"
            )));
        };
        let bytes = read_at_most(resp, &url, max).await?;
        let got = Digest::of(&bytes);
        if &got != digest {
            return Err(RegistryError::DigestMismatch {
                what: format!("blob {digest}"),
                expected: digest.clone(),
                got: got.to_string(),
            });
        }
        Ok(bytes)
    }

    async fn download_once(&self, digest: &Digest, size: u64, dest: &Path) -> Result<()> {
        let (url, resp) = self.get_blob_response(digest, true).await?;
        let Some(resp) = resp else {
            return Err(RegistryError::Protocol(format!(
                "blob {digest}: not in {} (its manifest names it)",
                self.repository
            )));
        };
        let dir = dest.parent().unwrap_or(Path::new("."));
        let io = |source| RegistryError::Io {
            path: dest.to_path_buf(),
            source,
        };
        let tmp = tempfile::Builder::new()
            .prefix(".partial-")
            .tempfile_in(dir)
            .map_err(io)?;
        let mut out = HashWriter::new(std::io::BufWriter::with_capacity(1 << 20, tmp));
        let mut stream = resp.bytes_stream();
        let mut got = 0u64;
        while let Some(chunk) = stream
            .try_next()
            .await
            .map_err(|e| RegistryError::transport(&Method::GET, &url, e))?
        {
            got += chunk.len() as u64;
            if got > size {
                return Err(RegistryError::Protocol(format!(
                    "GET {}: more than the {size} bytes its descriptor says",
                    redact_url(&url)
                )));
            }
            out.write_all(&chunk).map_err(io)?;
        }
        let (buf, actual, _) = out.finish();
        let tmp = buf.into_inner().map_err(|e| io(e.into_error()))?;
        if got != size || &actual != digest {
            return Err(RegistryError::DigestMismatch {
                what: format!("blob {digest} ({got} of {size} bytes)"),
                expected: digest.clone(),
                got: actual.to_string(),
            });
        }
        tmp.persist(dest).map_err(|e| io(e.error))?;
        Ok(())
    }
}
