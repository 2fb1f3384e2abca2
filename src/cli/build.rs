//! `ironstar build` and `ironstar publish` flags.

use std::path::PathBuf;

use anyhow::Context;
use ironstar::build::{BuildOptions, BuildReport};
use ironstar::platform::Platform;
use ironstar::spec::{self, ImageSpec};

#[derive(Debug, Clone, clap::Args)]
pub struct BuildArgs {
    /// Image definition file, e.g. images/ironstar.toml.
    pub image_file: Option<PathBuf>,
    /// A platform's binary: OS/ARCH[/VARIANT]=PATH (repeatable; overrides the image file).
    #[arg(long = "binary", value_name = "PLATFORM=PATH", value_parser = spec::parse_binary_flag)]
    pub binaries: Vec<(&'static Platform, PathBuf)>,
    /// Where to write the OCI layout [default: target/oci/<name>].
    #[arg(long, short)]
    pub output: Option<PathBuf>,
    /// Tag to record in the layout (repeatable; replaces the image file's tags).
    #[arg(
        long = "tag",
        short = 't',
        env = "IRONSTAR_TAGS",
        value_delimiter = ','
    )]
    pub tags: Vec<String>,
    /// Deflate level, 0 (store) to 9 (smallest).
    #[arg(long, default_value_t = ironstar::layer::DEFAULT_LEVEL, value_parser = clap::value_parser!(u32).range(0..=9))]
    pub compression_level: u32,
    #[command(flatten)]
    pub cache: super::CacheArgs,
    #[command(flatten)]
    pub sbom: super::sbom::SbomArgs,
    /// Source revision recorded as org.opencontainers.image.revision.
    #[arg(long, env = "IRONSTAR_REVISION")]
    pub revision: Option<String>,
    /// Build the binaries with cargo, for every platform of the image.
    #[arg(long)]
    pub cargo: bool,
    /// With --cargo: the package to build.
    #[arg(long, short = 'p', requires = "cargo")]
    pub package: Option<String>,
    /// With --cargo: the binary target to build.
    #[arg(long, requires = "cargo")]
    pub bin: Option<String>,
    /// With --cargo: path to Cargo.toml.
    #[arg(long, requires = "cargo")]
    pub manifest_path: Option<PathBuf>,
    /// With --cargo: cargo profile [default: release].
    #[arg(long, requires = "cargo")]
    pub profile: Option<String>,
    /// Platforms to build, comma-separated (overrides the image file's).
    #[arg(long = "platform", value_delimiter = ',', value_parser = parse_platform)]
    pub platforms: Vec<&'static Platform>,
}

fn parse_platform(s: &str) -> Result<&'static Platform, String> {
    Platform::parse(s).map_err(|e| e.to_string())
}

#[derive(Debug, Clone, clap::Args)]
pub struct PublishArgs {
    #[command(flatten)]
    pub build: BuildArgs,
    #[command(flatten)]
    pub registry: super::push::RegistryArgs,
}

/// The image definition the flags describe, and with --cargo the manifest path and package built
/// (for the SBOM).
pub fn spec_from_args(args: &BuildArgs) -> anyhow::Result<(ImageSpec, Option<(PathBuf, String)>)> {
    let mut built = None;
    let mut spec = match &args.image_file {
        Some(f) => ImageSpec::load(f)?,
        None => ImageSpec::from_binaries(&args.binaries).or_else(|e| {
            if args.cargo {
                Ok(ImageSpec {
                    tags: vec!["latest".into()],
                    platforms: default_platforms(),
                    platforms_explicit: true,
                    ..Default::default()
                })
            } else {
                Err(e)
            }
        })?,
    };
    if !args.platforms.is_empty() {
        spec.platforms = args.platforms.clone();
        spec.platforms_explicit = true;
        spec.binaries
            .retain(|k, _| args.platforms.iter().any(|p| &p.to_string() == k));
    }
    if args.cargo {
        let out = ironstar::cargo::build(&ironstar::cargo::CargoOptions {
            manifest_path: args.manifest_path.clone(),
            package: args.package.clone(),
            bin: args.bin.clone(),
            profile: args.profile.clone(),
            platforms: spec.platforms.clone(),
            image_file: args.image_file.clone(),
        })?;
        built = out.manifest_path.clone().zip(out.package.clone());
        spec.binaries.extend(out.binaries);
        if spec.version.is_none() {
            spec.version = out.version;
        }
        if spec.name.is_empty() {
            spec.name = out.name.unwrap_or_else(|| "image".into());
        }
    }
    spec.set_binaries(&args.binaries);
    let tags = super::push::tag_list(&args.tags);
    if !tags.is_empty() {
        for t in &tags {
            spec::check_tag(t).map_err(anyhow::Error::msg)?;
        }
        spec.tags = tags;
    }
    Ok((spec, built))
}

fn default_platforms() -> Vec<&'static Platform> {
    ironstar::platform::DEFAULT_PLATFORMS
        .iter()
        .map(|s| Platform::parse(s).expect("default platform"))
        .collect()
}

pub fn run(args: &BuildArgs, quiet: bool) -> anyhow::Result<BuildReport> {
    let (spec, package) = spec_from_args(args)?;
    let source_date_epoch = epoch(args)?;
    let search_from = args.image_file.as_deref().and_then(|f| f.parent());
    let output = args
        .output
        .clone()
        .unwrap_or_else(|| PathBuf::from("target/oci").join(&spec.name));
    let opts = BuildOptions {
        output,
        source_date_epoch,
        compression_level: args.compression_level,
        revision: args.revision.clone(),
        cache_dir: args.cache.dir(),
        sbom: args.sbom.options(package, search_from, source_date_epoch),
    };
    let report = ironstar::build::build(&spec, &opts)
        .with_context(|| format!("building image `{}`", spec.name))?;
    if !quiet {
        for p in &report.platforms {
            eprintln!(
                "{:<14} binary {:>10}  layer {:>10}{}  manifest {}",
                p.platform.to_string(),
                ironstar::human_bytes(p.binary_size),
                ironstar::human_bytes(p.layer_size),
                if p.cached { " (cached)" } else { "" },
                p.manifest
            );
        }
        super::sbom::summary(&report, args.sbom.no_sbom);
        eprintln!(
            "index {} -> {} (tags: {})",
            report.index,
            report.output.display(),
            report.tags.join(", ")
        );
    }
    Ok(report)
}

/// SOURCE_DATE_EPOCH, or with --cargo the last commit's time, or 0.
fn epoch(args: &BuildArgs) -> anyhow::Result<i64> {
    if std::env::var_os("SOURCE_DATE_EPOCH").is_some() || !args.cargo {
        return Ok(BuildOptions::epoch_from_env()?);
    }
    let within = args.manifest_path.as_deref().or(args.image_file.as_deref());
    Ok(ironstar::cargo::commit_time(within).unwrap_or(0))
}

/// Build, then push what was built: the same image file, tags and layout.
pub fn publish(args: PublishArgs, quiet: bool) -> anyhow::Result<()> {
    let report = run(&args.build, quiet)?;
    let spec = args
        .build
        .image_file
        .as_deref()
        .map(ImageSpec::load)
        .transpose()?;
    let plan =
        ironstar::push::Plan::built(&report, spec.as_ref(), args.registry.repository.as_deref())?;
    let no_sbom = args.build.sbom.no_sbom;
    super::push::run_plan(plan, &args.registry, &args.build.cache, no_sbom, quiet)
}
