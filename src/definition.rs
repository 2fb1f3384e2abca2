//! Which image definitions a build uses, merged in one place: the image file, else each
//! `--cargo` member's `[package.metadata.ironstar]`, else the binaries given; then the caller's
//! platforms, binaries and tags over each, and with cargo the binaries it built (one cargo
//! invocation for every image). One image is a list of one: [`Request::resolve`] is
//! [`Request::resolve_all`] wanting exactly one.

use std::path::PathBuf;

use crate::build::{BuildError, BuildOptions};
use crate::cargo::{self, CargoError, CargoOptions, CargoOutput, Member, Selection, Workspace};
use crate::platform::{Platform, DEFAULT_PLATFORMS};
use crate::sbom::CargoSource;
use crate::source_date;
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
    #[error("the images built together choose different allocators ({0}), and one cargo build links them all; set the same `allocator` in each definition, or give --allocator")]
    MixedAllocators(String),
    #[error("the selection makes several images ({0}) where one is wanted; name one with --package or --bin")]
    SeveralImages(String),
    #[error("{}: an image file defines one image, and the selection has several packages; drop the file (each member's [package.metadata.ironstar] defines its image) or name one package with --package", .0.display())]
    ImageFileForSeveral(PathBuf),
    #[error("--binary gives the binaries of one image, and the selection makes several; build them with --cargo alone")]
    BinariesForSeveral,
    #[error("two images are named `{name}` (packages `{first}` and `{second}`); set a different `name` in one's [package.metadata.ironstar]")]
    DuplicateName {
        name: String,
        first: String,
        second: String,
    },
}

