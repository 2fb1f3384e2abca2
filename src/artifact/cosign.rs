//! The manifests cosign stores under `sha256-<hex>.sig` (signatures) and `sha256-<hex>.att`
//! (attestations): what go-containerregistry makes of `empty.Image` with OCI media types and one
//! appended layer an entry. The manifest: `schemaVersion`, `mediaType`, `config`, `layers` (Go's
//! field order, compact); each layer the payload blob (a simple-signing payload for `.sig`, a DSSE
//! envelope for `.att`) with its annotations. The config: an image config whose
//! `rootfs.diff_ids` are the layers' digests (a payload is its own uncompressed form) and one
//! empty history entry a layer, dates Go's zero time (cosign records no creation time unless
//! asked).
//!
//! A tag that holds other entries keeps them: ours are appended unless an identical one (same
//! payload, same signature) is there, and nothing is written when all are. The config is rebuilt
//! from the layers (the registry's copy is never fetched: cosign's verification does not read it,
//! and it saves a round trip).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{malformed, ArtifactError, Layer};
use crate::digest::Digest;
use crate::oci::media_type;

pub const CONFIG_MEDIA_TYPE: &str = "application/vnd.oci.image.config.v1+json";
const GO_ZERO_TIME: &str = "0001-01-01T00:00:00Z";
/// The layer annotation holding the base64 DER signature (empty on an attestation: its
/// signature is inside the envelope).
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    pub config: Descriptor,
    #[serde(default)]
    pub layers: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    /// Whatever else another tool put there, kept.
    #[serde(flatten)]
    pub rest: serde_json::Map<String, serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub size: u64,
    pub digest: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    #[serde(flatten)]
    pub rest: serde_json::Map<String, serde_json::Value>,
}

impl Descriptor {
    fn of_layer(layer: &Layer) -> Self {
        Descriptor {
            media_type: layer.media_type.clone(),
            size: layer.payload.len() as u64,
            digest: layer.digest().to_string(),
            annotations: Some(layer.annotations.clone()),
            rest: Default::default(),
        }
    }

    pub fn signature(&self) -> Option<&str> {
        self.annotations
            .as_ref()?
            .get(SIGNATURE_ANNOTATION)
            .map(String::as_str)
    }

    /// The same signature as `layer`: the same payload and the same signature.
    fn holds(&self, layer: &Layer) -> bool {
        self.digest == layer.digest().to_string() && self.signature() == layer.signature()
    }
}

/// A signature manifest to store: its bytes and media type, its config, and which layers of ours
/// it adds (their payloads must be uploaded with the config).
#[derive(Debug, Clone)]
pub struct Written {
    pub manifest: Vec<u8>,
    pub digest: Digest,
    pub media_type: String,
    pub config: Vec<u8>,
    pub added: Vec<Layer>,
}

/// Parse a signature (or attestation) manifest.
pub fn parse(what: &str, bytes: &[u8]) -> Result<Manifest, ArtifactError> {
    serde_json::from_slice(bytes)
        .map_err(|e| malformed(what, format!("not a signature manifest: {e}")))
}

/// The manifest holding `existing`'s layers (if any) and each of `ours` not among them; `None`
/// when every one of ours is there already.
pub fn merge(existing: Option<Manifest>, ours: &[Layer]) -> Result<Option<Written>, ArtifactError> {
    let mut m = existing.unwrap_or_else(|| Manifest {
        schema_version: 2,
        media_type: Some(media_type::MANIFEST.to_string()),
        config: Descriptor {
            media_type: CONFIG_MEDIA_TYPE.to_string(),
            size: 0,
            digest: String::new(),
            annotations: None,
            rest: Default::default(),
        },
        layers: Vec::new(),
        annotations: None,
        rest: Default::default(),
    });
    let mut added = Vec::new();
    for layer in ours {
        if !m.layers.iter().any(|d| d.holds(layer)) && !added.contains(layer) {
            m.layers.push(Descriptor::of_layer(layer));
            added.push(layer.clone());
        }
    }
    if added.is_empty() {
        return Ok(None);
    }
    let config = config(&m.layers);
    m.config.size = config.len() as u64;
    m.config.digest = Digest::of(&config).to_string();
    let manifest = serde_json::to_vec(&m).expect("a manifest serialises");
    Ok(Some(Written {
        digest: Digest::of(&manifest),
        media_type: m
            .media_type
            .clone()
            .unwrap_or_else(|| media_type::MANIFEST.to_string()),
        manifest,
        config,
        added,
    }))
}

