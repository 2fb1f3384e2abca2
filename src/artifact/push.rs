//! The artifacts' part of a push, in two steps around the image's own:
//! [`stage`] beside the image's uploads (in one round trip each cosign tag fetched, each referrer
//! asked for, whether the registry has the referrers API, the referrers tags read; then every
//! blob uploaded) and [`Staged::commit`] after the index, before any tag moves: every
//! manifest together (one round trip), then, without the referrers API, the referrers tags that
//! change together (one more). A re-push of what the registry holds writes nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use futures_util::future::try_join_all;
use serde_json::{json, Value};

use super::referrer::{self, Stored};
use super::{cosign, fallback_tag, ArtifactError, Layer, EMPTY};
use crate::digest::Digest;
use crate::image::canonical;
use crate::layout::{Layout, ResolvedImage};
use crate::oci::{media_type, Tag};
use crate::registry::client::short;
use crate::registry::{Client, Target};

/// What goes up after the index.
#[derive(Debug, Default)]
pub struct Artifacts {
    /// Entries to merge under cosign's tags: (tag, ours, what it is about, for messages).
    pub cosign: Vec<(Tag, Vec<Layer>, String)>,
    /// The layout's referrers of the image (SBOMs, attestation bundles).
    pub referrers: Vec<Stored>,
}

impl Artifacts {
    pub fn is_empty(&self) -> bool {
        self.cosign.iter().all(|c| c.1.is_empty()) && self.referrers.is_empty()
    }
}

/// The layout's referrers whose subject is `image`'s index or one of its manifests and that
/// `keep` takes (by `artifactType` and annotations). Each document is checked against its digest now (they are small),
/// so a damaged one is refused before any blob goes out, naming it and the flag that leaves it
/// out.
pub fn referrers_of(
    layout: &Layout,
    image: &ResolvedImage,
    keep: impl Fn(&referrer::Referrer) -> bool,
) -> Result<Vec<Stored>, ArtifactError> {
    let subjects: Vec<&Digest> = std::iter::once(&image.top)
        .chain(&image.manifests)
        .map(|m| &m.descriptor.digest)
        .collect();
    let mut out = Vec::new();
    for r in referrer::list(layout)? {
        if subjects.contains(&&r.subject) && keep(&r.referrer) {
            layout
                .verify_blob(&r.document)
                .map_err(|e| ArtifactError::Put(format!("{}: {e}", named(&r))))?;
            out.push(r);
        }
    }
    Ok(out)
}

/// What a referrer is, and how to push without it, for messages.
fn named(r: &Stored) -> String {
    match kind(r) {
        "sbom" => format!(
            "the SBOM of {} (--no-sbom pushes the image without them)",
            r.subject
        ),
        "signature bundle" => format!(
            "the signature bundle {} (--no-sign pushes the image unsigned)",
            r.referrer.digest
        ),
        _ => format!(
            "the attestation {} (--no-provenance pushes the image without it)",
            r.referrer.digest
        ),
    }
}

/// A referrer's kind, for the push's lines.
fn kind(r: &Stored) -> &'static str {
    if crate::sbom::is_sbom_type(&r.referrer.artifact_type) {
        "sbom"
    } else if super::sigbundle::is_signature(&r.referrer.annotations) {
        "signature bundle"
    } else {
        "attestation bundle"
    }
}

/// Manifests ready to go; their blobs are in the registry.
pub struct Staged {
    cosign: Vec<(Tag, cosign::Written, String)>,
    referrers: Vec<Stored>,
    /// `None`: the registry has the referrers API. Else the referrers tags that change.
    fallback: Option<Vec<(Tag, Vec<u8>)>>,
    _scratch: Option<tempfile::TempDir>,
}

/// What [`Staged::commit`] wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Written {
    /// Referrer manifests sent, by kind: `sbom`, `signature bundle`, `attestation bundle`.
    pub referrers: BTreeMap<&'static str, usize>,
    /// cosign tag manifests written, `.sig` and `.att`.
    pub cosign: usize,
    /// Referrers tags written (0 with the referrers API).
    pub tags_updated: usize,
}

