//! `ironstar merge LAYOUT... --output DIR`: the layout one build of every source's platforms
//! would have written. Its `index.json` is put together by the build's own functions, in the
//! build's order: the index under its tags, the recorded repository, the SBOMs (platform order),
//! then the signatures (the index's, then each platform's). Everything is read and checked before
//! the output is started, so a refused merge leaves nothing; the output is written beside its
//! destination and moved into place whole, as a build's is.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::Value;

use super::{plan, source_of, top, MergeError, Merged, Source, Top};
use crate::artifact::referrer::{Referrer, Stored};
use crate::digest::Digest;
use crate::image::{self, BlobRef};
use crate::layout::{Descriptor, Layout, LayoutWriter, ResolvedImage};
use crate::oci::annotation;
use crate::sign::layout::LayoutSigning;
use crate::sign::{signature_tag, SignError, Signer};

/// What to merge where.
#[derive(Debug, Clone)]
pub struct LayoutMergeOptions {
    /// Each source layout, and which of its images (`DIR:TAG`) when it holds several.
    pub sources: Vec<(PathBuf, Option<String>)>,
    pub output: PathBuf,
    /// The merged image's tags; empty: the sources' own, which must agree.
    pub tags: Vec<String>,
    /// Sign the merged index (for the repository the sources record).
    pub signer: Option<Arc<dyn Signer>>,
}

/// What a merge wrote.
#[derive(Debug, Clone)]
pub struct LayoutMergeReport {
    pub index: Digest,
    pub output: PathBuf,
    pub tags: Vec<String>,
    /// Each platform, its manifest, and the source it came from.
    pub platforms: Vec<(String, Digest, String)>,
    pub sboms: usize,
    /// Signature manifests kept from the sources (the platforms').
    pub signatures_kept: usize,
    /// The repository the index was signed for, when it was.
    pub signed_for: Option<String>,
}

/// One source layout, read and checked.
struct Opened {
    layout: Layout,
    image: ResolvedImage,
    source: Source,
    repository: Option<String>,
}

fn descriptor(b: &BlobRef) -> Descriptor {
    Descriptor {
        media_type: b.media_type.to_string(),
        digest: b.digest.clone(),
        size: b.size,
        annotations: Default::default(),
        platform: None,
    }
}

fn open(position: usize, dir: &Path, tag: Option<&str>) -> Result<Opened, MergeError> {
    let name = match tag {
        Some(t) => format!("{}:{t}", dir.display()),
        None => dir.display().to_string(),
    };
    let layout = Layout::open(dir)?;
    let image = layout.resolve(tag)?;
    let top_desc = &image.top.descriptor;
    let t = top(&name, &top_desc.media_type, &image.top.bytes)?;
    let config_platform = match &t {
        Top::Manifest { config } => Some(super::config_platform(
            &name,
            &layout.read_manifest(&descriptor(config))?.bytes,
        )?),
        Top::Index { .. } => None,
    };
    let top_ref = BlobRef {
        media_type: top_desc.media_type.as_str().into(),
        digest: top_desc.digest.clone(),
        size: top_desc.size,
    };
    let source = source_of(&name, position, t, top_ref, config_platform)?;
    let repository = layout
        .index_annotations()?
        .get(annotation::REPOSITORY)
        .cloned();
    Ok(Opened {
        layout,
        image,
        source,
        repository,
    })
}

/// The one value of `what` the sources give (those that give one), or a refusal naming two that
/// differ.
fn agreed<T: PartialEq + Clone + std::fmt::Debug>(
    opened: &[Opened],
    what: &'static str,
    hint: &'static str,
    of: impl Fn(&Opened) -> Option<T>,
) -> Result<Option<T>, MergeError> {
    let mut first: Option<(&Opened, T)> = None;
    for o in opened {
        let Some(v) = of(o) else { continue };
        let Some((f, want)) = &first else {
            first = Some((o, v));
            continue;
        };
        if *want != v {
            return Err(MergeError::Differ {
                what,
                first: f.source.name.clone(),
                second: o.source.name.clone(),
                values: format!("{want:?} vs {v:?}"),
                hint,
            });
        }
    }
    Ok(first.map(|(_, v)| v))
}

