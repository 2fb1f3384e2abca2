//! The software bill of materials of each platform's binary: which crates it was built from.
//!
//! Sources, best first: the binary's own `.dep-v0` section ([`auditable`], written by
//! `cargo auditable`), cargo's resolved graph for the target ([`metadata`], on the `--cargo` path),
//! or a document the user gives. The crates become an SPDX 2.3 or CycloneDX 1.5 JSON document
//! ([`spdx`], [`cyclonedx`]) with deterministic bytes, stored in the layout as an OCI 1.1 artifact
//! manifest whose `subject` is the platform's manifest ([`artifact`]), and pushed as a referrer
//! ([`crate::artifact::push`]).

pub mod artifact;
pub mod auditable;
pub mod cyclonedx;
pub mod fetch;
pub mod lockfile;
pub mod metadata;
pub mod spdx;

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::platform::Platform;

pub const MEDIA_TYPE_SPDX: &str = "application/spdx+json";
pub const MEDIA_TYPE_CYCLONEDX: &str = "application/vnd.cyclonedx+json";

/// Whether a referrer's `artifactType` is an SBOM's.
pub fn is_sbom_type(artifact_type: &str) -> bool {
    matches!(artifact_type, MEDIA_TYPE_SPDX | MEDIA_TYPE_CYCLONEDX)
}

#[derive(Debug, thiserror::Error)]
pub enum SbomError {
    #[error("cargo metadata for {target}: {message}")]
    Metadata { target: String, message: String },
    #[error("--sbom {platform}={path}: {message}")]
    UserFile {
        platform: String,
        path: PathBuf,
        message: String,
    },
    #[error("{0}")]
    Layout(#[from] crate::layout::LayoutError),
    #[error("{0}")]
    Registry(#[from] crate::registry::RegistryError),
    #[error("{0}")]
    NotFound(String),
    #[error(transparent)]
    Artifact(#[from] crate::artifact::ArtifactError),
    #[error("{what}: malformed JSON: {source}")]
    Json {
        what: String,
        #[source]
        source: serde_json::Error,
    },
}

/// The document format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    #[default]
    Spdx,
    CycloneDx,
}

impl Format {
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "spdx" | "spdx-json" => Ok(Format::Spdx),
            "cyclonedx" | "cyclonedx-json" => Ok(Format::CycloneDx),
            _ => Err(format!("unknown SBOM format `{s}` (spdx or cyclonedx)")),
        }
    }

    pub fn media_type(self) -> &'static str {
        match self {
            Format::Spdx => MEDIA_TYPE_SPDX,
            Format::CycloneDx => MEDIA_TYPE_CYCLONEDX,
        }
    }
}

/// The `--cargo` package, for cargo's resolved graph.
#[derive(Debug, Clone, Default)]
pub struct CargoSource {
    pub manifest_path: PathBuf,
    pub package: String,
    /// `--features`; empty: the package's default features.
    pub features: Vec<String>,
    pub all_features: bool,
    pub no_default_features: bool,
    /// The units the build compiled: the graph keeps only these ([`metadata`]). `None` (no
    /// build seen): cargo metadata's resolve as it is, weak `dep?/feature` deps included.
    pub units: Option<crate::cargo::Units>,
    /// What the link added besides the crates' own code (mimalloc's C for
    /// `allocator = "mimalloc"`, OpenSSL built for openssl-sys): listed as the root package's dependencies.
    pub linked: Vec<Component>,
}

impl CargoSource {
    /// The package a `--cargo` build selected, with the features it was built with.
    pub fn of(selection: &crate::cargo::Selection, features: &crate::cargo::Features) -> Self {
        CargoSource {
            manifest_path: selection.package_manifest.clone(),
            package: selection.package.clone(),
            features: features.features.clone(),
            all_features: features.all_features,
            no_default_features: features.no_default_features,
            units: None,
            linked: Vec::new(),
        }
    }

    /// With what the allocator choice links in.
    pub fn linking(mut self, allocator: crate::cargo::Allocator) -> Self {
        if allocator == crate::cargo::Allocator::Mimalloc {
            self.linked.push(crate::cargo::mimalloc_component());
        }
        self
    }

    /// With the OpenSSL ironstar built for openssl-sys, when a platform's binary links it.
    pub fn linking_openssl(mut self, of: &[(String, crate::cargo::OpenSsl)]) -> Self {
        if of.iter().any(|(_, o)| *o == crate::cargo::OpenSsl::Built) {
            self.linked.push(crate::cargo::openssl_component());
        }
        self
    }

