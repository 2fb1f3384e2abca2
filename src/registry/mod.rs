//! The distribution-spec (v1.1) client a push needs: references, auth and HTTP.
//!
//! - [`reference`]: the reference grammar with Docker Hub's normalisation;
//! - [`auth`]: credential sources, `WWW-Authenticate` challenges, the token cache;
//! - [`client`]: one repository on one registry: retries, blobs, manifests.

pub mod auth;
pub mod client;
pub mod reference;

pub use auth::{find_credential, Credential, FoundCredential};
pub use client::{BlobOutcome, ClientOptions, RegistryError, Repository};
pub use reference::{Reference, ReferenceError};
