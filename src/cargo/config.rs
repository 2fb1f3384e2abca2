//! The parts of the user's cargo configuration (`.cargo/config.toml`) that ironstar's own
//! environment variables could hide: rust flags, linkers, and the variables of `[env]`.
//!
//! `cargo config get` is unstable, so the files cargo would read are read here: `.cargo/config.toml`
//! (or `.cargo/config`) in the directory cargo runs from and every directory above it, then
//! `$CARGO_HOME/config.toml`. Arrays from several files are joined, the nearer file's last, as
//! cargo does; for a single value the nearest file wins.

use std::path::{Path, PathBuf};

use super::toolchain::cargo_home;
use super::{CargoError, Result};

/// What the config files say for one target.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct UserConfig {
    /// `build.rustflags`, joined over the files.
    pub build_rustflags: Vec<String>,
    /// `target.<triple>.rustflags`, joined over the files.
    pub target_rustflags: Vec<String>,
    /// Some `target.'cfg(…)'.rustflags` exists (cargo then ignores `build.rustflags` when the
    /// cfg matches; whether it does is not worked out here).
    pub cfg_rustflags: Option<PathBuf>,
    /// `target.<triple>.linker`, resolved as cargo resolves it, and the file that set it.
    pub linker: Option<(String, PathBuf)>,
    /// The file of the nearest `build.rustflags`, for messages.
    pub build_rustflags_file: Option<PathBuf>,
}

/// The config files cargo reads from `dir`, farthest first.
pub(super) fn files(dir: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = Vec::new();
    let mut push = |f: PathBuf| {
        let canon = f.canonicalize().unwrap_or(f);
        if !found.contains(&canon) {
            found.push(canon);
        }
    };
    for d in dir.ancestors() {
        // Cargo takes the name without extension when both exist.
        let plain = d.join(".cargo/config");
        let toml = d.join(".cargo/config.toml");
        if plain.is_file() {
            push(plain);
        } else if toml.is_file() {
            push(toml);
        }
    }
    if let Some(home) = cargo_home() {
        for f in [home.join("config"), home.join("config.toml")] {
            if f.is_file() {
                push(f);
                break;
            }
        }
    }
    found.reverse();
    found
}

/// A string (split on spaces, as cargo splits it) or an array of strings.
fn flags(v: &toml::Value) -> Option<Vec<String>> {
    match v {
        toml::Value::String(s) => Some(s.split_whitespace().map(String::from).collect()),
        toml::Value::Array(a) => a.iter().map(|x| x.as_str().map(String::from)).collect(),
        _ => None,
    }
}

/// One config file's table; an error names the file.
fn parse(file: &Path) -> Result<toml::Table> {
    let text = std::fs::read_to_string(file).map_err(|e| bad(file, e.to_string()))?;
    toml::from_str(&text).map_err(|e| bad(file, e.to_string()))
}

fn bad(file: &Path, message: String) -> CargoError {
    CargoError::Config {
        file: file.to_path_buf(),
        message,
    }
}

/// The user's configuration for `triple`, as seen by cargo run from `dir`.
pub(super) fn read(dir: &Path, triple: &str) -> Result<UserConfig> {
    let mut cfg = UserConfig::default();
    for file in files(dir) {
        let bad = |message: String| bad(&file, message);
        let doc = parse(&file)?;
        let get = |table: &str, key: &str| doc.get(table)?.as_table()?.get(key).cloned();
        if let Some(v) = get("build", "rustflags") {
            let f =
                flags(&v).ok_or_else(|| bad("build.rustflags is not a list of strings".into()))?;
            cfg.build_rustflags.extend(f);
            cfg.build_rustflags_file = Some(file.clone());
        }
        let targets = doc.get("target").and_then(|t| t.as_table());
        for (key, table) in targets.into_iter().flatten() {
            let Some(table) = table.as_table() else {
                continue;
            };
            if key.starts_with("cfg(") && table.contains_key("rustflags") {
                cfg.cfg_rustflags = Some(file.clone());
            }
            if key != triple {
                continue;
            }
            if let Some(v) = table.get("rustflags") {
                let f = flags(v)
                    .ok_or_else(|| bad(format!("target.{triple}.rustflags is not a list")))?;
                cfg.target_rustflags.extend(f);
            }
            if let Some(l) = table.get("linker").and_then(|l| l.as_str()) {
                cfg.linker = Some((resolve_linker(&file, l), file.clone()));
            }
        }
    }
    Ok(cfg)
}

