//! Running the build: the cargo child, its JSON messages, and the binaries they name.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use serde::Deserialize;

use super::metadata::Target;
use super::{CargoError, Result};
use crate::platform::Platform;

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
    #[serde(default)]
    filenames: Vec<PathBuf>,
    /// A `build-script-executed` message's `OUT_DIR`: its `output` file, beside it, holds the
    /// script's `cargo:` lines.
    #[serde(default)]
    out_dir: Option<PathBuf>,
}

/// The units cargo compiled (fresh ones included: cargo reports every unit of the build), by
/// package id: what went into each target's binaries, and what ran on the build machine.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Units {
    /// Per Rust target: the packages compiled for it (`<target-dir>/<triple>/…`).
    pub by_target: BTreeMap<String, BTreeSet<String>>,
    /// Packages compiled for the build machine: build scripts, proc-macros and what they use
    /// (`<target-dir>/<profile>/…`), shared by every target of the build.
    pub host: BTreeSet<String>,
    /// The proc-macro packages among them (reached by normal dependency edges).
    pub proc_macros: BTreeSet<String>,
    /// Each build script run (or found fresh): its package id and its `OUT_DIR`, whose sibling
    /// `output` holds what it declared (`rerun-if-changed`, `rerun-if-env-changed`).
    pub build_scripts: BTreeSet<(String, PathBuf)>,
}

/// Global allocator crates: with one of them, musl's malloc is not the one threads use.
const ALLOCATOR_CRATES: [&str; 5] = [
    "mimalloc",
    "jemallocator",
    "tikv-jemallocator",
    "snmalloc-rs",
    "rpmalloc",
];

/// A package id's name: `registry+…#name@1.2.3`, `path+file:///…/name#0.1.0`.
fn package_name(id: &str) -> &str {
    let (head, tail) = id.rsplit_once('#').unwrap_or(("", id));
    match tail.split_once('@') {
        Some((name, _)) => name,
        None => head.rsplit('/').next().unwrap_or(tail),
    }
}

impl Units {
    /// The multi-threaded runtimes (tokio, rayon) some target links with no global allocator
    /// crate: its threads share musl's malloc, which is slow under contention.
    pub fn threads_on_musl_malloc(&self) -> Vec<&'static str> {
        let mut found = Vec::new();
        for ids in self.by_target.values() {
            let names: BTreeSet<&str> = ids.iter().map(|i| package_name(i)).collect();
            if ALLOCATOR_CRATES.iter().any(|a| names.contains(a)) {
                continue;
            }
            for rt in ["tokio", "rayon"] {
                if names.contains(rt) && !found.contains(&rt) {
                    found.push(rt);
                }
            }
        }
        found
    }

    /// Record one `compiler-artifact` message.
    fn add(&mut self, msg: &Message, target_dir: &Path, triples: &[&str]) {
        let Some(id) = &msg.package_id else { return };
        let triple = msg.filenames.iter().find_map(|f| {
            let first = f.strip_prefix(target_dir).ok()?.components().next()?;
            triples
                .iter()
                .find(|t| first.as_os_str() == std::ffi::OsStr::new(t))
        });
        match triple {
            Some(t) => {
                let set = self.by_target.entry(t.to_string()).or_default();
                set.insert(id.clone());
            }
            None => {
                self.host.insert(id.clone());
                let kinds = msg.target.iter().flat_map(|t| &t.kind);
                if kinds.into_iter().any(|k| k == "proc-macro") {
                    self.proc_macros.insert(id.clone());
                }
            }
        }
    }
}

/// The cargo child, leading its own process group (its compilers are in it): the group is
/// killed and cargo reaped if dropped before it was waited for, so no early return (a bad
/// message, a broken pipe, a panic) leaves a build running, and on SIGINT, SIGTERM or SIGHUP
/// ([`crate::interrupt`]) likewise.
struct Running {
    child: Option<Child>,
    _on_signal: Option<crate::interrupt::Registered>,
}

impl Running {
    fn spawn(cmd: &mut Command) -> std::io::Result<Running> {
        use std::os::unix::process::CommandExt as _;
        let child = cmd.process_group(0).spawn()?;
        let on_signal = crate::interrupt::process_group(child.id());
        Ok(Running {
            child: Some(child),
            _on_signal: Some(on_signal),
        })
    }

