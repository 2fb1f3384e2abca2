//! Which compilers and linkers build the crate, and whether they are installed.
//!
//! - A crate without C code is linked by `rust-lld` with the musl CRT objects and libc that
//!   ship with the target's standard library: rustup alone builds it, with the musl Rust's
//!   `libc` crate was written against.
//! - A crate that compiles C (its `Cargo.lock` has `cc` or `cmake`) needs libc headers for each
//!   target, so it is built with `cargo-zigbuild`: zig is the C compiler, archiver and linker,
//!   with its own musl headers and libc for every target of the table, and no sysroot to
//!   install. cargo-zigbuild does what thin `zig cc` wrappers would have to learn the hard way:
//!   it drops the link arguments zig rejects (`-lgcc_s`, `--no-undefined-version`, Rust's own
//!   self-contained CRT objects for musl), maps `-march` spellings, papers over the musl version
//!   gap between Rust's libc crate and zig's musl, and sets `CC_`/`CXX_`/`AR_`/`RANLIB_` and
//!   CMake toolchain files per target, each only where the user has not set it.
//!
//! The choice depends on the crate only, never on what happens to be installed, so one crate
//! gives one binary (and one digest) on every machine.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::{run_captured, CargoError, Result};

/// How to install zig and cargo-zigbuild, in error messages.
pub const ZIG_INSTALL_HINT: &str =
    "install them with `sh scripts/install-deps.sh` from ironstar's \
     repository, or `pip install ziglang cargo-zigbuild` (in a venv)";

/// The C toolchain of a build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Toolchain {
    /// Pure Rust: `rust-lld`, no C compiler.
    RustLld,
    /// C code: `cargo-zigbuild` (this program) with zig.
    Zig { cargo_zigbuild: PathBuf },
}

impl Toolchain {
    /// The toolchain for a crate that compiles C or not, with its tools checked.
    pub(super) fn discover(compiles_c: bool, rustc: &Rustc) -> Result<Self> {
        if !compiles_c {
            return match rustc.has_rust_lld() {
                true => Ok(Toolchain::RustLld),
                false => Err(CargoError::MissingTool {
                    tool: "rust-lld".into(),
                    hint: format!(
                        "it links the musl targets without a cross gcc and ships with rustup's \
                         toolchains (in {}); install Rust with rustup",
                        rustc.rustlib(&rustc.host).join("bin").display()
                    ),
                }),
            };
        }
        if std::env::var_os("CARGO_ZIGBUILD_ZIG_PATH").is_none() && which("zig").is_none() {
            return Err(CargoError::MissingTool {
                tool: "zig".into(),
                hint: format!(
                    "a dependency compiles C (Cargo.lock has the `cc` crate), and zig is the C \
                     compiler and linker for the musl targets; {ZIG_INSTALL_HINT}"
                ),
            });
        }
        let cargo_zigbuild = which("cargo-zigbuild")
            .or_else(|| {
                let bin = cargo_home()?.join("bin/cargo-zigbuild");
                bin.is_file().then_some(bin)
            })
            .ok_or_else(|| CargoError::MissingTool {
                tool: "cargo-zigbuild".into(),
                hint: format!(
                    "a dependency compiles C (Cargo.lock has the `cc` crate), and cargo-zigbuild \
                     sets zig up as its C compiler and linker; {ZIG_INSTALL_HINT}"
                ),
            })?;
        Ok(Toolchain::Zig { cargo_zigbuild })
    }

    /// The program to run and the arguments before cargo's own (`build`, `zigbuild`).
    pub(super) fn command(&self, cargo: &OsString) -> (OsString, &'static str) {
        match self {
            Toolchain::RustLld => (cargo.clone(), "build"),
            Toolchain::Zig { cargo_zigbuild } => (cargo_zigbuild.into(), "zigbuild"),
        }
    }
}

pub(super) fn cargo_home() -> Option<PathBuf> {
    std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| Some(PathBuf::from(std::env::var_os("HOME")?).join(".cargo")))
}

/// The rustc cargo will run, as seen from the crate's directory.
pub(super) struct Rustc {
    pub host: String,
    sysroot: PathBuf,
}

impl Rustc {
    pub(super) fn probe(dir: &Path) -> Result<Self> {
        let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
        let vv = run_captured(
            Command::new(&rustc).current_dir(dir).arg("-vV"),
            "rustc -vV",
        )?;
        let host = vv
            .lines()
            .find_map(|l| l.strip_prefix("host: "))
            .ok_or_else(|| CargoError::Output {
                command: "rustc -vV".into(),
                message: "no `host:` line".into(),
            })?
            .trim()
            .to_string();
        let sysroot = run_captured(
            Command::new(&rustc)
                .current_dir(dir)
                .args(["--print", "sysroot"]),
            "rustc --print sysroot",
        )?;
        Ok(Rustc {
            host,
            sysroot: PathBuf::from(sysroot.trim()),
        })
    }

    pub(super) fn rustlib(&self, target: &str) -> PathBuf {
        self.sysroot.join("lib").join("rustlib").join(target)
    }

    pub(super) fn has_target(&self, target: &str) -> bool {
        std::fs::read_dir(self.rustlib(target).join("lib")).is_ok_and(|entries| {
            entries.flatten().any(|e| {
                let n = e.file_name();
                let n = n.to_string_lossy();
                n.starts_with("libstd-") || n.starts_with("libcore-")
            })
        })
    }

    /// rustup puts `rust-lld` next to rustc's own libraries; rustc finds it there by name.
    fn has_rust_lld(&self) -> bool {
        self.rustlib(&self.host)
            .join("bin")
            .join("rust-lld")
            .is_file()
            || which("rust-lld").is_some()
    }
}

/// A program by name on PATH, or by path.
pub(super) fn which(program: &str) -> Option<PathBuf> {
    let p = Path::new(program);
    if p.components().count() > 1 {
        return p.is_file().then(|| p.to_path_buf());
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(program))
        .find(|c| c.is_file())
}
