//! `ironstar load` flags and the glue from them to [`ironstar::load`] and [`ironstar::archive`].

use std::path::PathBuf;

use anyhow::{bail, Context};
use ironstar::archive::{self, host_platform};
use ironstar::layout::Layout;
use ironstar::platform::Platform;
use ironstar::spec::ImageSpec;

#[derive(Debug, Clone, clap::Args)]
pub struct LoadArgs {
    /// Image definition file, e.g. images/ironstar.toml (supplies the name and the default layout
    /// target/oci/<name>).
    pub image_file: Option<PathBuf>,
    /// The OCI layout to load from [default: target/oci/<name> of the image file].
    #[arg(long)]
    pub layout: Option<PathBuf>,
    /// The platform to load, OS/ARCH[/VARIANT] [default: this machine's].
    #[arg(long, conflicts_with = "all")]
    pub platform: Option<String>,
    /// The image of the layout to load, and the tag it gets [default: the layout's only image,
    /// and its first tag].
    #[arg(long, short = 't')]
    pub tag: Option<String>,
    /// Write a docker-archive to FILE instead of loading it into podman or docker (for any other
    /// engine: `docker load -i FILE`, `podman load -i FILE`).
    #[arg(long, short, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Every platform, as an oci-archive written to --output (for engines that take one).
    #[arg(long, requires = "output")]
    pub all: bool,
}

/// Load as the flags say. stdout: the name the image was loaded under (`--output`: the name it
/// carries; `--all`: the index digest).
pub fn run(args: &LoadArgs) -> anyhow::Result<()> {
    let spec = args
        .image_file
        .as_deref()
        .map(|f| ImageSpec::load_with(f, ironstar::spec::SourcePolicy::Anywhere))
        .transpose()?;
    let layout_dir = match (&args.layout, &spec) {
        (Some(l), _) => l.clone(),
        (None, Some(s)) => PathBuf::from("target/oci").join(&s.name),
        (None, None) => bail!("nothing to load: give an image file or --layout DIR"),
    };
    let layout = Layout::open(&layout_dir)?;
    let resolved = layout.resolve(args.tag.as_deref())?;
    if args.all {
        let out = args
            .output
            .as_deref()
            .expect("clap: --all requires --output");
        ironstar::load::write_file(out, |w| archive::write_oci_archive(&layout, &resolved, w))?;
        println!("{}", resolved.top.descriptor.digest);
        return Ok(());
    }
    let platform = match &args.platform {
        Some(p) => Platform::parse(p)?,
        None => host_platform().context(
            "this machine's architecture is not one ironstar packs for; pass --platform",
        )?,
    };
    let image = archive::select(&layout, &resolved, platform)?;
    let name = spec
        .map(|s| s.name)
        .or_else(|| image.title.clone())
        .or_else(|| dir_name(&layout_dir))
        .context("the image has no name: give its image file")?;
    let tag = args
        .tag
        .clone()
        .or_else(|| resolved.tags.first().cloned())
        .unwrap_or_else(|| "latest".into());
    let repo_tag = format!("{name}:{tag}");
    if let Some(out) = &args.output {
        ironstar::load::write_file(out, |w| {
            archive::write_docker_archive(&layout, &image, std::slice::from_ref(&repo_tag), w)
        })?;
        println!("{repo_tag}");
        return Ok(());
    }
    let engine = ironstar::load::find_engine().ok_or(ironstar::load::LoadError::NoEngine)?;
    tracing::info!(
        "loading {platform} of {} into {engine}",
        layout_dir.display()
    );
    for loaded in ironstar::load::load(engine, &layout, &image, &repo_tag)? {
        println!("{loaded}");
    }
    Ok(())
}

/// A layout directory's name, if it is a valid image name.
fn dir_name(dir: &std::path::Path) -> Option<String> {
    let n = std::fs::canonicalize(dir)
        .ok()?
        .file_name()?
        .to_str()?
        .to_string();
    let ok = n
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && n.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c));
    ok.then_some(n)
}