    fn wait(mut self) -> std::io::Result<std::process::ExitStatus> {
        self.child.take().expect("not yet waited for").wait()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if let Some(pid) = rustix::process::Pid::from_raw(child.id() as i32) {
                let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// What the build must produce: binaries (package id, binary name), each for every platform.
pub(super) struct Wanted<'a> {
    pub units: Vec<(&'a str, &'a str)>,
    pub platforms: &'a [&'static Platform],
    /// The `--target-dir`, to tell target units from host units.
    pub target_dir: &'a Path,
    /// A package's features by name, to name the one that fixes a failure.
    pub features: &'a dyn Fn(&str) -> Vec<String>,
}

/// Run `cmd` (a cargo build with JSON messages on stdout): each wanted binary's paths by
/// platform (in the order of `want.units`), and the units compiled (by the whole build: the
/// packages of one build share their dependencies, features unified).
pub(super) fn run(
    mut cmd: Command,
    shown: &str,
    want: &Wanted,
) -> Result<(Vec<BTreeMap<String, PathBuf>>, Units)> {
    // Stdout carries cargo's JSON messages and nothing else reaches ours; cargo's progress and
    // the compilers' diagnostics go to our stderr.
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = Running::spawn(&mut cmd).map_err(|source| CargoError::Spawn {
        command: shown.to_string(),
        source,
    })?;
    let stdout = child
        .child
        .as_mut()
        .and_then(|c| c.stdout.take())
        .expect("piped stdout");
    let stderr_pipe = child
        .child
        .as_mut()
        .and_then(|c| c.stderr.take())
        .expect("piped stderr");
    let tail = std::thread::spawn(move || pass_on(stderr_pipe));
    let mut found: Vec<BTreeMap<String, PathBuf>> = vec![BTreeMap::new(); want.units.len()];
    let mut units = Units::default();
    let triples: Vec<&str> = want.platforms.iter().map(|p| p.rust_target).collect();
    let mut stderr = std::io::stderr();
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        if !line.starts_with('{') {
            // Not a message (cargo prints none such today): pass it on, to stderr.
            let _ = writeln!(stderr, "{line}");
            continue;
        }
        let msg: Message = serde_json::from_str(&line)?;
        if msg.reason == "compiler-artifact" {
            units.add(&msg, want.target_dir, &triples);
        }
        if let (true, Some(id), Some(out)) = (
            msg.reason == "build-script-executed",
            &msg.package_id,
            &msg.out_dir,
        ) {
            units.build_scripts.insert((id.clone(), out.clone()));
        }
        if let Some((unit, p, exe)) = artifact(msg, want, shown)? {
            tracing::debug!("{p}: built {}", exe.display());
            found[unit].insert(p.to_string(), exe);
        }
    }
    let status = child.wait()?;
    let tail = tail.join().unwrap_or_default();
    if !status.success() {
        let output = super::diagnose::strip_ansi(&String::from_utf8_lossy(&tail));
        return Err(CargoError::BuildFailed {
            status,
            diagnosis: Box::new(super::diagnose::diagnose(&output, &triples, want.features)),
        });
    }
    for ((_, bin), binaries) in want.units.iter().zip(&found) {
        if let Some(p) = want
            .platforms
            .iter()
            .find(|p| !binaries.contains_key(&p.to_string()))
        {
            return Err(CargoError::MissingArtifact {
                bin: bin.to_string(),
                target: p.rust_target.to_string(),
            });
        }
    }
    Ok((found, units))
}

/// Cargo's stderr is a pipe here (its tail is kept): on a terminal, its colours and progress bar
/// are asked for, unless the user chose them.
pub(super) fn terminal_settings(set: &mut Vec<(String, std::ffi::OsString)>) {
    use std::io::IsTerminal as _;
    let unset = |k: &str| std::env::var_os(k).is_none();
    if crate::stderr_is_styled() && unset("CARGO_TERM_COLOR") {
        set.push(("CARGO_TERM_COLOR".into(), "always".into()));
    }
    if !std::io::stderr().is_terminal() || !unset("CARGO_TERM_PROGRESS_WHEN") {
        return;
    }
    if let Some(width) = terminal_width() {
        set.push(("CARGO_TERM_PROGRESS_WHEN".into(), "always".into()));
        set.push(("CARGO_TERM_PROGRESS_WIDTH".into(), width.to_string().into()));
    }
}

