//! The OCI image layout on disk (`oci-layout`, `index.json`, `blobs/sha256/…`).
//!
//! [`LayoutWriter`] builds a layout in a temporary directory beside its destination and renames it
//! into place only when complete, so the destination holds the previous layout or the new one,
//! never half of one. [`Layout`] reads a layout and trusts nothing in it: every digest must be
//! `sha256:` + 64 hex (a digest names a file, so a looser one could name a path), and every blob
//! read is checked against its digest and size.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::digest::Digest;
use crate::oci::{annotation, media_type};

mod write;
pub use write::{BlobWriter, LayoutWriter};

pub const OCI_LAYOUT_FILE: &str = "oci-layout";
pub const OCI_LAYOUT_CONTENT: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;

/// Manifests and indexes are read into memory; the registry limit most share is 4 MiB.
const MAX_MANIFEST_SIZE: u64 = 4 << 20;

#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// Writing the layout being built failed: where, and (when the disk is full) what to do.
    #[error(
        "writing the output layout: {path}: {source}{}",
        if crate::storage_full(source) { "; free space there or give another --output" } else { "" }
    )]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "{0}: not an OCI image layout (no `oci-layout` file); build one with `ironstar build`"
    )]
    NotALayout(PathBuf),
    #[error("{path}: unsupported layout: {reason}")]
    Unsupported { path: PathBuf, reason: String },
    #[error("{path}: malformed JSON: {source}")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{path}: {source}")]
    Digest {
        path: PathBuf,
        #[source]
        source: crate::digest::InvalidDigest,
    },
    #[error("blob {digest} in {layout}: {problem}; the layout is corrupt, rebuild it")]
    BadBlob {
        layout: PathBuf,
        digest: Digest,
        problem: String,
    },
    #[error("{layout}: no image tagged `{tag}` (tags present: {present})")]
    NoSuchTag {
        layout: PathBuf,
        tag: String,
        present: String,
    },
    #[error(
        "{0}: index.json lists several images and none was chosen; name one as --layout DIR:TAG"
    )]
    Ambiguous(PathBuf),
    #[error(
        "{0} is a symbolic link; a layout's files are never followed out of it (copy the layout \
         with the links resolved, `cp -rL`, or rebuild it)"
    )]
    Symlink(PathBuf),
    #[error("{path}: not a regular file; the layout is corrupt, rebuild it")]
    NotAFile { path: PathBuf },
    #[error("{0} exists and is not an OCI image layout; refusing to replace it (choose another --output)")]
    WouldClobber(PathBuf),
}

type Result<T, E = LayoutError> = std::result::Result<T, E>;

fn io_err(path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> LayoutError {
    let path = path.into();
    move |source| LayoutError::Io { path, source }
}

/// Open a file of a layout for reading, never through a symbolic link (`O_NOFOLLOW`: a blob or
/// `index.json` linking to `/etc/shadow` is refused, not read), and only a regular file. The
/// layout's own directory may be a link (Nix's `result`); `blobs/` and `blobs/sha256/` may not.
pub fn open_in_layout(path: &Path) -> Result<File> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let file = File::options()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => LayoutError::Symlink(path.to_path_buf()),
            _ => io_err(path)(e),
        })?;
    // O_NONBLOCK only so that opening a FIFO cannot hang; a regular file ignores it.
    if !file.metadata().map_err(io_err(path))?.is_file() {
        return Err(LayoutError::NotAFile {
            path: path.to_path_buf(),
        });
    }
    Ok(file)
}

/// [`open_in_layout`], read whole.
pub fn read_in_layout(path: &Path) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    io::Read::read_to_end(&mut open_in_layout(path)?, &mut bytes).map_err(io_err(path))?;
    Ok(bytes)
}

/// A content descriptor as read from a layout, its digest already validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Descriptor {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    pub annotations: BTreeMap<String, String>,
    pub platform: Option<String>,
}

