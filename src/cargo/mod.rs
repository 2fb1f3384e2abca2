//! Cross-building a crate with cargo for every platform of an image (`ironstar build --cargo`).
//!
//! One `cargo build --target T1 --target T2 …` builds the binary for every platform, as the flake
//! does: the Rust target comes from the platform table ([`crate::platform`]) and every musl target
//! is linked with `-C target-feature=+crt-static`. The C toolchain ([`Toolchain`]) is rust-lld
//! alone for pure Rust and zig (through `cargo-zigbuild`) for crates that compile C; no cross gcc
//! and no sysroot either way.
//!
//! Each setting is made per target, only when the user has not made it, and merged with the
//! user's `.cargo/config.toml` ([`config`], [`env`]). The binaries are found from cargo's JSON
//! messages ([`run`]). The build is reproducible: `SOURCE_DATE_EPOCH` is the last commit's time
//! unless set, and the workspace, target directory and `$CARGO_HOME` are remapped to fixed paths
//! so where the build ran does not leak into the binary.
//!
//! [`Selection::resolve`] answers "which package, binary, features and targets" without
//! building, for anything else that needs to know (an image definition in `Cargo.toml`, an SBOM).

mod allocator;
mod config;
mod diagnose;
mod env;
mod error;
mod fetch;
mod inputs;
mod metadata;
mod openssl;
mod run;
mod select;
mod toolchain;

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::platform::Platform;
use crate::spec::{ImageSpec, SourcePolicy, SpecError};

pub use allocator::{mimalloc_component, Allocator, MIMALLOC_SYS_VERSION};
pub use diagnose::{Cause, Diagnosis};
pub use error::CargoError;
pub use inputs::tool_inputs;
pub use openssl::{
    openssl_component, summary as openssl_summary, OpenSsl, OPENSSLDIR, OPENSSL_SRC_VERSION,
    OPENSSL_VERSION,
};
pub use run::{has_debug_info, Units};
pub use toolchain::{Toolchain, ZIG_INSTALL_HINT};

/// Cargo's feature flags, as cargo spells them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Features {
    /// `--features` (each as given: cargo splits on commas and spaces).
    pub features: Vec<String>,
    pub all_features: bool,
    pub no_default_features: bool,
}

/// What to build and how.
#[derive(Debug, Clone, Default)]
pub struct CargoOptions {
    pub manifest_path: Option<PathBuf>,
    /// `-p`/`--package`, repeatable.
    pub packages: Vec<String>,
    /// `--workspace`: every member (less `exclude`).
    pub workspace: bool,
    /// `--exclude`, with `workspace`.
    pub exclude: Vec<String>,
    /// `--bin`, repeatable: each names a binary of a selected package.
    pub bins: Vec<String>,
    /// Cargo profile; default `release`.
    pub profile: Option<String>,
    /// The image definition file: without `--package`/`--workspace`, the package whose
    /// directory holds it is built. Without it, cargo's default members for the manifest.
    pub image_file: Option<PathBuf>,
    pub features: Features,
    pub locked: bool,
    pub frozen: bool,
    pub offline: bool,
    pub target_dir: Option<PathBuf>,
    /// `-j`: a number, or `default`, as cargo takes it.
    pub jobs: Option<String>,
    /// Passed to `cargo build` untouched, after ironstar's own arguments.
    pub args: Vec<OsString>,
    /// The C allocator linked into the binaries (`--allocator`, or the definitions').
    pub allocator: Option<Allocator>,
}

/// The binaries built, by platform (`linux/amd64` → path), and what the summary says of them.
#[derive(Debug, Clone, Default)]
pub struct CargoOutput {
    pub binaries: BTreeMap<String, PathBuf>,
    pub version: Option<String>,
    /// The package's name, used as the image name when nothing else names it.
    pub name: Option<String>,
    /// Platforms whose binary carries debug info.
    pub debug_info: Vec<String>,
    /// What cargo compiled, for the SBOM.
    pub units: Units,
    /// The C allocator the binaries carry.
    pub allocator: Allocator,
    /// By platform, where the binary's OpenSSL comes from, when openssl-sys (not vendored)
    /// looked for one.
    pub openssl: Vec<(String, OpenSsl)>,
}

