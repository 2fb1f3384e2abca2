//! `ironstar build`: check every binary, pack one image per platform (in parallel), index them, and
//! move the finished layout into place.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use oci_spec::image::MediaType;
use rayon::prelude::*;

use crate::base::{Base, BaseError};
use crate::cache::LayerCache;
use crate::compress::Compression;
use crate::digest::Digest;
use crate::elf::{self, ElfError};
use crate::image::{self, BlobRef, ImageError, LayerHistory};
use crate::layer::{Entry, Recipe};
use crate::layout::{LayoutError, LayoutWriter};
use crate::oci::annotation;
use crate::platform::Platform;
use crate::spec::{ImagePath, ImageSpec, RunConfig};

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("no binary for {platform}: add it under [binaries] in the image file or pass --binary {platform}=PATH")]
    NoBinary { platform: String },
    #[error(transparent)]
    Elf(#[from] ElfError),
    #[error(transparent)]
    Layout(#[from] LayoutError),
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error("{0}")]
    Layer(String),
    #[error("{0}")]
    Compression(String),
    #[error("writing the layer for {platform}: {source}")]
    Write {
        platform: String,
        #[source]
        source: std::io::Error,
    },
    #[error("SOURCE_DATE_EPOCH=`{0}` is not a whole number of seconds since 1970")]
    BadEpoch(String),
    #[error("SBOM: {0}")]
    Sbom(#[from] crate::sbom::SbomError),
    #[error(transparent)]
    Sign(#[from] crate::sign::SignError),
    #[error(transparent)]
    Base(#[from] BaseError),
    #[error("provenance: {0}")]
    Provenance(String),
    #[error("base {reference}: its config for {platform}: {message}")]
    BaseConfig {
        reference: String,
        platform: String,
        message: String,
    },
}

/// How to build, beyond what the image definition says.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    pub output: PathBuf,
    /// Seconds since the epoch for `created` and every file mtime.
    pub source_date_epoch: i64,
    /// The level for the image's compression ([`ImageSpec::compression`]); `None`: that
    /// algorithm's default ([`crate::compress::Algorithm::default_level`]).
    pub compression_level: Option<u32>,
    /// `org.opencontainers.image.revision`, e.g. the git commit.
    pub revision: Option<String>,
    /// The layer cache's directory ([`crate::cache::default_dir`] is the usual one); `None` for no
    /// cache. A cache that cannot be opened (a read-only home, a build sandbox) is skipped.
    pub cache_dir: Option<PathBuf>,
    /// Attach an SBOM to each platform's manifest ([`crate::sbom`]); `None` for none.
    pub sbom: Option<crate::sbom::SbomOptions>,
    /// Sign the index and every platform manifest into the layout ([`crate::sign::layout`]).
    pub sign: Option<crate::sign::layout::LayoutSigning>,
    /// With `sign`: attest the build's provenance into the layout ([`crate::artifact::attest`]);
    /// what the caller knows of its source.
    pub provenance: Option<crate::artifact::provenance::Source>,
    /// How to pull the image definition's `base`, if it has one.
    pub base: crate::base::BaseOptions,
    /// The reuse record of a `--cargo` build ([`crate::reuse`]), kept in the layout's
    /// `index.json` for the push to write after the index.
    pub reuse: Option<crate::reuse::Record>,
}

impl BuildOptions {
    /// `SOURCE_DATE_EPOCH` from the environment, 0 when unset.
    pub fn epoch_from_env() -> Result<i64, BuildError> {
        match std::env::var("SOURCE_DATE_EPOCH") {
            Ok(s) if !s.trim().is_empty() => s
                .trim()
                .parse::<i64>()
                .ok()
                .filter(|n| *n >= 0)
                .ok_or(BuildError::BadEpoch(s)),
            _ => Ok(0),
        }
    }
}

/// One platform's part of a build.
#[derive(Debug, Clone)]
pub struct PlatformReport {
    pub platform: &'static Platform,
    pub binary: PathBuf,
    pub binary_size: u64,
    pub layer_size: u64,
    pub manifest: Digest,
    /// The layer came from the cache (nothing was compressed).
    pub cached: bool,
    /// Where the attached SBOM came from (`.dep-v0`, `cargo metadata`, a file); `None`: no SBOM.
    pub sbom: Option<String>,
}

/// What a build produced.
#[derive(Debug, Clone)]
pub struct BuildReport {
    pub index: Digest,
    pub output: PathBuf,
    pub tags: Vec<String>,
    pub platforms: Vec<PlatformReport>,
    /// The rootfs items' layer, shared by every platform: its size and whether it was cached.
    pub rootfs: Option<(u64, bool)>,
    /// The base: its reference, what it resolved to, and its layers per platform.
    pub base: Option<(String, Digest, usize)>,
}

/// What every platform of one build shares.
struct Shared<'a> {
    writer: &'a LayoutWriter,
    cache: Option<&'a LayerCache>,
    compression: Compression,
    spec: &'a ImageSpec,
    opts: &'a BuildOptions,
    created: &'a str,
    labels: &'a BTreeMap<String, String>,
    annotations: &'a BTreeMap<String, String>,
    /// The rootfs items' layer and its diff id.
    rootfs: Option<(BlobRef, Digest)>,
    base: Option<&'a Base>,
}

/// Build the image `spec` describes into an OCI layout at `opts.output`.
pub fn build(spec: &ImageSpec, opts: &BuildOptions) -> Result<BuildReport, BuildError> {
    // Before 1970 a tar mtime would wrap to a date far in the future.
    if opts.source_date_epoch < 0 {
        return Err(BuildError::BadEpoch(opts.source_date_epoch.to_string()));
    }
    // Every binary is checked before anything is written.
    let mut inputs = Vec::new();
    for &p in &spec.platforms {
        let path = spec
            .binaries
            .get(&p.to_string())
            .ok_or_else(|| BuildError::NoBinary {
                platform: p.to_string(),
            })?;
        let info = elf::check(path, p)?;
        inputs.push((p, path.clone(), info.size));
    }
    let compression = Compression::new(spec.compression, opts.compression_level)
        .map_err(BuildError::Compression)?;
    let created = image::rfc3339(opts.source_date_epoch)?;
    let labels = labels(spec, &created, opts);
    let annotations = annotations(spec, &created, opts);
    // The base is pulled (or found in the cache) before anything is written.
    let base = spec
        .base
        .as_ref()
        .map(|r| crate::base::resolve(r, &spec.platforms, &opts.base, opts.cache_dir.as_deref()))
        .transpose()?;

    let writer = LayoutWriter::create(&opts.output)?;
    let cache = opts.cache_dir.as_deref().and_then(|dir| {
        LayerCache::open(dir, &compression.encoding())
            .map_err(|e| match crate::storage_full(&e) {
                true => tracing::warn!(
                    "layer cache: {}: {e}; building without it (free space there, or use \
                     --no-cache or another --cache-dir)",
                    dir.display()
                ),
                false => tracing::debug!("no layer cache: {}: {e}", dir.display()),
            })
            .ok()
    });
    let rootfs = match spec.rootfs.is_empty() {
        true => None,
        false => {
            let entries = crate::rootfs::entries(&spec.rootfs);
            let recipe = Recipe::new(entries, crate::rootfs::MTIME, compression)
                .map_err(BuildError::Layer)?;
            Some(write_layer(
                &writer,
                cache.as_ref(),
                &recipe,
                "the rootfs items",
            )?)
        }
    };
    let shared = Shared {
        writer: &writer,
        cache: cache.as_ref(),
        compression,
        spec,
        opts,
        created: &created,
        labels: &labels,
        annotations: &annotations,
        rootfs: rootfs.as_ref().map(|(b, d, _)| (b.clone(), d.clone())),
        base: base.as_ref(),
    };
    // The SBOM documents (a `cargo metadata` each on the `--cargo` path) are made beside the
    // layers' compression, not after it.
    let binaries: Vec<_> = inputs.iter().map(|(p, b, _)| (*p, b.as_path())).collect();
    let (built, docs) = std::thread::scope(|s| {
        let docs = opts
            .sbom
            .as_ref()
            .map(|o| s.spawn(|| crate::sbom::artifact::documents(o, &binaries)));
        let built = inputs
            .par_iter()
            .map(|(p, path, size)| {
                let (manifest, layer_size, cached) = build_platform(&shared, p, path)?;
                let report = PlatformReport {
                    platform: p,
                    binary: path.clone(),
                    binary_size: *size,
                    layer_size,
                    manifest: manifest.digest.clone(),
                    cached,
                    sbom: None,
                };
                Ok((report, manifest))
            })
            .collect::<Result<Vec<_>, BuildError>>();
        let docs = docs.map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)));
        (built, docs)
    });
    let built = built?;
    let docs = docs.transpose()?.unwrap_or_default();
    let (reports, manifests): (Vec<_>, Vec<_>) = built
        .into_iter()
        .map(|(r, m)| {
            let p = r.platform;
            (r, (p, m))
        })
        .unzip();
    let index_bytes = image::index(&manifests, &annotations)?;
    let index = writer.put_blob(&index_bytes)?;
    let index_ref = BlobRef {
        media_type: MediaType::ImageIndex,
        digest: index.clone(),
        size: index_bytes.len() as u64,
    };
    let mut reports = reports;
    let referrers = attach_sboms(&writer, docs, &mut reports, &manifests, &created)?;
    let signatures = match &opts.sign {
        Some(signing) => {
            let subjects: Vec<_> = std::iter::once((index.clone(), None))
                .chain(
                    manifests
                        .iter()
                        .map(|(p, m)| (m.digest.clone(), Some(p.to_string()))),
                )
                .collect();
            let refs: Vec<BlobRef> = std::iter::once(index_ref.clone())
                .chain(manifests.iter().map(|(_, m)| m.clone()))
                .collect();
            let signer = signing.signer.as_ref();
            [
                crate::sign::layout::write(&writer, signing, &subjects)?,
                crate::artifact::sigbundle::write(&writer, signer, &refs)?,
            ]
            .concat()
        }
        None => Vec::new(),
    };
    let attestation = match (&opts.sign, &opts.provenance) {
        (Some(signing), Some(source)) => {
            let binaries: Vec<_> = inputs.iter().map(|(p, b, _)| (*p, b.as_path())).collect();
            let facts = Facts {
                spec,
                binaries: &binaries,
                base: base.as_ref(),
                index: &index_ref,
                created: &created,
            };
            attest(&writer, signing, source, &facts)?
        }
        _ => Vec::new(),
    };
    let signatures = [signatures, attestation].concat();
    let index_json = image::layout_index(&index_ref, &spec.tags)?;
    let index_json = image::annotate_layout_index(&index_json, &layout_annotations(spec, opts));
    let index_json = crate::sbom::artifact::layout_index(&index_json, &referrers);
    let output = writer.commit(&crate::artifact::referrer::layout_index(
        &index_json,
        &signatures,
    ))?;
    Ok(BuildReport {
        index,
        output,
        tags: spec.tags.clone(),
        platforms: reports,
        rootfs: rootfs.map(|(b, _, cached)| (b.size, cached)),
        base: base.as_ref().map(|b| {
            let layers = b.platforms.first().map_or(0, |p| p.layers.len());
            (b.reference.to_string(), b.digest.clone(), layers)
        }),
    })
}

