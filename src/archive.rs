//! Archives that container engines load: a docker-archive (the `docker save` format: one platform's
//! config and layers, named by `manifest.json`) and an oci-archive (a tarred OCI image layout, every
//! platform). Both are written deterministically (entries sorted, fixed headers, mtime 0), streamed
//! from the layout's blobs, and every blob is hashed against its name on the way out.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::path::PathBuf;

use oci_spec::image::MediaType;
use serde::Deserialize;

use crate::digest::{Digest, HashWriter};
use crate::image::{self, BlobRef};
use crate::layout::{Descriptor, Layout, LayoutError, ManifestBlob, ResolvedImage};
use crate::layout::{OCI_LAYOUT_CONTENT, OCI_LAYOUT_FILE};
use crate::oci::{annotation, media_type};
use crate::platform::Platform;

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error(transparent)]
    Layout(#[from] LayoutError),
    #[error("{layout}: no image for {platform} (platforms present: {present}); pass --platform")]
    NoPlatform {
        layout: PathBuf,
        platform: String,
        present: String,
    },
    #[error("{layout}: blob {digest}: {problem}")]
    Malformed {
        layout: PathBuf,
        digest: String,
        problem: String,
    },
    #[error(
        "blob {digest} in {layout} does not hash to its name; the layout is corrupt, rebuild it"
    )]
    Corrupt { layout: PathBuf, digest: String },
    #[error("writing the archive: {0}")]
    Write(#[source] io::Error),
    #[error("{0}")]
    Image(#[from] image::ImageError),
}

type Result<T> = std::result::Result<T, ArchiveError>;

/// An image config is a few KiB; more is not one.
const MAX_CONFIG_SIZE: u64 = 4 << 20;

/// One platform's image of a layout: its manifest, config and layers.
#[derive(Debug, Clone)]
pub struct PlatformImage {
    pub platform: &'static Platform,
    pub manifest: ManifestBlob,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
    /// The config's `org.opencontainers.image.title` label (ironstar writes the image's name).
    pub title: Option<String>,
}

#[derive(Deserialize)]
struct RawManifest {
    config: RawBlob,
    #[serde(default)]
    layers: Vec<RawBlob>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawBlob {
    media_type: Option<String>,
    digest: String,
    size: u64,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct RawConfig {
    os: String,
    architecture: String,
    variant: Option<String>,
    #[serde(default)]
    config: RawRunConfig,
}

#[derive(Deserialize, Default)]
struct RawRunConfig {
    #[serde(rename = "Labels", default)]
    labels: Option<BTreeMap<String, String>>,
}

/// The platform `std::env::consts::ARCH` runs natively, if ironstar knows it.
pub fn host_platform() -> Option<&'static Platform> {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "linux/amd64",
        "aarch64" => "linux/arm64",
        "x86" => "linux/386",
        "riscv64" => "linux/riscv64",
        "powerpc64" => "linux/ppc64le",
        "s390x" => "linux/s390x",
        "arm" => "linux/arm/v7",
        _ => return None,
    };
    Platform::parse(arch).ok()
}

/// The image of `resolved` for `platform`, chosen by what each config says (so a layout whose tag
/// names a single manifest works too).
pub fn select(
    layout: &Layout,
    resolved: &ResolvedImage,
    platform: &'static Platform,
) -> Result<PlatformImage> {
    let candidates = match resolved.manifests.is_empty() {
        true => std::slice::from_ref(&resolved.top),
        false => &resolved.manifests[..],
    };
    let mut present = Vec::new();
    for m in candidates {
        let malformed = |problem: String| ArchiveError::Malformed {
            layout: layout.root().to_path_buf(),
            digest: m.descriptor.digest.to_string(),
            problem,
        };
        let raw: RawManifest = serde_json::from_slice(&m.bytes)
            .map_err(|e| malformed(format!("not an image manifest: {e}")))?;
        let config = descriptor(layout, raw.config)?;
        let config_bytes = read_small(layout, &config)?;
        let c: RawConfig = serde_json::from_slice(&config_bytes)
            .map_err(|e| malformed(format!("its config is not an image config: {e}")))?;
        let found = match &c.variant {
            Some(v) => format!("{}/{}/{v}", c.os, c.architecture),
            None => format!("{}/{}", c.os, c.architecture),
        };
        if Platform::parse(&found).ok() != Some(platform) {
            present.push(found);
            continue;
        }
        let layers = raw
            .layers
            .into_iter()
            .map(|l| descriptor(layout, l))
            .collect::<Result<Vec<_>>>()?;
        return Ok(PlatformImage {
            platform,
            manifest: m.clone(),
            config,
            layers,
            title: c
                .config
                .labels
                .unwrap_or_default()
                .remove(annotation::TITLE),
        });
    }
    Err(ArchiveError::NoPlatform {
        layout: layout.root().to_path_buf(),
        platform: platform.to_string(),
        present: present.join(", "),
    })
}

/// Write `image` as a docker-archive named `repo_tags` (`name:tag`), as `docker load` and
/// `podman load` read it: `manifest.json` and the blobs under `blobs/sha256/` (the layout of
/// `docker save` since Docker 25). gzip layers stay gzip-compressed (every engine takes that);
/// zstd layers go in as the plain tar they hold, named by its digest (the diff id), as
/// `docker save` writes every layer: engines that cannot read zstd (Docker before 23) load it too,
/// and decompressing zstd costs little.
pub fn write_docker_archive<W: Write>(
    layout: &Layout,
    image: &PlatformImage,
    repo_tags: &[String],
    out: W,
) -> Result<W> {
    let path = |d: &Digest| format!("blobs/sha256/{}", d.hex());
    let mut blobs = vec![image.config.clone()];
    let mut unpacked = Vec::new();
    let mut layers = Vec::new();
    for l in &image.layers {
        if l.media_type == media_type::LAYER_ZSTD {
            let (tar, size) = unzstd(layout, l)?;
            layers.push(path(&tar));
            unpacked.push(Unpacked {
                blob: l.clone(),
                tar,
                size,
            });
        } else {
            layers.push(path(&l.digest));
            blobs.push(l.clone());
        }
    }
    let manifest = serde_json::json!([{
        "Config": path(&image.config.digest),
        "RepoTags": repo_tags,
        "Layers": layers,
    }]);
    let mut files = BTreeMap::new();
    files.insert("manifest.json".to_string(), image::canonical(&manifest));
    write_tar(layout, &files, &blobs, &unpacked, out)
}

/// A zstd layer decompressed into the archive: the blob, and its tar's digest and size.
struct Unpacked {
    blob: Descriptor,
    tar: Digest,
    size: u64,
}

/// Decompress the zstd blob `d`, checking it against its name: the digest and size of the tar.
/// A blob that does not hash to its name is corrupt, whatever the decoder made of it.
fn unzstd(layout: &Layout, d: &Descriptor) -> Result<(Digest, u64)> {
    let mut reader = HashReader::new(layout.open_blob(d)?);
    let mut tar = HashWriter::new(io::sink());
    let decoded = zstd::stream::read::Decoder::new(&mut reader)
        .and_then(|mut decoder| io::copy(&mut decoder, &mut tar));
    // The decoder stops at the last frame's end (or at an error); the digest covers every byte.
    let drained = io::copy(&mut reader, &mut io::sink());
    reader.check(layout, d)?;
    decoded.and(drained).map_err(|e| ArchiveError::Malformed {
        layout: layout.root().to_path_buf(),
        digest: d.digest.to_string(),
        problem: format!("not a zstd stream: {e}"),
    })?;
    let (_, digest, size) = tar.finish();
    Ok((digest, size))
}

/// Write the whole of `resolved` (its index, every platform) as an oci-archive: the OCI layout of
/// that one image, with its tags as `org.opencontainers.image.ref.name`, tarred.
pub fn write_oci_archive<W: Write>(layout: &Layout, resolved: &ResolvedImage, out: W) -> Result<W> {
    let top = &resolved.top.descriptor;
    let top_ref = BlobRef {
        media_type: MediaType::from(top.media_type.as_str()),
        digest: top.digest.clone(),
        size: top.size,
    };
    let tags = match resolved.tags.is_empty() {
        true => vec!["latest".to_string()],
        false => resolved.tags.clone(),
    };
    let mut files = BTreeMap::new();
    files.insert(OCI_LAYOUT_FILE.to_string(), OCI_LAYOUT_CONTENT.to_vec());
    files.insert("index.json".into(), image::layout_index(&top_ref, &tags)?);
    let mut blobs = vec![top.clone()];
    blobs.extend(resolved.manifests.iter().map(|m| m.descriptor.clone()));
    blobs.extend(resolved.blobs.iter().cloned());
    write_tar(layout, &files, &blobs, &[], out)
}

/// The tar: `files`, `blobs/sha256/<hex>` of each blob and of each unpacked layer (once), in path
/// order.
fn write_tar<W: Write>(
    layout: &Layout,
    files: &BTreeMap<String, Vec<u8>>,
    blobs: &[Descriptor],
    unpacked: &[Unpacked],
    out: W,
) -> Result<W> {
    let mut entries: BTreeMap<String, Entry> = files
        .iter()
        .map(|(p, b)| (p.clone(), Entry::Bytes(b)))
        .collect();
    entries.insert("blobs/".into(), Entry::Dir);
    entries.insert("blobs/sha256/".into(), Entry::Dir);
    for d in blobs {
        entries.insert(format!("blobs/sha256/{}", d.digest.hex()), Entry::Blob(d));
    }
    for u in unpacked {
        entries.insert(format!("blobs/sha256/{}", u.tar.hex()), Entry::Unpacked(u));
    }
    let mut tar = tar::Builder::new(out);
    for (path, entry) in entries {
        let (size, mode, kind) = match entry {
            Entry::Dir => (0, 0o755, tar::EntryType::Directory),
            Entry::Bytes(b) => (b.len() as u64, 0o644, tar::EntryType::Regular),
            Entry::Blob(d) => (d.size, 0o644, tar::EntryType::Regular),
            Entry::Unpacked(u) => (u.size, 0o644, tar::EntryType::Regular),
        };
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(kind);
        h.set_size(size);
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        match entry {
            Entry::Dir => tar.append_data(&mut h, &path, io::empty()),
            Entry::Bytes(b) => tar.append_data(&mut h, &path, b),
            Entry::Blob(d) => {
                let mut reader = HashReader::new(layout.open_blob(d)?);
                tar.append_data(&mut h, &path, &mut reader)
                    .map_err(ArchiveError::Write)?;
                reader.check(layout, d)?;
                Ok(())
            }
            Entry::Unpacked(u) => {
                append_unpacked(layout, &mut tar, &mut h, &path, u)?;
                Ok(())
            }
        }
        .map_err(ArchiveError::Write)?;
    }
    tar.into_inner().map_err(ArchiveError::Write)
}

/// Append the tar a zstd layer holds, decompressed again as it goes in; both the blob and what
/// came out are checked against what the first pass found ([`unzstd`]).
fn append_unpacked<W: Write>(
    layout: &Layout,
    tar: &mut tar::Builder<W>,
    h: &mut tar::Header,
    path: &str,
    u: &Unpacked,
) -> Result<()> {
    let malformed = |e: io::Error| ArchiveError::Malformed {
        layout: layout.root().to_path_buf(),
        digest: u.blob.digest.to_string(),
        problem: format!("not a zstd stream: {e}"),
    };
    let mut blob = HashReader::new(layout.open_blob(&u.blob)?);
    let decoder = zstd::stream::read::Decoder::new(&mut blob).map_err(malformed)?;
    let mut out = HashReader::new(decoder.take(u.size));
    tar.append_data(h, path, &mut out)
        .map_err(ArchiveError::Write)?;
    let (_, digest, len) = out.hash.finish();
    drop(out.inner);
    io::copy(&mut blob, &mut io::sink()).map_err(malformed)?;
    blob.check(layout, &u.blob)?;
    match digest == u.tar && len == u.size {
        true => Ok(()),
        false => Err(ArchiveError::Corrupt {
            layout: layout.root().to_path_buf(),
            digest: u.blob.digest.to_string(),
        }),
    }
}

enum Entry<'a> {
    Dir,
    Bytes(&'a [u8]),
    Blob(&'a Descriptor),
    Unpacked(&'a Unpacked),
}

/// A reader that hashes and counts what it yields.
struct HashReader<R> {
    inner: R,
    hash: HashWriter<io::Sink>,
}

impl<R: Read> HashReader<R> {
    fn new(inner: R) -> Self {
        HashReader {
            inner,
            hash: HashWriter::new(io::sink()),
        }
    }
    /// Fail unless what was read is the blob `d` names.
    fn check(self, layout: &Layout, d: &Descriptor) -> Result<()> {
        let (_, digest, len) = self.hash.finish();
        match digest == d.digest && len == d.size {
            true => Ok(()),
            false => Err(ArchiveError::Corrupt {
                layout: layout.root().to_path_buf(),
                digest: d.digest.to_string(),
            }),
        }
    }
}

impl<R: Read> Read for HashReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.write_all(&buf[..n])?;
        Ok(n)
    }
}

fn descriptor(layout: &Layout, raw: RawBlob) -> Result<Descriptor> {
    let digest = Digest::parse(&raw.digest).map_err(|e| ArchiveError::Malformed {
        layout: layout.root().to_path_buf(),
        digest: raw.digest.clone(),
        problem: e.to_string(),
    })?;
    Ok(Descriptor {
        media_type: raw.media_type.unwrap_or_default(),
        digest,
        size: raw.size,
        annotations: BTreeMap::new(),
        platform: None,
    })
}

/// A config blob, read and checked against its descriptor.
fn read_small(layout: &Layout, d: &Descriptor) -> Result<Vec<u8>> {
    let mut reader = HashReader::new(layout.open_blob(d)?);
    let mut bytes = Vec::new();
    reader
        .by_ref()
        .take(MAX_CONFIG_SIZE)
        .read_to_end(&mut bytes)
        .map_err(|e| ArchiveError::Malformed {
            layout: layout.root().to_path_buf(),
            digest: d.digest.to_string(),
            problem: e.to_string(),
        })?;
    reader.check(layout, d)?;
    Ok(bytes)
}
