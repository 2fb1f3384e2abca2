//! `ironstar build` and `ironstar publish` flags.

use std::path::PathBuf;

use anyhow::Context;
use ironstar::build::{BuildOptions, BuildReport};
use ironstar::definition::Request;
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
    /// How layers are compressed: gzip (every runtime reads it) or zstd (faster to build and to
    /// unpack; needs containerd 1.5+, Docker 23+, podman 3+) [default: the image file's
    /// `compression`, else gzip].
    #[arg(long, value_name = "gzip|zstd")]
    pub compression: Option<ironstar::compress::Algorithm>,
    #[arg(long, value_name = "N", help = level_help())]
    pub compression_level: Option<u32>,
    #[command(flatten)]
    pub cache: super::CacheArgs,
    #[command(flatten)]
    pub sbom: super::sbom::SbomArgs,
    #[command(flatten)]
    pub sign: super::sign::SignArgs,
    /// Source revision recorded as org.opencontainers.image.revision.
    #[arg(long, env = "IRONSTAR_REVISION")]
    pub revision: Option<String>,
    /// Build the binaries with cargo, for every platform of the image.
    #[arg(long)]
    pub cargo: bool,
    #[command(flatten)]
    pub cargo_args: CargoArgs,
    /// Platforms to build, comma-separated (overrides the image file's).
    #[arg(long = "platform", value_delimiter = ',', value_parser = parse_platform)]
    pub platforms: Vec<&'static Platform>,
    /// Rootfs items, comma-separated: ca-certificates, tzdata, nonroot, tmp (replaces the image file's `rootfs`).
    #[arg(long, value_name = "ITEM,...", value_delimiter = ',', value_parser = spec::parse_rootfs_flag, long_help = ironstar::rootfs::help())]
    pub rootfs: Option<Vec<ironstar::spec::RootfsItem>>,
    /// The image to build on, REGISTRY/REPO[:TAG][@sha256:…] (replaces the image file's `base`); a pinned digest already in the cache is used offline.
    #[arg(long, value_name = "REFERENCE", value_parser = parse_reference)]
    pub base: Option<ironstar::oci::Reference>,
    /// Pull the base over plain http (a loopback test registry).
    #[arg(long)]
    pub base_plain_http: bool,
    /// Take `files[].source` from anywhere on this machine, not only from the definition's
    /// directory, workspace or repository.
    #[arg(long)]
    pub allow_outside_sources: bool,
}

fn parse_reference(s: &str) -> Result<ironstar::oci::Reference, String> {
    ironstar::oci::Reference::parse(s).map_err(|e| e.to_string())
}

/// With --cargo: which package to build and how, in cargo's own spelling.
#[derive(Debug, Clone, clap::Args)]
pub struct CargoArgs {
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
    /// With --cargo: features to activate (comma- or space-separated; repeatable).
    #[arg(long, short = 'F', requires = "cargo")]
    pub features: Vec<String>,
    /// With --cargo: activate all features.
    #[arg(long, requires = "cargo")]
    pub all_features: bool,
    /// With --cargo: do not activate the `default` feature.
    #[arg(long, requires = "cargo")]
    pub no_default_features: bool,
    /// With --cargo: Cargo.lock must be up to date.
    #[arg(long, requires = "cargo")]
    pub locked: bool,
    /// With --cargo: Cargo.lock and the cache must be up to date, no network.
    #[arg(long, requires = "cargo")]
    pub frozen: bool,
    /// With --cargo: no network.
    #[arg(long, requires = "cargo")]
    pub offline: bool,
    /// With --cargo: cargo's target directory.
    #[arg(long, requires = "cargo", value_name = "DIRECTORY")]
    pub target_dir: Option<PathBuf>,
    /// With --cargo: parallel jobs (a number, or `default`).
    #[arg(long, short = 'j', requires = "cargo", value_name = "N")]
    pub jobs: Option<String>,
    /// With --cargo: arguments after `--` go to `cargo build` untouched.
    #[arg(last = true, requires = "cargo", value_name = "CARGO_ARGS")]
    pub args: Vec<std::ffi::OsString>,
}

impl CargoArgs {
    fn options(&self, image_file: Option<PathBuf>) -> ironstar::cargo::CargoOptions {
        ironstar::cargo::CargoOptions {
            manifest_path: self.manifest_path.clone(),
            package: self.package.clone(),
            bin: self.bin.clone(),
            profile: self.profile.clone(),
            image_file,
            features: ironstar::cargo::Features {
                features: self.features.clone(),
                all_features: self.all_features,
                no_default_features: self.no_default_features,
            },
            locked: self.locked,
            frozen: self.frozen,
            offline: self.offline,
            target_dir: self.target_dir.clone(),
            jobs: self.jobs.clone(),
            args: self.args.clone(),
        }
    }
}