/// The image config of a signature manifest with `layers`, in go-containerregistry's bytes.
fn config(layers: &[Descriptor]) -> Vec<u8> {
    let diff_ids: Vec<&str> = layers.iter().map(|d| d.digest.as_str()).collect();
    let history: Vec<String> = layers
        .iter()
        .map(|_| format!(r#"{{"created":"{GO_ZERO_TIME}"}}"#))
        .collect();
    format!(
        r#"{{"architecture":"","created":"{GO_ZERO_TIME}","history":[{}],"os":"","rootfs":{{"type":"layers","diff_ids":{}}},"config":{{}}}}"#,
        history.join(","),
        serde_json::to_string(&diff_ids).expect("strings serialise")
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIMPLESIGNING: &str = "application/vnd.dev.cosign.simplesigning.v1+json";

    fn layer(n: u8) -> Layer {
        Layer {
            media_type: SIMPLESIGNING.to_string(),
            payload: vec![b'{', n, b'}'],
            annotations: BTreeMap::from([(SIGNATURE_ANNOTATION.to_string(), format!("sig{n}"))]),
        }
    }

    #[test]
    fn a_fresh_manifest_has_cosigns_shape() {
        let w = merge(None, &[layer(1)]).unwrap().unwrap();
        let v: serde_json::Value = serde_json::from_slice(&w.manifest).unwrap();
        assert_eq!(v["mediaType"], media_type::MANIFEST);
        assert_eq!(v["config"]["mediaType"], CONFIG_MEDIA_TYPE);
        assert_eq!(v["layers"][0]["mediaType"], SIMPLESIGNING);
        assert_eq!(v["layers"][0]["annotations"][SIGNATURE_ANNOTATION], "sig1");
        let text = String::from_utf8(w.manifest.clone()).unwrap();
        assert!(
            text.starts_with(r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType""#),
            "{text}"
        );
        let c: serde_json::Value = serde_json::from_slice(&w.config).unwrap();
        assert_eq!(c["rootfs"]["diff_ids"][0], layer(1).digest().to_string());
        assert_eq!(v["config"]["digest"], Digest::of(&w.config).to_string());
        // One signature's config is 233 bytes, as in cosign's own manifests.
        assert_eq!(w.config.len(), 233);
    }

    #[test]
    fn other_signatures_are_kept_and_a_repeat_writes_nothing() {
        let first = merge(None, &[layer(1)]).unwrap().unwrap();
        let parsed = parse("m", &first.manifest).unwrap();
        assert!(merge(Some(parsed.clone()), &[layer(1)]).unwrap().is_none());
        let both = merge(Some(parsed), &[layer(2), layer(1)]).unwrap().unwrap();
        assert_eq!(both.added, vec![layer(2)]);
        let v: serde_json::Value = serde_json::from_slice(&both.manifest).unwrap();
        assert_eq!(v["layers"].as_array().unwrap().len(), 2);
        assert_eq!(v["layers"][0]["annotations"][SIGNATURE_ANNOTATION], "sig1");
        // Deterministic: the same inputs, the same bytes.
        let again = merge(None, &[layer(1)]).unwrap().unwrap();
        assert_eq!(again.manifest, first.manifest);
    }

    #[test]
    fn a_foreign_manifest_keeps_its_media_type_and_fields() {
        let foreign = br#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","config":{"mediaType":"application/vnd.docker.container.image.v1+json","size":1,"digest":"sha256:00"},"layers":[{"mediaType":"application/vnd.dev.cosign.simplesigning.v1+json","size":3,"digest":"sha256:11","annotations":{"dev.cosignproject.cosign/signature":"x"},"urls":["u"]}],"x-extra":true}"#;
        let m = parse("m", foreign).unwrap();
        let w = merge(Some(m), &[layer(3)]).unwrap().unwrap();
        assert_eq!(w.media_type, media_type::DOCKER_MANIFEST);
        let v: serde_json::Value = serde_json::from_slice(&w.manifest).unwrap();
        assert_eq!(v["x-extra"], true);
        assert_eq!(v["layers"][0]["urls"][0], "u");
        assert_eq!(
            v["config"]["mediaType"],
            "application/vnd.docker.container.image.v1+json"
        );
    }
}
