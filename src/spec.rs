//! The image definition file (`images/*.toml`): what goes in an image besides the binaries, and
//! where each platform's binary comes from. Errors name the file and the line.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::path::{Component, Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use crate::platform::{Platform, DEFAULT_PLATFORMS};

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

/// A path inside the image: absolute, normalised, no `..`. Stored without the leading `/`, as tar
/// entries are named.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ImagePath(String);

impl ImagePath {
    pub fn parse(s: &str) -> std::result::Result<Self, String> {
        if s.is_empty() {
            return Err("an image path cannot be empty".into());
        }
        if s.contains('\0') || s.contains('\\') {
            return Err(format!("image path `{s}` has a NUL or backslash"));
        }
        let mut parts = Vec::new();
        for c in Path::new(s).components() {
            match c {
                Component::RootDir | Component::CurDir => {}
                Component::Normal(p) => parts.push(p.to_string_lossy().into_owned()),
                Component::ParentDir => {
                    return Err(format!(
                        "image path `{s}` contains `..`; give a path without it"
                    ))
                }
                Component::Prefix(_) => return Err(format!("image path `{s}` is not a Unix path")),
            }
        }
        if parts.is_empty() {
            return Err(format!("image path `{s}` names the root directory"));
        }
        Ok(ImagePath(parts.join("/")))
    }

    /// Without the leading slash: `etc/passwd`.
    pub fn relative(&self) -> &str {
        &self.0
    }

    /// Every ancestor directory, outermost first: `etc`, `etc/ssl`.
    pub fn ancestors(&self) -> impl Iterator<Item = ImagePath> + '_ {
        self.0
            .match_indices('/')
            .map(|(i, _)| ImagePath(self.0[..i].to_string()))
    }
}

impl fmt::Display for ImagePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "/{}", self.0)
    }
}

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
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSpec {
    name: Option<Spanned<String>>,
    repository: Option<Spanned<String>>,
    tags: Option<Vec<Spanned<String>>>,
    version: Option<String>,
    platforms: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    binaries: BTreeMap<Spanned<String>, String>,
    binary_path: Option<Spanned<String>>,
    entrypoint: Option<Vec<String>>,
    cmd: Option<Vec<String>>,
    #[serde(default)]
    env: BTreeMap<Spanned<String>, String>,
    user: Option<String>,
    workdir: Option<Spanned<String>>,
    #[serde(default)]
    exposed_ports: Vec<Spanned<String>>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
    stop_signal: Option<String>,
    #[serde(default)]
    files: Vec<RawFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    source: Option<Spanned<String>>,
    path: Spanned<String>,
    mode: Option<Spanned<i64>>,
}

