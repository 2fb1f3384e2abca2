//! Cargo's resolved dependency graph for one target:
//! `cargo metadata --format-version 1 --filter-platform TRIPLE`, with the build's features.
//! Normal and build dependencies are followed from the package; dev dependencies are not.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::process::Command;

use serde::Deserialize;

use super::lockfile::Lockfile;
use super::{CargoSource, Component, Graph, SbomError};

#[derive(Deserialize)]
struct Metadata {
    packages: Vec<Package>,
    resolve: Option<Resolve>,
    workspace_root: std::path::PathBuf,
}

#[derive(Deserialize)]
struct Package {
    id: String,
    name: String,
    version: String,
    source: Option<String>,
    license: Option<String>,
    manifest_path: std::path::PathBuf,
}

#[derive(Deserialize)]
struct Resolve {
    nodes: Vec<Node>,
}

#[derive(Deserialize)]
struct Node {
    id: String,
    #[serde(default)]
    deps: Vec<NodeDep>,
}

#[derive(Deserialize)]
struct NodeDep {
    pkg: String,
    #[serde(default)]
    dep_kinds: Vec<DepKind>,
}

#[derive(Deserialize)]
struct DepKind {
    kind: Option<String>,
}

/// The crates `source`'s package is built from for `target`.
pub fn graph(source: &CargoSource, target: &str) -> Result<Graph, SbomError> {
    let err = |message: String| SbomError::Metadata {
        target: target.to_string(),
        message,
    };
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args([
        "metadata",
        "--format-version",
        "1",
        "--filter-platform",
        target,
    ])
    .arg("--manifest-path")
    .arg(&source.manifest_path);
    if !source.features.is_empty() {
        cmd.arg("--features").arg(source.features.join(","));
    }
    if source.all_features {
        cmd.arg("--all-features");
    }
    if source.no_default_features {
        cmd.arg("--no-default-features");
    }
    if let Some(dir) = source
        .manifest_path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
    {
        cmd.current_dir(dir);
    }
    let out = cmd.output().map_err(|e| err(e.to_string()))?;
    if !out.status.success() {
        let text = String::from_utf8_lossy(&out.stderr);
        let last = text
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("");
        return Err(err(last.trim().to_string()));
    }
    let meta: Metadata =
        serde_json::from_slice(&out.stdout).map_err(|e| err(format!("unexpected output: {e}")))?;
    let lock = Lockfile::load(&meta.workspace_root.join("Cargo.lock")).unwrap_or_default();
    from_metadata(&meta, &source.package, &source.manifest_path, &lock).map_err(err)
}

fn from_metadata(
    meta: &Metadata,
    package: &str,
    manifest: &std::path::Path,
    lock: &Lockfile,
) -> Result<Graph, String> {
    let by_id: BTreeMap<&str, &Package> =
        meta.packages.iter().map(|p| (p.id.as_str(), p)).collect();
    let nodes: BTreeMap<&str, &Node> = meta
        .resolve
        .as_ref()
        .ok_or("no resolved graph")?
        .nodes
        .iter()
        .map(|n| (n.id.as_str(), n))
        .collect();
    let manifest = manifest.canonicalize().unwrap_or(manifest.to_path_buf());
    let root = meta
        .packages
        .iter()
        .filter(|p| p.name == package && p.source.is_none())
        .max_by_key(|p| p.manifest_path.canonicalize().ok() == Some(manifest.clone()))
        .ok_or_else(|| format!("no package `{package}`"))?;
    let all = reachable(&nodes, &root.id, |k| k != Some("dev"));
    let runtime = reachable(&nodes, &root.id, |k| k.is_none());
    // Root first, the rest in id order (normalised later).
    let ids: Vec<&str> = std::iter::once(root.id.as_str())
        .chain(all.iter().copied().filter(|id| *id != root.id))
        .collect();
    let index: BTreeMap<&str, usize> = ids.iter().enumerate().map(|(i, id)| (*id, i)).collect();
    let components = ids
        .iter()
        .map(|id| {
            let p = by_id
                .get(id)
                .ok_or_else(|| format!("unknown package {id}"))?;
            Ok(Component {
                name: p.name.clone(),
                version: p.version.clone(),
                source: p.source.clone(),
                checksum: lock.checksum(&p.name, &p.version, p.source.as_deref()),
                license: p.license.as_deref().and_then(super::license_expression),
                build_only: !runtime.contains(id),
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    let mut edges = Vec::new();
    for id in &ids {
        for d in nodes.get(id).map(|n| n.deps.as_slice()).unwrap_or(&[]) {
            if d.dep_kinds.iter().any(|k| k.kind.as_deref() != Some("dev")) {
                if let Some(&to) = index.get(d.pkg.as_str()) {
                    edges.push((index[id], to));
                }
            }
        }
    }
    Ok(Graph { components, edges })
}

/// Package ids reachable from `root` over the edges whose kind `follow` accepts.
fn reachable<'a>(
    nodes: &BTreeMap<&'a str, &'a Node>,
    root: &'a str,
    follow: impl Fn(Option<&str>) -> bool,
) -> BTreeSet<&'a str> {
    let mut seen = BTreeSet::from([root]);
    let mut queue = VecDeque::from([root]);
    while let Some(id) = queue.pop_front() {
        for d in nodes.get(id).map(|n| n.deps.as_slice()).unwrap_or(&[]) {
            if d.dep_kinds.iter().any(|k| follow(k.kind.as_deref())) && seen.insert(d.pkg.as_str())
            {
                queue.push_back(d.pkg.as_str());
            }
        }
    }
    seen
}
