//! The image definition (`images/*.toml`, or `[package.metadata.ironstar]`): what goes in an
//! image besides the binaries, and where each platform's binary comes from. Errors name the file
//! and the line. `file` reads the format, `path` holds paths inside the image ([`ImagePath`]),
//! `rootfs` the rootfs items ([`RootfsItem`]).

mod confine;
mod file;
mod path;
mod rootfs;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::platform::Platform;

pub use confine::SourcePolicy;
pub use file::check_tag;
pub use path::ImagePath;
pub use rootfs::{parse_rootfs_flag, RootfsItem};

/// Where a problem in a definition file is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file.display(), self.line, self.column)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("{path}: cannot read image definition: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{at}: {message}")]
    Invalid { at: Location, message: String },
    #[error("{0}")]
    Flag(String),
}

type Result<T, E = SpecError> = std::result::Result<T, E>;

/// An extra file or directory in the image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtraFile {
    /// The file on disk; `None` makes an empty directory.
    pub source: Option<PathBuf>,
    pub path: ImagePath,
    pub mode: u32,
}

/// The runtime configuration written into each image config.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunConfig {
    /// `None`: the binary itself.
    pub entrypoint: Option<Vec<String>>,
    pub cmd: Option<Vec<String>>,
    pub env: BTreeMap<String, String>,
    pub user: Option<String>,
    pub workdir: Option<String>,
    pub exposed_ports: Vec<String>,
    pub labels: BTreeMap<String, String>,
    pub stop_signal: Option<String>,
}

/// An image definition, resolved: paths made absolute or relative to the definition file.
#[derive(Debug, Clone, Default)]
pub struct ImageSpec {
    pub name: String,
    pub repository: Option<String>,
    pub tags: Vec<String>,
    pub version: Option<String>,
    /// The platforms to build, in order.
    pub platforms: Vec<&'static Platform>,
    /// Whether the file chose the platforms (`platforms` or `binaries`); if not, `--binary` flags do.
    pub platforms_explicit: bool,
    /// Each platform's binary on disk (missing entries are filled by `--binary` or `--cargo`).
    pub binaries: BTreeMap<String, PathBuf>,
    /// Where the binary goes in the image; default `/<its file name>`.
    pub binary_path: Option<ImagePath>,
    pub config: RunConfig,
    /// Annotations for the image index (and `index.json`).
    pub annotations: BTreeMap<String, String>,
    pub files: Vec<ExtraFile>,
    /// With `--cargo`: which of the package's binary targets the image runs (`bin = "…"`);
    /// `None`: `--bin`, else the package's only binary, else its `default-run`.
    pub bin: Option<String>,
    /// The rootfs items, in [`RootfsItem::ALL`]'s order, each once.
    pub rootfs: Vec<RootfsItem>,
    /// The image our layers go on top of; `None`: `FROM scratch`.
    pub base: Option<crate::oci::Reference>,
    /// How ironstar's layers (the rootfs items' and the binary's) are compressed; a base's
    /// layers keep their own.
    pub compression: crate::compress::Algorithm,
    /// With `--cargo`: the C allocator linked into the binary (`allocator = "mimalloc"`);
    /// `None`: not chosen (musl's).
    pub allocator: Option<crate::cargo::Allocator>,
}

impl ImageSpec {
    /// Read and check the definition at `path`, its `files[].source` confined
    /// ([`SourcePolicy::Confined`]).
    pub fn load(path: &Path) -> Result<Self> {
        Self::load_with(path, SourcePolicy::Confined)
    }