/// `--compression-level`'s help, from the library's ranges and defaults.
fn level_help() -> String {
    use ironstar::compress::Algorithm;
    let one = |a: Algorithm| {
        let r = a.levels();
        let d = a.default_level();
        format!("{a} {} to {} [default: {d}]", r.start(), r.end())
    };
    format!(
        "Compression level (higher: smaller, slower): {}; {}",
        one(Algorithm::Gzip),
        one(Algorithm::Zstd)
    )
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

impl BuildArgs {
    /// The flags as the library's build request.
    fn request(&self) -> Request {
        Request {
            image_file: self.image_file.clone(),
            binaries: self.binaries.clone(),
            platforms: self.platforms.clone(),
            tags: super::push::tag_list(&self.tags),
            cargo: self
                .cargo
                .then(|| self.cargo_args.options(self.image_file.clone())),
            rootfs: self.rootfs.clone(),
            base: self.base.clone(),
            compression: self.compression,
            sources: match self.allow_outside_sources {
                true => spec::SourcePolicy::Anywhere,
                false => spec::SourcePolicy::Confined,
            },
        }
    }
}

pub fn run(args: &BuildArgs, quiet: bool) -> anyhow::Result<BuildReport> {
    Ok(run_spec(args, None, quiet)?.0)
}

/// Build; the report and the image definition it was built from. With --sign-key, the
/// signatures name `repository` (publish's destination), else the image file's.
fn run_spec(
    args: &BuildArgs,
    repository: Option<&str>,
    quiet: bool,
) -> anyhow::Result<(BuildReport, ImageSpec)> {
    // The key first: a wrong password fails before cargo runs.
    let signer = args.sign.signer()?;
    let request = args.request();
    let (spec, built) = request.resolve()?;
    let sign = match signer {
        Some(signer) => {
            let r = repository.filter(|r| !r.is_empty());
            let identity = super::sign::identity(r.or(spec.repository.as_deref()))?;
            Some(ironstar::sign::layout::LayoutSigning { signer, identity })
        }
        None => None,
    };
    let (source_date_epoch, note) = request.source_date_epoch_noted()?;
    if let Some(note) = note.filter(|_| !quiet) {
        eprintln!("note: {note}");
    }
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
        sbom: args.sbom.options(
            built.as_ref().map(|b| b.source.clone()),
            search_from,
            source_date_epoch,
        ),
        sign,
        base: ironstar::base::BaseOptions {
            plain_http: args.base_plain_http,
            max_attempts: 0,
        },
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
        if let Some((size, cached)) = report.rootfs {
            let items: Vec<&str> = spec.rootfs.iter().map(|i| i.name()).collect();
            eprintln!(
                "{:<14} layer {:>10}{}  ({})",
                "rootfs",
                ironstar::human_bytes(size),
                if cached { " (cached)" } else { "" },
                items.join(", ")
            );
        }
        if let Some((reference, digest, layers)) = &report.base {
            eprintln!("{:<14} {reference} = {digest} ({layers} layers)", "base");
        }
        super::sbom::summary(&report, args.sbom.no_sbom);
        if let Some(s) = &opts.sign {
            eprintln!(
                "signed: the index and {} platform manifest(s), for {}",
                report.platforms.len(),
                s.identity
            );
        }
        eprintln!(
            "index {} -> {} (tags: {})",
            report.index,
            report.output.display(),
            report.tags.join(", ")
        );
        if let Some(out) = built.map(|b| b.output).filter(|o| !o.debug_info.is_empty()) {
            eprintln!(
                "note: {}: the binary carries debug info and is shipped as built; to leave it \
                 out, set `strip = \"debuginfo\"` (or `debug = false`) under [profile.{}] in \
                 Cargo.toml",
                out.debug_info.join(", "),
                args.cargo_args.profile.as_deref().unwrap_or("release"),
            );
        }
    }
    Ok((report, spec))
}

/// Build, then push what was built: the same image file, tags and layout.
pub fn publish(args: PublishArgs, quiet: bool) -> anyhow::Result<()> {
    let repository = args.registry.repository.as_deref();
    let (report, spec) = run_spec(&args.build, repository, quiet)?;
    let plan =
        ironstar::push::Plan::built(&report, Some(&spec), args.registry.repository.as_deref())?;
    let no_sbom = args.build.sbom.no_sbom;
    // Signed by the build, for this push's repository: the push sends what the layout holds.
    let signing = super::push::Signing::default();
    super::push::run_plan(
        plan,
        &args.registry,
        &args.build.cache,
        no_sbom,
        signing,
        quiet,
    )
}
