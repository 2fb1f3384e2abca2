//! `ironstar verify`: the index and every platform manifest of a pushed image (or of a layout)
//! must carry a signature that the public key verifies, over a payload that names that digest
//! (and, for a pushed image, its repository). As `cosign verify` checks, one good signature a
//! digest suffices; others (another key's) are skipped. The signature is checked before the
//! payload is read.

use base64::Engine as _;
use futures_util::future::try_join_all;

use super::{
    describe_subject, payload, push, signature_tag, store, PublicKey, SignError, SIMPLESIGNING,
};
use crate::digest::Digest;
use crate::layout::Layout;
use crate::oci::{platform_name, Reference, Repository};
use crate::registry::{Client, Target};

/// The payload blob read at most: cosign's payloads are a few hundred bytes.
const MAX_PAYLOAD: usize = 1 << 20;

/// One verified digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub digest: Digest,
    pub platform: Option<String>,
    /// The repository the signature names.
    pub identity: String,
}

/// Whether one of `candidates` (payload, base64 signature) verifies for `digest`; its identity.
/// `repository`: the identity the payload must name (`None`: any).
fn check(
    subject: &str,
    digest: &Digest,
    repository: Option<&Repository>,
    key: &PublicKey,
    candidates: &[(Vec<u8>, Option<String>)],
) -> Result<String, String> {
    let mut why = Vec::new();
    for (bytes, sig) in candidates {
        let Some(der) = sig
            .as_deref()
            .and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok())
        else {
            why.push("a layer without a base64 signature".to_string());
            continue;
        };
        if !key.verifies(bytes, &der) {
            why.push("a signature the key does not verify".to_string());
            continue;
        }
        let claims = match payload::parse("payload", bytes) {
            Ok(c) => c,
            Err(e) => {
                why.push(e.to_string());
                continue;
            }
        };
        if claims.digest != *digest {
            why.push(format!("a payload signing {}", claims.digest));
            continue;
        }
        if let Some(r) = repository {
            if !push::names(&claims.identity, r) {
                why.push(format!("a payload naming `{}`, not `{r}`", claims.identity));
                continue;
            }
        }
        return Ok(claims.identity);
    }
    Err(match why.is_empty() {
        true => format!("{subject}: no signature"),
        false => format!(
            "{subject}: no signature verifies with the key ({} checked: {})",
            why.len(),
            why.join("; ")
        ),
    })
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
            let candidates: Vec<_> = layers
                .into_iter()
                .map(|l| {
                    let sig = l.signature().map(str::to_string);
                    (l.payload, sig)
                })
                .collect();
            let identity =
                check(&subject, &digest, None, key, &candidates).map_err(SignError::Verify)?;
            Ok(Verified {
                digest,
                platform,
                identity,
            })
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
    try_join_all(subjects.into_iter().map(|(digest, platform)| async move {
        let subject = describe_subject(&digest, platform.as_deref());
        let tag = signature_tag(&digest);
        let Some(m) = client.get_manifest(Target::Tag(&tag)).await? else {
            return Err(SignError::Verify(format!(
                "{subject}: no signature (no tag {tag})"
            )));
        };
        let manifest = store::parse(&format!("{}:{tag}", client.repository), &m.bytes)?;
        let mut candidates = Vec::new();
        for l in manifest
            .layers
            .iter()
            .filter(|l| l.media_type == SIMPLESIGNING)
        {
            let d = Digest::parse(&l.digest).map_err(|e| SignError::Malformed {
                what: format!("{}:{tag}", client.repository),
                problem: e.to_string(),
            })?;
            // The registry's bytes are checked against the layer's digest on the way.
            let payload = client.get_blob(&d, MAX_PAYLOAD).await?.to_vec();
            candidates.push((payload, l.signature().map(str::to_string)));
        }
        let identity = check(
            &subject,
            &digest,
            Some(&client.repository),
            key,
            &candidates,
        )
        .map_err(SignError::Verify)?;
        Ok(Verified {
            digest,
            platform,
            identity,
        })
    }))
    .await
}
