//! Where a registry's credentials come from.
//!
//! Credentials, first match wins: explicit `--username` + `--password-stdin`;
//! `$REGISTRY_AUTH_FILE`; `$XDG_RUNTIME_DIR/containers/auth.json`; `$DOCKER_CONFIG/config.json` or
//! `~/.docker/config.json` (`auths` with `auth` / `identitytoken`, `credHelpers`, `credsStore`);
//! for ghcr.io, `$GITHUB_TOKEN` (user `$GITHUB_ACTOR`). No credential is ever formatted by
//! `Debug` or logged.

use std::fmt;
use std::path::PathBuf;

use docker_credential::{CredentialRetrievalError, DockerCredential};

use crate::oci::reference::Repository;

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
    /// Given on the command line (or by a library caller), not found in a file.
    pub explicit: bool,
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

/// Find a credential for `repository`'s registry. `explicit` wins over every file.
pub fn find_credential(
    repository: &Repository,
    explicit: Option<Credential>,
) -> Result<Option<FoundCredential>, CredentialError> {
    if let Some(c) = explicit {
        return Ok(Some(FoundCredential {
            credential: c,
            source: "--username/--password-stdin".into(),
            explicit: true,
        }));
    }
    let key = repository.credential_key();
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
            registry: repository.registry.clone(),
            source_name: source.clone(),
            problem,
        };
        match docker_credential::get_credential_from_reader(std::io::BufReader::new(f), &key) {
            Ok(DockerCredential::UsernamePassword(username, password)) => {
                return Ok(Some(FoundCredential {
                    credential: Credential::Basic { username, password },
                    source,
                    explicit: false,
                }))
            }
            Ok(DockerCredential::IdentityToken(t)) => {
                return Ok(Some(FoundCredential {
                    credential: Credential::IdentityToken(t),
                    source,
                    explicit: false,
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
    if repository.registry == "ghcr.io" {
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
                    explicit: false,
                }));
            }
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

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
