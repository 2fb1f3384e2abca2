//! What to build: the package and binary of the workspace, from `cargo metadata`.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{run_captured, CargoError, Result};

/// The subset of `cargo metadata --no-deps --format-version 1` used here.
#[derive(Debug, Deserialize)]
pub(super) struct Metadata {
    pub packages: Vec<Package>,
    pub workspace_members: Vec<String>,
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

pub(super) fn find_manifest(start: &Path) -> Option<PathBuf> {
    start
        .ancestors()
        .map(|d| d.join("Cargo.toml"))
        .find(|m| m.is_file())
}

fn names<'a>(it: impl Iterator<Item = &'a str>) -> String {
    let v: Vec<&str> = it.collect();
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}

/// `--package`, else the package of `--manifest-path`, else the package whose directory holds
/// `start` (the image file's directory, or the current one), else the workspace's only package
/// with a binary.
pub(super) fn select_package<'m>(
    meta: &'m Metadata,
    by_name: Option<&str>,
    manifest: &Path,
    start: &Path,
) -> Result<&'m Package> {
    let members: Vec<&Package> = meta
        .packages
        .iter()
        .filter(|p| meta.workspace_members.contains(&p.id))
        .collect();
    let available = || names(members.iter().map(|p| p.name.as_str()));
    if let Some(name) = by_name {
        return members
            .iter()
            .copied()
            .find(|p| p.name == name)
            .ok_or_else(|| CargoError::UnknownPackage {
                package: name.to_string(),
                workspace: meta.workspace_root.clone(),
                available: available(),
            });
    }
    let manifest = manifest.canonicalize().unwrap_or(manifest.to_path_buf());
    if let Some(p) = members.iter().find(|p| p.manifest_path == manifest) {
        return Ok(p);
    }
    let owner = members
        .iter()
        .filter_map(|p| {
            let d = p.manifest_path.parent()?;
            start.starts_with(d).then_some((d.components().count(), *p))
        })
        .max_by_key(|(depth, _)| *depth);
    if let Some((_, p)) = owner {
        return Ok(p);
    }
    let with_bins: Vec<&Package> = members
        .iter()
        .copied()
        .filter(|p| p.targets.iter().any(is_bin))
        .collect();
    match with_bins.as_slice() {
        [only] => Ok(only),
        _ => Err(CargoError::AmbiguousPackage {
            workspace: meta.workspace_root.clone(),
            available: available(),
        }),
    }
}

fn is_bin(t: &Target) -> bool {
    t.kind.iter().any(|k| k == "bin")
}

/// `--bin`, else the only binary, else `default-run`.
pub(super) fn select_binary(package: &Package, by_name: Option<&str>) -> Result<String> {
    let bins: Vec<&str> = package
        .targets
        .iter()
        .filter(|t| is_bin(t))
        .map(|t| t.name.as_str())
        .collect();
    let available = || names(bins.iter().copied());
    match (by_name, bins.as_slice()) {
        (_, []) => Err(CargoError::NoBinary {
            package: package.name.clone(),
        }),
        (Some(b), _) if bins.contains(&b) => Ok(b.to_string()),
        (Some(b), _) => Err(CargoError::UnknownBinary {
            package: package.name.clone(),
            bin: b.to_string(),
            available: available(),
        }),
        (None, [only]) => Ok(only.to_string()),
        (None, _) => match &package.default_run {
            Some(d) if bins.contains(&d.as_str()) => Ok(d.clone()),
            _ => Err(CargoError::SeveralBinaries {
                package: package.name.clone(),
                available: available(),
            }),
        },
    }
}

/// `Cargo.lock` pulls in a crate that compiles C (`cc`, which `cmake` and autotools-driving
/// build scripts use too), so the build needs a C compiler and libc headers for the target.
pub(super) fn lock_compiles_c(workspace_root: &Path) -> bool {
    std::fs::read_to_string(workspace_root.join("Cargo.lock")).is_ok_and(|t| {
        t.lines()
            .any(|l| matches!(l.trim(), "name = \"cc\"" | "name = \"cmake\""))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_the_binary() {
        let pkg = |bins: &[&str], default_run: Option<&str>| Package {
            id: "x".into(),
            name: "p".into(),
            version: "1.0.0".into(),
            manifest_path: "/p/Cargo.toml".into(),
            targets: bins
                .iter()
                .map(|b| Target {
                    name: b.to_string(),
                    kind: vec!["bin".into()],
                })
                .chain([Target {
                    name: "p".into(),
                    kind: vec!["lib".into()],
                }])
                .collect(),
            default_run: default_run.map(String::from),
        };
        assert!(matches!(
            select_binary(&pkg(&[], None), None),
            Err(CargoError::NoBinary { .. })
        ));
        assert_eq!(select_binary(&pkg(&["a"], None), None).unwrap(), "a");
        assert_eq!(
            select_binary(&pkg(&["a", "b"], Some("b")), None).unwrap(),
            "b"
        );
        assert_eq!(
            select_binary(&pkg(&["a", "b"], None), Some("a")).unwrap(),
            "a"
        );
        assert!(matches!(
            select_binary(&pkg(&["a", "b"], None), None),
            Err(CargoError::SeveralBinaries { .. })
        ));
        assert!(matches!(
            select_binary(&pkg(&["a"], None), Some("c")),
            Err(CargoError::UnknownBinary { .. })
        ));
    }
}
