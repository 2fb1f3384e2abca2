//! The distribution-spec (v1.1) client a push needs, split as go-containerregistry splits
//! `transport` from `remote`:
//!
//! - [`reference`](mod@reference): repositories, tags and references, with Docker Hub's normalisation;
//! - [`credential`]: where a registry's credentials come from;
//! - [`auth`]: `WWW-Authenticate` challenges, bearer tokens cached until they expire;
//! - [`error`]: what can fail, and what is worth another try;
//! - [`transport`]: TLS, the HTTP clients, one request builder with the retry policy;
//! - [`client`]: one repository of one registry; [`upload`]: blobs; [`manifest`]: manifests and
//!   the referrers API.

pub mod auth;
pub mod client;
pub mod credential;
pub mod error;
pub mod manifest;
pub mod reference;
pub mod transport;
pub mod upload;

pub use client::{Client, ClientOptions};
pub use credential::{find_credential, Credential, FoundCredential};
pub use error::RegistryError;
pub use manifest::Target;
pub use reference::{Reference, ReferenceError, Repository, Tag};
pub use upload::BlobOutcome;