    /// With the units the build compiled.
    pub fn compiled(mut self, units: crate::cargo::Units) -> Self {
        self.units = Some(units);
        self
    }
}

/// What SBOMs a build attaches.
#[derive(Debug, Clone, Default)]
pub struct SbomOptions {
    pub format: Format,
    pub cargo: Option<CargoSource>,
    /// Documents the user supplies, by platform (`linux/amd64`): used as they are.
    pub files: BTreeMap<String, PathBuf>,
    /// A `Cargo.lock` for the checksums of crates read from a `.dep-v0` section.
    pub lockfile: Option<PathBuf>,
    /// Seconds since the epoch: the documents' creation time.
    pub source_date_epoch: i64,
}

/// One crate of a binary.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Component {
    pub name: String,
    pub version: String,
    /// Cargo's source id without the `#commit` part's fragments dropped, e.g.
    /// `registry+https://github.com/rust-lang/crates.io-index`; `None` for a local path.
    pub source: Option<String>,
    /// SHA-256 of the `.crate` file, from `Cargo.lock`.
    pub checksum: Option<String>,
    /// SPDX license expression as the crate declares it.
    pub license: Option<String>,
    /// Only used at build time (build scripts, proc macros).
    pub build_only: bool,
}

impl Component {
    pub fn purl(&self) -> String {
        format!("pkg:cargo/{}@{}", self.name, self.version)
    }
}

/// The crates of one binary: the root package and what it depends on, with the edges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Graph {
    /// `components[0]` is the root package.
    pub components: Vec<Component>,
    /// `(from, to)` indexes into `components`, sorted.
    pub edges: Vec<(usize, usize)>,
}

impl Graph {
    pub fn root(&self) -> &Component {
        &self.components[0]
    }

    /// Sort the dependencies (the root stays first) and remap the edges, so the same crates
    /// give the same document whatever order a source listed them in.
    pub fn normalise(mut self) -> Graph {
        let mut order: Vec<usize> = (1..self.components.len()).collect();
        order.sort_by(|&a, &b| self.components[a].cmp(&self.components[b]));
        order.insert(0, 0);
        let mut new_index = vec![0; order.len()];
        for (new, &old) in order.iter().enumerate() {
            new_index[old] = new;
        }
        let components = order.iter().map(|&i| self.components[i].clone()).collect();
        let mut edges: Vec<_> = self
            .edges
            .iter()
            .map(|&(a, b)| (new_index[a], new_index[b]))
            .collect();
        edges.sort();
        edges.dedup();
        self.components = components;
        self.edges = edges;
        self
    }

    /// Fill in checksums from a `Cargo.lock`.
    pub fn add_checksums(&mut self, lock: &lockfile::Lockfile) {
        for c in &mut self.components {
            if c.checksum.is_none() {
                c.checksum = lock.checksum(&c.name, &c.version, c.source.as_deref());
            }
        }
    }
}

/// An SBOM document ready for the layout.
#[derive(Debug, Clone)]
pub struct Document {
    pub media_type: String,
    pub bytes: Vec<u8>,
    /// Where it came from, for the summary: `.dep-v0`, `cargo metadata`, or the user's file.
    pub origin: String,
}

/// The document for one platform's binary, from the best source there is; `Ok(None)` when
/// there is none. A malformed `.dep-v0` section is a warning, never an error.
pub fn for_platform(
    opts: &SbomOptions,
    platform: &Platform,
    binary: &std::path::Path,
) -> Result<Option<Document>, SbomError> {
    let key = platform.to_string();
    let (graph, origin) = match auditable::read(binary) {
        Some(mut g) => {
            // The checksums: the given Cargo.lock, else the one above the binary (`target/` is
            // usually in the crate). Any lock that names a registry crate's version has its one
            // checksum. Read only here: most binaries have no section to complete.
            let lock = opts
                .lockfile
                .clone()
                .or_else(|| binary.parent().and_then(lockfile::find))
                .and_then(|p| lockfile::Lockfile::load(&p).ok());
            if let Some(l) = &lock {
                g.add_checksums(l);
            }
            (Some(g), ".dep-v0")
        }
        None => match &opts.cargo {
            Some(c) => (
                Some(metadata::graph(c, platform.rust_target)?),
                "cargo metadata",
            ),
            None => (None, ""),
        },
    };
    if let (Some(_), Some(path)) = (&graph, opts.files.get(&key)) {
        tracing::warn!(
            "{key}: using the SBOM from {origin}, not --sbom {key}={}",
            path.display()
        );
    }
    if let Some(mut g) = graph {
        // cargo metadata knows the licenses the binary's section does not carry.
        if origin == ".dep-v0" {
            if let Some(c) = &opts.cargo {
                if let Ok(m) = metadata::graph(c, platform.rust_target) {
                    add_licenses(&mut g, &m);
                }
            }
        }
        let g = g.normalise();
        let name = format!("{} {key}", g.root().name);
        let bytes = match opts.format {
            Format::Spdx => spdx::document(&g, &name, opts.source_date_epoch),
            Format::CycloneDx => cyclonedx::document(&g, opts.source_date_epoch),
        };
        return Ok(Some(Document {
            media_type: opts.format.media_type().to_string(),
            bytes,
            origin: origin.to_string(),
        }));
    }
    match opts.files.get(&key) {
        Some(path) => user_file(&key, path).map(Some),
        None => Ok(None),
    }
}

