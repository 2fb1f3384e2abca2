//! The attestations of an image, found and checked for `ironstar verify` and `ironstar
//! provenance`: in each store (the `.att` tag's layers, the bundle referrers of the index), every
//! envelope read at most [`MAX_ENVELOPE`] bytes, its signature checked before its payload is
//! read, its statement's subject the index. One bad envelope does not hide a good one: each is a
//! [`Found`] of its own.

use serde_json::Value;

use super::dsse::{Envelope, MAX_ENVELOPE};
use super::{attest, bundle, cosign, referrer, ArtifactError, CosignTag, BUNDLE, DSSE_ENVELOPE};
use crate::digest::Digest;
use crate::layout::Layout;
use crate::registry::{Client, Target};
use crate::sign::PublicKey;

/// One envelope and what came of it.
#[derive(Debug)]
pub struct Found {
    /// Where it was: `tag sha256-….att` or `referrer sha256:…`.
    pub store: String,
    /// The statement, when it verified (or, with no key, when it parsed); else why not.
    pub result: Result<Value, String>,
}

/// An envelope's bytes read and checked (with `key`), or only read as a statement (without).
fn judge(
    store: String,
    bytes: Result<Vec<u8>, ArtifactError>,
    key: Option<&PublicKey>,
    digest: &Digest,
    bundled: bool,
) -> Found {
    let what = store.clone();
    let result = bytes
        .and_then(|b| match bundled {
            true => bundle::envelope(&what, &b),
            false => Envelope::parse(&what, &b),
        })
        .and_then(|e| match key {
            Some(k) => attest::check(&what, &e, k, digest),
            None => attest::statement_of(&what, &e.body(&what)?),
        })
        .map_err(|e| e.to_string());
    Found { store, result }
}

/// The attestations a layout keeps for its image's index.
pub fn layout(
    layout: &Layout,
    digest: &Digest,
    key: Option<&PublicKey>,
) -> Result<Vec<Found>, ArtifactError> {
    let tag = CosignTag::Att.of(digest);
    let mut out: Vec<Found> = attest::layout_layers(layout, digest)?
        .into_iter()
        .map(|l| judge(format!("tag {tag}"), Ok(l.payload), key, digest, false))
        .collect();
    for r in referrer::list(layout)? {
        if r.subject == *digest && r.referrer.artifact_type == BUNDLE {
            let bytes = match r.document.size > MAX_ENVELOPE as u64 {
                true => Err(super::malformed("bundle", "larger than 1 MiB; refused")),
                false => layout
                    .read_manifest(&r.document)
                    .map(|m| m.bytes)
                    .map_err(Into::into),
            };
            out.push(judge(
                format!("referrer {}", r.referrer.digest),
                bytes,
                key,
                digest,
                true,
            ));
        }
    }
    Ok(out)
}

/// The attestations a registry holds for `digest` (an index or manifest of `client`'s
/// repository): under its `.att` tag and among its referrers.
pub async fn registry(
    client: &Client,
    digest: &Digest,
    key: Option<&PublicKey>,
) -> Result<Vec<Found>, ArtifactError> {
    let tag = CosignTag::Att.of(digest);
    let (att, referrers) = tokio::try_join!(
        async { Ok::<_, ArtifactError>(client.get_manifest(Target::Tag(&tag)).await?) },
        referrer::remote(client, digest)
    )?;
    let mut out = Vec::new();
    if let Some(m) = att {
        let store = format!("tag {tag}");
        match cosign::parse(&store, &m.bytes) {
            Ok(manifest) => {
                for l in manifest
                    .layers
                    .iter()
                    .filter(|l| l.media_type == DSSE_ENVELOPE)
                {
                    let bytes = blob(client, &store, &l.digest, l.size).await;
                    out.push(judge(store.clone(), bytes, key, digest, false));
                }
            }
            Err(e) => out.push(Found {
                store,
                result: Err(e.to_string()),
            }),
        }
    }
    for r in referrers.iter().filter(|r| r["artifactType"] == BUNDLE) {
        let d = referrer::digest_at(r, "referrers index")?;
        let store = format!("referrer {d}");
        let layer = async {
            let m = client
                .get_manifest(Target::Digest(&d))
                .await?
                .ok_or_else(|| super::malformed(&store, "listed, but not in the registry"))?;
            let v = referrer::parse(&store, &m.bytes)?;
            if referrer::digest_at(&v["subject"], &store)? != *digest {
                return Err(super::malformed(&store, "its subject is another manifest"));
            }
            let l = &v["layers"][0];
            let size = l["size"].as_u64().unwrap_or(u64::MAX);
            blob(
                client,
                &store,
                l["digest"].as_str().unwrap_or_default(),
                size,
            )
            .await
        };
        out.push(judge(store.clone(), layer.await, key, digest, true));
    }
    Ok(out)
}

/// A blob of at most [`MAX_ENVELOPE`] bytes: a larger descriptor is refused unread.
async fn blob(
    client: &Client,
    what: &str,
    digest: &str,
    size: u64,
) -> Result<Vec<u8>, ArtifactError> {
    if size > MAX_ENVELOPE as u64 {
        return Err(super::malformed(
            what,
            format!("an envelope of {size} bytes (more than {MAX_ENVELOPE}); refused"),
        ));
    }
    let d = Digest::parse(digest).map_err(|e| super::malformed(what, e.to_string()))?;
    Ok(client.get_blob(&d, MAX_ENVELOPE).await?.to_vec())
}
