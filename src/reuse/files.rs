//! The files a package builds from, as cargo sees them (git's tracked files and the untracked
//! ones it does not ignore; outside git, every file but `target/` and `.git/`), and the digest of
//! a file or directory's content.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::digest::Digest;

/// What a path holds now: its content's digest (a directory: of every file under it, by name),
/// or `absent`.
pub fn digest_path(path: &Path) -> String {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return "absent".into();
    };
    if meta.is_dir() {
        let mut listing = String::new();
        for f in walk(path, None) {
            let rel = f.strip_prefix(path).unwrap_or(&f);
            listing.push_str(&format!("{}\t{}\n", rel.display(), digest_path(&f)));
        }
        return Digest::of(listing.as_bytes()).to_string();
    }
    file_digest(path).unwrap_or_else(|| "absent".into())
}

/// A file's content digest, with `+x` when it is executable (a mode cargo's build may use);
/// a symbolic link's target.
fn file_digest(path: &Path) -> Option<String> {
    use std::os::unix::fs::PermissionsExt as _;
    let meta = std::fs::symlink_metadata(path).ok()?;
    if meta.file_type().is_symlink() {
        let to = std::fs::read_link(path).ok()?;
        return Some(format!("link:{}", to.display()));
    }
    let d = Digest::of(&std::fs::read(path).ok()?).to_string();
    Some(match meta.permissions().mode() & 0o111 {
        0 => d,
        _ => format!("{d}+x"),
    })
}

/// Every file of `dir` a build can see, sorted; never one under `skip` (the target directory).
pub fn package_files(dir: &Path, skip: &Path) -> Vec<PathBuf> {
    let mut files = git_files(dir).unwrap_or_else(|| walk(dir, Some(skip)));
    files.retain(|f| !f.starts_with(skip) && !f.components().any(|c| c.as_os_str() == ".git"));
    files.sort();
    files.dedup();
    files
}

/// The file digests of `files`, absent ones left out (git still lists a deleted file).
pub fn digests(files: &[PathBuf]) -> Vec<(&PathBuf, String)> {
    files
        .iter()
        .filter_map(|f| Some((f, file_digest(f)?)))
        .collect()
}

/// `git ls-files` of `dir`: tracked files and untracked ones not ignored; `None` outside git.
fn git_files(dir: &Path) -> Option<Vec<PathBuf>> {
    let out = Command::new("git")
        .args([
            "ls-files",
            "-z",
            "--cached",
            "--others",
            "--exclude-standard",
            "--",
            ".",
        ])
        .current_dir(dir)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?;
    Some(
        text.split('\0')
            .filter(|s| !s.is_empty())
            .map(|s| dir.join(s))
            .collect(),
    )
}

/// Every file under `dir` (symbolic links not followed), but `target/` directories, `.git/`
/// and `skip`.
fn walk(dir: &Path, skip: Option<&Path>) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            let is_dir = e.file_type().is_ok_and(|t| t.is_dir());
            let name = e.file_name();
            if is_dir {
                let skipped = name == ".git" || name == "target" || Some(p.as_path()) == skip;
                if !skipped {
                    stack.push(p);
                }
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// `path` named relative to `root` when under it (a checkout elsewhere names it the same),
/// else as it is.
pub fn relative(path: &Path, root: &Path) -> String {
    let path = lexical(path);
    match path.strip_prefix(root) {
        Ok(rel) => rel.display().to_string(),
        Err(_) => path.display().to_string(),
    }
}

/// `path` with its `.` and `..` components folded, without asking the file system.
fn lexical(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other),
        }
    }
    out
}
