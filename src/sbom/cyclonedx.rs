//! CycloneDX 1.5 JSON. Deterministic: the timestamp is `SOURCE_DATE_EPOCH`, the serial number a
//! UUID derived from the rest of the document, and the bytes are canonical JSON.

use serde_json::{json, Value};

use super::{Component, Graph};
use crate::image::{canonical, rfc3339};

/// The CycloneDX BOM of `graph`.
pub fn document(graph: &Graph, epoch: i64) -> Vec<u8> {
    let refs = bom_refs(graph);
    let components: Vec<Value> = graph
        .components
        .iter()
        .zip(&refs)
        .skip(1)
        .map(|(c, r)| component(c, r, "library"))
        .collect();
    let dependencies: Vec<Value> = refs
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let on: Vec<&String> = graph
                .edges
                .iter()
                .filter(|(from, _)| *from == i)
                .map(|(_, to)| &refs[*to])
                .collect();
            json!({"ref": r, "dependsOn": on})
        })
        .collect();
    let created = rfc3339(epoch).unwrap_or_else(|_| "1970-01-01T00:00:00Z".into());
    let mut doc = json!({
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        "version": 1,
        "metadata": {
            "timestamp": created,
            "tools": {"components": [{
                "type": "application",
                "name": "ironstar",
                "version": env!("CARGO_PKG_VERSION"),
            }]},
            "component": component(graph.root(), &refs[0], "application"),
        },
        "components": components,
        "dependencies": dependencies,
    });
    let h = super::content_hash(&canonical(&doc));
    // A version-4-shaped UUID from the content hash.
    let serial = format!(
        "urn:uuid:{}-{}-4{}-8{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    );
    doc["serialNumber"] = json!(serial);
    canonical(&doc)
}

fn component(c: &Component, bom_ref: &str, kind: &str) -> Value {
    let mut v = json!({
        "type": kind,
        "bom-ref": bom_ref,
        "name": c.name,
        "version": c.version,
        "purl": c.purl(),
        "scope": if c.build_only { "excluded" } else { "required" },
    });
    if let Some(sum) = &c.checksum {
        v["hashes"] = json!([{"alg": "SHA-256", "content": sum}]);
    }
    if let Some(l) = &c.license {
        v["licenses"] = json!([{"expression": l}]);
    }
    v
}

/// The purl, made unique where two crates share a name and version (different sources).
fn bom_refs(graph: &Graph) -> Vec<String> {
    let mut seen = std::collections::BTreeSet::new();
    graph
        .components
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let p = c.purl();
            if seen.insert(p.clone()) {
                p
            } else {
                format!("{p}#{i}")
            }
        })
        .collect()
}
