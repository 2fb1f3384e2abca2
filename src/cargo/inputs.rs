//! What a cargo build reads besides its sources, for the reuse key ([`crate::reuse`]): the
//! config files and toolchain files cargo and rustup read from the crate's directory, and the
//! versions of the tools that build it.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::{metadata, run_captured, toolchain, Result, Selection};

/// The tools' inputs of a build of `sel`: each as (what it is, its content), in a fixed order.
/// Files are named relative to `root` (the workspace root) when under it, so that the same
/// checkout elsewhere gives the same inputs; `$CARGO_HOME`'s config is named `$CARGO_HOME/…`.
pub fn tool_inputs(sel: &Selection, root: &Path) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    let name = |f: &Path| match (f.strip_prefix(root), toolchain::cargo_home()) {
        (Ok(rel), _) => rel.display().to_string(),
        (Err(_), Some(h)) if f.starts_with(&h) => {
            let rel = f.strip_prefix(&h).unwrap_or(f);
            format!("$CARGO_HOME/{}", rel.display())
        }
        _ => f.display().to_string(),
    };
    for f in super::config::files(&sel.dir)
        .into_iter()
        .chain(toolchain_files(&sel.dir))
    {
        let text = std::fs::read_to_string(&f).unwrap_or_default();
        out.push((name(&f), text));
    }
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let vv = |program: &std::ffi::OsStr, arg: &str, shown: &str| {
        run_captured(Command::new(program).current_dir(&sel.dir).arg(arg), shown)
    };
    out.push(("rustc -vV".into(), vv(&rustc, "-vV", "rustc -vV")?));
    out.push(("cargo -V".into(), vv(&sel.cargo, "-V", "cargo -V")?));
    if metadata::compiles_c(&metadata::lock_packages(&sel.workspace_root)) {
        // The build uses zig through cargo-zigbuild: they are inputs too (cargo-zigbuild by
        // the bytes of what PATH finds: it is not run before the build). A missing tool is an input
        // as well ("absent"): the build then fails, and says why.
        let zig = std::env::var_os("CARGO_ZIGBUILD_ZIG_PATH").unwrap_or_else(|| "zig".into());
        let zig = vv(&zig, "version", "zig version").unwrap_or_else(|_| "absent".into());
        out.push(("zig version".into(), zig));
        let zigbuild = toolchain::which("cargo-zigbuild")
            .or_else(|| Some(toolchain::cargo_home()?.join("bin/cargo-zigbuild")))
            .and_then(|p| std::fs::read(p).ok())
            .map_or("absent".into(), |b| crate::Digest::of(&b).to_string());
        out.push(("cargo-zigbuild".into(), zigbuild));
    }
    Ok(out)
}

/// The `rust-toolchain` files rustup reads from `dir` (the nearest one wins; all are inputs).
fn toolchain_files(dir: &Path) -> Vec<PathBuf> {
    dir.ancestors()
        .flat_map(|d| [d.join("rust-toolchain"), d.join("rust-toolchain.toml")])
        .filter(|f| f.is_file())
        .collect()
}
