//! `ironstar push` flags and the glue from them to [`ironstar::push`].

use std::io::{Read as _, Write as _};
use std::path::PathBuf;

use anyhow::{bail, Context};
use ironstar::publish;
use ironstar::push::{push, push_all, NamedPush, Plan, ProgressMode, PushOptions};
use ironstar::registry::client::DEFAULT_MAX_ATTEMPTS;
use ironstar::registry::Credential;
use ironstar::spec::ImageSpec;

#[derive(Debug, Clone, clap::Args)]
pub struct PushArgs {
    /// Image definition file, e.g. images/ironstar.toml (supplies repository, tags and the
    /// default layout target/oci/<name>).
    pub image_file: Option<PathBuf>,
    /// The OCI layout to push, and which of its images when it holds several (DIR:TAG)
    /// [default: target/oci/<name> of the image file].
    #[arg(long, value_name = "DIR[:TAG]", conflicts_with = "workspace")]
    pub layout: Option<String>,
    /// Push every layout under --layout-dir (each image to its recorded `repository`, else
    /// PREFIX/NAME of --repository), tags moving only once every image is up.
    #[arg(long, conflicts_with = "image_file")]
    pub workspace: bool,
    /// With --workspace: the directory of layouts, one per image.
    #[arg(long, value_name = "DIR", requires = "workspace", default_value = publish::DEFAULT_LAYOUT_DIR)]
    pub layout_dir: PathBuf,
    /// Remote tag to point at the pushed index (repeatable; replaces the image file's tags;
    /// default: the image's tags in the layout). It never chooses the local image: --layout DIR:TAG does.
    #[arg(
        long = "tag",
        short = 't',
        value_name = "TAG",
        env = "IRONSTAR_TAGS",
        value_delimiter = ','
    )]
    pub tags: Vec<String>,
    #[command(flatten)]
    pub cache: super::CacheArgs,
    #[command(flatten)]
    pub registry: RegistryArgs,
    /// Push no SBOM of the layout.
    #[arg(long, env = "IRONSTAR_NO_SBOM", value_parser = clap::builder::FalseyValueParser::new())]
    pub no_sbom: bool,
    #[command(flatten)]
    pub sign: super::sign::SignArgs,
    /// Push no signature: neither sign (it wins over --sign-key and $IRONSTAR_SIGN_KEY, which a
    /// CI environment may set for every job) nor send the layout's own.
    #[arg(long)]
    pub no_sign: bool,
}

/// `--tag` / `$IRONSTAR_TAGS` values as tags: clap splits on commas; newlines separate too (a
/// multi-line action input), and empty entries (`",x"`, `"a,,b"`, a blank input) are dropped.
pub fn tag_list(values: &[String]) -> Vec<String> {
    values
        .iter()
        .flat_map(|v| v.split(['\n', '\r']))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(String::from)
        .collect()
}

/// How to reach the registry: shared by `push` and `publish`.
#[derive(Debug, Clone, clap::Args)]
pub struct RegistryArgs {
    /// REGISTRY/REPO to push to (overrides the image file's `repository`), e.g. ghcr.io/org/app.
    /// With several images a prefix: each goes to PREFIX/NAME unless its definition sets
    /// `repository`.
    #[arg(long, value_name = "REGISTRY/REPO", env = "IRONSTAR_REPOSITORY")]
    pub repository: Option<String>,
    /// Also write the pushed references (REGISTRY/REPO@DIGEST, one a line, as on stdout) to FILE.
    #[arg(long, value_name = "FILE")]
    pub image_refs: Option<PathBuf>,
    /// Talk plain http to the registry (a local test registry); https otherwise.
    #[arg(long)]
    pub plain_http: bool,
    // Not `-j`/`--jobs`: in `publish` those are cargo's.
    /// Blobs uploaded in parallel.
    #[arg(id = "upload_jobs", long = "upload-jobs", value_name = "N", default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..=64))]
    pub jobs: u64,
    /// Try a cross-repository mount of each blob from this repository of the same registry,
    /// given by its path (e.g. org/base).
    #[arg(long, value_name = "REPO")]
    pub mount_from: Option<String>,
    /// Username for the registry (with --password-stdin).
    #[arg(long, short = 'u', requires = "password_stdin")]
    pub username: Option<String>,
    /// Read the password or token from standard input (with --username).
    #[arg(long, requires = "username")]
    pub password_stdin: bool,
    /// Upload blobs larger than this many bytes in PATCH chunks of this size (for a registry
    /// that caps request bodies). Default: every blob in one PUT, and chunks of 3 MiB only
    /// when the registry refuses a PUT as too large (413).
    #[arg(long, value_name = "BYTES", value_parser = clap::value_parser!(u64).range(1..))]
    pub chunk_size: Option<u64>,
    /// Attempts per request before giving up on transient failures.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_ATTEMPTS, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub max_attempts: u32,
    /// Push everything (image, SBOMs, signatures) but move no tag: the image is known by its
    /// REGISTRY/REPO@DIGEST only, e.g. one platform's part for `ironstar merge`.
    #[arg(long, env = "IRONSTAR_BY_DIGEST", value_parser = clap::builder::FalseyValueParser::new())]
    pub by_digest: bool,
}

