//! The SLSA v1 build provenance of an image, as an in-toto Statement v1: subject the index,
//! predicate what went in (the definition, the flags that change the output, the source commit,
//! `Cargo.lock`, rustc, the base, each platform's binary) and who built it. A function of the
//! inputs: no wall-clock time, no absolute path, canonical JSON, so a rebuild anywhere of the
//! same inputs gives the same bytes. The buildType and its parameters are documented in
//! docs/src/provenance.md.

use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value};

use crate::digest::Digest;
use crate::image::canonical;

pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";
pub const PREDICATE_TYPE: &str = "https://slsa.dev/provenance/v1";
/// ironstar's buildType: the documentation of its parameters.
pub const BUILD_TYPE: &str = concat!(
    env!("CARGO_PKG_REPOSITORY"),
    "/blob/main/docs/src/provenance.md#buildtype-image-v1"
);
/// The builder id of a build outside CI.
pub const LOCAL_BUILDER: &str = concat!(
    env!("CARGO_PKG_REPOSITORY"),
    "/blob/main/docs/src/provenance.md#local-builder"
);

/// What the caller knows of the build beyond the image definition: the definition file and the
/// cargo selection. Read from the command line, before the build.
#[derive(Debug, Clone, Default)]
pub struct Source {
    /// The image definition file, if there is one.
    pub definition: Option<PathBuf>,
    pub cargo: Option<CargoParams>,
}

/// The `--cargo` selection: what cargo built, with which flags.
#[derive(Debug, Clone, Default)]
pub struct CargoParams {
    /// The package's Cargo.toml (its workspace's Cargo.lock is found above it).
    pub manifest_path: PathBuf,
    pub package: String,
    pub bin: Option<String>,
    pub features: Vec<String>,
    pub all_features: bool,
    pub no_default_features: bool,
    pub profile: String,
}

/// What the build itself knows: the image's parameters and what it resolved.
#[derive(Debug, Clone)]
pub struct Image<'a> {
    /// The repository the statement names (its subject's `name`).
    pub name: &'a str,
    pub index: &'a Digest,
    pub platforms: Vec<String>,
    pub compression: String,
    pub rootfs: Vec<String>,
    /// The base: its reference as given and the index it resolved to.
    pub base: Option<(String, Digest)>,
    /// Each platform and its binary's file.
    pub binaries: Vec<(String, &'a Path)>,
}

/// The statement's bytes (canonical JSON).
pub fn statement(source: &Source, image: &Image) -> std::io::Result<Vec<u8>> {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let predicate = json!({
        "buildDefinition": {
            "buildType": BUILD_TYPE,
            "externalParameters": external(source, image)?,
            "internalParameters": { "ironstar": { "version": env!("CARGO_PKG_VERSION") } },
            "resolvedDependencies": dependencies(source, image)?,
        },
        "runDetails": run_details(&env),
    });
    Ok(canonical(&json!({
        "_type": STATEMENT_TYPE,
        "subject": [{ "name": image.name, "digest": { "sha256": image.index.hex() } }],
        "predicateType": PREDICATE_TYPE,
        "predicate": predicate,
    })))
}

fn external(source: &Source, image: &Image) -> std::io::Result<Value> {
    let mut p = Map::new();
    if let Some(def) = &source.definition {
        p.insert(
            "definition".into(),
            json!({ "path": repo_path(def), "digest": sha256_of(def)? }),
        );
    }
    p.insert("platforms".into(), json!(image.platforms));
    p.insert("compression".into(), json!(image.compression));
    if !image.rootfs.is_empty() {
        p.insert("rootfs".into(), json!(image.rootfs));
    }
    if let Some((reference, _)) = &image.base {
        p.insert("base".into(), json!(reference));
    }
    if let Some(c) = &source.cargo {
        p.insert(
            "cargo".into(),
            json!({
                "manifestPath": repo_path(&c.manifest_path),
                "package": c.package,
                "bin": c.bin,
                "features": c.features,
                "allFeatures": c.all_features,
                "noDefaultFeatures": c.no_default_features,
                "profile": c.profile,
            }),
        );
    }
    Ok(Value::Object(p))
}

fn dependencies(source: &Source, image: &Image) -> std::io::Result<Vec<Value>> {
    let mut deps = Vec::new();
    let from = source
        .cargo
        .as_ref()
        .map(|c| c.manifest_path.as_path())
        .or(source.definition.as_deref());
    if let Some(commit) = from.and_then(git_commit) {
        let mut d = json!({ "name": "source", "digest": { "gitCommit": commit } });
        if let Some(uri) = from.and_then(source_uri) {
            d["uri"] = json!(format!("git+{uri}"));
        }
        deps.push(d);
    }
    if let Some(c) = &source.cargo {
        if let Some(lock) = cargo_lock(&c.manifest_path) {
            deps.push(json!({ "name": repo_path(&lock), "digest": sha256_of(&lock)? }));
        }
        if let Some((release, commit)) = rustc(&c.manifest_path) {
            deps.push(json!({
                "name": "rustc",
                "uri": format!("pkg:generic/rustc@{release}"),
                "digest": { "gitCommit": commit },
            }));
        }
    }
    if let Some((reference, digest)) = &image.base {
        deps.push(
            json!({ "uri": format!("oci://{reference}"), "digest": { "sha256": digest.hex() } }),
        );
    }
    for (platform, path) in &image.binaries {
        let file = path.file_name().unwrap_or_default().to_string_lossy();
        deps.push(json!({
            "name": format!("{platform}/{file}"),
            "digest": sha256_of(path)?,
        }));
    }
    Ok(deps)
}

