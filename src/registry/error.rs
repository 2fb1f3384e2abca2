//! What can go wrong talking to a registry, and which of it is worth another try.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use url::Url;

use crate::digest::Digest;

const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("{method} {url}: {message}")]
    Transport {
        method: String,
        url: String,
        message: String,
        kind: TransportKind,
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

/// What kind of failure below HTTP a request met: decides whether another try can help.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportKind {
    /// A reset, a timeout, an unexpected end of a body: transient.
    Other,
    /// Nothing listens on the port.
    Refused,
    /// The TLS handshake failed (an untrusted certificate, plain http answered to https):
    /// the same request fails the same way every time.
    Tls,
}

impl RegistryError {
    /// Whether the same request may succeed if sent again: connection failures other than
    /// TLS (a refusal only once the registry has answered before: `reached`), 408, 429, 5xx.
    pub fn is_retryable(&self, reached: bool) -> bool {
        match self {
            RegistryError::Transport { kind, .. } => match kind {
                TransportKind::Other => true,
                TransportKind::Refused => reached,
                TransportKind::Tls => false,
            },
            RegistryError::Status { status, .. } => {
                matches!(status, 408 | 429 | 500 | 502 | 503 | 504)
            }
            _ => false,
        }
    }

    pub fn retry_after(&self) -> Option<Duration> {
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

    /// A failure of `method url` below HTTP, classified, with a hint where one helps.
    pub(crate) fn transport(method: &reqwest::Method, url: &Url, e: reqwest::Error) -> Self {
        let e = e.without_url();
        let kind = classify(&e);
        let mut message = error_chain(&e);
        if kind == TransportKind::Tls && url.scheme() == "https" {
            if message.contains("InvalidContentType") || message.contains("corrupt message") {
                message.push_str(
                    " (the registry may speak plain http: --plain-http, for loopback test registries)",
                );
            } else if message.to_lowercase().contains("certificate") {
                message.push_str(
                    " (to trust a private CA, point SSL_CERT_FILE or SSL_CERT_DIR at its certificate)",
                );
            }
        }
        RegistryError::Transport {
            method: method.to_string(),
            url: redact_url(url),
            message,
            kind,
        }
    }
}

/// Walk the error's sources for a rustls error (a TLS failure) or a refused connection.
/// `io::Error::source` skips the error it wraps, so each wrapped error is looked into too.
fn classify(e: &(dyn std::error::Error + 'static)) -> TransportKind {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if err.downcast_ref::<rustls::Error>().is_some() {
            return TransportKind::Tls;
        }
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::ConnectionRefused {
                return TransportKind::Refused;
            }
            if let Some(inner) = io.get_ref() {
                let k = classify(inner);
                if k != TransportKind::Other {
                    return k;
                }
            }
        }
        cur = err.source();
    }
    TransportKind::Other
}

/// The messages of an error and its sources, each once.
pub(crate) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
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

/// `Retry-After` as seconds or an HTTP date, at most a minute.
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
    fn tls_and_refusals_are_told_apart_through_wrapping_io_errors() {
        let tls = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
        );
        assert_eq!(classify(&tls), TransportKind::Tls);
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(classify(&refused), TransportKind::Refused);
        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        assert_eq!(classify(&reset), TransportKind::Other);
        let status = |s| RegistryError::Status {
            method: "GET".into(),
            url: "u".into(),
            status: s,
            summary: String::new(),
            retry_after: None,
        };
        assert!(status(429).is_retryable(true) && status(503).is_retryable(true));
        assert!(!status(404).is_retryable(true) && !status(400).is_retryable(true));
    }
}
