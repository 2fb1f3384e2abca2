//! Which local image goes where under which tags, from what a user gives: an image file, a
//! `--layout DIR[:TAG]`, a repository, tags. The remote tags never choose the local image.

use std::path::{Path, PathBuf};

use super::PushError;
use crate::build::BuildReport;
use crate::registry::{Reference, Repository, Tag};
use crate::spec::ImageSpec;

/// What to push where, before any file is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub layout: PathBuf,
    /// The image of the layout (its `org.opencontainers.image.ref.name`); `None`: the only one.
    pub image: Option<String>,
    pub repository: Repository,
    /// The remote tags; empty: the image's tags in the layout, else `latest`.
    pub tags: Vec<Tag>,
}

/// `DIR[:TAG]`: a directory, and which image of it. A path that exists is taken whole (a
/// directory may have a `:` in its name).
pub fn split_layout_arg(arg: &str) -> (PathBuf, Option<String>) {
    if !Path::new(arg).exists() {
        if let Some((dir, tag)) = arg.rsplit_once(':') {
            if !dir.is_empty() && !tag.contains('/') && Tag::parse(tag).is_ok() {
                return (PathBuf::from(dir), Some(tag.to_string()));
            }
        }
    }
    (PathBuf::from(arg), None)
}

impl Plan {
    /// `layout` (`DIR[:TAG]`) wins over the image file's `target/oci/<name>`; `repository`
    /// over its `repository`; `tags` over its tags. A tag in the repository is one more tag.
    pub fn new(
        spec: Option<&ImageSpec>,
        layout: Option<&str>,
        repository: Option<&str>,
        tags: &[String],
    ) -> Result<Plan, PushError> {
        let (layout, image) = match (layout, spec) {
            (Some(l), _) => split_layout_arg(l),
            (None, Some(s)) => (PathBuf::from("target/oci").join(&s.name), None),
            (None, None) => return Err(PushError::NothingToPush),
        };
        let (repository, tags) = destination(spec, repository, tags)?;
        Ok(Plan {
            layout,
            image,
            repository,
            tags,
        })
    }

    /// What `ironstar publish` pushes: the layout just built, under its tags.
    pub fn built(
        report: &BuildReport,
        spec: Option<&ImageSpec>,
        repository: Option<&str>,
    ) -> Result<Plan, PushError> {
        let (repository, tags) = destination(spec, repository, &report.tags)?;
        Ok(Plan {
            layout: report.output.clone(),
            image: None,
            repository,
            tags,
        })
    }
}

/// The repository (the flag's, else the image file's) and the remote tags (the flags', else the
/// image file's, and any tag the repository carries).
fn destination(
    spec: Option<&ImageSpec>,
    repository: Option<&str>,
    tags: &[String],
) -> Result<(Repository, Vec<Tag>), PushError> {
    // An empty repository (an action input left blank) means none given.
    let repository = repository
        .filter(|r| !r.is_empty())
        .or(spec.and_then(|s| s.repository.as_deref()))
        .ok_or(PushError::NoRepository)?;
    let reference = Reference::parse(repository)?;
    if reference.digest.is_some() {
        return Err(PushError::DigestInRepository(repository.to_string()));
    }
    let given: Vec<String> = match (tags.is_empty(), spec) {
        (false, _) => tags.to_vec(),
        (true, Some(s)) => s.tags.clone(),
        (true, None) => Vec::new(),
    };
    let mut tags = given
        .iter()
        .map(|t| Tag::parse(t).map_err(PushError::Tag))
        .collect::<Result<Vec<_>, _>>()?;
    if let Some(t) = reference.tag {
        if !tags.contains(&t) {
            tags.push(t);
        }
    }
    Ok((reference.repository, tags))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_name_remote_tags_and_the_layout_names_the_image() {
        let p = Plan::new(
            None,
            Some("out/img:v6"),
            Some("127.0.0.1:5000/a/b:x"),
            &["rel".into()],
        )
        .unwrap();
        assert_eq!(p.layout, PathBuf::from("out/img"));
        assert_eq!(p.image.as_deref(), Some("v6"));
        let tags: Vec<&str> = p.tags.iter().map(Tag::as_str).collect();
        assert_eq!(tags, ["rel", "x"]);
        assert_eq!(p.repository.to_string(), "127.0.0.1:5000/a/b");

        let dir = tempfile::tempdir().unwrap();
        let odd = dir.path().join("a:b");
        std::fs::create_dir(&odd).unwrap();
        let (l, t) = split_layout_arg(odd.to_str().unwrap());
        assert_eq!((l, t), (odd, None), "an existing path is taken whole");

        assert!(matches!(
            Plan::new(None, Some("x"), Some("r.io/a@sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"), &[]),
            Err(PushError::DigestInRepository(_))
        ));
        assert!(matches!(
            Plan::new(None, None, Some("r.io/a"), &[]),
            Err(PushError::NothingToPush)
        ));
        assert!(matches!(
            Plan::new(None, Some("x"), None, &[]),
            Err(PushError::NoRepository)
        ));
        assert!(matches!(
            Plan::new(None, Some("x"), Some("r.io/a"), &["-bad".into()]),
            Err(PushError::Tag(_))
        ));
    }
}
