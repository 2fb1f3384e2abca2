//! [`Client`]: one repository of one registry, over a [`Session`]. Its operations are split by
//! what they move: blobs in [`super::upload`], manifests and referrers in [`super::manifest`].

use std::sync::Arc;

use reqwest::{Method, StatusCode};
use url::Url;

use super::auth::{may_send_credential, parse_challenge, plain_http_refusal};
use super::credential::{find_credential, FoundCredential};
use super::error::RegistryError;
use super::session::Session;
use super::transport::header_str;
use crate::digest::Digest;
use crate::oci::reference::Repository;

pub const DEFAULT_MAX_ATTEMPTS: u32 = 6;

type Result<T, E = RegistryError> = std::result::Result<T, E>;

#[derive(Debug, Clone)]
pub struct ClientOptions {
    pub plain_http: bool,
    /// Blobs larger than this go up in `PATCH` chunks of this size; `None` (the default): one
    /// monolithic `PUT` a blob, which every registry takes and which is the fastest (ECR even
    /// refuses chunks under 5 MB).
    pub chunk_size: Option<u64>,
    /// Attempts per operation (a request, or a blob upload as a whole).
    pub max_attempts: u32,
    pub credential: Option<FoundCredential>,
    /// Ask for `pull` tokens only: a client that reads (`ironstar sbom`) from a repository it
    /// may not push to.
    pub pull_only: bool,
    /// Say retries at debug level only: the caller's one line a failure says enough.
    pub quiet_retries: bool,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            plain_http: false,
            chunk_size: None,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            credential: None,
            pull_only: false,
            quiet_retries: false,
        }
    }
}

/// A client for one repository of one registry. Several clients may share one session (and so
/// one token): [`Client::shared`].
#[derive(Debug)]
pub struct Client {
    pub repository: Repository,
    pub(crate) session: Arc<Session>,
    pub(crate) chunk_size: Option<u64>,
}

impl Client {
    /// A client that only reads `repository`, with the credential the usual files hold for it.
    pub fn reader(repository: &Repository, plain_http: bool) -> Result<Client> {
        let credential = find_credential(repository, None)
            .map_err(|e| RegistryError::Auth(format!("credentials: {e}")))?;
        let opts = ClientOptions {
            plain_http,
            credential,
            pull_only: true,
            ..Default::default()
        };
        Client::new(repository, opts)
    }

    /// A client for `repository`. Refuses credentials given explicitly for a plain-http registry
    /// off loopback before anything is sent.
    pub fn new(repository: &Repository, opts: ClientOptions) -> Result<Self> {
        let mut one = Self::shared(std::slice::from_ref(repository), opts)?;
        Ok(one.pop().expect("one client"))
    }

    /// Clients for several repositories of ONE registry over one session: its token asks for
    /// every repository's scopes, so one token fetch serves them all (as one `docker push` of
    /// several images would need one per repository). In the order given.
    pub fn shared(repositories: &[Repository], opts: ClientOptions) -> Result<Vec<Self>> {
        let Some(first) = repositories.first() else {
            return Ok(Vec::new());
        };
        if let Some(other) = repositories
            .iter()
            .find(|r| r.api_host() != first.api_host())
        {
            return Err(RegistryError::Protocol(format!(
                "internal: one session for {} and {}, two registries",
                first, other
            )));
        }
        let scheme = if opts.plain_http { "http" } else { "https" };
        let base = Url::parse(&format!("{scheme}://{}/", first.api_host()))
            .map_err(|e| RegistryError::Protocol(format!("registry address: {e}")))?;
        if opts.credential.as_ref().is_some_and(|c| c.explicit) && !may_send_credential(&base) {
            return Err(plain_http_refusal(&base));
        }
        let actions = if opts.pull_only { "pull" } else { "pull,push" };
        let mut scopes: Vec<String> = Vec::new();
        for r in repositories {
            let scope = format!("repository:{}:{actions}", r.path);
            if !scopes.contains(&scope) {
                scopes.push(scope);
            }
        }
        let mut session = Session::new(
            base,
            opts.credential,
            &first.registry,
            scopes,
            opts.max_attempts,
        )?;
        if opts.quiet_retries {
            session.quiet_retries();
        }
        let session = Arc::new(session);
        Ok(repositories
            .iter()
            .map(|r| Client {
                session: session.clone(),
                repository: r.clone(),
                chunk_size: opts.chunk_size.map(|c| c.max(1)),
            })
            .collect())
    }

    /// `/v2/<repository>/<rest>`.
    pub(crate) fn repo_url(&self, rest: &str) -> Url {
        self.session
            .url(&format!("/v2/{}/{rest}", self.repository.path))
    }

    /// `GET /v2/`: checks the registry is there and learns its auth scheme.
    pub async fn ping(&self) -> Result<()> {
        let url = self.session.url("/v2/");
        let resp = self
            .session
            .request(Method::GET, url)
            .anonymous()
            .ok(&[StatusCode::OK, StatusCode::UNAUTHORIZED])
            .send()
            .await?;
        if resp.status() == StatusCode::OK {
            return Ok(());
        }
        match header_str(&resp, "www-authenticate").and_then(parse_challenge) {
            Some(c) => self.session.auth.learn(c),
            None => Err(RegistryError::Auth(format!(
                "{}: 401 without a usable WWW-Authenticate challenge",
                self.repository.registry
            ))),
        }
    }
}

/// `sha256:` and the first 12 hex digits, for progress lines.
pub fn short(d: &Digest) -> String {
    format!("sha256:{}", &d.hex()[..12])
}
