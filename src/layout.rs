//! The OCI image layout on disk (`oci-layout`, `index.json`, `blobs/sha256/…`).
//!
//! [`LayoutWriter`] builds a layout in a temporary directory beside its destination and renames it
//! into place only when complete, so the destination holds the previous layout or the new one,
//! never half of one. [`Layout`] reads a layout and trusts nothing in it: every digest must be
//! `sha256:` + 64 hex (a digest names a file, so a looser one could name a path), and every blob
//! read is checked against its digest and size.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::digest::{Digest, HashWriter};

pub const OCI_LAYOUT_FILE: &str = "oci-layout";
pub const OCI_LAYOUT_CONTENT: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;
pub const MEDIA_TYPE_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const MEDIA_TYPE_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const MEDIA_TYPE_DOCKER_LIST: &str =
    "application/vnd.docker.distribution.manifest.list.v2+json";
pub const MEDIA_TYPE_DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";

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
    #[error("{0} exists and is not an OCI image layout; refusing to replace it (choose another --output)")]
    WouldClobber(PathBuf),
}

type Result<T, E = LayoutError> = std::result::Result<T, E>;

fn io_err(path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> LayoutError {
    let path = path.into();
    move |source| LayoutError::Io { path, source }
}

// ---------------------------------------------------------------------------------------------
// Writing

/// A layout under construction in a temporary directory beside its destination.
pub struct LayoutWriter {
    tmp: Staging,
    output: PathBuf,
}

/// Layout files are world-readable, as skopeo and umoci write them: a layout built by one user
/// (or by a CI step running as root) is read by another.
const FILE_MODE: u32 = 0o644;
const DIR_MODE: u32 = 0o755;

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(io_err(path))
}

/// The temporary directory `.NAME.tmp-XXXXXX` and its lock `.NAME.tmp-XXXXXX.lock`, created
/// first and held (`flock`) while the build lives. Dropped, it removes the directory (unless
/// kept) and then the lock. A temporary directory whose lock is missing or free belongs to a
/// build that was killed.
struct Staging {
    dir: PathBuf,
    lock: PathBuf,
    _held: File,
    keep_dir: bool,
}

impl Staging {
    fn create(parent: &Path, prefix: &str) -> Result<Self> {
        let (held, lock) = tempfile::Builder::new()
            .prefix(prefix)
            .suffix(".lock")
            .tempfile_in(parent)
            .map_err(io_err(parent))?
            .keep()
            .map_err(|e| io_err(parent)(e.error))?;
        rustix::fs::flock(&held, rustix::fs::FlockOperation::NonBlockingLockExclusive)
            .map_err(|e| io_err(&lock)(e.into()))?;
        let name = lock.to_string_lossy();
        let dir = PathBuf::from(name.strip_suffix(".lock").unwrap_or(&name));
        let mut staging = Staging {
            dir,
            lock,
            _held: held,
            keep_dir: true, // not ours until created
        };
        fs::create_dir(&staging.dir).map_err(io_err(&staging.dir))?;
        staging.keep_dir = false;
        Ok(staging)
    }

    fn path(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.keep_dir {
            let _ = fs::remove_dir_all(&self.dir);
        }
        let _ = fs::remove_file(&self.lock);
    }
}

