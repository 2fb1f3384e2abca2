//! SPDX 2.3 JSON. Deterministic: `created` is `SOURCE_DATE_EPOCH`, the namespace is derived from
//! the rest of the document, and the bytes are canonical JSON.

use serde_json::{json, Value};

use super::{Component, Graph};
use crate::image::{canonical, rfc3339};

const CRATES_IO: &str = "registry+https://github.com/rust-lang/crates.io-index";

/// The SPDX document of `graph`, named `name`.
pub fn document(graph: &Graph, name: &str, epoch: i64) -> Vec<u8> {
    let ids: Vec<String> = graph
        .components
        .iter()
        .enumerate()
        .map(|(i, c)| spdx_id(i, c))
        .collect();
    let packages: Vec<Value> = graph
        .components
        .iter()
        .zip(&ids)
        .enumerate()
        .map(|(i, (c, id))| package(c, id, i == 0))
        .collect();
    let mut relationships = vec![json!({
        "spdxElementId": "SPDXRef-DOCUMENT",
        "relationshipType": "DESCRIBES",
        "relatedSpdxElement": ids[0],
    })];
    for &(from, to) in &graph.edges {
        // Where the graph crosses from what runs into what only builds (a build script's crates).
        let c = &graph.components;
        relationships.push(if c[to].build_only && !c[from].build_only {
            json!({
                "spdxElementId": ids[to],
                "relationshipType": "BUILD_DEPENDENCY_OF",
                "relatedSpdxElement": ids[from],
            })
        } else {
            json!({
                "spdxElementId": ids[from],
                "relationshipType": "DEPENDS_ON",
                "relatedSpdxElement": ids[to],
            })
        });
    }
    let created = rfc3339(epoch).unwrap_or_else(|_| "1970-01-01T00:00:00Z".into());
    let mut doc = json!({
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": name,
        "documentNamespace": "",
        "creationInfo": {
            "created": created,
            "creators": [format!("Tool: ironstar-{}", env!("CARGO_PKG_VERSION"))],
        },
        "packages": packages,
        "relationships": relationships,
    });
    let hash = super::content_hash(&canonical(&doc));
    let root = graph.root();
    doc["documentNamespace"] = json!(format!(
        "https://spdx.org/spdxdocs/ironstar/{}-{}-{hash}",
        url_safe(&root.name),
        url_safe(&root.version)
    ));
    canonical(&doc)
}

fn package(c: &Component, id: &str, root: bool) -> Value {
    let mut p = json!({
        "SPDXID": id,
        "name": c.name,
        "versionInfo": c.version,
        "downloadLocation": download_location(c),
        "filesAnalyzed": false,
        "licenseConcluded": "NOASSERTION",
        "licenseDeclared": c.license.as_deref().unwrap_or("NOASSERTION"),
        "copyrightText": "NOASSERTION",
        "primaryPackagePurpose": if root { "APPLICATION" } else { "LIBRARY" },
        "externalRefs": [{
            "referenceCategory": "PACKAGE-MANAGER",
            "referenceType": "purl",
            "referenceLocator": c.purl(),
        }],
    });
    if let Some(sum) = &c.checksum {
        p["checksums"] = json!([{"algorithm": "SHA256", "checksumValue": sum}]);
    }
    if let Some(s) = &c.source {
        p["sourceInfo"] = json!(format!("cargo source {s}"));
    }
    p
}

fn download_location(c: &Component) -> String {
    match c.source.as_deref() {
        Some(CRATES_IO) => format!(
            "https://crates.io/api/v1/crates/{}/{}/download",
            c.name, c.version
        ),
        Some(s) if s.starts_with("git+") => s.to_string(),
        _ => "NOASSERTION".to_string(),
    }
}

/// `SPDXRef-` then letters, digits, `.` and `-` only.
fn spdx_id(i: usize, c: &Component) -> String {
    format!(
        "SPDXRef-Package-{i}-{}-{}",
        url_safe(&c.name),
        url_safe(&c.version)
    )
}

fn url_safe(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(name: &str, build_only: bool) -> Component {
        Component {
            name: name.into(),
            version: "1.0.0".into(),
            source: None,
            checksum: None,
            license: None,
            build_only,
        }
    }

    #[test]
    fn build_dependency_where_the_graph_enters_build_time() {
        let g = Graph {
            components: vec![
                c("app", false),
                c("ring", false),
                c("cc", true),
                c("shlex", true),
            ],
            edges: vec![(0, 1), (1, 2), (2, 3)],
        };
        let doc: Value = serde_json::from_slice(&document(&g, "app", 0)).unwrap();
        let rels: Vec<(String, String, String)> = doc["relationships"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                let s = |k: &str| r[k].as_str().unwrap().to_string();
                (
                    s("spdxElementId"),
                    s("relationshipType"),
                    s("relatedSpdxElement"),
                )
            })
            .collect();
        let id = |i: usize| spdx_id(i, &g.components[i]);
        assert!(rels.contains(&(id(0), "DEPENDS_ON".into(), id(1))));
        assert!(rels.contains(&(id(2), "BUILD_DEPENDENCY_OF".into(), id(1))));
        assert!(rels.contains(&(id(2), "DEPENDS_ON".into(), id(3))));
        // Same graph, same bytes; the namespace is derived from the content.
        assert_eq!(document(&g, "app", 0), document(&g, "app", 0));
        assert_ne!(document(&g, "app", 0), document(&g, "app", 1));
    }
}
