//! Several images at once (a workspace's): one layout each, side by side (`target/oci/<name>`),
//! packed in parallel; where each goes, as ko names it (with several images `--repository` is a
//! prefix: `PREFIX/NAME`, unless the image's definition sets `repository`); the layouts of a
//! directory found again for `ironstar push --workspace`; and the references written out.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use crate::build::{BuildError, BuildOptions, BuildReport};
use crate::layout::{Layout, LayoutError};
use crate::oci::annotation;
use crate::spec::ImageSpec;

/// Where layouts go when no `--output` says: `target/oci/<name>`.
pub const DEFAULT_LAYOUT_DIR: &str = "target/oci";

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error(transparent)]
    Layout(#[from] LayoutError),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: no OCI layout in it (build first: ironstar build --cargo --workspace)", .0.display())]
    NoLayouts(PathBuf),
    #[error("no repository for image `{name}`: pass --repository PREFIX (it goes to PREFIX/{name}) or set `repository` in its definition")]
    NoRepository { name: String },
    #[error("image `{name}`: its repository `{repository}` carries a tag; a definition's `repository` takes none (put the tag in `tags`, and build again)")]
    TaggedRepository { name: String, repository: String },
    #[error("--repository `{0}`: with several images it is a prefix (REGISTRY/PATH, each image going to PREFIX/NAME) and takes no tag or digest")]
    PrefixWithTag(String),
    #[error(transparent)]
    SameRepository(#[from] crate::push::SameRepository),
    #[error(transparent)]
    Reference(#[from] crate::oci::ReferenceError),
    #[error("{} and {} both hold an image named `{name}`", first.display(), second.display())]
    DuplicateLayout {
        name: String,
        first: PathBuf,
        second: PathBuf,
    },
}

/// The layout directory of image `name`: with one image `output` itself, with several
/// `output/<name>` (`--output` names the parent); default `target/oci/<name>`.
pub fn layout_dir(output: Option<&Path>, name: &str, several: bool) -> PathBuf {
    match (output, several) {
        (Some(o), false) => o.to_path_buf(),
        (Some(o), true) => o.join(name),
        (None, _) => Path::new(DEFAULT_LAYOUT_DIR).join(name),
    }
}

/// Build every image, in parallel (each also packs its platforms in parallel); the reports
/// in the order given.
pub fn build_all(images: &[(&ImageSpec, BuildOptions)]) -> Vec<Result<BuildReport, BuildError>> {
    images
        .par_iter()
        .map(|(spec, opts)| crate::build::build(spec, opts))
        .collect()
}

/// Where image `name` goes. One image: the flag's repository, else the definition's. Several:
/// the definition's, else `PREFIX/NAME` with the flag's repository as the prefix.
pub fn repository_for(
    name: &str,
    defined: Option<&str>,
    flag: Option<&str>,
    several: bool,
) -> Result<Option<String>, PublishError> {
    let flag = flag.filter(|f| !f.is_empty());
    // A tag in it would be one more tag here and the only one there: refused, as definitions
    // refuse it (a layout built before they did may still record one).
    let tagged = |r: &str| crate::oci::Reference::parse(r).is_ok_and(|r| r.tag.is_some());
    if let Some(d) = defined.filter(|d| tagged(d)) {
        return Err(PublishError::TaggedRepository {
            name: name.to_string(),
            repository: d.to_string(),
        });
    }
    if !several {
        return Ok(flag.or(defined).map(String::from));
    }
    if let Some(d) = defined {
        return Ok(Some(d.to_string()));
    }
    let Some(prefix) = flag else {
        return Err(PublishError::NoRepository {
            name: name.to_string(),
        });
    };
    let prefix = prefix.trim_end_matches('/');
    let last = prefix.rsplit('/').next().unwrap_or(prefix);
    if prefix.contains('@') || (prefix.contains('/') && last.contains(':')) {
        return Err(PublishError::PrefixWithTag(prefix.to_string()));
    }
    Ok(Some(format!("{prefix}/{name}")))
}

/// Refuse, before anything is built, two of `specs` going to one repository (each where
/// [`repository_for`] sends it with the flag `flag`; one with no repository yet is left to the
/// push to refuse).
pub fn one_repository_each<'a>(
    specs: impl IntoIterator<Item = &'a ImageSpec>,
    flag: Option<&str>,
) -> Result<(), PublishError> {
    let specs: Vec<&ImageSpec> = specs.into_iter().collect();
    let several = specs.len() > 1;
    let mut named = Vec::new();
    for s in &specs {
        let repo = repository_for(&s.name, s.repository.as_deref(), flag, several)?;
        if let Some(r) = repo {
            named.push((
                s.name.as_str(),
                crate::oci::Reference::parse(&r)?.repository,
            ));
        }
    }
    crate::push::one_repository_each(named.iter().map(|(n, r)| (*n, r)))?;
    Ok(())
}

/// One layout of a directory of layouts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundLayout {
    /// The image index's `org.opencontainers.image.title` (its definition's `name`), else
    /// the directory's name.
    pub name: String,
    pub dir: PathBuf,
    /// The repository its definition named, as the build recorded it in `index.json`.
    pub repository: Option<String>,
}