impl ImageSpec {
    /// Read and check the definition at `path`.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| SpecError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(path, &text)
    }

    /// Parse a definition; `path` names it in errors and anchors its relative paths.
    pub fn parse(path: &Path, text: &str) -> Result<Self> {
        let raw: RawSpec = toml::from_str(text).map_err(|e| SpecError::Invalid {
            at: location(path, text, e.span()),
            message: e.message().trim().to_string(),
        })?;
        Self::from_raw(path, text, raw, None)
    }

    /// The definition under `[package.metadata.ironstar]` of the Cargo.toml at `path`, if any,
    /// with the same keys as a definition file; `name` defaults to `package`. Errors name
    /// Cargo.toml with line and column.
    pub fn load_cargo_metadata(path: &Path, package: &str) -> Result<Option<Self>> {
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
            ironstar: Option<RawSpec>,
        }
        let text = std::fs::read_to_string(path).map_err(|source| SpecError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let manifest: Manifest = toml::from_str(&text).map_err(|e| SpecError::Invalid {
            at: location(path, &text, e.span()),
            message: e.message().trim().to_string(),
        })?;
        let raw = manifest.package.and_then(|p| p.metadata?.ironstar);
        raw.map(|raw| Self::from_raw(path, &text, raw, Some(package)))
            .transpose()
    }

    /// Check and resolve a parsed definition; `text` is what `path` holds, for error locations.
    fn from_raw(path: &Path, text: &str, raw: RawSpec, default_name: Option<&str>) -> Result<Self> {
        let at = |span: Option<Range<usize>>| location(path, text, span);
        let invalid = |span: Option<Range<usize>>, message: String| SpecError::Invalid {
            at: at(span),
            message,
        };
        let base = path.parent().unwrap_or(Path::new("")).to_path_buf();
        let resolve = |p: &str| {
            if p.is_empty() {
                PathBuf::new()
            } else {
                base.join(p)
            }
        };

        let name = match raw.name {
            Some(n) => {
                check_name(n.get_ref()).map_err(|m| invalid(Some(n.span()), m))?;
                n.into_inner()
            }
            None => match default_name {
                Some(n) => n.to_string(),
                None => return Err(invalid(Some(0..0), "missing `name = \"…\"`".into())),
            },
        };
        let tags = match raw.tags {
            Some(tags) if tags.is_empty() => {
                return Err(invalid(
                    Some(0..0),
                    "`tags` is empty; omit it for `latest`".into(),
                ))
            }
            Some(tags) => tags
                .into_iter()
                .map(|t| {
                    check_tag(t.get_ref()).map_err(|m| invalid(Some(t.span()), m))?;
                    Ok(t.into_inner())
                })
                .collect::<Result<Vec<_>>>()?,
            None => vec!["latest".to_string()],
        };

        let mut binaries = BTreeMap::new();
        let mut platforms = Vec::new();
        for (key, file) in raw.binaries {
            let p = Platform::parse(key.get_ref())
                .map_err(|e| invalid(Some(key.span()), e.to_string()))?;
            binaries.insert(p.to_string(), resolve(&file));
            platforms.push(p);
        }
        if let Some(list) = raw.platforms {
            platforms = list
                .iter()
                .map(|s| {
                    Platform::parse(s.get_ref()).map_err(|e| invalid(Some(s.span()), e.to_string()))
                })
                .collect::<Result<_>>()?;
            if let Some(extra) = binaries
                .keys()
                .find(|k| !platforms.iter().any(|p| &p.to_string() == *k))
            {
                return Err(invalid(
                    Some(0..0),
                    format!("`binaries` names {extra}, which `platforms` does not list"),
                ));
            }
        }
        let platforms_explicit = !platforms.is_empty();
        if platforms.is_empty() {
            platforms = DEFAULT_PLATFORMS
                .iter()
                .map(|s| Platform::parse(s).expect("default platform"))
                .collect();
        }
        platforms.sort_by_key(|p| crate::platform::PLATFORMS.iter().position(|q| q == *p));
        platforms.dedup();

        let binary_path = raw
            .binary_path
            .map(|s| ImagePath::parse(s.get_ref()).map_err(|m| invalid(Some(s.span()), m)))
            .transpose()?;
        let mut env = BTreeMap::new();
        for (k, v) in raw.env {
            if k.get_ref().is_empty() || k.get_ref().contains('=') {
                return Err(invalid(
                    Some(k.span()),
                    format!("bad environment variable name `{}`", k.get_ref()),
                ));
            }
            env.insert(k.into_inner(), v);
        }
        let mut exposed_ports = Vec::new();
        for p in raw.exposed_ports {
            check_port(p.get_ref()).map_err(|m| invalid(Some(p.span()), m))?;
            exposed_ports.push(p.into_inner());
        }
        exposed_ports.sort();
        exposed_ports.dedup();
        let workdir = match raw.workdir {
            Some(w) if !w.get_ref().starts_with('/') => {
                return Err(invalid(
                    Some(w.span()),
                    "`workdir` must be an absolute path".into(),
                ))
            }
            w => w.map(Spanned::into_inner),
        };

        let mut files: Vec<ExtraFile> = Vec::new();
        for f in raw.files {
            let path =
                ImagePath::parse(f.path.get_ref()).map_err(|m| invalid(Some(f.path.span()), m))?;
            if files.iter().any(|g| g.path == path) {
                return Err(invalid(
                    Some(f.path.span()),
                    format!("{path} is listed twice"),
                ));
            }
            let default_mode = if f.source.is_some() { 0o644 } else { 0o755 };
            let mode = match f.mode {
                Some(m) if !(0..=0o7777).contains(m.get_ref()) => {
                    return Err(invalid(
                        Some(m.span()),
                        format!("mode {:o} is out of range; write it as 0o644", m.get_ref()),
                    ))
                }
                Some(m) => *m.get_ref() as u32,
                None => default_mode,
            };
            let source = match f.source {
                Some(s) => {
                    let p = resolve(s.get_ref());
                    if !p.is_file() {
                        return Err(invalid(
                            Some(s.span()),
                            format!("source {} is not a readable file", p.display()),
                        ));
                    }
                    Some(p)
                }
                None => None,
            };
            files.push(ExtraFile { source, path, mode });
        }
        files.sort_by(|a, b| a.path.cmp(&b.path));

        Ok(ImageSpec {
            name,
            repository: raw.repository.map(Spanned::into_inner),
            tags,
            version: raw.version,
            platforms,
            platforms_explicit,
            binaries,
            binary_path,
            config: RunConfig {
                entrypoint: raw.entrypoint,
                cmd: raw.cmd,
                env,
                user: raw.user,
                workdir,
                exposed_ports,
                labels: raw.labels,
                stop_signal: raw.stop_signal,
            },
            annotations: raw.annotations,
            files,
        })
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
            .filter(|n| check_name(n).is_ok())
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

fn location(file: &Path, text: &str, span: Option<Range<usize>>) -> Location {
    let start = span.map(|s| s.start).unwrap_or(0).min(text.len());
    let before = &text[..start];
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map(|i| i + 1).unwrap_or(0) + 1;
    Location {
        file: file.to_path_buf(),
        line,
        column,
    }
}

/// Repository path component rules of the distribution spec, for the image name.
fn check_name(n: &str) -> std::result::Result<(), String> {
    let ok = !n.is_empty()
        && n.len() <= 128
        && n.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
        && n.as_bytes()[0].is_ascii_alphanumeric();
    if ok {
        Ok(())
    } else {
        Err(format!("name `{n}` must be lowercase letters, digits, `.`, `_` or `-`, starting with a letter or digit"))
    }
}

/// Tag grammar of the distribution spec: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
pub fn check_tag(t: &str) -> std::result::Result<(), String> {
    crate::registry::Tag::parse(t).map(drop)
}

fn check_port(p: &str) -> std::result::Result<(), String> {
    let (num, proto) = p.split_once('/').unwrap_or((p, "tcp"));
    match (num.parse::<u16>(), proto) {
        (Ok(n), "tcp" | "udp" | "sctp") if n > 0 => Ok(()),
        _ => Err(format!(
            "exposed port `{p}` must look like 8080/tcp or 53/udp"
        )),
    }
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
        assert!(ImageSpec::load_cargo_metadata(&manifest, "svc")
            .unwrap()
            .is_none());
        let meta = "[package.metadata.ironstar]\ntags = [\"v1\"]\nplatforms = [\"linux/arm64\"]\n";
        std::fs::write(&manifest, format!("{head}{meta}")).unwrap();
        let s = ImageSpec::load_cargo_metadata(&manifest, "svc")
            .unwrap()
            .unwrap();
        assert_eq!(
            (s.name.as_str(), s.tags.as_slice()),
            ("svc", &["v1".to_string()][..])
        );
        assert_eq!(s.platforms[0].to_string(), "linux/arm64");
        std::fs::write(&manifest, format!("{head}{meta}\nplatform = 1\n")).unwrap();
        let e = ImageSpec::load_cargo_metadata(&manifest, "svc")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with(&format!("{}:9:1:", manifest.display())),
            "{e}"
        );
    }

    #[test]
    fn image_paths() {
        assert_eq!(
            ImagePath::parse("/etc/ssl/certs/ca.crt")
                .unwrap()
                .relative(),
            "etc/ssl/certs/ca.crt"
        );
        let a: Vec<_> = ImagePath::parse("/etc/ssl/x")
            .unwrap()
            .ancestors()
            .map(|p| p.to_string())
            .collect();
        assert_eq!(a, ["/etc", "/etc/ssl"]);
        assert!(ImagePath::parse("/").is_err());
        assert!(ImagePath::parse("a/../../b").is_err());
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
