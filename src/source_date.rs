//! The date an image carries when `SOURCE_DATE_EPOCH` is unset: the last commit's time of the
//! git repository holding the crate or the definition file, so rebuilding a commit anywhere
//! gives its digest again.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The Unix time of the last commit of the repository holding `path` (a file or directory; the
/// current directory when `None`), for SOURCE_DATE_EPOCH.
pub fn commit_time(path: Option<&Path>) -> Option<i64> {
    let out = git(&dir_of(path), &["log", "-1", "--format=%ct"])?;
    String::from_utf8(out).ok()?.trim().parse().ok()
}

/// The last commit's id of the repository holding `path`, for the revision a reuse record names.
pub fn commit_id(path: &Path) -> Option<String> {
    let out = git(&dir_of(Some(path)), &["rev-parse", "HEAD"])?;
    Some(String::from_utf8(out).ok()?.trim().to_string()).filter(|s| !s.is_empty())
}

/// Why [`commit_time`] found none for `path`, as a one-line note saying what the image's date
/// is then and how to set it.
pub fn no_commit_note(path: Option<&Path>) -> String {
    let dir = dir_of(path);
    let why = match git(&dir, &["rev-parse", "--git-dir"]) {
        Some(_) => format!("the git repository of {} has no commit yet", dir.display()),
        None => format!("{} is not in a git repository", dir.display()),
    };
    format!(
        "SOURCE_DATE_EPOCH is 0, so the image is dated 1970-01-01: {why}; commit first, or set \
         it, e.g. SOURCE_DATE_EPOCH=$(date +%s)"
    )
}

/// The directory of `path` (a file or directory; the current directory when `None`).
fn dir_of(path: Option<&Path>) -> PathBuf {
    match path {
        Some(p) if p.is_dir() => p.to_path_buf(),
        Some(p) => p
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_path_buf(),
        None => PathBuf::from("."),
    }
}

/// `git -C dir ARGS`'s stdout, if it ran and succeeded.
pub(crate) fn git(dir: &Path, args: &[&str]) -> Option<Vec<u8>> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    out.status.success().then_some(out.stdout)
}
