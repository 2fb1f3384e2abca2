//! `ironstar merge`: join per-platform images (each built on its own machine) into the image
//! index one build of all their platforms would have written, byte for byte.
//!
//! The index is made by the build's own function ([`crate::image::index`]) from what the sources
//! hold: each platform manifest's descriptor (media type, digest, size) and platform, and the
//! index annotations. One build gives every platform's manifest and its index the same
//! annotations (from one definition), so sources built from one definition and one commit carry
//! equal index annotations; platforms go in the platform table's order, as a build of a
//! definition orders them. Sources that differ in what the index carries are refused, naming
//! the field.
//!
//! - [`layout`]: sources and result are OCI layouts (`--output DIR`); SBOMs and the platforms'
//!   signatures are copied, the merged index may be signed;
//! - [`registry`]: sources are references; only manifests are read, the new index is written by
//!   digest and then tagged; parts from elsewhere are mounted or copied first, with their SBOMs
//!   (`carry`).
//!
//! Inputs other tools push are taken too: a bare image manifest (its platform from its config)
//! and a Docker manifest list; their manifests are kept as they are, so the result is a valid
//! index, equal to a build's only when every part is ironstar's.

mod carry;
pub mod layout;
pub mod registry;

use std::collections::BTreeMap;

use oci_spec::image::MediaType;
use serde_json::Value;

use crate::digest::Digest;
use crate::image::{self, BlobRef};
use crate::oci::{media_type, platform_name};
use crate::platform::{Platform, PLATFORMS};

