//! Command-line flags and the glue from them to the library. Library calls only; no logic here
//! that a library user would need.

pub mod build;
pub mod docs;
pub mod load;
pub mod merge;
pub mod provenance;
pub mod publish;
pub mod push;
pub mod resolve;
pub mod reuse;
pub mod sbom;
pub mod sign;

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::error::ErrorKind;
use clap::{Parser, Subcommand};

/// `0.1.0 (18cfe84 2026-12-03)` from a git checkout, `0.1.0` from the crate (build.rs).
const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), env!("IRONSTAR_BUILD_COMMIT"));

#[derive(Debug, Parser)]
#[command(name = "ironstar", version = VERSION, about = "Pack static binaries into reproducible multi-arch OCI images and push them", long_about = None, arg_required_else_help = true)]
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
        mut_arg("cargo", |a| a.help("Implied: resolve always builds with cargo (accepted, as in a copied publish line)")),
        mut_arg("image_file", |a| a.hide(true)),
        mut_arg("binaries", |a| a.hide(true)),
        mut_arg("tags", |a| a.help(
            "Tag to record in the layouts and push (repeatable; replaces the definitions' tags)"
        ))
    )]
    Resolve(resolve::ResolveArgs),
    /// Merge per-platform images (each built on its own machine) into the index one build of
    /// all their platforms writes: layouts into a layout (--output), or images in a registry
    /// (--repository; only manifests read). Prints the index digest or REGISTRY/REPO@DIGEST.
    #[command(mut_arg("sign_key", |a| a.help(
        "Sign the merged index with this key (cosign's key file, its password in $COSIGN_PASSWORD, or a PKCS#8 PEM key; env://NAME reads it from the environment); the platforms keep their own signatures"
    )))]
    Merge(merge::MergeArgs),
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
    /// Print the shell completion script for SHELL (bash: `ironstar completions bash >
    /// ~/.local/share/bash-completion/completions/ironstar`).
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        #[arg(value_name = "SHELL")]
        shell: clap_complete::Shell,
    },
    /// Print the man page, ironstar(1): every command and flag (`ironstar man | man -l -`).
    Man,
    /// Print the reference block of one command as the guide carries it (a markdown table of its
    /// flags, docs/src/reference/COMMAND.md).
    #[command(hide = true)]
    HelpMarkdown {
        /// The command, e.g. build.
        command: String,
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
    use clap::CommandFactory as _;
    match cli.command {
        Command::Build(args) => {
            build::print_digests(&build::run(&args, None, cli.quiet)?);
            Ok(())
        }
        Command::Push(args) => push::run_with(&args, cli.quiet),
        Command::Load(args) => load::run(&args),
        Command::Merge(args) => merge::run(&args, cli.quiet),
        Command::Publish(args) => publish::publish(args, cli.quiet),
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
        Command::Completions { shell } => {
            docs::completions(Cli::command(), shell, &mut std::io::stdout().lock())
        }
        Command::Man => docs::man(Cli::command(), &mut std::io::stdout().lock()),
        Command::HelpMarkdown { command } => {
            docs::markdown(Cli::command(), &command, &mut std::io::stdout().lock())
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
            eprintln!("ironstar: error: {} (see --help)", usage_line(&e));
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

/// clap's message on one line, like every other error (`--help` has the rest): its first line,
/// and the lines listing what it is about (the missing required arguments) after it.
fn usage_line(e: &clap::Error) -> String {
    let text = e.render().to_string();
    let mut lines = text.lines();
    let mut line = lines
        .next()
        .unwrap_or("")
        .trim_start_matches("error: ")
        .to_string();
    let listed: Vec<&str> = lines
        .take_while(|l| !l.trim().is_empty())
        .map(str::trim)
        .collect();
    if !listed.is_empty() {
        line = format!("{} {}", line.trim_end(), listed.join(", "));
    }
    line
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
/// the cargo flags and `--cargo` holds only for flags given, not for defaults), and accepted
/// when given (flags copied from a `publish --cargo` line).
fn with_implied_flags(mut args: Vec<OsString>) -> Vec<OsString> {
    let sub = args
        .iter()
        .skip(1)
        .position(|a| !a.to_string_lossy().starts_with('-'))
        .map(|i| i + 1);
    if let Some(i) = sub.filter(|&i| args[i] == "resolve") {
        let own = args[i + 1..].iter().take_while(|a| *a != "--");
        if !own.into_iter().any(|a| a == "--cargo") {
            args.insert(i + 1, "--cargo".into());
        }
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

    fn try_parse(args: &[&str]) -> Result<super::Cli, clap::Error> {
        let args = args.iter().map(|a| a.into()).collect();
        super::parse("ironstar", super::with_implied_flags(args))
    }

    /// How the one-line error names an argument: `--key <PUB.pem>`, `<REFERENCE>`.
    fn shown(a: &clap::Arg) -> String {
        let value = a
            .get_value_names()
            .and_then(|v| v.first())
            .map_or_else(|| a.get_id().as_str().to_uppercase(), |v| v.to_string());
        match a.get_long() {
            Some(long) => format!("--{long} <{value}>"),
            None => format!("<{value}>"),
        }
    }

    /// Each subcommand with a required argument, run without it (and `verify` with only its
    /// key): the one line names every missing one, as `--help` spells it.
    #[test]
    fn a_missing_required_argument_is_named_on_the_one_line() {
        use clap::CommandFactory as _;
        let cases: [(&[&str], &[&str]); 7] = [
            (&["resolve"], &["--filename <FILE|DIR|->"]),
            (&["merge"], &["--repository <REGISTRY/REPO>", "<SOURCE>"]),
            (&["completions"], &["<SHELL>"]),
            (&["help-markdown"], &["<COMMAND>"]),
            (&["verify"], &["--key <PUB.pem>", "<REFERENCE>"]),
            (&["verify", "--key", "k.pub"], &["<REFERENCE>"]),
            (&["check-binary"], &["--platform <PLATFORM>", "<BINARY>"]),
        ];
        for (args, missing) in cases {
            let e = try_parse(&[&["ironstar"], args].concat()).expect_err("refused");
            let line = super::usage_line(&e);
            let want = format!(
                "the following required arguments were not provided: {}",
                missing.join(", ")
            );
            assert!(line.starts_with(&want), "{args:?}: {line}");
            assert!(!line.contains('\n'), "{line}");
        }
        // Every subcommand with a required argument is a case above, each argument named.
        for sub in super::Cli::command().get_subcommands() {
            for a in sub.get_arguments().filter(|a| a.is_required_set()) {
                let case = cases.iter().find(|c| c.0 == [sub.get_name()]);
                let named = case.is_some_and(|c| c.1.contains(&shown(a).as_str()));
                assert!(named, "{} {}: no case names it", sub.get_name(), shown(a));
            }
        }
    }

    /// `resolve --cargo` is accepted (it is implied), and no subcommand's `--help` names a
    /// flag the subcommand does not take: each flag named, given alone (with a value when it
    /// takes one), is neither unknown nor in conflict.
    #[test]
    fn help_names_only_flags_the_command_takes() {
        use clap::error::ErrorKind;
        use clap::CommandFactory as _;
        assert!(try_parse(&["ironstar", "resolve", "--cargo", "-f", "x.yaml"]).is_ok());
        let mut cli = super::Cli::command();
        cli.build();
        let mut wrong = Vec::new();
        for sub in cli.get_subcommands() {
            let help = sub.clone().render_long_help().to_string();
            let named = help
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
                .filter(|w| w.starts_with("--") && w.len() > 2)
                .map(|w| w.trim_end_matches('-'));
            for flag in named.collect::<std::collections::BTreeSet<_>>() {
                let mut args = vec!["ironstar", sub.get_name(), flag];
                let arg = sub
                    .get_arguments()
                    .find(|a| a.get_long() == Some(&flag[2..]));
                if arg.is_some_and(|a| a.get_action().takes_values()) {
                    args.push("1");
                }
                if let Err(e) = try_parse(&args) {
                    let refused = [ErrorKind::UnknownArgument, ErrorKind::ArgumentConflict];
                    if refused.contains(&e.kind()) {
                        wrong.push(format!(
                            "{} {flag}: {}",
                            sub.get_name(),
                            super::usage_line(&e)
                        ));
                    }
                }
            }
        }
        assert!(wrong.is_empty(), "--help names flags refused: {wrong:#?}");
    }
    /// `--version` names HEAD's commit when built at the top of a git work tree, and says the
    /// version alone otherwise: the packaged crate (.ci/run runs these tests in it, unpacked
    /// outside any repository), the Nix sandbox, a machine without git.
    #[test]
    fn the_version_names_the_commit_only_in_a_git_checkout() {
        let dir = env!("CARGO_MANIFEST_DIR");
        let git = |args: &[&str]| {
            let out = std::process::Command::new("git")
                .current_dir(dir)
                .args(args)
                .output()
                .ok()?;
            out.status
                .success()
                .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
        };
        let top =
            git(&["rev-parse", "--show-toplevel"]).and_then(|t| std::fs::canonicalize(t).ok());
        let version = env!("CARGO_PKG_VERSION");
        if top.is_some() && top == std::fs::canonicalize(dir).ok() {
            let head = git(&["rev-parse", "HEAD"]).unwrap();
            let rest = super::VERSION
                .strip_prefix(&format!("{version} ("))
                .unwrap_or_else(|| panic!("{}", super::VERSION));
            let hash = rest.split(' ').next().unwrap();
            assert!(
                hash.len() >= 7 && head.starts_with(hash),
                "{rest} for {head}"
            );
        } else {
            assert_eq!(super::VERSION, version);
        }
    }
}
