//! SBOMs in an OCI image layout: per platform, an OCI 1.1 artifact manifest (`artifactType` the
//! SBOM's media type, the empty config, one layer: the document, `subject`: the platform's
//! manifest), listed in `index.json` beside the tagged image with its `artifactType` and no
//! `ref.name`. The image index does not mention them, so its digest is the same with or without.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::{Document, SbomError};
use crate::digest::Digest;
use crate::image::{canonical, BlobRef};
use crate::layout::{Descriptor, Layout, LayoutError, LayoutWriter};
use crate::oci::{annotation, media_type};

pub const EMPTY: &[u8] = b"{}";

/// An SBOM manifest as `index.json` (and a referrers index) lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Referrer {
    pub digest: Digest,
    pub size: u64,
    pub artifact_type: String,
    pub annotations: BTreeMap<String, String>,
}

impl Referrer {
    pub fn descriptor_json(&self) -> Value {
        let mut d = json!({
            "mediaType": media_type::MANIFEST,
            "digest": self.digest.to_string(),
            "size": self.size,
            "artifactType": self.artifact_type,
        });
        if !self.annotations.is_empty() {
            d["annotations"] = json!(self.annotations);
        }
        d
    }
}

fn descriptor(media_type: &str, digest: &Digest, size: u64) -> Value {
    json!({"mediaType": media_type, "digest": digest.to_string(), "size": size})
}

/// The artifact manifest of `doc` (stored as `doc_digest`) about `subject`.
pub fn manifest(doc: &Document, doc_digest: &Digest, subject: &BlobRef, created: &str) -> Vec<u8> {
    let title = match doc.media_type.as_str() {
        super::MEDIA_TYPE_CYCLONEDX => "sbom.cdx.json",
        _ => "sbom.spdx.json",
    };
    let mut layer = descriptor(&doc.media_type, doc_digest, doc.bytes.len() as u64);
    layer["annotations"] = json!({ annotation::TITLE: title });
    canonical(&json!({
        "schemaVersion": 2,
        "mediaType": media_type::MANIFEST,
        "artifactType": doc.media_type,
        "config": descriptor(media_type::EMPTY, &Digest::of(EMPTY), EMPTY.len() as u64),
        "layers": [layer],
        "subject": descriptor(subject.media_type.as_ref(), &subject.digest, subject.size),
        "annotations": { annotation::CREATED: created },
    }))
}

/// Write `doc`, the empty config and the artifact manifest into the layout under construction.
pub fn write(
    writer: &LayoutWriter,
    doc: &Document,
    subject: &BlobRef,
    created: &str,
) -> Result<Referrer, LayoutError> {
    let doc_digest = writer.put_blob(&doc.bytes)?;
    writer.put_blob(EMPTY)?;
    let bytes = manifest(doc, &doc_digest, subject, created);
    Ok(Referrer {
        digest: writer.put_blob(&bytes)?,
        size: bytes.len() as u64,
        artifact_type: doc.media_type.clone(),
        annotations: BTreeMap::from([(annotation::CREATED.to_string(), created.to_string())]),
    })
}

/// `index.json` with the referrers appended after the image's own entries.
pub fn layout_index(index_json: &[u8], referrers: &[Referrer]) -> Vec<u8> {
    if referrers.is_empty() {
        return index_json.to_vec();
    }
    let mut v: Value = serde_json::from_slice(index_json).expect("index.json built in memory");
    let list = v["manifests"].as_array_mut().expect("manifests array");
    list.extend(referrers.iter().map(Referrer::descriptor_json));
    canonical(&v)
}

/// An SBOM manifest of a layout, read and verified.
#[derive(Debug, Clone)]
pub struct LocalSbom {
    pub referrer: Referrer,
    pub manifest: Vec<u8>,
    pub subject: Digest,
    /// The document's blob.
    pub document: Descriptor,
}

/// Every SBOM manifest `index.json` lists.
pub fn list(layout: &Layout) -> Result<Vec<LocalSbom>, SbomError> {
    let path = layout.root().join("index.json");
    let bytes = crate::layout::read_in_layout(&path)?;
    let index: Value = parse(&path.display().to_string(), &bytes)?;
    let mut out = Vec::new();
    for d in index["manifests"].as_array().into_iter().flatten() {
        let Some(artifact_type) = d["artifactType"].as_str() else {
            continue;
        };
        let desc = layout_descriptor(d, &path.display().to_string())?;
        let m = layout.read_manifest(&desc)?;
        let what = format!("manifest {}", desc.digest);
        let v: Value = parse(&what, &m.bytes)?;
        let subject = digest_at(&v["subject"], &what)?;
        let document = layout_descriptor(&v["layers"][0], &what)?;
        out.push(LocalSbom {
            referrer: Referrer {
                digest: desc.digest.clone(),
                size: desc.size,
                artifact_type: artifact_type.to_string(),
                annotations: serde_json::from_value(v["annotations"].clone()).unwrap_or_default(),
            },
            manifest: m.bytes,
            subject,
            document,
        });
    }
    Ok(out)
}

pub(crate) fn parse(what: &str, bytes: &[u8]) -> Result<Value, SbomError> {
    serde_json::from_slice(bytes).map_err(|source| SbomError::Json {
        what: what.to_string(),
        source,
    })
}

pub(crate) fn digest_at(d: &Value, what: &str) -> Result<Digest, SbomError> {
    let s = d["digest"].as_str().unwrap_or_default();
    Digest::parse(s).map_err(|e| SbomError::NotFound(format!("{what}: {e}")))
}

pub(crate) fn layout_descriptor(d: &Value, what: &str) -> Result<Descriptor, SbomError> {
    Ok(Descriptor {
        media_type: d["mediaType"].as_str().unwrap_or_default().to_string(),
        digest: digest_at(d, what)?,
        size: d["size"]
            .as_u64()
            .ok_or_else(|| SbomError::NotFound(format!("{what}: a descriptor without a size")))?,
        annotations: BTreeMap::new(),
        platform: None,
    })
}

/// The SBOM document of each platform's binary that has a source, `None` where there is none.
/// One thread a platform: the work is mostly waiting on `cargo metadata` or reading a section,
/// and a build runs this beside its compression, so it must not hold rayon's workers.
pub fn documents(
    opts: &super::SbomOptions,
    binaries: &[(&crate::platform::Platform, &std::path::Path)],
) -> Result<Vec<Option<Document>>, SbomError> {
    for (platform, path) in &opts.files {
        if !binaries.iter().any(|(p, _)| p.to_string() == *platform) {
            return Err(SbomError::UserFile {
                platform: platform.clone(),
                path: path.clone(),
                message: "not a platform of this image".into(),
            });
        }
    }
    std::thread::scope(|s| {
        let handles: Vec<_> = binaries
            .iter()
            .map(|&(p, b)| s.spawn(move || super::for_platform(opts, p, b)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect()
    })
}

/// Each document written into the layout with its platform's manifest as `subject`: per
/// platform, the referrer and where its document came from.
pub fn attach(
    writer: &LayoutWriter,
    docs: Vec<Option<Document>>,
    manifests: &[&BlobRef],
    created: &str,
) -> Result<Vec<Option<(Referrer, String)>>, LayoutError> {
    docs.into_iter()
        .zip(manifests)
        .map(|(doc, manifest)| match doc {
            Some(doc) => Ok(Some((write(writer, &doc, manifest, created)?, doc.origin))),
            None => Ok(None),
        })
        .collect()
}