/// The repository a signature names: the recorded one, without a tag.
fn identity(recorded: Option<&str>) -> Option<String> {
    let r = crate::oci::Reference::parse(recorded?).ok()?;
    Some(r.repository.to_string())
}

/// Merge the source layouts into `opts.output`.
pub fn merge_layouts(opts: &LayoutMergeOptions) -> Result<LayoutMergeReport, MergeError> {
    let opened = opts
        .sources
        .iter()
        .enumerate()
        .map(|(i, (dir, tag))| open(i, dir, tag.as_deref()))
        .collect::<Result<Vec<_>, _>>()?;
    let sources: Vec<Source> = opened.iter().map(|o| o.source.clone()).collect();
    let merged = plan(&sources)?;
    let tags = match opts.tags.is_empty() {
        false => opts.tags.clone(),
        true => agreed(
            &opened,
            "tags",
            "give the merged image's tags with --tag",
            |o| Some(o.image.tags.clone()),
        )?
        .unwrap_or_default(),
    };
    let repository = agreed(
        &opened,
        "the repository their definitions name",
        "merge images of one definition",
        |o| o.repository.clone(),
    )?;
    let signing = match &opts.signer {
        Some(signer) => Some(LayoutSigning {
            signer: signer.clone(),
            identity: identity(repository.as_deref()).ok_or_else(|| {
                SignError::Identity(
                    "--sign-key: a signature names the repository the image is pulled from, and \
                     no source records one (set `repository` in the image file, or sign when \
                     merging in the registry: ironstar merge REF... --repository R --sign-key)"
                        .into(),
                )
            })?,
        }),
        None => None,
    };
    // Every referrer list (SBOMs, signature bundles) is read (and refused if malformed) before
    // the output is started.
    let listed = opened
        .iter()
        .map(|o| crate::artifact::referrer::list(&o.layout))
        .collect::<Result<Vec<_>, _>>()?;
    let writer = LayoutWriter::create(&opts.output)?;
    let mut report = LayoutMergeReport {
        index: merged.index_ref.digest.clone(),
        output: opts.output.clone(),
        tags: tags.clone(),
        platforms: Vec::new(),
        sboms: 0,
        signatures_kept: 0,
        signed_for: signing.as_ref().map(|s| s.identity.clone()),
    };
    for p in &merged.parts {
        let o = &opened[p.source];
        copy_tree(&o.layout, &writer, &descriptor(&p.manifest))?;
        report.platforms.push((
            p.platform.to_string(),
            p.manifest.digest.clone(),
            o.source.name.clone(),
        ));
    }
    writer.put_blob(&merged.index)?;
    let is_sbom = |r: &Referrer| crate::sbom::is_sbom_type(&r.artifact_type);
    let referrers = copy_referrers(&opened, &listed, &merged, &writer, is_sbom)?;
    report.sboms = referrers.len();
    // In a build's order: the `.sig` manifests (the index's, then the parts'), then the
    // signature bundles likewise.
    let (mut signatures, bundles) = match &signing {
        Some(s) => (
            crate::sign::layout::write(&writer, s, &merged.index_subject())?,
            crate::artifact::sigbundle::write(
                &writer,
                s.signer.as_ref(),
                std::slice::from_ref(&merged.index_ref),
            )?,
        ),
        None => (Vec::new(), Vec::new()),
    };
    let kept = copy_signatures(&opened, &merged, &writer)?;
    report.signatures_kept = kept.len();
    signatures.extend(kept);
    signatures.extend(bundles);
    let is_bundle = |r: &Referrer| {
        r.artifact_type == crate::artifact::BUNDLE
            && crate::artifact::sigbundle::is_signature(&r.annotations)
    };
    let kept = copy_referrers(&opened, &listed, &merged, &writer, is_bundle)?;
    signatures.extend(kept.iter().map(Referrer::descriptor_json));

    let index_json = image::layout_index(&merged.index_ref, &tags)?;
    let recorded = repository
        .iter()
        .map(|r| (annotation::REPOSITORY.to_string(), r.clone()))
        .collect();
    let index_json = image::annotate_layout_index(&index_json, &recorded);
    let index_json = crate::sbom::artifact::layout_index(&index_json, &referrers);
    report.output = writer.commit(&crate::artifact::referrer::layout_index(
        &index_json,
        &signatures,
    ))?;
    Ok(report)
}