/// What a build knows of an image once its index is written.
struct Facts<'a> {
    spec: &'a ImageSpec,
    binaries: &'a [(&'static Platform, &'a Path)],
    base: Option<&'a Base>,
    index: &'a BlobRef,
    created: &'a str,
}

/// The signed provenance of the image, written beside it: its `index.json` entries.
fn attest(
    writer: &LayoutWriter,
    signing: &crate::sign::layout::LayoutSigning,
    source: &crate::artifact::provenance::Source,
    f: &Facts,
) -> Result<Vec<serde_json::Value>, BuildError> {
    use crate::artifact::provenance;
    let image = provenance::Image {
        name: &signing.identity,
        index: &f.index.digest,
        platforms: f.spec.platforms.iter().map(|p| p.to_string()).collect(),
        compression: f.spec.compression.to_string(),
        rootfs: f.spec.rootfs.iter().map(|i| i.name().to_string()).collect(),
        base: f.base.map(|b| (b.reference.to_string(), b.digest.clone())),
        binaries: f
            .binaries
            .iter()
            .map(|(p, b)| (p.to_string(), *b))
            .collect(),
    };
    let statement =
        provenance::statement(source, &image).map_err(|e| BuildError::Provenance(e.to_string()))?;
    let signer = signing.signer.as_ref();
    Ok(crate::artifact::attest::write(
        writer, signer, &statement, f.index, f.created,
    )?)
}

