//! `ironstar verify`: the index and every platform manifest of a pushed image (or of a layout)
//! must carry a signature that the public key verifies, over a payload that names that digest
//! (and, for a pushed image, its repository). As `cosign verify` checks, one good signature a
//! digest suffices; others (another key's, an oversized layer) are skipped, the oversized with a
//! warning. The signature is checked before the payload is read.
//!
//! A registry's signature manifest is bounded however it is made: its first [`MAX_LAYERS`]
//! layers are read, each payload blob once (however many layers name it) and one at a time, at
//! most [`MAX_PAYLOAD`] each and [`MAX_PAYLOADS`] for a digest in all.

use std::collections::BTreeMap;

use base64::Engine as _;
use futures_util::future::try_join_all;
use serde::Deserialize;

use super::{describe_subject, payload, push, signature_tag, PublicKey, SignError, SIMPLESIGNING};
use crate::digest::Digest;
use crate::layout::Layout;
use crate::oci::{platform_name, Reference, Repository};
use crate::registry::{Client, Target};
use crate::untrusted::Capped;

/// The payload blob read at most: cosign's payloads are a few hundred bytes.
const MAX_PAYLOAD: u64 = 1 << 20;
/// The layers of one signature manifest read at most: one a signing, and nobody signs one image
/// a thousand times.
pub const MAX_LAYERS: usize = 1000;
/// The payload bytes read for one digest at most.
const MAX_PAYLOADS: u64 = 64 << 20;
/// The reasons a failed verification names, at most.
const MAX_REASONS: usize = 4;

/// One verified digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub digest: Digest,
    pub platform: Option<String>,
    /// The repository the signature names.
    pub identity: String,
}

/// Why no signature verified yet, for the one error line.
#[derive(Default)]
struct Reasons {
    checked: usize,
    first: Vec<String>,
}

impl Reasons {
    fn push(&mut self, why: String) {
        self.checked += 1;
        if self.first.len() < MAX_REASONS && !self.first.contains(&why) {
            self.first.push(why);
        }
    }

    fn error(self, subject: &str) -> SignError {
        SignError::Verify(match self.checked {
            0 => format!("{subject}: no signature"),
            n => format!(
                "{subject}: no signature verifies with the key ({n} checked: {}{})",
                self.first.join("; "),
                match n > self.first.len() {
                    true => "; …",
                    false => "",
                }
            ),
        })
    }
}

/// Whether the base64 `sig` over `bytes` (whose digest is `bytes_digest`) verifies with `key`
/// and its payload signs `digest` (for `repository`, if given): the identity it names, or why
/// not.
fn check(
    digest: &Digest,
    repository: Option<&Repository>,
    key: &PublicKey,
    (bytes, bytes_digest): (&[u8], &Digest),
    sig: Option<&str>,
) -> Result<String, String> {
    let Some(der) = sig.and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok())
    else {
        return Err("a layer without a base64 signature".to_string());
    };
    if !key.verifies_digest(bytes_digest, &der) {
        return Err("a signature the key does not verify".to_string());
    }
    let claims = payload::parse("payload", bytes).map_err(|e| e.to_string())?;
    if claims.digest != *digest {
        return Err(format!("a payload signing {}", claims.digest));
    }
    if let Some(r) = repository {
        if !push::names(&claims.identity, r) {
            return Err(format!("a payload naming `{}`, not `{r}`", claims.identity));
        }
    }
    Ok(claims.identity)
}

/// Verify a layout's image (`tag`: which, when it holds several).
pub fn layout(
    dir: &std::path::Path,
    tag: Option<&str>,
    key: &PublicKey,
) -> Result<Vec<Verified>, SignError> {
    let layout = Layout::open(dir)?;
    let image = layout.resolve(tag)?;
    let stored = super::layout::read(&layout, &push::subjects(&image))?;
    stored
        .subjects
        .into_iter()
        .map(|(digest, platform, layers)| {
            let subject = describe_subject(&digest, platform.as_deref());
            let mut reasons = Reasons::default();
            for l in &layers {
                let payload = (l.payload.as_slice(), &Digest::of(&l.payload));
                match check(&digest, None, key, payload, l.signature()) {
                    Ok(identity) => {
                        return Ok(Verified {
                            digest,
                            platform,
                            identity,
                        })
                    }
                    Err(why) => reasons.push(why),
                }
            }
            Err(reasons.error(&subject))
        })
        .collect()
}