/// Push as the flags say; prints `REGISTRY/REPO@DIGEST` on stdout (a line per image with
/// `--workspace`). `quiet` (the global `-q`) silences the per-step lines and progress bars.
pub fn run_with(args: &PushArgs, quiet: bool) -> anyhow::Result<()> {
    // Before anything else: a wrong password fails here, before any request.
    let signing = Signing {
        signer: match args.no_sign {
            true => None,
            false => args.sign.signer()?,
        },
        no_sign: args.no_sign,
        no_provenance: args.sign.no_provenance,
    };
    let pushes = match args.workspace {
        true => workspace_plans(args)?,
        false => {
            let spec = args
                .image_file
                .as_deref()
                .map(|f| ImageSpec::load_with(f, ironstar::spec::SourcePolicy::Anywhere))
                .transpose()?;
            let plan = Plan::new(
                spec.as_ref(),
                args.layout.as_deref(),
                args.registry.repository.as_deref(),
                &tag_list(&args.tags),
            )?;
            // The name `images` in $GITHUB_OUTPUT gives it: the definition's, else the
            // layout's title (a layout that cannot be read fails the push itself, later).
            let title = || {
                publish::FoundLayout::read(&plan.layout)
                    .ok()
                    .map(|f| f.name)
            };
            let name = spec.map(|s| s.name).or_else(title).unwrap_or_default();
            vec![(name, plan)]
        }
    };
    let refs = run_pushes(
        pushes,
        &args.registry,
        &args.cache,
        args.no_sbom,
        signing,
        quiet,
    )?;
    print_refs(&refs);
    write_refs(&refs, &args.registry)
}

/// What a push signs with, or whether it sends no signature.
#[derive(Debug, Default)]
pub struct Signing {
    pub signer: Option<std::sync::Arc<dyn ironstar::sign::Signer>>,
    pub no_sign: bool,
    pub no_provenance: bool,
}

/// `push --workspace`: every layout of the directory, each to its recorded repository or
/// PREFIX/NAME.
fn workspace_plans(args: &PushArgs) -> anyhow::Result<Vec<(String, Plan)>> {
    let found = publish::layouts_in(&args.layout_dir)?;
    let several = found.len() > 1;
    let flag = args.registry.repository.as_deref();
    found
        .into_iter()
        .map(|f| {
            let repo = publish::repository_for(&f.name, f.repository.as_deref(), flag, several)?
                .ok_or(ironstar::push::PushError::NoRepository)?;
            let layout = f.dir.to_string_lossy().into_owned();
            let plan = Plan::new(None, Some(&layout), Some(&repo), &tag_list(&args.tags))?;
            Ok((f.name, plan))
        })
        .collect()
}

/// The credential of `--username` + `--password-stdin`, if given.
fn flag_credential(registry: &RegistryArgs) -> anyhow::Result<Option<Credential>> {
    let (Some(username), true) = (&registry.username, registry.password_stdin) else {
        return Ok(None);
    };
    let mut password = String::new();
    std::io::stdin()
        .read_to_string(&mut password)
        .context("reading the password from standard input")?;
    let password = password.trim_end_matches(['\r', '\n']).to_string();
    if password.is_empty() {
        bail!("--password-stdin: standard input was empty");
    }
    Ok(Some(Credential::Basic {
        username: username.clone(),
        password,
    }))
}

/// Push each `(name, plan)` with the registry and cache flags (and the layouts' SBOMs unless
/// `no_sbom`): one image alone, several together ([`ironstar::push::push_all`]: tags move only
/// once every image is up). Returns `(name, REGISTRY/REPO@DIGEST)` for each, in the order given.
pub fn run_pushes(
    pushes: Vec<(String, Plan)>,
    registry: &RegistryArgs,
    cache: &super::CacheArgs,
    no_sbom: bool,
    signing: Signing,
    quiet: bool,
) -> anyhow::Result<Vec<(String, String)>> {
    let images = named_pushes(pushes, registry, cache, no_sbom, signing, quiet)?;
    push_named(&images)
}

