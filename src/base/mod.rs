//! A base image under our layers (`base = "REGISTRY/REPO[:TAG][@sha256:…]"`): its index or
//! manifest, each platform's config and layers, pulled with the push's own client (auth,
//! retries, `--plain-http`, tokens) into the blob store ([`crate::cache::BlobStore`]) or a
//! temporary one, then linked into the layout like any blob. A pinned digest whose blobs are
//! stored needs no network; a tag is resolved to a digest on every build.
//!
//! `pull` fetches, `config` merges the base's config under ours as docker does.

mod config;
mod pull;

pub use config::merge;

use std::path::PathBuf;

use oci_spec::image::MediaType;

use crate::digest::Digest;
use crate::image::BlobRef;
use crate::oci::Reference;
use crate::platform::Platform;
use crate::registry::RegistryError;

#[derive(Debug, thiserror::Error)]
pub enum BaseError {
    #[error("base {reference}: {source}")]
    Registry {
        reference: String,
        #[source]
        source: RegistryError,
    },
    #[error("base {reference}: no such image in the registry; check the name and tag")]
    NotFound { reference: String },
    #[error("base {reference} has no {platform} (it has {has}): build for those with --platform, or choose another base")]
    NoPlatform {
        reference: String,
        platform: String,
        has: String,
    },
    #[error("base {reference}: {message}")]
    Malformed { reference: String, message: String },
    #[error("base {reference}: {path}: {source}")]
    Io {
        reference: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// How to reach the base's registry.
#[derive(Debug, Clone, Default)]
pub struct BaseOptions {
    pub plain_http: bool,
    /// Attempts per request; 0: the client's default.
    pub max_attempts: u32,
}

/// A base image resolved for the platforms of a build.
#[derive(Debug, Clone)]
pub struct Base {
    /// As the definition names it.
    pub reference: Reference,
    /// What the reference resolved to: the index, or the one manifest.
    pub digest: Digest,
    /// One per platform of the build, in the build's order.
    pub platforms: Vec<PlatformBase>,
    /// Where the blobs are; kept alive while the build links them (a temporary store without
    /// a cache).
    _scratch: Option<std::sync::Arc<tempfile::TempDir>>,
}

/// One platform of the base.
#[derive(Debug, Clone)]
pub struct PlatformBase {
    pub platform: &'static Platform,
    /// The platform's manifest: `org.opencontainers.image.base.digest`.
    pub manifest: Digest,
    /// Its image config, parsed.
    pub config: serde_json::Value,
    /// Its layers, bottom first, each with the file holding it.
    pub layers: Vec<(BlobRef, PathBuf)>,
}

impl Base {
    /// The base of `platform`.
    pub fn of(&self, platform: &Platform) -> Option<&PlatformBase> {
        self.platforms.iter().find(|p| p.platform == platform)
    }
}

/// A layer's media type in an OCI manifest: Docker's gzip layers are OCI gzip layers byte for
/// byte; OCI layer types are kept; anything else (foreign layers) is refused.
fn layer_media_type(mt: &str) -> Option<MediaType> {
    const DOCKER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
    match mt {
        DOCKER_GZIP => Some(MediaType::ImageLayerGzip),
        mt if mt.starts_with("application/vnd.oci.image.layer.v1.tar")
            && !mt.contains("nondistributable") =>
        {
            Some(MediaType::from(mt))
        }
        _ => None,
    }
}

pub use pull::resolve;
