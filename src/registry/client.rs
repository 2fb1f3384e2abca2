//! The HTTP side of distribution-spec v1.1: one repository on one registry, with challenge-driven
//! auth, retries, and the blob and manifest operations a push needs.
//!
//! Two `reqwest` clients share one rustls configuration (ring provider, webpki + native roots):
//! one that may speak HTTP/2 for pings, HEADs and manifests, and an HTTP/1.1-only one for blob
//! bodies (HTTP/2's shared flow-control window makes parallel uploads to Go registries crawl).
//! Every request body has an explicit `Content-Length`; blob bodies stream from disk.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use base64::Engine as _;
use bytes::Bytes;
use futures_util::TryStreamExt as _;
use reqwest::header::{
    HeaderMap, HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE,
};
use reqwest::{Method, Response, StatusCode};
use tracing::{debug, warn};
use url::Url;

use super::auth::{parse_challenge, AuthState, Challenge, Credential, FoundCredential};
use super::reference::{host_without_port, is_loopback, Reference};
use crate::digest::Digest;
use crate::layout::{
    MEDIA_TYPE_DOCKER_LIST, MEDIA_TYPE_DOCKER_MANIFEST, MEDIA_TYPE_INDEX, MEDIA_TYPE_MANIFEST,
};

/// The chunk size when a registry refuses a blob in one `PUT` (413, as ACR does above ~20 MB):
/// below ghcr.io's per-request limit (a `PATCH` near 4 MiB gets 416 there).
pub const DEFAULT_CHUNK_SIZE: u64 = 3 << 20;
pub const DEFAULT_MAX_ATTEMPTS: u32 = 6;
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);
const MAX_ERROR_BODY: usize = 64 << 10;
const USER_AGENT: &str = concat!("ironstar/", env!("CARGO_PKG_VERSION"));
const DOCKER_CONTENT_DIGEST: &str = "docker-content-digest";

// Manifest and blob reads and the referrers API, for SBOMs.
mod referrers;

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("{method} {url}: {message}")]
    Transport {
        method: String,
        url: String,
        message: String,
    },
    #[error("{method} {url}: HTTP {status}: {summary}")]
    Status {
        method: String,
        url: String,
        status: u16,
        summary: String,
        retry_after: Option<Duration>,
    },
    #[error("{0}")]
    Auth(String),
    #[error("{what}: the registry answered digest {got}, expected {expected}; refusing to go on (nothing was tagged)")]
    DigestMismatch {
        what: String,
        expected: Digest,
        got: String,
    },
    #[error("{0}")]
    Protocol(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("TLS setup: {0}")]
    Tls(String),
}

impl RegistryError {
    /// Connection errors, timeouts, 408, 429 and 5xx gateway-ish statuses are worth another try.
    pub fn is_retryable(&self) -> bool {
        match self {
            RegistryError::Transport { .. } => true,
            RegistryError::Status { status, .. } => {
                matches!(status, 408 | 429 | 500 | 502 | 503 | 504)
            }
            _ => false,
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            RegistryError::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    pub fn status(&self) -> Option<u16> {
        match self {
            RegistryError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

type Result<T, E = RegistryError> = std::result::Result<T, E>;

/// Called with the number of bytes of a blob sent so far (restarts from 0 on a retried upload).
pub type ProgressFn = Arc<dyn Fn(u64) + Send + Sync>;

#[derive(Debug, Clone)]
pub struct ClientOptions {
    pub plain_http: bool,
    /// Blobs larger than this go up in `PATCH` chunks of this size; `None` (the default): one
    /// monolithic `PUT` a blob, which every registry takes and which is the fastest (ECR even
    /// refuses chunks under 5 MB).
    pub chunk_size: Option<u64>,
    pub max_attempts: u32,
    pub credential: Option<FoundCredential>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            plain_http: false,
            chunk_size: None,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            credential: None,
        }
    }
}

/// How a blob got into the repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobOutcome {
    Existed,
    Mounted,
    Uploaded,
}

/// A client for one repository of one registry.
#[derive(Debug)]
pub struct Repository {
    pub reference: Reference,
    base: Url,
    http: reqwest::Client,
    upload: reqwest::Client,
    auth: AuthState,
    opts: ClientOptions,
}

enum Body {
    Empty,
    Bytes(Bytes),
    File {
        path: PathBuf,
        offset: u64,
        len: u64,
        progress: Option<(ProgressFn, u64)>,
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

struct Req<'a> {
    method: Method,
    url: Url,
    headers: HeaderMap,
    body: Body,
    scopes: &'a [String],
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

/// `scheme://host/path` with any query replaced by `?…`: upload URLs carry opaque state.
pub fn redact_url(url: &Url) -> String {
    let mut s = format!("{}://{}", url.scheme(), url.host_str().unwrap_or(""));
    if let Some(p) = url.port() {
        s.push_str(&format!(":{p}"));
    }
    s.push_str(url.path());
    if url.query().is_some() {
        s.push_str("?…");
    }
    s
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut cur = e.source();
    while let Some(s) = cur {
        let t = s.to_string();
        if !parts.last().is_some_and(|p| p.contains(&t)) {
            parts.push(t);
        }
        cur = s.source();
    }
    parts.join(": ")
}

fn transport(method: &Method, url: &Url, e: reqwest::Error) -> RegistryError {
    let e = e.without_url();
    let mut message = error_chain(&e);
    if message.contains("InvalidContentType") && url.scheme() == "https" {
        message.push_str(
            " (the registry may speak plain http: --plain-http, for loopback test registries)",
        );
    }
    RegistryError::Transport {
        method: method.to_string(),
        url: redact_url(url),
        message,
    }
}

/// Exponential backoff with jitter: 0.25 s, 0.5 s, 1 s … capped at 8 s, each scaled by 50–100 %.
fn backoff(attempt: u32) -> Duration {
    let base = 250u64
        .saturating_mul(1 << attempt.saturating_sub(1).min(5))
        .min(8000);
    let jittered = base / 2 + fastrand::u64(0..=base / 2);
    Duration::from_millis(jittered)
}

/// `Retry-After` as seconds or an HTTP date.
pub fn parse_retry_after(v: &str) -> Option<Duration> {
    let v = v.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs).min(MAX_RETRY_AFTER));
    }
    let when = httpdate::parse_http_date(v).ok()?;
    Some(
        when.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO)
            .min(MAX_RETRY_AFTER),
    )
}

