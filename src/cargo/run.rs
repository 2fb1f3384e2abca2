//! Running the build: the cargo child, its JSON messages, and the binaries they name.

use std::collections::BTreeMap;
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
}

/// The cargo child: killed and reaped if dropped before it was waited for, so no early return
/// (a bad message, a broken pipe, a panic) leaves a build running.
struct Running(Option<Child>);

impl Running {
    fn wait(mut self) -> std::io::Result<std::process::ExitStatus> {
        self.0.take().expect("not yet waited for").wait()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// What the build must produce: binaries (package id, binary name), each for every platform.
pub(super) struct Wanted<'a> {
    pub units: Vec<(&'a str, &'a str)>,
    pub platforms: &'a [&'static Platform],
}

/// Run `cmd` (a cargo build with JSON messages on stdout) and return each unit's binaries by
/// platform, in the order of `want.units`.
pub(super) fn run(
    mut cmd: Command,
    shown: &str,
    want: &Wanted,
) -> Result<Vec<BTreeMap<String, PathBuf>>> {
    // Stdout carries cargo's JSON messages and nothing else reaches ours; cargo's progress and
    // the compilers' diagnostics go to our stderr.
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let mut child = cmd.spawn().map_err(|source| CargoError::Spawn {
        command: shown.to_string(),
        source,
    })?;
    let stdout = child.stdout.take().expect("piped stdout");
    let child = Running(Some(child));
    let mut found: Vec<BTreeMap<String, PathBuf>> = vec![BTreeMap::new(); want.units.len()];
    let mut stderr = std::io::stderr();
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        if !line.starts_with('{') {
            // Not a message (cargo prints none such today): pass it on, to stderr.
            let _ = writeln!(stderr, "{line}");
            continue;
        }
        let msg: Message = serde_json::from_str(&line)?;
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
    Ok(found)
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
        drop(Running(Some(child)));
        // Killed and waited for: not even a zombie is left.
        assert!(!proc_dir.exists());
    }
}
