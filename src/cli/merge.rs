//! `ironstar merge` flags and the glue from them to [`ironstar::merge`].

use std::path::PathBuf;

use anyhow::Context;
use ironstar::merge::layout::{merge_layouts, LayoutMergeOptions};
use ironstar::merge::registry::{merge_in_registry, RegistryMergeOptions, RegistryMergeReport};
use ironstar::push::ProgressMode;
use ironstar::registry::client::DEFAULT_MAX_ATTEMPTS;
use ironstar::registry::{Reference, Tag};

#[derive(Debug, Clone, clap::Args)]
pub struct MergeArgs {
    /// The per-platform parts, in any order (the index lists platforms in `ironstar platforms`'
    /// order, as a build of a definition does). With --output, OCI layouts (DIR or DIR:TAG);
    /// else pushed images, REGISTRY/REPO[:TAG|@DIGEST]. Commas and newlines separate too (one
    /// argument holding a list: the action's `sources`).
    #[arg(required = true, value_name = "SOURCE")]
    pub sources: Vec<String>,
    /// Write the merged OCI layout to DIR (the sources are layouts).
    #[arg(long, short, value_name = "DIR")]
    pub output: Option<PathBuf>,
    /// Merge in the registry, into REGISTRY/REPO (the sources are images there, in another
    /// repository, or in another registry: only manifests are read, blobs are mounted or
    /// copied when not in REPO already).
    #[arg(
        long,
        value_name = "REGISTRY/REPO",
        env = "IRONSTAR_REPOSITORY",
        required_unless_present = "output"
    )]
    pub repository: Option<String>,
    /// Tag for the merged index (repeatable). In a registry: moved last, once the index and its
    /// signature are up; none: by digest only. For --output: recorded in the layout
    /// [default: the sources' tags, which must agree].
    #[arg(
        long = "tag",
        short = 't',
        value_name = "TAG",
        env = "IRONSTAR_TAGS",
        value_delimiter = ','
    )]
    pub tags: Vec<String>,
    #[command(flatten)]
    pub sign: super::sign::SignArgs,
    /// Talk plain http to the registries (a local test registry); https otherwise.
    #[arg(long)]
    pub plain_http: bool,
    /// Attempts per request before giving up on transient failures.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_ATTEMPTS, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub max_attempts: u32,
    /// Also write the merged image's reference (REGISTRY/REPO@DIGEST) to FILE.
    #[arg(long, value_name = "FILE")]
    pub image_refs: Option<PathBuf>,
}

/// Merge as the flags say. stdout: the index digest (--output) or REGISTRY/REPO@DIGEST.
pub fn run(args: &MergeArgs, quiet: bool) -> anyhow::Result<()> {
    let signer = args.sign.signer()?;
    let sources = super::push::tag_list(&args.sources)
        .into_iter()
        .flat_map(|s| {
            s.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect::<Vec<_>>()
        })
        .collect::<Vec<_>>();
    if sources.is_empty() {
        anyhow::bail!("merge: no source given (a layout or an image per platform)");
    }
    let tags = super::push::tag_list(&args.tags);
    if let Some(output) = &args.output {
        let opts = LayoutMergeOptions {
            sources: sources
                .iter()
                .map(|s| ironstar::push::split_layout_arg(s))
                .collect(),
            output: output.clone(),
            tags,
            signer,
        };
        let r = merge_layouts(&opts)?;
        if !quiet {
            for (p, d, from) in &r.platforms {
                eprintln!("{p:<14} manifest {d}  from {from}");
            }
            eprintln!(
                "kept: {} SBOM(s), {} platform signature(s){}",
                r.sboms,
                r.signatures_kept,
                match &r.signed_for {
                    Some(id) => format!("; the index signed for {id}"),
                    None => String::new(),
                }
            );
            eprintln!(
                "index {} -> {} (tags: {})",
                r.index,
                r.output.display(),
                r.tags.join(", ")
            );
        }
        println!("{}", r.index);
        return write_ref(args, &r.index.to_string(), &r.index.to_string());
    }
    // An empty repository (the action's blank input) is none.
    let Some(repository) = args.repository.as_deref().filter(|r| !r.is_empty()) else {
        anyhow::bail!(
            "merge: nowhere to merge into: give --output DIR (the sources are layouts) or \
             --repository REGISTRY/REPO (the sources are pushed images)"
        );
    };
    let reference = Reference::parse(repository).context("--repository")?;
    let mut tags = tags
        .iter()
        .map(|t| Tag::parse(t).map_err(anyhow::Error::msg))
        .collect::<anyhow::Result<Vec<_>>>()?;
    if let Some(t) = reference.tag.filter(|t| !tags.contains(t)) {
        tags.push(t);
    }
    let opts = RegistryMergeOptions {
        sources: sources
            .iter()
            .map(|s| Reference::parse(s))
            .collect::<Result<_, _>>()?,
        repository: reference.repository,
        tags,
        plain_http: args.plain_http,
        credential: None,
        max_attempts: args.max_attempts,
        signer,
        progress: match quiet {
            true => ProgressMode::Quiet,
            false => ProgressMode::Auto,
        },
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let r = runtime.block_on(merge_in_registry(&opts))?;
    if !quiet {
        summary(&r);
    }
    println!("{}", r.image);
    write_ref(args, &r.image, &r.index.to_string())
}

fn summary(r: &RegistryMergeReport) {
    for (p, d, from) in &r.platforms {
        eprintln!("{p:<14} manifest {d}  from {from}");
    }
    let moved = match (r.mounted, r.copied) {
        (0, 0) => "no blob moved (every part was in the repository)".to_string(),
        (m, 0) => format!("{m} blob(s) mounted from another repository, none copied"),
        (m, c) => format!(
            "{m} blob(s) mounted, {c} copied from another registry ({}, each checked against its digest)",
            ironstar::human_bytes(r.copied_bytes)
        ),
    };
    eprintln!("{moved}");
    let tags: Vec<&str> = r.tags_moved.iter().map(Tag::as_str).collect();
    eprintln!(
        "index {}{} (tags: {})",
        r.index,
        if r.signed { ", signed" } else { "" },
        if tags.is_empty() {
            "none, by digest".to_string()
        } else {
            tags.join(", ")
        }
    );
}

/// `--image-refs FILE`, and `digest`/`image` in `$GITHUB_OUTPUT`.
fn write_ref(args: &MergeArgs, image: &str, digest: &str) -> anyhow::Result<()> {
    if let Some(path) = &args.image_refs {
        std::fs::write(path, format!("{image}\n"))
            .with_context(|| format!("--image-refs: writing {}", path.display()))?;
    }
    super::push::github_output(&format!("digest={digest}\nimage={image}"))
}
