//! Pushing a layout's SBOM manifests as referrers of the platform manifests they describe: with
//! the registry's referrers API when it has one (`OCI-Subject` on the manifest `PUT`, or a 200 from
//! `GET /v2/<name>/referrers/<digest>`), otherwise the distribution-spec's referrers tag schema: an
//! image index tagged `sha256-<hex of the subject>`, read, extended and put back, keeping every
//! entry another tool put there. Nothing is written that the registry holds already.

use serde_json::{json, Value};

use super::artifact::{self, LocalSbom};
use super::SbomError;
use crate::digest::Digest;
use crate::image::canonical;
use crate::layout::{Descriptor, Layout, ResolvedImage};
use crate::oci::media_type;
use crate::registry::client::short;
use crate::registry::{Client, Tag, Target};

/// The referrers tag of `subject`: `sha256-<hex>` (a [`Digest`] is sha256 only).
pub fn fallback_tag(subject: &Digest) -> Tag {
    Tag::parse(&format!("sha256-{}", subject.hex()))
        .expect("an algorithm, a dash and hex digits make a valid tag")
}

/// What [`push_sboms`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SbomPush {
    /// SBOM manifests sent.
    pub pushed: usize,
    /// Already in the registry.
    pub existing: usize,
    /// Referrers tags written (0 with the referrers API).
    pub tags_updated: usize,
}

/// The layout's SBOMs whose subject is one of `image`'s manifests.
pub fn sboms_of(layout: &Layout, image: &ResolvedImage) -> Result<Vec<LocalSbom>, SbomError> {
    let subjects: Vec<&Digest> = if image.manifests.is_empty() {
        vec![&image.top.descriptor.digest]
    } else {
        image
            .manifests
            .iter()
            .map(|m| &m.descriptor.digest)
            .collect()
    };
    Ok(artifact::list(layout)?
        .into_iter()
        .filter(|s| subjects.contains(&&s.subject))
        .collect())
}

/// Push each SBOM of `image` (after its platform manifests are in the registry).
pub async fn push_sboms(
    repo: &Client,
    layout: &Layout,
    image: &ResolvedImage,
    line: &(dyn Fn(String) + Sync),
) -> Result<SbomPush, SbomError> {
    let mut out = SbomPush::default();
    let mut api: Option<bool> = None;
    for sbom in sboms_of(layout, image)? {
        let digest = &sbom.referrer.digest;
        if repo
            .manifest_digest(Target::Digest(digest))
            .await?
            .is_some()
        {
            out.existing += 1;
        } else {
            let subject_indexed = push_one(repo, layout, &sbom).await?;
            out.pushed += 1;
            line(format!(
                "sbom {} -> {} pushed",
                short(digest),
                short(&sbom.subject)
            ));
            if subject_indexed {
                api = Some(true);
            }
        }
        if api.is_none() {
            api = Some(repo.referrers(&sbom.subject).await?.is_some());
        }
        if api == Some(false) && add_to_fallback(repo, &sbom).await? {
            out.tags_updated += 1;
            line(format!(
                "referrers tag {} updated",
                fallback_tag(&sbom.subject)
            ));
        }
    }
    Ok(out)
}

/// Blobs, then the manifest; whether the registry said `OCI-Subject`.
async fn push_one(repo: &Client, layout: &Layout, sbom: &LocalSbom) -> Result<bool, SbomError> {
    let empty = Descriptor {
        media_type: media_type::EMPTY.to_string(),
        digest: Digest::of(artifact::EMPTY),
        size: artifact::EMPTY.len() as u64,
        annotations: Default::default(),
        platform: None,
    };
    for blob in [&empty, &sbom.document] {
        layout.verify_blob(blob)?;
        // Skipped (in the same round trip) when the registry holds it.
        repo.push_blob(
            &blob.digest,
            blob.size,
            &layout.blob_path(&blob.digest),
            None,
            None,
        )
        .await?;
    }
    let d = &sbom.referrer.digest;
    Ok(repo
        .put_manifest_subject(Target::Digest(d), media_type::MANIFEST, &sbom.manifest, d)
        .await?)
}

/// Add `sbom` to its subject's referrers tag unless it is listed there; whether the tag moved.
pub(crate) async fn add_to_fallback(repo: &Client, sbom: &LocalSbom) -> Result<bool, SbomError> {
    let tag = fallback_tag(&sbom.subject);
    let current = repo.get_manifest(Target::Tag(&tag)).await?;
    let mut index = match &current {
        Some(m) => artifact::parse(&format!("referrers tag {tag}"), &m.bytes)?,
        None => json!({"schemaVersion": 2, "mediaType": media_type::INDEX, "manifests": []}),
    };
    let Some(list) = index.get_mut("manifests").and_then(Value::as_array_mut) else {
        return Err(SbomError::NotFound(format!(
            "referrers tag {tag} holds no image index; not touching it"
        )));
    };
    let digest = sbom.referrer.digest.to_string();
    if list
        .iter()
        .any(|d| d["digest"].as_str() == Some(digest.as_str()))
    {
        return Ok(false);
    }
    list.push(sbom.referrer.descriptor_json());
    let bytes = canonical(&index);
    repo.put_manifest(
        Target::Tag(&tag),
        media_type::INDEX,
        &bytes,
        &Digest::of(&bytes),
    )
    .await?;
    Ok(true)
}
