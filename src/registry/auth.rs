//! Answering a registry's `WWW-Authenticate` challenges: Basic credentials, or bearer tokens
//! from the challenge's realm, cached per scope until shortly before they expire.
//!
//! Parallel requests needing the same scope wait for one token fetch, retried here and shared:
//! its token, or its failure. A 401 in the middle of a push (Docker Hub and ghcr tokens last
//! ~5 minutes) is answered by fetching a new token once.
//! The plain-http rule lives here: a credential goes over plain http to loopback only.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use reqwest::header::{HeaderValue, CONTENT_LENGTH, CONTENT_TYPE};
use reqwest::{Method, Response, StatusCode};
use tracing::debug;
use url::Url;

use super::credential::{Credential, FoundCredential};
use super::error::{redact_url, summarise_error_body, RegistryError};
use super::transport::{read_limited, retrying, status_error};
use crate::oci::reference::{host_without_port, is_loopback};

/// A token whose lifetime the realm does not state is good for 60 s (the token spec's default).
const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(60);
/// Refresh a quarter of a token's life before it ends, at least a second (a request must reach
/// the registry in time), at most 30 s, and never before half its life.
const MIN_REFRESH_MARGIN: Duration = Duration::from_secs(1);
const MAX_REFRESH_MARGIN: Duration = Duration::from_secs(30);

type Result<T, E = RegistryError> = std::result::Result<T, E>;

/// A parsed `WWW-Authenticate` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
}

/// Parse a `WWW-Authenticate` value (one challenge; the first recognised one wins).
pub fn parse_challenge(header: &str) -> Option<Challenge> {
    let header = header.trim();
    let (scheme, rest) = match header.split_once(char::is_whitespace) {
        Some((s, r)) => (s, r),
        None => (header, ""),
    };
    let params = parse_params(rest);
    match scheme.to_ascii_lowercase().as_str() {
        "basic" => Some(Challenge::Basic),
        "bearer" => Some(Challenge::Bearer {
            realm: params.get("realm")?.clone(),
            service: params.get("service").cloned(),
            scope: params.get("scope").cloned(),
        }),
        _ => None,
    }
}

/// `k=v, k="quoted, \"v\""` → map (keys lowercased).
fn parse_params(s: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let mut chars = s.chars().peekable();
    loop {
        while matches!(chars.peek(), Some(c) if c.is_whitespace() || *c == ',') {
            chars.next();
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c == ',' {
                break;
            }
            key.push(c);
            chars.next();
        }
        if key.is_empty() && chars.peek().is_none() {
            break;
        }
        if chars.peek() != Some(&'=') {
            if chars.next().is_none() {
                break;
            }
            continue;
        }
        chars.next();
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => {
                        if let Some(n) = chars.next() {
                            value.push(n)
                        }
                    }
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' {
                    break;
                }
                value.push(c);
                chars.next();
            }
        }
        out.insert(key.trim().to_ascii_lowercase(), value.trim().to_string());
    }
    out
}

/// Whether a credential may go to `url`: never over plain http off loopback.
pub fn may_send_credential(url: &Url) -> bool {
    url.scheme() == "https"
        || url.host_str().is_some_and(|h| {
            is_loopback(host_without_port(h).trim_matches(|c| c == '[' || c == ']'))
        })
}

pub fn plain_http_refusal(url: &Url) -> RegistryError {
    RegistryError::Auth(format!(
        "refusing to send credentials over plain http to {} (only loopback registries may use --plain-http with credentials)",
        url.host_str().unwrap_or("?")
    ))
}

/// A bearer token and when to fetch the next one.
struct Token {
    value: String,
    refresh_at: Instant,
}

/// The token of one scope set: the scopes asked for (ours plus any a challenge added) and the
/// token, if fetched. Locked across a fetch, so that parallel requests share it.
#[derive(Default)]
struct Slot {
    extra_scopes: Vec<String>,
    token: Option<Token>,
    /// The last fetch's failure, and when: requests that waited for that fetch fail with it
    /// rather than ask the realm again (the first requests of a push go out together).
    failed: Option<(Instant, String)>,
}

