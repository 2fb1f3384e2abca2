//! One registry's bare HTTP transport: TLS, the two `reqwest` clients, sending one request, and
//! the retry policy. Nothing here knows about credentials: [`super::auth`] is built on this, and
//! [`super::session`] puts the two together (as go-containerregistry wraps its bare transport in
//! its bearer one).
//!
//! Two clients share one rustls configuration (ring provider, webpki + native roots): one that
//! may speak HTTP/2 for pings, HEADs and manifests, and an HTTP/1.1-only one for blob bodies
//! (HTTP/2's shared flow-control window makes parallel uploads to Go registries crawl). Every
//! request body has an explicit `Content-Length`; blob bodies stream from disk.
//!
//! Retries happen at one level only: a [`super::session::Request`] retries itself, and an
//! operation made of several requests that must restart together (a blob upload session) sends
//! each of them once inside one [`Transport::retrying`] loop.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::TryStreamExt as _;
use reqwest::header::{HeaderMap, HeaderValue, CONTENT_LENGTH};
use reqwest::{Method, Response};
use tracing::{debug, warn};
use url::Url;

use super::error::{
    error_chain, parse_retry_after, redact_url, summarise_error_body, RegistryError,
};

const USER_AGENT: &str = concat!("ironstar/", env!("CARGO_PKG_VERSION"));
const MAX_ERROR_BODY: usize = 64 << 10;

type Result<T, E = RegistryError> = std::result::Result<T, E>;

/// Called with the number of bytes of a blob sent so far (restarts from 0 on a retried upload).
pub type ProgressFn = Arc<dyn Fn(u64) + Send + Sync>;

/// The bare HTTP side of one registry: clients, TLS, retry policy; no auth (the
/// [`Session`](super::session::Session) above it authorises requests).
#[derive(Debug)]
pub struct Transport {
    base: Url,
    http: reqwest::Client,
    upload: reqwest::Client,
    max_attempts: u32,
    /// Whether the registry has answered anything yet: a refused connection before that means
    /// nothing listens (a wrong port, a registry not started), and is not retried.
    reached: AtomicBool,
    /// Say each retry at debug level only ([`Transport::quiet_retries`]).
    quiet: bool,
}

/// A request's body: every one is sent with an explicit `Content-Length`.
pub enum Body {
    Empty,
    Bytes(Bytes),
    File {
        path: PathBuf,
        offset: u64,
        len: u64,
        progress: Option<ProgressFn>,
    },
}

impl Body {
    fn len(&self) -> u64 {
        match self {
            Body::Empty => 0,
            Body::Bytes(b) => b.len() as u64,
            Body::File { len, .. } => *len,
        }
    }
}

/// The rustls configuration of both clients: webpki's roots, plus the system's (`SSL_CERT_FILE`,
/// `SSL_CERT_DIR`) when `system_roots`.
fn rustls_config(http1_only: bool, system_roots: bool) -> Result<rustls::ClientConfig> {
    static WEBPKI: OnceLock<Arc<rustls::RootCertStore>> = OnceLock::new();
    static WITH_SYSTEM: OnceLock<Arc<rustls::RootCertStore>> = OnceLock::new();
    let webpki = || {
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        roots
    };
    let roots = if system_roots {
        WITH_SYSTEM.get_or_init(|| {
            let mut roots = webpki();
            // Honours SSL_CERT_FILE and SSL_CERT_DIR; none at all (a scratch image) is fine.
            for cert in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(cert);
            }
            Arc::new(roots)
        })
    } else {
        WEBPKI.get_or_init(|| Arc::new(webpki()))
    }
    .clone();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| RegistryError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = if http1_only {
        vec![b"http/1.1".to_vec()]
    } else {
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    };
    Ok(cfg)
}

