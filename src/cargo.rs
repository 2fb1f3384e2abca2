//! Cross-building a crate with cargo for every platform of an image (`ironstar build --cargo`).
//!
//! One `cargo build --target T1 --target T2 …` builds the binary for every platform, as the flake
//! does: the Rust target comes from the platform table ([`crate::platform`]) and every musl target
//! is linked with `-C target-feature=+crt-static`. No cross gcc is needed:
//!
//! - the linker is `rust-lld`, which ships with rustup's toolchains and links musl targets with
//!   the self-contained CRT objects and libc that come with the target's standard library;
//! - C and assembly (crates such as ring, through the `cc` crate) are compiled by `clang` with
//!   `--target=<llvm triple>`. The archiver needs no setting: rustc re-indexes native archives
//!   when it bundles them, so the host's `ar` does for any target.
//!
//! Each setting is made per target, and only when the user has not made it. The binaries are
//! found from cargo's JSON messages. The build is reproducible: `SOURCE_DATE_EPOCH` is the last
//! commit's time unless set, and the workspace, target directory and `$CARGO_HOME` are remapped
//! to fixed paths so where the build ran does not leak into the binary.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::io::{BufRead, BufReader, Write};
use std::path::{Component, Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};

use serde::Deserialize;

use crate::platform::Platform;

/// What to build and how.
#[derive(Debug, Clone, Default)]
pub struct CargoOptions {
    pub manifest_path: Option<PathBuf>,
    pub package: Option<String>,
    pub bin: Option<String>,
    /// Cargo profile; default `release`.
    pub profile: Option<String>,
    pub platforms: Vec<&'static Platform>,
    /// The image definition file: without `--package`/`--manifest-path`, the package whose
    /// directory holds it is built. Without it, the package of the current directory.
    pub image_file: Option<PathBuf>,
}

