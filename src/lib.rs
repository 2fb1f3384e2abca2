//! ironstar: pack fully static binaries into reproducible multi-arch OCI images and push them.
//!
//! One concept a module, in pipeline order:
//! - [`digest`] and [`oci`]: the names every module speaks: digests, media types, annotation
//!   keys, image references;
//! - [`platform`]: the table of OCI platforms, Rust targets and ELF machines;
//! - [`elf`]: the check that a binary is static and built for its platform;
//! - [`spec`]: the image definition file (`images/*.toml`);
//! - [`layer`] and [`compress`]: the deterministic tar layer, gzip- or zstd-compressed;
//! - [`rootfs`]: the files of the rootfs items (CA roots, time zones, a non-root user, /tmp);
//! - [`base`]: a base image: pulled, kept, and its config merged under ours;
//! - [`cache`]: layers already compressed, and where blobs were pushed;
//! - [`image`]: config, manifest and index JSON in canonical form;
//! - [`layout`]: the OCI image layout on disk, written atomically and read with verification;
//! - [`build`]: the whole `ironstar build`, and [`interrupt`]: its cleanup on SIGINT, SIGTERM
//!   and SIGHUP;
//! - [`registry`] and [`push`]: the distribution-spec client and the push of a layout;
//! - [`cargo`]: cross-building a crate for every platform of an image;
//! - [`definition`]: which image definitions a build uses (file, Cargo.toml metadata, flags),
//!   dated by [`source_date`] (the last commit's time);
//! - [`publish`]: several images at once (a workspace's): layouts side by side, repositories
//!   named as ko names them; [`resolve`]: `ironstar://NAME` references in YAML;
//! - [`merge`]: per-platform images built apart, joined into the index one build would write;
//! - [`sbom`]: each platform's bill of materials, attached to its manifest as an OCI referrer;
//! - [`sign`]: cosign-compatible signatures of the index and every platform manifest;
//! - [`artifact`]: what is written after the index, about it (referrers, cosign's `.sig` and
//!   `.att` tags, the referrers tag), and the signed SLSA provenance attestation;
//! - [`archive`] and [`load`]: docker-archive and oci-archive streams, and loading one into podman
//!   or docker;
//! - [`untrusted`]: JSON someone else wrote (a base's manifest or config), counted before it is
//!   parsed.

pub mod archive;
pub mod artifact;
pub mod base;
pub mod build;
pub mod cache;
pub mod cargo;
pub mod compress;
pub mod definition;
pub mod digest;
pub mod elf;
pub mod image;
pub mod interrupt;
pub mod layer;
pub mod layout;
pub mod load;
pub mod merge;
pub mod oci;
pub mod platform;
pub mod publish;
pub mod push;
pub mod registry;
pub mod resolve;
pub mod reuse;
pub mod rootfs;
pub mod sbom;
pub mod sign;
pub mod source_date;
pub mod spec;
pub mod untrusted;

pub use digest::Digest;
pub use platform::Platform;

/// Whether stderr is a person's terminal that takes escape codes (colour, progress bars): a
/// terminal, `NO_COLOR` (no-color.org) unset or empty, and not `TERM=dumb`. A pipe, a CI log or
/// a user who asked for plain text gets plain lines.
pub fn stderr_is_styled() -> bool {
    use std::io::IsTerminal as _;
    let set = |k| std::env::var_os(k).is_some_and(|v| !v.is_empty());
    std::io::stderr().is_terminal()
        && !set("NO_COLOR")
        && std::env::var_os("TERM").is_none_or(|t| t != "dumb")
}

/// The file system is full (or the user's quota is): worth saying where, and what to free.
pub(crate) fn storage_full(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT))
}

/// A byte count for people: `512 B`, `3.4 MiB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}
