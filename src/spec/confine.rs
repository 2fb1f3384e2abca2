//! Where a definition's `files[].source` may come from. A definition file from a pull request
//! must not put the build machine's files (`/etc/shadow`, a symlink to it, the checkout's
//! credentials) into an image: a source must resolve, after every symlink, inside the
//! definition's directory, the cargo workspace or package holding it, or the git work tree
//! holding it, and never inside a `.git` directory (`actions/checkout` keeps its token in
//! `.git/config`). `--allow-outside-sources` lifts the rule; no key in the file can, since the
//! file is what is not trusted.

use std::path::{Component, Path, PathBuf};

/// Whether sources are confined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SourcePolicy {
    /// Inside the definition's directory, workspace or repository (the default).
    #[default]
    Confined,
    /// Anywhere (`--allow-outside-sources`, or a command that never reads the sources).
    Anywhere,
}

/// The directories a definition's sources may resolve into, found from the definition's
/// directory: itself, the nearest enclosing cargo workspace (else package) root, and the top of
/// the enclosing git work tree.
#[derive(Debug, Clone)]
pub(super) struct Roots(Vec<PathBuf>);

impl Roots {
    pub fn around(definition: &Path) -> Roots {
        let dir = definition
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let dir = dir
            .canonicalize()
            .or_else(|_| std::path::absolute(dir))
            .unwrap_or(dir.to_path_buf());
        let mut roots = vec![dir.clone()];
        let manifests = || {
            dir.ancestors()
                .filter(|d| d.join("Cargo.toml").is_file())
                .map(Path::to_path_buf)
        };
        let workspace = manifests()
            .find(|d| declares_workspace(&d.join("Cargo.toml")))
            .or_else(|| manifests().next());
        roots.extend(workspace);
        // `.git` is a directory, or a file in a worktree or submodule.
        roots.extend(
            dir.ancestors()
                .find(|d| d.join(".git").exists())
                .map(Path::to_path_buf),
        );
        roots.sort();
        roots.dedup();
        Roots(roots)
    }

    /// `real` (a canonical path) is inside a root and not inside a `.git` directory there.
    pub fn admit(&self, real: &Path) -> bool {
        self.0.iter().any(|root| {
            real.strip_prefix(root).is_ok_and(|rest| {
                !rest
                    .components()
                    .any(|c| c == Component::Normal(".git".as_ref()))
            })
        })
    }

    /// The roots, for the error message.
    pub fn describe(&self) -> String {
        self.0
            .iter()
            .map(|r| r.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn declares_workspace(manifest: &Path) -> bool {
    std::fs::read_to_string(manifest)
        .ok()
        .and_then(|t| t.parse::<toml::Table>().ok())
        .is_some_and(|t| t.contains_key("workspace"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roots_are_the_directory_the_workspace_and_the_repository() {
        let tmp = tempfile::tempdir().unwrap();
        let top = tmp.path().canonicalize().unwrap();
        let ws = top.join("ws");
        let member = ws.join("crates/app");
        std::fs::create_dir_all(member.join("images")).unwrap();
        std::fs::create_dir_all(top.join(".git")).unwrap();
        std::fs::write(
            ws.join("Cargo.toml"),
            "[workspace]\nmembers = [\"crates/*\"]\n",
        )
        .unwrap();
        std::fs::write(member.join("Cargo.toml"), "[package]\nname = \"app\"\n").unwrap();
        let roots = Roots::around(&member.join("images/app.toml"));
        assert_eq!(roots.0, [top.clone(), ws.clone(), member.join("images")]);
        assert!(roots.admit(&ws.join("rootfs/passwd")));
        assert!(roots.admit(&top.join("README.md")));
        assert!(!roots.admit(&top.join(".git/config")));
        assert!(!roots.admit(Path::new("/etc/shadow")));
        assert!(!roots.admit(&tmp.path().parent().unwrap().join("x")));
    }
}