fn names<'a>(specs: impl Iterator<Item = &'a ImageSpec>) -> String {
    specs
        .map(|s| s.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
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

/// The allocator the definitions of cargo-built images choose: the same for all, or none.
fn defined_allocator(planned: &[Planned]) -> Result<Option<cargo::Allocator>, DefinitionError> {
    let chosen: Vec<cargo::Allocator> = planned
        .iter()
        .filter(|p| p.selection.is_some())
        .map(|p| p.spec.allocator.unwrap_or_default())
        .collect();
    match chosen.windows(2).all(|w| w[0] == w[1]) {
        true => Ok(planned.iter().find_map(|p| p.spec.allocator)),
        false => Err(DefinitionError::MixedAllocators(
            planned
                .iter()
                .map(|p| format!("{}: {}", p.spec.name, p.spec.allocator.unwrap_or_default()))
                .collect::<Vec<_>>()
                .join(", "),
        )),
    }
}

/// What a `--cargo` build reported, and the package it built (for the SBOM).
#[derive(Debug)]
pub struct Built {
    pub output: CargoOutput,
    pub source: CargoSource,
}

/// One image to build, before anything is built: its definition with the caller's platforms,
/// and with cargo the package and binary it runs.
#[derive(Debug, Clone)]
pub struct Planned {
    pub spec: ImageSpec,
    pub selection: Option<Selection>,
}

/// One image's definition, its binaries in place, and what cargo reported.
#[derive(Debug)]
pub struct Resolved {
    pub spec: ImageSpec,
    pub built: Option<Built>,
}

impl Request {
    /// The one image definition, with cargo's binaries built when asked; several selected
    /// images are an error (use [`resolve_all`](Self::resolve_all)).
    pub fn resolve(&self) -> Result<(ImageSpec, Option<Built>), DefinitionError> {
        let mut all = self.resolve_all()?;
        if all.len() != 1 {
            return Err(DefinitionError::SeveralImages(names(
                all.iter().map(|r| &r.spec),
            )));
        }
        let one = all.pop().expect("one image");
        Ok((one.spec, one.built))
    }

    /// Every image the request selects, built (one cargo invocation for all), in name order.
    pub fn resolve_all(&self) -> Result<Vec<Resolved>, DefinitionError> {
        self.build(self.plan()?)
    }

    /// The images the request selects, in name order, with nothing built yet: without cargo
    /// the one image of the file or flags; with cargo one per selected member with a binary
    /// (several per member when `--bin` names several of its binaries: each named after its
    /// binary).
    pub fn plan(&self) -> Result<Vec<Planned>, DefinitionError> {
        let Some(opts) = &self.cargo else {
            let mut spec = self.base(None)?;
            self.override_platforms(&mut spec);
            return Ok(vec![Planned {
                spec,
                selection: None,
            }]);
        };
        let ws = Workspace::resolve(opts)?;
        if let (Some(f), [_, _, ..]) = (&self.image_file, ws.members.as_slice()) {
            return Err(DefinitionError::ImageFileForSeveral(f.clone()));
        }
        let mut planned = Vec::new();
        for member in &ws.members {
            let base = self.base(Some(member))?;
            let selections = ws.selections(member, base.bin.as_deref())?;
            let several = selections.len() > 1;
            for sel in selections {
                let mut spec = base.clone();
                if several {
                    spec.name = sel.bin.to_lowercase();
                }
                self.override_platforms(&mut spec);
                planned.push(Planned {
                    spec,
                    selection: Some(sel),
                });
            }
        }
        if planned.len() > 1 && !self.binaries.is_empty() {
            return Err(DefinitionError::BinariesForSeveral);
        }
        planned.sort_by(|a, b| a.spec.name.cmp(&b.spec.name));
        if let Some(w) = planned
            .windows(2)
            .find(|w| w[0].spec.name == w[1].spec.name)
        {
            let pkg = |p: &Planned| p.selection.as_ref().map(|s| s.package.clone());
            return Err(DefinitionError::DuplicateName {
                name: w[0].spec.name.clone(),
                first: pkg(&w[0]).unwrap_or_default(),
                second: pkg(&w[1]).unwrap_or_default(),
            });
        }
        Ok(planned)
    }

    /// Build the binaries of `planned` with cargo (one invocation for all) and apply the
    /// caller's binaries and tags: the images ready to pack.
    pub fn build(&self, planned: Vec<Planned>) -> Result<Vec<Resolved>, DefinitionError> {
        let units: Vec<(&Selection, &[&'static Platform])> = planned
            .iter()
            .filter_map(|p| Some((p.selection.as_ref()?, p.spec.platforms.as_slice())))
            .collect();
        let mut outputs = match &self.cargo {
            Some(opts) if !units.is_empty() => {
                let mut opts = opts.clone();
                opts.allocator = opts.allocator.or(defined_allocator(&planned)?);
                cargo::build_all(&units, &opts)?
            }
            _ => Vec::new(),
        }
        .into_iter();
        let mut resolved = Vec::new();
        for Planned {
            mut spec,
            selection,
        } in planned
        {
            let mut built = None;
            if let (Some(sel), Some(opts)) = (selection, &self.cargo) {
                let out = outputs.next().expect("one cargo output per selection");
                spec.binaries.extend(out.binaries.clone());
                if spec.version.is_none() {
                    spec.version = out.version.clone();
                }
                let source = CargoSource::of(&sel, &opts.features)
                    .compiled(out.units.clone())
                    .linking(out.allocator)
                    .linking_openssl(&out.openssl);
                built = Some(Built {
                    output: out,
                    source,
                });
            }
            spec.set_binaries(&self.binaries);
            self.finish(&mut spec)?;
            resolved.push(Resolved { spec, built });
        }
        Ok(resolved)
    }

    /// The caller's rootfs items, base, compression and tags over a planned definition: the
    /// definition as it is built.
    pub fn finish(&self, spec: &mut ImageSpec) -> Result<(), DefinitionError> {
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
        Ok(())
    }

    fn override_platforms(&self, spec: &mut ImageSpec) {
        if !self.platforms.is_empty() {
            spec.platforms = self.platforms.clone();
            spec.platforms_explicit = true;
            spec.binaries
                .retain(|k, _| self.platforms.iter().any(|p| &p.to_string() == k));
        }
    }

    /// The definition before the caller's overrides: the image file, else the member's
    /// metadata, else the binaries given, else (with cargo) the member's name and defaults.
    fn base(&self, member: Option<&Member>) -> Result<ImageSpec, DefinitionError> {
        if let Some(f) = &self.image_file {
            return Ok(ImageSpec::load_with(f, self.sources)?);
        }
        let from_metadata = member.map(|m| m.image_spec(self.sources));
        if let Some(spec) = from_metadata.transpose()?.flatten() {
            return Ok(spec);
        }
        ImageSpec::from_binaries(&self.binaries).or_else(|e| match member {
            Some(m) => Ok(ImageSpec {
                name: m.name.clone(),
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
        Ok(match source_date::commit_time(within) {
            Some(t) => (t, None),
            None => (0, Some(source_date::no_commit_note(within))),
        })
    }
}

fn default_platforms() -> Vec<&'static Platform> {
    DEFAULT_PLATFORMS
        .iter()
        .map(|s| Platform::parse(s).expect("default platform"))
        .collect()
}
