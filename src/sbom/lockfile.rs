//! `Cargo.lock`: the checksum of each crate from a registry (SHA-256 of its `.crate` file).

use std::path::Path;

use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
pub struct Lockfile {
    #[serde(default, rename = "package")]
    packages: Vec<LockedPackage>,
}

#[derive(Debug, Deserialize)]
struct LockedPackage {
    name: String,
    version: String,
    source: Option<String>,
    checksum: Option<String>,
}

impl Lockfile {
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    /// The checksum of `name` `version` from `source` (cargo's source id). A source that is not
    /// an exact id (`.dep-v0` records only `git`, `registry`, ...) matches when the name and
    /// version name one locked package alone.
    pub fn checksum(&self, name: &str, version: &str, source: Option<&str>) -> Option<String> {
        let source = source?;
        let same: Vec<_> = self
            .packages
            .iter()
            .filter(|p| p.name == name && p.version == version && p.source.is_some())
            .collect();
        let exact = same.iter().find(|p| p.source.as_deref() == Some(source));
        let chosen = match (exact, same.as_slice()) {
            (Some(p), _) => p,
            (None, [only]) if !source.contains('+') => only,
            _ => return None,
        };
        chosen.checksum.clone()
    }
}

/// The `Cargo.lock` in `dir` or the nearest directory above it.
pub fn find(dir: &Path) -> Option<std::path::PathBuf> {
    let dir = dir.canonicalize().ok()?;
    dir.ancestors()
        .map(|d| d.join("Cargo.lock"))
        .find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksums_by_name_version_and_source() {
        let lock = Lockfile::parse(
            r#"
version = 4
[[package]]
name = "app"
version = "0.1.0"
[[package]]
name = "itoa"
version = "1.0.15"
source = "registry+https://github.com/rust-lang/crates.io-index"
checksum = "abc"
"#,
        )
        .unwrap();
        let crates_io = "registry+https://github.com/rust-lang/crates.io-index";
        assert_eq!(
            lock.checksum("itoa", "1.0.15", Some(crates_io)).as_deref(),
            Some("abc")
        );
        assert_eq!(lock.checksum("itoa", "1.0.14", Some(crates_io)), None);
        assert_eq!(
            lock.checksum("itoa", "1.0.15", Some("registry+https://other")),
            None
        );
        assert_eq!(lock.checksum("app", "0.1.0", None), None);
    }
}
