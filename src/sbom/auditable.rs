//! The dependency list `cargo auditable` embeds in a binary's `.dep-v0` section (zlib-compressed
//! JSON), read with the `auditable-info` crate. The binary is memory-mapped, not read, and the
//! decompressed JSON is bounded: a hostile binary cannot make ironstar allocate more than
//! [`MAX_JSON`]. Anything wrong with the section is one warning and no SBOM from it.

use std::path::Path;

use auditable_info::Error;
use auditable_serde::{DependencyKind, Source, VersionInfo};

use super::{Component, Graph};

/// The decompressed JSON's limit. A few hundred crates take tens of kilobytes; 8 MiB is far beyond
/// any real dependency tree.
pub const MAX_JSON: usize = 8 << 20;

const CRATES_IO: &str = "registry+https://github.com/rust-lang/crates.io-index";

/// The graph in `binary`'s `.dep-v0` section; `None` when there is none or it is unusable (which
/// is logged as one warning line).
pub fn read(binary: &Path) -> Option<Graph> {
    read_limited(binary, MAX_JSON)
}

pub fn read_limited(binary: &Path, max_json: usize) -> Option<Graph> {
    let file = std::fs::File::open(binary).ok()?;
    // SAFETY: the map is read-only and dropped before this function returns; a binary changed
    // under us gives wrong bytes at worst, which the JSON parser and the limits contain.
    let map = unsafe { memmap2::Mmap::map(&file) }.ok()?;
    let info = match auditable_info::audit_info_from_slice(&map, max_json) {
        Ok(info) => info,
        Err(Error::NoAuditData) => return None,
        Err(e) => {
            tracing::warn!(
                "{}: ignoring its .dep-v0 dependency list: {}",
                binary.display(),
                one_line(&e.to_string())
            );
            return None;
        }
    };
    match graph(&info) {
        Ok(g) => Some(g),
        Err(why) => {
            tracing::warn!(
                "{}: ignoring its .dep-v0 dependency list: {why}",
                binary.display()
            );
            None
        }
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The root first, then the other packages; edges as the section gives them.
fn graph(info: &VersionInfo) -> Result<Graph, String> {
    let n = info.packages.len();
    let root = info
        .packages
        .iter()
        .position(|p| p.root)
        .ok_or("no root package")?;
    // Root to index 0, the rest after it in their order.
    let order: Vec<usize> = std::iter::once(root)
        .chain((0..n).filter(|&i| i != root))
        .collect();
    let mut new_index = vec![0; n];
    for (new, &old) in order.iter().enumerate() {
        new_index[old] = new;
    }
    let components = order
        .iter()
        .map(|&i| {
            let p = &info.packages[i];
            Component {
                name: p.name.clone(),
                version: p.version.to_string(),
                source: source_id(&p.source),
                checksum: None,
                license: None,
                build_only: p.kind == DependencyKind::Build,
            }
        })
        .collect();
    let mut edges = Vec::new();
    for (i, p) in info.packages.iter().enumerate() {
        for &d in &p.dependencies {
            if d >= n {
                return Err(format!("dependency index {d} out of range"));
            }
            edges.push((new_index[i], new_index[d]));
        }
    }
    Ok(Graph { components, edges })
}

/// Cargo's source id as far as the section records it: only crates.io's is exact.
fn source_id(s: &Source) -> Option<String> {
    match s {
        Source::CratesIo => Some(CRATES_IO.to_string()),
        Source::Local => None,
        Source::Git => Some("git".to_string()),
        Source::Registry => Some("registry".to_string()),
        Source::Other(o) => Some(o.clone()),
        #[allow(unreachable_patterns)]
        _ => Some("unknown".to_string()),
    }
}
