//! The JSON of an image: config, manifest, index and the layout's `index.json`, built on
//! `oci-spec`'s types and serialised as canonical JSON (RFC 8785: sorted keys, no whitespace), so
//! that `oci-spec`'s hash maps cannot reorder a digest.

use std::collections::{BTreeMap, HashMap};

use canon_json::CanonJsonSerialize;
use oci_spec::image::{
    Arch, ConfigBuilder, Descriptor, HistoryBuilder, ImageConfigurationBuilder, ImageIndexBuilder,
    ImageManifestBuilder, MediaType, Os, PlatformBuilder, RootFsBuilder,
};

use crate::digest::Digest;
use crate::oci::annotation;
use crate::platform::Platform;
use crate::spec::RunConfig;

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("building {what}: {message}")]
    Spec { what: &'static str, message: String },
    #[error("SOURCE_DATE_EPOCH={0} is not a valid Unix time")]
    Time(i64),
}

fn spec_err(what: &'static str) -> impl Fn(oci_spec::OciSpecError) -> ImageError {
    move |e| ImageError::Spec {
        what,
        message: e.to_string(),
    }
}

/// Canonical JSON bytes of any serialisable value.
pub fn canonical<T: serde::Serialize>(value: &T) -> Vec<u8> {
    value
        .to_canon_json_vec()
        .expect("in-memory JSON serialisation cannot fail")
}

/// RFC 3339 time of a Unix timestamp: `1970-01-01T00:00:00Z`.
pub fn rfc3339(epoch: i64) -> Result<String, ImageError> {
    let t =
        time::OffsetDateTime::from_unix_timestamp(epoch).map_err(|_| ImageError::Time(epoch))?;
    t.format(&time::format_description::well_known::Rfc3339)
        .map_err(|_| ImageError::Time(epoch))
}

/// A blob's descriptor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobRef {
    pub media_type: MediaType,
    pub digest: Digest,
    pub size: u64,
}

impl BlobRef {
    fn descriptor(&self) -> Descriptor {
        Descriptor::new(self.media_type.clone(), self.size, &self.digest)
    }
}

fn oci_platform(p: &Platform) -> Result<oci_spec::image::Platform, ImageError> {
    let mut b = PlatformBuilder::default()
        .os(Os::from(p.os))
        .architecture(Arch::from(p.architecture));
    if let Some(v) = p.variant {
        b = b.variant(v.to_string());
    }
    b.build().map_err(spec_err("platform"))
}

/// One layer as the config records it: its diff id, and its history entry's comment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerHistory {
    pub diff_id: Digest,
    pub comment: String,
}

/// The image config of one platform; `layers` bottom first (the binary's last).
pub fn config(
    platform: &Platform,
    run: &RunConfig,
    entrypoint: Vec<String>,
    labels: &BTreeMap<String, String>,
    created: &str,
    layers: &[LayerHistory],
) -> Result<Vec<u8>, ImageError> {
    let mut c = ConfigBuilder::default()
        .entrypoint(entrypoint)
        .labels(labels.clone().into_iter().collect::<HashMap<_, _>>());
    if let Some(cmd) = &run.cmd {
        c = c.cmd(cmd.clone());
    }
    if !run.env.is_empty() {
        c = c.env(
            run.env
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>(),
        );
    }
    if let Some(u) = &run.user {
        c = c.user(u.clone());
    }
    if let Some(w) = &run.workdir {
        c = c.working_dir(w.clone());
    }
    if !run.exposed_ports.is_empty() {
        c = c.exposed_ports(
            run.exposed_ports
                .iter()
                .map(|p| port_key(p))
                .collect::<Vec<_>>(),
        );
    }
    if let Some(s) = &run.stop_signal {
        c = c.stop_signal(s.clone());
    }
    let mut b = ImageConfigurationBuilder::default()
        .created(created.to_string())
        .os(Os::from(platform.os))
        .architecture(Arch::from(platform.architecture))
        .config(c.build().map_err(spec_err("config"))?)
        .rootfs(
            RootFsBuilder::default()
                .typ("layers")
                .diff_ids(
                    layers
                        .iter()
                        .map(|l| l.diff_id.to_string())
                        .collect::<Vec<_>>(),
                )
                .build()
                .map_err(spec_err("rootfs"))?,
        )
        .history(
            layers
                .iter()
                .map(|l| {
                    HistoryBuilder::default()
                        .created(created.to_string())
                        .created_by(format!("ironstar build {}", env!("CARGO_PKG_VERSION")))
                        .comment(l.comment.clone())
                        .build()
                        .map_err(spec_err("history"))
                })
                .collect::<Result<Vec<_>, _>>()?,
        );
    if let Some(v) = platform.variant {
        b = b.variant(v.to_string());
    }
    Ok(canonical(&b.build().map_err(spec_err("image config"))?))
}

