//! Image references, parsed as the distribution grammar (`distribution/reference`) says, with
//! Docker Hub's normalisation: `alpine` is `docker.io/library/alpine`, served by
//! `registry-1.docker.io`.
//!
//! ```text
//! reference      := name [ ":" tag ] [ "@" digest ]
//! name           := [ domain "/" ] path-component ( "/" path-component )*
//! domain         := host [ ":" port ]          host := dns-name | IPv4 | "[" IPv6 "]"
//! path-component := [a-z0-9]+ ( ( "." | "_" | "__" | "-"+ ) [a-z0-9]+ )*
//! tag            := [A-Za-z0-9_] [A-Za-z0-9_.-]{0,127}
//! ```
//! The first component is a domain only when it holds a `.` or a `:`, is `localhost`, or starts
//! with `[` (docker's rule; an uppercase first component is refused as a path instead).

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};

use crate::digest::Digest;

pub const DOCKER_HUB: &str = "docker.io";
pub const DOCKER_HUB_API: &str = "registry-1.docker.io";
const MAX_NAME_LEN: usize = 255;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid image reference `{input}`: {reason}")]
pub struct ReferenceError {
    pub input: String,
    pub reason: String,
}

/// A repository of a registry, without tag or digest: where images are pushed. A reference
/// (which may carry a tag) where a repository belongs does not compile:
///
/// ```compile_fail
/// use ironstar::registry::{Reference, Repository};
/// let r: Repository = Reference::parse("ghcr.io/org/app:v1").unwrap();
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Repository {
    /// The registry as users name it (`docker.io`, `ghcr.io`, `localhost:5000`, `[::1]:5000`).
    pub registry: String,
    /// The repository path (`library/alpine`, `org/app`).
    pub path: String,
}

/// A tag, checked against the distribution grammar.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tag(String);

/// A parsed, normalised reference: a repository, and a tag or digest or both.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    pub repository: Repository,
    pub tag: Option<Tag>,
    pub digest: Option<Digest>,
}

fn reference_error(input: &str, reason: &str) -> ReferenceError {
    ReferenceError {
        input: input.chars().take(300).collect(),
        reason: reason.to_string(),
    }
}

impl Reference {
    pub fn parse(input: &str) -> Result<Self, ReferenceError> {
        let err = |reason: &str| reference_error(input, reason);
        if input.is_empty() {
            return Err(err("it is empty"));
        }
        if input.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(err("it contains whitespace"));
        }
        let (rest, digest) = match input.split_once('@') {
            Some((r, d)) => (
                r,
                Some(Digest::parse(d).map_err(|_| err("the digest is not sha256: + 64 hex"))?),
            ),
            None => (input, None),
        };
        // A tag follows the last `:` that comes after the last `/` (a `:` before it is a port).
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => {
                let i = last_slash + i;
                (
                    &rest[..i],
                    Some(Tag::parse(&rest[i + 1..]).map_err(|r| err(&r))?),
                )
            }
            None => (rest, None),
        };
        let (registry, path) = split_domain(name).map_err(|r| err(&r))?;
        let registry = match registry {
            None => DOCKER_HUB,
            Some(r) if is_docker_hub(r) => DOCKER_HUB,
            Some(r) => r,
        };
        let repository = Repository::new(registry, path).map_err(|r| err(&r))?;
        Ok(Reference {
            repository,
            tag,
            digest,
        })
    }
}

impl Repository {
    /// `REGISTRY/PATH` with neither tag nor digest: a reference carrying either is refused, so
    /// that neither is silently dropped.
    pub fn parse(input: &str) -> Result<Self, ReferenceError> {
        let r = Reference::parse(input)?;
        if r.tag.is_some() || r.digest.is_some() {
            return Err(reference_error(
                input,
                "a repository takes neither a tag nor a digest (tags are given apart)",
            ));
        }
        Ok(r.repository)
    }

    fn new(registry: &str, path: &str) -> Result<Self, String> {
        if path.is_empty() {
            return Err("the repository name is empty".into());
        }
        for component in path.split('/') {
            check_component(component)?;
        }
        let path = if registry == DOCKER_HUB {
            hub_path(path)
        } else {
            path.to_string()
        };
        if registry.len() + 1 + path.len() > MAX_NAME_LEN {
            return Err("the name is longer than 255 characters".into());
        }
        Ok(Repository {
            registry: registry.to_string(),
            path,
        })
    }

