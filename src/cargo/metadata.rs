//! What to build: the package and binary of the workspace, from `cargo metadata`.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{run_captured, CargoError, Result};

/// The subset of `cargo metadata --no-deps --format-version 1` used here.
#[derive(Debug, Deserialize)]
pub(super) struct Metadata {
    pub packages: Vec<Package>,
    pub workspace_members: Vec<String>,
    /// What cargo builds with no package named, for the manifest it was given (cargo ≥ 1.71).
    #[serde(default)]
    pub workspace_default_members: Option<Vec<String>>,
    pub workspace_root: PathBuf,
    pub target_directory: PathBuf,
}

#[derive(Debug, Deserialize)]
pub(super) struct Package {
    pub id: String,
    pub name: String,
    pub version: String,
    pub manifest_path: PathBuf,
    pub targets: Vec<Target>,
    pub default_run: Option<String>,
    #[serde(default)]
    pub dependencies: Vec<Dependency>,
}

/// A dependency as `cargo metadata --no-deps` lists it: a path dependency has its directory.
#[derive(Debug, Deserialize)]
pub(super) struct Dependency {
    #[serde(default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub path: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
pub(super) struct Target {
    pub name: String,
    pub kind: Vec<String>,
}

pub(super) fn metadata(mut cmd: std::process::Command, manifest: &Path) -> Result<Metadata> {
    let text = run_captured(
        cmd.args(["metadata", "--no-deps", "--format-version", "1"])
            .arg("--manifest-path")
            .arg(manifest),
        "cargo metadata",
    )?;
    Ok(serde_json::from_str(&text)?)
}

/// The features of package `name` in the build's dependency graph (`cargo metadata` with the
/// dependencies, offline: the failed build fetched them); none if it cannot tell.
pub(super) fn features(
    cargo: &std::ffi::OsStr,
    dir: &Path,
    manifest: &Path,
    name: &str,
) -> Vec<String> {
    #[derive(Deserialize)]
    struct Full {
        packages: Vec<WithFeatures>,
    }
    #[derive(Deserialize)]
    struct WithFeatures {
        name: String,
        features: std::collections::BTreeMap<String, serde_json::Value>,
    }
    let mut cmd = super::cargo_command(cargo, dir);
    cmd.args(["metadata", "--offline", "--format-version", "1"])
        .arg("--manifest-path")
        .arg(manifest);
    let Ok(text) = run_captured(&mut cmd, "cargo metadata") else {
        return Vec::new();
    };
    let full: Full = match serde_json::from_str(&text) {
        Ok(f) => f,
        Err(_) => return Vec::new(),
    };
    full.packages
        .into_iter()
        .filter(|p| p.name == name)
        .flat_map(|p| p.features.into_keys())
        .collect()
}

/// Whether package `name` is in the build's resolved graph for `target` with `features` (a
/// package in `Cargo.lock` may be there only for a feature the build does not turn on); `None`
/// if cargo cannot tell.
pub(super) fn resolves(
    cargo: &std::ffi::OsStr,
    dir: &Path,
    manifest: &Path,
    features: &super::Features,
    target: &str,
    name: &str,
) -> Option<bool> {
    #[derive(Deserialize)]
    struct Full {
        packages: Vec<Named>,
        resolve: Resolve,
    }
    #[derive(Deserialize)]
    struct Named {
        id: String,
        name: String,
    }
    #[derive(Deserialize)]
    struct Resolve {
        nodes: Vec<Node>,
    }
    #[derive(Deserialize)]
    struct Node {
        id: String,
    }
    let mut cmd = super::cargo_command(cargo, dir);
    cmd.args([
        "metadata",
        "--format-version",
        "1",
        "--filter-platform",
        target,
    ])
    .arg("--manifest-path")
    .arg(manifest);
    for f in &features.features {
        cmd.args(["--features", f]);
    }
    if features.all_features {
        cmd.arg("--all-features");
    }
    if features.no_default_features {
        cmd.arg("--no-default-features");
    }
    let text = run_captured(&mut cmd, "cargo metadata").ok()?;
    let full: Full = serde_json::from_str(&text).ok()?;
    let ids: std::collections::BTreeSet<&str> = full
        .packages
        .iter()
        .filter(|p| p.name == name)
        .map(|p| p.id.as_str())
        .collect();
    Some(
        full.resolve
            .nodes
            .iter()
            .any(|n| ids.contains(n.id.as_str())),
    )
}

pub(super) fn find_manifest(start: &Path) -> Option<PathBuf> {
    start
        .ancestors()
        .map(|d| d.join("Cargo.toml"))
        .find(|m| m.is_file())
}

pub(super) fn names<'a>(it: impl Iterator<Item = &'a str>) -> String {
    let v: Vec<&str> = it.collect();
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}

pub(super) fn is_bin(t: &Target) -> bool {
    t.kind.iter().any(|k| k == "bin")
}

