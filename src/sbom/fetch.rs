//! The SBOM of one platform of an image, from a layout or from a registry (its referrers API,
//! else the referrers tag `sha256-<hex>`): what `ironstar sbom` prints.

use std::path::Path;

use serde_json::Value;

use super::artifact;
use super::{SbomError, MEDIA_TYPE_CYCLONEDX, MEDIA_TYPE_SPDX};
use crate::artifact::referrer::{digest_at, parse};
use crate::digest::Digest;
use crate::layout::Layout;
use crate::oci::platform_name;
use crate::registry::{Client, Reference, Target};

/// An SBOM is read into memory: bounded.
pub const MAX_DOCUMENT: usize = 64 << 20;

/// The manifest of `platform` among `(platform, digest)` pairs, or the only one.
fn choose(
    manifests: &[(Option<String>, Digest)],
    platform: Option<&str>,
) -> Result<Digest, SbomError> {
    let listed = || {
        manifests
            .iter()
            .filter_map(|(p, _)| p.clone())
            .collect::<Vec<_>>()
            .join(", ")
    };
    match (platform, manifests) {
        (None, [(_, d)]) => Ok(d.clone()),
        (None, _) => Err(SbomError::NotFound(format!(
            "the image has several platforms ({}): pass --platform",
            listed()
        ))),
        (Some(p), _) => manifests
            .iter()
            .find(|(q, _)| q.as_deref() == Some(p))
            .map(|(_, d)| d.clone())
            .ok_or_else(|| {
                SbomError::NotFound(format!("no {p} in the image (it has {})", listed()))
            }),
    }
}

/// The SBOM document of a layout's image.
pub fn from_layout(dir: &Path, platform: Option<&str>) -> Result<Vec<u8>, SbomError> {
    let layout = Layout::open(dir)?;
    let image = layout.resolve(None)?;
    let manifests: Vec<_> = if image.manifests.is_empty() {
        vec![(None, image.top.descriptor.digest.clone())]
    } else {
        image
            .manifests
            .iter()
            .map(|m| (m.descriptor.platform.clone(), m.descriptor.digest.clone()))
            .collect()
    };
    let subject = choose(&manifests, platform)?;
    let sbom = artifact::list(&layout)?
        .into_iter()
        .find(|s| s.subject == subject)
        .ok_or_else(|| {
            SbomError::NotFound(format!(
                "{}: no SBOM for {subject} (built with --no-sbom, or with no source: see the SBOM section of the README)",
                dir.display()
            ))
        })?;
    if sbom.document.size > MAX_DOCUMENT as u64 {
        return Err(SbomError::NotFound(format!(
            "{}: SBOM too large",
            dir.display()
        )));
    }
    let bytes = crate::layout::read_in_layout(&layout.blob_path(&sbom.document.digest))?;
    if Digest::of(&bytes) != sbom.document.digest {
        return Err(SbomError::NotFound(format!(
            "{}: SBOM blob {} is corrupt",
            dir.display(),
            sbom.document.digest
        )));
    }
    Ok(bytes)
}

/// The referrers of `subject` in `repo`: the API's index when there is one, else the referrers
/// tag's; an empty list when neither.
pub async fn referrers_of(repo: &Client, subject: &Digest) -> Result<Vec<Value>, SbomError> {
    Ok(crate::artifact::referrer::remote(repo, subject).await?)
}

/// The SBOM document of a pushed image.
pub async fn from_registry(
    reference: &Reference,
    plain_http: bool,
    platform: Option<&str>,
) -> Result<Vec<u8>, SbomError> {
    let repo = Client::reader(&reference.repository, plain_http)?;
    let wanted = Target::of(reference);
    let top = repo
        .get_manifest(wanted)
        .await?
        .ok_or_else(|| SbomError::NotFound(format!("{reference}: no such image")))?
        .bytes;
    let v = parse(&format!("{reference}"), &top)?;
    let manifests: Vec<_> = match v["manifests"].as_array() {
        Some(list) => list
            .iter()
            .map(|d| Ok((platform_name(&d["platform"]), digest_at(d, "image index")?)))
            .collect::<Result<_, SbomError>>()?,
        None => vec![(None, Digest::of(&top))],
    };
    let subject = choose(&manifests, platform)?;
    let entry = referrers_of(&repo, &subject)
        .await?
        .into_iter()
        .find(|d| {
            matches!(
                d["artifactType"].as_str(),
                Some(MEDIA_TYPE_SPDX | MEDIA_TYPE_CYCLONEDX)
            )
        })
        .ok_or_else(|| SbomError::NotFound(format!("{reference}: no SBOM for {subject}")))?;
    let digest = digest_at(&entry, "referrers index")?;
    let manifest = repo
        .get_manifest(Target::Digest(&digest))
        .await?
        .ok_or_else(|| {
            SbomError::NotFound(format!("{reference}: SBOM manifest {digest} is missing"))
        })?
        .bytes;
    let m = parse(&format!("manifest {digest}"), &manifest)?;
    if digest_at(&m["subject"], "SBOM manifest")? != subject {
        return Err(SbomError::NotFound(format!(
            "SBOM manifest {digest}: its subject is not {subject}"
        )));
    }
    let layer = digest_at(&m["layers"][0], "SBOM manifest")?;
    Ok(repo.get_blob(&layer, MAX_DOCUMENT).await?.to_vec())
}