    /// Another repository of the same registry, named by its path alone (`org/base`). A name
    /// with a registry host is refused: a blob can only be mounted within one registry.
    pub fn sibling(&self, path: &str) -> Result<Repository, ReferenceError> {
        let err = |reason: &str| reference_error(path, reason);
        if path.contains(['@']) || path.rsplit('/').next().is_some_and(|l| l.contains(':')) {
            return Err(err("a repository path takes neither a tag nor a digest"));
        }
        match split_domain(path).map_err(|r| err(&r))? {
            (Some(host), _) => Err(err(&format!(
                "names the registry `{host}`; give a repository of {} by its path alone (e.g. org/app)",
                self.registry
            ))),
            (None, p) => Repository::new(&self.registry, p).map_err(|r| err(&r)),
        }
    }

    /// The host (and port) the registry API is served on.
    pub fn api_host(&self) -> &str {
        if self.registry == DOCKER_HUB {
            DOCKER_HUB_API
        } else {
            &self.registry
        }
    }

    /// The host without port or brackets, for loopback checks.
    pub fn host_only(&self) -> &str {
        host_without_port(self.api_host())
    }

    /// The key credential stores use for this registry (`https://index.docker.io/v1/` for Hub).
    pub fn credential_key(&self) -> String {
        if self.registry == DOCKER_HUB {
            "https://index.docker.io/v1/".to_string()
        } else {
            self.registry.clone()
        }
    }
}

impl fmt::Display for Repository {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.path)
    }
}