fn build_client(http1_only: bool, plain_http: bool) -> Result<reqwest::Client> {
    // reqwest is built without a default provider: install ring's before any client exists.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut b = reqwest::Client::builder()
        .user_agent(USER_AGENT)
        .connect_timeout(Duration::from_secs(15))
        .read_timeout(Duration::from_secs(120))
        .pool_idle_timeout(Duration::from_secs(30));
    // Always our own TLS configuration: left alone, reqwest builds one from the system's roots
    // even for a plain-http client, which fails where there are none (ironstar's own scratch
    // image) and reads every file of /etc/ssl/certs on each start. A plain-http registry needs
    // TLS only for a token realm on https, and gets webpki's roots for that.
    b = b.tls_backend_preconfigured(rustls_config(http1_only, !plain_http)?);
    if !plain_http {
        b = b.https_only(true);
    }
    if http1_only {
        b = b.http1_only();
    }
    b.build().map_err(|e| RegistryError::Tls(error_chain(&e)))
}

/// Exponential backoff with jitter: 0.25 s, 0.5 s, 1 s … capped at 8 s, each scaled by 50–100 %.
fn backoff(attempt: u32) -> Duration {
    let base = 250u64
        .saturating_mul(1 << attempt.saturating_sub(1).min(5))
        .min(8000);
    let jittered = base / 2 + fastrand::u64(0..=base / 2);
    Duration::from_millis(jittered)
}

pub(crate) fn header_str<'a>(resp: &'a Response, name: &str) -> Option<&'a str> {
    resp.headers().get(name).and_then(|v| v.to_str().ok())
}

/// Up to 64 KiB of a response's body, for an error message.
pub(crate) async fn read_limited(resp: Response) -> Vec<u8> {
    let mut out = Vec::new();
    let mut stream = resp.bytes_stream();
    while let Ok(Some(chunk)) = stream.try_next().await {
        out.extend_from_slice(&chunk);
        if out.len() >= MAX_ERROR_BODY {
            break;
        }
    }
    out
}

/// A response's whole body, refusing more than `max` bytes (everything read into memory is
/// bounded: a manifest, an SBOM).
pub(crate) async fn read_at_most(resp: Response, url: &Url, max: usize) -> Result<Bytes> {
    let mut out = Vec::new();
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream
        .try_next()
        .await
        .map_err(|e| RegistryError::transport(&Method::GET, url, e))?
    {
        if out.len() + chunk.len() > max {
            return Err(RegistryError::Protocol(format!(
                "GET {}: more than {max} bytes",
                redact_url(url)
            )));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(out))
}

/// The error for a response whose status was not expected, the registry's body summarised.
pub(crate) async fn status_error(method: &Method, url: &Url, resp: Response) -> RegistryError {
    let status = resp.status().as_u16();
    let retry_after = header_str(&resp, "retry-after").and_then(parse_retry_after);
    let body = read_limited(resp).await;
    RegistryError::Status {
        method: method.to_string(),
        url: redact_url(url),
        status,
        summary: summarise_error_body(&body),
        retry_after,
    }
}

impl Transport {
    pub fn new(base: Url, max_attempts: u32) -> Result<Self> {
        let plain_http = base.scheme() == "http";
        Ok(Transport {
            http: build_client(false, plain_http)?,
            upload: build_client(true, plain_http)?,
            base,
            max_attempts: max_attempts.max(1),
            reached: AtomicBool::new(false),
            quiet: false,
        })
    }

    /// Say retries at debug level only: for a reader whose one failure line says enough (a base
    /// pull, where a line for each retry of each blob would bury the error).
    pub fn quiet_retries(&mut self) {
        self.quiet = true;
    }

    /// `path` (absolute, e.g. `/v2/`) on the registry.
    pub fn url(&self, path: &str) -> Url {
        self.base.join(path).expect("registry paths are valid URLs")
    }

    /// The client for requests without a file body (an auth realm's token requests too).
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// Whether `url` is on the registry itself (credentials go nowhere else).
    pub fn same_origin(&self, url: &Url) -> bool {
        url.scheme() == self.base.scheme()
            && url.host_str() == self.base.host_str()
            && url.port_or_known_default() == self.base.port_or_known_default()
    }

    /// Run `f` until it succeeds, fails for good, or has run `attempts` times; the one retry
    /// loop of every operation.
    pub async fn retrying<T, F, Fut>(&self, what: &str, attempts: u32, f: F) -> Result<T>
    where
        F: FnMut(u32) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let reached = &self.reached;
        match self.quiet {
            true => retrying_at(tracing::Level::DEBUG, what, attempts, reached, f).await,
            false => retrying(what, attempts, reached, f).await,
        }
    }

    pub fn max_attempts(&self) -> u32 {
        self.max_attempts
    }

    /// Send one request, once, as it is: the caller adds any `Authorization`. Marks the
    /// registry as reached when anything answers.
    pub async fn send(
        &self,
        method: &Method,
        url: &Url,
        headers: HeaderMap,
        body: &Body,
    ) -> Result<Response> {
        let (client, payload) = match body {
            Body::Empty => (&self.http, reqwest::Body::from(Bytes::new())),
            Body::Bytes(b) => (&self.http, reqwest::Body::from(b.clone())),
            Body::File {
                path,
                offset,
                len,
                progress,
            } => (
                &self.upload,
                file_body(path, *offset, *len, progress.clone()).await?,
            ),
        };
        let mut headers = headers;
        headers.insert(CONTENT_LENGTH, HeaderValue::from(body.len()));
        let started = Instant::now();
        let sent = client
            .request(method.clone(), url.clone())
            .headers(headers)
            .body(payload)
            .send()
            .await;
        let (redacted, len) = (redact_url(url), body.len());
        let ms = started.elapsed().as_millis() as u64;
        match sent {
            Ok(resp) => {
                self.reached.store(true, Ordering::Relaxed);
                let status = resp.status().as_u16();
                debug!(%method, url = %redacted, status, sent = len, ms, "request");
                Ok(resp)
            }
            Err(e) => {
                debug!(%method, url = %redacted, sent = len, ms, "request failed");
                Err(RegistryError::transport(method, url, e))
            }
        }
    }
}