/// Fetch every cosign tag and merge ours in (the referrers' documents are read from `layout`), ask for every referrer and whether the registry has
/// the referrers API, read the referrers tags when it has not, and upload every blob. Runs beside
/// the image's own uploads: nothing here is visible until [`Staged::commit`].
pub async fn stage(
    client: &Client,
    layout: Option<&Layout>,
    artifacts: Artifacts,
) -> Result<Staged, ArtifactError> {
    let cosign_tags: Vec<_> = artifacts
        .cosign
        .into_iter()
        .filter(|c| !c.1.is_empty())
        .collect();
    let current = try_join_all(cosign_tags.iter().map(|(tag, _, _)| async move {
        Ok::<_, ArtifactError>(client.get_manifest(Target::Tag(tag)).await?)
    }));
    let present = try_join_all(artifacts.referrers.iter().map(|r| async move {
        let d = &r.referrer.digest;
        Ok::<_, ArtifactError>(client.manifest_digest(Target::Digest(d)).await?.is_some())
    }));
    let probe = async {
        match artifacts.referrers.first() {
            Some(r) => Ok::<_, ArtifactError>(client.referrers(&r.subject).await?.is_some()),
            None => Ok(true),
        }
    };
    // The referrers tags are read in the same round trip, and dropped if the registry has the
    // API: a re-push then costs no round trip of its own for them.
    let tags = async {
        match artifacts.referrers.is_empty() {
            true => Ok(Vec::new()),
            false => fallback_tags(client, &artifacts.referrers).await,
        }
    };
    let (current, present, api, tags) = tokio::try_join!(current, present, probe, tags)?;
    let mut cosign = Vec::new();
    for ((tag, ours, about), got) in cosign_tags.into_iter().zip(current) {
        let what = format!("{}:{tag}", client.repository);
        let existing = got
            .as_ref()
            .map(|m| cosign::parse(&what, &m.bytes))
            .transpose()?;
        if let Some(w) = cosign::merge(existing, &ours)? {
            cosign.push((tag, w, about));
        }
    }
    let referrers: Vec<Stored> = artifacts
        .referrers
        .iter()
        .zip(&present)
        .filter(|(_, p)| !**p)
        .map(|(r, _)| r.clone())
        .collect();
    let scratch = upload(client, layout, &cosign, &referrers).await?;
    Ok(Staged {
        cosign,
        referrers,
        fallback: (!api).then_some(tags),
        _scratch: scratch,
    })
}

/// Upload the blobs of what changes: the cosign manifests' payloads and configs (from files in
/// a scratch directory, as every blob of a push goes), the referrers' empty config and documents
/// (verified, from the layout).
async fn upload(
    client: &Client,
    layout: Option<&Layout>,
    cosign: &[(Tag, cosign::Written, String)],
    referrers: &[Stored],
) -> Result<Option<tempfile::TempDir>, ArtifactError> {
    if cosign.is_empty() && referrers.is_empty() {
        return Ok(None);
    }
    let scratch = tempfile::tempdir().map_err(|source| ArtifactError::Io {
        path: std::env::temp_dir(),
        source,
    })?;
    let mut blobs: Vec<(Digest, PathBuf, u64)> = Vec::new();
    let mut seen = BTreeSet::new();
    let mut add = |bytes: &[u8]| -> Result<(), ArtifactError> {
        let d = Digest::of(bytes);
        if seen.insert(d.clone()) {
            let path = scratch.path().join(d.hex());
            std::fs::write(&path, bytes).map_err(|source| ArtifactError::Io {
                path: path.clone(),
                source,
            })?;
            blobs.push((d, path, bytes.len() as u64));
        }
        Ok(())
    };
    for (_, w, _) in cosign {
        for l in &w.added {
            add(&l.payload)?;
        }
        add(&w.config)?;
    }
    if !referrers.is_empty() {
        add(EMPTY)?;
    }
    for bytes in referrers.iter().filter_map(|r| r.inline.as_deref()) {
        add(bytes)?;
    }
    for r in referrers.iter().filter(|r| r.inline.is_none()) {
        if seen.insert(r.document.digest.clone()) {
            let Some(layout) = layout else {
                return Err(ArtifactError::Put(format!(
                    "{}: no layout holds it",
                    named(r)
                )));
            };
            let path = layout.blob_path(&r.document.digest);
            blobs.push((r.document.digest.clone(), path, r.document.size));
        }
    }
    try_join_all(
        blobs.iter().map(|(d, path, size)| async move {
            client.push_blob(d, *size, path, None, None).await
        }),
    )
    .await?;
    Ok(Some(scratch))
}

