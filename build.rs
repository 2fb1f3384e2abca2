//! `ironstar --version` names the commit it was built from: `ironstar 0.1.0 (18cfe84 2026-12-03)`
//! from a git checkout, `ironstar 0.1.0` from the published crate (no repository of its own),
//! from a tree without git, or where git is not installed. Only the version output reads it: no
//! image, SBOM or request carries it, so digests do not depend on the commit.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap());
    let info = commit(&dir)
        .map(|(hash, date)| format!(" ({hash} {date})"))
        .unwrap_or_default();
    println!("cargo:rustc-env=IRONSTAR_BUILD_COMMIT={info}");
    println!("cargo:rerun-if-changed=build.rs");
}

/// The short hash and the commit date (UTC) of HEAD, when `dir` is the top of a git work tree:
/// the packaged crate unpacked inside another repository (`cargo package` verifies it under
/// `target/package/`) must not claim that repository's commit.
fn commit(dir: &Path) -> Option<(String, String)> {
    let top = git(dir, &["rev-parse", "--show-toplevel"])?;
    if std::fs::canonicalize(&top).ok()? != std::fs::canonicalize(dir).ok()? {
        return None;
    }
    // A new commit or a checkout moves HEAD or the branch it names: rebuild then, not on every
    // edit. Only paths that exist (cargo reruns every time for a missing one).
    for name in ["HEAD", "packed-refs"] {
        watch(dir, name);
    }
    if let Some(branch) = git(dir, &["symbolic-ref", "-q", "HEAD"]) {
        watch(dir, &branch);
    }
    let line = git(
        dir,
        &[
            "log",
            "-1",
            "--format=%h %cd",
            "--abbrev=7",
            "--date=format-local:%Y-%m-%d",
        ],
    )?;
    let (hash, date) = line.split_once(' ')?;
    Some((hash.to_string(), date.to_string()))
}

/// Ask cargo to rerun this script when git's file `name` (resolved by git, worktrees too) changes.
fn watch(dir: &Path, name: &str) {
    if let Some(path) = git(
        dir,
        &["rev-parse", "--path-format=absolute", "--git-path", name],
    ) {
        if Path::new(&path).exists() {
            println!("cargo:rerun-if-changed={path}");
        }
    }
}

/// git's trimmed stdout, or None when git is missing or fails.
fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .current_dir(dir)
        .args(args)
        .env("TZ", "UTC")
        .output()
        .ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    (out.status.success() && !text.trim().is_empty()).then(|| text.trim().to_string())
}