fn add_licenses(g: &mut Graph, from: &Graph) {
    for c in &mut g.components {
        if c.license.is_none() {
            c.license = from
                .components
                .iter()
                .find(|m| m.name == c.name && m.version == c.version)
                .and_then(|m| m.license.clone());
        }
    }
}

/// A document the user gives: JSON, SPDX (`spdxVersion`) or CycloneDX (`bomFormat`), stored as
/// it is. Bounded: an SBOM is read into memory.
fn user_file(platform: &str, path: &std::path::Path) -> Result<Document, SbomError> {
    const MAX: u64 = 64 << 20;
    let err = |message: String| SbomError::UserFile {
        platform: platform.to_string(),
        path: path.to_path_buf(),
        message,
    };
    let len = std::fs::metadata(path)
        .map_err(|e| err(e.to_string()))?
        .len();
    if len > MAX {
        return Err(err(format!("{len} bytes; an SBOM is at most 64 MiB")));
    }
    let bytes = std::fs::read(path).map_err(|e| err(e.to_string()))?;
    let v: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|e| err(format!("not JSON: {e}")))?;
    let media_type = if v.get("spdxVersion").is_some() {
        MEDIA_TYPE_SPDX
    } else if v.get("bomFormat").and_then(|f| f.as_str()) == Some("CycloneDX") {
        MEDIA_TYPE_CYCLONEDX
    } else {
        return Err(err(
            "neither SPDX JSON (`spdxVersion`) nor CycloneDX JSON (`bomFormat`)".into(),
        ));
    };
    Ok(Document {
        media_type: media_type.to_string(),
        bytes,
        origin: path.display().to_string(),
    })
}

/// A license expression SPDX can parse: `MIT/Apache-2.0` (an old cargo form) becomes
/// `MIT OR Apache-2.0`; anything else unusual is dropped rather than make the document invalid.
pub fn license_expression(s: &str) -> Option<String> {
    let s = s.trim().replace('/', " OR ");
    let ok = !s.is_empty()
        && s.split(|c: char| c.is_whitespace() || c == '(' || c == ')')
            .filter(|t| !t.is_empty())
            .all(|t| {
                t.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '+' | ':'))
            });
    ok.then(|| s.split_whitespace().collect::<Vec<_>>().join(" "))
}

/// Hex SHA-256 of bytes, for identifiers derived from content.
pub(crate) fn content_hash(bytes: &[u8]) -> String {
    crate::digest::Digest::of(bytes).hex().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn licenses() {
        assert_eq!(
            license_expression("MIT/Apache-2.0").as_deref(),
            Some("MIT OR Apache-2.0")
        );
        assert_eq!(
            license_expression("(MIT OR Apache-2.0) AND Unicode-3.0").as_deref(),
            Some("(MIT OR Apache-2.0) AND Unicode-3.0")
        );
        assert_eq!(license_expression("see LICENSE, please"), None);
    }

    #[test]
    fn normalise_sorts_and_remaps() {
        let c = |n: &str| Component {
            name: n.into(),
            version: "1.0.0".into(),
            source: None,
            checksum: None,
            license: None,
            build_only: false,
        };
        let g = Graph {
            components: vec![c("root"), c("zeta"), c("alpha")],
            edges: vec![(0, 1), (0, 2), (1, 2)],
        }
        .normalise();
        let names: Vec<_> = g.components.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["root", "alpha", "zeta"]);
        assert_eq!(g.edges, vec![(0, 1), (0, 2), (2, 1)]);
    }
}
