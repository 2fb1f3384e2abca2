//! The definition file's format: the TOML keys, read with their spans so that every error names
//! the file, line and column, and checked into an [`ImageSpec`].

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use super::confine::{Roots, SourcePolicy};
use super::{ExtraFile, ImagePath, ImageSpec, Location, RootfsItem, RunConfig, SpecError};
use crate::platform::{Platform, DEFAULT_PLATFORMS};

type Result<T, E = SpecError> = std::result::Result<T, E>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSpec {
    name: Option<Spanned<String>>,
    repository: Option<Spanned<String>>,
    tags: Option<Vec<Spanned<String>>>,
    version: Option<Spanned<String>>,
    platforms: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    binaries: BTreeMap<Spanned<String>, String>,
    binary_path: Option<Spanned<String>>,
    entrypoint: Option<Vec<Spanned<String>>>,
    cmd: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    env: BTreeMap<Spanned<String>, Spanned<String>>,
    user: Option<Spanned<String>>,
    workdir: Option<Spanned<String>>,
    #[serde(default)]
    exposed_ports: Vec<Spanned<String>>,
    #[serde(default)]
    labels: BTreeMap<Spanned<String>, Spanned<String>>,
    #[serde(default)]
    annotations: BTreeMap<Spanned<String>, Spanned<String>>,
    stop_signal: Option<Spanned<String>>,
    #[serde(default)]
    files: Vec<RawFile>,
    bin: Option<Spanned<String>>,
    rootfs: Option<Vec<Spanned<String>>>,
    base: Option<Spanned<String>>,
    compression: Option<Spanned<String>>,
    allocator: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    source: Option<Spanned<String>>,
    path: Spanned<String>,
    mode: Option<Spanned<i64>>,
}

/// One definition's text, for error locations and relative paths.
pub(super) struct Source<'a> {
    pub path: &'a Path,
    pub text: &'a str,
    sources: SourcePolicy,
    /// Where confined sources may resolve; found at the first source.
    roots: std::cell::OnceCell<Roots>,
}

impl<'a> Source<'a> {
    pub fn new(path: &'a Path, text: &'a str, sources: SourcePolicy) -> Self {
        Source {
            path,
            text,
            sources,
            roots: Default::default(),
        }
    }

    pub fn location(&self, span: Option<Range<usize>>) -> Location {
        location(self.path, self.text, span)
    }

    fn invalid(&self, span: Option<Range<usize>>, message: String) -> SpecError {
        SpecError::Invalid {
            at: self.location(span),
            message,
        }
    }

    /// A path of the file, relative to the file's directory.
    fn resolve(&self, p: &str) -> PathBuf {
        match p.is_empty() {
            true => PathBuf::new(),
            false => self.path.parent().unwrap_or(Path::new("")).join(p),
        }
    }

    /// Check and resolve a parsed definition; `default_name` stands in for a missing `name`.
    pub fn spec(&self, raw: RawSpec, default_name: Option<&str>) -> Result<ImageSpec> {
        let name = self.name(raw.name, default_name)?;
        let tags = self.tags(raw.tags)?;
        let (platforms, platforms_explicit, binaries) =
            self.platforms(raw.platforms, raw.binaries)?;
        let binary_path = raw
            .binary_path
            .map(|s| ImagePath::parse(s.get_ref()).map_err(|m| self.invalid(Some(s.span()), m)))
            .transpose()?;
        let config = RunConfig {
            entrypoint: raw.entrypoint.map(|v| self.texts(v)).transpose()?,
            cmd: raw.cmd.map(|v| self.texts(v)).transpose()?,
            env: self.env(raw.env)?,
            user: raw.user.map(|s| self.text(s)).transpose()?,
            workdir: self.workdir(raw.workdir)?,
            exposed_ports: self.ports(raw.exposed_ports)?,
            labels: self.pairs(raw.labels)?,
            stop_signal: raw.stop_signal.map(|s| self.text(s)).transpose()?,
        };
        Ok(ImageSpec {
            name,
            repository: raw.repository.map(|s| self.repository(s)).transpose()?,
            tags,
            version: raw.version.map(|s| self.text(s)).transpose()?,
            platforms,
            platforms_explicit,
            binaries,
            binary_path,
            config,
            annotations: self.pairs(raw.annotations)?,
            files: self.files(raw.files)?,
            bin: self.bin(raw.bin)?,
            rootfs: self.rootfs(raw.rootfs.unwrap_or_default())?,
            base: self.base(raw.base)?,
            compression: self.compression(raw.compression)?,
            allocator: raw
                .allocator
                .map(|s| {
                    s.get_ref()
                        .parse()
                        .map_err(|m| self.invalid(Some(s.span()), m))
                })
                .transpose()?,
        })
    }