/// The SBOMs `opts.sbom` asks for, written beside the image; each report says where its came from.
fn attach_sboms(
    writer: &LayoutWriter,
    docs: Vec<Option<crate::sbom::Document>>,
    reports: &mut [PlatformReport],
    manifests: &[(&Platform, BlobRef)],
    created: &str,
) -> Result<Vec<crate::sbom::artifact::Referrer>, BuildError> {
    let subjects: Vec<&BlobRef> = manifests.iter().map(|(_, m)| m).collect();
    let attached = crate::sbom::artifact::attach(writer, docs, &subjects, created)?;
    let mut referrers = Vec::new();
    for (report, a) in reports.iter_mut().zip(attached) {
        if let Some((referrer, origin)) = a {
            report.sbom = Some(origin);
            referrers.push(referrer);
        }
    }
    Ok(referrers)
}

/// One platform's image: the base's layers, the rootfs layer, then the binary's; its config
/// (over the base's) and manifest.
fn build_platform(
    ctx: &Shared<'_>,
    platform: &Platform,
    binary: &Path,
) -> Result<(BlobRef, u64, bool), BuildError> {
    let (spec, opts, writer) = (ctx.spec, ctx.opts, ctx.writer);
    let in_image = match &spec.binary_path {
        Some(p) => p.clone(),
        None => {
            let name = binary
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| spec.name.clone());
            ImagePath::parse(&name).map_err(BuildError::Layer)?
        }
    };
    let mut entries = vec![Entry::file(in_image.clone(), binary.to_path_buf(), 0o755)];
    entries.extend(spec.files.iter().map(|f| match &f.source {
        Some(s) => Entry::file(f.path.clone(), s.clone(), f.mode),
        None => Entry::dir(f.path.clone(), f.mode),
    }));
    let mtime = opts.source_date_epoch as u64;
    let recipe = Recipe::new(entries, mtime, ctx.compression).map_err(BuildError::Layer)?;
    let what = platform.to_string();
    let (layer, diff_id, cached) = write_layer(writer, ctx.cache, &recipe, &what)?;
    let layer_size = layer.size;

    let base = ctx.base.and_then(|b| b.of(platform).map(|p| (b, p)));
    let mut layers = Vec::new();
    let mut history = Vec::new();
    if let Some((_, pb)) = base {
        for (blob, path) in &pb.layers {
            writer.put_blob_file(path, &blob.digest)?;
            layers.push(blob.clone());
        }
    }
    if let Some((blob, diff_id)) = &ctx.rootfs {
        layers.push(blob.clone());
        let names: Vec<&str> = spec.rootfs.iter().map(|i| i.name()).collect();
        history.push(LayerHistory {
            diff_id: diff_id.clone(),
            comment: format!("rootfs items: {}", names.join(", ")),
        });
    }
    layers.push(layer);
    history.push(LayerHistory {
        diff_id,
        comment: match base {
            // The words of every image before bases and rootfs items: their digests stay.
            None => "static binary and files, FROM scratch".into(),
            Some((b, _)) => format!("static binary and files, FROM {}", b.reference),
        },
    });
    let entrypoint = spec
        .config
        .entrypoint
        .clone()
        .unwrap_or_else(|| vec![in_image.to_string()]);
    let run = run_config(spec);
    let mut config_bytes = image::config(
        platform,
        &run,
        entrypoint,
        ctx.labels,
        ctx.created,
        &history,
    )?;
    let mut annotations = ctx.annotations.clone();
    if let Some((b, pb)) = base {
        config_bytes =
            crate::base::merge(&pb.config, &config_bytes).map_err(|e| BuildError::BaseConfig {
                reference: b.reference.to_string(),
                platform: what.clone(),
                message: e,
            })?;
        annotations.insert(annotation::BASE_NAME.into(), b.reference.to_string());
        annotations.insert(annotation::BASE_DIGEST.into(), pb.manifest.to_string());
    }
    let config = BlobRef {
        media_type: MediaType::ImageConfig,
        digest: writer.put_blob(&config_bytes)?,
        size: config_bytes.len() as u64,
    };
    let manifest_bytes = image::manifest(&config, &layers, &annotations)?;
    let manifest = BlobRef {
        media_type: MediaType::ImageManifest,
        digest: writer.put_blob(&manifest_bytes)?,
        size: manifest_bytes.len() as u64,
    };
    Ok((manifest, layer_size, cached))
}

