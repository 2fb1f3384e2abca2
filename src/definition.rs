//! Which image definition a build uses, merged in one place: the image file, else a `--cargo`
//! package's `[package.metadata.ironstar]`, else the binaries given; then the caller's platforms,
//! binaries and tags over it, and with cargo the binaries it built.

use std::path::PathBuf;

use crate::build::{BuildError, BuildOptions};
use crate::cargo::{self, CargoError, CargoOptions, CargoOutput, Selection};
use crate::platform::{Platform, DEFAULT_PLATFORMS};
use crate::sbom::CargoSource;
use crate::spec::{self, ImageSpec, SourcePolicy, SpecError};

#[derive(Debug, thiserror::Error)]
pub enum DefinitionError {
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error(transparent)]
    Cargo(#[from] CargoError),
    #[error(transparent)]
    Build(#[from] BuildError),
    #[error("{0}")]
    Tag(String),
}

/// What a build was asked for, before anything is read.
#[derive(Debug, Clone, Default)]
pub struct Request {
    pub image_file: Option<PathBuf>,
    /// `PLATFORM=PATH` binaries: they override the definition's.
    pub binaries: Vec<(&'static Platform, PathBuf)>,
    /// Platforms to build; empty: the definition's.
    pub platforms: Vec<&'static Platform>,
    /// Tags to record; empty: the definition's.
    pub tags: Vec<String>,
    /// Build the binaries with cargo, as these options say.
    pub cargo: Option<CargoOptions>,
    /// Rootfs items; `None`: the definition's.
    pub rootfs: Option<Vec<spec::RootfsItem>>,
    /// The base image; `None`: the definition's.
    pub base: Option<crate::oci::Reference>,
    /// How the layers are compressed; `None`: the definition's.
    pub compression: Option<crate::compress::Algorithm>,
    /// Where the definition's `files[].source` may be (`--allow-outside-sources`).
    pub sources: SourcePolicy,
}

/// What a `--cargo` build reported, and the package it built (for the SBOM).
#[derive(Debug)]
pub struct Built {
    pub output: CargoOutput,
    pub source: CargoSource,
}

impl Request {
    /// The image definition, with cargo's binaries built when asked.
    pub fn resolve(&self) -> Result<(ImageSpec, Option<Built>), DefinitionError> {
        let selection = match &self.cargo {
            Some(opts) => Some((Selection::resolve(opts)?, opts)),
            None => None,
        };
        let mut spec = self.base(selection.as_ref().map(|(sel, _)| sel))?;
        if !self.platforms.is_empty() {
            spec.platforms = self.platforms.clone();
            spec.platforms_explicit = true;
            spec.binaries
                .retain(|k, _| self.platforms.iter().any(|p| &p.to_string() == k));
        }
        let mut built = None;
        if let Some((sel, opts)) = selection {
            let out = cargo::build(&sel, opts, &spec.platforms)?;
            spec.binaries.extend(out.binaries.clone());
            if spec.version.is_none() {
                spec.version = out.version.clone();
            }
            if spec.name.is_empty() {
                spec.name = out.name.clone().unwrap_or_else(|| "image".into());
            }
            let source = CargoSource::of(&sel, &opts.features).compiled(out.units.clone());
            built = Some(Built {
                output: out,
                source,
            });
        }
        spec.set_binaries(&self.binaries);
        if let Some(items) = &self.rootfs {
            spec.rootfs = spec::RootfsItem::normalise(items.clone());
        }
        if let Some(base) = &self.base {
            spec.base = Some(base.clone());
        }
        if let Some(c) = self.compression {
            spec.compression = c;
        }
        if !self.tags.is_empty() {
            for t in &self.tags {
                spec::check_tag(t).map_err(DefinitionError::Tag)?;
            }
            spec.tags = self.tags.clone();
        }
        Ok((spec, built))
    }

    /// The definition before the caller's overrides: the image file, else the package's
    /// metadata, else the binaries given, else (with cargo) the package's name and defaults.
    fn base(&self, selection: Option<&Selection>) -> Result<ImageSpec, DefinitionError> {
        if let Some(f) = &self.image_file {
            return Ok(ImageSpec::load_with(f, self.sources)?);
        }
        let from_metadata = selection.map(|s| s.image_spec(self.sources));
        if let Some(spec) = from_metadata.transpose()?.flatten() {
            return Ok(spec);
        }
        ImageSpec::from_binaries(&self.binaries).or_else(|e| match selection {
            Some(sel) => Ok(ImageSpec {
                name: sel.package.clone(),
                tags: vec!["latest".into()],
                platforms: default_platforms(),
                platforms_explicit: true,
                ..Default::default()
            }),
            None => Err(e.into()),
        })
    }

    /// `SOURCE_DATE_EPOCH`, or with cargo the last commit's time, or 0.
    pub fn source_date_epoch(&self) -> Result<i64, DefinitionError> {
        Ok(self.source_date_epoch_noted()?.0)
    }

    /// [`source_date_epoch`](Self::source_date_epoch), and a note to show when cargo's crate
    /// has no commit to date it by (so it is 0: 1970-01-01) and `SOURCE_DATE_EPOCH` is unset.
    pub fn source_date_epoch_noted(&self) -> Result<(i64, Option<String>), DefinitionError> {
        let Some(opts) = self.cargo.as_ref() else {
            return Ok((BuildOptions::epoch_from_env()?, None));
        };
        if std::env::var_os("SOURCE_DATE_EPOCH").is_some() {
            return Ok((BuildOptions::epoch_from_env()?, None));
        }
        let within = opts.manifest_path.as_deref().or(self.image_file.as_deref());
        Ok(match cargo::commit_time(within) {
            Some(t) => (t, None),
            None => (0, Some(cargo::no_commit_note(within))),
        })
    }
}

fn default_platforms() -> Vec<&'static Platform> {
    DEFAULT_PLATFORMS
        .iter()
        .map(|s| Platform::parse(s).expect("default platform"))
        .collect()
}