    /// `repository = "REGISTRY/REPO"`, with no tag or digest: the tags are `tags`, one rule for
    /// a push of this image alone and of several (a tag here was one more tag of the one, and
    /// the only tag of the other).
    fn repository(&self, raw: Spanned<String>) -> Result<String> {
        let span = raw.span();
        let text = self.text(raw)?;
        if let Ok(r) = crate::oci::Reference::parse(&text) {
            if r.tag.is_some() || r.digest.is_some() {
                let message = format!(
                    "repository `{text}` carries a tag or digest; write `repository = \"{}\"` and \
                     put the tag in `tags`",
                    r.repository
                );
                return Err(self.invalid(Some(span), message));
            }
        }
        Ok(text)
    }

    /// `compression = "gzip" | "zstd"`; default gzip.
    fn compression(&self, raw: Option<Spanned<String>>) -> Result<crate::compress::Algorithm> {
        raw.map(|s| {
            s.get_ref()
                .parse()
                .map_err(|m| self.invalid(Some(s.span()), m))
        })
        .transpose()
        .map(Option::unwrap_or_default)
    }

    /// `rootfs = ["ca-certificates", …]`: known items, in their canonical order.
    fn rootfs(&self, raw: Vec<Spanned<String>>) -> Result<Vec<RootfsItem>> {
        let items = raw
            .iter()
            .map(|s| RootfsItem::parse(s.get_ref()).map_err(|m| self.invalid(Some(s.span()), m)))
            .collect::<Result<Vec<_>>>()?;
        Ok(RootfsItem::normalise(items))
    }

    /// `base = "REGISTRY/REPO[:TAG][@sha256:…]"`.
    fn base(&self, raw: Option<Spanned<String>>) -> Result<Option<crate::oci::Reference>> {
        raw.map(|s| {
            crate::oci::Reference::parse(s.get_ref()).map_err(|e| {
                self.invalid(
                    Some(s.span()),
                    format!("base: {e}; write it as REGISTRY/REPO[:TAG][@sha256:…]"),
                )
            })
        })
        .transpose()
    }

    fn name(&self, name: Option<Spanned<String>>, default: Option<&str>) -> Result<String> {
        match (name, default) {
            (Some(n), _) => {
                check_name(n.get_ref()).map_err(|m| self.invalid(Some(n.span()), m))?;
                Ok(n.into_inner())
            }
            (None, Some(n)) => Ok(n.to_string()),
            (None, None) => Err(self.invalid(Some(0..0), "missing `name = \"…\"`".into())),
        }
    }

    fn tags(&self, tags: Option<Vec<Spanned<String>>>) -> Result<Vec<String>> {
        match tags {
            Some(tags) if tags.is_empty() => {
                Err(self.invalid(Some(0..0), "`tags` is empty; omit it for `latest`".into()))
            }
            Some(tags) => tags
                .into_iter()
                .map(|t| {
                    check_tag(t.get_ref()).map_err(|m| self.invalid(Some(t.span()), m))?;
                    Ok(t.into_inner())
                })
                .collect(),
            None => Ok(vec!["latest".to_string()]),
        }
    }

    /// The platforms, in table order, whether the file chose them, and their binaries.
    #[allow(clippy::type_complexity)]
    fn platforms(
        &self,
        listed: Option<Vec<Spanned<String>>>,
        raw_binaries: BTreeMap<Spanned<String>, String>,
    ) -> Result<(Vec<&'static Platform>, bool, BTreeMap<String, PathBuf>)> {
        let parse = |s: &Spanned<String>| {
            Platform::parse(s.get_ref()).map_err(|e| self.invalid(Some(s.span()), e.to_string()))
        };
        let mut binaries = BTreeMap::new();
        let mut platforms = Vec::new();
        for (key, file) in &raw_binaries {
            let p = parse(key)?;
            binaries.insert(p.to_string(), self.resolve(file));
            platforms.push(p);
        }
        if let Some(list) = listed {
            platforms = list.iter().map(parse).collect::<Result<_>>()?;
            if let Some(extra) = binaries
                .keys()
                .find(|k| !platforms.iter().any(|p| &p.to_string() == *k))
            {
                return Err(self.invalid(
                    Some(0..0),
                    format!("`binaries` names {extra}, which `platforms` does not list"),
                ));
            }
        }
        let explicit = !platforms.is_empty();
        if platforms.is_empty() {
            platforms = DEFAULT_PLATFORMS
                .iter()
                .map(|s| Platform::parse(s).expect("default platform"))
                .collect();
        }
        platforms.sort_by_key(|p| crate::platform::PLATFORMS.iter().position(|q| q == *p));
        platforms.dedup();
        Ok((platforms, explicit, binaries))
    }

    /// A string that goes into the image config or index: no NUL, which the runtime's C
    /// strings (argv, environ, labels) would cut or refuse.
    fn text(&self, s: Spanned<String>) -> Result<String> {
        match s.get_ref().find('\0') {
            Some(at) => Err(self.invalid(
                Some(s.span()),
                format!(
                    "`{}` contains a NUL byte (at byte {at}), which no process argument, \
                     environment variable or label can hold; remove it",
                    s.get_ref().escape_default()
                ),
            )),
            None => Ok(s.into_inner()),
        }
    }

