//! Command-line flags and the glue from them to the library. Library calls only; no logic here
//! that a library user would need.

pub mod build;
pub mod load;
pub mod provenance;
pub mod push;
pub mod resolve;
pub mod sbom;
pub mod sign;

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::error::ErrorKind;
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "ironstar", version, about = "Pack static binaries into reproducible multi-arch OCI images and push them", long_about = None, arg_required_else_help = true)]
pub struct Cli {
    /// More logs on stderr: -v logs each step and request, -vv everything.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Only errors on stderr.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build an OCI image layout from static binaries; prints the index digest.
    Build(build::BuildArgs),
    /// Push an OCI image layout to a registry; prints REGISTRY/REPO@DIGEST.
    Push(push::PushArgs),
    /// Build, then push, in one step.
    #[command(mut_arg("tags", |a| a.help(
        "Tag to record in the layout and push to the registry (repeatable; replaces the image file's tags)"
    )))]
    Publish(build::PublishArgs),
    /// Build and publish the images that `ironstar://NAME` references in YAML name, and print
    /// the YAML with each reference replaced by REGISTRY/REPO@DIGEST (everything else kept).
    #[command(
        mut_arg("cargo", |a| a.hide(true)),
        mut_arg("image_file", |a| a.hide(true)),
        mut_arg("binaries", |a| a.hide(true)),
        mut_arg("tags", |a| a.help(
            "Tag to record in the layouts and push (repeatable; replaces the definitions' tags)"
        ))
    )]
    Resolve(resolve::ResolveArgs),
    /// Print the SBOM of one platform of a layout or of a pushed image.
    Sbom(sbom::SbomCommand),
    /// Check the cosign signatures of an image's index and every platform manifest, in a
    /// registry or a layout.
    Verify(sign::VerifyArgs),
    /// Print the signed SLSA provenance statement of an image (pushed, or in a layout) as JSON.
    Provenance(provenance::ProvenanceArgs),
    /// Put one platform of a layout into the local podman or docker image store (or a
    /// docker-archive file), to run it by name; --all writes a multi-platform oci-archive.
    Load(load::LoadArgs),
    /// Check that binaries are static and built for their platform.
    CheckBinary {
        /// OS/ARCH[/VARIANT] the binaries must run on.
        #[arg(long)]
        platform: String,
        /// The binaries to check: each must be a static ELF executable for --platform.
        #[arg(required = true, value_name = "BINARY")]
        binaries: Vec<PathBuf>,
    },
    /// List the platforms ironstar knows, with their Rust targets.
    Platforms {
        /// As JSON.
        #[arg(long)]
        json: bool,
    },
}

/// The local cache (compressed layers; where blobs were pushed): shared by `build`, `push` and
/// `publish`.
#[derive(Debug, Clone, clap::Args)]
pub struct CacheArgs {
    /// The local cache: compressed layers (an unchanged binary is not compressed again) and
    /// where blobs were pushed (mounted, not uploaded, into another repository of the registry)
    /// [default: $XDG_CACHE_HOME/ironstar, else ~/.cache/ironstar].
    #[arg(long, env = "IRONSTAR_CACHE_DIR", value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Neither read nor fill the cache (wins over --cache-dir).
    #[arg(long, env = "IRONSTAR_NO_CACHE", value_parser = clap::builder::FalseyValueParser::new())]
    pub no_cache: bool,
}

