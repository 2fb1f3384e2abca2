//! What can go wrong in a cargo build: each a one-line error naming the input at fault and the fix.

use std::path::PathBuf;
use std::process::ExitStatus;

use super::Diagnosis;

#[derive(Debug, thiserror::Error)]
pub enum CargoError {
    #[error(
        "the Rust standard library for {target} is not installed; run: rustup target add {target}"
    )]
    MissingTarget { target: String },
    #[error("{tool} not found: {hint}")]
    MissingTool { tool: String, hint: String },
    #[error("no Cargo.toml in {dir} or any directory above it; give --manifest-path")]
    NoManifest { dir: PathBuf },
    #[error("no package `{package}` in the workspace at {workspace}; its packages: {available}")]
    UnknownPackage {
        package: String,
        workspace: PathBuf,
        available: String,
    },
    #[error("no selected package of the workspace at {workspace} has a binary, so there is no image to build; give --package (members with binaries: {available})")]
    NoBinaries {
        workspace: PathBuf,
        available: String,
    },
    #[error("--exclude needs --workspace (as cargo's does)")]
    ExcludeWithoutWorkspace,
    #[error("--bin {bin}: no such binary in the selected packages; it is in member `{package}`: add -p {package}")]
    BinaryNotSelected { bin: String, package: String },
    #[error(
        "--bin {bin}: no such binary in the workspace at {workspace}; its binaries: {available}"
    )]
    UnknownWorkspaceBinary {
        bin: String,
        workspace: PathBuf,
        available: String,
    },
    #[error("package `{package}` has no binary target, so there is nothing to put in an image")]
    NoBinary { package: String },
    #[error("package `{package}` has no binary `{bin}`; its binaries: {available}")]
    UnknownBinary {
        package: String,
        bin: String,
        available: String,
    },
    #[error("package `{package}` has several binaries ({available}); choose one with --bin, or with `bin = \"…\"` in its [package.metadata.ironstar]")]
    SeveralBinaries { package: String, available: String },
    #[error("the selection makes several images ({images}) where one is wanted; name one with --package or --bin")]
    SeveralImages { images: String },
    #[error("{}: {message}", file.display())]
    Config { file: PathBuf, message: String },
    #[error(
        "{} sets both build.rustflags and target.'cfg(…)'.rustflags, and ironstar cannot tell \
         which of them cargo would use for {target}; put the flags under target.{target}.rustflags",
        file.display()
    )]
    RustflagsConflict { file: PathBuf, target: String },
    #[error(
        "allocator = \"mimalloc\" links a private libc per target, and RUSTFLAGS (or \
         CARGO_ENCODED_RUSTFLAGS) reaches every target: put your flags under \
         target.<triple>.rustflags in .cargo/config.toml instead"
    )]
    GlobalRustflags,
    #[error(
        "allocator = \"mimalloc\" is not supported yet for a crate that compiles C (its \
         Cargo.lock has `cc`): zig links its own libc there; use the mimalloc crate as the \
         global allocator, or `--allocator system`"
    )]
    AllocatorWithZig,
    #[error("cannot run `{command}`: {source}")]
    Spawn {
        command: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{command}` failed ({status})")]
    CargoFailed { command: String, status: ExitStatus },
    /// A build that failed, with what its output says of why: the last line the user sees.
    #[error("cargo failed ({status}): {diagnosis}")]
    BuildFailed {
        status: ExitStatus,
        diagnosis: Box<Diagnosis>,
    },
    #[error("`{command}` printed output that is not what was expected: {message}")]
    Output { command: String, message: String },
    #[error("cannot read cargo's JSON messages: {0}")]
    Json(#[from] serde_json::Error),
    #[error("cargo's output: {0}")]
    Io(#[from] std::io::Error),
    #[error("cargo finished but reported no binary `{bin}` for {target}")]
    MissingArtifact { bin: String, target: String },
}