#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    #[error("{source_name}: no platform image in it; nothing to merge")]
    Empty { source_name: String },
    #[error(
        "{first} and {second} both hold {platform}, as different manifests ({first_digest} and \
         {second_digest}); give one of them"
    )]
    SamePlatform {
        platform: String,
        first: String,
        second: String,
        first_digest: Digest,
        second_digest: Digest,
    },
    #[error(
        "{first} and {second} differ in the index annotation `{field}` ({}, {}): they were not \
         built from one definition and commit; rebuild them alike",
        shown(.first_value), shown(.second_value)
    )]
    Annotation {
        field: String,
        first: String,
        second: String,
        first_value: Option<String>,
        second_value: Option<String>,
    },
    #[error("{first} and {second} differ in {what} ({values}); {hint}")]
    Differ {
        what: &'static str,
        first: String,
        second: String,
        /// `A vs B`.
        values: String,
        hint: &'static str,
    },
    #[error("{source_name}: {problem}")]
    Malformed {
        source_name: String,
        problem: String,
    },
    #[error("{source_name}: platform {given} is not one ironstar knows")]
    Platform { source_name: String, given: String },
    #[error(transparent)]
    Image(#[from] crate::image::ImageError),
    #[error(transparent)]
    Layout(#[from] crate::layout::LayoutError),
    #[error(transparent)]
    Registry(#[from] crate::registry::RegistryError),
    #[error(transparent)]
    Sign(#[from] crate::sign::SignError),
    #[error(transparent)]
    Sbom(#[from] crate::sbom::SbomError),
    #[error(transparent)]
    Artifact(#[from] crate::artifact::ArtifactError),
    #[error(transparent)]
    Tags(#[from] Box<crate::push::TagsNotMoved>),
    #[error("internal: {0}")]
    Internal(String),
}

fn shown(v: &Option<String>) -> String {
    match v {
        Some(v) => format!("`{v}`"),
        None => "absent".into(),
    }
}

/// One platform's image, as a source holds it.
#[derive(Debug, Clone)]
pub struct Part {
    pub platform: &'static Platform,
    pub manifest: BlobRef,
    /// Which source (its position in the list given).
    pub source: usize,
}

/// One source: its name (as the user gave it), its index annotations (`None` for a bare
/// manifest, which has no index), and its platforms in its order.
#[derive(Debug, Clone)]
pub struct Source {
    pub name: String,
    pub annotations: Option<BTreeMap<String, String>>,
    pub parts: Vec<Part>,
}

/// What the sources make: the platforms in order (each once) and the index.
#[derive(Debug, Clone)]
pub struct Merged {
    pub parts: Vec<Part>,
    pub index: Vec<u8>,
    pub index_ref: BlobRef,
}

impl Merged {
    /// The subjects signed with the index: the index alone (the platforms keep their own).
    pub fn index_subject(&self) -> Vec<(Digest, Option<String>)> {
        vec![(self.index_ref.digest.clone(), None)]
    }
}

/// Check the sources against each other and make the index: platforms in the platform table's
/// order, as a build orders a definition's (a platform two sources hold as the same manifest,
/// once), the annotations they share.
pub fn plan(sources: &[Source]) -> Result<Merged, MergeError> {
    let mut parts: Vec<Part> = Vec::new();
    for s in sources {
        if s.parts.is_empty() {
            return Err(MergeError::Empty {
                source_name: s.name.clone(),
            });
        }
        for p in &s.parts {
            match parts.iter().find(|q| q.platform == p.platform) {
                Some(q) if q.manifest.digest == p.manifest.digest => {}
                Some(q) => {
                    return Err(MergeError::SamePlatform {
                        platform: p.platform.to_string(),
                        first: sources[q.source].name.clone(),
                        second: s.name.clone(),
                        first_digest: q.manifest.digest.clone(),
                        second_digest: p.manifest.digest.clone(),
                    })
                }
                None => parts.push(p.clone()),
            }
        }
    }
    // A definition's platforms are built in the table's order, whatever order it lists them
    // in: so are a merge's, whatever order the sources come in.
    parts.sort_by_key(|p| PLATFORMS.iter().position(|q| q == p.platform));
    let annotations = shared_annotations(sources)?;
    let pairs: Vec<(&Platform, BlobRef)> = parts
        .iter()
        .map(|p| (p.platform, p.manifest.clone()))
        .collect();
    let index = image::index(&pairs, &annotations)?;
    let index_ref = BlobRef {
        media_type: MediaType::ImageIndex,
        digest: Digest::of(&index),
        size: index.len() as u64,
    };
    Ok(Merged {
        parts,
        index,
        index_ref,
    })
}

/// The index annotations every source with an index carries alike (sources without any, a bare
/// manifest or another tool's list, add none).
fn shared_annotations(sources: &[Source]) -> Result<BTreeMap<String, String>, MergeError> {
    let mut with = sources
        .iter()
        .filter(|s| s.annotations.as_ref().is_some_and(|a| !a.is_empty()));
    let Some(first) = with.next() else {
        return Ok(BTreeMap::new());
    };
    let want = first.annotations.clone().unwrap_or_default();
    for s in with {
        let got = s.annotations.as_ref().expect("filtered");
        let keys = want.keys().chain(got.keys());
        if let Some(field) = keys.into_iter().find(|k| want.get(*k) != got.get(*k)) {
            return Err(MergeError::Annotation {
                field: field.clone(),
                first: first.name.clone(),
                second: s.name.clone(),
                first_value: want.get(field).cloned(),
                second_value: got.get(field).cloned(),
            });
        }
    }
    Ok(want)
}

/// What a source's top manifest is.
pub enum Top {
    /// An image index or a Docker manifest list: its platform descriptors and annotations.
    Index {
        parts: Vec<(&'static Platform, BlobRef)>,
        annotations: BTreeMap<String, String>,
    },
    /// One image manifest: its config's descriptor (the platform is read from the config).
    Manifest { config: BlobRef },
}

fn malformed(name: &str, problem: impl Into<String>) -> MergeError {
    MergeError::Malformed {
        source_name: name.to_string(),
        problem: problem.into(),
    }
}

/// A descriptor of a manifest's JSON as a [`BlobRef`].
pub fn blob_ref(name: &str, d: &Value) -> Result<BlobRef, MergeError> {
    let digest = Digest::parse(d["digest"].as_str().unwrap_or_default())
        .map_err(|e| malformed(name, format!("a descriptor's digest: {e}")))?;
    let size = d["size"]
        .as_u64()
        .ok_or_else(|| malformed(name, "a descriptor without a size"))?;
    let mt = d["mediaType"].as_str().unwrap_or(media_type::MANIFEST);
    Ok(BlobRef {
        media_type: MediaType::from(mt),
        digest,
        size,
    })
}

/// The platform a bare image manifest's config (`bytes`) names.
pub(crate) fn config_platform(name: &str, bytes: &[u8]) -> Result<&'static Platform, MergeError> {
    let v: Value =
        serde_json::from_slice(bytes).map_err(|e| malformed(name, format!("its config: {e}")))?;
    platform_of(name, &v)
}

/// The platform `os/arch[/variant]` of a descriptor's `platform` or of an image config.
pub fn platform_of(name: &str, v: &Value) -> Result<&'static Platform, MergeError> {
    let given =
        platform_name(v).ok_or_else(|| malformed(name, "no platform (os, architecture)"))?;
    Platform::parse(&given).map_err(|_| MergeError::Platform {
        source_name: name.to_string(),
        given,
    })
}

/// Read a source's top manifest (`media_type` as served or listed; empty when unknown).
pub fn top(name: &str, media_type: &str, bytes: &[u8]) -> Result<Top, MergeError> {
    let v: Value = serde_json::from_slice(bytes).map_err(|e| malformed(name, e.to_string()))?;
    let declared = v["mediaType"].as_str().unwrap_or(media_type);
    let is_index = matches!(declared, media_type::INDEX | media_type::DOCKER_LIST)
        || (v.get("config").is_none() && v["manifests"].is_array());
    if !is_index {
        let config = blob_ref(name, &v["config"])?;
        return Ok(Top::Manifest { config });
    }
    let mut parts = Vec::new();
    for d in v["manifests"].as_array().into_iter().flatten() {
        // Attestations beside the images (buildx's `unknown/unknown`) and artifacts are no
        // platform's image.
        if d.get("artifactType").is_some() || d["platform"]["os"] == "unknown" {
            continue;
        }
        parts.push((platform_of(name, &d["platform"])?, blob_ref(name, d)?));
    }
    let annotations = serde_json::from_value(v["annotations"].clone()).unwrap_or_default();
    Ok(Top::Index { parts, annotations })
}

/// A source of parts: the index's, or the one manifest (`top_ref`) with its config's platform.
pub fn source_of(
    name: &str,
    position: usize,
    top: Top,
    top_ref: BlobRef,
    config_platform: Option<&'static Platform>,
) -> Result<Source, MergeError> {
    let part = |platform, manifest| Part {
        platform,
        manifest,
        source: position,
    };
    Ok(match top {
        Top::Index { parts, annotations } => Source {
            name: name.to_string(),
            annotations: Some(annotations),
            parts: parts.into_iter().map(|(p, m)| part(p, m)).collect(),
        },
        Top::Manifest { .. } => {
            let platform = config_platform
                .ok_or_else(|| MergeError::Internal(format!("{name}: config not read")))?;
            Source {
                name: name.to_string(),
                annotations: None,
                parts: vec![part(platform, top_ref)],
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(p: &str, bytes: &[u8], source: usize) -> Part {
        Part {
            platform: Platform::parse(p).unwrap(),
            manifest: BlobRef {
                media_type: MediaType::ImageManifest,
                digest: Digest::of(bytes),
                size: bytes.len() as u64,
            },
            source,
        }
    }

    fn source(name: &str, parts: Vec<Part>, rev: &str) -> Source {
        Source {
            name: name.into(),
            annotations: Some(BTreeMap::from([(
                "org.opencontainers.image.revision".to_string(),
                rev.to_string(),
            )])),
            parts,
        }
    }

    #[test]
    fn the_merged_index_is_the_builds_index_of_the_union() {
        let a = source("a", vec![part("linux/amd64", b"x", 0)], "r");
        let b = source("b", vec![part("linux/arm64", b"y", 1)], "r");
        let merged = plan(&[a.clone(), b.clone()]).unwrap();
        let pairs = [
            (a.parts[0].platform, a.parts[0].manifest.clone()),
            (b.parts[0].platform, b.parts[0].manifest.clone()),
        ];
        let want = image::index(&pairs, a.annotations.as_ref().unwrap()).unwrap();
        assert_eq!(merged.index, want);
        // The same platform as the same manifest twice is one platform; the sources' order
        // is not the index's.
        let again = plan(&[b.clone(), a.clone(), b.clone()]).unwrap();
        assert_eq!(again.index, want);
    }

    #[test]
    fn refusals_name_the_sources_and_the_field() {
        let a = source("a", vec![part("linux/amd64", b"x", 0)], "r");
        let b = source("b", vec![part("linux/amd64", b"z", 1)], "r");
        let e = plan(&[a.clone(), b]).unwrap_err().to_string();
        assert!(e.contains("a and b both hold linux/amd64"), "{e}");
        let c = source("c", vec![part("linux/arm64", b"y", 1)], "s");
        let e = plan(&[a.clone(), c]).unwrap_err().to_string();
        assert!(
            e.contains("a and c differ in the index annotation `org.opencontainers.image.revision` (`r`, `s`)"),
            "{e}"
        );
        let empty = source("e", vec![], "r");
        let e = plan(&[a, empty]).unwrap_err().to_string();
        assert!(e.starts_with("e: no platform image"), "{e}");
    }
}