impl CacheArgs {
    /// The cache directory to use, if any.
    pub fn dir(&self) -> Option<PathBuf> {
        match self.no_cache {
            true => None,
            false => self.cache_dir.clone().or_else(ironstar::cache::default_dir),
        }
    }
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Build(args) => {
            build::print_digests(&build::run(&args, None, cli.quiet)?);
            Ok(())
        }
        Command::Push(args) => push::run_with(&args, cli.quiet),
        Command::Load(args) => load::run(&args),
        Command::Publish(args) => build::publish(args, cli.quiet),
        Command::Sbom(args) => sbom::run(&args),
        Command::Resolve(args) => resolve::run(args, cli.quiet),
        Command::Verify(args) => sign::verify(&args, cli.quiet),
        Command::Provenance(args) => provenance::run(&args),
        Command::CheckBinary { platform, binaries } => {
            let p = ironstar::Platform::parse(&platform)?;
            for b in &binaries {
                let info = ironstar::elf::check(b, p)?;
                if !cli.quiet {
                    eprintln!(
                        "{}: static{} {p} executable, {} bytes",
                        b.display(),
                        if info.pie { "-pie" } else { "" },
                        info.size
                    );
                }
            }
            Ok(())
        }
        Command::Platforms { json } => {
            let rows = ironstar::platform::PLATFORMS;
            if json {
                let v: Vec<_> = rows
                    .iter()
                    .map(|p| serde_json::json!({"platform": p.to_string(), "rust_target": p.rust_target}))
                    .collect();
                println!("{}", serde_json::to_string(&v)?);
            } else {
                for p in rows {
                    println!("{:<14} {}", p.to_string(), p.rust_target);
                }
            }
            Ok(())
        }
    }
}

// The entry point both binaries (`ironstar`, `cargo-ironstar`) run.

pub fn main(bin_name: &'static str, args: Vec<OsString>) -> ExitCode {
    let cli = match parse(bin_name, with_implied_flags(args)) {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => e.exit(), // --help, --version
        Err(e) if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            // `ironstar` alone: the usage, on stderr, as a usage error.
            let _ = e.print();
            return ExitCode::from(2);
        }
        Err(e) => {
            // One line, like every other error; `--help` has the rest.
            let text = e.render().to_string();
            let first = text
                .lines()
                .next()
                .unwrap_or("")
                .trim_start_matches("error: ");
            eprintln!("ironstar: error: {first} (see --help)");
            return ExitCode::from(2);
        }
    };
    let level = match (cli.quiet, cli.verbose) {
        (true, _) => "error",
        (false, 0) => "ironstar=info",
        (false, 1) => "ironstar=debug",
        _ => "ironstar=trace,info",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("IRONSTAR_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level)),
        )
        .with_writer(std::io::stderr)
        .with_ansi(ironstar::stderr_is_styled())
        .with_target(false)
        .without_time()
        .init();
    // A build stopped by SIGINT, SIGTERM or SIGHUP removes its temporaries and cargo first.
    if let Err(e) = ironstar::interrupt::install() {
        tracing::debug!("no signal handling: {e}");
    }
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ironstar: error: {}", one_line(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line, each said once: many errors already print their source
/// (`{path}: {source}`), and the chain would repeat it.
fn one_line(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

/// Parse `args` (the program's name first) as `bin_name`'s command line.
fn parse(bin_name: &'static str, args: Vec<OsString>) -> Result<Cli, clap::Error> {
    use clap::{CommandFactory as _, FromArgMatches as _};
    let matches = Cli::command()
        .bin_name(bin_name)
        .try_get_matches_from(args)?;
    Cli::from_arg_matches(&matches)
}

/// `resolve` always builds with cargo: its `--cargo` is implied (clap's `requires` between
/// the cargo flags and `--cargo` holds only for flags given, not for defaults).
fn with_implied_flags(mut args: Vec<OsString>) -> Vec<OsString> {
    let sub = args
        .iter()
        .skip(1)
        .position(|a| !a.to_string_lossy().starts_with('-'))
        .map(|i| i + 1);
    if let Some(i) = sub.filter(|&i| args[i] == "resolve") {
        args.insert(i + 1, "--cargo".into());
    }
    args
}

#[cfg(test)]
mod tests {
    /// clap's own consistency checks over every subcommand (unique argument names, valid
    /// `requires`, …): a clash such as `publish` taking cargo's `--jobs` and the push's would
    /// otherwise surface only when someone runs that command.
    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory as _;
        super::Cli::command().debug_assert();
    }
}