/// The registry's error body, summarised: `CODE: message` for each distribution error, else the
/// first line of text.
pub fn summarise_error_body(body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct Errors {
        errors: Vec<Item>,
    }
    #[derive(serde::Deserialize)]
    struct Item {
        code: Option<String>,
        message: Option<String>,
    }
    if let Ok(e) = serde_json::from_slice::<Errors>(body) {
        let parts: Vec<String> = e
            .errors
            .iter()
            .map(|i| match (&i.code, &i.message) {
                (Some(c), Some(m)) => format!("{c}: {m}"),
                (Some(c), None) => c.clone(),
                (None, Some(m)) => m.clone(),
                (None, None) => "error".into(),
            })
            .collect();
        if !parts.is_empty() {
            return parts.join("; ");
        }
    }
    let text = String::from_utf8_lossy(body);
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("");
    let mut s: String = line.chars().take(200).collect();
    if line.chars().count() > 200 {
        s.push('…');
    }
    if s.is_empty() {
        "(empty body)".into()
    } else {
        s
    }
}

fn header_str<'a>(resp: &'a Response, name: &str) -> Option<&'a str> {
    resp.headers().get(name).and_then(|v| v.to_str().ok())
}

impl Repository {
    /// A client for `reference`'s repository (tag and digest are ignored).
    pub fn new(reference: &Reference, opts: ClientOptions) -> Result<Self> {
        let scheme = if opts.plain_http { "http" } else { "https" };
        let base = Url::parse(&format!("{scheme}://{}/", reference.api_host()))
            .map_err(|e| RegistryError::Protocol(format!("registry address: {e}")))?;
        Ok(Repository {
            reference: Reference {
                tag: None,
                digest: None,
                ..reference.clone()
            },
            base,
            http: build_client(false, opts.plain_http)?,
            upload: build_client(true, opts.plain_http)?,
            auth: AuthState::default(),
            opts,
        })
    }

    fn url(&self, path: &str) -> Url {
        self.base.join(path).expect("registry paths are valid URLs")
    }

    fn repo_path(&self, rest: &str) -> Url {
        self.url(&format!("/v2/{}/{rest}", self.reference.repository))
    }

    fn push_scopes(&self) -> Vec<String> {
        vec![format!(
            "repository:{}:pull,push",
            self.reference.repository
        )]
    }

    /// Whether a credential may go to `url`: never a password over plain http off loopback.
    fn may_send_credential(url: &Url) -> bool {
        url.scheme() == "https"
            || url.host_str().is_some_and(|h| {
                is_loopback(host_without_port(h).trim_matches(|c| c == '[' || c == ']'))
            })
    }

