//! An artifact about a subject as an OCI 1.1 referrer: an image manifest with `artifactType`, the
//! empty config, one layer (the document: an SBOM, a Sigstore bundle) and `subject`. In a layout
//! each is listed in `index.json` beside the tagged image with its `artifactType` and no
//! `ref.name`; the image index does not mention them, so its digest is the same with or without.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::{malformed, ArtifactError, EMPTY};
use crate::digest::Digest;
use crate::image::{canonical, BlobRef};
use crate::layout::{Descriptor, Layout, LayoutError, LayoutWriter};
use crate::oci::{annotation, media_type};

/// A referrer manifest as `index.json` (and a referrers index) lists it.
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

/// The one document a referrer carries.
#[derive(Debug, Clone)]
pub struct Document<'a> {
    pub media_type: &'a str,
    pub bytes: &'a [u8],
    /// Its `org.opencontainers.image.title`, if any.
    pub title: Option<&'a str>,
}

fn descriptor(media_type: &str, digest: &Digest, size: u64) -> Value {
    json!({"mediaType": media_type, "digest": digest.to_string(), "size": size})
}

/// The referrer manifest of `doc`, of `artifact_type`, about `subject`.
pub fn manifest(
    artifact_type: &str,
    doc: &Document,
    subject: &BlobRef,
    annotations: &BTreeMap<String, String>,
) -> Vec<u8> {
    let mut layer = descriptor(
        doc.media_type,
        &Digest::of(doc.bytes),
        doc.bytes.len() as u64,
    );
    if let Some(title) = doc.title {
        layer["annotations"] = json!({ annotation::TITLE: title });
    }
    let mut m = json!({
        "schemaVersion": 2,
        "mediaType": media_type::MANIFEST,
        "artifactType": artifact_type,
        "config": descriptor(media_type::EMPTY, &Digest::of(EMPTY), EMPTY.len() as u64),
        "layers": [layer],
        "subject": descriptor(subject.media_type.as_ref(), &subject.digest, subject.size),
    });
    if !annotations.is_empty() {
        m["annotations"] = json!(annotations);
    }
    canonical(&m)
}

/// Write `doc`, the empty config and the referrer manifest into the layout under construction.
pub fn write(
    writer: &LayoutWriter,
    artifact_type: &str,
    doc: &Document,
    subject: &BlobRef,
    annotations: BTreeMap<String, String>,
) -> Result<Referrer, LayoutError> {
    writer.put_blob(doc.bytes)?;
    writer.put_blob(EMPTY)?;
    let bytes = manifest(artifact_type, doc, subject, &annotations);
    Ok(Referrer {
        digest: writer.put_blob(&bytes)?,
        size: bytes.len() as u64,
        artifact_type: artifact_type.to_string(),
        annotations,
    })
}

/// `index.json` with `entries` (referrers, cosign tag manifests) appended after the image's own.
pub fn layout_index(index_json: &[u8], entries: &[Value]) -> Vec<u8> {
    if entries.is_empty() {
        return index_json.to_vec();
    }
    let mut v: Value = serde_json::from_slice(index_json).expect("index.json built in memory");
    let list = v["manifests"].as_array_mut().expect("manifests array");
    list.extend(entries.iter().cloned());
    canonical(&v)
}

/// A referrer manifest of a layout, read and verified.
#[derive(Debug, Clone)]
pub struct Stored {
    pub referrer: Referrer,
    pub manifest: Vec<u8>,
    pub subject: Digest,
    /// Its document's blob.
    pub document: Descriptor,
    /// The document's bytes when it was made in memory (a signature at push time), not read
    /// from a layout.
    pub inline: Option<Vec<u8>>,
}

/// Every referrer manifest `index.json` lists.
pub fn list(layout: &Layout) -> Result<Vec<Stored>, ArtifactError> {
    let path = layout.root().join("index.json");
    let what = path.display().to_string();
    let bytes = crate::layout::read_in_layout(&path)?;
    let index: Value = parse(&what, &bytes)?;
    let mut out = Vec::new();
    for d in index["manifests"].as_array().into_iter().flatten() {
        let Some(artifact_type) = d["artifactType"].as_str() else {
            continue;
        };
        let desc = layout_descriptor(d, &what)?;
        let m = layout.read_manifest(&desc)?;
        let what = format!("manifest {}", desc.digest);
        let v: Value = parse(&what, &m.bytes)?;
        let subject = digest_at(&v["subject"], &what)?;
        let document = layout_descriptor(&v["layers"][0], &what)?;
        out.push(Stored {
            referrer: Referrer {
                digest: desc.digest.clone(),
                size: desc.size,
                artifact_type: artifact_type.to_string(),
                annotations: serde_json::from_value(v["annotations"].clone()).unwrap_or_default(),
            },
            manifest: m.bytes,
            subject,
            document,
            inline: None,
        });
    }
    Ok(out)
}

pub(crate) fn parse(what: &str, bytes: &[u8]) -> Result<Value, ArtifactError> {
    serde_json::from_slice(bytes).map_err(|e| malformed(what, e.to_string()))
}

pub(crate) fn digest_at(d: &Value, what: &str) -> Result<Digest, ArtifactError> {
    let s = d["digest"].as_str().unwrap_or_default();
    Digest::parse(s).map_err(|e| malformed(what, e.to_string()))
}

pub(crate) fn layout_descriptor(d: &Value, what: &str) -> Result<Descriptor, ArtifactError> {
    Ok(Descriptor {
        media_type: d["mediaType"].as_str().unwrap_or_default().to_string(),
        digest: digest_at(d, what)?,
        size: d["size"]
            .as_u64()
            .ok_or_else(|| malformed(what, "a descriptor without a size"))?,
        annotations: BTreeMap::new(),
        platform: None,
    })
}

/// The referrers of `subject` in `repo`: the API's index when there is one, else the referrers
/// tag's; an empty list when neither.
pub async fn remote(
    repo: &crate::registry::Client,
    subject: &Digest,
) -> Result<Vec<Value>, ArtifactError> {
    use crate::registry::Target;
    let index = match repo.referrers(subject).await? {
        Some(b) => Some(b),
        None => {
            let tag = super::fallback_tag(subject);
            repo.get_manifest(Target::Tag(&tag)).await?.map(|m| m.bytes)
        }
    };
    let Some(index) = index else {
        return Ok(Vec::new());
    };
    let v = parse(&format!("referrers of {subject}"), &index)?;
    Ok(v["manifests"].as_array().cloned().unwrap_or_default())
}