/// The registry's auth scheme as learnt from challenges, the credential, and the token cache.
pub struct Auth {
    http: reqwest::Client,
    credential: Option<FoundCredential>,
    registry: String,
    /// Attempts of one token fetch (retried here, not by each request that needs the token).
    max_attempts: u32,
    challenge: Mutex<Option<Challenge>>,
    slots: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Slot>>>>,
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Auth(<redacted>)")
    }
}

impl Auth {
    pub fn new(
        http: reqwest::Client,
        credential: Option<FoundCredential>,
        registry: &str,
        max_attempts: u32,
    ) -> Self {
        Auth {
            http,
            credential,
            registry: registry.to_string(),
            max_attempts,
            challenge: Mutex::new(None),
            slots: Mutex::new(HashMap::new()),
        }
    }

    /// Learn the registry's scheme from a challenge (a `/v2/` ping's, or any request's).
    pub fn learn(&self, c: Challenge) -> Result<()> {
        if c == Challenge::Basic && self.credential.is_none() {
            return Err(self.no_credentials());
        }
        *self.challenge.lock().unwrap() = Some(c);
        Ok(())
    }

    fn slot(&self, scopes: &[String]) -> Arc<tokio::sync::Mutex<Slot>> {
        let mut slots = self.slots.lock().unwrap();
        slots.entry(scopes.join(" ")).or_default().clone()
    }