    fn texts(&self, v: Vec<Spanned<String>>) -> Result<Vec<String>> {
        v.into_iter().map(|s| self.text(s)).collect()
    }

    /// Labels and annotations: keys and values checked alike.
    fn pairs(
        &self,
        raw: BTreeMap<Spanned<String>, Spanned<String>>,
    ) -> Result<BTreeMap<String, String>> {
        raw.into_iter()
            .map(|(k, v)| Ok((self.text(k)?, self.text(v)?)))
            .collect()
    }

    fn env(
        &self,
        raw: BTreeMap<Spanned<String>, Spanned<String>>,
    ) -> Result<BTreeMap<String, String>> {
        let mut env = BTreeMap::new();
        for (k, v) in raw {
            if k.get_ref().is_empty() || k.get_ref().contains('=') {
                return Err(self.invalid(
                    Some(k.span()),
                    format!("bad environment variable name `{}`", k.get_ref()),
                ));
            }
            env.insert(self.text(k)?, self.text(v)?);
        }
        Ok(env)
    }

    fn ports(&self, raw: Vec<Spanned<String>>) -> Result<Vec<String>> {
        let mut ports = Vec::new();
        for p in raw {
            check_port(p.get_ref()).map_err(|m| self.invalid(Some(p.span()), m))?;
            ports.push(p.into_inner());
        }
        ports.sort();
        ports.dedup();
        Ok(ports)
    }

    /// `bin`: a cargo target name (letters, digits, `-`, `_`).
    fn bin(&self, raw: Option<Spanned<String>>) -> Result<Option<String>> {
        match raw {
            Some(b)
                if b.get_ref().is_empty()
                    || !b
                        .get_ref()
                        .bytes()
                        .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_') =>
            {
                Err(self.invalid(
                    Some(b.span()),
                    format!(
                        "`bin = \"{}\"` is not a cargo binary target's name",
                        b.get_ref()
                    ),
                ))
            }
            b => Ok(b.map(Spanned::into_inner)),
        }
    }

    fn workdir(&self, raw: Option<Spanned<String>>) -> Result<Option<String>> {
        match raw {
            Some(w) if !w.get_ref().starts_with('/') => {
                Err(self.invalid(Some(w.span()), "`workdir` must be an absolute path".into()))
            }
            w => w.map(|w| self.text(w)).transpose(),
        }
    }

    /// `[[files]]`, sorted by image path; each path at most once.
    fn files(&self, raw: Vec<RawFile>) -> Result<Vec<ExtraFile>> {
        let mut files: Vec<ExtraFile> = Vec::new();
        for f in raw {
            let path = ImagePath::parse(f.path.get_ref())
                .map_err(|m| self.invalid(Some(f.path.span()), m))?;
            if files.iter().any(|g| g.path == path) {
                return Err(self.invalid(Some(f.path.span()), format!("{path} is listed twice")));
            }
            let mode = match f.mode {
                Some(m) if !(0..=0o7777).contains(m.get_ref()) => {
                    return Err(self.invalid(
                        Some(m.span()),
                        format!("mode {:o} is out of range; write it as 0o644", m.get_ref()),
                    ))
                }
                Some(m) => *m.get_ref() as u32,
                None if f.source.is_some() => 0o644,
                None => 0o755,
            };
            let source = f.source.map(|s| self.source_file(&s)).transpose()?;
            files.push(ExtraFile { source, path, mode });
        }
        files.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(files)
    }

    /// A `files[].source`: a readable file, relative to the definition, resolved through its
    /// symlinks; confined (see [`super::confine`]) unless the policy says otherwise.
    fn source_file(&self, s: &Spanned<String>) -> Result<PathBuf> {
        let p = self.resolve(s.get_ref());
        let real = match p.canonicalize() {
            Ok(real) if real.is_file() => real,
            _ => {
                return Err(self.invalid(
                    Some(s.span()),
                    format!("source {} is not a readable file", p.display()),
                ))
            }
        };
        if self.sources == SourcePolicy::Confined {
            let roots = self.roots.get_or_init(|| Roots::around(self.path));
            if !roots.admit(&real) {
                return Err(self.invalid(
                    Some(s.span()),
                    format!(
                        "source {} resolves to {}, which is not inside the definition's \
                         directory, workspace or repository ({}; .git excluded): move it \
                         there, or pass --allow-outside-sources to build from it",
                        p.display(),
                        real.display(),
                        roots.describe()
                    ),
                ));
            }
        }
        Ok(real)
    }
}

pub(super) fn location(file: &Path, text: &str, span: Option<Range<usize>>) -> Location {
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
pub(super) fn check_name(n: &str) -> std::result::Result<(), String> {
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
    crate::oci::Tag::parse(t).map(drop)
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
