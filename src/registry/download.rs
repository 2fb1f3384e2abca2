//! The read side for blobs of any size (a base image's layers): streamed to a file, hashed on
//! the way, and named by their digest only once they hash to it.

use std::io::Write as _;
use std::path::Path;

use futures_util::TryStreamExt as _;
use reqwest::header::{HeaderValue, ACCEPT};
use reqwest::Method;

use super::client::Client;
use super::error::{redact_url, RegistryError};
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

    async fn download_once(&self, digest: &Digest, size: u64, dest: &Path) -> Result<()> {
        let url = self.repo_url(&format!("blobs/{digest}"));
        let get = self.session.request(Method::GET, url.clone()).once();
        let Some(resp) = get
            .header(ACCEPT, HeaderValue::from_static("*/*"))
            .send_unless_404()
            .await?
        else {
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
