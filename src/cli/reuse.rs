//! Reuse flags (`--rebuild`, `--check-reuse`) and the glue from a `--cargo` build or publish to
//! [`ironstar::reuse`]: each planned image's key, the local layouts or registry records that
//! match it, and what the summary says of a reused image.

use std::sync::Arc;

use anyhow::bail;
use ironstar::cargo::Selection;
use ironstar::definition::{Planned, Request};
use ironstar::publish;
use ironstar::push::NamedPush;
use ironstar::reuse::{self, Hit, InputKey, Miss, Record, Wanted};

#[derive(Debug, Clone, clap::Args)]
pub struct ReuseArgs {
    /// With --cargo: build even where a reuse record says the inputs are unchanged (also
    /// IRONSTAR_REBUILD=1).
    #[arg(long, env = "IRONSTAR_REBUILD", value_parser = clap::builder::FalseyValueParser::new())]
    pub rebuild: bool,
    /// With --cargo: build every image anyway, and fail (naming the image and both digests) if
    /// one a reuse record would have reused builds to another index: a reproducibility audit.
    #[arg(long, requires = "cargo")]
    pub check_reuse: bool,
}

/// One planned image and what reuse knows of it.
pub struct Image {
    pub planned: Planned,
    pub key: Option<InputKey>,
    /// Publish: the registry's record holds; build: the layout's does.
    pub reused: Option<Reused>,
}

/// What a reused image is: the record that holds, and (publish) the registry's hit.
pub struct Reused {
    pub record: Record,
    pub index: ironstar::Digest,
    pub hit: Option<Hit>,
}

impl Image {
    pub fn selection(&self) -> Option<&Selection> {
        self.planned.selection.as_ref()
    }
}

/// Each planned image with its key (with `--cargo`).
pub fn keyed(
    args: &super::build::BuildArgs,
    request: &Request,
    planned: Vec<Planned>,
    signer: Option<&Arc<dyn ironstar::sign::Signer>>,
) -> Vec<Image> {
    let opts = reuse::KeyOptions {
        compression_level: args.compression_level,
        // The provenance attested beside the signatures is part of what is attached.
        signer: signer.map(|s| match args.sign.no_provenance {
            true => s.describe(),
            false => format!("{} with provenance", s.describe()),
        }),
        sbom: sbom_input(&args.sbom),
        base_plain_http: args.base_plain_http,
    };
    let keys = reuse::keys(request, &planned, &opts);
    planned
        .into_iter()
        .zip(keys)
        .map(|(planned, key)| Image {
            planned,
            key,
            reused: None,
        })
        .collect()
}

/// The SBOMs a build attaches, as a key input: `none`, or the format and each file given.
fn sbom_input(sbom: &super::sbom::SbomArgs) -> String {
    if sbom.no_sbom {
        return "none".into();
    }
    let files: Vec<String> = sbom
        .files
        .iter()
        .map(|(p, f)| format!("{p}={}", reuse::files::digest_path(f)))
        .collect();
    format!("{:?} {}", sbom.sbom_format, files.join(" "))
}

/// Local `build --cargo`: mark the images whose layout already holds a record of their key
/// whose declared inputs are unchanged, under the tags asked for now.
pub fn find_layouts(args: &super::build::BuildArgs, request: &Request, images: &mut [Image]) {
    if args.reuse.rebuild || args.reuse.check_reuse {
        return;
    }
    let several = images.len() > 1;
    for img in images.iter_mut() {
        let (Some(key), Some(sel)) = (&img.key, img.selection()) else {
            continue;
        };
        let name = &img.planned.spec.name;
        let dir = publish::layout_dir(args.output.as_deref(), name, several);
        let Ok(layout) = ironstar::layout::Layout::open(&dir) else {
            continue;
        };
        let Some(record) = reuse::layout_record(&layout).filter(|r| r.key == key.digest) else {
            continue;
        };
        if record.declared.first_changed(&sel.workspace_root).is_some() {
            continue;
        }
        let mut spec = img.planned.spec.clone();
        let mut tags = match request.finish(&mut spec) {
            Ok(()) => spec.tags,
            Err(_) => continue,
        };
        tags.sort();
        let image = layout.resolve(None).ok().filter(|i| {
            let mut theirs = i.tags.clone();
            theirs.sort();
            theirs == tags
        });
        if let Some(image) = image {
            let index = image.top.descriptor.digest.clone();
            img.reused = Some(Reused {
                record,
                index,
                hit: None,
            });
        }
    }
}

/// Publish: look every keyed image up in its repository, together; mark the hits. A record
/// that cannot be read is a miss with one warning.
pub fn find_records(
    args: &super::build::BuildArgs,
    images: &mut [Image],
    pushes: &[NamedPush],
    runtime: &tokio::runtime::Runtime,
    quiet: bool,
) {
    if args.reuse.rebuild {
        return;
    }
    let mut wanted = Vec::new();
    let mut at = Vec::new();
    for (i, (img, push)) in images.iter().zip(pushes).enumerate() {
        let (Some(key), Some(sel)) = (&img.key, img.selection()) else {
            continue;
        };
        wanted.push(Wanted {
            name: push.name.clone(),
            opts: push.opts.clone(),
            key: key.digest.clone(),
            root: sel.workspace_root.clone(),
        });
        at.push(i);
    }
    if wanted.is_empty() {
        return;
    }
    let found = runtime.block_on(reuse::lookup_all(&wanted));
    for (i, result) in at.into_iter().zip(found) {
        let name = &images[i].planned.spec.name;
        match result {
            Ok(hit) => {
                images[i].reused = Some(Reused {
                    record: hit.record.clone(),
                    index: hit.index.digest.clone(),
                    hit: Some(hit),
                })
            }
            Err(Miss::Unreadable(why)) => {
                tracing::warn!("{name}: the reuse record is ignored, building: {why}")
            }
            Err(Miss::Changed(why)) if !quiet => eprintln!("{name}: building: {why}"),
            Err(_) => {}
        }
    }
}

/// `--check-reuse`: a rebuilt image must be the index its record named.
pub fn check(name: &str, reused: &Reused, built: &ironstar::Digest) -> anyhow::Result<()> {
    if *built != reused.index {
        bail!(
            "--check-reuse: image `{name}` builds to {built}, but the reuse record of its inputs \
             (since {}) names {}: the build is not reproducible, or an input the key cannot see \
             changed",
            reused.record.since(),
            reused.index
        );
    }
    Ok(())
}

/// The summary line of a reused image.
pub fn summary(name: &str, reused: &Reused, several: bool) -> String {
    let who = match several {
        true => format!("{name}: "),
        false => String::new(),
    };
    let tags = match &reused.hit {
        Some(h) if !h.moving.is_empty() => {
            let moved: Vec<&str> = h.moving.iter().map(|t| t.as_str()).collect();
            format!("; tags moved: {}", moved.join(", "))
        }
        Some(_) => "; tags already there".to_string(),
        None => String::new(),
    };
    format!(
        "{who}reused: inputs unchanged since {} (index {}){tags}",
        reused.record.since(),
        reused.index
    )
}
