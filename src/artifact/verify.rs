//! The attestations and signature bundles of an image, found and checked for `ironstar verify`
//! and `ironstar provenance`: in each store (the `.att` tag's layers, the bundle referrers of the
//! index or a platform manifest), every envelope read at most [`MAX_ENVELOPE`] bytes, its
//! signature checked before its payload is read, its statement's subject the digest. One bad
//! envelope does not hide a good one: each is a [`Found`] of its own. A bundle referrer is a
//! signature ([`super::sigbundle`]) when its manifest's predicate type annotation says so, else
//! a provenance.

use serde_json::Value;

use super::dsse::{Envelope, MAX_ENVELOPE};
use super::{
    attest, bundle, cosign, referrer, sigbundle, ArtifactError, CosignTag, BUNDLE, DSSE_ENVELOPE,
};
use crate::digest::Digest;
use crate::layout::Layout;
use crate::registry::{Client, Target};
use crate::sign::PublicKey;

/// What an envelope holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// An SLSA provenance ([`attest`]).
    Provenance,
    /// cosign 3's image signature ([`sigbundle`]).
    Signature,
}

impl Kind {
    /// A bundle referrer's kind, by its manifest's annotations.
    fn of(annotations: &std::collections::BTreeMap<String, String>) -> Self {
        match sigbundle::is_signature(annotations) {
            true => Kind::Signature,
            false => Kind::Provenance,
        }
    }
}

/// One envelope and what came of it.
#[derive(Debug)]
pub struct Found {
    /// Where it was: `tag sha256-….att` or `referrer sha256:…`.
    pub store: String,
    pub kind: Kind,
    /// The statement, when it verified (or, with no key, when it parsed); else why not.
    pub result: Result<Value, String>,
}

/// An envelope's bytes read and checked (with `key`), or only read as a statement (without).
fn judge(
    store: String,
    bytes: Result<Vec<u8>, ArtifactError>,
    key: Option<&PublicKey>,
    digest: &Digest,
    bundled: Option<Kind>,
) -> Found {
    let what = store.clone();
    let kind = bundled.unwrap_or(Kind::Provenance);
    let result = bytes
        .and_then(|b| match bundled {
            Some(_) => bundle::envelope(&what, &b),
            None => Envelope::parse(&what, &b),
        })
        .and_then(|e| match (key, kind) {
            (Some(k), Kind::Provenance) => attest::check(&what, &e, k, digest),
            (Some(k), Kind::Signature) => sigbundle::check(&what, &e, k, digest),
            (None, Kind::Provenance) => attest::statement_of(&what, &e.body(&what)?),
            (None, Kind::Signature) => sigbundle::statement_of(&what, &e.body(&what)?),
        })
        .map_err(|e| e.to_string());
    Found {
        store,
        kind,
        result,
    }
}

/// How many envelopes of one store are read. With a key, enough for any real image: one that
/// fails keeps only its error line. Without one, each keeps its statement, so few.
fn most(key: Option<&PublicKey>) -> usize {
    match key {
        Some(_) => 1_000,
        None => 8,
    }
}

/// The line for the envelopes of `store` past [`most`].
fn not_read(store: String, kind: Kind, more: usize, most: usize) -> Found {
    Found {
        store,
        kind,
        result: Err(format!(
            "{more} more envelope(s) not read (at most {most} a store)"
        )),
    }
}

/// The attestations and signature bundles a layout keeps for its image's index.
pub fn layout(
    layout: &Layout,
    digest: &Digest,
    key: Option<&PublicKey>,
) -> Result<Vec<Found>, ArtifactError> {
    let tag = CosignTag::Att.of(digest);
    let layers = attest::layout_layers(layout, digest)?;
    let more = layers.len().saturating_sub(most(key));
    let mut out: Vec<Found> = layers
        .into_iter()
        .take(most(key))
        .map(|l| judge(format!("tag {tag}"), Ok(l.payload), key, digest, None))
        .collect();
    if more > 0 {
        out.push(not_read(
            format!("tag {tag}"),
            Kind::Provenance,
            more,
            most(key),
        ));
    }
    out.extend(layout_bundles(layout, digest, key)?);
    Ok(out)
}

/// The bundle referrers a layout keeps for `digest` (the index or a platform manifest).
pub fn layout_bundles(
    layout: &Layout,
    digest: &Digest,
    key: Option<&PublicKey>,
) -> Result<Vec<Found>, ArtifactError> {
    let mut out = Vec::new();
    let about = referrer::list(layout)?
        .into_iter()
        .filter(|r| r.subject == *digest && r.referrer.artifact_type == BUNDLE);
    for (i, r) in about.enumerate() {
        if i >= most(key) {
            let store = format!("referrers of {digest}");
            out.push(not_read(store, Kind::Provenance, 1, most(key)));
            continue;
        }
        {
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
                Some(Kind::of(&r.referrer.annotations)),
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
    let (att, mut bundles) = tokio::try_join!(
        async { Ok::<_, ArtifactError>(client.get_manifest(Target::Tag(&tag)).await?) },
        registry_bundles(client, digest, key)
    )?;
    let mut out = Vec::new();
    if let Some(m) = att {
        let store = format!("tag {tag}");
        match cosign::parse(&store, &m.bytes) {
            Ok(manifest) => {
                let layers: Vec<_> = manifest
                    .layers
                    .iter()
                    .filter(|l| l.media_type == DSSE_ENVELOPE)
                    .collect();
                let more = layers.len().saturating_sub(most(key));
                if more > 0 {
                    out.push(not_read(store.clone(), Kind::Provenance, more, most(key)));
                }
                for l in layers.into_iter().take(most(key)) {
                    let bytes = blob(client, &store, &l.digest, l.size).await;
                    out.push(judge(store.clone(), bytes, key, digest, None));
                }
            }
            Err(e) => out.push(Found {
                store,
                kind: Kind::Provenance,
                result: Err(e.to_string()),
            }),
        }
    }
    out.append(&mut bundles);
    Ok(out)
}

/// The bundle referrers a registry holds for `digest` (an index or a manifest of `client`'s
/// repository), each read and checked in turn.
pub async fn registry_bundles(
    client: &Client,
    digest: &Digest,
    key: Option<&PublicKey>,
) -> Result<Vec<Found>, ArtifactError> {
    let referrers = referrer::remote(client, digest).await?;
    let bundles: Vec<&Value> = referrers
        .iter()
        .filter(|r| r["artifactType"] == BUNDLE)
        .collect();
    let mut out = Vec::new();
    let more = bundles.len().saturating_sub(most(key));
    if more > 0 {
        let store = format!("referrers of {digest}");
        out.push(not_read(store, Kind::Provenance, more, most(key)));
    }
    for r in bundles.into_iter().take(most(key)) {
        let d = referrer::digest_at(r, "referrers index")?;
        let store = format!("referrer {d}");
        let mut kind = Kind::Provenance;
        let layer = async {
            let m = client
                .get_manifest(Target::Digest(&d))
                .await?
                .ok_or_else(|| super::malformed(&store, "listed, but not in the registry"))?;
            let v = referrer::parse(&store, &m.bytes)?;
            kind = Kind::of(&serde_json::from_value(v["annotations"].clone()).unwrap_or_default());
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
        let bytes = layer.await;
        out.push(judge(store.clone(), bytes, key, digest, Some(kind)));
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
