//! The keys of a request's planned images, before cargo runs, and each built image's record
//! after it.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::declared::{Context, Declared};
use super::key::{InputKey, Inputs};
use super::record::Record;
use crate::cargo::Selection;
use crate::definition::{Planned, Request, Resolved};
use crate::digest::Digest;
use crate::oci::Reference;
use crate::registry::{Client, Target};

/// What the keys need beyond the planned images.
#[derive(Debug, Clone, Default)]
pub struct KeyOptions {
    pub compression_level: Option<u32>,
    /// The signer's description, when the build signs.
    pub signer: Option<String>,
    /// The SBOMs attached: their format and the files given (by content), or `none`.
    pub sbom: String,
    /// Resolve an unpinned base over plain http (a loopback test registry).
    pub base_plain_http: bool,
}

/// Each planned image's key: `None` without cargo, or when it cannot be made (a warning says
/// why; the image is then built, as without reuse).
pub fn keys(request: &Request, planned: &[Planned], o: &KeyOptions) -> Vec<Option<InputKey>> {
    let Some(cargo) = &request.cargo else {
        return planned.iter().map(|_| None).collect();
    };
    let selected: Vec<String> = planned
        .iter()
        .filter_map(|p| p.selection.as_ref())
        .map(|s| format!("{}/{}", s.package, s.bin))
        .collect();
    let env: BTreeMap<String, String> = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.to_string_lossy().into_owned())))
        .collect();
    // The tools' inputs once a crate directory (a workspace's images share one).
    let mut tools: BTreeMap<PathBuf, Result<Vec<(String, String)>, String>> = BTreeMap::new();
    planned
        .iter()
        .map(|p| {
            let sel = p.selection.as_ref()?;
            let tools = tools.entry(sel.dir.clone()).or_insert_with(|| {
                crate::cargo::tool_inputs(sel, &sel.workspace_root).map_err(|e| e.to_string())
            });
            let mut spec = p.spec.clone();
            let made = request
                .finish(&mut spec)
                .map_err(|e| e.to_string())
                .and_then(|()| base_digest(spec.base.as_ref(), o.base_plain_http))
                .and_then(|base| {
                    let inputs = Inputs {
                        selection: sel,
                        spec: &spec,
                        cargo,
                        tools: tools.as_ref().map_err(Clone::clone)?,
                        selected: selected.clone(),
                        compression_level: o.compression_level,
                        base,
                        signer: o.signer.clone(),
                        sbom: o.sbom.clone(),
                    };
                    Ok(inputs.key(&env))
                });
            made.map_err(|e| tracing::warn!("{}: no reuse key, building: {e}", p.spec.name))
                .ok()
        })
        .collect()
}

/// The base's digest: a pinned one as given, else what its tag resolves to now.
fn base_digest(base: Option<&Reference>, plain_http: bool) -> Result<Option<Digest>, String> {
    let Some(r) = base else { return Ok(None) };
    if let Some(d) = &r.digest {
        return Ok(Some(d.clone()));
    }
    let client = Client::reader(&r.repository, plain_http).map_err(|e| e.to_string())?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let found = runtime
        .block_on(client.manifest_digest(Target::of(r)))
        .map_err(|e| format!("base {r}: {e}"))?;
    found
        .map(Some)
        .ok_or_else(|| format!("base {r}: not found"))
}

/// The record of a built image: its key, revision and date, and what its build scripts
/// declared (every script of the cargo run: a workspace's images share one run), and the
/// workspace's last commit.
pub fn record(
    key: &InputKey,
    sel: &Selection,
    r: &Resolved,
    epoch: i64,
    revision: Option<String>,
) -> Record {
    let root = &sel.workspace_root;
    let mut ignored: Vec<PathBuf> = vec![sel.target_directory.clone()];
    ignored.extend(std::env::var_os("CARGO_HOME").map(PathBuf::from));
    ignored.extend(std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")));
    let ctx = Context { root, ignored };
    let declared = match &r.built {
        Some(b) => Declared::collect(&b.output.units.build_scripts, &ctx),
        None => Declared::default(),
    };
    Record {
        key: key.digest.clone(),
        revision,
        commit: crate::source_date::commit_id(root),
        source_date_epoch: epoch,
        declared,
    }
}
