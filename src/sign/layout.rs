//! Signatures kept in an OCI layout (`ironstar build --sign-key`), so that a push sends them with
//! no key at hand (one CI step signs, another pushes).
//!
//! Each signature manifest is stored as a registry holds it: the manifest, its config and its
//! payloads as blobs, and an `index.json` entry tagged (`org.opencontainers.image.ref.name`)
//! `sha256-<hex>.sig`, as `skopeo copy docker://…:sha256-<hex>.sig oci:DIR:sha256-<hex>.sig` (or
//! crane, or oras) would lay it out. The image itself is unchanged: skopeo and umoci read
//! `oci:DIR:TAG` as before, and [`crate::layout::Layout::entries`] leaves these entries out.
//!
//! A signature names the repository the image is pulled from, which a build only knows from the
//! image definition's `repository` (or, for `publish`, the push's): a push to another repository
//! re-signs with a key, and without one refuses to send signatures that name another repository.

use std::sync::Arc;

use serde_json::{json, Value};

use super::{
    signature_tag, store, ImageSignatures, SignError, SignatureLayer, Signer, SIMPLESIGNING,
};
use crate::digest::Digest;
use crate::layout::{Descriptor, Layout, LayoutWriter};
use crate::oci::annotation;

/// What a build signs with, and for which repository.
#[derive(Debug, Clone)]
pub struct LayoutSigning {
    pub signer: Arc<dyn Signer>,
    /// The repository the signatures name (`ghcr.io/org/app`).
    pub identity: String,
}

/// Sign `subjects` (the index, then each platform manifest) and write each signature manifest,
/// its config and its payload into the layout under construction; the `index.json` entries.
pub fn write(
    writer: &LayoutWriter,
    signing: &LayoutSigning,
    subjects: &[(Digest, Option<String>)],
) -> Result<Vec<Value>, SignError> {
    let sigs = ImageSignatures::sign(signing.signer.as_ref(), &signing.identity, subjects)?;
    let mut entries = Vec::new();
    for (digest, _, layers) in &sigs.subjects {
        let w = store::merge(None, layers)?.expect("a fresh manifest adds its layers");
        for l in &w.added {
            writer.put_blob(&l.payload)?;
        }
        writer.put_blob(&w.config)?;
        writer.put_blob(&w.manifest)?;
        entries.push(json!({
            "mediaType": w.media_type,
            "digest": w.digest.to_string(),
            "size": w.manifest.len(),
            "annotations": { annotation::REF_NAME: signature_tag(digest).to_string() },
        }));
    }
    Ok(entries)
}

/// The signatures the layout holds for `subjects`, each checked against its digest; a subject
/// without any has no layers.
pub fn read(
    layout: &Layout,
    subjects: &[(Digest, Option<String>)],
) -> Result<ImageSignatures, SignError> {
    let entries = index_entries(layout)?;
    let mut out = ImageSignatures::default();
    for (digest, platform) in subjects {
        let tag = signature_tag(digest).to_string();
        let layers = match entry_for(&entries, &tag) {
            Some(e) => read_manifest(layout, e, &tag)?,
            None => Vec::new(),
        };
        out.subjects
            .push((digest.clone(), platform.clone(), layers));
    }
    Ok(out)
}

/// The signature manifest the layout keeps for `digest` (its `sha256-<hex>.sig` entry), checked
/// against its descriptor, and what to call it; `None` without one.
pub fn signature_manifest(
    layout: &Layout,
    digest: &Digest,
) -> Result<Option<(String, Vec<u8>)>, SignError> {
    let tag = signature_tag(digest).to_string();
    let entries = index_entries(layout)?;
    entry_for(&entries, &tag)
        .map(|e| manifest_bytes(layout, e, &tag))
        .transpose()
}

fn index_entries(layout: &Layout) -> Result<Vec<Value>, SignError> {
    let path = layout.root().join("index.json");
    let bytes = crate::layout::read_in_layout(&path)?;
    let index: Value = serde_json::from_slice(&bytes).map_err(|e| SignError::Malformed {
        what: path.display().to_string(),
        problem: e.to_string(),
    })?;
    Ok(index["manifests"].as_array().cloned().unwrap_or_default())
}

fn entry_for<'a>(entries: &'a [Value], tag: &str) -> Option<&'a Value> {
    entries
        .iter()
        .find(|e| e["annotations"][annotation::REF_NAME].as_str() == Some(tag))
}

/// A payload blob of the layout by digest and size, checked (at most a manifest's size).
pub fn payload(layout: &Layout, digest: &str, size: u64, what: &str) -> Result<Vec<u8>, SignError> {
    let d = descriptor(
        &json!({"digest": digest, "size": size}),
        SIMPLESIGNING,
        what,
    )?;
    Ok(layout.read_manifest(&d)?.bytes)
}

fn descriptor(d: &Value, media_type: &str, what: &str) -> Result<Descriptor, SignError> {
    let bad = |problem: &str| SignError::Malformed {
        what: what.to_string(),
        problem: problem.to_string(),
    };
    Ok(Descriptor {
        media_type: media_type.to_string(),
        digest: Digest::parse(d["digest"].as_str().unwrap_or_default())
            .map_err(|e| bad(&e.to_string()))?,
        size: d["size"]
            .as_u64()
            .ok_or_else(|| bad("a descriptor without a size"))?,
        annotations: Default::default(),
        platform: None,
    })
}

/// The signature manifest `entry` names, read and checked, and what to call it.
fn manifest_bytes(
    layout: &Layout,
    entry: &Value,
    tag: &str,
) -> Result<(String, Vec<u8>), SignError> {
    let what = format!("{}: {tag}", layout.root().display());
    let media_type = entry["mediaType"].as_str().unwrap_or_default();
    let m = layout.read_manifest(&descriptor(entry, media_type, &what)?)?;
    Ok((what, m.bytes))
}

/// The simple-signing layers of the signature manifest `entry` names, payloads read and checked.
fn read_manifest(
    layout: &Layout,
    entry: &Value,
    tag: &str,
) -> Result<Vec<SignatureLayer>, SignError> {
    let (what, bytes) = manifest_bytes(layout, entry, tag)?;
    let manifest = store::parse(&what, &bytes)?;
    let mut layers = Vec::new();
    for l in manifest
        .layers
        .iter()
        .filter(|l| l.media_type == SIMPLESIGNING)
    {
        layers.push(SignatureLayer {
            media_type: SIMPLESIGNING.to_string(),
            payload: payload(layout, &l.digest, l.size, &what)?,
            annotations: l.annotations.clone().unwrap_or_default(),
        });
    }
    Ok(layers)
}
