//! The SBOM flags of `build`/`publish`, and `ironstar sbom`, which prints the SBOM of a layout or
//! of a pushed image.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use ironstar::platform::Platform;
use ironstar::sbom::{CargoSource, Format, SbomOptions};

#[derive(Debug, Clone, clap::Args)]
pub struct SbomArgs {
    /// Attach no SBOM to the platform manifests.
    #[arg(long, env = "IRONSTAR_NO_SBOM", value_parser = clap::builder::FalseyValueParser::new())]
    pub no_sbom: bool,
    /// A platform's SBOM (SPDX or CycloneDX JSON), used when its binary has no `.dep-v0` section
    /// and there is no --cargo: OS/ARCH[/VARIANT]=FILE (repeatable).
    #[arg(long = "sbom", value_name = "PLATFORM=FILE", value_parser = parse_sbom_flag)]
    pub files: Vec<(&'static Platform, PathBuf)>,
    /// The SBOM format: spdx (SPDX 2.3 JSON) or cyclonedx (CycloneDX 1.5 JSON).
    #[arg(long, value_name = "FORMAT", default_value = "spdx", value_parser = Format::parse)]
    pub sbom_format: Format,
}

fn parse_sbom_flag(s: &str) -> Result<(&'static Platform, PathBuf), String> {
    let (p, f) = s
        .split_once('=')
        .ok_or_else(|| format!("`{s}`: expected PLATFORM=FILE"))?;
    let p = Platform::parse(p).map_err(|e| e.to_string())?;
    Ok((p, PathBuf::from(f)))
}

impl SbomArgs {
    /// The library's options; `cargo` is the `--cargo` package (manifest path, package name).
    pub fn options(
        &self,
        cargo: Option<CargoSource>,
        search_from: Option<&Path>,
        epoch: i64,
    ) -> Option<SbomOptions> {
        if self.no_sbom {
            return None;
        }
        let lockfile = match &cargo {
            Some(c) => {
                ironstar::sbom::lockfile::find(c.manifest_path.parent().unwrap_or(Path::new(".")))
            }
            None => search_from
                .and_then(ironstar::sbom::lockfile::find)
                .or_else(|| ironstar::sbom::lockfile::find(Path::new("."))),
        };
        Some(SbomOptions {
            format: self.sbom_format,
            cargo,
            files: self
                .files
                .iter()
                .map(|(p, f)| (p.to_string(), f.clone()))
                .collect(),
            lockfile,
            source_date_epoch: epoch,
        })
    }
}

/// `ironstar sbom`.
#[derive(Debug, Clone, clap::Args)]
pub struct SbomCommand {
    /// Image definition file (its layout target/oci/<name>), or REGISTRY/REPO[:TAG|@DIGEST].
    pub image: Option<String>,
    /// The OCI layout to read.
    #[arg(long, conflicts_with = "image")]
    pub layout: Option<PathBuf>,
    /// Which platform's SBOM [default: the only one].
    #[arg(long)]
    pub platform: Option<String>,
    /// Talk plain http to the registry.
    #[arg(long)]
    pub plain_http: bool,
}

pub fn run(args: &SbomCommand) -> anyhow::Result<()> {
    let platform = args
        .platform
        .as_deref()
        .map(Platform::parse)
        .transpose()?
        .map(|p| p.to_string());
    let bytes = match (&args.layout, &args.image) {
        (Some(l), _) => ironstar::sbom::fetch::from_layout(l, platform.as_deref())?,
        (None, Some(i)) if Path::new(i).is_file() => {
            let spec = ironstar::spec::ImageSpec::load_with(
                Path::new(i),
                ironstar::spec::SourcePolicy::Anywhere,
            )?;
            let l = PathBuf::from("target/oci").join(&spec.name);
            ironstar::sbom::fetch::from_layout(&l, platform.as_deref())?
        }
        (None, Some(r)) => {
            let reference = ironstar::registry::Reference::parse(r)?;
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("starting the async runtime")?;
            runtime.block_on(ironstar::sbom::fetch::from_registry(
                &reference,
                args.plain_http,
                platform.as_deref(),
            ))?
        }
        (None, None) => bail!("give an image file, --layout DIR or REGISTRY/REPO[:TAG]"),
    };
    use std::io::Write as _;
    std::io::stdout().write_all(&bytes)?;
    Ok(())
}

/// One line for the build's summary: where each SBOM came from, and which platforms have none.
pub fn summary(report: &ironstar::build::BuildReport, off: bool) {
    if off {
        return;
    }
    let (with, without): (Vec<_>, Vec<_>) = report.platforms.iter().partition(|p| p.sbom.is_some());
    let with: Vec<String> = with
        .iter()
        .map(|p| format!("{} from {}", p.platform, p.sbom.as_deref().unwrap_or("")))
        .collect();
    let without: Vec<String> = without.iter().map(|p| p.platform.to_string()).collect();
    match (with.is_empty(), without.is_empty()) {
        (_, true) => eprintln!("sbom: {}", with.join(", ")),
        (true, false) => eprintln!(
            "sbom: none (no usable .dep-v0 section in the binaries, no --cargo, no --sbom PLATFORM=FILE)"
        ),
        (false, false) => eprintln!(
            "sbom: {}; none for {} (no usable .dep-v0 section, no --cargo, no --sbom file)",
            with.join(", "),
            without.join(", ")
        ),
    }
}
