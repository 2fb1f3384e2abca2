//! `ironstar push` flags and the glue from them to [`ironstar::push`].

use std::io::{Read as _, Write as _};
use std::path::PathBuf;

use anyhow::{bail, Context};
use ironstar::layout::{Layout, LayoutError};
use ironstar::push::{push, ProgressMode, PushOptions};
use ironstar::registry::client::DEFAULT_MAX_ATTEMPTS;
use ironstar::registry::{Credential, Reference};
use ironstar::spec::ImageSpec;

#[derive(Debug, Clone, clap::Args)]
pub struct PushArgs {
    /// Image definition file, e.g. images/ironstar.toml (supplies repository, tags and the
    /// default layout target/oci/<name>).
    pub image_file: Option<PathBuf>,
    /// The OCI layout to push [default: target/oci/<name> of the image file].
    #[arg(long)]
    pub layout: Option<PathBuf>,
    /// Tag to point at the pushed index (repeatable; replaces the image file's tags).
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
    /// Blobs uploaded in parallel.
    #[arg(long, short = 'j', default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..=64))]
    pub jobs: u64,
    /// Try a cross-repository mount of each blob from this repository of the same registry.
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

/// Push as the flags say; prints `REGISTRY/REPO@DIGEST` on stdout. `quiet` (the global `-q`) silencing the per-step lines and progress bars.
pub fn run_with(args: &PushArgs, quiet: bool) -> anyhow::Result<()> {
    let spec = args
        .image_file
        .as_deref()
        .map(ImageSpec::load)
        .transpose()?;
    let layout = match (&args.layout, &spec) {
        (Some(l), _) => l.clone(),
        (None, Some(s)) => PathBuf::from("target/oci").join(&s.name),
        (None, None) => bail!("nothing to push: give an image file or --layout DIR"),
    };
    // An empty --repository / $IRONSTAR_REPOSITORY (an action input left blank) means unset.
    let flag_repository = args.registry.repository.as_ref().filter(|r| !r.is_empty());
    let repository = match (flag_repository, spec.as_ref().and_then(|s| s.repository.as_ref())) {
        (Some(r), _) | (None, Some(r)) => r.clone(),
        (None, None) => bail!(
            "no repository to push to: pass --repository REGISTRY/REPO or set `repository` in the image file"
        ),
    };
    let mut repository = Reference::parse(&repository)?;
    let flag_tags = tag_list(&args.tags);
    let mut tags: Vec<String> = if !flag_tags.is_empty() {
        flag_tags
    } else if let Some(s) = &spec {
        s.tags.clone()
    } else {
        Vec::new()
    };
    if let Some(t) = repository.tag.take() {
        if !tags.contains(&t) {
            tags.push(t);
        }
    }
    // Which image of the layout: the only one, or the one the first tag names.
    let opened = Layout::open(&layout)?;
    let image = match opened.resolve(None) {
        Ok(resolved) => {
            if tags.is_empty() {
                tags = resolved.tags;
            }
            None
        }
        Err(LayoutError::Ambiguous(_)) if !tags.is_empty() => Some(tags[0].clone()),
        Err(e) => return Err(e.into()),
    };
    if tags.is_empty() {
        tags.push("latest".into());
    }
    let credential = match (&args.registry.username, args.registry.password_stdin) {
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
        layout,
        image,
        repository,
        tags,
        plain_http: args.registry.plain_http,
        jobs: args.registry.jobs as usize,
        mount_from: args.registry.mount_from.clone(),
        cache_dir: args.cache.dir(),
        chunk_size: args.registry.chunk_size,
        credential,
        max_attempts: args.registry.max_attempts,
        progress: if quiet {
            ProgressMode::Quiet
        } else {
            ProgressMode::Auto
        },
        no_sbom: args.no_sbom,
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