type Result<T, E = CargoError> = std::result::Result<T, E>;

/// One image's package and binary, and where cargo runs.
#[derive(Debug, Clone)]
pub struct Selection {
    pub manifest_path: PathBuf,
    /// The crate's directory: cargo runs here, so it reads the crate's `.cargo/config.toml`
    /// and `rust-toolchain.toml`, not those of wherever ironstar was started.
    pub dir: PathBuf,
    pub package: String,
    pub package_id: String,
    pub package_manifest: PathBuf,
    pub version: String,
    pub bin: String,
    pub workspace_root: PathBuf,
    pub target_directory: PathBuf,
    /// The directories its binary builds from: its package's and its path dependencies'.
    pub source_dirs: Vec<PathBuf>,
    cargo: OsString,
}

/// A selected workspace member and its binary targets.
#[derive(Debug, Clone)]
pub struct Member {
    pub name: String,
    pub id: String,
    pub manifest_path: PathBuf,
    pub version: String,
    /// Its binary targets.
    pub bins: Vec<String>,
    /// Its package's directory and its path dependencies' ([`Selection::source_dirs`]).
    pub source_dirs: Vec<PathBuf>,
    default_run: Option<String>,
    /// The binaries `--bin` named in it; empty: none named.
    named_bins: Vec<String>,
}

/// The members a build selects, as cargo selects them ([`select`]), before their binaries are
/// chosen: a member's image definition may name one.
#[derive(Debug, Clone)]
pub struct Workspace {
    pub manifest_path: PathBuf,
    pub dir: PathBuf,
    pub workspace_root: PathBuf,
    pub target_directory: PathBuf,
    /// In the workspace's order.
    pub members: Vec<Member>,
    cargo: OsString,
}

impl Workspace {
    /// Find the manifest, ask `cargo metadata`, and select the members.
    pub fn resolve(opts: &CargoOptions) -> Result<Self> {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let cwd = std::env::current_dir()?;
        let image_dir = opts
            .image_file
            .as_ref()
            .and_then(|f| absolute(&cwd, f).parent().map(Path::to_path_buf))
            .map(|d| d.canonicalize().unwrap_or(d));
        let start = match &opts.manifest_path {
            Some(m) => absolute(&cwd, m).parent().map(Path::to_path_buf),
            None => image_dir.clone(),
        }
        .unwrap_or_else(|| cwd.clone());
        let start = start.canonicalize().unwrap_or(start);
        let manifest = match &opts.manifest_path {
            Some(m) => absolute(&cwd, m),
            None => metadata::find_manifest(&start)
                .ok_or_else(|| CargoError::NoManifest { dir: start.clone() })?,
        };
        let dir = manifest
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_path_buf();
        let mut cmd = cargo_command(&cargo, &dir);
        cmd.args(network_flags(opts));
        if let Some(t) = &opts.target_dir {
            cmd.env("CARGO_TARGET_DIR", absolute(&cwd, t));
        }
        let meta = metadata::metadata(cmd, &manifest)?;
        let members = select::select(&meta, opts, &manifest, image_dir.as_deref())?
            .into_iter()
            .map(|(p, named_bins)| Member {
                name: p.name.clone(),
                id: p.id.clone(),
                manifest_path: p.manifest_path.clone(),
                version: p.version.clone(),
                bins: p
                    .targets
                    .iter()
                    .filter(|t| metadata::is_bin(t))
                    .map(|t| t.name.clone())
                    .collect(),
                default_run: p.default_run.clone(),
                source_dirs: metadata::source_dirs(&meta.packages, p),
                named_bins,
            })
            .collect();
        Ok(Workspace {
            manifest_path: manifest,
            dir,
            workspace_root: meta.workspace_root.clone(),
            target_directory: meta.target_directory.clone(),
            members,
            cargo,
        })
    }