/// A linker with a slash is relative to the directory holding `.cargo/`; a bare name is looked
/// up on PATH.
fn resolve_linker(file: &Path, linker: &str) -> String {
    if !linker.contains('/') || Path::new(linker).is_absolute() {
        return linker.to_string();
    }
    let root = file
        .parent()
        .and_then(Path::parent)
        .unwrap_or(Path::new("."));
    root.join(linker).display().to_string()
}

/// The variables the files' `[env]` tables set for build scripts (a string, or a table with
/// `value`), the nearest file's winning, as cargo run from `dir` sets them.
pub(super) fn env(dir: &Path) -> Result<Vec<(String, String)>> {
    let mut set: std::collections::BTreeMap<String, String> = Default::default();
    for file in files(dir) {
        let doc = parse(&file)?;
        let table = doc.get("env").and_then(|t| t.as_table());
        for (key, v) in table.into_iter().flatten() {
            let value = match v {
                toml::Value::String(s) => s.as_str(),
                toml::Value::Table(t) => t.get("value").and_then(|v| v.as_str()).unwrap_or(""),
                _ => {
                    let problem = format!("env.{key} is neither a string nor a table");
                    return Err(bad(&file, problem));
                }
            };
            set.insert(key.clone(), value.to_string());
        }
    }
    Ok(set.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A crate directory with `inner` as its `.cargo/config.toml` and `outer` as its parent's.
    fn nested(outer: &str, inner: &str) -> (tempfile::TempDir, PathBuf) {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("crate");
        for (d, text) in [(tmp.path(), outer), (dir.as_path(), inner)] {
            std::fs::create_dir_all(d.join(".cargo")).unwrap();
            std::fs::write(d.join(".cargo/config.toml"), text).unwrap();
        }
        (tmp, dir)
    }

    #[test]
    fn env_tables_are_read_nearest_last_in_both_spellings() {
        let (_tmp, inner) = nested(
            "[env]\nOPENSSL_DIR = \"/outer\"\nKEEP = \"k\"\n",
            "[env]\nOPENSSL_DIR = { value = \"ssl\", relative = true }\n",
        );
        let got = env(&inner).unwrap();
        assert!(
            got.contains(&("OPENSSL_DIR".into(), "ssl".into())),
            "{got:?}"
        );
        assert!(got.contains(&("KEEP".into(), "k".into())), "{got:?}");
        std::fs::write(inner.join(".cargo/config.toml"), "[env]\nX = 3\n").unwrap();
        let e = env(&inner).unwrap_err().to_string();
        assert!(e.contains("env.X is neither a string nor a table"), "{e}");
    }

    #[test]
    fn joins_files_nearest_last_and_resolves_linkers() {
        let (_tmp, inner) = nested(
            "[build]\nrustflags = \"--cfg outer\"\n[target.aarch64-unknown-linux-musl]\nlinker = \"tools/ld\"\n",
            "[build]\nrustflags = [\"--cfg\", \"inner\"]\n[target.aarch64-unknown-linux-musl]\nrustflags = [\"-Ctarget-cpu=neoverse-n1\"]\n[target.'cfg(unix)']\nrunner = \"x\"\n",
        );
        let cfg = read(&inner, "aarch64-unknown-linux-musl").unwrap();
        assert_eq!(cfg.build_rustflags, ["--cfg", "outer", "--cfg", "inner"]);
        assert_eq!(cfg.target_rustflags, ["-Ctarget-cpu=neoverse-n1"]);
        assert_eq!(cfg.cfg_rustflags, None);
        let (linker, _) = cfg.linker.unwrap();
        assert!(linker.ends_with("/tools/ld"), "{linker}");
        let amd64 = read(&inner, "x86_64-unknown-linux-musl").unwrap();
        assert!(amd64.target_rustflags.is_empty() && amd64.linker.is_none());

        std::fs::write(inner.join(".cargo/config.toml"), "[build\n").unwrap();
        let err = read(&inner, "x86_64-unknown-linux-musl").unwrap_err();
        assert!(
            err.to_string().contains("crate/.cargo/config.toml"),
            "{err}"
        );
    }
}
