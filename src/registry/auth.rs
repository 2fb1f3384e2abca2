//! Registry authentication: `WWW-Authenticate` challenges, where credentials come from, and the
//! bearer-token cache.
//!
//! Credentials, first match wins: explicit `--username` + `--password-stdin`;
//! `$REGISTRY_AUTH_FILE`; `$XDG_RUNTIME_DIR/containers/auth.json`; `$DOCKER_CONFIG/config.json` or
//! `~/.docker/config.json` (`auths` with `auth` / `identitytoken`, `credHelpers`, `credsStore`);
//! for ghcr.io, `$GITHUB_TOKEN` (user `$GITHUB_ACTOR`). No credential is ever formatted by
//! `Debug` or logged.

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Mutex;

use docker_credential::{CredentialRetrievalError, DockerCredential};

use super::reference::Reference;

/// A credential for one registry.
#[derive(Clone, PartialEq, Eq)]
pub enum Credential {
    Basic {
        username: String,
        password: String,
    },
    /// A refresh token for the token endpoint (docker's `identitytoken`).
    IdentityToken(String),
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credential::Basic { username, .. } => write!(f, "Basic({username}, <redacted>)"),
            Credential::IdentityToken(_) => write!(f, "IdentityToken(<redacted>)"),
        }
    }
}

/// A credential and where it was found (for messages; never the secret).
#[derive(Debug, Clone)]
pub struct FoundCredential {
    pub credential: Credential,
    pub source: String,
}

#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    #[error("credentials for {registry} in {source_name}: {problem}")]
    Broken {
        registry: String,
        source_name: String,
        problem: String,
    },
}

/// Find a credential for `reference`'s registry. `explicit` wins over every file.
pub fn find_credential(
    reference: &Reference,
    explicit: Option<Credential>,
) -> Result<Option<FoundCredential>, CredentialError> {
    if let Some(c) = explicit {
        return Ok(Some(FoundCredential {
            credential: c,
            source: "--username/--password-stdin".into(),
        }));
    }
    let key = reference.credential_key();
    let env = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
    let mut files: Vec<PathBuf> = Vec::new();
    if let Some(f) = env("REGISTRY_AUTH_FILE") {
        files.push(f.into());
    }
    if let Some(d) = env("XDG_RUNTIME_DIR") {
        files.push(PathBuf::from(d).join("containers/auth.json"));
    }
    match env("DOCKER_CONFIG") {
        Some(d) => files.push(PathBuf::from(d).join("config.json")),
        None => {
            if let Some(h) = env("HOME") {
                files.push(PathBuf::from(h).join(".docker/config.json"));
            }
        }
    }
    for file in files {
        let Ok(f) = std::fs::File::open(&file) else {
            continue;
        };
        let source = file.display().to_string();
        let broken = |problem: String| CredentialError::Broken {
            registry: reference.registry.clone(),
            source_name: source.clone(),
            problem,
        };
        match docker_credential::get_credential_from_reader(std::io::BufReader::new(f), &key) {
            Ok(DockerCredential::UsernamePassword(username, password)) => {
                return Ok(Some(FoundCredential {
                    credential: Credential::Basic { username, password },
                    source,
                }))
            }
            Ok(DockerCredential::IdentityToken(t)) => {
                return Ok(Some(FoundCredential {
                    credential: Credential::IdentityToken(t),
                    source,
                }))
            }
            Err(CredentialRetrievalError::NoCredentialConfigured) => continue,
            // A credential helper's output may hold a secret: name the helper only.
            Err(CredentialRetrievalError::HelperFailure { helper, .. }) => {
                return Err(broken(format!("credential helper `{helper}` failed")))
            }
            Err(CredentialRetrievalError::HelperCommunicationError) => {
                return Err(broken(
                    "could not run its credential helper (is docker-credential-* on PATH?)".into(),
                ))
            }
            Err(CredentialRetrievalError::MalformedHelperResponse) => {
                return Err(broken(
                    "its credential helper answered malformed JSON".into(),
                ))
            }
            Err(CredentialRetrievalError::ConfigReadError) => {
                return Err(broken("the file is not valid JSON".into()))
            }
            Err(CredentialRetrievalError::CredentialDecodingError) => {
                return Err(broken(
                    "its `auth` value is not base64 of user:password".into(),
                ))
            }
            Err(e) => return Err(broken(format!("{e:?}"))),
        }
    }
    if reference.registry == "ghcr.io" {
        if let Ok(token) = std::env::var("GITHUB_TOKEN") {
            if !token.is_empty() {
                let username = std::env::var("GITHUB_ACTOR")
                    .ok()
                    .filter(|a| !a.is_empty())
                    .unwrap_or_else(|| "x-access-token".into());
                return Ok(Some(FoundCredential {
                    credential: Credential::Basic {
                        username,
                        password: token,
                    },
                    source: "GITHUB_TOKEN".into(),
                }));
            }
        }
    }
    Ok(None)
}

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

/// The registry's auth scheme as learnt from challenges, and bearer tokens per scope set.
#[derive(Default)]
pub struct AuthState {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    challenge: Option<Challenge>,
    tokens: HashMap<String, String>,
}

impl fmt::Debug for AuthState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AuthState(<redacted>)")
    }
}

impl AuthState {
    pub fn challenge(&self) -> Option<Challenge> {
        self.inner.lock().unwrap().challenge.clone()
    }
    pub fn set_challenge(&self, c: Challenge) {
        self.inner.lock().unwrap().challenge = Some(c);
    }
    pub fn token(&self, scope_key: &str) -> Option<String> {
        self.inner.lock().unwrap().tokens.get(scope_key).cloned()
    }
    pub fn set_token(&self, scope_key: &str, token: String) {
        self.inner
            .lock()
            .unwrap()
            .tokens
            .insert(scope_key.to_string(), token);
    }
    pub fn forget_token(&self, scope_key: &str) {
        self.inner.lock().unwrap().tokens.remove(scope_key);
    }
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
    fn debug_redacts() {
        let c = Credential::Basic {
            username: "u".into(),
            password: "hunter2".into(),
        };
        assert!(!format!("{c:?}").contains("hunter2"));
        assert!(!format!("{:?}", Credential::IdentityToken("tok".into())).contains("tok"));
    }
}
