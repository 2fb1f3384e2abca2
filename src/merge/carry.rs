//! What a registry merge brings from elsewhere before the index: each part in another
//! repository (its blobs mounted from a repository of the same registry, else copied, each
//! checked against its digest; then its manifest by digest) and its SBOMs, as referrers of it in
//! the destination (the referrers tag updated where the registry has no referrers API).

use std::path::Path;

use futures_util::future::try_join_all;
use serde_json::Value;

use super::registry::{line, Reader, RegistryMergeOptions};
use super::{MergeError, Merged, Part, Source};
use crate::artifact::push::add_to_fallback;
use crate::artifact::referrer::{layout_descriptor, Referrer, Stored as LocalSbom};
use crate::digest::Digest;
use crate::image::BlobRef;
use crate::oci::media_type;
use crate::registry::client::short;
use crate::registry::{Client, Target};
use crate::sbom::fetch::referrers_of;
use crate::sbom::{MEDIA_TYPE_CYCLONEDX, MEDIA_TYPE_SPDX};

/// Every part not in R yet, put there: blobs mounted or copied, then its manifest by digest.
/// (in place, mounted, copied, bytes copied).
pub(super) async fn bring_parts(
    opts: &RegistryMergeOptions,
    dest: &Client,
    readers: &[Reader],
    merged: &Merged,
    sources: &[Source],
) -> Result<(usize, usize, usize, u64), MergeError> {
    let scratch = tempfile::tempdir().map_err(|e| MergeError::Internal(e.to_string()))?;
    let moves = merged.parts.iter().filter_map(|p| {
        let reader = &readers[p.source];
        (reader.client.repository != opts.repository).then_some((p, reader))
    });
    let moved = try_join_all(moves.map(|(p, reader)| {
        let name = &sources[p.source].name;
        bring_part(opts, dest, reader, p, name, scratch.path())
    }))
    .await?;
    let in_place = merged.parts.len() - moved.len();
    let mut counts = (in_place, 0, 0, 0);
    for (m, c, b) in moved {
        counts.1 += m;
        counts.2 += c;
        counts.3 += b;
    }
    Ok(counts)
}

/// One part from another repository: (blobs mounted, blobs copied, bytes copied).
async fn bring_part(
    opts: &RegistryMergeOptions,
    dest: &Client,
    reader: &Reader,
    part: &Part,
    name: &str,
    scratch: &Path,
) -> Result<(usize, usize, u64), MergeError> {
    let digest = &part.manifest.digest;
    let m = reader
        .client
        .get_manifest(Target::Digest(digest))
        .await?
        .ok_or_else(|| MergeError::Malformed {
            source_name: name.to_string(),
            problem: format!("its manifest {digest} ({}) is missing", part.platform),
        })?;
    let v: Value = serde_json::from_slice(&m.bytes).map_err(|e| MergeError::Malformed {
        source_name: name.to_string(),
        problem: format!("manifest {digest}: {e}"),
    })?;
    let blobs = blobs_of(name, &v)?;
    let from = &reader.client.repository;
    let mut moved = move_blobs(dest, reader, &blobs, scratch).await?;
    let mt = part.manifest.media_type.to_string();
    dest.put_manifest(Target::Digest(digest), &mt, &m.bytes, digest)
        .await?;
    line(
        opts.progress,
        format!(
            "manifest {} ({}) from {from} pushed",
            short(digest),
            part.platform
        ),
    );
    let (sboms, m) = bring_sboms(dest, reader, digest, name, scratch).await?;
    if sboms > 0 {
        line(
            opts.progress,
            format!("{sboms} SBOM(s) of {} from {from} pushed", part.platform),
        );
    }
    moved = (moved.0 + m.0, moved.1 + m.1, moved.2 + m.2);
    Ok(moved)
}

