//! `ironstar push` flags and the glue from them to [`ironstar::push`].

use std::io::{Read as _, Write as _};
use std::path::PathBuf;

use anyhow::{bail, Context};
use ironstar::push::{push, Plan, ProgressMode, PushOptions};
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
    #[arg(long, value_name = "DIR[:TAG]")]
    pub layout: Option<String>,
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
    /// Push no signature: neither sign nor send the layout's own.
    #[arg(long, conflicts_with = "sign_key")]
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
    #[arg(long, value_name = "REGISTRY/REPO", env = "IRONSTAR_REPOSITORY")]
    pub repository: Option<String>,
    /// Talk plain http to the registry (a local test registry); https otherwise.
    #[arg(long)]
    pub plain_http: bool,
    /// Blobs uploaded in parallel. (Not `-j`/`--jobs`: in `publish` those are cargo's.)
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
}

/// Push as the flags say; prints `REGISTRY/REPO@DIGEST` on stdout. `quiet` (the global `-q`)
/// silences the per-step lines and progress bars.
pub fn run_with(args: &PushArgs, quiet: bool) -> anyhow::Result<()> {
    // Before anything else: a wrong password fails here, before any request.
    let signing = Signing {
        signer: args.sign.signer()?,
        no_sign: args.no_sign,
    };
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
    run_plan(
        plan,
        &args.registry,
        &args.cache,
        args.no_sbom,
        signing,
        quiet,
    )
}

/// What a push signs with, or whether it sends no signature.
#[derive(Debug, Default)]
pub struct Signing {
    pub signer: Option<std::sync::Arc<dyn ironstar::sign::Signer>>,
    pub no_sign: bool,
}

/// Push `plan` with the registry and cache flags (and the layout's SBOMs unless `no_sbom`):
/// shared by `push` and `publish`.
pub fn run_plan(
    plan: Plan,
    registry: &RegistryArgs,
    cache: &super::CacheArgs,
    no_sbom: bool,
    signing: Signing,
    quiet: bool,
) -> anyhow::Result<()> {
    let credential = match (&registry.username, registry.password_stdin) {
        (Some(username), true) => {
            let mut password = String::new();
            std::io::stdin()
                .read_to_string(&mut password)
                .context("reading the password from standard input")?;
            let password = password.trim_end_matches(['\r', '\n']).to_string();
            if password.is_empty() {
                bail!("--password-stdin: standard input was empty");
            }
            Some(Credential::Basic {
                username: username.clone(),
                password,
            })
        }
        _ => None,
    };
    let opts = PushOptions {
        plain_http: registry.plain_http,
        jobs: registry.jobs as usize,
        mount_from: registry.mount_from.clone(),
        cache_dir: cache.dir(),
        chunk_size: registry.chunk_size,
        credential,
        max_attempts: registry.max_attempts,
        progress: if quiet {
            ProgressMode::Quiet
        } else {
            ProgressMode::Auto
        },
        no_sbom,
        signer: signing.signer,
        no_sign: signing.no_sign,
        ..PushOptions::from_plan(plan)
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let outcome = runtime.block_on(push(&opts))?;
    println!("{}", outcome.image);
    if let Some(path) = std::env::var_os("GITHUB_OUTPUT").filter(|p| !p.is_empty()) {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .with_context(|| format!("opening $GITHUB_OUTPUT ({})", path.to_string_lossy()))?;
        writeln!(f, "digest={}\nimage={}", outcome.digest, outcome.image)
            .context("writing $GITHUB_OUTPUT")?;
    }
    Ok(())
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