/// The push options of each `(name, plan)` with the registry and cache flags (the credential of
/// `--password-stdin` read once, here).
pub fn named_pushes(
    pushes: Vec<(String, Plan)>,
    registry: &RegistryArgs,
    cache: &super::CacheArgs,
    no_sbom: bool,
    signing: Signing,
    quiet: bool,
) -> anyhow::Result<Vec<NamedPush>> {
    let credential = flag_credential(registry)?;
    Ok(pushes
        .into_iter()
        .map(|(name, plan)| NamedPush {
            name,
            opts: PushOptions {
                plain_http: registry.plain_http,
                jobs: registry.jobs as usize,
                mount_from: registry.mount_from.clone(),
                cache_dir: cache.dir(),
                chunk_size: registry.chunk_size,
                credential: credential.clone(),
                max_attempts: registry.max_attempts,
                progress: if quiet {
                    ProgressMode::Quiet
                } else {
                    ProgressMode::Auto
                },
                no_sbom,
                signer: signing.signer.clone(),
                no_sign: signing.no_sign,
                by_digest: registry.by_digest,
                no_provenance: signing.no_provenance,
                ..PushOptions::from_plan(plan)
            },
        })
        .collect())
}

/// Push `images` ([`run_pushes`]); `(name, REGISTRY/REPO@DIGEST)` for each, in order.
pub fn push_named(images: &[NamedPush]) -> anyhow::Result<Vec<(String, String)>> {
    let runtime = runtime()?;
    let outcomes = match images {
        [] => Vec::new(),
        [one] => vec![runtime.block_on(push(&one.opts))?],
        _ => runtime.block_on(push_all(images))?,
    };
    let mut refs = Vec::new();
    for (img, outcome) in images.iter().zip(outcomes) {
        refs.push((img.name.clone(), outcome.image, outcome.digest.to_string()));
    }
    if let [(_, image, digest)] = refs.as_slice() {
        github_output(&format!("digest={digest}\nimage={image}"))?;
    }
    Ok(refs.into_iter().map(|(n, i, _)| (n, i)).collect())
}

/// The async runtime of a push.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// stdout: a `REGISTRY/REPO@DIGEST` line per image.
pub fn print_refs(refs: &[(String, String)]) {
    for (_, r) in refs {
        println!("{r}");
    }
}

/// `--image-refs FILE` (a reference a line) and `images` (JSON: name → reference) in
/// `$GITHUB_OUTPUT`.
pub fn write_refs(refs: &[(String, String)], registry: &RegistryArgs) -> anyhow::Result<()> {
    if let Some(path) = &registry.image_refs {
        let text: String = refs.iter().map(|(_, r)| format!("{r}\n")).collect();
        std::fs::write(path, text)
            .with_context(|| format!("--image-refs: writing {}", path.display()))?;
    }
    github_output(&format!("images={}", publish::images_json(refs)))
}

/// Append `lines` to `$GITHUB_OUTPUT`, when set (under GitHub Actions).
pub fn github_output(lines: &str) -> anyhow::Result<()> {
    let Some(path) = std::env::var_os("GITHUB_OUTPUT").filter(|p| !p.is_empty()) else {
        return Ok(());
    };
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .with_context(|| format!("opening $GITHUB_OUTPUT ({})", path.to_string_lossy()))?;
    writeln!(f, "{lines}").context("writing $GITHUB_OUTPUT")
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        push: PushArgs,
    }

    fn tags(args: &[&str]) -> Vec<String> {
        let cli =
            Cli::try_parse_from(std::iter::once("ironstar").chain(args.iter().copied())).unwrap();
        tag_list(&cli.push.tags)
    }

    #[test]
    fn tags_split_on_commas_and_newlines_and_drop_empty_entries() {
        assert_eq!(tags(&["--tag", "a,b"]), ["a", "b"]);
        assert_eq!(tags(&["--tag", ",x"]), ["x"]);
        assert_eq!(tags(&["--tag", "a,,b,"]), ["a", "b"]);
        assert_eq!(tags(&["--tag", "a\nb\n\n", "--tag", "c"]), ["a", "b", "c"]);
        assert_eq!(
            tags(&["--tag", "v1, v1.2\r\nlatest"]),
            ["v1", "v1.2", "latest"]
        );
        assert!(tags(&["--tag", ""]).is_empty());
        assert!(tags(&["--tag", ",\n,"]).is_empty());
    }
}
