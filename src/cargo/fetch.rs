//! A crate's sources from crates.io, as cargo unpacks them into its registry: what the C libraries
//! ironstar builds itself (mimalloc, OpenSSL) are compiled from. Never vendored here.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use super::{run_captured, CargoError, Result};

/// The unpacked sources of crates.io's `name` at exactly `version`, holding `has` (a relative
/// path that proves the unpacking whole): `cargo fetch` of a manifest, written in `project`,
/// that depends on that one release without its default features.
pub(super) fn crate_source(
    cargo: &OsStr,
    project: &Path,
    name: &str,
    version: &str,
    has: &str,
) -> Result<PathBuf> {
    std::fs::create_dir_all(project.join("src"))?;
    // Build metadata (`+3.6.3`) is no part of a requirement: cargo warns, and ignores it.
    let exact = version.split('+').next().unwrap_or(version);
    std::fs::write(
        project.join("Cargo.toml"),
        format!(
            "[package]\nname = \"ironstar-{name}-fetch\"\nversion = \"0.0.0\"\nedition = \"2021\"\n\
             [dependencies]\n{name} = {{ version = \"={exact}\", default-features = false }}\n\
             [workspace]\n"
        ),
    )?;
    std::fs::write(project.join("src/lib.rs"), "")?;
    let shown = format!("cargo fetch ({name})");
    let mut fetch = super::cargo_command(cargo, project);
    fetch.arg("fetch");
    run_captured(&mut fetch, &shown)?;
    let registry = super::toolchain::cargo_home()
        .unwrap_or_default()
        .join("registry/src");
    let dir = format!("{name}-{version}");
    std::fs::read_dir(&registry)?
        .flatten()
        .map(|index| index.path().join(&dir))
        .find(|p| p.join(has).is_file())
        .ok_or_else(|| CargoError::Output {
            command: shown,
            message: format!("no {dir} sources under {}", registry.display()),
        })
}
