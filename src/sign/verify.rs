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

/// Verify a layout's image (`tag`: which, when it holds several), within the same bounds as a
/// pushed one.
pub fn layout(
    dir: &std::path::Path,
    tag: Option<&str>,
    key: &PublicKey,
) -> Result<Vec<Verified>, SignError> {
    let layout = Layout::open(dir)?;
    let image = layout.resolve(tag)?;
    let mut verified = Vec::new();
    'subjects: for (digest, platform) in push::subjects(&image) {
        let subject = describe_subject(&digest, platform.as_deref());
        let mut reasons = Reasons::default();
        if let Some((what, bytes)) = super::layout::signature_manifest(&layout, &digest)? {
            let manifest = SignatureManifest::parse(&what, &bytes)?;
            let mut budget = Budget::default();
            for p in manifest.payloads(&what) {
                let d = match budget.admit(&what, &p, &mut reasons)? {
                    Admit::Read(d) => d,
                    Admit::Skip => continue,
                    Admit::Stop => break,
                };
                let bytes = super::layout::payload(&layout, p.digest, p.size, &what)?;
                budget.read += bytes.len() as u64;
                if let Some(identity) = p.verdict(&digest, None, key, (&bytes, &d), &mut reasons) {
                    verified.push(Verified {
                        digest,
                        platform,
                        identity,
                    });
                    continue 'subjects;
                }
            }
        }
        return Err(reasons.error(&subject));
    }
    Ok(verified)
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

/// One payload blob of a signature manifest and every signature over it, each once.
struct Payload<'a> {
    digest: &'a str,
    size: u64,
    signatures: Vec<Option<&'a str>>,
}

impl SignatureManifest {
    fn parse(what: &str, bytes: &[u8]) -> Result<Self, SignError> {
        serde_json::from_slice(bytes).map_err(|e| SignError::Malformed {
            what: what.to_string(),
            problem: e.to_string(),
        })
    }

    /// Its simple-signing payloads, each once, in the order of their first layer.
    fn payloads(&self, what: &str) -> Vec<Payload<'_>> {
        if self.layers.total > MAX_LAYERS {
            tracing::warn!(
                "{what}: {} layers; checking the first {MAX_LAYERS} only",
                self.layers.total
            );
        }
        let mut out: Vec<Payload<'_>> = Vec::new();
        let mut at: BTreeMap<&str, usize> = BTreeMap::new();
        for l in self
            .layers
            .kept
            .iter()
            .filter(|l| l.media_type == SIMPLESIGNING)
        {
            let i = *at.entry(&l.digest).or_insert_with(|| {
                out.push(Payload {
                    digest: &l.digest,
                    size: l.size,
                    signatures: Vec::new(),
                });
                out.len() - 1
            });
            let sig = l.annotations.signature.as_deref();
            if !out[i].signatures.contains(&sig) {
                out[i].signatures.push(sig);
            }
        }
        out
    }
}

impl Payload<'_> {
    /// The identity of the first of its signatures that verifies for `digest`; why the others
    /// did not go into `reasons`.
    fn verdict(
        &self,
        digest: &Digest,
        repository: Option<&Repository>,
        key: &PublicKey,
        bytes: (&[u8], &Digest),
        reasons: &mut Reasons,
    ) -> Option<String> {
        for sig in &self.signatures {
            match check(digest, repository, key, bytes, *sig) {
                Ok(identity) => return Some(identity),
                Err(why) => reasons.push(why),
            }
        }
        None
    }
}

/// The payload bytes read for one digest so far.
#[derive(Default)]
struct Budget {
    read: u64,
}

/// What to do with the next payload.
enum Admit {
    Read(Digest),
    /// Oversized: skipped, with a warning.
    Skip,
    /// The budget is spent: no more payloads.
    Stop,
}

impl Budget {
    fn admit(
        &self,
        what: &str,
        p: &Payload<'_>,
        reasons: &mut Reasons,
    ) -> Result<Admit, SignError> {
        let d = Digest::parse(p.digest).map_err(|e| SignError::Malformed {
            what: what.to_string(),
            problem: e.to_string(),
        })?;
        if p.size > MAX_PAYLOAD {
            tracing::warn!(
                "{what}: skipping the signature layer {d}: {}, more than the {} a payload may be",
                crate::human_bytes(p.size),
                crate::human_bytes(MAX_PAYLOAD)
            );
            reasons.push("an oversized layer (skipped)".into());
            return Ok(Admit::Skip);
        }
        if self.read + p.size > MAX_PAYLOADS {
            tracing::warn!(
                "{what}: stopping after {} of payloads, the most read for one digest",
                crate::human_bytes(self.read)
            );
            return Ok(Admit::Stop);
        }
        Ok(Admit::Read(d))
    }
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
    let manifest = SignatureManifest::parse(&what, &m.bytes)?;
    let (mut reasons, mut budget) = (Reasons::default(), Budget::default());
    for p in manifest.payloads(&what) {
        let d = match budget.admit(&what, &p, &mut reasons)? {
            Admit::Read(d) => d,
            Admit::Skip => continue,
            Admit::Stop => break,
        };
        // The registry's bytes are checked against the layer's digest on the way.
        let bytes = match client.get_blob(&d, MAX_PAYLOAD as usize).await {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!("{what}: skipping the signature layer {d}: {e}");
                reasons.push(format!("a layer that could not be read ({d})"));
                continue;
            }
        };
        budget.read += p.size.max(bytes.len() as u64);
        let repository = Some(&client.repository);
        if let Some(identity) = p.verdict(&digest, repository, key, (&bytes, &d), &mut reasons) {
            return Ok(Verified {
                digest,
                platform,
                identity,
            });
        }
    }
    Err(reasons.error(&subject))
}
