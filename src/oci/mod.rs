//! The names the OCI specs give: media types, annotation keys, and image references. A base
//! module: the image definition, the image JSON, the layout and the registry client all speak
//! these names, and none of them owns them (so none has to import another for a constant).

pub mod reference;

pub use reference::{Reference, ReferenceError, Repository, Tag};

/// Media types of the image-spec (and the Docker ones a registry may still answer with).
pub mod media_type {
    pub const INDEX: &str = "application/vnd.oci.image.index.v1+json";
    pub const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    /// The empty descriptor's (`{}`) of an artifact manifest without a config of its own.
    pub const EMPTY: &str = "application/vnd.oci.empty.v1+json";
    /// Layers: a tar, gzip- or zstd-compressed (zstd since image-spec 1.1).
    pub const LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
    pub const LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
    pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
    pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
}

/// Pre-defined annotation keys of the image-spec (`annotations.md`).
pub mod annotation {
    /// A tag's name in a layout's `index.json`.
    pub const REF_NAME: &str = "org.opencontainers.image.ref.name";
    pub const CREATED: &str = "org.opencontainers.image.created";
    pub const TITLE: &str = "org.opencontainers.image.title";
    pub const VERSION: &str = "org.opencontainers.image.version";
    pub const REVISION: &str = "org.opencontainers.image.revision";
    pub const SOURCE: &str = "org.opencontainers.image.source";
    /// ironstar's own, at the top of a layout's `index.json`: the repository the image's
    /// definition names (`repository`), for `ironstar push --workspace`.
    pub const REPOSITORY: &str = "dev.ironstar.repository";
    /// The base image's reference and its (platform) manifest's digest, on each manifest of an
    /// image built on one.
    pub const BASE_NAME: &str = "org.opencontainers.image.base.name";
    pub const BASE_DIGEST: &str = "org.opencontainers.image.base.digest";
}

/// ironstar's own label keys (reverse-DNS, as the image-spec asks of keys outside its own).
pub mod label {
    /// The rootfs items an image has, comma-separated.
    pub const ROOTFS: &str = "dev.ironstar.rootfs";
    const ROOTFS_ITEM: &str = "dev.ironstar.rootfs.";

    /// The key of one rootfs item's data version: `dev.ironstar.rootfs.<item>`.
    pub fn rootfs_item(name: &str) -> String {
        format!("{ROOTFS_ITEM}{name}")
    }
}

/// The `os/architecture[/variant]` name of a platform object (a descriptor's `platform`, or an
/// image config, which has the same three keys); `None` without `os` or `architecture`.
pub fn platform_name(p: &serde_json::Value) -> Option<String> {
    let (os, arch) = (p["os"].as_str()?, p["architecture"].as_str()?);
    Some(match p["variant"].as_str() {
        Some(v) => format!("{os}/{arch}/{v}"),
        None => format!("{os}/{arch}"),
    })
}