/// Verify a pushed image: its index (or manifest) by tag or digest, and each platform manifest.
pub async fn registry(
    reference: &Reference,
    plain_http: bool,
    key: &PublicKey,
) -> Result<Vec<Verified>, SignError> {
    let client = Client::reader(&reference.repository, plain_http)?;
    let wanted = Target::of(reference);
    let top = client
        .get_manifest(wanted)
        .await?
        .ok_or_else(|| SignError::Verify(format!("{reference}: no such image")))?;
    let v: serde_json::Value =
        serde_json::from_slice(&top.bytes).map_err(|e| SignError::Malformed {
            what: reference.to_string(),
            problem: e.to_string(),
        })?;
    let mut subjects = vec![(top.digest.clone(), None)];
    for d in v["manifests"].as_array().into_iter().flatten() {
        let digest = Digest::parse(d["digest"].as_str().unwrap_or_default()).map_err(|e| {
            SignError::Malformed {
                what: format!("{reference}: the index"),
                problem: e.to_string(),
            }
        })?;
        let platform =
            platform_name(&d["platform"]).unwrap_or_else(|| "unknown platform".to_string());
        subjects.push((digest, Some(platform)));
    }
    let client = &client;
    try_join_all(
        subjects
            .into_iter()
            .map(|(digest, platform)| verify_pushed(client, key, digest, platform)),
    )
    .await
}

/// The layers of a signature manifest, as verify reads them: the first [`MAX_LAYERS`].
#[derive(Deserialize)]
struct SignatureManifest {
    #[serde(default)]
    layers: Capped<SignatureLayerRef, MAX_LAYERS>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SignatureLayerRef {
    #[serde(default)]
    media_type: String,
    #[serde(default)]
    digest: String,
    #[serde(default)]
    size: u64,
    #[serde(default)]
    annotations: Annotations,
}

/// Of a layer's annotations, only the signature ([`super::SIGNATURE_ANNOTATION`]) is kept.
#[derive(Deserialize, Default)]
struct Annotations {
    #[serde(rename = "dev.cosignproject.cosign/signature")]
    signature: Option<String>,
}

/// One pushed digest's signatures, read within the bounds above until one verifies.
async fn verify_pushed(
    client: &Client,
    key: &PublicKey,
    digest: Digest,
    platform: Option<String>,
) -> Result<Verified, SignError> {
    let subject = describe_subject(&digest, platform.as_deref());
    let tag = signature_tag(&digest);
    let Some(m) = client.get_manifest(Target::Tag(&tag)).await? else {
        return Err(SignError::Verify(format!(
            "{subject}: no signature (no tag {tag})"
        )));
    };
    let what = format!("{}:{tag}", client.repository);
    let manifest: SignatureManifest =
        serde_json::from_slice(&m.bytes).map_err(|e| SignError::Malformed {
            what: what.clone(),
            problem: e.to_string(),
        })?;
    let layers = manifest.layers;
    if layers.total > MAX_LAYERS {
        tracing::warn!(
            "{what}: {} layers; checking the first {MAX_LAYERS} only",
            layers.total
        );
    }
    // Each payload once, with every signature over it (each once too).
    let mut blobs: BTreeMap<&str, (usize, u64, Vec<Option<&str>>)> = BTreeMap::new();
    for (i, l) in layers.kept.iter().enumerate() {
        if l.media_type != SIMPLESIGNING {
            continue;
        }
        let entry = blobs.entry(&l.digest).or_insert((i, l.size, Vec::new()));
        let sig = l.annotations.signature.as_deref();
        if !entry.2.contains(&sig) {
            entry.2.push(sig);
        }
    }
    let mut blobs: Vec<_> = blobs.into_iter().collect();
    blobs.sort_by_key(|(_, (first, _, _))| *first);
    let (mut reasons, mut read) = (Reasons::default(), 0u64);
    for (d, (_, size, sigs)) in blobs {
        let d = Digest::parse(d).map_err(|e| SignError::Malformed {
            what: what.clone(),
            problem: e.to_string(),
        })?;
        if size > MAX_PAYLOAD {
            tracing::warn!(
                "{what}: skipping the signature layer {d}: {}, more than the {} a payload may be",
                crate::human_bytes(size),
                crate::human_bytes(MAX_PAYLOAD)
            );
            reasons.push("an oversized layer (skipped)".into());
            continue;
        }
        if read + size > MAX_PAYLOADS {
            tracing::warn!(
                "{what}: stopping after {} of payloads, the most read for one digest",
                crate::human_bytes(read)
            );
            break;
        }
        // The registry's bytes are checked against the layer's digest on the way.
        let bytes = match client.get_blob(&d, MAX_PAYLOAD as usize).await {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!("{what}: skipping the signature layer {d}: {e}");
                reasons.push(format!("a layer that could not be read ({d})"));
                continue;
            }
        };
        read += size.max(bytes.len() as u64);
        for sig in sigs {
            match check(&digest, Some(&client.repository), key, (&bytes, &d), sig) {
                Ok(identity) => {
                    return Ok(Verified {
                        digest,
                        platform,
                        identity,
                    })
                }
                Err(why) => reasons.push(why),
            }
        }
    }
    Err(reasons.error(&subject))
}
