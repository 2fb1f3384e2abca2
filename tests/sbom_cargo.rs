//! The `--cargo` path's SBOM lists exactly the crates cargo compiled (issue 24): not the weak
//! `dep?/feature` dependencies `cargo metadata` reports, and what ran only on the build machine
//! marked so. And a crate with no commit to date it by gets a note that its image is dated 1970.

mod support;

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use support::common::{self, ironstar, json, ok, run, stderr};

const TRIPLE: &str = "x86_64-unknown-linux-musl";

fn fixture() -> PathBuf {
    common::repo().join("tests/fixtures/weak-hello")
}

fn target_dir() -> PathBuf {
    common::repo().join("target/test-fixtures/weak-hello")
}

/// The fixture's image for linux/amd64, with its SBOM in `format`; the SBOM's bytes.
fn sbom(out: &Path, format: &str) -> Value {
    ok(ironstar()
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .args(["build", "--cargo", "--locked", "--offline"])
        .args(["--platform", "linux/amd64", "--sbom-format", format])
        .arg("--manifest-path")
        .arg(fixture().join("Cargo.toml"))
        .arg("--target-dir")
        .arg(target_dir())
        .arg("-o")
        .arg(out));
    let o = run(ironstar()
        .args(["sbom", "--platform", "linux/amd64", "--layout"])
        .arg(out));
    assert!(o.status.success(), "{}", stderr(&o));
    json(&o.stdout)
}

/// `name@version` of every package `cargo tree -e normal,build --target T` shows.
fn cargo_tree() -> BTreeSet<String> {
    let out = ok(Command::new(env!("CARGO"))
        .current_dir(fixture())
        .args(["tree", "-e", "normal,build", "--target", TRIPLE])
        .args(["--locked", "--offline", "--prefix", "none"]));
    out.lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            let (name, version) = (words.next()?, words.next()?);
            Some(format!("{name}@{}", version.strip_prefix('v')?))
        })
        .collect()
}

/// The package names `cargo metadata --filter-platform T`'s resolve reaches from the root over
/// normal and build edges: what the SBOM was made from before.
fn metadata_resolve() -> BTreeSet<String> {
    let out = ok(Command::new(env!("CARGO"))
        .current_dir(fixture())
        .args([
            "metadata",
            "--format-version",
            "1",
            "--filter-platform",
            TRIPLE,
        ])
        .args(["--locked", "--offline"]));
    let meta = json(out.as_bytes());
    let nodes = meta["resolve"]["nodes"].as_array().unwrap();
    let name = |id: &str| -> String {
        let p = meta["packages"].as_array().unwrap().iter();
        let mut p = p.filter(|p| p["id"] == id);
        p.next().unwrap()["name"].as_str().unwrap().to_string()
    };
    let root = meta["resolve"]["root"].as_str().unwrap().to_string();
    let (mut seen, mut queue) = (BTreeSet::from([root.clone()]), vec![root]);
    while let Some(id) = queue.pop() {
        let node = nodes.iter().find(|n| n["id"] == id.as_str()).unwrap();
        for d in node["deps"].as_array().unwrap() {
            let kinds = d["dep_kinds"].as_array().unwrap();
            let pkg = d["pkg"].as_str().unwrap().to_string();
            if kinds.iter().any(|k| k["kind"] != "dev") && seen.insert(pkg.clone()) {
                queue.push(pkg);
            }
        }
    }
    seen.iter().map(|id| name(id)).collect()
}

/// Crate names of the libraries in a `deps/` directory (`libNAME-HASH.rlib` or `.so`).
fn libraries(deps: &Path) -> BTreeSet<String> {
    fs::read_dir(deps)
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            let stem = n.strip_suffix(".rlib").or_else(|| n.strip_suffix(".so"))?;
            Some(stem.strip_prefix("lib")?.rsplit_once('-')?.0.to_string())
        })
        .collect()
}