    fn same_origin(&self, url: &Url) -> bool {
        url.scheme() == self.base.scheme()
            && url.host_str() == self.base.host_str()
            && url.port_or_known_default() == self.base.port_or_known_default()
    }

    /// Run `f` until it succeeds, fails for good, or runs out of attempts.
    async fn retrying<T, F, Fut>(&self, what: &str, mut f: F) -> Result<T>
    where
        F: FnMut(u32) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let mut attempt = 1;
        loop {
            match f(attempt).await {
                Ok(v) => return Ok(v),
                Err(e) if e.is_retryable() && attempt < self.opts.max_attempts => {
                    let delay = e.retry_after().unwrap_or_else(|| backoff(attempt));
                    warn!(
                        "{what}: {e}; retrying in {:.1}s (attempt {}/{})",
                        delay.as_secs_f64(),
                        attempt + 1,
                        self.opts.max_attempts
                    );
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// One request, with auth: on a 401 the challenge is answered (a token fetched or Basic
    /// credentials attached) and the request sent once more.
    async fn execute(&self, req: Req<'_>) -> Result<Response> {
        let mut answered = false;
        loop {
            let client = if matches!(req.body, Body::File { .. }) {
                &self.upload
            } else {
                &self.http
            };
            let mut headers = req.headers.clone();
            headers.insert(CONTENT_LENGTH, HeaderValue::from(req.body.len()));
            if self.same_origin(&req.url) {
                if let Some(v) = self.authorization(&req.url, req.scopes).await? {
                    headers.insert(AUTHORIZATION, v);
                }
            }
            let body = match &req.body {
                Body::Empty => reqwest::Body::from(Bytes::new()),
                Body::Bytes(b) => reqwest::Body::from(b.clone()),
                Body::File {
                    path,
                    offset,
                    len,
                    progress,
                } => file_body(path, *offset, *len, progress.clone())?,
            };
            let started = Instant::now();
            let sent = client
                .request(req.method.clone(), req.url.clone())
                .headers(headers)
                .body(body)
                .send()
                .await;
            let resp = match sent {
                Ok(r) => r,
                Err(e) => {
                    debug!(
                        method = %req.method,
                        url = %redact_url(&req.url),
                        sent = req.body.len(),
                        ms = started.elapsed().as_millis() as u64,
                        "request failed"
                    );
                    return Err(transport(&req.method, &req.url, e));
                }
            };
            debug!(
                method = %req.method,
                url = %redact_url(&req.url),
                status = resp.status().as_u16(),
                sent = req.body.len(),
                received = resp.content_length().unwrap_or(0),
                ms = started.elapsed().as_millis() as u64,
                "request"
            );
            if resp.status() == StatusCode::UNAUTHORIZED && !answered && self.same_origin(&req.url)
            {
                if let Some(c) = header_str(&resp, "www-authenticate").and_then(parse_challenge) {
                    answered = true;
                    self.answer_challenge(c, req.scopes).await?;
                    continue;
                }
            }
            return Ok(resp);
        }
    }

    /// The `Authorization` header for a request needing `scopes`, if the registry asked for one.
    async fn authorization(&self, url: &Url, scopes: &[String]) -> Result<Option<HeaderValue>> {
        let value = match self.auth.challenge() {
            None => return Ok(None),
            Some(Challenge::Basic) => match &self.opts.credential {
                Some(FoundCredential {
                    credential: Credential::Basic { username, password },
                    ..
                }) => {
                    if !Self::may_send_credential(url) {
                        return Err(self.plain_http_refusal(url));
                    }
                    let raw = format!("{username}:{password}");
                    format!(
                        "Basic {}",
                        base64::engine::general_purpose::STANDARD.encode(raw)
                    )
                }
                _ => return Ok(None),
            },
            Some(Challenge::Bearer { realm, service, .. }) => {
                let key = scopes.join(" ");
                let token = match self.auth.token(&key) {
                    Some(t) => t,
                    None => {
                        let t = self.fetch_token(&realm, service.as_deref(), scopes).await?;
                        self.auth.set_token(&key, t.clone());
                        t
                    }
                };
                format!("Bearer {token}")
            }
        };
        let mut v = HeaderValue::from_str(&value)
            .map_err(|_| RegistryError::Auth("credential is not a valid header value".into()))?;
        v.set_sensitive(true);
        Ok(Some(v))
    }

    fn plain_http_refusal(&self, url: &Url) -> RegistryError {
        RegistryError::Auth(format!(
            "refusing to send credentials over plain http to {} (only loopback registries may use --plain-http with credentials)",
            url.host_str().unwrap_or("?")
        ))
    }

    async fn answer_challenge(&self, c: Challenge, scopes: &[String]) -> Result<()> {
        match &c {
            Challenge::Basic => {
                if self.opts.credential.is_none() {
                    return Err(self.no_credentials());
                }
                self.auth.set_challenge(c);
            }
            Challenge::Bearer {
                realm,
                service,
                scope,
            } => {
                // The challenge may ask for a scope other than ours: ask for both.
                let mut wanted: Vec<String> = scopes.to_vec();
                if let Some(s) = scope {
                    for one in s.split(' ') {
                        if !one.is_empty() && !wanted.iter().any(|w| w == one) {
                            wanted.push(one.to_string());
                        }
                    }
                }
                let token = self.fetch_token(realm, service.as_deref(), &wanted).await?;
                self.auth.set_challenge(c.clone());
                self.auth.set_token(&scopes.join(" "), token);
            }
        }
        Ok(())
    }

    fn no_credentials(&self) -> RegistryError {
        RegistryError::Auth(format!(
            "{} requires authentication and no credentials were found (tried --username/--password-stdin, $REGISTRY_AUTH_FILE, $XDG_RUNTIME_DIR/containers/auth.json, $DOCKER_CONFIG/config.json or ~/.docker/config.json{})",
            self.reference.registry,
            if self.reference.registry == "ghcr.io" { ", $GITHUB_TOKEN" } else { "" }
        ))
    }

    fn credential_source(&self) -> String {
        match &self.opts.credential {
            Some(c) => format!("credentials from {}", c.source),
            None => "anonymous access".into(),
        }
    }

    /// Get a bearer token for `scopes` from `realm`, with our credentials if we have any.
    async fn fetch_token(
        &self,
        realm: &str,
        service: Option<&str>,
        scopes: &[String],
    ) -> Result<String> {
        let realm_url = Url::parse(realm)
            .map_err(|e| RegistryError::Auth(format!("token realm `{realm}`: {e}")))?;
        let credential = self.opts.credential.as_ref().map(|c| &c.credential);
        if credential.is_some() && !Self::may_send_credential(&realm_url) {
            return Err(self.plain_http_refusal(&realm_url));
        }
        let what = format!("token from {}", redact_url(&realm_url));
        let token = self
            .retrying(&what, |_| async {
                let started = Instant::now();
                let (method, rb) = match credential {
                    Some(Credential::IdentityToken(refresh)) => {
                        let mut form = url::form_urlencoded::Serializer::new(String::new());
                        form.append_pair("grant_type", "refresh_token")
                            .append_pair("client_id", "ironstar")
                            .append_pair("refresh_token", refresh)
                            .append_pair("scope", &scopes.join(" "));
                        if let Some(s) = service {
                            form.append_pair("service", s);
                        }
                        let body = form.finish();
                        let rb = self
                            .http
                            .post(realm_url.clone())
                            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
                            .header(CONTENT_LENGTH, body.len())
                            .body(body);
                        (Method::POST, rb)
                    }
                    other => {
                        let mut url = realm_url.clone();
                        {
                            let mut q = url.query_pairs_mut();
                            if let Some(s) = service {
                                q.append_pair("service", s);
                            }
                            for s in scopes {
                                q.append_pair("scope", s);
                            }
                        }
                        let mut rb = self.http.get(url);
                        if let Some(Credential::Basic { username, password }) = other {
                            rb = rb.basic_auth(username, Some(password));
                        }
                        (Method::GET, rb)
                    }
                };
                let resp = rb
                    .send()
                    .await
                    .map_err(|e| transport(&method, &realm_url, e))?;
                debug!(
                    method = %method,
                    url = %redact_url(&realm_url),
                    status = resp.status().as_u16(),
                    ms = started.elapsed().as_millis() as u64,
                    "token request"
                );
                let status = resp.status();
                if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
                    let body = read_limited(resp).await;
                    return Err(RegistryError::Auth(format!(
                        "{}: authentication failed with {} (token endpoint said HTTP {}: {})",
                        self.reference.registry,
                        self.credential_source(),
                        status.as_u16(),
                        summarise_error_body(&body)
                    )));
                }
                let resp = check(&method, &realm_url, resp, &[StatusCode::OK]).await?;
                let body = resp
                    .bytes()
                    .await
                    .map_err(|e| transport(&method, &realm_url, e))?;
                #[derive(serde::Deserialize)]
                struct TokenResponse {
                    token: Option<String>,
                    access_token: Option<String>,
                }
                let t: TokenResponse = serde_json::from_slice(&body).map_err(|_| {
                    RegistryError::Auth(format!("{what}: the answer is not a token"))
                })?;
                t.token
                    .or(t.access_token)
                    .filter(|t| !t.is_empty())
                    .ok_or_else(|| {
                        RegistryError::Auth(format!("{what}: the answer holds no token"))
                    })
            })
            .await?;
        Ok(token)
    }

    /// Map a final response to an error unless its status is one of `ok`; 401/403 become auth
    /// errors that say where the credentials came from.
    async fn expect(
        &self,
        method: &Method,
        url: &Url,
        resp: Response,
        ok: &[StatusCode],
    ) -> Result<Response> {
        let status = resp.status();
        if ok.contains(&status) {
            return Ok(resp);
        }
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            if status == StatusCode::UNAUTHORIZED && self.opts.credential.is_none() {
                return Err(self.no_credentials());
            }
            let body = read_limited(resp).await;
            return Err(RegistryError::Auth(format!(
                "{} {}: HTTP {}: {} ({} {})",
                method,
                redact_url(url),
                status.as_u16(),
                summarise_error_body(&body),
                self.credential_source(),
                if status == StatusCode::UNAUTHORIZED {
                    "rejected"
                } else {
                    "lack push access to this repository"
                }
            )));
        }
        check(method, url, resp, ok).await
    }

    /// `GET /v2/`: checks the registry is there and learns its auth scheme.
    pub async fn ping(&self) -> Result<()> {
        let url = self.url("/v2/");
        self.retrying("ping", |_| async {
            let started = Instant::now();
            let resp = self
                .http
                .get(url.clone())
                .send()
                .await
                .map_err(|e| transport(&Method::GET, &url, e))?;
            debug!(method = "GET", url = %redact_url(&url), status = resp.status().as_u16(), ms = started.elapsed().as_millis() as u64, "request");
            if resp.status() == StatusCode::UNAUTHORIZED {
                match header_str(&resp, "www-authenticate").and_then(parse_challenge) {
                    Some(c) => {
                        if c == Challenge::Basic && self.opts.credential.is_none() {
                            return Err(self.no_credentials());
                        }
                        self.auth.set_challenge(c);
                        Ok(())
                    }
                    None => Err(RegistryError::Auth(format!(
                        "{}: 401 without a usable WWW-Authenticate challenge",
                        self.reference.registry
                    ))),
                }
            } else {
                check(&Method::GET, &url, resp, &[StatusCode::OK]).await.map(drop)
            }
        })
        .await
    }

    /// Whether the repository holds the blob.
    pub async fn blob_exists(&self, digest: &Digest) -> Result<bool> {
        let url = self.repo_path(&format!("blobs/{digest}"));
        let scopes = self.push_scopes();
        self.retrying(&format!("HEAD blob {}", short(digest)), |_| async {
            let resp = self
                .execute(Req {
                    method: Method::HEAD,
                    url: url.clone(),
                    headers: HeaderMap::new(),
                    body: Body::Empty,
                    scopes: &scopes,
                })
                .await?;
            match resp.status() {
                StatusCode::OK => Ok(true),
                StatusCode::NOT_FOUND => Ok(false),
                _ => self
                    .expect(&Method::HEAD, &url, resp, &[])
                    .await
                    .map(|_| false),
            }
        })
        .await
    }

    /// Put the blob at `path` into the repository: a cross-repository mount from `mount_from`
    /// when given, else (or when the mount is refused) an upload. A broken upload is restarted
    /// from a fresh session after checking whether the blob landed anyway.
    pub async fn push_blob(
        &self,
        digest: &Digest,
        size: u64,
        path: &Path,
        mount_from: Option<&str>,
        progress: Option<ProgressFn>,
    ) -> Result<BlobOutcome> {
        let what = format!("upload of blob {}", short(digest));
        let what = what.as_str();
        self.retrying(what, |attempt| {
            let progress = progress.clone();
            async move {
                if attempt > 1 && self.blob_exists(digest).await? {
                    return Ok(BlobOutcome::Existed);
                }
                if let Some(p) = &progress {
                    p(0);
                }
                let (location, min_chunk) = match mount_from {
                    Some(from) if from != self.reference.repository => {
                        match self.try_mount(digest, from).await? {
                            Mount::Mounted => return Ok(BlobOutcome::Mounted),
                            Mount::Session(loc, min) => (loc, min),
                            Mount::Refused => self.start_upload().await?,
                        }
                    }
                    _ => self.start_upload().await?,
                };
                let chunk = self
                    .opts
                    .chunk_size
                    .map(|c| c.max(min_chunk.unwrap_or(0)).max(1));
                match chunk {
                    Some(chunk) if size > chunk => {
                        self.put_chunked(digest, size, path, location, chunk, progress)
                            .await?
                    }
                    _ => match self
                        .put_monolithic(digest, size, path, location, progress.clone())
                        .await
                    {
                        // ACR refuses large monolithic PUTs with 413: send chunks instead.
                        Err(e) if e.status() == Some(413) && size > 1 => {
                            warn!("{what}: 413 for one PUT; uploading in chunks instead");
                            let (location, _) = self.start_upload().await?;
                            let half = size.div_ceil(2).min(DEFAULT_CHUNK_SIZE);
                            self.put_chunked(digest, size, path, location, half, progress)
                                .await?;
                        }
                        other => other?,
                    },
                }
                Ok(BlobOutcome::Uploaded)
            }
        })
        .await
    }

    async fn try_mount(&self, digest: &Digest, from: &str) -> Result<Mount> {
        let mut url = self.repo_path("blobs/uploads/");
        url.query_pairs_mut()
            .append_pair("mount", &digest.to_string())
            .append_pair("from", from);
        let mut scopes = self.push_scopes();
        scopes.push(format!("repository:{from}:pull"));
        let resp = match self
            .execute(Req {
                method: Method::POST,
                url: url.clone(),
                headers: HeaderMap::new(),
                body: Body::Empty,
                scopes: &scopes,
            })
            .await
        {
            Ok(r) => r,
            // A mount that cannot even be asked for (token refused for the source) is no
            // reason to fail the push: upload instead.
            Err(RegistryError::Auth(m)) => {
                debug!("mount from {from} refused: {m}");
                return Ok(Mount::Refused);
            }
            Err(e) => return Err(e),
        };
        match resp.status() {
            StatusCode::CREATED => Ok(Mount::Mounted),
            StatusCode::ACCEPTED => {
                let (loc, min) = self.session_location(&url, &resp)?;
                Ok(Mount::Session(loc, min))
            }
            s if s.is_client_error() && !matches!(s.as_u16(), 408 | 429) => {
                debug!(
                    "mount from {from} answered HTTP {}; uploading instead",
                    s.as_u16()
                );
                Ok(Mount::Refused)
            }
            _ => self
                .expect(&Method::POST, &url, resp, &[])
                .await
                .map(|_| Mount::Refused),
        }
    }

    fn session_location(&self, request_url: &Url, resp: &Response) -> Result<(Url, Option<u64>)> {
        let loc = header_str(resp, "location").ok_or_else(|| {
            RegistryError::Protocol(format!(
                "POST {}: upload session started without a Location",
                redact_url(request_url)
            ))
        })?;
        let url = request_url
            .join(loc)
            .map_err(|e| RegistryError::Protocol(format!("upload Location is not a URL: {e}")))?;
        let min = header_str(resp, "oci-chunk-min-length").and_then(|v| v.trim().parse().ok());
        Ok((url, min))
    }

    async fn start_upload(&self) -> Result<(Url, Option<u64>)> {
        let url = self.repo_path("blobs/uploads/");
        let scopes = self.push_scopes();
        let resp = self
            .execute(Req {
                method: Method::POST,
                url: url.clone(),
                headers: HeaderMap::new(),
                body: Body::Empty,
                scopes: &scopes,
            })
            .await?;
        let resp = self
            .expect(&Method::POST, &url, resp, &[StatusCode::ACCEPTED])
            .await?;
        self.session_location(&url, &resp)
    }

    fn octet_headers() -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        );
        h
    }

    fn check_blob_digest(&self, resp: &Response, digest: &Digest) -> Result<()> {
        match header_str(resp, DOCKER_CONTENT_DIGEST) {
            Some(got) if got != digest.to_string() => Err(RegistryError::DigestMismatch {
                what: format!("blob {digest}"),
                expected: digest.clone(),
                got: got.to_string(),
            }),
            _ => Ok(()),
        }
    }

    async fn put_monolithic(
        &self,
        digest: &Digest,
        size: u64,
        path: &Path,
        location: Url,
        progress: Option<ProgressFn>,
    ) -> Result<()> {
        let mut url = location;
        url.query_pairs_mut()
            .append_pair("digest", &digest.to_string());
        let scopes = self.push_scopes();
        let resp = self
            .execute(Req {
                method: Method::PUT,
                url: url.clone(),
                headers: Self::octet_headers(),
                body: Body::File {
                    path: path.to_path_buf(),
                    offset: 0,
                    len: size,
                    progress: progress.map(|p| (p, 0)),
                },
                scopes: &scopes,
            })
            .await?;
        let resp = self
            .expect(&Method::PUT, &url, resp, &[StatusCode::CREATED])
            .await?;
        self.check_blob_digest(&resp, digest)
    }

    async fn put_chunked(
        &self,
        digest: &Digest,
        size: u64,
        path: &Path,
        mut location: Url,
        chunk: u64,
        progress: Option<ProgressFn>,
    ) -> Result<()> {
        let scopes = self.push_scopes();
        let mut offset = 0;
        while offset < size {
            let len = chunk.min(size - offset);
            let mut headers = Self::octet_headers();
            // `start-end`, inclusive, without a `bytes ` prefix: what distribution and ACR accept.
            headers.insert(
                "content-range",
                HeaderValue::from_str(&format!("{}-{}", offset, offset + len - 1)).expect("ascii"),
            );
            let resp = self
                .execute(Req {
                    method: Method::PATCH,
                    url: location.clone(),
                    headers,
                    body: Body::File {
                        path: path.to_path_buf(),
                        offset,
                        len,
                        progress: progress.clone().map(|p| (p, offset)),
                    },
                    scopes: &scopes,
                })
                .await?;
            // ECR answers 201 where the spec says 202.
            let resp = self
                .expect(
                    &Method::PATCH,
                    &location,
                    resp,
                    &[StatusCode::ACCEPTED, StatusCode::CREATED],
                )
                .await?;
            if let Some(loc) = header_str(&resp, "location") {
                location = location.join(loc).map_err(|e| {
                    RegistryError::Protocol(format!("upload Location is not a URL: {e}"))
                })?;
            }
            offset += len;
        }
        let mut url = location;
        url.query_pairs_mut()
            .append_pair("digest", &digest.to_string());
        let resp = self
            .execute(Req {
                method: Method::PUT,
                url: url.clone(),
                headers: Self::octet_headers(),
                body: Body::Empty,
                scopes: &scopes,
            })
            .await?;
        let resp = self
            .expect(&Method::PUT, &url, resp, &[StatusCode::CREATED])
            .await?;
        self.check_blob_digest(&resp, digest)
    }

    /// The digest a tag or digest reference resolves to, or `None` when the registry has none.
    pub async fn manifest_digest(&self, reference: &str) -> Result<Option<String>> {
        let url = self.repo_path(&format!("manifests/{reference}"));
        let scopes = self.push_scopes();
        let mut headers = HeaderMap::new();
        headers.insert(
            ACCEPT,
            HeaderValue::from_str(
                &[
                    MEDIA_TYPE_INDEX,
                    MEDIA_TYPE_MANIFEST,
                    MEDIA_TYPE_DOCKER_LIST,
                    MEDIA_TYPE_DOCKER_MANIFEST,
                ]
                .join(", "),
            )
            .expect("ascii"),
        );
        self.retrying(&format!("HEAD manifest {reference}"), |_| async {
            let resp = self
                .execute(Req {
                    method: Method::HEAD,
                    url: url.clone(),
                    headers: headers.clone(),
                    body: Body::Empty,
                    scopes: &scopes,
                })
                .await?;
            match resp.status() {
                StatusCode::NOT_FOUND => Ok(None),
                StatusCode::OK => match header_str(&resp, DOCKER_CONTENT_DIGEST) {
                    Some(d) => Ok(Some(d.to_string())),
                    None => {
                        // Without the header, fetch the manifest and hash it.
                        let resp = self
                            .execute(Req {
                                method: Method::GET,
                                url: url.clone(),
                                headers: headers.clone(),
                                body: Body::Empty,
                                scopes: &scopes,
                            })
                            .await?;
                        let resp = self
                            .expect(&Method::GET, &url, resp, &[StatusCode::OK])
                            .await?;
                        let body = resp
                            .bytes()
                            .await
                            .map_err(|e| transport(&Method::GET, &url, e))?;
                        Ok(Some(Digest::of(&body).to_string()))
                    }
                },
                _ => self
                    .expect(&Method::HEAD, &url, resp, &[])
                    .await
                    .map(|_| None),
            }
        })
        .await
    }

    /// `PUT` a manifest's exact bytes under `reference` (its digest, or a tag) and check the
    /// digest the registry computed.
    pub async fn put_manifest(
        &self,
        reference: &str,
        media_type: &str,
        bytes: &[u8],
        digest: &Digest,
    ) -> Result<()> {
        self.put_manifest_subject(reference, media_type, bytes, digest)
            .await
            .map(|_| ())
    }

    /// [`put_manifest`](Self::put_manifest), returning whether the registry answered with an
    /// `OCI-Subject` header (it indexed the manifest's `subject`: it has the referrers API).
    pub async fn put_manifest_subject(
        &self,
        reference: &str,
        media_type: &str,
        bytes: &[u8],
        digest: &Digest,
    ) -> Result<bool> {
        let url = self.repo_path(&format!("manifests/{reference}"));
        let scopes = self.push_scopes();
        let body = Bytes::copy_from_slice(bytes);
        let headers = referrers::one_header(CONTENT_TYPE, media_type)?;
        self.retrying(&format!("PUT manifest {reference}"), |_| async {
            let resp = self
                .execute(Req {
                    method: Method::PUT,
                    url: url.clone(),
                    headers: headers.clone(),
                    body: Body::Bytes(body.clone()),
                    scopes: &scopes,
                })
                .await?;
            let resp = self
                .expect(
                    &Method::PUT,
                    &url,
                    resp,
                    &[StatusCode::CREATED, StatusCode::OK],
                )
                .await?;
            match header_str(&resp, DOCKER_CONTENT_DIGEST) {
                Some(got) if got != digest.to_string() => Err(RegistryError::DigestMismatch {
                    what: format!("manifest {reference}"),
                    expected: digest.clone(),
                    got: got.chars().take(100).collect(),
                }),
                _ => Ok(header_str(&resp, "oci-subject").is_some()),
            }
        })
        .await
    }
}