impl LayoutWriter {
    /// Start a layout that [`commit`](Self::commit) will move to `output`. Refuses an `output`
    /// that exists, is not empty and is not a layout: replacing it would lose someone's files.
    pub fn create(output: &Path) -> Result<Self> {
        check_replaceable(output)?;
        let name = output
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "layout".into());
        let parent = match output.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        fs::create_dir_all(&parent).map_err(io_err(&parent))?;
        let prefix = format!(".{name}.tmp-");
        remove_stale_temporaries(&parent, &prefix);
        let tmp = Staging::create(&parent, &prefix)?;
        let blobs = tmp.path().join("blobs/sha256");
        fs::create_dir_all(&blobs).map_err(io_err(&blobs))?;
        for d in [tmp.path(), &tmp.path().join("blobs"), &blobs] {
            set_mode(d, DIR_MODE)?;
        }
        let marker = tmp.path().join(OCI_LAYOUT_FILE);
        fs::write(&marker, OCI_LAYOUT_CONTENT).map_err(io_err(&marker))?;
        set_mode(&marker, FILE_MODE)?;
        Ok(LayoutWriter {
            tmp,
            output: output.to_path_buf(),
        })
    }

    /// A writer for one blob; it is named by its digest when finished.
    pub fn blob_writer(&self) -> Result<BlobWriter> {
        let dir = self.tmp.path().join("blobs/sha256");
        let (file, tmp_path) = tempfile::Builder::new()
            .prefix(".partial-")
            .tempfile_in(&dir)
            .map_err(io_err(&dir))?
            .keep()
            .map_err(|e| LayoutError::Io {
                path: dir.clone(),
                source: e.error,
            })?;
        set_mode(&tmp_path, FILE_MODE)?;
        Ok(BlobWriter {
            inner: HashWriter::new(BufWriter::with_capacity(1 << 20, file)),
            tmp_path,
            dir,
        })
    }

    /// Store `bytes` as a blob and return its digest.
    pub fn put_blob(&self, bytes: &[u8]) -> Result<Digest> {
        let mut w = self.blob_writer()?;
        w.write_all(bytes).map_err(io_err(&w.tmp_path))?;
        Ok(w.finish()?.0)
    }

    /// Where the blob `digest` is (or will be) in the layout under construction.
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.tmp.path().join("blobs/sha256").join(digest.hex())
    }

    /// Store a blob already on disk whose digest is known (a cached layer). A blob already in the
    /// layout (two platforms sharing a layer) is left alone: it may be `src` itself, hard-linked,
    /// and copying a file onto itself truncates it.
    pub fn put_blob_file(&self, src: &Path, digest: &Digest) -> Result<()> {
        let dest = self.blob_path(digest);
        let want = fs::metadata(src).map_err(io_err(src))?.len();
        if fs::metadata(&dest).is_ok_and(|m| m.is_file() && m.len() == want) {
            return Ok(());
        }
        // A hard link costs nothing when the cache is on the same file system. It shares the
        // mode with the cache entry, which may predate world-readable layouts: set it.
        match fs::hard_link(src, &dest) {
            Ok(()) => return set_mode(&dest, FILE_MODE),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                // Present but of the wrong size: replace it, never write through it.
                fs::remove_file(&dest).map_err(io_err(&dest))?;
            }
            Err(_) => {}
        }
        // Across file systems: a copy under a temporary name, renamed into place whole.
        let dir = self.tmp.path().join("blobs/sha256");
        let tmp = tempfile::Builder::new()
            .prefix(".partial-")
            .tempfile_in(&dir)
            .map_err(io_err(&dir))?;
        fs::copy(src, tmp.path()).map_err(io_err(src))?;
        set_mode(tmp.path(), FILE_MODE)?;
        tmp.persist(&dest).map_err(|e| io_err(&dest)(e.error))?;
        Ok(())
    }

    /// Write `index.json` and move the finished layout to its destination.
    pub fn commit(mut self, index_json: &[u8]) -> Result<PathBuf> {
        let index = self.tmp.path().join("index.json");
        fs::write(&index, index_json).map_err(io_err(&index))?;
        set_mode(&index, FILE_MODE)?;
        // Moved into place, or on failure removed (by the drop): either way under the lock.
        swap_into_place(self.tmp.path(), &self.output)?;
        self.tmp.keep_dir = true;
        Ok(std::mem::take(&mut self.output))
    }
}

fn check_replaceable(output: &Path) -> Result<()> {
    match fs::symlink_metadata(output) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err(output)(e)),
        Ok(m) if m.is_dir() => {
            let empty = fs::read_dir(output)
                .map_err(io_err(output))?
                .next()
                .is_none();
            if empty || output.join(OCI_LAYOUT_FILE).is_file() {
                Ok(())
            } else {
                Err(LayoutError::WouldClobber(output.to_path_buf()))
            }
        }
        Ok(_) => Err(LayoutError::WouldClobber(output.to_path_buf())),
    }
}

/// Put `staged` at `output`. An existing layout is swapped with the new one in one step
/// (`renameat2` with `RENAME_EXCHANGE`) and then removed; where the system cannot exchange, it is
/// moved aside first and removed after. A kill at any point leaves either the old or the new
/// layout at `output` (in the fallback, for an instant between two renames, nothing), never a
/// mixture.
fn swap_into_place(staged: &Path, output: &Path) -> Result<()> {
    if fs::symlink_metadata(output).is_err() {
        return fs::rename(staged, output).map_err(io_err(output));
    }
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        use rustix::fs::{renameat_with, RenameFlags, CWD};
        if renameat_with(CWD, staged, CWD, output, RenameFlags::EXCHANGE).is_ok() {
            let _ = fs::remove_dir_all(staged); // now the previous layout
            return Ok(());
        }
    }
    let aside = staged.with_extension("old");
    fs::rename(output, &aside).map_err(io_err(output))?;
    if let Err(e) = fs::rename(staged, output) {
        let _ = fs::rename(&aside, output);
        return Err(io_err(output)(e));
    }
    let _ = fs::remove_dir_all(&aside);
    Ok(())
}