/// A manifest or index: its descriptor and its exact bytes (sent to registries unchanged).
#[derive(Debug, Clone)]
pub struct ManifestBlob {
    pub descriptor: Descriptor,
    pub bytes: Vec<u8>,
}

/// Everything one tagged image of a layout consists of.
#[derive(Debug, Clone)]
pub struct ResolvedImage {
    /// What the tags point at: an image index, or a single image manifest.
    pub top: ManifestBlob,
    /// The platform manifests of an index (empty when `top` is a manifest).
    pub manifests: Vec<ManifestBlob>,
    /// Configs and layers, each once, in first-use order.
    pub blobs: Vec<Descriptor>,
    /// The `org.opencontainers.image.ref.name` values that point at `top`.
    pub tags: Vec<String>,
}

/// An OCI image layout on disk, opened for reading.
#[derive(Debug, Clone)]
pub struct Layout {
    root: PathBuf,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawDescriptor {
    media_type: Option<String>,
    digest: String,
    size: u64,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
    platform: Option<RawPlatform>,
    /// Set on an artifact (an SBOM) listed beside the images.
    artifact_type: Option<String>,
}

#[derive(Deserialize)]
struct RawPlatform {
    os: String,
    architecture: String,
    variant: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawIndex {
    schema_version: u32,
    media_type: Option<String>,
    #[serde(default)]
    manifests: Vec<RawDescriptor>,
    // Present in image manifests only.
    config: Option<RawDescriptor>,
    #[serde(default)]
    layers: Vec<RawDescriptor>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawLayoutFile {
    image_layout_version: String,
}

impl Layout {
    /// Open the layout at `root`, checking its `oci-layout` marker.
    pub fn open(root: &Path) -> Result<Self> {
        let marker = root.join(OCI_LAYOUT_FILE);
        let bytes = match read_in_layout(&marker) {
            Ok(b) => b,
            Err(LayoutError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                return Err(LayoutError::NotALayout(root.to_path_buf()))
            }
            Err(e) => return Err(e),
        };
        for dir in [root.join("blobs"), root.join("blobs/sha256")] {
            if fs::symlink_metadata(&dir).is_ok_and(|m| m.file_type().is_symlink()) {
                return Err(LayoutError::Symlink(dir));
            }
        }
        let file: RawLayoutFile =
            serde_json::from_slice(&bytes).map_err(|source| LayoutError::Json {
                path: marker.clone(),
                source,
            })?;
        if !file.image_layout_version.starts_with("1.") {
            return Err(LayoutError::Unsupported {
                path: marker,
                reason: format!("imageLayoutVersion {}", file.image_layout_version),
            });
        }
        Ok(Layout {
            root: root.to_path_buf(),
        })
    }

    /// The layout's directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the blob named `digest` lives. Safe by construction: a [`Digest`] is only hex.
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root.join("blobs/sha256").join(digest.hex())
    }

    /// The top-level annotations of `index.json` (where ironstar records the repository the
    /// image's definition names: [`annotation::REPOSITORY`]).
    pub fn index_annotations(&self) -> Result<BTreeMap<String, String>> {
        #[derive(Deserialize)]
        struct Top {
            #[serde(default)]
            annotations: BTreeMap<String, String>,
        }
        let path = self.root.join("index.json");
        let bytes = fs::read(&path).map_err(io_err(&path))?;
        Ok(parse_json::<Top>(&path, &bytes)?.annotations)
    }

    /// The descriptors of `index.json`.
    pub fn entries(&self) -> Result<Vec<Descriptor>> {
        let path = self.root.join("index.json");
        let bytes = read_in_layout(&path)?;
        let raw = parse_json::<RawIndex>(&path, &bytes)?;
        if raw.schema_version != 2 {
            return Err(LayoutError::Unsupported {
                path,
                reason: format!("schemaVersion {}", raw.schema_version),
            });
        }
        // Artifacts beside the images (SBOMs: [`crate::sbom::artifact`]) and signature manifests
        // ([`crate::sign::layout`]) are not images.
        raw.manifests
            .into_iter()
            .filter(|d| d.artifact_type.is_none() && !is_signature_entry(d))
            .map(|d| descriptor(&path, d))
            .collect()
    }

    /// Resolve the image tagged `tag` (or the only image, when `tag` is `None`) and read and verify
    /// its index and manifests. Blobs are listed, not read: [`verify_blob`](Self::verify_blob)
    /// checks one.
    pub fn resolve(&self, tag: Option<&str>) -> Result<ResolvedImage> {
        let entries = self.entries()?;
        let chosen = match tag {
            Some(t) => entries
                .iter()
                .find(|d| d.annotations.get(annotation::REF_NAME).map(String::as_str) == Some(t))
                .ok_or_else(|| LayoutError::NoSuchTag {
                    layout: self.root.clone(),
                    tag: t.to_string(),
                    present: tags_of(&entries).join(", "),
                })?,
            None => {
                let first = entries.first().ok_or_else(|| LayoutError::Unsupported {
                    path: self.root.join("index.json"),
                    reason: "it lists no image".into(),
                })?;
                if entries.iter().any(|d| d.digest != first.digest) {
                    return Err(LayoutError::Ambiguous(self.root.clone()));
                }
                first
            }
        };
        let tags = entries
            .iter()
            .filter(|d| d.digest == chosen.digest)
            .filter_map(|d| d.annotations.get(annotation::REF_NAME).cloned())
            .collect();
        let top = self.read_manifest(chosen)?;
        let top_raw = parse_json::<RawIndex>(&self.blob_path(&chosen.digest), &top.bytes)?;
        let mut manifests = Vec::new();
        let mut blobs = Vec::new();
        let mut seen = BTreeSet::new();
        let mut add_blobs = |path: &Path, raw: RawIndex| -> Result<()> {
            for d in raw.config.into_iter().chain(raw.layers) {
                let d = descriptor(path, d)?;
                if seen.insert(d.digest.clone()) {
                    blobs.push(d);
                }
            }
            Ok(())
        };
        if is_index(&chosen.media_type, &top_raw) {
            for child in &top_raw.manifests {
                let child = descriptor(&self.blob_path(&chosen.digest), clone_raw(child))?;
                let m = self.read_manifest(&child)?;
                let path = self.blob_path(&child.digest);
                let raw = parse_json::<RawIndex>(&path, &m.bytes)?;
                if !raw.manifests.is_empty() {
                    return Err(LayoutError::Unsupported {
                        path,
                        reason: "nested image indexes".into(),
                    });
                }
                add_blobs(&path, raw)?;
                manifests.push(m);
            }
        } else {
            add_blobs(&self.blob_path(&chosen.digest), top_raw)?;
        }
        Ok(ResolvedImage {
            top,
            manifests,
            blobs,
            tags,
        })
    }

    /// Read a manifest or index blob, checking its size and digest.
    pub fn read_manifest(&self, d: &Descriptor) -> Result<ManifestBlob> {
        if d.size > MAX_MANIFEST_SIZE {
            return Err(self.bad(d, format!("{} bytes is too large for a manifest", d.size)));
        }
        let path = self.blob_path(&d.digest);
        let mut bytes = Vec::new();
        // One byte past the descriptor's size is enough to tell it is wrong.
        io::Read::read_to_end(
            &mut io::Read::take(self.open_blob_file(d)?, d.size + 1),
            &mut bytes,
        )
        .map_err(io_err(&path))?;
        self.check(d, bytes.len() as u64, &Digest::of(&bytes))?;
        Ok(ManifestBlob {
            descriptor: d.clone(),
            bytes,
        })
    }

    /// Stream a blob through SHA-256 and check it against its descriptor.
    pub fn verify_blob(&self, d: &Descriptor) -> Result<()> {
        let path = self.blob_path(&d.digest);
        let file = self.open_blob_file(d)?;
        let (digest, size) =
            crate::digest::digest_reader(io::BufReader::with_capacity(1 << 20, file))
                .map_err(io_err(&path))?;
        self.check(d, size, &digest)
    }

    /// Open a blob for reading after checking its size on disk.
    pub fn open_blob(&self, d: &Descriptor) -> Result<File> {
        let path = self.blob_path(&d.digest);
        let file = self.open_blob_file(d)?;
        let len = file.metadata().map_err(io_err(&path))?.len();
        if len != d.size {
            return Err(self.bad(d, format!("is {len} bytes, its descriptor says {}", d.size)));
        }
        Ok(file)
    }

    fn check(&self, d: &Descriptor, size: u64, digest: &Digest) -> Result<()> {
        if size != d.size {
            return Err(self.bad(
                d,
                format!("is {size} bytes, its descriptor says {}", d.size),
            ));
        }
        if *digest != d.digest {
            return Err(self.bad(d, format!("content hashes to {digest}")));
        }
        Ok(())
    }

    fn bad(&self, d: &Descriptor, problem: String) -> LayoutError {
        LayoutError::BadBlob {
            layout: self.root.clone(),
            digest: d.digest.clone(),
            problem,
        }
    }

    /// The blob's file, never through a link: see [`open_in_layout`].
    fn open_blob_file(&self, d: &Descriptor) -> Result<File> {
        match open_in_layout(&self.blob_path(&d.digest)) {
            Err(LayoutError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                Err(self.bad(d, "is missing".into()))
            }
            other => other,
        }
    }
}

/// An entry tagged as cosign tags signatures and attestations, `sha256-<64 hex>.sig` or
/// `.att`: no image.
fn is_signature_entry(d: &RawDescriptor) -> bool {
    d.annotations
        .get(annotation::REF_NAME)
        .and_then(|t| {
            let t = t.strip_prefix("sha256-")?;
            t.strip_suffix(".sig").or_else(|| t.strip_suffix(".att"))
        })
        .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn tags_of(entries: &[Descriptor]) -> Vec<String> {
    entries
        .iter()
        .filter_map(|d| d.annotations.get(annotation::REF_NAME).cloned())
        .collect()
}

fn is_index(mt: &str, raw: &RawIndex) -> bool {
    matches!(mt, media_type::INDEX | media_type::DOCKER_LIST)
        || raw.media_type.as_deref() == Some(media_type::INDEX)
        || (raw.config.is_none() && !raw.manifests.is_empty())
}

fn clone_raw(d: &RawDescriptor) -> RawDescriptor {
    RawDescriptor {
        media_type: d.media_type.clone(),
        digest: d.digest.clone(),
        size: d.size,
        annotations: d.annotations.clone(),
        platform: d.platform.as_ref().map(|p| RawPlatform {
            os: p.os.clone(),
            architecture: p.architecture.clone(),
            variant: p.variant.clone(),
        }),
        artifact_type: d.artifact_type.clone(),
    }
}

fn parse_json<T: serde::de::DeserializeOwned>(path: &Path, bytes: &[u8]) -> Result<T> {
    let v: T = serde_json::from_slice(bytes).map_err(|source| LayoutError::Json {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(v)
}

fn descriptor(path: &Path, d: RawDescriptor) -> Result<Descriptor> {
    let digest = Digest::parse(&d.digest).map_err(|source| LayoutError::Digest {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(Descriptor {
        media_type: d.media_type.unwrap_or_default(),
        digest,
        size: d.size,
        annotations: d.annotations,
        platform: d.platform.map(|p| match p.variant {
            Some(v) => format!("{}/{}/{v}", p.os, p.architecture),
            None => format!("{}/{}", p.os, p.architecture),
        }),
    })
}
