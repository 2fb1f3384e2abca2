//! The distribution-spec (v1.1) client a push needs, split as go-containerregistry splits
//! `transport` from `remote`:
//!
//! - [`credential`]: where a registry's credentials come from;
//! - [`error`]: what can fail, and what is worth another try;
//! - [`transport`]: the bare HTTP side: TLS, the clients, sending one request, the retry policy;
//! - [`auth`], over the bare transport: `WWW-Authenticate` challenges, bearer tokens cached
//!   until they expire;
//! - [`session`]: the two together, one request builder that authorises, answers a challenge
//!   and retries;
//! - [`client`]: one repository of one registry; [`upload`]: blobs; [`manifest`]: manifests and
//!   the referrers API; [`download`]: blobs of any size, streamed to a file (a base image's).

pub mod auth;
pub mod client;
pub mod credential;
pub mod download;
pub mod error;
pub mod manifest;
pub mod session;
pub mod transport;
pub mod upload;

pub use client::{Client, ClientOptions};
pub use credential::{find_credential, Credential, FoundCredential};
pub use error::RegistryError;
pub use manifest::Target;
// The reference types live in the base module `crate::oci`; named here too for the client's users.
pub use crate::oci::reference::{Reference, ReferenceError, Repository, Tag};
pub use upload::BlobOutcome;