    /// Read and check the definition at `path`, its sources as `sources` says.
    pub fn load_with(path: &Path, sources: SourcePolicy) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| SpecError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse_with(path, &text, sources)
    }

    /// Parse a definition; `path` names it in errors and anchors its relative paths.
    pub fn parse(path: &Path, text: &str) -> Result<Self> {
        Self::parse_with(path, text, SourcePolicy::Confined)
    }

    fn parse_with(path: &Path, text: &str, sources: SourcePolicy) -> Result<Self> {
        let raw: file::RawSpec = toml::from_str(text).map_err(|e| SpecError::Invalid {
            at: file::location(path, text, e.span()),
            message: e.message().trim().to_string(),
        })?;
        file::Source::new(path, text, sources).spec(raw, None)
    }

    /// The definition under `[package.metadata.ironstar]` of the Cargo.toml at `path`, if any,
    /// with the same keys as a definition file; `name` defaults to `package`. Errors name
    /// Cargo.toml with line and column.
    pub fn load_cargo_metadata(
        path: &Path,
        package: &str,
        sources: SourcePolicy,
    ) -> Result<Option<Self>> {
        #[derive(Deserialize)]
        struct Manifest {
            package: Option<Package>,
        }
        #[derive(Deserialize)]
        struct Package {
            metadata: Option<PackageMetadata>,
        }
        #[derive(Deserialize)]
        struct PackageMetadata {
            ironstar: Option<file::RawSpec>,
        }
        let text = std::fs::read_to_string(path).map_err(|source| SpecError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let manifest: Manifest = toml::from_str(&text).map_err(|e| SpecError::Invalid {
            at: file::location(path, &text, e.span()),
            message: e.message().trim().to_string(),
        })?;
        let raw = manifest.package.and_then(|p| p.metadata?.ironstar);
        let source = file::Source::new(path, &text, sources);
        raw.map(|raw| source.spec(raw, Some(package))).transpose()
    }

    /// A definition made from `--binary` flags alone: named after the first binary.
    pub fn from_binaries(binaries: &[(&'static Platform, PathBuf)]) -> Result<Self> {
        let first = binaries.first().ok_or_else(|| {
            SpecError::Flag(
                "give an image definition file or at least one --binary OS/ARCH=PATH".into(),
            )
        })?;
        let name = first
            .1
            .file_name()
            .map(|n| n.to_string_lossy().to_lowercase())
            .filter(|n| file::check_name(n).is_ok())
            .unwrap_or_else(|| "image".into());
        Ok(ImageSpec {
            name,
            tags: vec!["latest".into()],
            ..Default::default()
        })
    }

    /// Apply `--binary` flags: each overrides (or adds) that platform's binary.
    pub fn set_binaries(&mut self, binaries: &[(&'static Platform, PathBuf)]) {
        if !self.platforms_explicit && !binaries.is_empty() {
            // Nothing chose the platforms but the flags: exactly the flags' platforms.
            self.platforms.clear();
        }
        for (p, path) in binaries {
            self.binaries.insert(p.to_string(), path.clone());
            if !self.platforms.contains(p) {
                self.platforms.push(p);
            }
        }
        self.platforms
            .sort_by_key(|p| crate::platform::PLATFORMS.iter().position(|q| q == *p));
    }
}

/// Parse `OS/ARCH[/VARIANT]=PATH`.
pub fn parse_binary_flag(s: &str) -> std::result::Result<(&'static Platform, PathBuf), String> {
    let (platform, path) = s
        .split_once('=')
        .ok_or_else(|| format!("`{s}`: expected OS/ARCH[/VARIANT]=PATH, e.g. linux/arm64=target/aarch64-unknown-linux-musl/release/app"))?;
    let platform = Platform::parse(platform).map_err(|e| e.to_string())?;
    if path.is_empty() {
        return Err(format!("`{s}`: the path is empty"));
    }
    Ok((platform, PathBuf::from(path)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ImageSpec> {
        ImageSpec::parse(Path::new("images/x.toml"), text)
    }

    #[test]
    fn reads_a_full_definition() {
        let s = parse(
            r#"
name = "app"
repository = "ghcr.io/org/app"
tags = ["latest", "v1"]
entrypoint = ["/app", "serve"]
env = { RUST_LOG = "info" }
user = "65532:65532"
exposed_ports = ["8080", "53/udp"]
[binaries]
"linux/arm64" = "../target/a/app"
"linux/amd64" = "../target/x/app"
[[files]]
path = "/tmp"
mode = 0o1777
"#,
        )
        .unwrap();
        assert_eq!(s.name, "app");
        assert_eq!(s.tags, ["latest", "v1"]);
        let p: Vec<_> = s.platforms.iter().map(|p| p.to_string()).collect();
        assert_eq!(p, ["linux/amd64", "linux/arm64"]);
        assert_eq!(
            s.binaries["linux/amd64"],
            Path::new("images/../target/x/app")
        );
        assert_eq!(s.files[0].mode, 0o1777);
        assert_eq!(s.files[0].path.relative(), "tmp");
        assert_eq!(s.config.exposed_ports, ["53/udp", "8080"]);
        assert!(s.rootfs.is_empty() && s.base.is_none());
        assert_eq!(s.compression, crate::compress::Algorithm::Gzip);
    }

    #[test]
    fn reads_the_allocator() {
        let s = parse("name = \"app\"\nallocator = \"mimalloc\"\n").unwrap();
        assert_eq!(s.allocator, Some(crate::cargo::Allocator::Mimalloc));
        assert_eq!(parse("name = \"app\"\n").unwrap().allocator, None);
        let e = parse("name = \"app\"\nallocator = \"tcmalloc\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("images/x.toml:2:13:") && e.contains("mimalloc"),
            "{e}"
        );
    }

    #[test]
    fn reads_the_compression() {
        let s = parse("name = \"app\"\ncompression = \"zstd\"\n").unwrap();
        assert_eq!(s.compression, crate::compress::Algorithm::Zstd);
        let e = parse("name = \"app\"\ncompression = \"xz\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("images/x.toml:2:15:") && e.contains("gzip or zstd"),
            "{e}"
        );
    }

    #[test]
    fn reads_rootfs_items_and_a_base() {
        let s = parse(
            "name = \"app\"\nrootfs = [\"tmp\", \"ca-certificates\", \"tmp\"]\nbase = \"127.0.0.1:5000/base:v1\"\n",
        )
        .unwrap();
        assert_eq!(s.rootfs, [RootfsItem::CaCertificates, RootfsItem::Tmp]);
        let base = s.base.unwrap();
        assert_eq!(base.repository.to_string(), "127.0.0.1:5000/base");
        let e = parse("name = \"app\"\nrootfs = [\"tzdat\"]\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("images/x.toml:2:11:") && e.contains("tzdata"),
            "{e}"
        );
        let e = parse("name = \"app\"\nbase = \"Bad Ref\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("images/x.toml:2:8:"), "{e}");
    }

    #[test]
    fn errors_name_file_and_line() {
        let e = parse("name = \"app\"\n\nentrypont = [\"/x\"]\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("images/x.toml:3:1:"), "{e}");
        let e = parse("name = \"app\"\n[binaries]\n\"linux/mips\" = \"x\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("images/x.toml:3:"), "{e}");
        assert!(e.contains("unknown platform"), "{e}");
        let e = parse("name = \"app\"\n[[files]]\npath = \"/etc/../../x\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("images/x.toml:3:") && e.contains(".."), "{e}");
        let e = parse("name = \"App\"").unwrap_err().to_string();
        assert!(e.contains("lowercase"), "{e}");
        let e = parse("name = [").unwrap_err().to_string();
        assert!(e.starts_with("images/x.toml:1:"), "{e}");
    }

    #[test]
    fn reads_cargo_metadata_with_cargo_toml_locations() {
        let tmp = tempfile::tempdir().unwrap();
        let manifest = tmp.path().join("Cargo.toml");
        let head = "[package]\nname = \"svc\"\nversion = \"1.0.0\"\n\n";
        std::fs::write(&manifest, head).unwrap();
        assert!(
            ImageSpec::load_cargo_metadata(&manifest, "svc", SourcePolicy::Confined)
                .unwrap()
                .is_none()
        );
        let meta = "[package.metadata.ironstar]\ntags = [\"v1\"]\nplatforms = [\"linux/arm64\"]\nrootfs = [\"tmp\"]\n";
        std::fs::write(&manifest, format!("{head}{meta}")).unwrap();
        let s = ImageSpec::load_cargo_metadata(&manifest, "svc", SourcePolicy::Confined)
            .unwrap()
            .unwrap();
        assert_eq!(
            (s.name.as_str(), s.tags.as_slice()),
            ("svc", &["v1".to_string()][..])
        );
        assert_eq!(s.platforms[0].to_string(), "linux/arm64");
        assert_eq!(s.rootfs, [RootfsItem::Tmp]);
        std::fs::write(&manifest, format!("{head}{meta}\nplatform = 1\n")).unwrap();
        let e = ImageSpec::load_cargo_metadata(&manifest, "svc", SourcePolicy::Confined)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with(&format!("{}:10:1:", manifest.display())),
            "{e}"
        );
    }

    #[test]
    fn binary_flags() {
        let (p, path) = parse_binary_flag("linux/arm64=target/app").unwrap();
        assert_eq!(p.architecture, "arm64");
        assert_eq!(path, Path::new("target/app"));
        assert!(parse_binary_flag("linux/arm64").is_err());
        assert!(parse_binary_flag("linux/sparc=x")
            .unwrap_err()
            .contains("unknown platform"));
    }
}