/// Remove the temporaries (`PREFIX…` directories and their `.lock` files) of builds that were
/// killed: those whose lock is missing or not held. A live build holds its lock, whatever its
/// PID namespace or system (no `/proc` needed).
fn remove_stale_temporaries(parent: &Path, prefix: &str) {
    let Ok(entries) = fs::read_dir(parent) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.starts_with(prefix) {
            continue;
        }
        let (dir, lock) = match name.strip_suffix(".lock") {
            Some(d) => (parent.join(d), e.path()),
            None => (e.path(), parent.join(format!("{name}.lock"))),
        };
        let held = File::open(&lock).is_ok_and(|f| {
            rustix::fs::flock(&f, rustix::fs::FlockOperation::NonBlockingLockShared).is_err()
        });
        // A lock without its directory may be one being taken this instant: left alone
        // unless old.
        let old = || {
            fs::metadata(&lock)
                .and_then(|m| m.modified())
                .is_ok_and(|t| t.elapsed().unwrap_or_default().as_secs() > 60)
        };
        if !held && (dir.exists() || old()) {
            let _ = fs::remove_dir_all(&dir);
            let _ = fs::remove_file(&lock);
        }
    }
}

/// A blob being written; hashed on the way to disk.
pub struct BlobWriter {
    inner: HashWriter<BufWriter<File>>,
    tmp_path: PathBuf,
    dir: PathBuf,
}

impl BlobWriter {
    /// Flush, name the blob by its digest, and return digest and size.
    pub fn finish(self) -> Result<(Digest, u64)> {
        let (buf, digest, size) = self.inner.finish();
        buf.into_inner()
            .map_err(|e| io_err(&self.tmp_path)(e.into_error()))?;
        let dest = self.dir.join(digest.hex());
        fs::rename(&self.tmp_path, &dest).map_err(io_err(&dest))?;
        Ok((digest, size))
    }
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

// ---------------------------------------------------------------------------------------------
// Reading

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
        let bytes = match fs::read(&marker) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(LayoutError::NotALayout(root.to_path_buf()))
            }
            Err(e) => return Err(io_err(&marker)(e)),
        };
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

    /// Where the blob named `digest` lives. Safe by construction: a [`Digest`] is only hex.
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root.join("blobs/sha256").join(digest.hex())
    }

    /// The descriptors of `index.json`.
    pub fn entries(&self) -> Result<Vec<Descriptor>> {
        let path = self.root.join("index.json");
        let bytes = fs::read(&path).map_err(io_err(&path))?;
        let raw = parse_json::<RawIndex>(&path, &bytes)?;
        if raw.schema_version != 2 {
            return Err(LayoutError::Unsupported {
                path,
                reason: format!("schemaVersion {}", raw.schema_version),
            });
        }
        raw.manifests
            .into_iter()
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
                .find(|d| d.annotations.get(ANNOTATION_REF_NAME).map(String::as_str) == Some(t))
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
            .filter_map(|d| d.annotations.get(ANNOTATION_REF_NAME).cloned())
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
        let bytes = fs::read(&path).map_err(|e| self.missing_or_io(d, &path, e))?;
        self.check(d, bytes.len() as u64, &Digest::of(&bytes))?;
        Ok(ManifestBlob {
            descriptor: d.clone(),
            bytes,
        })
    }

    /// Stream a blob through SHA-256 and check it against its descriptor.
    pub fn verify_blob(&self, d: &Descriptor) -> Result<()> {
        let path = self.blob_path(&d.digest);
        let file = File::open(&path).map_err(|e| self.missing_or_io(d, &path, e))?;
        let (digest, size) =
            crate::digest::digest_reader(io::BufReader::with_capacity(1 << 20, file))
                .map_err(io_err(&path))?;
        self.check(d, size, &digest)
    }

    /// Open a blob for reading after checking its size on disk.
    pub fn open_blob(&self, d: &Descriptor) -> Result<File> {
        let path = self.blob_path(&d.digest);
        let file = File::open(&path).map_err(|e| self.missing_or_io(d, &path, e))?;
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

    fn missing_or_io(&self, d: &Descriptor, path: &Path, e: io::Error) -> LayoutError {
        if e.kind() == io::ErrorKind::NotFound {
            self.bad(d, "is missing".into())
        } else {
            io_err(path)(e)
        }
    }
}

fn tags_of(entries: &[Descriptor]) -> Vec<String> {
    entries
        .iter()
        .filter_map(|d| d.annotations.get(ANNOTATION_REF_NAME).cloned())
        .collect()
}

