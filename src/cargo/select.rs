//! Which packages and binaries a build is for, by cargo's own rules: `--workspace` (less
//! `--exclude`), `-p A -p B`, else the workspace's default members as `cargo metadata` reports
//! them for the manifest (a member's directory: that member; the root: `default-members`, else
//! every member of a virtual workspace, else the root package); `--bin NAME` finds its package
//! among those. Every selected member with a binary becomes an image.

use std::path::Path;

use super::metadata::{is_bin, Metadata, Package};
use super::{CargoError, CargoOptions, Result};

/// A selected package and the binaries `--bin` named in it (empty: none named).
pub(super) type Selected<'m> = (&'m Package, Vec<String>);

/// The members a build selects, each with the `--bin` names it holds.
pub(super) fn select<'m>(
    meta: &'m Metadata,
    opts: &CargoOptions,
    manifest: &Path,
    start: Option<&Path>,
) -> Result<Vec<Selected<'m>>> {
    let members: Vec<&Package> = meta
        .packages
        .iter()
        .filter(|p| meta.workspace_members.contains(&p.id))
        .collect();
    let (packages, named) = packages(meta, &members, opts, manifest, start)?;
    let with_bins = || binary_members(&members);
    if opts.bins.is_empty() {
        let mut out = Vec::new();
        for p in packages {
            match (p.targets.iter().any(is_bin), named) {
                (true, _) => out.push((p, Vec::new())),
                (false, true) => {
                    return Err(CargoError::NoBinary {
                        package: p.name.clone(),
                    })
                }
                (false, false) => tracing::debug!("{}: a library, no image", p.name),
            }
        }
        if out.is_empty() {
            return Err(CargoError::NoBinaries {
                workspace: meta.workspace_root.clone(),
                available: with_bins(),
            });
        }
        return Ok(out);
    }
    let has = |p: &Package, b: &str| p.targets.iter().any(|t| is_bin(t) && t.name == b);
    for b in &opts.bins {
        if packages.iter().any(|p| has(p, b)) {
            continue;
        }
        return Err(match members.iter().find(|p| has(p, b)) {
            Some(owner) => CargoError::BinaryNotSelected {
                bin: b.clone(),
                package: owner.name.clone(),
            },
            None => CargoError::UnknownWorkspaceBinary {
                bin: b.clone(),
                workspace: meta.workspace_root.clone(),
                available: all_binaries(&members),
            },
        });
    }
    Ok(packages
        .into_iter()
        .filter_map(|p| {
            let bins: Vec<String> = opts.bins.iter().filter(|b| has(p, b)).cloned().collect();
            (!bins.is_empty()).then_some((p, bins))
        })
        .collect())
}

/// The selected packages, in the workspace's order, and whether they were named (`-p`, or the
/// package of the manifest or image file): a named library is an error, a library among the
/// workspace's members is skipped.
fn packages<'m>(
    meta: &'m Metadata,
    members: &[&'m Package],
    opts: &CargoOptions,
    manifest: &Path,
    start: Option<&Path>,
) -> Result<(Vec<&'m Package>, bool)> {
    let find = |name: &str| {
        members
            .iter()
            .copied()
            .find(|p| p.name == name)
            .ok_or_else(|| CargoError::UnknownPackage {
                package: name.to_string(),
                workspace: meta.workspace_root.clone(),
                available: binary_members(members),
            })
    };
    if opts.workspace {
        for e in opts.exclude.iter().filter(|e| find(e).is_err()) {
            tracing::warn!("--exclude {e}: no such member of the workspace");
        }
        let all = members
            .iter()
            .copied()
            .filter(|p| !opts.exclude.contains(&p.name))
            .collect();
        return Ok((all, false));
    }
    if !opts.exclude.is_empty() {
        return Err(CargoError::ExcludeWithoutWorkspace);
    }
    if !opts.packages.is_empty() {
        let mut out: Vec<&Package> = Vec::new();
        for name in &opts.packages {
            let p = find(name)?;
            if !out.iter().any(|q| q.id == p.id) {
                out.push(p);
            }
        }
        return Ok((out, true));
    }
    // The image file's package: the member whose directory holds it.
    if let Some(start) = start {
        let owner = members
            .iter()
            .filter_map(|p| {
                let d = p.manifest_path.parent()?;
                start.starts_with(d).then_some((d.components().count(), *p))
            })
            .max_by_key(|(depth, _)| *depth);
        if let Some((_, p)) = owner {
            return Ok((vec![p], true));
        }
    }
    match &meta.workspace_default_members {
        Some(defaults) => {
            let own = manifest.canonicalize().unwrap_or(manifest.to_path_buf());
            let named = members.iter().any(|p| p.manifest_path == own);
            let out = members
                .iter()
                .copied()
                .filter(|p| defaults.contains(&p.id))
                .collect();
            Ok((out, named))
        }
        // A cargo older than 1.71 does not say: every member.
        None => Ok((members.to_vec(), false)),
    }
}