impl FoundLayout {
    /// The layout at `dir` (its only image): its name and recorded repository.
    pub fn read(dir: &Path) -> Result<Self, PublishError> {
        let layout = Layout::open(dir)?;
        let image = layout.resolve(None)?;
        let title = serde_json::from_slice::<serde_json::Value>(&image.top.bytes)
            .ok()
            .and_then(|v| {
                v["annotations"][annotation::TITLE]
                    .as_str()
                    .map(String::from)
            });
        let dir_name = || {
            let d = dir.canonicalize().unwrap_or(dir.to_path_buf());
            Some(d.file_name()?.to_string_lossy().into_owned())
        };
        let repository = layout
            .index_annotations()?
            .get(annotation::REPOSITORY)
            .cloned();
        Ok(FoundLayout {
            name: title.or_else(dir_name).unwrap_or_default(),
            dir: dir.to_path_buf(),
            repository,
        })
    }
}

/// Every layout directly under `dir` (each a directory with an `oci-layout` file), in name
/// order: what `ironstar push --workspace` pushes.
pub fn layouts_in(dir: &Path) -> Result<Vec<FoundLayout>, PublishError> {
    let io = |source| PublishError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut found: Vec<FoundLayout> = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let path = entry.map_err(io)?.path();
        if !path.join("oci-layout").is_file() {
            continue;
        }
        let FoundLayout {
            name, repository, ..
        } = FoundLayout::read(&path)?;
        if let Some(other) = found.iter().find(|f| f.name == name) {
            return Err(PublishError::DuplicateLayout {
                name,
                first: other.dir.clone(),
                second: path,
            });
        }
        found.push(FoundLayout {
            name,
            dir: path,
            repository,
        });
    }
    if found.is_empty() {
        return Err(PublishError::NoLayouts(dir.to_path_buf()));
    }
    found.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(found)
}

/// `images` for `$GITHUB_OUTPUT`: a JSON object, image name → reference, on one line.
pub fn images_json(refs: &[(String, String)]) -> String {
    let map: BTreeMap<&str, &str> = refs.iter().map(|(n, r)| (n.as_str(), r.as_str())).collect();
    serde_json::to_string(&map).expect("a map of strings")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn several_images_take_the_repository_as_a_prefix() {
        let r = |d, f, several| repository_for("api", d, f, several);
        assert_eq!(
            r(Some("ghcr.io/o/x"), Some("r.io/a/b"), false).unwrap(),
            Some("r.io/a/b".into()),
            "one image: the flag wins, as before"
        );
        assert_eq!(
            r(None, Some("ghcr.io/org/"), true).unwrap(),
            Some("ghcr.io/org/api".into())
        );
        assert_eq!(
            r(Some("ghcr.io/o/x"), Some("ghcr.io/org"), true).unwrap(),
            Some("ghcr.io/o/x".into()),
            "the definition's repository wins over a prefix"
        );
        assert_eq!(
            r(None, Some("127.0.0.1:5000/org"), true).unwrap(),
            Some("127.0.0.1:5000/org/api".into())
        );
        assert!(matches!(
            r(None, None, true),
            Err(PublishError::NoRepository { .. })
        ));
        assert!(matches!(
            r(None, Some("ghcr.io/org:v1"), true),
            Err(PublishError::PrefixWithTag(_))
        ));
        for several in [false, true] {
            assert!(matches!(
                r(Some("ghcr.io/o/zz:v9"), None, several),
                Err(PublishError::TaggedRepository { .. })
            ));
        }
    }

    #[test]
    fn layout_dirs_and_the_images_json() {
        assert_eq!(
            layout_dir(Some(Path::new("out")), "api", true),
            Path::new("out/api")
        );
        assert_eq!(
            layout_dir(Some(Path::new("out")), "api", false),
            Path::new("out")
        );
        assert_eq!(layout_dir(None, "api", true), Path::new("target/oci/api"));
        let refs = [
            ("worker".to_string(), "r/w@sha256:1".to_string()),
            ("api".to_string(), "r/a@sha256:2".to_string()),
        ];
        assert_eq!(
            images_json(&refs),
            r#"{"api":"r/a@sha256:2","worker":"r/w@sha256:1"}"#
        );
    }
}