/// List `stored` in its subject's referrers tag (for a registry without the referrers API)
/// unless it is listed there already; whether the tag moved. `ironstar merge` uses it for the
/// SBOMs of a part it brings from another repository.
pub async fn add_to_fallback(client: &Client, stored: &Stored) -> Result<bool, ArtifactError> {
    let changed = fallback_tags(client, std::slice::from_ref(stored)).await?;
    for (tag, bytes) in &changed {
        let digest = Digest::of(bytes);
        client
            .put_manifest(Target::Tag(tag), media_type::INDEX, bytes, &digest)
            .await?;
    }
    Ok(!changed.is_empty())
}

/// Each subject's referrers tag with every one of `referrers` about it listed (entries another
/// tool put there kept); only the tags that change.
async fn fallback_tags(
    client: &Client,
    referrers: &[Stored],
) -> Result<Vec<(Tag, Vec<u8>)>, ArtifactError> {
    let mut by_subject: BTreeMap<&Digest, Vec<&Stored>> = BTreeMap::new();
    for r in referrers {
        by_subject.entry(&r.subject).or_default().push(r);
    }
    let changed = try_join_all(by_subject.into_iter().map(|(subject, ours)| async move {
        let tag = fallback_tag(subject);
        let current = client.get_manifest(Target::Tag(&tag)).await?;
        let what = format!("referrers tag {tag}");
        let mut index = match &current {
            Some(m) => referrer::parse(&what, &m.bytes)?,
            None => json!({"schemaVersion": 2, "mediaType": media_type::INDEX, "manifests": []}),
        };
        let Some(list) = index.get_mut("manifests").and_then(Value::as_array_mut) else {
            return Err(super::malformed(
                &what,
                "holds no image index; not touching it",
            ));
        };
        let mut added = false;
        for r in ours {
            let digest = r.referrer.digest.to_string();
            if !list
                .iter()
                .any(|d| d["digest"].as_str() == Some(digest.as_str()))
            {
                list.push(r.referrer.descriptor_json());
                added = true;
            }
        }
        Ok(added.then(|| (tag, canonical(&index))))
    }))
    .await?;
    Ok(changed.into_iter().flatten().collect())
}

impl Staged {
    /// Every manifest together; then, unless a `PUT` or the probe showed the referrers API, the
    /// referrers tags that change, together.
    pub async fn commit(
        self,
        client: &Client,
        line: &(dyn Fn(String) + Sync),
    ) -> Result<Written, ArtifactError> {
        let tags = try_join_all(self.cosign.iter().map(|(tag, w, about)| async move {
            client
                .put_manifest(Target::Tag(tag), &w.media_type, &w.manifest, &w.digest)
                .await
                .map_err(|e| {
                    ArtifactError::Put(format!("putting the tag {tag} of {about}: {e}"))
                })?;
            let kind = match tag.as_str().ends_with(".att") {
                true => "attestation",
                false => "signature",
            };
            line(format!(
                "{kind} {} -> {tag} ({} new)",
                short(&w.digest),
                w.added.len()
            ));
            Ok::<_, ArtifactError>(())
        }));
        let referrers = try_join_all(self.referrers.iter().map(|r| async move {
            let d = &r.referrer.digest;
            let indexed = client
                .put_manifest_subject(Target::Digest(d), media_type::MANIFEST, &r.manifest, d)
                .await
                .map_err(|e| ArtifactError::Put(format!("putting {}: {e}", named(r))))?;
            line(format!(
                "{} {} -> {} pushed",
                kind(r),
                short(d),
                short(&r.subject)
            ));
            Ok::<_, ArtifactError>(indexed)
        }));
        let (_, indexed) = tokio::try_join!(tags, referrers)?;
        let mut out = Written {
            cosign: self.cosign.len(),
            ..Default::default()
        };
        for r in &self.referrers {
            *out.referrers.entry(kind(r)).or_default() += 1;
        }
        let fallback = match self.fallback {
            Some(f) if !indexed.iter().any(|i| *i) => f,
            _ => return Ok(out),
        };
        try_join_all(fallback.iter().map(|(tag, bytes)| async move {
            let digest = Digest::of(bytes);
            client
                .put_manifest(Target::Tag(tag), media_type::INDEX, bytes, &digest)
                .await?;
            line(format!("referrers tag {tag} updated"));
            Ok::<_, ArtifactError>(())
        }))
        .await?;
        out.tags_updated = fallback.len();
        Ok(out)
    }
}