/// The members with a binary, for messages: only they can become images.
fn binary_members(members: &[&Package]) -> String {
    super::metadata::names(
        members
            .iter()
            .filter(|p| p.targets.iter().any(is_bin))
            .map(|p| p.name.as_str()),
    )
}

/// Every binary of the workspace, as `bin (package)`.
fn all_binaries(members: &[&Package]) -> String {
    let list: Vec<String> = members
        .iter()
        .flat_map(|p| {
            p.targets
                .iter()
                .filter(|t| is_bin(t))
                .map(move |t| format!("{} ({})", t.name, p.name))
        })
        .collect();
    super::metadata::names(list.iter().map(String::as_str))
}

#[cfg(test)]
mod tests {
    use super::super::metadata::Target;
    use super::*;
    use std::path::PathBuf;

    fn package(name: &str, bins: &[&str]) -> Package {
        Package {
            id: format!("path+file:///ws/{name}#0.1.0"),
            name: name.into(),
            version: "0.1.0".into(),
            manifest_path: PathBuf::from(format!("/ws/{name}/Cargo.toml")),
            targets: bins
                .iter()
                .map(|b| Target {
                    name: b.to_string(),
                    kind: vec!["bin".into()],
                })
                .chain(bins.is_empty().then(|| Target {
                    name: name.into(),
                    kind: vec!["lib".into()],
                }))
                .collect(),
            default_run: None,
            dependencies: Vec::new(),
        }
    }

    /// api and worker are default members; migrate is not; common is a library.
    fn workspace() -> Metadata {
        let packages = vec![
            package("api", &["api"]),
            package("common", &[]),
            package("migrate", &["migrate"]),
            package("worker", &["worker"]),
        ];
        let id = |n: &str| format!("path+file:///ws/{n}#0.1.0");
        Metadata {
            workspace_members: packages.iter().map(|p| p.id.clone()).collect(),
            workspace_default_members: Some(vec![id("api"), id("worker")]),
            packages,
            workspace_root: "/ws".into(),
            target_directory: "/ws/target".into(),
        }
    }

    fn chosen(opts: &CargoOptions) -> Result<Vec<(String, Vec<String>)>> {
        let meta = workspace();
        let got = select(&meta, opts, Path::new("/ws/Cargo.toml"), None)?;
        Ok(got.into_iter().map(|(p, b)| (p.name.clone(), b)).collect())
    }

    fn names(v: Vec<(String, Vec<String>)>) -> Vec<String> {
        v.into_iter().map(|(n, _)| n).collect()
    }

    #[test]
    fn selects_as_cargo_does() {
        let o = CargoOptions::default();
        assert_eq!(
            names(chosen(&o).unwrap()),
            ["api", "worker"],
            "default-members"
        );
        let o = CargoOptions {
            workspace: true,
            ..Default::default()
        };
        assert_eq!(names(chosen(&o).unwrap()), ["api", "migrate", "worker"]);
        let o = CargoOptions {
            workspace: true,
            exclude: vec!["api".into()],
            ..Default::default()
        };
        assert_eq!(names(chosen(&o).unwrap()), ["migrate", "worker"]);
        let o = CargoOptions {
            bins: vec!["worker".into()],
            ..Default::default()
        };
        assert_eq!(
            chosen(&o).unwrap(),
            [("worker".to_string(), vec!["worker".to_string()])]
        );
        let o = CargoOptions {
            packages: vec!["migrate".into(), "api".into()],
            ..Default::default()
        };
        assert_eq!(names(chosen(&o).unwrap()), ["migrate", "api"]);
    }

    #[test]
    fn refusals_offer_only_members_with_binaries() {
        let o = CargoOptions {
            packages: vec!["nope".into()],
            ..Default::default()
        };
        let e = chosen(&o).unwrap_err().to_string();
        assert!(
            e.contains("api, migrate, worker") && !e.contains("common"),
            "{e}"
        );
        let o = CargoOptions {
            packages: vec!["common".into()],
            ..Default::default()
        };
        assert!(matches!(chosen(&o), Err(CargoError::NoBinary { .. })));
        let o = CargoOptions {
            bins: vec!["migrate".into()],
            ..Default::default()
        };
        let e = chosen(&o).unwrap_err().to_string();
        assert!(e.contains("-p migrate"), "{e}");
        let o = CargoOptions {
            exclude: vec!["api".into()],
            ..Default::default()
        };
        assert!(matches!(
            chosen(&o),
            Err(CargoError::ExcludeWithoutWorkspace)
        ));
    }
}