fn is_index(media_type: &str, raw: &RawIndex) -> bool {
    matches!(media_type, MEDIA_TYPE_INDEX | MEDIA_TYPE_DOCKER_LIST)
        || raw.media_type.as_deref() == Some(MEDIA_TYPE_INDEX)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_to_clobber_a_non_layout_directory() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("precious.txt"), "keep me").unwrap();
        let err = LayoutWriter::create(dir.path()).err().unwrap();
        assert!(matches!(err, LayoutError::WouldClobber(_)), "{err}");
        assert!(dir.path().join("precious.txt").exists());
    }

    #[test]
    fn commit_replaces_a_previous_layout_and_drop_leaves_nothing() {
        let parent = tempfile::tempdir().unwrap();
        let out = parent.path().join("img");
        let w = LayoutWriter::create(&out).unwrap();
        let d = w.put_blob(b"one").unwrap();
        w.commit(b"{\"schemaVersion\":2,\"manifests\":[]}").unwrap();
        assert!(out.join("blobs/sha256").join(d.hex()).is_file());

        // A second writer dropped without commit leaves the first layout as it was.
        let w = LayoutWriter::create(&out).unwrap();
        w.put_blob(b"two").unwrap();
        drop(w);
        assert!(out.join("blobs/sha256").join(d.hex()).is_file());
        let names: Vec<_> = fs::read_dir(parent.path()).unwrap().flatten().collect();
        assert_eq!(names.len(), 1, "temporaries left: {names:?}");

        let w = LayoutWriter::create(&out).unwrap();
        let d2 = w.put_blob(b"two").unwrap();
        w.commit(b"{\"schemaVersion\":2,\"manifests\":[]}").unwrap();
        assert!(!out.join("blobs/sha256").join(d.hex()).exists());
        assert!(out.join("blobs/sha256").join(d2.hex()).is_file());
        // The previous layout, swapped out, is gone too.
        let names: Vec<_> = fs::read_dir(parent.path()).unwrap().flatten().collect();
        assert_eq!(names.len(), 1, "left beside the layout: {names:?}");
    }

    #[test]
    fn layout_files_are_world_readable() {
        use std::os::unix::fs::PermissionsExt as _;
        let parent = tempfile::tempdir().unwrap();
        let out = parent.path().join("img");
        let w = LayoutWriter::create(&out).unwrap();
        w.put_blob(b"one").unwrap();
        let cached = parent.path().join("cached");
        fs::write(&cached, b"two").unwrap();
        fs::set_permissions(&cached, fs::Permissions::from_mode(0o600)).unwrap();
        w.put_blob_file(&cached, &Digest::of(b"two")).unwrap();
        w.commit(b"{\"schemaVersion\":2,\"manifests\":[]}").unwrap();
        let mut seen = 0;
        let mut stack = vec![out.clone()];
        while let Some(p) = stack.pop() {
            let m = fs::metadata(&p).unwrap();
            let mode = m.permissions().mode() & 0o777;
            let want = if m.is_dir() { 0o755 } else { 0o644 };
            assert_eq!(mode, want, "{}", p.display());
            if m.is_dir() {
                stack.extend(fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
            }
            seen += 1;
        }
        assert_eq!(
            seen, 7,
            "layout, oci-layout, index.json, blobs, sha256, two blobs"
        );
    }

    #[test]
    fn stale_temporaries_are_told_by_their_lock_not_their_pid() {
        let parent = tempfile::tempdir().unwrap();
        let out = parent.path().join("img");
        // A live build whose PID is not ours to see (another PID namespace): its lock is held.
        let live = parent.path().join(".img.tmp-999999999.abc");
        fs::create_dir(&live).unwrap();
        let lock = File::create(parent.path().join(".img.tmp-999999999.abc.lock")).unwrap();
        rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive).unwrap();
        // A killed build whose PID was reused by a live process (PID 1): no lock is held.
        let killed = parent.path().join(".img.tmp-1.def");
        fs::create_dir(&killed).unwrap();
        fs::write(parent.path().join(".img.tmp-1.def.lock"), b"").unwrap();
        let w = LayoutWriter::create(&out).unwrap();
        assert!(live.exists(), "a live build's temporary was removed");
        assert!(!killed.exists(), "a killed build's temporary stayed");
        w.commit(b"{\"schemaVersion\":2,\"manifests\":[]}").unwrap();
        drop(lock);
        let _ = LayoutWriter::create(&out).unwrap();
        let left: Vec<_> = fs::read_dir(parent.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(left, ["img"], "left beside the layout: {left:?}");
    }
}
