//! `ironstar build` and `ironstar publish` flags.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use ironstar::build::{BuildOptions, BuildReport};
use ironstar::definition::{Request, Resolved};
use ironstar::platform::Platform;
use ironstar::publish;
use ironstar::spec::{self, ImageSpec};
use ironstar::Digest;

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
    #[command(flatten)]
    pub reuse: super::reuse::ReuseArgs,
}

fn parse_reference(s: &str) -> Result<ironstar::oci::Reference, String> {
    ironstar::oci::Reference::parse(s).map_err(|e| e.to_string())
}

/// With --cargo: which package to build and how, in cargo's own spelling.
#[derive(Debug, Clone, clap::Args)]
pub struct CargoArgs {
    /// With --cargo: a package to build, one image (repeatable).
    #[arg(long = "package", short = 'p', requires = "cargo", value_name = "SPEC")]
    pub packages: Vec<String>,
    /// With --cargo: every member of the workspace with a binary, one image each.
    #[arg(long, requires = "cargo")]
    pub workspace: bool,
    /// With --cargo --workspace: leave this member out (repeatable).
    #[arg(long, requires = "workspace", value_name = "SPEC")]
    pub exclude: Vec<String>,
    /// With --cargo: a binary target to build, one image (repeatable; finds its package).
    #[arg(long = "bin", requires = "cargo", value_name = "NAME")]
    pub bins: Vec<String>,
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
    /// With --cargo: the C allocator of the binaries: system (musl's) or mimalloc (linked in
    /// place of musl's malloc; much faster when threads allocate at once) [default: the image
    /// definition's `allocator`, else system].
    #[arg(long, requires = "cargo", value_name = "mimalloc|system")]
    pub allocator: Option<ironstar::cargo::Allocator>,
    /// With --cargo: arguments after `--` go to `cargo build` untouched.
    #[arg(last = true, requires = "cargo", value_name = "CARGO_ARGS")]
    pub args: Vec<std::ffi::OsString>,
}