/// Run `f` until it succeeds, fails for good, or has run `attempts` times, waiting between
/// tries as the error asks (`Retry-After`) or with [`backoff`]; `reached`: whether the server
/// has answered before (a refused connection is retried only then).
pub(crate) async fn retrying<T, F, Fut>(
    what: &str,
    attempts: u32,
    reached: &AtomicBool,
    f: F,
) -> Result<T>
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Result<T>>,
{
    retrying_at(tracing::Level::WARN, what, attempts, reached, f).await
}

/// [`retrying`], saying each retry at `level`.
async fn retrying_at<T, F, Fut>(
    level: tracing::Level,
    what: &str,
    attempts: u32,
    reached: &AtomicBool,
    mut f: F,
) -> Result<T>
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let mut attempt = 1;
    loop {
        match f(attempt).await {
            Ok(v) => return Ok(v),
            Err(e) if attempt < attempts && e.is_retryable(reached.load(Ordering::Relaxed)) => {
                let delay = e.retry_after().unwrap_or_else(|| backoff(attempt));
                let line = format!(
                    "{what}: {e}; retrying in {:.1}s (attempt {}/{attempts})",
                    delay.as_secs_f64(),
                    attempt + 1,
                );
                match level {
                    tracing::Level::WARN => warn!("{line}"),
                    _ => debug!("{line}"),
                }
                tokio::time::sleep(delay).await;
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

/// A streaming body of `len` bytes of `path` from `offset`, reporting progress.
async fn file_body(
    path: &Path,
    offset: u64,
    len: u64,
    progress: Option<ProgressFn>,
) -> Result<reqwest::Body> {
    use tokio::io::{AsyncReadExt as _, AsyncSeekExt as _};
    let io = |source| RegistryError::Io {
        path: path.to_path_buf(),
        source,
    };
    // Never through a link (the layout's blobs were checked so, and must stay so).
    let mut file = tokio::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .await
        .map_err(io)?;
    file.seek(std::io::SeekFrom::Start(offset))
        .await
        .map_err(io)?;
    let mut sent = offset;
    let stream =
        tokio_util::io::ReaderStream::with_capacity(file.take(len), 256 << 10).map_ok(move |b| {
            sent += b.len() as u64;
            if let Some(p) = &progress {
                p(sent);
            }
            b
        });
    Ok(reqwest::Body::wrap_stream(stream))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_bounded() {
        for a in 1..20 {
            let d = backoff(a);
            assert!(d <= Duration::from_secs(8));
        }
        assert!(backoff(1) <= Duration::from_millis(250));
        assert!(backoff(4) >= Duration::from_millis(1000));
    }
}