    /// The images of `member`: one per binary `--bin` named in it, else `defined` (its image
    /// definition's `bin`), else its only binary or its `default-run`.
    pub fn selections(&self, member: &Member, defined: Option<&str>) -> Result<Vec<Selection>> {
        let bins = match (member.named_bins.is_empty(), defined) {
            (false, _) => member.named_bins.clone(),
            (true, by_name) => vec![metadata::select_binary(
                &member.name,
                &member.bins,
                member.default_run.as_deref(),
                by_name,
            )?],
        };
        Ok(bins
            .into_iter()
            .map(|bin| Selection {
                manifest_path: self.manifest_path.clone(),
                dir: self.dir.clone(),
                package: member.name.clone(),
                package_id: member.id.clone(),
                package_manifest: member.manifest_path.clone(),
                version: member.version.clone(),
                bin,
                workspace_root: self.workspace_root.clone(),
                target_directory: self.target_directory.clone(),
                source_dirs: member.source_dirs.clone(),
                cargo: self.cargo.clone(),
            })
            .collect())
    }
}

impl Member {
    /// The image definition under `[package.metadata.ironstar]` of the member's Cargo.toml,
    /// named after the package unless it says otherwise.
    pub fn image_spec(&self, sources: SourcePolicy) -> Result<Option<ImageSpec>, SpecError> {
        ImageSpec::load_cargo_metadata(&self.manifest_path, &self.name, sources)
    }
}

impl Selection {
    /// The one package and binary `opts` select (a build of one image): each selected member's
    /// definition may name its binary; more than one image is an error.
    pub fn resolve(opts: &CargoOptions) -> Result<Self> {
        let ws = Workspace::resolve(opts)?;
        let mut all = Vec::new();
        for m in &ws.members {
            let defined = m
                .image_spec(SourcePolicy::Confined)
                .ok()
                .flatten()
                .and_then(|s| s.bin);
            all.extend(ws.selections(m, defined.as_deref())?);
        }
        match all.len() {
            1 => Ok(all.pop().expect("one")),
            _ => Err(CargoError::SeveralImages {
                images: all
                    .iter()
                    .map(|s| format!("{} ({})", s.bin, s.package))
                    .collect::<Vec<_>>()
                    .join(", "),
            }),
        }
    }

    /// The image definition under `[package.metadata.ironstar]` of the package's Cargo.toml,
    /// named after the package unless it says otherwise.
    pub fn image_spec(&self, sources: SourcePolicy) -> Result<Option<ImageSpec>, SpecError> {
        ImageSpec::load_cargo_metadata(&self.package_manifest, &self.package, sources)
    }
}

fn network_flags(opts: &CargoOptions) -> Vec<&'static str> {
    [
        (opts.locked, "--locked"),
        (opts.frozen, "--frozen"),
        (opts.offline, "--offline"),
    ]
    .into_iter()
    .filter_map(|(on, flag)| on.then_some(flag))
    .collect()
}