/// `by_name` (`--bin`, or the image definition's `bin`), else the only binary, else `default-run`.
pub(super) fn select_binary(
    package: &str,
    bins: &[String],
    default_run: Option<&str>,
    by_name: Option<&str>,
) -> Result<String> {
    let available = || names(bins.iter().map(String::as_str));
    let has = |b: &str| bins.iter().any(|x| x == b);
    match (by_name, bins) {
        (_, []) => Err(CargoError::NoBinary {
            package: package.to_string(),
        }),
        (Some(b), _) if has(b) => Ok(b.to_string()),
        (Some(b), _) => Err(CargoError::UnknownBinary {
            package: package.to_string(),
            bin: b.to_string(),
            available: available(),
        }),
        (None, [only]) => Ok(only.clone()),
        (None, _) => match default_run {
            Some(d) if has(d) => Ok(d.to_string()),
            _ => Err(CargoError::SeveralBinaries {
                package: package.to_string(),
                available: available(),
            }),
        },
    }
}

/// The names of the packages in the workspace's `Cargo.lock` (every target's).
pub(super) fn lock_packages(workspace_root: &Path) -> std::collections::BTreeSet<String> {
    let text = std::fs::read_to_string(workspace_root.join("Cargo.lock")).unwrap_or_default();
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("name = \""))
        .filter_map(|n| n.strip_suffix('"'))
        .map(String::from)
        .collect()
}

/// The lock pulls in a crate that compiles C (`cc`, which `cmake` and autotools-driving build
/// scripts use too), so the build needs a C compiler and libc headers for the target.
pub(super) fn compiles_c(lock: &std::collections::BTreeSet<String>) -> bool {
    lock.contains("cc") || lock.contains("cmake")
}

/// The directories `package` builds from: its own and, transitively, those of its path
/// dependencies (normal and build ones; dev-dependencies do not reach its binary), in order.
/// A path dependency outside the workspace is not in `packages`: its own path dependencies are
/// read from its Cargo.toml.
pub(super) fn source_dirs(packages: &[Package], package: &Package) -> Vec<PathBuf> {
    let dir_of = |m: &Path| m.parent().unwrap_or(Path::new("/")).to_path_buf();
    let mut dirs = vec![dir_of(&package.manifest_path)];
    let mut i = 0;
    while i < dirs.len() {
        let dir = dirs[i].clone();
        let deps = match packages.iter().find(|p| dir_of(&p.manifest_path) == dir) {
            Some(p) => p
                .dependencies
                .iter()
                .filter(|d| d.kind.as_deref() != Some("dev"))
                .filter_map(|d| d.path.clone())
                .collect(),
            None => manifest_path_deps(&dir),
        };
        for d in deps {
            let d = d.canonicalize().unwrap_or(d);
            if !dirs.contains(&d) {
                dirs.push(d);
            }
        }
        i += 1;
    }
    dirs
}

/// The path dependencies a Cargo.toml outside the workspace names (relative to its directory).
fn manifest_path_deps(dir: &Path) -> Vec<PathBuf> {
    let Ok(text) = std::fs::read_to_string(dir.join("Cargo.toml")) else {
        return Vec::new();
    };
    let Ok(doc) = text.parse::<toml::Table>() else {
        return Vec::new();
    };
    let tables = |t: &toml::Table| -> Vec<toml::Table> {
        ["dependencies", "build-dependencies"]
            .iter()
            .filter_map(|k| t.get(*k)?.as_table().cloned())
            .collect()
    };
    let mut all = tables(&doc);
    if let Some(targets) = doc.get("target").and_then(|t| t.as_table()) {
        for t in targets.values().filter_map(|t| t.as_table()) {
            all.extend(tables(t));
        }
    }
    all.iter()
        .flat_map(|t| t.values())
        .filter_map(|v| v.get("path")?.as_str().map(|p| dir.join(p)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_the_binary() {
        let pick = |bins: &[&str], default_run: Option<&str>, by: Option<&str>| {
            let bins: Vec<String> = bins.iter().map(|b| b.to_string()).collect();
            select_binary("p", &bins, default_run, by)
        };
        assert!(matches!(
            pick(&[], None, None),
            Err(CargoError::NoBinary { .. })
        ));
        assert_eq!(pick(&["a"], None, None).unwrap(), "a");
        assert_eq!(pick(&["a", "b"], Some("b"), None).unwrap(), "b");
        assert_eq!(pick(&["a", "b"], None, Some("a")).unwrap(), "a");
        let e = pick(&["a", "b"], None, None).unwrap_err();
        assert!(matches!(e, CargoError::SeveralBinaries { .. }));
        assert!(e.to_string().contains("(a, b)"), "{e}");
        assert!(matches!(
            pick(&["a"], None, Some("c")),
            Err(CargoError::UnknownBinary { .. })
        ));
    }
}
