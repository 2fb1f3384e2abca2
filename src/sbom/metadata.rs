//! Cargo's resolved dependency graph for one target:
//! `cargo metadata --format-version 1 --filter-platform TRIPLE`, with the build's features,
//! kept to the packages the build compiled (cargo's `compiler-artifact` messages,
//! [`crate::cargo::Units`]): the resolve also lists weak `dep?/feature` dependencies that no
//! build enables. Normal and build dependencies are followed from the package; dev dependencies
//! are not. What runs only on the build machine (build scripts' dependencies, proc-macros and
//! theirs) is listed as build-only: SPDX `BUILD_DEPENDENCY_OF`, CycloneDX `scope: excluded`.

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
    let units = source.units.as_ref().map(|u| Compiled {
        target: u.by_target.get(target).cloned().unwrap_or_default(),
        host: &u.host,
        proc_macros: &u.proc_macros,
    });
    from_metadata(
        &meta,
        &source.package,
        &source.manifest_path,
        &lock,
        units.as_ref(),
    )
    .map(|mut graph| {
        for c in &source.linked {
            graph.components.push(c.clone());
            graph.edges.push((0, graph.components.len() - 1));
        }
        graph.normalise()
    })
    .map_err(err)
}

/// The packages a build compiled, for one target: the walk enters no other.
struct Compiled<'a> {
    target: BTreeSet<String>,
    host: &'a BTreeSet<String>,
    proc_macros: &'a BTreeSet<String>,
}

fn from_metadata(
    meta: &Metadata,
    package: &str,
    manifest: &std::path::Path,
    lock: &Lockfile,
    units: Option<&Compiled>,
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
    let walk = walk(&nodes, &root.id, units);
    // Root first, the rest in id order (normalised later).
    let ids: Vec<&str> = std::iter::once(root.id.as_str())
        .chain(walk.all().filter(|id| *id != root.id))
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
                build_only: !walk.runtime.contains(id),
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    let edges = walk
        .edges
        .iter()
        .map(|(from, to)| (index[from], index[to]))
        .collect();
    Ok(Graph { components, edges })
}

/// What the walk from the root reached: in the binary (`runtime`), only on the build machine
/// (`host`: build scripts' dependencies, proc-macros and theirs), and the edges it followed.
struct Walk<'a> {
    runtime: BTreeSet<&'a str>,
    host: BTreeSet<&'a str>,
    edges: BTreeSet<(&'a str, &'a str)>,
}

impl<'a> Walk<'a> {
    fn all(&self) -> impl Iterator<Item = &'a str> + '_ {
        self.runtime.union(&self.host).copied()
    }
}

/// Follow normal and build dependencies from `root` (never dev ones). A build dependency, and
/// anything reached from one, runs on the build machine; so does a proc-macro. With `units`,
/// only packages compiled for that side are entered: cargo metadata's resolve also lists weak
/// `dep?/feature` dependencies that no build enabled.
fn walk<'a>(
    nodes: &BTreeMap<&'a str, &'a Node>,
    root: &'a str,
    units: Option<&Compiled>,
) -> Walk<'a> {
    let mut seen = BTreeSet::from([(root, false)]);
    let mut queue = VecDeque::from([(root, false)]);
    let mut edges = BTreeSet::new();
    while let Some((id, host)) = queue.pop_front() {
        for d in nodes.get(id).map(|n| n.deps.as_slice()).unwrap_or(&[]) {
            let to = d.pkg.as_str();
            for kind in d.dep_kinds.iter().map(|k| k.kind.as_deref()) {
                let on_host = match (kind, units) {
                    (Some("dev"), _) => continue,
                    (Some("build"), _) => true,
                    (_, Some(u)) => host || u.proc_macros.contains(to),
                    (_, None) => host,
                };
                let compiled = units.is_none_or(|u| match on_host {
                    true => u.host.contains(to),
                    false => u.target.contains(to),
                });
                if !compiled {
                    continue;
                }
                edges.insert((id, to));
                if seen.insert((to, on_host)) {
                    queue.push_back((to, on_host));
                }
            }
        }
    }
    let (host, runtime): (Vec<_>, Vec<_>) = seen.into_iter().partition(|(_, h)| *h);
    let runtime: BTreeSet<&str> = runtime.into_iter().map(|(id, _)| id).collect();
    Walk {
        host: host
            .into_iter()
            .map(|(id, _)| id)
            .filter(|id| !runtime.contains(id))
            .collect(),
        runtime,
        edges,
    }
}