/// Copy a manifest (checked against its digest) and every blob it names (config, layers, each
/// checked) into the layout under construction.
fn copy_tree(layout: &Layout, writer: &LayoutWriter, d: &Descriptor) -> Result<(), MergeError> {
    let m = layout.read_manifest(d)?;
    writer.put_blob(&m.bytes)?;
    let v: Value = serde_json::from_slice(&m.bytes).map_err(|e| MergeError::Malformed {
        source_name: layout.root().display().to_string(),
        problem: format!("manifest {}: {e}", d.digest),
    })?;
    let name = layout.root().display().to_string();
    let children =
        std::iter::once(&v["config"]).chain(v["layers"].as_array().into_iter().flatten());
    for c in children.filter(|c| c.is_object()) {
        let b = descriptor(&super::blob_ref(&name, c)?);
        layout.verify_blob(&b)?;
        writer.put_blob_file(&layout.blob_path(&b.digest), &b.digest)?;
    }
    Ok(())
}

/// The referrers `keep` takes (SBOMs, signature bundles) whose subject is a merged platform's
/// manifest, in platform order (as a build lists them), copied with their documents.
fn copy_referrers(
    opened: &[Opened],
    listed: &[Vec<Stored>],
    merged: &Merged,
    writer: &LayoutWriter,
    keep: impl Fn(&Referrer) -> bool,
) -> Result<Vec<Referrer>, MergeError> {
    let mut out: Vec<Referrer> = Vec::new();
    for p in &merged.parts {
        for s in listed[p.source]
            .iter()
            .filter(|s| s.subject == p.manifest.digest && keep(&s.referrer))
        {
            if out.iter().any(|r| r.digest == s.referrer.digest) {
                continue;
            }
            let d = Descriptor {
                media_type: crate::oci::media_type::MANIFEST.into(),
                digest: s.referrer.digest.clone(),
                size: s.referrer.size,
                annotations: Default::default(),
                platform: None,
            };
            copy_tree(&opened[p.source].layout, writer, &d)?;
            out.push(s.referrer.clone());
        }
    }
    Ok(out)
}

/// The signature manifests the sources hold for the merged platforms' manifests, their
/// `index.json` entries as they were, in platform order.
fn copy_signatures(
    opened: &[Opened],
    merged: &Merged,
    writer: &LayoutWriter,
) -> Result<Vec<Value>, MergeError> {
    let mut out = Vec::new();
    for p in &merged.parts {
        let o = &opened[p.source];
        let path = o.layout.root().join("index.json");
        let index: Value =
            serde_json::from_slice(&crate::layout::read_in_layout(&path)?).map_err(|e| {
                MergeError::Malformed {
                    source_name: path.display().to_string(),
                    problem: e.to_string(),
                }
            })?;
        let tag = signature_tag(&p.manifest.digest).to_string();
        let entries = index["manifests"].as_array().into_iter().flatten();
        for e in entries.filter(|e| e["annotations"][annotation::REF_NAME] == tag.as_str()) {
            let d = descriptor(&super::blob_ref(&o.source.name, e)?);
            copy_tree(&o.layout, writer, &d)?;
            out.push(e.clone());
        }
    }
    Ok(out)
}
