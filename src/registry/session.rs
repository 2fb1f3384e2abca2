//! One registry session: the bare [`Transport`] with [`Auth`] above it, and [`Request`], the
//! single place where a request is authorised, a challenge answered and a failure retried.
//!
//! The layers go one way (as go-containerregistry wraps its bare transport in its bearer one):
//! `transport` knows nothing of credentials, `auth` fetches tokens over it, and this module
//! uses both.

use std::future::Future;
use std::path::Path;

use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, AUTHORIZATION};
use reqwest::{Method, Response, StatusCode};
use url::Url;

use super::auth::{parse_challenge, Auth};
use super::credential::FoundCredential;
use super::error::{redact_url, RegistryError};
use super::transport::{header_str, status_error, Body, ProgressFn, Transport};

type Result<T, E = RegistryError> = std::result::Result<T, E>;

/// A transport, the auth of its registry, and the token scopes a request asks for by default.
#[derive(Debug)]
pub struct Session {
    transport: Transport,
    pub(crate) auth: Auth,
    scopes: Vec<String>,
}

/// One request being built; [`send`](Self::send) it.
pub struct Request<'s> {
    s: &'s Session,
    method: Method,
    url: Url,
    headers: HeaderMap,
    body: Body,
    scopes: Option<Vec<String>>,
    ok: Vec<StatusCode>,
    attempts: u32,
    authenticate: bool,
    /// Answer a 401 challenge with a new token (not for a best-effort request).
    answer: bool,
}

impl Session {
    pub fn new(
        base: Url,
        credential: Option<FoundCredential>,
        registry: &str,
        scopes: Vec<String>,
        max_attempts: u32,
    ) -> Result<Self> {
        let transport = Transport::new(base, max_attempts)?;
        let auth = Auth::new(
            transport.http().clone(),
            credential,
            registry,
            transport.max_attempts(),
        );
        Ok(Session {
            transport,
            auth,
            scopes,
        })
    }

    /// See [`Transport::quiet_retries`].
    pub fn quiet_retries(&mut self) {
        self.transport.quiet_retries();
    }

    /// `path` (absolute, e.g. `/v2/`) on the registry.
    pub fn url(&self, path: &str) -> Url {
        self.transport.url(path)
    }

    /// A request to build and send; by default authorised with the default scopes, retried,
    /// and expected to answer 200.
    pub fn request(&self, method: Method, url: Url) -> Request<'_> {
        Request {
            s: self,
            method,
            url,
            headers: HeaderMap::new(),
            body: Body::Empty,
            scopes: None,
            ok: vec![StatusCode::OK],
            attempts: self.transport.max_attempts(),
            authenticate: true,
            answer: true,
        }
    }

    /// Run `f` until it succeeds, fails for good, or has run `attempts` times.
    pub async fn retrying<T, F, Fut>(&self, what: &str, attempts: u32, f: F) -> Result<T>
    where
        F: FnMut(u32) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        self.transport.retrying(what, attempts, f).await
    }

    pub fn max_attempts(&self) -> u32 {
        self.transport.max_attempts()
    }

    /// One attempt: authorise, send, answer one 401 challenge, map an unexpected status.
    async fn send_once(&self, req: &Request<'_>) -> Result<Response> {
        let scopes = req.scopes.as_deref().unwrap_or(&self.scopes);
        let authorise = req.authenticate && self.transport.same_origin(&req.url);
        let mut answered = false;
        loop {
            let mut headers = req.headers.clone();
            let sent_auth = match authorise {
                true => self.auth.authorization(&req.url, scopes).await?,
                false => None,
            };
            if let Some(v) = &sent_auth {
                headers.insert(AUTHORIZATION, v.clone());
            }
            let resp = self
                .transport
                .send(&req.method, &req.url, headers, &req.body)
                .await?;
            let status = resp.status();
            if status == StatusCode::UNAUTHORIZED && authorise && req.answer && !answered {
                if let Some(c) = header_str(&resp, "www-authenticate").and_then(parse_challenge) {
                    answered = true;
                    self.auth.answer(c, scopes, sent_auth.as_ref()).await?;
                    continue;
                }
            }
            if req.ok.contains(&status) {
                return Ok(resp);
            }
            if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
                return Err(self.auth.refused(&req.method, &req.url, resp).await);
            }
            return Err(status_error(&req.method, &req.url, resp).await);
        }
    }
}

impl Request<'_> {
    pub fn header(mut self, name: impl Into<HeaderName>, value: HeaderValue) -> Self {
        self.headers.insert(name.into(), value);
        self
    }

    pub fn bytes(mut self, body: Bytes) -> Self {
        self.body = Body::Bytes(body);
        self
    }

    /// `len` bytes of `path` from `offset`, streamed; `progress` hears the blob's bytes sent
    /// so far (counted from `offset`).
    pub fn file(
        mut self,
        path: &Path,
        offset: u64,
        len: u64,
        progress: Option<ProgressFn>,
    ) -> Self {
        self.body = Body::File {
            path: path.to_path_buf(),
            offset,
            len,
            progress,
        };
        self
    }

    /// Token scopes other than the session's default.
    pub fn scopes(mut self, scopes: Vec<String>) -> Self {
        self.scopes = Some(scopes);
        self
    }

    /// The statuses that are an answer (others are errors).
    pub fn ok(mut self, statuses: &[StatusCode]) -> Self {
        self.ok = statuses.to_vec();
        self
    }

    /// One attempt only: the caller retries a larger operation.
    pub fn once(mut self) -> Self {
        self.attempts = 1;
        self
    }

    /// Authorised as usual, but a 401 is the answer: no new token is fetched for it.
    pub fn unanswered(mut self) -> Self {
        self.answer = false;
        self
    }

    /// No `Authorization`, no challenge answered (the ping that learns the scheme).
    pub fn anonymous(mut self) -> Self {
        self.authenticate = false;
        self
    }

    /// [`send`](Self::send), with a 404 (and the statuses of [`ok`](Self::ok)) an answer:
    /// `None` for the 404.
    pub async fn send_unless_404(mut self) -> Result<Option<Response>> {
        self.ok.push(StatusCode::NOT_FOUND);
        let resp = self.send().await?;
        Ok((resp.status() != StatusCode::NOT_FOUND).then_some(resp))
    }

    pub async fn send(self) -> Result<Response> {
        let what = format!("{} {}", self.method, redact_url(&self.url));
        let req = &self;
        self.s
            .retrying(&what, self.attempts, |_| self.s.send_once(req))
            .await
    }
}