#[test]
fn the_cargo_sboms_packages_are_the_crates_compiled_and_no_weak_dependency() {
    let tmp = tempfile::tempdir().unwrap();
    let spdx = sbom(&tmp.path().join("spdx"), "spdx");
    let packages: BTreeSet<String> = spdx["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            format!(
                "{}@{}",
                p["name"].as_str().unwrap(),
                p["versionInfo"].as_str().unwrap()
            )
        })
        .collect();
    let names: BTreeSet<String> = packages
        .iter()
        .map(|p| p.split('@').next().unwrap().to_string())
        .collect();

    // The fixture shows the bug: cargo metadata reaches ring through `ring?/std`.
    assert!(
        metadata_resolve().contains("ring"),
        "the fixture no longer pulls ring weakly"
    );
    assert!(
        !names.contains("ring"),
        "ring was never compiled: {packages:?}"
    );
    // Every package is in cargo tree for this target and these features.
    let tree = cargo_tree();
    let extra: Vec<_> = packages.difference(&tree).collect();
    assert!(
        extra.is_empty(),
        "not in cargo tree: {extra:?} (tree: {tree:?})"
    );

    // Exactly what the target directory holds: the target's libraries and the binary (required),
    // the build machine's libraries (build scripts' and proc-macros': excluded).
    let target = libraries(&target_dir().join(TRIPLE).join("release/deps"));
    let host = libraries(&target_dir().join("release/deps"));
    assert!(target_dir()
        .join(TRIPLE)
        .join("release/weak-hello")
        .is_file());
    let underscored = |s: &str| s.replace('-', "_");
    let compiled: BTreeSet<String> = target
        .union(&host)
        .cloned()
        .chain(["weak_hello".to_string()])
        .collect();
    let listed: BTreeSet<String> = names.iter().map(|n| underscored(n)).collect();
    assert_eq!(listed, compiled);

    let bom = sbom(&tmp.path().join("cdx"), "cyclonedx");
    let scoped = |scope: &str| -> BTreeSet<String> {
        let c = bom["components"].as_array().unwrap().iter();
        c.filter(|c| c["scope"] == scope)
            .map(|c| underscored(c["name"].as_str().unwrap()))
            .collect()
    };
    assert_eq!(scoped("required"), target);
    assert_eq!(
        scoped("excluded"),
        host.difference(&target).cloned().collect()
    );
    assert!(
        scoped("excluded").contains("thiserror_impl") && scoped("excluded").contains("autocfg")
    );
    // In SPDX the same crates enter the graph as BUILD_DEPENDENCY_OF.
    let build_deps: BTreeSet<&str> = spdx["relationships"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["relationshipType"] == "BUILD_DEPENDENCY_OF")
        .map(|r| r["spdxElementId"].as_str().unwrap())
        .collect();
    assert!(
        build_deps.iter().any(|id| id.contains("-autocfg-"))
            && build_deps.iter().any(|id| id.contains("-thiserror-impl-")),
        "{build_deps:?}"
    );
}

/// The `hello` fixture copied to `dir`, built there for linux/amd64; stderr.
fn build_copy_of_hello(dir: &Path, env: &[(&str, &str)]) -> String {
    let from = common::repo().join("tests/fixtures/hello");
    fs::create_dir_all(dir.join("src")).unwrap();
    for f in ["Cargo.toml", "Cargo.lock", "src/main.rs"] {
        fs::copy(from.join(f), dir.join(f)).unwrap();
    }
    let o = run(ironstar()
        .envs(env.iter().copied())
        .args(["build", "--cargo", "--offline", "--platform", "linux/amd64"])
        .arg("--manifest-path")
        .arg(dir.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(common::repo().join("target/test-fixtures/hello"))
        .arg("-o")
        .arg(dir.join("out")));
    assert!(o.status.success(), "{}", stderr(&o));
    stderr(&o)
}

fn notes(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|l| l.contains("SOURCE_DATE_EPOCH"))
        .collect()
}

#[test]
fn a_crate_with_no_commit_is_noted_as_dated_1970_and_how_to_set_it() {
    let tmp = tempfile::tempdir().unwrap();
    let outside = tmp.path().join("outside");
    let log = build_copy_of_hello(&outside, &[]);
    let n = notes(&log);
    assert_eq!(n.len(), 1, "{log}");
    assert!(
        n[0].starts_with("note: SOURCE_DATE_EPOCH is 0, so the image is dated 1970-01-01: ")
            && n[0].contains("is not in a git repository")
            && n[0].contains("SOURCE_DATE_EPOCH=$(date +%s)"),
        "{}",
        n[0]
    );

    let fresh = tmp.path().join("fresh");
    fs::create_dir_all(&fresh).unwrap();
    ok(Command::new("git").args(["init", "-q"]).arg(&fresh));
    let log = build_copy_of_hello(&fresh, &[]);
    let n = notes(&log);
    assert!(
        n.len() == 1 && n[0].contains("has no commit yet") && n[0].contains("commit first"),
        "{log}"
    );

    // Said only when it is so.
    let log = build_copy_of_hello(&fresh, &[("SOURCE_DATE_EPOCH", "1700000000")]);
    assert!(notes(&log).is_empty(), "{log}");
}