/// The definition's run config with what its rootfs items add where it says nothing:
/// `SSL_CERT_FILE`, and the non-root user.
fn run_config(spec: &ImageSpec) -> RunConfig {
    let mut run = spec.config.clone();
    for (k, v) in crate::rootfs::env(&spec.rootfs) {
        run.env
            .entry(k.to_string())
            .or_insert_with(|| v.to_string());
    }
    if run.user.is_none() {
        run.user = crate::rootfs::default_user(&spec.rootfs).map(str::to_string);
    }
    run
}

/// The layer blob, from the cache or compressed now: its descriptor, its diff id, and whether it
/// came from the cache.
fn write_layer(
    writer: &LayoutWriter,
    cache: Option<&LayerCache>,
    recipe: &Recipe,
    platform: &str,
) -> Result<(BlobRef, Digest, bool), BuildError> {
    // A failed write into the layout says so itself (the blob's path, the output's); any other
    // error is the layer's.
    let write_err = |source: std::io::Error| match source.get_ref() {
        Some(e) if e.is::<LayoutError>() => BuildError::Layout(
            *source
                .into_inner()
                .and_then(|e| e.downcast().ok())
                .expect("checked"),
        ),
        _ => BuildError::Write {
            platform: platform.to_string(),
            source,
        },
    };
    let blob_ref = |digest, size| BlobRef {
        media_type: recipe.compression.media_type(),
        digest,
        size,
    };
    // With a cache, a first pass hashes the tar alone (a fraction of compression's cost) for the
    // key.
    let probe = match cache {
        Some(c) => {
            let probe = recipe.diff_id().map_err(write_err)?;
            if let Some(hit) = c.get(&probe.diff_id) {
                tracing::debug!("{platform}: layer {} from the cache", hit.digest);
                writer.put_blob_file(&hit.path, &hit.digest)?;
                return Ok((blob_ref(hit.digest, hit.size), probe.diff_id, true));
            }
            Some(probe)
        }
        None => None,
    };
    let mut blob = writer.blob_writer()?;
    let written = recipe.write(&mut blob).map_err(write_err)?;
    let (digest, size) = blob.finish()?;
    // Cached only when the input did not change between the two passes.
    if let (Some(c), Some(probe)) = (cache, probe) {
        if probe == written {
            c.put(&written.diff_id, &writer.blob_path(&digest), &digest);
        }
    }
    Ok((blob_ref(digest, size), written.diff_id, false))
}

