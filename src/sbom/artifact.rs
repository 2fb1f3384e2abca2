//! SBOMs in an OCI image layout: per platform, a referrer ([`crate::artifact::referrer`]) whose
//! `artifactType` is the SBOM's media type, its one layer the document, its `subject` the
//! platform's manifest.

use std::collections::BTreeMap;

use super::{Document, SbomError};
use crate::artifact::referrer;
use crate::image::BlobRef;
use crate::layout::{Layout, LayoutError, LayoutWriter};
use crate::oci::annotation;

pub use crate::artifact::referrer::{Referrer, Stored as LocalSbom};

/// Write `doc`, the empty config and its referrer manifest about `subject` into the layout under
/// construction.
pub fn write(
    writer: &LayoutWriter,
    doc: &Document,
    subject: &BlobRef,
    created: &str,
) -> Result<Referrer, LayoutError> {
    let title = match doc.media_type.as_str() {
        super::MEDIA_TYPE_CYCLONEDX => "sbom.cdx.json",
        _ => "sbom.spdx.json",
    };
    let document = referrer::Document {
        media_type: &doc.media_type,
        bytes: &doc.bytes,
        title: Some(title),
    };
    let annotations = BTreeMap::from([(annotation::CREATED.to_string(), created.to_string())]);
    referrer::write(writer, &doc.media_type, &document, subject, annotations)
}

/// `index.json` with the referrers appended after the image's own entries.
pub fn layout_index(index_json: &[u8], referrers: &[Referrer]) -> Vec<u8> {
    let entries: Vec<_> = referrers.iter().map(Referrer::descriptor_json).collect();
    referrer::layout_index(index_json, &entries)
}

/// Every SBOM manifest `index.json` lists (other referrers, as provenance bundles, left out).
pub fn list(layout: &Layout) -> Result<Vec<LocalSbom>, SbomError> {
    Ok(referrer::list(layout)?
        .into_iter()
        .filter(|r| super::is_sbom_type(&r.referrer.artifact_type))
        .collect())
}

/// The SBOM document of each platform's binary that has a source, `None` where there is none.
/// One thread a platform: the work is mostly waiting on `cargo metadata` or reading a section,
/// and a build runs this beside its compression, so it must not hold rayon's workers.
pub fn documents(
    opts: &super::SbomOptions,
    binaries: &[(&crate::platform::Platform, &std::path::Path)],
) -> Result<Vec<Option<Document>>, SbomError> {
    for (platform, path) in &opts.files {
        if !binaries.iter().any(|(p, _)| p.to_string() == *platform) {
            return Err(SbomError::UserFile {
                platform: platform.clone(),
                path: path.clone(),
                message: "not a platform of this image".into(),
            });
        }
    }
    std::thread::scope(|s| {
        let handles: Vec<_> = binaries
            .iter()
            .map(|&(p, b)| s.spawn(move || super::for_platform(opts, p, b)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect()
    })
}

/// Each document written into the layout with its platform's manifest as `subject`: per
/// platform, the referrer and where its document came from.
pub fn attach(
    writer: &LayoutWriter,
    docs: Vec<Option<Document>>,
    manifests: &[&BlobRef],
    created: &str,
) -> Result<Vec<Option<(Referrer, String)>>, LayoutError> {
    docs.into_iter()
        .zip(manifests)
        .map(|(doc, manifest)| match doc {
            Some(doc) => Ok(Some((write(writer, &doc, manifest, created)?, doc.origin))),
            None => Ok(None),
        })
        .collect()
}
