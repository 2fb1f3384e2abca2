//! The provenance attestation of an image: its statement ([`super::provenance`]) in a DSSE
//! envelope signed with the build's key, kept both ways cosign reads attestations:
//! - cosign < 3: a layer of the manifest under `sha256-<hex of the index>.att`
//!   (`application/vnd.dsse.envelope.v1+json`, the `predicateType` annotation, an empty
//!   signature annotation: the signature is inside the envelope);
//! - cosign 3 and GitHub: a Sigstore bundle ([`super::bundle`]) as a referrer of the index
//!   (`dev.sigstore.bundle.content: dsse-envelope`, `dev.sigstore.bundle.predicateType`).
//!
//! Made at build time into the layout, pushed from there; checked by `ironstar verify`.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::dsse::{Envelope, IN_TOTO, MAX_ENVELOPE};
use super::provenance::PREDICATE_TYPE;
use super::referrer::{self, Document};
use super::{
    bundle, cosign, malformed, ArtifactError, CosignTag, Layer, BUNDLE, BUNDLE_CONTENT_ANNOTATION,
    BUNDLE_PREDICATE_ANNOTATION, DSSE_ENVELOPE, PREDICATE_TYPE_ANNOTATION,
};
use crate::digest::Digest;
use crate::image::BlobRef;
use crate::layout::{Layout, LayoutWriter, ResolvedImage};
use crate::oci::{annotation, Tag};
use crate::sign::{SignError, Signer};

/// The envelope's `.att` layer.
pub fn att_layer(envelope: &Envelope) -> Layer {
    Layer {
        media_type: DSSE_ENVELOPE.to_string(),
        payload: envelope.to_bytes(),
        annotations: BTreeMap::from([
            (cosign::SIGNATURE_ANNOTATION.to_string(), String::new()),
            (
                PREDICATE_TYPE_ANNOTATION.to_string(),
                PREDICATE_TYPE.to_string(),
            ),
        ]),
    }
}

/// Sign `statement` and write both forms into the layout under construction, about `index`;
/// the `index.json` entries (the `.att` manifest, tagged; the bundle referrer).
pub fn write(
    writer: &LayoutWriter,
    signer: &dyn Signer,
    statement: &[u8],
    index: &BlobRef,
    created: &str,
) -> Result<Vec<Value>, SignError> {
    let envelope = Envelope::sign(signer, IN_TOTO, statement)?;
    let layer = att_layer(&envelope);
    let w = cosign::merge(None, std::slice::from_ref(&layer))?
        .expect("a fresh manifest adds its layer");
    writer.put_blob(&layer.payload)?;
    writer.put_blob(&w.config)?;
    writer.put_blob(&w.manifest)?;
    let att = json!({
        "mediaType": w.media_type,
        "digest": w.digest.to_string(),
        "size": w.manifest.len(),
        "annotations": { annotation::REF_NAME: CosignTag::Att.of(&index.digest).to_string() },
    });
    let hint = signer
        .public_key_der()
        .map(|der| bundle::key_hint(&der))
        .unwrap_or_default();
    let bytes = bundle::dsse(&envelope, &hint);
    let doc = Document {
        media_type: BUNDLE,
        bytes: &bytes,
        title: None,
    };
    let annotations = BTreeMap::from([
        (
            BUNDLE_CONTENT_ANNOTATION.to_string(),
            "dsse-envelope".to_string(),
        ),
        (
            BUNDLE_PREDICATE_ANNOTATION.to_string(),
            PREDICATE_TYPE.to_string(),
        ),
        (annotation::CREATED.to_string(), created.to_string()),
    ]);
    let r = referrer::write(writer, BUNDLE, &doc, index, annotations)?;
    Ok(vec![att, r.descriptor_json()])
}

/// The `.att` layers the layout keeps for `image`'s index, for [`super::push`].
pub fn cosign_entries(
    layout: &Layout,
    image: &ResolvedImage,
) -> Result<Vec<(Tag, Vec<Layer>, String)>, ArtifactError> {
    let digest = &image.top.descriptor.digest;
    let layers = layout_layers(layout, digest)?;
    Ok(match layers.is_empty() {
        true => Vec::new(),
        false => vec![(
            CosignTag::Att.of(digest),
            layers,
            format!("{digest} (index)"),
        )],
    })
}

/// The DSSE layers of the layout's `.att` manifest for `digest` (none without one).
pub fn layout_layers(layout: &Layout, digest: &Digest) -> Result<Vec<Layer>, ArtifactError> {
    let path = layout.root().join("index.json");
    let what = path.display().to_string();
    let index = referrer::parse(&what, &crate::layout::read_in_layout(&path)?)?;
    let tag = CosignTag::Att.of(digest).to_string();
    let Some(entry) = index["manifests"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|e| e["annotations"][annotation::REF_NAME].as_str() == Some(tag.as_str()))
    else {
        return Ok(Vec::new());
    };
    let what = format!("{what}: {tag}");
    let m = layout.read_manifest(&referrer::layout_descriptor(entry, &what)?)?;
    let manifest = cosign::parse(&what, &m.bytes)?;
    let mut layers = Vec::new();
    for l in manifest
        .layers
        .iter()
        .filter(|l| l.media_type == DSSE_ENVELOPE)
    {
        let d = json!({"mediaType": DSSE_ENVELOPE, "digest": l.digest, "size": l.size});
        let d = referrer::layout_descriptor(&d, &what)?;
        if d.size > MAX_ENVELOPE as u64 {
            return Err(malformed(&what, "an envelope larger than 1 MiB; refused"));
        }
        layers.push(Layer {
            media_type: DSSE_ENVELOPE.to_string(),
            payload: layout.read_manifest(&d)?.bytes,
            annotations: l.annotations.clone().unwrap_or_default(),
        });
    }
    Ok(layers)
}

/// The statement an envelope carries, checked: its type in-toto, its signature good with `key`
/// (before anything of the payload is read), the payload an in-toto Statement v1 with the SLSA
/// v1 predicate whose subject names `digest`.
pub fn check(
    what: &str,
    envelope: &Envelope,
    key: &crate::sign::PublicKey,
    digest: &Digest,
) -> Result<Value, ArtifactError> {
    let other = "a statement about another image";
    super::dsse::statement_about(what, envelope, key, digest, PREDICATE_TYPE, other)
}

/// A payload read as an in-toto Statement v1 of SLSA provenance v1.
pub fn statement_of(what: &str, body: &[u8]) -> Result<Value, ArtifactError> {
    super::dsse::statement_of(what, body, PREDICATE_TYPE)
}
