//! What the build really read beyond the key: the files and variables build scripts declare
//! to cargo (`cargo:rerun-if-changed=PATH`, `cargo:rerun-if-env-changed=NAME`), collected from
//! each script's `output` after a build, stored by name with the digest of their value, and read
//! again at lookup.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::files;
use crate::digest::Digest;

/// Declared inputs: variables and files, each name → the digest of its value (or `absent`).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Declared {
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Paths relative to the workspace root when under it, else absolute.
    #[serde(default)]
    pub files: BTreeMap<String, String>,
}

/// The digest of a variable's value now, or `absent`.
pub fn env_value(name: &str) -> String {
    match std::env::var_os(name) {
        Some(v) => Digest::of(v.as_encoded_bytes()).to_string(),
        None => "absent".into(),
    }
}

/// Where a build ran: the workspace root (for naming files), and the directories whose files
/// are not inputs of their own (the target directory, `$CARGO_HOME`: crates there are pinned by
/// Cargo.lock's checksums).
pub struct Context<'a> {
    pub root: &'a Path,
    pub ignored: Vec<PathBuf>,
}

impl Declared {
    /// The declarations of the build scripts cargo ran (package id, `OUT_DIR`), their values now.
    pub fn collect<'a>(
        scripts: impl IntoIterator<Item = &'a (String, PathBuf)>,
        ctx: &Context,
    ) -> Declared {
        let mut d = Declared::default();
        for (id, out_dir) in scripts {
            let Some(output) = out_dir.parent().map(|p| p.join("output")) else {
                continue;
            };
            let text = std::fs::read_to_string(&output).unwrap_or_default();
            let package_dir = path_package_dir(id);
            for (kind, value) in directives(&text) {
                match kind {
                    Kind::Env => {
                        d.env.insert(value.to_string(), env_value(value));
                    }
                    Kind::File => {
                        // A registry crate's own files are pinned by Cargo.lock.
                        let Some(dir) = &package_dir else { continue };
                        let path = dir.join(value);
                        if ctx.ignored.iter().any(|i| path.starts_with(i)) {
                            continue;
                        }
                        let name = files::relative(&path, ctx.root);
                        d.files.insert(name, files::digest_path(&path));
                    }
                }
            }
        }
        d
    }

    /// The first declared input whose value differs now (its name), if any; files are read
    /// under `root`.
    pub fn first_changed(&self, root: &Path) -> Option<String> {
        if let Some((k, _)) = self.env.iter().find(|(k, v)| env_value(k) != **v) {
            return Some(format!("variable {k}"));
        }
        let (k, _) = self
            .files
            .iter()
            .find(|(k, v)| files::digest_path(&root.join(k)) != **v)?;
        Some(format!("file {k}"))
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Kind {
    Env,
    File,
}

/// The `rerun-if-*` lines of a build script's output (`cargo:` and `cargo::` spellings).
fn directives(text: &str) -> Vec<(Kind, &str)> {
    text.lines()
        .filter_map(|l| {
            let rest = l
                .strip_prefix("cargo::")
                .or_else(|| l.strip_prefix("cargo:"))?;
            let (key, value) = rest.split_once('=')?;
            let kind = match key {
                "rerun-if-env-changed" => Kind::Env,
                "rerun-if-changed" => Kind::File,
                _ => return None,
            };
            Some((kind, value.trim()))
        })
        .filter(|(_, v)| !v.is_empty())
        .collect()
}

/// A path package's directory, from its id (`path+file:///dir#name@1.0`, or the older
/// `name 1.0 (path+file:///dir)`); `None` for any other source.
fn path_package_dir(id: &str) -> Option<PathBuf> {
    let start = id.find("path+file://")? + "path+file://".len();
    let rest = &id[start..];
    let end = rest.find(['#', ')']).unwrap_or(rest.len());
    Some(PathBuf::from(&rest[..end]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_declarations_of_build_scripts() {
        let text = "cargo:rustc-link-lib=static=x\ncargo:rerun-if-changed=src/a.c\n\
                    cargo::rerun-if-env-changed=PROTO_ROOT\ncargo:warning=hi\n";
        assert_eq!(
            directives(text),
            [(Kind::File, "src/a.c"), (Kind::Env, "PROTO_ROOT")]
        );
        assert_eq!(
            path_package_dir("path+file:///ws/worker#0.3.0"),
            Some(PathBuf::from("/ws/worker"))
        );
        assert_eq!(
            path_package_dir("worker 0.3.0 (path+file:///ws/worker)"),
            Some(PathBuf::from("/ws/worker"))
        );
        assert_eq!(
            path_package_dir("registry+https://github.com/rust-lang/crates.io-index#cc@1.0.0"),
            None
        );
    }

    #[test]
    fn a_declared_variable_or_file_outside_the_package_flips_the_check() {
        let dir = tempfile::tempdir().unwrap();
        let ws = dir.path();
        std::fs::create_dir_all(ws.join("proto")).unwrap();
        std::fs::create_dir_all(ws.join("svc/src")).unwrap();
        std::fs::create_dir_all(ws.join("target/release/build/svc-1/out")).unwrap();
        std::fs::write(ws.join("proto/a.proto"), "message A {}").unwrap();
        let var = "IRONSTAR_TEST_DECLARED_PROTO_FLAGS";
        std::fs::write(
            ws.join("target/release/build/svc-1/output"),
            format!("cargo:rerun-if-changed=../proto/a.proto\ncargo:rerun-if-env-changed={var}\n"),
        )
        .unwrap();
        let id = format!("path+file://{}#svc@0.1.0", ws.join("svc").display());
        let scripts = [(id, ws.join("target/release/build/svc-1/out"))];
        let ctx = Context {
            root: ws,
            ignored: vec![ws.join("target")],
        };
        let d = Declared::collect(&scripts, &ctx);
        assert_eq!(d.env.get(var).map(String::as_str), Some("absent"));
        assert!(d.files.contains_key("proto/a.proto"), "{d:?}");
        assert_eq!(d.first_changed(ws), None);

        std::fs::write(ws.join("proto/a.proto"), "message A { int32 x = 1; }").unwrap();
        assert_eq!(d.first_changed(ws).as_deref(), Some("file proto/a.proto"));
        let d = Declared::collect(&scripts, &ctx);
        assert_eq!(d.first_changed(ws), None);

        std::env::set_var(var, "--fast");
        assert_eq!(d.first_changed(ws), Some(format!("variable {var}")));
        std::env::remove_var(var);
        assert_eq!(d.first_changed(ws), None);
    }
}