/// The builder and, only from a CI's environment, the invocation: GitHub Actions' workflow ref
/// and run when `GITHUB_ACTIONS` is set, else [`LOCAL_BUILDER`].
fn run_details(env: &dyn Fn(&str) -> Option<String>) -> Value {
    let github = env("GITHUB_ACTIONS").is_some_and(|v| v == "true");
    let server = env("GITHUB_SERVER_URL").unwrap_or_else(|| "https://github.com".into());
    match (github, env("GITHUB_WORKFLOW_REF")) {
        (true, Some(workflow)) => {
            let mut d = json!({ "builder": { "id": format!("{server}/{workflow}") } });
            if let (Some(repo), Some(run)) = (env("GITHUB_REPOSITORY"), env("GITHUB_RUN_ID")) {
                let attempt = env("GITHUB_RUN_ATTEMPT").unwrap_or_else(|| "1".into());
                d["metadata"] = json!({
                    "invocationId": format!("{server}/{repo}/actions/runs/{run}/attempts/{attempt}")
                });
            }
            d
        }
        _ => json!({ "builder": { "id": LOCAL_BUILDER } }),
    }
}

/// `{"sha256": hex}` of a file.
fn sha256_of(path: &Path) -> std::io::Result<Value> {
    let mut hasher = crate::digest::HashWriter::new(std::io::sink());
    std::io::copy(&mut std::fs::File::open(path)?, &mut hasher)?;
    Ok(json!({ "sha256": hasher.finish().1.hex() }))
}

/// `path` relative to its git repository's top (else its file name): never where the checkout
/// happens to be.
fn repo_path(path: &Path) -> String {
    let abs = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let top = crate::source_date::git(parent(&abs), &["rev-parse", "--show-toplevel"])
        .and_then(|o| String::from_utf8(o).ok())
        .and_then(|t| std::fs::canonicalize(t.trim()).ok());
    let rel = top.as_deref().and_then(|t| abs.strip_prefix(t).ok());
    match rel {
        Some(r) => r.to_string_lossy().into_owned(),
        None => path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned(),
    }
}

fn parent(path: &Path) -> &Path {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

fn git_commit(path: &Path) -> Option<String> {
    let out = crate::source_date::git(parent(path), &["rev-parse", "HEAD"])?;
    let s = String::from_utf8(out).ok()?.trim().to_string();
    (s.len() >= 40 && s.bytes().all(|b| b.is_ascii_hexdigit())).then_some(s)
}

/// The source repository's URL: GitHub's when in Actions, else `origin`'s, any credential in
/// it removed.
fn source_uri(path: &Path) -> Option<String> {
    if let (Ok(server), Ok(repo)) = (
        std::env::var("GITHUB_SERVER_URL"),
        std::env::var("GITHUB_REPOSITORY"),
    ) {
        return Some(format!("{server}/{repo}"));
    }
    let out = crate::source_date::git(parent(path), &["remote", "get-url", "origin"])?;
    let url = String::from_utf8(out).ok()?.trim().to_string();
    match url::Url::parse(&url) {
        Ok(mut u) if u.has_host() => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            Some(u.to_string())
        }
        // scp-like `git@host:org/repo` carries no secret; a local path says nothing portable.
        _ if url.contains('@') && url.contains(':') => Some(url),
        _ => None,
    }
}

/// The nearest Cargo.lock at or above the package's manifest.
fn cargo_lock(manifest_path: &Path) -> Option<PathBuf> {
    let abs = std::fs::canonicalize(manifest_path).ok()?;
    abs.ancestors()
        .skip(1)
        .map(|d| d.join("Cargo.lock"))
        .find(|p| p.is_file())
}

/// `rustc -vV`'s release and commit hash, as cargo would run it from the package's directory.
fn rustc(manifest_path: &Path) -> Option<(String, String)> {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let out = std::process::Command::new(rustc)
        .current_dir(parent(manifest_path))
        .arg("-vV")
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    let field = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(k))
            .map(|v| v.trim().to_string())
    };
    Some((field("release: ")?, field("commit-hash: ")?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_builder_is_githubs_workflow_only_in_actions() {
        let none = |_: &str| None;
        assert_eq!(run_details(&none)["builder"]["id"], LOCAL_BUILDER);
        assert!(run_details(&none).get("metadata").is_none());
        let gh = |k: &str| {
            let v = match k {
                "GITHUB_ACTIONS" => "true",
                "GITHUB_WORKFLOW_REF" => "org/app/.github/workflows/release.yml@refs/tags/v1",
                "GITHUB_REPOSITORY" => "org/app",
                "GITHUB_RUN_ID" => "42",
                "GITHUB_RUN_ATTEMPT" => "2",
                _ => return None,
            };
            Some(v.to_string())
        };
        let d = run_details(&gh);
        assert_eq!(
            d["builder"]["id"],
            "https://github.com/org/app/.github/workflows/release.yml@refs/tags/v1"
        );
        assert_eq!(
            d["metadata"]["invocationId"],
            "https://github.com/org/app/actions/runs/42/attempts/2"
        );
    }
}