/// The binaries built, by platform (`linux/amd64` → path), and the package version.
#[derive(Debug, Clone, Default)]
pub struct CargoOutput {
    pub binaries: BTreeMap<String, PathBuf>,
    pub version: Option<String>,
    /// The binary's name, used as the image name when there is no image file.
    pub name: Option<String>,
    /// The `Cargo.toml` and package built (for the SBOM's `cargo metadata`).
    pub manifest_path: Option<PathBuf>,
    pub package: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum CargoError {
    #[error(
        "the Rust standard library for {target} is not installed; run: rustup target add {target}"
    )]
    MissingTarget { target: String },
    #[error("{tool} not found: {hint}")]
    MissingTool { tool: String, hint: String },
    #[error("no Cargo.toml in {dir} or any directory above it; give --manifest-path")]
    NoManifest { dir: PathBuf },
    #[error("no package `{package}` in the workspace at {workspace}; its packages: {available}")]
    UnknownPackage {
        package: String,
        workspace: PathBuf,
        available: String,
    },
    #[error("cannot tell which package of the workspace at {workspace} to build; give --package (one of: {available})")]
    AmbiguousPackage {
        workspace: PathBuf,
        available: String,
    },
    #[error("package `{package}` has no binary target, so there is nothing to put in an image")]
    NoBinary { package: String },
    #[error("package `{package}` has no binary `{bin}`; its binaries: {available}")]
    UnknownBinary {
        package: String,
        bin: String,
        available: String,
    },
    #[error("package `{package}` has several binaries ({available}); choose one with --bin")]
    SeveralBinaries { package: String, available: String },
    #[error("cannot run `{command}`: {source}")]
    Spawn {
        command: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{command}` failed ({status})")]
    CargoFailed { command: String, status: ExitStatus },
    #[error("`{command}` printed output that is not what was expected: {message}")]
    Output { command: String, message: String },
    #[error("cannot read cargo's JSON messages: {0}")]
    Json(#[from] serde_json::Error),
    #[error("cargo's output: {0}")]
    Io(#[from] std::io::Error),
    #[error("cargo finished but reported no binary `{bin}` for {target}")]
    MissingArtifact { bin: String, target: String },
}

type Result<T, E = CargoError> = std::result::Result<T, E>;

/// The subset of `cargo metadata --no-deps --format-version 1` used here.
#[derive(Debug, Deserialize)]
struct Metadata {
    packages: Vec<Package>,
    workspace_members: Vec<String>,
    workspace_root: PathBuf,
    target_directory: PathBuf,
}

#[derive(Debug, Deserialize)]
struct Package {
    id: String,
    name: String,
    version: String,
    manifest_path: PathBuf,
    targets: Vec<Target>,
    default_run: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Target {
    name: String,
    kind: Vec<String>,
}

/// One line of `cargo build --message-format=json`; only artifacts matter.
#[derive(Debug, Deserialize)]
struct Message {
    reason: String,
    #[serde(default)]
    package_id: Option<String>,
    #[serde(default)]
    target: Option<Target>,
    #[serde(default)]
    executable: Option<PathBuf>,
}

/// Build the crate for every platform in `opts`.
pub fn build(opts: &CargoOptions) -> Result<CargoOutput> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let cwd = std::env::current_dir()?;
    let start = match (&opts.manifest_path, &opts.image_file) {
        (Some(m), _) => absolute(&cwd, m).parent().map(Path::to_path_buf),
        (None, Some(f)) => absolute(&cwd, f).parent().map(Path::to_path_buf),
        (None, None) => None,
    }
    .unwrap_or_else(|| cwd.clone());
    let start = start.canonicalize().unwrap_or(start);
    let manifest = match &opts.manifest_path {
        Some(m) => absolute(&cwd, m),
        None => {
            find_manifest(&start).ok_or_else(|| CargoError::NoManifest { dir: start.clone() })?
        }
    };
    // Cargo reads `.cargo/config.toml` and rustup `rust-toolchain.toml` from the current
    // directory: run everything from the crate's, so the result does not depend on ours.
    let dir = manifest
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf();

    let meta = metadata(&cargo, &manifest, &dir)?;
    let package = select_package(&meta, opts.package.as_deref(), &manifest, &start)?;
    let bin = select_binary(package, opts.bin.as_deref())?;
    let profile = opts.profile.as_deref().unwrap_or("release");

    let rustc = Rustc::probe(&dir)?;
    for p in &opts.platforms {
        if !rustc.has_target(p.rust_target) {
            return Err(CargoError::MissingTarget {
                target: p.rust_target.to_string(),
            });
        }
    }
    let needs_cc = lock_mentions_cc(&meta.workspace_root);
    let env = Env::from_process();
    let plan = plan(&env, &rustc, &meta, &opts.platforms, needs_cc, &dir)?;

    let mut cmd = cargo_command(&cargo, &dir);
    cmd.arg("build")
        .arg("--message-format=json-render-diagnostics")
        .arg("--manifest-path")
        .arg(&manifest)
        .arg("--package")
        .arg(&package.name)
        .arg("--bin")
        .arg(&bin)
        .arg("--profile")
        .arg(profile);
    for p in &opts.platforms {
        cmd.arg("--target").arg(p.rust_target);
    }
    for (k, v) in &plan {
        cmd.env(k, v);
    }
    let shown = format!(
        "cargo build --package {} --bin {bin} --profile {profile}{}",
        package.name,
        opts.platforms
            .iter()
            .map(|p| format!(" --target {}", p.rust_target))
            .collect::<String>()
    );
    tracing::info!("{shown}");
    // Stdout carries cargo's JSON messages and nothing else reaches ours; cargo's progress and
    // the compilers' diagnostics go to our stderr.
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let mut child = cmd.spawn().map_err(|source| CargoError::Spawn {
        command: shown.clone(),
        source,
    })?;
    let stdout = child.stdout.take().expect("piped stdout");
    let mut found: BTreeMap<String, PathBuf> = BTreeMap::new();
    let mut stderr = std::io::stderr();
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        if !line.starts_with('{') {
            // Not a message (cargo prints none such today): pass it on, to stderr.
            let _ = writeln!(stderr, "{line}");
            continue;
        }
        let msg: Message = serde_json::from_str(&line)?;
        if msg.reason != "compiler-artifact" || msg.package_id.as_deref() != Some(&package.id) {
            continue;
        }
        let (Some(target), Some(exe)) = (msg.target, msg.executable) else {
            continue;
        };
        if target.name != bin || !target.kind.iter().any(|k| k == "bin") {
            continue;
        }
        // With several --target, cargo puts each target's artifacts in
        // <target-dir>/<triple>/<profile>/: the triple names the platform.
        let triple = exe
            .strip_prefix(&meta.target_directory)
            .ok()
            .and_then(|rest| rest.components().next())
            .and_then(|c| match c {
                Component::Normal(s) => s.to_str(),
                _ => None,
            });
        match triple.and_then(|t| opts.platforms.iter().find(|p| p.rust_target == t)) {
            Some(p) => {
                tracing::debug!("{p}: built {}", exe.display());
                found.insert(p.to_string(), exe);
            }
            None => {
                return Err(CargoError::Output {
                    command: shown,
                    message: format!(
                        "binary {} is not under {}/<target>",
                        exe.display(),
                        meta.target_directory.display()
                    ),
                })
            }
        }
    }
    let status = child.wait()?;
    if !status.success() {
        return Err(CargoError::CargoFailed {
            command: shown,
            status,
        });
    }
    for p in &opts.platforms {
        if !found.contains_key(&p.to_string()) {
            return Err(CargoError::MissingArtifact {
                bin,
                target: p.rust_target.to_string(),
            });
        }
    }
    Ok(CargoOutput {
        binaries: found,
        version: Some(package.version.clone()),
        name: Some(bin),
        manifest_path: Some(manifest.clone()),
        package: Some(package.name.clone()),
    })
}

/// The Unix time of the last commit of the repository holding `path` (a file or directory; the
/// current directory when `None`), for SOURCE_DATE_EPOCH.
pub fn commit_time(path: Option<&Path>) -> Option<i64> {
    let dir = match path {
        Some(p) if p.is_dir() => p.to_path_buf(),
        Some(p) => p
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_path_buf(),
        None => PathBuf::from("."),
    };
    let out = Command::new("git")
        .arg("-C")
        .arg(&dir)
        .args(["log", "-1", "--format=%ct"])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    String::from_utf8(out.stdout).ok()?.trim().parse().ok()
}

fn absolute(cwd: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        cwd.join(p)
    }
}

fn find_manifest(start: &Path) -> Option<PathBuf> {
    start
        .ancestors()
        .map(|d| d.join("Cargo.toml"))
        .find(|m| m.is_file())
}

/// `cargo` run from `dir`, without the variables cargo sets for the program it runs (when
/// ironstar runs under `cargo run` or `cargo test`). Build scripts such as ring's watch some of
/// them (`rerun-if-env-changed=CARGO_PKG_NAME`), so they would rebuild every dependency each time
/// ironstar is run differently; nobody sets them on purpose for a build.
fn cargo_command(cargo: &OsStr, dir: &Path) -> Command {
    let mut cmd = Command::new(cargo);
    cmd.current_dir(dir);
    for (k, _) in std::env::vars_os() {
        let Some(k) = k.to_str() else { continue };
        let set_by_cargo = [
            "CARGO_PKG_",
            "CARGO_CFG_",
            "CARGO_MANIFEST_",
            "CARGO_BIN_EXE_",
        ]
        .iter()
        .any(|p| k.starts_with(p))
            || [
                "CARGO_CRATE_NAME",
                "CARGO_BIN_NAME",
                "CARGO_PRIMARY_PACKAGE",
                "CARGO_RUSTC_CURRENT_DIR",
                "CARGO_TARGET_TMPDIR",
                "OUT_DIR",
            ]
            .contains(&k);
        if set_by_cargo {
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

fn metadata(cargo: &OsStr, manifest: &Path, dir: &Path) -> Result<Metadata> {
    let text = run_captured(
        cargo_command(cargo, dir)
            .args(["metadata", "--no-deps", "--format-version", "1"])
            .arg("--manifest-path")
            .arg(manifest),
        "cargo metadata",
    )?;
    Ok(serde_json::from_str(&text)?)
}

fn names<'a>(it: impl Iterator<Item = &'a str>) -> String {
    let v: Vec<&str> = it.collect();
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}

/// `--package`, else the package of `--manifest-path`, else the package whose directory holds
/// `start` (the image file's directory, or the current one), else the workspace's only package
/// with a binary.
fn select_package<'m>(
    meta: &'m Metadata,
    by_name: Option<&str>,
    manifest: &Path,
    start: &Path,
) -> Result<&'m Package> {
    let members: Vec<&Package> = meta
        .packages
        .iter()
        .filter(|p| meta.workspace_members.contains(&p.id))
        .collect();
    let available = || names(members.iter().map(|p| p.name.as_str()));
    if let Some(name) = by_name {
        return members
            .iter()
            .copied()
            .find(|p| p.name == name)
            .ok_or_else(|| CargoError::UnknownPackage {
                package: name.to_string(),
                workspace: meta.workspace_root.clone(),
                available: available(),
            });
    }
    let manifest = manifest.canonicalize().unwrap_or(manifest.to_path_buf());
    if let Some(p) = members.iter().find(|p| p.manifest_path == manifest) {
        return Ok(p);
    }
    let owner = members
        .iter()
        .filter_map(|p| {
            let d = p.manifest_path.parent()?;
            start.starts_with(d).then_some((d.components().count(), *p))
        })
        .max_by_key(|(depth, _)| *depth);
    if let Some((_, p)) = owner {
        return Ok(p);
    }
    let with_bins: Vec<&Package> = members
        .iter()
        .copied()
        .filter(|p| p.targets.iter().any(is_bin))
        .collect();
    match with_bins.as_slice() {
        [only] => Ok(only),
        _ => Err(CargoError::AmbiguousPackage {
            workspace: meta.workspace_root.clone(),
            available: available(),
        }),
    }
}

fn is_bin(t: &Target) -> bool {
    t.kind.iter().any(|k| k == "bin")
}

/// `--bin`, else the only binary, else `default-run`.
fn select_binary(package: &Package, by_name: Option<&str>) -> Result<String> {
    let bins: Vec<&str> = package
        .targets
        .iter()
        .filter(|t| is_bin(t))
        .map(|t| t.name.as_str())
        .collect();
    let available = || names(bins.iter().copied());
    match (by_name, bins.as_slice()) {
        (_, []) => Err(CargoError::NoBinary {
            package: package.name.clone(),
        }),
        (Some(b), _) if bins.contains(&b) => Ok(b.to_string()),
        (Some(b), _) => Err(CargoError::UnknownBinary {
            package: package.name.clone(),
            bin: b.to_string(),
            available: available(),
        }),
        (None, [only]) => Ok(only.to_string()),
        (None, _) => match &package.default_run {
            Some(d) if bins.contains(&d.as_str()) => Ok(d.clone()),
            _ => Err(CargoError::SeveralBinaries {
                package: package.name.clone(),
                available: available(),
            }),
        },
    }
}

/// The rustc cargo will run, as seen from the crate's directory.
struct Rustc {
    host: String,
    sysroot: PathBuf,
}

impl Rustc {
    fn probe(dir: &Path) -> Result<Self> {
        let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
        let vv = run_captured(
            Command::new(&rustc).current_dir(dir).arg("-vV"),
            "rustc -vV",
        )?;
        let host = vv
            .lines()
            .find_map(|l| l.strip_prefix("host: "))
            .ok_or_else(|| CargoError::Output {
                command: "rustc -vV".into(),
                message: "no `host:` line".into(),
            })?
            .trim()
            .to_string();
        let sysroot = run_captured(
            Command::new(&rustc)
                .current_dir(dir)
                .args(["--print", "sysroot"]),
            "rustc --print sysroot",
        )?;
        Ok(Rustc {
            host,
            sysroot: PathBuf::from(sysroot.trim()),
        })
    }

    fn rustlib(&self, target: &str) -> PathBuf {
        self.sysroot.join("lib").join("rustlib").join(target)
    }

    fn has_target(&self, target: &str) -> bool {
        std::fs::read_dir(self.rustlib(target).join("lib")).is_ok_and(|entries| {
            entries.flatten().any(|e| {
                let n = e.file_name();
                let n = n.to_string_lossy();
                n.starts_with("libstd-") || n.starts_with("libcore-")
            })
        })
    }

    /// rustup puts `rust-lld` next to rustc's own libraries; rustc finds it there by name.
    fn has_rust_lld(&self) -> bool {
        self.rustlib(&self.host)
            .join("bin")
            .join("rust-lld")
            .is_file()
            || which("rust-lld").is_some()
    }
}

/// `Cargo.lock` pulls in the `cc` crate: something compiles C and needs a C compiler.
fn lock_mentions_cc(workspace_root: &Path) -> bool {
    std::fs::read_to_string(workspace_root.join("Cargo.lock"))
        .is_ok_and(|t| t.lines().any(|l| l.trim() == "name = \"cc\""))
}

/// A program by name on PATH, or by path.
fn which(program: &str) -> Option<PathBuf> {
    let p = Path::new(program);
    if p.components().count() > 1 {
        return p.is_file().then(|| p.to_path_buf());
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(program))
        .find(|c| c.is_file())
}

/// The environment the settings are checked against.
struct Env(BTreeMap<String, OsString>);

impl Env {
    fn from_process() -> Self {
        Env(std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v)))
            .collect())
    }

    fn get(&self, key: &str) -> Option<&OsString> {
        self.0.get(key)
    }

    /// The first of `keys` that is set, and its value.
    fn first<'k>(&self, keys: &[&'k str]) -> Option<(&'k str, String)> {
        keys.iter()
            .find_map(|k| Some((*k, self.get(k)?.to_string_lossy().into_owned())))
    }
}

/// The environment variables to set for `cargo build`, each only where the user has not set it.
fn plan(
    env: &Env,
    rustc: &Rustc,
    meta: &Metadata,
    platforms: &[&'static Platform],
    needs_cc: bool,
    dir: &Path,
) -> Result<Vec<(String, OsString)>> {
    let mut set: Vec<(String, OsString)> = Vec::new();

    if env.get("SOURCE_DATE_EPOCH").is_none() {
        if let Some(t) = commit_time(Some(dir)) {
            tracing::debug!("SOURCE_DATE_EPOCH={t} (last commit)");
            set.push(("SOURCE_DATE_EPOCH".into(), t.to_string().into()));
        }
    }

    // Paths that would otherwise end up in panic messages and debug info. When several prefixes
    // match, rustc applies the last one, so the most specific comes last.
    let cargo_home = env
        .get("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| env.get("HOME").map(|h| PathBuf::from(h).join(".cargo")));
    let mut remaps: Vec<(PathBuf, &str)> = Vec::new();
    if let Some(h) = cargo_home {
        remaps.push((h, "/cargo"));
    }
    remaps.push((meta.workspace_root.clone(), "/build"));
    remaps.push((meta.target_directory.clone(), "/build/target"));
    let mut ours: Vec<String> = vec!["-C".into(), "target-feature=+crt-static".into()];
    for (from, to) in &remaps {
        ours.push(format!("--remap-path-prefix={}={to}", from.display()));
    }

    // Cargo takes the first of CARGO_ENCODED_RUSTFLAGS, RUSTFLAGS, target.<triple>.rustflags
    // (CARGO_TARGET_<TRIPLE>_RUSTFLAGS) and build.rustflags, and ignores the rest. So: if the
    // user set one of the two global variables, ours are appended to it (as
    // CARGO_ENCODED_RUSTFLAGS, which also keeps paths with spaces whole); otherwise they are
    // appended per target to CARGO_TARGET_<TRIPLE>_RUSTFLAGS. Global flags are fine here as
    // cargo gets --target, so they do not reach build scripts and proc macros, and ours are the
    // same for every musl target.
    let spaced = ours.iter().any(|f| f.contains(char::is_whitespace));
    let global: Option<Vec<String>> = if let Some(v) = env.get("CARGO_ENCODED_RUSTFLAGS") {
        let v = v.to_string_lossy();
        Some(
            v.split('\x1f')
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect(),
        )
    } else if let Some(v) = env.get("RUSTFLAGS") {
        Some(
            v.to_string_lossy()
                .split_whitespace()
                .map(String::from)
                .collect(),
        )
    } else if spaced {
        Some(Vec::new())
    } else {
        None
    };
    if let Some(mut flags) = global {
        flags.extend(ours.iter().cloned());
        tracing::debug!("CARGO_ENCODED_RUSTFLAGS={}", flags.join(" "));
        set.push(("CARGO_ENCODED_RUSTFLAGS".into(), flags.join("\x1f").into()));
    }

    for p in platforms {
        let t = p.rust_target;
        let upper = t.to_uppercase().replace(['-', '.'], "_");
        let under = t.replace(['-', '.'], "_");

        // Linker.
        let key = format!("CARGO_TARGET_{upper}_LINKER");
        let linker = match env.first(&[&key]) {
            Some((_, user)) => {
                if which(&user).is_none() {
                    return Err(CargoError::MissingTool {
                        tool: user,
                        hint: format!("{key} names it as the linker for {t}"),
                    });
                }
                user
            }
            None => {
                if !rustc.has_rust_lld() {
                    return Err(CargoError::MissingTool {
                        tool: "rust-lld".into(),
                        hint: format!(
                            "it links {t} without a cross gcc and ships with rustup's toolchains \
                             (in {}); install Rust with rustup, or set {key}",
                            rustc.rustlib(&rustc.host).join("bin").display()
                        ),
                    });
                }
                set.push((key, "rust-lld".into()));
                "rust-lld".into()
            }
        };

        // Rust flags, when not global (see above).
        let rustflags_key = format!("CARGO_TARGET_{upper}_RUSTFLAGS");
        let rustflags = if global_is_set(&set) {
            "CARGO_ENCODED_RUSTFLAGS (above)".to_string()
        } else {
            let mut v: Vec<String> = env
                .first(&[&rustflags_key])
                .map(|(_, s)| s.split_whitespace().map(String::from).collect())
                .unwrap_or_default();
            v.extend(ours.iter().cloned());
            let v = v.join(" ");
            set.push((rustflags_key.clone(), v.clone().into()));
            v
        };

        // C compiler, for crates that build C or assembly with the `cc` crate. The cc crate reads
        // CC_<triple> (either spelling) and TARGET_CC before CC; a plain CC is meant for the host
        // and is not looked at. CFLAGS are only set along with our clang: flags for a compiler
        // the user chose are the user's business.
        let cc_keys = [format!("CC_{t}"), format!("CC_{under}"), "TARGET_CC".into()];
        let cc_keys: Vec<&str> = cc_keys.iter().map(String::as_str).collect();
        let (cc, cflags) = match env.first(&cc_keys) {
            Some((k, user)) => (format!("{user} (from {k})"), user_cflags(env, t, &under)),
            None => {
                set.push((format!("CC_{under}"), "clang".into()));
                let cflags_keys = [
                    format!("CFLAGS_{t}"),
                    format!("CFLAGS_{under}"),
                    "TARGET_CFLAGS".into(),
                ];
                let cflags_keys: Vec<&str> = cflags_keys.iter().map(String::as_str).collect();
                let cflags = match env.first(&cflags_keys) {
                    Some((k, v)) => format!("{v} (from {k})"),
                    None => {
                        let mut v = format!("--target={}", p.llvm_target);
                        for (from, to) in &remaps {
                            v.push_str(&format!(" -ffile-prefix-map={}={to}", from.display()));
                        }
                        set.push((format!("CFLAGS_{under}"), v.clone().into()));
                        v
                    }
                };
                ("clang".to_string(), cflags)
            }
        };
        if needs_cc {
            let program = cc.split_whitespace().next().unwrap_or("");
            if which(program).is_none() {
                return Err(CargoError::MissingTool {
                    tool: program.to_string(),
                    hint: format!(
                        "a dependency compiles C for {t} (Cargo.lock has the `cc` crate); \
                         install clang (Debian: apt-get install clang) or set CC_{under}"
                    ),
                });
            }
        }
        tracing::debug!(
            "{p}: target {t}, linker {linker}, rustflags {rustflags}, CC {cc}, CFLAGS {cflags}"
        );
    }
    Ok(set)
}

fn global_is_set(set: &[(String, OsString)]) -> bool {
    set.iter().any(|(k, _)| k == "CARGO_ENCODED_RUSTFLAGS")
}

fn user_cflags(env: &Env, t: &str, under: &str) -> String {
    let keys = [
        format!("CFLAGS_{t}"),
        format!("CFLAGS_{under}"),
        "TARGET_CFLAGS".into(),
    ];
    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
    match env.first(&keys) {
        Some((k, v)) => format!("{v} (from {k})"),
        None => "(none)".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> Metadata {
        Metadata {
            packages: vec![],
            workspace_members: vec![],
            workspace_root: "/src/ws".into(),
            target_directory: "/src/ws/target".into(),
        }
    }

    fn rustc() -> Rustc {
        // A sysroot with rust-lld, wherever the test runs: the real one.
        Rustc::probe(Path::new(".")).expect("rustc")
    }

    fn env(pairs: &[(&str, &str)]) -> Env {
        let mut m: BTreeMap<String, OsString> = BTreeMap::new();
        m.insert("HOME".into(), "/home/u".into());
        m.insert("PATH".into(), std::env::var_os("PATH").unwrap_or_default());
        for (k, v) in pairs {
            m.insert(k.to_string(), v.into());
        }
        Env(m)
    }

    fn arm64() -> Vec<&'static Platform> {
        vec![Platform::parse("linux/arm64").unwrap()]
    }

    fn get<'a>(set: &'a [(String, OsString)], key: &str) -> Option<&'a str> {
        set.iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.to_str().unwrap())
    }

    #[test]
    fn sets_linker_flags_and_cc_per_target() {
        let set = plan(
            &env(&[]),
            &rustc(),
            &meta(),
            &arm64(),
            false,
            Path::new("/"),
        )
        .unwrap();
        assert_eq!(
            get(&set, "CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER"),
            Some("rust-lld")
        );
        let flags = get(&set, "CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_RUSTFLAGS").unwrap();
        assert!(
            flags.starts_with("-C target-feature=+crt-static "),
            "{flags}"
        );
        assert!(
            flags.contains("--remap-path-prefix=/home/u/.cargo=/cargo"),
            "{flags}"
        );
        assert!(
            flags.ends_with("--remap-path-prefix=/src/ws/target=/build/target"),
            "{flags}"
        );
        assert_eq!(get(&set, "CC_aarch64_unknown_linux_musl"), Some("clang"));
        assert!(get(&set, "CFLAGS_aarch64_unknown_linux_musl")
            .unwrap()
            .starts_with("--target=aarch64-linux-musl "));
        assert_eq!(get(&set, "CARGO_ENCODED_RUSTFLAGS"), None);
    }

    #[test]
    fn keeps_what_the_user_set() {
        let e = env(&[
            ("CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER", "sh"),
            ("CC_aarch64-unknown-linux-musl", "sh"),
            ("RUSTFLAGS", "-C opt-level=2"),
            ("SOURCE_DATE_EPOCH", "1"),
        ]);
        let set = plan(&e, &rustc(), &meta(), &arm64(), true, Path::new("/")).unwrap();
        assert_eq!(
            get(&set, "CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER"),
            None
        );
        assert_eq!(get(&set, "CC_aarch64_unknown_linux_musl"), None);
        assert_eq!(get(&set, "CFLAGS_aarch64_unknown_linux_musl"), None);
        assert_eq!(get(&set, "SOURCE_DATE_EPOCH"), None);
        // RUSTFLAGS would hide per-target flags: ours go after the user's, globally.
        let enc = get(&set, "CARGO_ENCODED_RUSTFLAGS").unwrap();
        assert!(
            enc.starts_with("-C\x1fopt-level=2\x1f-C\x1ftarget-feature=+crt-static\x1f"),
            "{enc:?}"
        );
        assert_eq!(
            get(&set, "CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_RUSTFLAGS"),
            None
        );
    }

    #[test]
    fn missing_tools_are_named() {
        let e = env(&[(
            "CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER",
            "no-such-linker-xyz",
        )]);
        let err = plan(&e, &rustc(), &meta(), &arm64(), false, Path::new("/")).unwrap_err();
        assert!(
            err.to_string().starts_with("no-such-linker-xyz not found"),
            "{err}"
        );
        let e = env(&[("CC_aarch64_unknown_linux_musl", "no-such-cc-xyz")]);
        let err = plan(&e, &rustc(), &meta(), &arm64(), true, Path::new("/")).unwrap_err();
        assert!(
            err.to_string().contains("no-such-cc-xyz not found"),
            "{err}"
        );
        // Not needed without C code.
        plan(&e, &rustc(), &meta(), &arm64(), false, Path::new("/")).unwrap();
    }

    #[test]
    fn picks_the_binary() {
        let pkg = |bins: &[&str], default_run: Option<&str>| Package {
            id: "x".into(),
            name: "p".into(),
            version: "1.0.0".into(),
            manifest_path: "/p/Cargo.toml".into(),
            targets: bins
                .iter()
                .map(|b| Target {
                    name: b.to_string(),
                    kind: vec!["bin".into()],
                })
                .chain([Target {
                    name: "p".into(),
                    kind: vec!["lib".into()],
                }])
                .collect(),
            default_run: default_run.map(String::from),
        };
        assert!(matches!(
            select_binary(&pkg(&[], None), None),
            Err(CargoError::NoBinary { .. })
        ));
        assert_eq!(select_binary(&pkg(&["a"], None), None).unwrap(), "a");
        assert_eq!(
            select_binary(&pkg(&["a", "b"], Some("b")), None).unwrap(),
            "b"
        );
        assert_eq!(
            select_binary(&pkg(&["a", "b"], None), Some("a")).unwrap(),
            "a"
        );
        assert!(matches!(
            select_binary(&pkg(&["a", "b"], None), None),
            Err(CargoError::SeveralBinaries { .. })
        ));
        assert!(matches!(
            select_binary(&pkg(&["a"], None), Some("c")),
            Err(CargoError::UnknownBinary { .. })
        ));
    }
}
