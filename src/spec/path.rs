//! Paths inside an image: absolute, normalised, never `..`.

use std::fmt;
use std::path::{Component, Path};

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