/// Blobs into `dest`: mounted from the reader's repository (same registry), else, unless there,
/// downloaded whole (checked against its digest) and uploaded. (mounted, copied, bytes copied).
async fn move_blobs(
    dest: &Client,
    reader: &Reader,
    blobs: &[BlobRef],
    scratch: &Path,
) -> Result<(usize, usize, u64), MergeError> {
    let from = &reader.client.repository;
    let moved = try_join_all(blobs.iter().map(|b| async move {
        if reader.same_registry && dest.mount_blob(&b.digest, from).await? {
            return Ok::<(usize, usize, u64), MergeError>((1, 0, 0));
        }
        if dest.blob_exists(&b.digest).await? {
            return Ok((0, 0, 0));
        }
        let path = scratch.join(b.digest.hex());
        reader
            .client
            .download_blob(&b.digest, b.size, &path)
            .await?;
        dest.push_blob(&b.digest, b.size, &path, None, None).await?;
        let _ = std::fs::remove_file(&path);
        Ok((0, 1, b.size))
    }))
    .await?;
    Ok(moved
        .into_iter()
        .fold((0, 0, 0), |a, b| (a.0 + b.0, a.1 + b.1, a.2 + b.2)))
}

/// The config and layers a manifest names.
fn blobs_of(name: &str, v: &Value) -> Result<Vec<BlobRef>, MergeError> {
    std::iter::once(&v["config"])
        .chain(v["layers"].as_array().into_iter().flatten())
        .map(|d| super::blob_ref(name, d))
        .collect()
}

/// The SBOMs of `subject` in the reader's repository, put into `dest` as its referrers (the
/// referrers tag updated where the registry has no referrers API): how many, and their blobs
/// moved.
async fn bring_sboms(
    dest: &Client,
    reader: &Reader,
    subject: &Digest,
    name: &str,
    scratch: &Path,
) -> Result<(usize, (usize, usize, u64)), MergeError> {
    let sbom_types = [MEDIA_TYPE_SPDX, MEDIA_TYPE_CYCLONEDX];
    let entries: Vec<Value> = referrers_of(&reader.client, subject)
        .await?
        .into_iter()
        .filter(|d| sbom_types.contains(&d["artifactType"].as_str().unwrap_or_default()))
        .collect();
    let mut moved = (0, 0, 0);
    let mut api = None;
    for e in &entries {
        let what = format!("{name}: the SBOM of {subject}");
        let desc = layout_descriptor(e, &what)?;
        let m = reader
            .client
            .get_manifest(Target::Digest(&desc.digest))
            .await?
            .ok_or_else(|| MergeError::Malformed {
                source_name: name.to_string(),
                problem: format!("its SBOM manifest {} is missing", desc.digest),
            })?;
        let v: Value = serde_json::from_slice(&m.bytes).map_err(|err| MergeError::Malformed {
            source_name: name.to_string(),
            problem: format!("SBOM manifest {}: {err}", desc.digest),
        })?;
        let blobs = blobs_of(name, &v)?;
        let b = move_blobs(dest, reader, &blobs, scratch).await?;
        moved = (moved.0 + b.0, moved.1 + b.1, moved.2 + b.2);
        let d = &desc.digest;
        let indexed = dest
            .put_manifest_subject(Target::Digest(d), media_type::MANIFEST, &m.bytes, d)
            .await?;
        if indexed {
            continue;
        }
        if api.is_none() {
            api = Some(dest.referrers(subject).await?.is_some());
        }
        if api == Some(false) {
            let sbom = LocalSbom {
                referrer: Referrer {
                    digest: d.clone(),
                    size: desc.size,
                    artifact_type: e["artifactType"].as_str().unwrap_or_default().to_string(),
                    annotations: serde_json::from_value(v["annotations"].clone())
                        .unwrap_or_default(),
                },
                manifest: m.bytes.to_vec(),
                subject: subject.clone(),
                document: layout_descriptor(&v["layers"][0], &what)?,
                inline: None,
            };
            add_to_fallback(dest, &sbom).await?;
        }
    }
    Ok((entries.len(), moved))
}