impl Tag {
    /// `latest`: what a reference without tag or digest names.
    pub fn latest() -> &'static Tag {
        static LATEST: std::sync::LazyLock<Tag> =
            std::sync::LazyLock::new(|| Tag("latest".to_string()));
        &LATEST
    }

    /// Check `t` against `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
    pub fn parse(t: &str) -> Result<Tag, String> {
        let b = t.as_bytes();
        let word = |x: u8| x.is_ascii_alphanumeric() || x == b'_';
        if b.is_empty()
            || b.len() > 128
            || !word(b[0])
            || !b.iter().all(|&x| word(x) || x == b'.' || x == b'-')
        {
            return Err(format!(
                "`{t}` is not a valid tag (letters, digits, `_`, `.`, `-`; at most 128; not starting with `.` or `-`)"
            ));
        }
        Ok(Tag(t.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for Tag {
    type Err = String;
    fn from_str(s: &str) -> Result<Tag, String> {
        Tag::parse(s)
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

fn is_docker_hub(registry: &str) -> bool {
    matches!(
        registry,
        "docker.io" | "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com"
    )
}

fn hub_path(path: &str) -> String {
    if path.contains('/') {
        path.to_string()
    } else {
        format!("library/{path}")
    }
}

/// `host[:port]` → `host`, `[v6]:port` → `v6`.
pub fn host_without_port(hostport: &str) -> &str {
    if let Some(rest) = hostport.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    hostport.split(':').next().unwrap_or(hostport)
}

/// Whether `host` (no port) is a loopback name or address.
pub fn is_loopback(host: &str) -> bool {
    if host.eq_ignore_ascii_case("localhost") || host.to_ascii_lowercase().ends_with(".localhost") {
        return true;
    }
    host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn split_domain(name: &str) -> Result<(Option<&str>, &str), String> {
    let Some(i) = name.find('/') else {
        if name.starts_with('[') || name.contains(':') {
            return Err("a registry needs a repository after it (REGISTRY/REPO)".into());
        }
        return Ok((None, name));
    };
    let first = &name[..i];
    let is_domain = first.contains('.')
        || first.contains(':')
        || first == "localhost"
        || first.starts_with('[');
    if !is_domain {
        return Ok((None, name));
    }
    check_domain(first)?;
    Ok((Some(first), &name[i + 1..]))
}

fn check_domain(domain: &str) -> Result<(), String> {
    let (host, port) = if let Some(rest) = domain.strip_prefix('[') {
        let (v6, after) = rest
            .split_once(']')
            .ok_or("an IPv6 registry address needs its closing `]`")?;
        v6.parse::<Ipv6Addr>()
            .map_err(|_| format!("`{v6}` is not an IPv6 address"))?;
        match after {
            "" => (None, None),
            p => (
                None,
                Some(
                    p.strip_prefix(':')
                        .ok_or("after `]` only `:PORT` may follow")?,
                ),
            ),
        }
    } else {
        match domain.split_once(':') {
            Some((h, p)) => (Some(h), Some(p)),
            None => (Some(domain), None),
        }
    };
    if let Some(h) = host {
        let ok = !h.is_empty()
            && h.split('.').all(|label| {
                !label.is_empty()
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                    && !label.starts_with('-')
                    && !label.ends_with('-')
            });
        if !ok {
            return Err(format!("`{h}` is not a valid registry host"));
        }
    }
    if let Some(p) = port {
        if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) || p.parse::<u16>().is_err() {
            return Err(format!("`{p}` is not a valid port"));
        }
    }
    Ok(())
}

fn check_component(c: &str) -> Result<(), String> {
    let bad = || {
        if c.bytes().any(|b| b.is_ascii_uppercase()) {
            format!("repository name component `{c}` must be lowercase")
        } else {
            format!("`{c}` is not a valid repository name component (lowercase letters, digits, separators `.`, `_`, `__`, `-`)")
        }
    };
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return Err(bad());
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        // A separator run: `.`, `_`, `__`, or one or more `-`.
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = matches!(sep, "." | "_" | "__") || sep.bytes().all(|x| x == b'-');
        if !ok {
            return Err(bad());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Reference {
        Reference::parse(s).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn docker_hub_normalisation() {
        let r = p("alpine");
        assert_eq!(r.repository.registry, "docker.io");
        assert_eq!(r.repository.path, "library/alpine");
        assert_eq!(r.repository.api_host(), "registry-1.docker.io");
        assert_eq!(r.to_string(), "docker.io/library/alpine");
        assert_eq!(p("user/app:1.0").repository.path, "user/app");
        assert_eq!(p("user/app:1.0").tag.as_ref().map(Tag::as_str), Some("1.0"));
        assert_eq!(
            p("index.docker.io/alpine").repository.path,
            "library/alpine"
        );
        assert_eq!(
            p("docker.io/library/alpine").repository.registry,
            "docker.io"
        );
        assert_eq!(
            p("docker.io/alpine").repository.credential_key(),
            "https://index.docker.io/v1/"
        );
    }

    #[test]
    fn registries_ports_and_ipv6() {
        let r = p("ghcr.io/org/app:v1");
        assert_eq!(
            (r.repository.registry.as_str(), r.repository.path.as_str()),
            ("ghcr.io", "org/app")
        );
        let r = p("localhost:5000/app");
        assert_eq!(r.repository.registry, "localhost:5000");
        assert_eq!(r.repository.host_only(), "localhost");
        assert_eq!(r.tag, None);
        let r = p("localhost/app:tag");
        assert_eq!(r.repository.registry, "localhost");
        let r = p("127.0.0.1:5000/a/b/c:t@sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
        assert_eq!(r.repository.registry, "127.0.0.1:5000");
        assert_eq!(r.repository.path, "a/b/c");
        assert_eq!(r.tag.as_ref().map(Tag::as_str), Some("t"));
        assert!(r.digest.is_some());
        let r = p("[::1]:5000/app:v2");
        assert_eq!(r.repository.registry, "[::1]:5000");
        assert_eq!(r.repository.host_only(), "::1");
        assert!(is_loopback(r.repository.host_only()));
        assert_eq!(p("[fe80::1]/app").repository.registry, "[fe80::1]");
        assert_eq!(
            p("my-reg.example.com:443/x_y__z/a-b--c.d").repository.path,
            "x_y__z/a-b--c.d"
        );
        assert!(is_loopback("127.0.0.1"));
        assert!(!is_loopback("10.0.0.1"));
    }

    #[test]
    fn refusals() {
        for bad in [
            "",
            "Upper/app",
            "ghcr.io/Org/app",
            "ghcr.io/org/app:",
            "ghcr.io/org/app:-x",
            "ghcr.io/org//app",
            "ghcr.io/org/app_",
            "ghcr.io/org/a...b",
            "ghcr.io/",
            "localhost:99999/app",
            "localhost:/app",
            "[::1/app",
            "[zz]:5000/app",
            "ghcr.io/app@sha256:abc",
            "has space/app",
            "-host.io/app",
        ] {
            assert!(Reference::parse(bad).is_err(), "accepted `{bad}`");
        }
        let long = format!("ghcr.io/{}", "a".repeat(260));
        assert!(Reference::parse(&long).is_err());
        assert!(Tag::parse(&"t".repeat(128)).is_ok());
        assert!(
            Repository::parse("ghcr.io/org/app:v1").is_err(),
            "a tag where a repository belongs"
        );
        assert!(Repository::parse("ghcr.io/org/app").is_ok());
        assert!(Tag::parse(&"t".repeat(129)).is_err());
    }

    #[test]
    fn mount_sources_are_paths_of_the_same_registry() {
        let here = Repository::parse("127.0.0.1:5000/b/second").unwrap();
        let s = here.sibling("a/first").unwrap();
        assert_eq!(s.to_string(), "127.0.0.1:5000/a/first");
        for bad in [
            "ghcr.io/a/first",
            "localhost:5000/a",
            "a/first:v1",
            "a/Upper",
        ] {
            assert!(here.sibling(bad).is_err(), "accepted `{bad}`");
        }
        let hub = Repository::parse("docker.io/user/app").unwrap();
        assert_eq!(hub.sibling("alpine").unwrap().path, "library/alpine");
    }
}