fn terminal_width() -> Option<u16> {
    let mut size: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: TIOCGWINSZ fills the winsize it is given; fd 2 is ours.
    let rc = unsafe { libc::ioctl(2, libc::TIOCGWINSZ, &mut size) };
    (rc == 0 && size.ws_col > 0).then_some(size.ws_col)
}

/// How much of cargo's stderr is kept for [`super::diagnose`]: a failing build script's block
/// (openssl-sys prints ~100 lines) with room to spare, bounded whatever cargo prints.
const TAIL: usize = 1 << 20;

/// Copy cargo's stderr to ours as it comes, keeping its last [`TAIL`] bytes.
fn pass_on(mut from: impl std::io::Read) -> Vec<u8> {
    let mut tail: Vec<u8> = Vec::new();
    let mut buf = [0u8; 8192];
    let mut stderr = std::io::stderr();
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        let _ = stderr.write_all(&buf[..n]);
        tail.extend_from_slice(&buf[..n]);
        if tail.len() > TAIL {
            tail.drain(..tail.len() - TAIL);
        }
    }
    tail
}

/// The wanted binary a message announces: its unit (index in `want.units`) and platform.
fn artifact(
    msg: Message,
    want: &Wanted,
    shown: &str,
) -> Result<Option<(usize, &'static Platform, PathBuf)>> {
    if msg.reason != "compiler-artifact" {
        return Ok(None);
    }
    let (Some(id), Some(target), Some(exe)) = (msg.package_id, msg.target, msg.executable) else {
        return Ok(None);
    };
    if !target.kind.iter().any(|k| k == "bin") {
        return Ok(None);
    }
    let Some(unit) = want
        .units
        .iter()
        .position(|(p, b)| *p == id && *b == target.name)
    else {
        return Ok(None);
    };
    // With --target, cargo puts a target's artifacts in <target-dir>/<triple>/<profile>/: the
    // triple names the platform, wherever the target directory is.
    let triple = exe
        .parent()
        .and_then(Path::parent)
        .and_then(Path::file_name)
        .and_then(|s| s.to_str());
    match triple.and_then(|t| want.platforms.iter().find(|p| p.rust_target == t)) {
        Some(p) => Ok(Some((unit, p, exe))),
        None => Err(CargoError::Output {
            command: shown.to_string(),
            message: format!(
                "binary {} is not under <target-dir>/<target>/<profile>",
                exe.display()
            ),
        }),
    }
}

/// The binary has DWARF debug info (`.debug_info`): shipped as built, but worth saying.
pub fn has_debug_info(path: &Path) -> bool {
    let Ok(bytes) = std::fs::read(path) else {
        return false;
    };
    let Ok(elf) = goblin::elf::Elf::parse(&bytes) else {
        return false;
    };
    elf.section_headers
        .iter()
        .any(|s| elf.shdr_strtab.get_at(s.sh_name) == Some(".debug_info"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threads_on_musl_malloc_unless_an_allocator_crate_is_linked() {
        let crates = "registry+https://github.com/rust-lang/crates.io-index";
        let mut units = Units::default();
        let t = units
            .by_target
            .entry("x86_64-unknown-linux-musl".into())
            .or_default();
        t.insert(format!("{crates}#tokio@1.54.1"));
        t.insert("path+file:///src/app#0.1.0".into());
        assert_eq!(units.threads_on_musl_malloc(), ["tokio"]);
        let t = units.by_target.values_mut().next().unwrap();
        t.insert(format!("{crates}#mimalloc@0.1.48"));
        assert!(units.threads_on_musl_malloc().is_empty());
        assert_eq!(package_name("path+file:///src/app#0.1.0"), "app");
    }

    #[test]
    fn a_dropped_child_is_killed_and_reaped() {
        let child = Command::new("sleep").arg("60").spawn().unwrap();
        let proc_dir = PathBuf::from(format!("/proc/{}", child.id()));
        assert!(proc_dir.exists());
        drop(Running {
            child: Some(child),
            _on_signal: None,
        });
        // Killed and waited for: not even a zombie is left.
        assert!(!proc_dir.exists());
    }
}
