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

impl Units {
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
        .stderr(Stdio::inherit());
    let mut child = Running::spawn(&mut cmd).map_err(|source| CargoError::Spawn {
        command: shown.to_string(),
        source,
    })?;
    let stdout = child
        .child
        .as_mut()
        .and_then(|c| c.stdout.take())
        .expect("piped stdout");
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
    if !status.success() {
        return Err(CargoError::CargoFailed {
            command: shown.to_string(),
            status,
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
