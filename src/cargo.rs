//! Cross-building a crate with cargo for every platform of an image (`ironstar build --cargo`).

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::platform::Platform;

/// What to build and how.
#[derive(Debug, Clone, Default)]
pub struct CargoOptions {
    pub manifest_path: Option<PathBuf>,
    pub package: Option<String>,
    pub bin: Option<String>,
    /// Cargo profile; default `release`.
    pub profile: Option<String>,
    pub platforms: Vec<&'static Platform>,
}

/// The binaries built, by platform (`linux/amd64` → path), and the package version.
#[derive(Debug, Clone, Default)]
pub struct CargoOutput {
    pub binaries: BTreeMap<String, PathBuf>,
    pub version: Option<String>,
    /// The binary's name, used as the image name when there is no image file.
    pub name: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum CargoError {
    #[error("{0}")]
    Other(String),
}

/// Build the crate for every platform in `opts`.
pub fn build(_opts: &CargoOptions) -> Result<CargoOutput, CargoError> {
    Err(CargoError::Other("--cargo is not implemented yet".into()))
}

/// The Unix time of the last commit of the repository holding the crate, for SOURCE_DATE_EPOCH.
pub fn commit_time(_manifest_path: Option<&std::path::Path>) -> Option<i64> {
    None
}