/// Build the selected binary for every platform of `platforms`.
pub fn build(
    sel: &Selection,
    opts: &CargoOptions,
    platforms: &[&'static Platform],
) -> Result<CargoOutput> {
    let mut out = build_all(&[(sel, platforms)], opts)?;
    Ok(out.pop().expect("one output per selection"))
}

/// Build every selection's binary, each for its platforms, in ONE cargo invocation
/// (`-p A --bin a -p B --bin b --target T1 --target T2 …`): cargo builds each binary for every
/// target given, so an image with fewer platforms than another leaves some binaries unused.
/// The selections come from one [`Workspace`]. One output per selection, in order.
pub fn build_all(
    units: &[(&Selection, &[&'static Platform])],
    opts: &CargoOptions,
) -> Result<Vec<CargoOutput>> {
    let Some((sel, _)) = units.first() else {
        return Ok(Vec::new());
    };
    let mut platforms: Vec<&'static Platform> = Vec::new();
    for p in units.iter().flat_map(|(_, ps)| ps.iter()) {
        if !platforms.contains(p) {
            platforms.push(p);
        }
    }
    platforms.sort_by_key(|p| crate::platform::PLATFORMS.iter().position(|q| q == *p));
    let rustc = toolchain::Rustc::probe(&sel.dir)?;
    if let Some(p) = platforms.iter().find(|p| !rustc.has_target(p.rust_target)) {
        return Err(CargoError::MissingTarget {
            target: p.rust_target.to_string(),
        });
    }
    let lock = metadata::lock_packages(&sel.workspace_root);
    let compiles_c = metadata::compiles_c(&lock);
    let toolchain = Toolchain::discover(compiles_c, &rustc)?;
    let cwd = std::env::current_dir()?;
    let target_dir = opts
        .target_dir
        .as_ref()
        .map(|t| absolute(&cwd, t))
        .unwrap_or_else(|| sel.target_directory.clone());
    let allocator = opts.allocator.unwrap_or_default();
    let link_dirs = match (allocator, &toolchain) {
        (Allocator::System, _) => Vec::new(),
        (Allocator::Mimalloc, Toolchain::Zig { .. }) => return Err(CargoError::AllocatorWithZig),
        (Allocator::Mimalloc, Toolchain::RustLld) => {
            let targets: Vec<&str> = platforms.iter().map(|p| p.rust_target).collect();
            allocator::prepare(&sel.cargo, &rustc, &targets)?
        }
    };
    let environment = env::Env::from_process();
    let targets: Vec<&str> = platforms.iter().map(|p| p.rust_target).collect();
    let openssl::Provided {
        from: openssl,
        dirs: openssl_dirs,
    } = match toolchain {
        Toolchain::Zig { .. } => openssl::for_build(sel, opts, &environment, &lock, &targets)?,
        Toolchain::RustLld => Default::default(),
    };
    let inputs = env::Inputs {
        toolchain: &toolchain,
        platforms: &platforms,
        compiles_c,
        lock: &lock,
        link_dirs: &link_dirs,
        openssl: &openssl_dirs,
        dir: &sel.dir,
        remaps: remaps(sel, &target_dir),
    };
    let mut set = env::plan(&environment, &inputs)?;
    if !environment.0.contains_key("SOURCE_DATE_EPOCH") {
        if let Some(t) = crate::source_date::commit_time(Some(&sel.dir)) {
            tracing::debug!("SOURCE_DATE_EPOCH={t} (last commit)");
            set.push(("SOURCE_DATE_EPOCH".into(), t.to_string().into()));
        }
    }
    run::terminal_settings(&mut set);
    let selections: Vec<&Selection> = units.iter().map(|(s, _)| *s).collect();
    let (mut cmd, shown) = build_command(&selections, opts, &platforms, &toolchain, &target_dir);
    cmd.envs(set);
    tracing::info!("{shown}");
    let want = run::Wanted {
        units: selections
            .iter()
            .map(|s| (s.package_id.as_str(), s.bin.as_str()))
            .collect(),
        platforms: &platforms,
        target_dir: &target_dir,
        features: &|name| metadata::features(&sel.cargo, &sel.dir, &sel.manifest_path, name),
    };
    let (built, compiled) = run::run(cmd, &shown, &want)?;
    Ok(units
        .iter()
        .zip(built)
        .map(|((sel, ps), mut binaries)| {
            binaries.retain(|p, _| ps.iter().any(|q| &q.to_string() == p));
            let openssl = ps
                .iter()
                .filter_map(|p| {
                    let (_, o) = openssl.iter().find(|(t, _)| t == p.rust_target)?;
                    Some((p.to_string(), o.clone()))
                })
                .collect();
            let debug_info = binaries
                .iter()
                .filter(|(_, b)| has_debug_info(b))
                .map(|(p, _)| p.clone())
                .collect();
            CargoOutput {
                binaries,
                version: Some(sel.version.clone()),
                name: Some(sel.package.clone()),
                debug_info,
                units: compiled.clone(),
                allocator,
                openssl,
            }
        })
        .collect())
}

/// Paths that would otherwise end up in panic messages and debug info. When several prefixes
/// match, rustc (and clang) apply the last one, so the most specific comes last.
fn remaps(sel: &Selection, target_dir: &Path) -> Vec<(PathBuf, &'static str)> {
    let mut remaps = Vec::new();
    if let Some(h) = toolchain::cargo_home() {
        remaps.push((h, "/cargo"));
    }
    remaps.push((sel.workspace_root.clone(), "/build"));
    remaps.push((target_dir.to_path_buf(), "/build/target"));
    remaps
}

/// `cargo build` (or `cargo-zigbuild zigbuild`) with every flag, and how to show it: each
/// package and binary once.
fn build_command(
    selections: &[&Selection],
    opts: &CargoOptions,
    platforms: &[&'static Platform],
    toolchain: &Toolchain,
    target_dir: &Path,
) -> (Command, String) {
    let sel = selections[0];
    let profile = opts.profile.as_deref().unwrap_or("release");
    let (program, sub) = toolchain.command(&sel.cargo);
    let mut args: Vec<OsString> = vec![sub.into()];
    let mut push = |a: &str| args.push(a.into());
    push("--message-format=json-render-diagnostics");
    let mut given: Vec<(&str, &str)> = Vec::new();
    for s in selections {
        for (flag, value) in [("--package", &s.package), ("--bin", &s.bin)] {
            if !given.contains(&(flag, value.as_str())) {
                given.push((flag, value));
                push(flag);
                push(value);
            }
        }
    }
    push("--profile");
    push(profile);
    for p in platforms {
        push("--target");
        push(p.rust_target);
    }
    for f in &opts.features.features {
        push("--features");
        push(f);
    }
    if opts.features.all_features {
        push("--all-features");
    }
    if opts.features.no_default_features {
        push("--no-default-features");
    }
    network_flags(opts).into_iter().for_each(&mut push);
    if let Some(j) = &opts.jobs {
        push("--jobs");
        push(j);
    }
    args.push("--manifest-path".into());
    args.push(sel.manifest_path.clone().into());
    args.push("--target-dir".into());
    args.push(target_dir.into());
    args.extend(opts.args.iter().cloned());
    let shown = std::iter::once(Path::new(&program).file_name().unwrap_or(&program))
        .chain(args.iter().map(OsString::as_os_str))
        .map(OsStr::to_string_lossy)
        .collect::<Vec<_>>()
        .join(" ");
    let mut cmd = cargo_command(&program, &sel.dir);
    cmd.args(args);
    (cmd, shown)
}

fn absolute(cwd: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        cwd.join(p)
    }
}

/// `program` (cargo or cargo-zigbuild) run from `dir`, without the variables cargo sets for the
/// program it runs (when ironstar runs under `cargo run` or `cargo test`). Build scripts such as
/// ring's watch some of them (`rerun-if-env-changed=CARGO_PKG_NAME`), so they would rebuild every
/// dependency each time ironstar is run differently; nobody sets them on purpose for a build.
fn cargo_command(program: &OsStr, dir: &Path) -> Command {
    let mut cmd = Command::new(program);
    cmd.current_dir(dir);
    for (k, _) in std::env::vars_os() {
        let Some(k) = k.to_str() else { continue };
        let prefixes = [
            "CARGO_PKG_",
            "CARGO_CFG_",
            "CARGO_MANIFEST_",
            "CARGO_BIN_EXE_",
        ];
        let names = [
            "CARGO_CRATE_NAME",
            "CARGO_BIN_NAME",
            "CARGO_PRIMARY_PACKAGE",
            "CARGO_RUSTC_CURRENT_DIR",
            "CARGO_TARGET_TMPDIR",
            "OUT_DIR",
        ];
        if prefixes.iter().any(|p| k.starts_with(p)) || names.contains(&k) {
            cmd.env_remove(k);
        }
    }
    cmd
}

fn run_captured(cmd: &mut Command, shown: &str) -> Result<String> {
    let out = cmd
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|source| CargoError::Spawn {
            command: shown.to_string(),
            source,
        })?;
    if !out.status.success() {
        return Err(CargoError::CargoFailed {
            command: shown.to_string(),
            status: out.status,
        });
    }
    String::from_utf8(out.stdout).map_err(|_| CargoError::Output {
        command: shown.to_string(),
        message: "not UTF-8".into(),
    })
}