    /// The `Authorization` header for a request to `url` needing `scopes`, if the registry
    /// asked for one: Basic credentials, or a cached token (fetched when absent or expiring).
    pub async fn authorization(&self, url: &Url, scopes: &[String]) -> Result<Option<HeaderValue>> {
        let challenge = self.challenge.lock().unwrap().clone();
        let value = match challenge {
            None => return Ok(None),
            Some(Challenge::Basic) => match self.credential.as_ref().map(|c| &c.credential) {
                Some(Credential::Basic { username, password }) => {
                    if !may_send_credential(url) {
                        return Err(plain_http_refusal(url));
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
                let (slot, since) = (self.slot(scopes), Instant::now());
                let mut slot = slot.lock().await;
                match &slot.token {
                    Some(t) if Instant::now() < t.refresh_at => format!("Bearer {}", t.value),
                    _ => {
                        let wanted = union(scopes, &slot.extra_scopes);
                        let t = self
                            .refill(&mut slot, since, &realm, service.as_deref(), &wanted)
                            .await?;
                        format!("Bearer {t}")
                    }
                }
            }
        };
        let mut v = HeaderValue::from_str(&value)
            .map_err(|_| RegistryError::Auth("credential is not a valid header value".into()))?;
        v.set_sensitive(true);
        Ok(Some(v))
    }

    /// Answer a 401's challenge for a request that needed `scopes` and sent `sent`. A token is
    /// fetched unless another request already replaced the refused one.
    pub async fn answer(
        &self,
        c: Challenge,
        scopes: &[String],
        sent: Option<&HeaderValue>,
    ) -> Result<()> {
        let (realm, service, scope) = match &c {
            Challenge::Basic => return self.learn(c),
            Challenge::Bearer {
                realm,
                service,
                scope,
            } => (realm, service, scope),
        };
        *self.challenge.lock().unwrap() = Some(c.clone());
        let (slot, since) = (self.slot(scopes), Instant::now());
        let mut slot = slot.lock().await;
        // Another request fetched a token since this one was sent (the first requests of a
        // push go out together, before any challenge is known): use it, fetch none.
        if let Some(t) = &slot.token {
            let replaced = sent.is_none_or(|sent| {
                sent.to_str().ok() != Some(format!("Bearer {}", t.value).as_str())
            });
            if replaced && Instant::now() < t.refresh_at {
                return Ok(());
            }
        }
        // The challenge may ask for a scope other than ours: ask for both.
        let asked: Vec<String> = scope
            .iter()
            .flat_map(|s| s.split(' '))
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        slot.extra_scopes = union(&slot.extra_scopes, &asked);
        let wanted = union(scopes, &slot.extra_scopes);
        self.refill(&mut slot, since, realm, service.as_deref(), &wanted)
            .await
            .map(drop)
    }

    /// Fetch a token into `slot`, retried, unless a fetch that ended after `since` (while the
    /// caller waited for the slot) failed: then fail the same way. Returns the token.
    async fn refill(
        &self,
        slot: &mut Slot,
        since: Instant,
        realm: &str,
        service: Option<&str>,
        scopes: &[String],
    ) -> Result<String> {
        if let Some((at, message)) = &slot.failed {
            if *at >= since {
                return Err(RegistryError::Auth(message.clone()));
            }
        }
        let what = format!("token request to {}", redact_realm(realm));
        let reached = AtomicBool::new(true);
        let fetch = |_| self.fetch_token(realm, service, scopes);
        match retrying(&what, self.max_attempts, &reached, fetch).await {
            Ok(t) => {
                let value = t.value.clone();
                (slot.token, slot.failed) = (Some(t), None);
                Ok(value)
            }
            // Not worth another try by the request: this fetch was retried already.
            Err(e) => {
                let message = match e {
                    RegistryError::Auth(m) => m,
                    e => format!("{what}: {e}"),
                };
                slot.failed = Some((Instant::now(), message.clone()));
                Err(RegistryError::Auth(message))
            }
        }
    }

    pub fn no_credentials(&self) -> RegistryError {
        RegistryError::Auth(format!(
            "{} requires authentication and no credentials were found (tried --username/--password-stdin, $REGISTRY_AUTH_FILE, $XDG_RUNTIME_DIR/containers/auth.json, $DOCKER_CONFIG/config.json or ~/.docker/config.json{})",
            self.registry,
            if self.registry == "ghcr.io" { ", $GITHUB_TOKEN" } else { "" }
        ))
    }

    fn credential_source(&self) -> String {
        match &self.credential {
            Some(c) => format!("credentials from {}", c.source),
            None => "anonymous access".into(),
        }
    }

    /// The error for a final 401 or 403, saying where the credentials came from.
    pub async fn refused(&self, method: &Method, url: &Url, resp: Response) -> RegistryError {
        let status = resp.status();
        if status == StatusCode::UNAUTHORIZED && self.credential.is_none() {
            return self.no_credentials();
        }
        let body = read_limited(resp).await;
        RegistryError::Auth(format!(
            "{method} {}: HTTP {}: {} ({} {})",
            redact_url(url),
            status.as_u16(),
            summarise_error_body(&body),
            self.credential_source(),
            if status == StatusCode::UNAUTHORIZED {
                "rejected"
            } else {
                "lack push access to this repository"
            }
        ))
    }

    /// One token request for `scopes` to `realm`, with our credentials if we have any.
    async fn fetch_token(
        &self,
        realm: &str,
        service: Option<&str>,
        scopes: &[String],
    ) -> Result<Token> {
        let realm_url = Url::parse(realm)
            .map_err(|e| RegistryError::Auth(format!("token realm `{realm}`: {e}")))?;
        let credential = self.credential.as_ref().map(|c| &c.credential);
        if credential.is_some() && !may_send_credential(&realm_url) {
            return Err(plain_http_refusal(&realm_url));
        }
        let started = Instant::now();
        let (method, rb) = self.token_request(&realm_url, credential, service, scopes);
        let resp = rb
            .send()
            .await
            .map_err(|e| RegistryError::transport(&method, &realm_url, e))?;
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
                self.registry,
                self.credential_source(),
                status.as_u16(),
                summarise_error_body(&body)
            )));
        }
        if status != StatusCode::OK {
            return Err(status_error(&method, &realm_url, resp).await);
        }
        let body = resp
            .bytes()
            .await
            .map_err(|e| RegistryError::transport(&method, &realm_url, e))?;
        parse_token(&body, started)
            .map_err(|m| RegistryError::Auth(format!("token from {}: {m}", redact_url(&realm_url))))
    }

    /// A refresh-token `POST` for an identity token, else a `GET` with Basic credentials if any.
    fn token_request(
        &self,
        realm: &Url,
        credential: Option<&Credential>,
        service: Option<&str>,
        scopes: &[String],
    ) -> (Method, reqwest::RequestBuilder) {
        if let Some(Credential::IdentityToken(refresh)) = credential {
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
                .post(realm.clone())
                .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
                .header(CONTENT_LENGTH, body.len())
                .body(body);
            return (Method::POST, rb);
        }
        let mut url = realm.clone();
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
        if let Some(Credential::Basic { username, password }) = credential {
            rb = rb.basic_auth(username, Some(password));
        }
        (Method::GET, rb)
    }
}

