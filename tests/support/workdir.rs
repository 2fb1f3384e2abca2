//! A working directory as a reader of the README or the guide has one, where their shell blocks
//! run as written (or as their twins: a free port for 5000, a private /tmp).

use std::path::Path;
use std::process::{Command, Stdio};

use super::common::*;

/// A working directory as the README and the guide assume one: a copy of the repository's
/// `images/`, and the layout `ironstar build images/ironstar.toml` writes, from the fixture binaries (a release build of
/// ironstar takes minutes; `tests/readme_build.sh` does that one).
pub struct Workdir {
    dir: tempfile::TempDir,
    podman: Podman,
}

impl Workdir {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let w = dir.path();
        ok(Command::new("cp")
            .arg("-r")
            .arg(repo().join("images"))
            .arg(w.join("images")));
        std::fs::create_dir(w.join("tmp")).unwrap();
        let f = fixtures();
        ok(ironstar()
            .current_dir(w)
            .args(["-q", "build", "images/ironstar.toml", "--binary"])
            .arg(format!("linux/amd64={}", f.amd64.display()))
            .arg("--binary")
            .arg(format!("linux/arm64={}", f.arm64.display())));
        let podman = Podman::new();
        Workdir { dir, podman }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `script` with its `/tmp/` as this directory's `tmp/`; the paths the twins put in (the
    /// checkout's, its fixture binaries') are kept as they are, also when the checkout itself
    /// lives under /tmp.
    fn private_tmp(&self, script: &str) -> String {
        let f = fixtures();
        let keep: Vec<String> = [repo(), f.amd64.as_path(), f.arm64.as_path()]
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        let mut s = script.to_string();
        for (i, k) in keep.iter().enumerate() {
            s = s.replace(k.as_str(), &format!("\u{0}{i}\u{0}"));
        }
        s = s.replace("/tmp/", &format!("{}/tmp/", self.path().display()));
        for (i, k) in keep.iter().enumerate() {
            s = s.replace(&format!("\u{0}{i}\u{0}"), k);
        }
        s
    }

    /// Run `script` with `sh -e` here, `ironstar` on PATH and a private podman; /tmp/ becomes
    /// this directory's tmp/. The whole process group is ended afterwards (a block may start a
    /// registry in the background). Returns stdout; panics with both streams on failure.
    pub fn sh(&self, script: &str) -> String {
        use std::os::unix::process::CommandExt;
        let script = self.private_tmp(script);
        let bin = Path::new(env!("CARGO_BIN_EXE_ironstar")).parent().unwrap();
        let path = format!(
            "{}:{}",
            bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let mut sh = Command::new("sh");
        let child = self
            .podman
            .env(&mut sh)
            .args(["-ec", &script])
            .current_dir(self.path())
            .env("PATH", path)
            .env("IRONSTAR_NO_CACHE", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .unwrap();
        let pgid = child.id() as i32;
        let out = child.wait_with_output().unwrap();
        let _ = Command::new("kill")
            .arg("--")
            .arg(format!("-{pgid}"))
            .stderr(Stdio::null())
            .status();
        assert!(
            out.status.success(),
            "documented block failed ({}):\n{script}\nstdout: {}\nstderr: {}",
            out.status,
            stdout(&out),
            stderr(&out)
        );
        stdout(&out)
    }
}