/// The standard OCI keys ironstar knows, then the image file's own (which win).
fn standard(spec: &ImageSpec, created: &str, opts: &BuildOptions) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    m.insert(annotation::CREATED.to_string(), created.to_string());
    m.insert(annotation::TITLE.to_string(), spec.name.clone());
    if let Some(v) = &spec.version {
        m.insert(annotation::VERSION.to_string(), v.clone());
    }
    if let Some(r) = &opts.revision {
        m.insert(annotation::REVISION.to_string(), r.clone());
    }
    m
}

fn labels(spec: &ImageSpec, created: &str, opts: &BuildOptions) -> BTreeMap<String, String> {
    let mut m = standard(spec, created, opts);
    m.extend(crate::rootfs::labels(&spec.rootfs));
    m.extend(spec.config.labels.clone());
    m
}

fn annotations(spec: &ImageSpec, created: &str, opts: &BuildOptions) -> BTreeMap<String, String> {
    let mut m = standard(spec, created, opts);
    // The source link is shared: ghcr reads it from the index annotations.
    if let Some(s) = spec.config.labels.get(annotation::SOURCE) {
        m.insert(annotation::SOURCE.to_string(), s.clone());
    }
    m.extend(spec.annotations.clone());
    m
}

/// The top-level annotations of the layout's `index.json`: the definition's repository, the
/// reuse record.
fn layout_annotations(spec: &ImageSpec, opts: &BuildOptions) -> BTreeMap<String, String> {
    let repo = spec.repository.iter();
    let record = opts.reuse.iter().map(|r| {
        let key = crate::reuse::record::ANNOTATION.to_string();
        (key, r.to_annotation())
    });
    repo.map(|r| (annotation::REPOSITORY.to_string(), r.clone()))
        .chain(record)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_negative_epoch_from_a_library_caller_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let opts = BuildOptions {
            output: dir.path().join("out"),
            source_date_epoch: -1,
            compression_level: None,
            revision: None,
            cache_dir: None,
            sbom: None,
            sign: None,
            provenance: None,
            base: Default::default(),
            reuse: None,
        };
        let err = build(&ImageSpec::default(), &opts).unwrap_err();
        assert!(
            matches!(err, BuildError::BadEpoch(ref e) if e == "-1"),
            "{err}"
        );
        assert!(!opts.output.exists(), "nothing is written");
    }
}