enum Mount {
    Mounted,
    Session(Url, Option<u64>),
    Refused,
}

pub fn short(d: &Digest) -> String {
    format!("sha256:{}", &d.hex()[..12])
}

async fn read_limited(resp: Response) -> Vec<u8> {
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

/// Error unless `resp`'s status is in `ok`, with the registry's error body summarised.
async fn check(method: &Method, url: &Url, resp: Response, ok: &[StatusCode]) -> Result<Response> {
    let status = resp.status();
    if ok.contains(&status) {
        return Ok(resp);
    }
    let retry_after = header_str(&resp, "retry-after").and_then(parse_retry_after);
    let body = read_limited(resp).await;
    Err(RegistryError::Status {
        method: method.to_string(),
        url: redact_url(url),
        status: status.as_u16(),
        summary: summarise_error_body(&body),
        retry_after,
    })
}

/// A streaming body of `len` bytes of `path` from `offset`, reporting progress.
fn file_body(
    path: &Path,
    offset: u64,
    len: u64,
    progress: Option<(ProgressFn, u64)>,
) -> Result<reqwest::Body> {
    use std::io::Seek as _;
    use tokio::io::AsyncReadExt as _;
    let io = |source| RegistryError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = std::fs::File::open(path).map_err(io)?;
    file.seek(std::io::SeekFrom::Start(offset)).map_err(io)?;
    let file = tokio::fs::File::from_std(file).take(len);
    let mut sent = progress.as_ref().map_or(0, |(_, base)| *base);
    let stream = tokio_util::io::ReaderStream::with_capacity(file, 256 << 10).map_ok(move |b| {
        sent += b.len() as u64;
        if let Some((p, _)) = &progress {
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
    fn retry_after_forms() {
        assert_eq!(parse_retry_after("1"), Some(Duration::from_secs(1)));
        assert_eq!(parse_retry_after("9999"), Some(MAX_RETRY_AFTER));
        let soon = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(5));
        let d = parse_retry_after(&soon).unwrap();
        assert!(
            d <= Duration::from_secs(5) && d >= Duration::from_secs(3),
            "{d:?}"
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon"), None);
    }

    #[test]
    fn summarises_bodies() {
        assert_eq!(
            summarise_error_body(br#"{"errors":[{"code":"DENIED","message":"requested access to the resource is denied"}]}"#),
            "DENIED: requested access to the resource is denied"
        );
        assert_eq!(
            summarise_error_body(b"\n  Too Many Requests\nmore"),
            "Too Many Requests"
        );
        assert_eq!(summarise_error_body(b""), "(empty body)");
    }

    #[test]
    fn redacts_queries() {
        let u = Url::parse("https://r.io:5000/v2/a/blobs/uploads/x?_state=secret&digest=sha256:1")
            .unwrap();
        assert_eq!(redact_url(&u), "https://r.io:5000/v2/a/blobs/uploads/x?…");
    }

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
