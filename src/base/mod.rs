//! A base image under our layers (`base = "REGISTRY/REPO[:TAG][@sha256:…]"`): its index or
//! manifest, each platform's config and layers, pulled with the push's own client (auth,
//! retries, `--plain-http`, tokens) into the blob store ([`crate::cache::BlobStore`]) or a
//! temporary one, then linked into the layout like any blob. A pinned digest whose blobs are
//! stored needs no network; a tag is resolved to a digest on every build.
//!
//! `pull` fetches, `config` merges the base's config under ours as docker does.

mod check;
mod config;
mod pull;

pub use config::merge;
pub use pull::resolve;

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
    /// Blobs downloaded at once, over all platforms; 0: [`DEFAULT_JOBS`] (as a push's
    /// `--upload-jobs`).
    pub jobs: usize,
}

/// Blobs a pull downloads at once unless told otherwise: a push's default too.
pub const DEFAULT_JOBS: usize = 4;

/// The most layers a base's platform may have: overlayfs, which runtimes mount images with,
/// stacks at most 500 (the kernel's `OVL_MAX_STACK`), and our layers go on top.
pub const MAX_LAYERS: usize = 400;

/// The largest base config read: as a manifest ([`crate::registry::manifest::MAX_MANIFEST`]).
pub const MAX_CONFIG: u64 = crate::registry::manifest::MAX_MANIFEST as u64;

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
    _scratch: Option<std::sync::Arc<Scratch>>,
}

/// A temporary blob store (`--no-cache`): removed when dropped, or on a signal.
#[derive(Debug)]
struct Scratch {
    _dir: tempfile::TempDir,
    _on_signal: crate::interrupt::Registered,
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

/// A layer's media type in an OCI manifest, for the layer types a runtime unpacks: a tar,
/// gzip- or zstd-compressed, OCI's or Docker's (whose bytes are the same as OCI's). Anything
/// else (foreign or non-distributable layers, an unknown suffix) is `None`, refused.
fn layer_media_type(mt: &str) -> Option<MediaType> {
    Some(match mt {
        "application/vnd.oci.image.layer.v1.tar"
        | "application/vnd.docker.image.rootfs.diff.tar" => MediaType::ImageLayer,
        "application/vnd.oci.image.layer.v1.tar+gzip"
        | "application/vnd.docker.image.rootfs.diff.tar.gzip" => MediaType::ImageLayerGzip,
        "application/vnd.oci.image.layer.v1.tar+zstd"
        | "application/vnd.docker.image.rootfs.diff.tar.zstd" => MediaType::ImageLayerZstd,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::media_type;

    #[test]
    fn only_layer_types_a_runtime_unpacks_are_taken() {
        for (mt, want) in [
            (
                "application/vnd.oci.image.layer.v1.tar",
                "application/vnd.oci.image.layer.v1.tar",
            ),
            (
                "application/vnd.docker.image.rootfs.diff.tar.gzip",
                media_type::LAYER_GZIP,
            ),
            (
                "application/vnd.oci.image.layer.v1.tar+zstd",
                media_type::LAYER_ZSTD,
            ),
            (
                "application/vnd.docker.image.rootfs.diff.tar.zstd",
                media_type::LAYER_ZSTD,
            ),
        ] {
            assert_eq!(
                layer_media_type(mt).map(|m| m.to_string()),
                Some(want.to_string())
            );
        }
        for mt in [
            "application/vnd.oci.image.layer.v1.tar+evil",
            "application/vnd.oci.image.layer.v1.tar+gzip+evil",
            "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
            "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
            "application/vnd.oci.image.layer.v1.tar ",
        ] {
            assert!(layer_media_type(mt).is_none(), "{mt}");
        }
    }
}