/// `8080` → `8080/tcp`, as the config's `ExposedPorts` keys are written.
fn port_key(p: &str) -> String {
    if p.contains('/') {
        p.to_string()
    } else {
        format!("{p}/tcp")
    }
}

/// The image manifest of one platform: one config, its layers bottom first.
pub fn manifest(
    config: &BlobRef,
    layers: &[BlobRef],
    annotations: &BTreeMap<String, String>,
) -> Result<Vec<u8>, ImageError> {
    let mut b = ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageManifest)
        .config(config.descriptor())
        .layers(layers.iter().map(BlobRef::descriptor).collect::<Vec<_>>());
    if !annotations.is_empty() {
        b = b.annotations(annotations.clone().into_iter().collect::<HashMap<_, _>>());
    }
    Ok(canonical(&b.build().map_err(spec_err("image manifest"))?))
}

/// The image index over the platform manifests, in the order given.
pub fn index(
    manifests: &[(&Platform, BlobRef)],
    annotations: &BTreeMap<String, String>,
) -> Result<Vec<u8>, ImageError> {
    let descriptors = manifests
        .iter()
        .map(|(p, m)| {
            let mut d = m.descriptor();
            d.set_platform(Some(oci_platform(p)?));
            Ok(d)
        })
        .collect::<Result<Vec<_>, ImageError>>()?;
    let mut b = ImageIndexBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageIndex)
        .manifests(descriptors);
    if !annotations.is_empty() {
        b = b.annotations(annotations.clone().into_iter().collect::<HashMap<_, _>>());
    }
    Ok(canonical(&b.build().map_err(spec_err("image index"))?))
}

/// The layout's `index.json`: one descriptor of the image index per tag.
pub fn layout_index(index: &BlobRef, tags: &[String]) -> Result<Vec<u8>, ImageError> {
    let descriptors = tags
        .iter()
        .map(|t| {
            let mut d = index.descriptor();
            d.set_annotations(Some(HashMap::from([(
                annotation::REF_NAME.to_string(),
                t.clone(),
            )])));
            d
        })
        .collect::<Vec<_>>();
    let b = ImageIndexBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageIndex)
        .manifests(descriptors);
    Ok(canonical(&b.build().map_err(spec_err("index.json"))?))
}

/// `index.json` (as [`layout_index`] made it) with `annotations` at its top level: what the
/// layout says of itself (the repository its definition names), never part of a digest.
pub fn annotate_layout_index(index_json: &[u8], annotations: &BTreeMap<String, String>) -> Vec<u8> {
    if annotations.is_empty() {
        return index_json.to_vec();
    }
    let mut v: serde_json::Value =
        serde_json::from_slice(index_json).expect("index.json built in memory");
    v["annotations"] = serde_json::json!(annotations);
    canonical(&v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_json_is_sorted_and_stable() {
        let labels: BTreeMap<String, String> = (0..20)
            .map(|i| (format!("k{i}"), format!("v{i}")))
            .collect();
        let p = Platform::parse("linux/arm/v7").unwrap();
        let d = [LayerHistory {
            diff_id: Digest::of(b"x"),
            comment: "c".into(),
        }];
        let run = RunConfig {
            exposed_ports: vec!["8080".into(), "53/udp".into()],
            ..Default::default()
        };
        let first = config(
            p,
            &run,
            vec!["/app".into()],
            &labels,
            "1970-01-01T00:00:00Z",
            &d,
        )
        .unwrap();
        for _ in 0..10 {
            assert_eq!(
                config(
                    p,
                    &run,
                    vec!["/app".into()],
                    &labels,
                    "1970-01-01T00:00:00Z",
                    &d
                )
                .unwrap(),
                first
            );
        }
        let text = String::from_utf8(first).unwrap();
        assert!(!text.contains(": ") && !text.contains('\n'), "{text}");
        assert!(text.contains(r#""variant":"v7""#), "{text}");
        assert!(
            text.contains(r#""ExposedPorts":{"53/udp":{},"8080/tcp":{}}"#),
            "{text}"
        );
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(canonical(&v), text.as_bytes());
    }

    #[test]
    fn times() {
        assert_eq!(rfc3339(0).unwrap(), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000).unwrap(), "2023-11-14T22:13:20Z");
    }
}