impl CargoArgs {
    fn options(&self, image_file: Option<PathBuf>) -> ironstar::cargo::CargoOptions {
        ironstar::cargo::CargoOptions {
            manifest_path: self.manifest_path.clone(),
            packages: self.packages.clone(),
            workspace: self.workspace,
            exclude: self.exclude.clone(),
            bins: self.bins.clone(),
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
            allocator: self.allocator,
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
    pub fn request(&self) -> Request {
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

/// One built image: what the build reported and the definition it was built from.
pub struct BuiltImage {
    pub report: BuildReport,
    pub spec: ImageSpec,
}

/// Build every image the flags select (one with an image file or `--binary`; with `--cargo`
/// one per selected member), in name order; with `--cargo`, an image whose layout holds a
/// record of its inputs is left as it is (`--rebuild` builds it). With --sign-key, the
/// signatures name each image's destination (`repository`: publish's flag, as
/// [`publish::repository_for`] applies it). Returns each image's name and index digest.
pub fn run(
    args: &BuildArgs,
    repository: Option<&str>,
    quiet: bool,
) -> anyhow::Result<Vec<(String, Digest)>> {
    // The key first: a wrong password fails before cargo runs.
    let signer = args.sign.signer()?;
    let request = args.request();
    let mut images = super::reuse::keyed(args, &request, request.plan()?, signer.as_ref());
    super::reuse::find_layouts(args, &request, &mut images);
    let several = images.len() > 1;
    let built = build_images(args, &request, &images, signer, repository, quiet)?;
    let mut digests = Vec::new();
    for (i, img) in images.iter().enumerate() {
        let name = img.planned.spec.name.clone();
        match (&img.reused, built.iter().find(|(j, _)| *j == i)) {
            (_, Some((_, b))) => digests.push((name, b.report.index.clone())),
            (Some(r), None) => {
                if !quiet {
                    let dir = publish::layout_dir(args.output.as_deref(), &name, several);
                    let line = super::reuse::summary(&name, r, several);
                    eprintln!("{line}; {} left as it is", dir.display());
                }
                digests.push((name, r.index.clone()));
            }
            (None, None) => {}
        }
    }
    Ok(digests)
}

/// Build the images of `images` that are not reused (with `--check-reuse`, every one, each
/// reused one with its record's date and revision); each with its index in `images`.
pub(super) fn build_images(
    args: &BuildArgs,
    request: &Request,
    images: &[super::reuse::Image],
    signer: Option<Arc<dyn ironstar::sign::Signer>>,
    repository: Option<&str>,
    quiet: bool,
) -> anyhow::Result<Vec<(usize, BuiltImage)>> {
    let todo: Vec<usize> = (0..images.len())
        .filter(|&i| images[i].reused.is_none() || args.reuse.check_reuse)
        .collect();
    let planned = todo.iter().map(|&i| images[i].planned.clone()).collect();
    let resolved = request.build(planned)?;
    let extras = todo
        .iter()
        .map(|&i| Extra {
            key: images[i].key.clone().zip(images[i].selection().cloned()),
            replay: images[i].reused.as_ref().map(|r| r.record.clone()),
        })
        .collect();
    let several = images.len() > 1;
    let built = build_resolved_with(
        args, request, resolved, extras, signer, repository, several, quiet,
    )?;
    Ok(todo.into_iter().zip(built).collect())
}

/// What reuse adds to one image's build: its key (and selection) for the record, and with
/// `--check-reuse` the record whose build it repeats (its date and revision).
#[derive(Default)]
struct Extra {
    key: Option<(ironstar::reuse::InputKey, ironstar::cargo::Selection)>,
    replay: Option<ironstar::reuse::Record>,
}

/// The build's stdout: with one image its index digest, with several `NAME sha256:…` a line,
/// in name order.
pub fn print_digests(digests: &[(String, Digest)]) {
    match digests {
        [(_, one)] => println!("{one}"),
        _ => {
            for (name, d) in digests {
                println!("{name} {d}");
            }
        }
    }
}

/// Pack each resolved image into its layout (several in parallel), with the summary on stderr.
pub fn build_resolved(
    args: &BuildArgs,
    request: &Request,
    resolved: Vec<Resolved>,
    signer: Option<Arc<dyn ironstar::sign::Signer>>,
    repository: Option<&str>,
    quiet: bool,
) -> anyhow::Result<Vec<BuiltImage>> {
    let several = resolved.len() > 1;
    let extras = resolved.iter().map(|_| Extra::default()).collect();
    build_resolved_with(
        args, request, resolved, extras, signer, repository, several, quiet,
    )
}

/// [`build_resolved`], each image with what reuse adds ([`Extra`]); `several`: the request
/// selects several images (so each has its own layout directory and repository).
#[allow(clippy::too_many_arguments)]
fn build_resolved_with(
    args: &BuildArgs,
    request: &Request,
    resolved: Vec<Resolved>,
    extras: Vec<Extra>,
    signer: Option<Arc<dyn ironstar::sign::Signer>>,
    repository: Option<&str>,
    several: bool,
    quiet: bool,
) -> anyhow::Result<Vec<BuiltImage>> {
    if resolved.is_empty() {
        return Ok(Vec::new());
    }
    let (epoch, note) = request.source_date_epoch_noted()?;
    if let Some(note) = note.filter(|_| !quiet) {
        eprintln!("note: {note}");
    }
    let search_from = args.image_file.as_deref().and_then(|f| f.parent());
    let mut jobs: Vec<(&ImageSpec, BuildOptions)> = Vec::new();
    for (r, extra) in resolved.iter().zip(extras) {
        let source_date_epoch = extra.replay.as_ref().map_or(epoch, |r| r.source_date_epoch);
        let revision = match &extra.replay {
            Some(record) => record.revision.clone(),
            None => args.revision.clone(),
        };
        let reuse = extra.key.as_ref().map(|(key, sel)| {
            ironstar::reuse::record(key, sel, r, source_date_epoch, revision.clone())
        });
        let sign = match &signer {
            Some(signer) => {
                let name = &r.spec.name;
                let defined = r.spec.repository.as_deref();
                let repo = publish::repository_for(name, defined, repository, several)?;
                let identity = super::sign::identity(repo.as_deref())?;
                Some(ironstar::sign::layout::LayoutSigning {
                    signer: signer.clone(),
                    identity,
                })
            }
            None => None,
        };
        let output = publish::layout_dir(args.output.as_deref(), &r.spec.name, several);
        let opts = BuildOptions {
            output,
            source_date_epoch,
            compression_level: args.compression_level,
            revision,
            cache_dir: args.cache.dir(),
            sbom: args.sbom.options(
                r.built.as_ref().map(|b| b.source.clone()),
                search_from,
                source_date_epoch,
            ),
            provenance: sign
                .as_ref()
                .filter(|_| !args.sign.no_provenance)
                .map(|_| provenance_source(args, r)),
            sign,
            base: ironstar::base::BaseOptions {
                plain_http: args.base_plain_http,
                ..Default::default()
            },
            reuse,
        };
        jobs.push((&r.spec, opts));
    }
    let reports = publish::build_all(&jobs);
    let mut built = Vec::new();
    for ((r, report), (_, opts)) in resolved.iter().zip(reports).zip(&jobs) {
        let report = report.with_context(|| format!("building image `{}`", r.spec.name))?;
        if !quiet {
            summary(args, r, &report, opts, several);
        }
        built.push(BuiltImage {
            report,
            spec: r.spec.clone(),
        });
    }
    Ok(built)
}

/// What the provenance says of the build's source: the definition file, the cargo selection.
fn provenance_source(args: &BuildArgs, r: &Resolved) -> ironstar::artifact::provenance::Source {
    let cargo = r.built.as_ref().map(|b| {
        let s = &b.source;
        ironstar::artifact::provenance::CargoParams {
            manifest_path: s.manifest_path.clone(),
            package: s.package.clone(),
            bin: args.cargo_args.bins.first().cloned(),
            features: s.features.clone(),
            all_features: s.all_features,
            no_default_features: s.no_default_features,
            profile: args
                .cargo_args
                .profile
                .clone()
                .unwrap_or_else(|| "release".into()),
        }
    });
    ironstar::artifact::provenance::Source {
        definition: args.image_file.clone(),
        cargo,
    }
}

/// One image's summary on stderr; with several images each line names its image.
fn summary(
    args: &BuildArgs,
    r: &Resolved,
    report: &BuildReport,
    opts: &BuildOptions,
    several: bool,
) {
    let who = match several {
        true => format!("{}: ", r.spec.name),
        false => String::new(),
    };
    for p in &report.platforms {
        eprintln!(
            "{who}{:<14} binary {:>10}  layer {:>10}{}  manifest {}",
            p.platform.to_string(),
            ironstar::human_bytes(p.binary_size),
            ironstar::human_bytes(p.layer_size),
            if p.cached { " (cached)" } else { "" },
            p.manifest
        );
    }
    if let Some((size, cached)) = report.rootfs {
        let items: Vec<&str> = r.spec.rootfs.iter().map(|i| i.name()).collect();
        eprintln!(
            "{who}{:<14} layer {:>10}{}  ({})",
            "rootfs",
            ironstar::human_bytes(size),
            if cached { " (cached)" } else { "" },
            items.join(", ")
        );
    }
    if let Some((reference, digest, layers)) = &report.base {
        eprintln!(
            "{who}{:<14} {reference} = {digest} ({layers} layers)",
            "base"
        );
    }
    super::sbom::summary(report, args.sbom.no_sbom);
    if let Some(s) = &opts.sign {
        eprintln!(
            "{who}signed: the index and {} platform manifest(s), for {}{}",
            report.platforms.len(),
            s.identity,
            match opts.provenance.is_some() {
                true => "; provenance attested",
                false => "",
            }
        );
    }
    let mimalloc = r
        .built
        .as_ref()
        .is_some_and(|b| b.output.allocator == ironstar::cargo::Allocator::Mimalloc);
    if mimalloc {
        eprintln!(
            "{who}{:<14} mimalloc {} (libmimalloc-sys), linked in place of musl's malloc",
            "allocator",
            ironstar::cargo::MIMALLOC_SYS_VERSION
        );
    }
    if let Some(line) = r
        .built
        .as_ref()
        .and_then(|b| ironstar::cargo::openssl_summary(&b.output.openssl))
    {
        eprintln!("{who}{line}");
    }
    eprintln!(
        "{who}index {} -> {} (tags: {})",
        report.index,
        report.output.display(),
        report.tags.join(", ")
    );
    if let Some(out) = r
        .built
        .as_ref()
        .map(|b| &b.output)
        .filter(|o| !o.debug_info.is_empty())
    {
        eprintln!(
            "{who}note: {}: the binary carries debug info and is shipped as built; to leave it \
             out, set `strip = \"debuginfo\"` (or `debug = false`) under [profile.{}] in \
             Cargo.toml",
            out.debug_info.join(", "),
            args.cargo_args.profile.as_deref().unwrap_or("release"),
        );
    }
    let threads = r
        .built
        .as_ref()
        .filter(|_| !mimalloc)
        .map(|b| b.output.units.threads_on_musl_malloc())
        .unwrap_or_default();
    if !threads.is_empty() {
        eprintln!(
            "{who}note: the binary links {} and keeps musl's allocator, which is slow when \
             threads allocate at once (several times glibc's time); `--allocator mimalloc` (or \
             `allocator = \"mimalloc\"` in the image definition) replaces it with no change to \
             the crate: see docs/src/services.md",
            threads.join(" and "),
        );
    }
}