fn redact_realm(realm: &str) -> String {
    Url::parse(realm).map_or_else(|_| realm.to_string(), |u| redact_url(&u))
}

fn union(a: &[String], b: &[String]) -> Vec<String> {
    let mut out = a.to_vec();
    for s in b {
        if !out.contains(s) {
            out.push(s.clone());
        }
    }
    out
}

/// A token response: `token` or `access_token`, living `expires_in` seconds, else until its
/// JWT `exp`, else 60 s; refreshed a quarter of its life (1 to 30 s) before it ends.
fn parse_token(body: &[u8], requested: Instant) -> std::result::Result<Token, String> {
    #[derive(serde::Deserialize)]
    struct TokenResponse {
        token: Option<String>,
        access_token: Option<String>,
        expires_in: Option<u64>,
    }
    let t: TokenResponse =
        serde_json::from_slice(body).map_err(|_| "the answer is not a token".to_string())?;
    let value = t
        .token
        .or(t.access_token)
        .filter(|t| !t.is_empty())
        .ok_or("the answer holds no token")?;
    let lifetime = t
        .expires_in
        .map(Duration::from_secs)
        .or_else(|| jwt_lifetime(&value))
        .unwrap_or(DEFAULT_TOKEN_LIFETIME);
    let margin = (lifetime / 4)
        .clamp(MIN_REFRESH_MARGIN, MAX_REFRESH_MARGIN)
        .min(lifetime / 2);
    Ok(Token {
        value,
        refresh_at: requested + lifetime - margin,
    })
}

/// What is left of a JWT's life by its `exp` claim (the token is opaque to us otherwise).
fn jwt_lifetime(token: &str) -> Option<Duration> {
    let claims = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(claims.trim_end_matches('='))
        .ok()?;
    let exp = serde_json::from_slice::<serde_json::Value>(&bytes).ok()?["exp"].as_u64()?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_secs();
    Some(Duration::from_secs(exp.saturating_sub(now)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_challenges() {
        let c = parse_challenge(
            r#"Bearer realm="https://ghcr.io/token",service="ghcr.io",scope="repository:o/a:pull,push""#,
        );
        assert_eq!(
            c,
            Some(Challenge::Bearer {
                realm: "https://ghcr.io/token".into(),
                service: Some("ghcr.io".into()),
                scope: Some("repository:o/a:pull,push".into()),
            })
        );
        assert_eq!(
            parse_challenge(r#"Basic realm="Registry Realm""#),
            Some(Challenge::Basic)
        );
        assert_eq!(
            parse_challenge("bearer realm=http://x/t, service=reg"),
            Some(Challenge::Bearer {
                realm: "http://x/t".into(),
                service: Some("reg".into()),
                scope: None
            })
        );
        assert_eq!(parse_challenge("Negotiate abc"), None);
    }

    #[test]
    fn token_lifetimes() {
        let now = Instant::now();
        let t = parse_token(br#"{"token":"a","expires_in":2}"#, now).unwrap();
        assert_eq!(t.refresh_at - now, Duration::from_secs(1));
        let t = parse_token(br#"{"token":"a","expires_in":1}"#, now).unwrap();
        assert_eq!(t.refresh_at - now, Duration::from_millis(500));
        let t = parse_token(br#"{"access_token":"b","expires_in":300}"#, now).unwrap();
        assert_eq!(t.refresh_at - now, Duration::from_secs(270));
        let t = parse_token(br#"{"token":"c"}"#, now).unwrap();
        assert_eq!(t.refresh_at - now, Duration::from_secs(45));
        let exp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + 100;
        let claims =
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!(r#"{{"exp":{exp}}}"#));
        let jwt = format!(r#"{{"token":"h.{claims}.s"}}"#);
        let t = parse_token(jwt.as_bytes(), now).unwrap();
        let left = t.refresh_at - now;
        assert!(
            left <= Duration::from_secs(75) && left >= Duration::from_secs(73),
            "{left:?}"
        );
        assert!(parse_token(br#"{"token":""}"#, now).is_err());
    }
}
