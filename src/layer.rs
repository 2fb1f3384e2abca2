//! The layer: a deterministic tar stream, compressed in parallel ([`crate::compress`]: gzip or
//! zstd), hashed on the way.
//!
//! Determinism: entries are sorted, every header field is set (numeric owner, 0:0 unless an entry
//! says otherwise, no user or group names, mtime from `SOURCE_DATE_EPOCH`), and the compressed
//! bytes depend only on the tar bytes (see the encoders for how).

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{self, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::compress::Compression;
use crate::digest::{Digest, HashWriter};
use crate::spec::ImagePath;

/// What a layer holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    File {
        source: PathBuf,
    },
    Dir,
    /// A file whose bytes ironstar holds (the rootfs items' data, [`crate::rootfs`]).
    Data(Arc<[u8]>),
    /// A symbolic link; `target` as written (relative, for the time zones' aliases).
    Symlink {
        target: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub path: ImagePath,
    pub kind: EntryKind,
    pub mode: u32,
    /// Numeric owner; root's by default (what every entry had before owners existed, so the
    /// tar bytes, and digests, of such entries are unchanged).
    pub owner: Owner,
}

/// A numeric owner, `uid:gid`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Owner {
    pub uid: u32,
    pub gid: u32,
}

impl Entry {
    /// A file of the build machine, owned by root.
    pub fn file(path: ImagePath, source: PathBuf, mode: u32) -> Self {
        Entry::root_owned(path, EntryKind::File { source }, mode)
    }

    /// An empty directory, owned by root.
    pub fn dir(path: ImagePath, mode: u32) -> Self {
        Entry::root_owned(path, EntryKind::Dir, mode)
    }

    fn root_owned(path: ImagePath, kind: EntryKind, mode: u32) -> Self {
        Entry {
            path,
            kind,
            mode,
            owner: Owner::default(),
        }
    }
}

/// A layer's content and how to encode it.
#[derive(Debug, Clone)]
pub struct Recipe {
    pub entries: Vec<Entry>,
    /// mtime of every entry, from `SOURCE_DATE_EPOCH`.
    pub mtime: u64,
    pub compression: Compression,
}

/// What writing a layer produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    /// SHA-256 of the uncompressed tar.
    pub diff_id: Digest,
    pub tar_size: u64,
}

impl Recipe {
    /// Entries sorted by path, with every missing parent directory added (mode 0755), and the
    /// same path refused twice.
    pub fn new(
        mut entries: Vec<Entry>,
        mtime: u64,
        compression: Compression,
    ) -> Result<Self, String> {
        // Sets, not scans: the time zones are ~600 entries, and pairwise checks cost ~50 ms.
        let mut known: BTreeSet<ImagePath> = entries.iter().map(|e| e.path.clone()).collect();
        let mut parents = Vec::new();
        for e in &entries {
            for a in e.path.ancestors() {
                if known.insert(a.clone()) {
                    parents.push(Entry::dir(a, 0o755));
                }
            }
        }
        entries.extend(parents);
        entries.sort_by(|a, b| a.path.cmp(&b.path));
        entries.dedup_by(|a, b| a.path == b.path && a.kind == EntryKind::Dir && a == b);
        if let Some(w) = entries.windows(2).find(|w| w[0].path == w[1].path) {
            return Err(format!("{} is put in the image twice", w[0].path));
        }
        let paths: BTreeSet<&str> = entries.iter().map(|e| e.path.relative()).collect();
        if let Some(e) = entries.iter().find(|e| {
            let inside = format!("{}/", e.path.relative());
            e.kind != EntryKind::Dir
                && paths
                    .range(inside.as_str()..)
                    .next()
                    .is_some_and(|p| p.starts_with(&inside))
        }) {
            return Err(format!(
                "{} is a file but other paths are inside it",
                e.path
            ));
        }
        Ok(Recipe {
            entries,
            mtime,
            compression,
        })
    }

    /// Write the compressed layer to `out`, returning the tar's digest and size.
    pub fn write(&self, out: impl Write) -> io::Result<Written> {
        let (encoder, written) = self.write_tar(self.compression.encoder(out))?;
        encoder.finish()?;
        Ok(written)
    }

    /// The tar's digest and size alone, without compressing: what the layer cache is keyed by.
    pub fn diff_id(&self) -> io::Result<Written> {
        Ok(self.write_tar(io::sink())?.1)
    }

    /// Write the uncompressed tar stream to `out`, hashing it on the way.
    fn write_tar<W: Write>(&self, out: W) -> io::Result<(W, Written)> {
        let mut tar = tar::Builder::new(HashWriter::new(out));
        tar.sparse(false);
        for e in &self.entries {
            let mut h = tar::Header::new_gnu();
            h.set_mode(e.mode);
            h.set_uid(e.owner.uid.into());
            h.set_gid(e.owner.gid.into());
            h.set_mtime(self.mtime);
            h.set_username("")?;
            h.set_groupname("")?;
            h.set_device_major(0)?;
            h.set_device_minor(0)?;
            match &e.kind {
                EntryKind::Dir => {
                    h.set_entry_type(tar::EntryType::Directory);
                    h.set_size(0);
                    tar.append_data(&mut h, format!("{}/", e.path.relative()), io::empty())?;
                }
                EntryKind::Data(bytes) => {
                    h.set_entry_type(tar::EntryType::Regular);
                    h.set_size(bytes.len() as u64);
                    tar.append_data(&mut h, e.path.relative(), &bytes[..])?;
                }
                EntryKind::Symlink { target } => {
                    h.set_entry_type(tar::EntryType::Symlink);
                    h.set_size(0);
                    tar.append_link(&mut h, e.path.relative(), target)?;
                }
                EntryKind::File { source } => {
                    let f = File::open(source).map_err(|err| with_path(source, err))?;
                    let len = f.metadata()?.len();
                    h.set_entry_type(tar::EntryType::Regular);
                    h.set_size(len);
                    // Exactly `len` bytes: a file that grows while read must not shift the stream.
                    let reader = io::Read::take(BufReader::with_capacity(1 << 20, f), len);
                    let mut counted = CountingReader {
                        inner: reader,
                        n: 0,
                    };
                    tar.append_data(&mut h, e.path.relative(), &mut counted)?;
                    if counted.n != len {
                        return Err(with_path(
                            source,
                            io::Error::new(
                                io::ErrorKind::UnexpectedEof,
                                "file shrank while being read",
                            ),
                        ));
                    }
                }
            }
        }
        let (out, diff_id, tar_size) = tar.into_inner()?.finish();
        Ok((out, Written { diff_id, tar_size }))
    }
}

fn with_path(path: &Path, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

struct CountingReader<R> {
    inner: R,
    n: u64,
}

impl<R: io::Read> io::Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.n += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recipes_add_parents_and_refuse_twice_and_files_with_paths_inside() {
        let p = |s: &str| ImagePath::parse(s).unwrap();
        let data = |s: &str| Entry {
            path: p(s),
            kind: EntryKind::Data(Arc::from(&b"x"[..])),
            mode: 0o644,
            owner: Owner::default(),
        };
        let r = Recipe::new(
            vec![data("/a/b-c"), data("/a/b/c"), Entry::dir(p("/a"), 0o700)],
            0,
            Compression::default(),
        )
        .unwrap();
        let got: Vec<(&str, u32)> = r
            .entries
            .iter()
            .map(|e| (e.path.relative(), e.mode))
            .collect();
        assert_eq!(
            got,
            [
                ("a", 0o700),
                ("a/b", 0o755),
                ("a/b-c", 0o644),
                ("a/b/c", 0o644)
            ]
        );
        let e =
            Recipe::new(vec![data("/a/b"), data("/a/b")], 0, Compression::default()).unwrap_err();
        assert!(e.contains("twice"), "{e}");
        let e = Recipe::new(
            vec![data("/a/b-c"), data("/a/b"), data("/a/b/c")],
            0,
            Compression::default(),
        )
        .unwrap_err();
        assert_eq!(e, "/a/b is a file but other paths are inside it");
        assert!(Recipe::new(
            vec![data("/a/b"), data("/a/b-c")],
            0,
            Compression::default()
        )
        .is_ok());
    }
}

#[cfg(test)]
mod golden {
    use super::*;
    use crate::compress::Algorithm;

    /// A fixed layer's tar digest and its compressed digest.
    fn digests(compression: Compression) -> (String, String) {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("app");
        let data: Vec<u8> = (0..3_000_000u32)
            .map(|i| {
                (i.wrapping_mul(2_654_435_761) >> 24) as u8 & if i % 7 == 0 { 0xff } else { 0x0f }
            })
            .collect();
        std::fs::write(&file, &data).unwrap();
        let entries = vec![
            Entry::file(ImagePath::parse("/usr/bin/app").unwrap(), file, 0o755),
            Entry::dir(ImagePath::parse("/tmp").unwrap(), 0o1777),
        ];
        let recipe = Recipe::new(entries, 1_700_000_000, compression).unwrap();
        let mut out = crate::digest::HashWriter::new(Vec::new());
        let w = recipe.write(&mut out).unwrap();
        let (bytes, digest, size) = out.finish();
        assert_eq!(bytes.len() as u64, size);
        (w.diff_id.to_string(), digest.to_string())
    }

    const DIFF_ID: &str = "sha256:3ffa65e40f697f704ea7e3d1f35402037656d511eea3c7b8ffe90c76876b25a4";

    /// The digest of a fixed layer, committed: a crate upgrade or change that moves it moves every
    /// image digest, and must be deliberate (then update these values and say so).
    #[test]
    fn fixed_input_gives_the_committed_digest() {
        assert_eq!(
            digests(Compression::default()),
            (
                DIFF_ID.to_string(),
                "sha256:b74e6d65ef91073114879066bd2e9272daea93d0863456fc74309f1a1aa89336".into()
            )
        );
    }

    /// The same for zstd at its default level: libzstd's version is pinned by zstd-sys in
    /// Cargo.lock; an upgrade that changes its output moves this.
    #[test]
    fn fixed_input_gives_the_committed_zstd_digest() {
        assert_eq!(
            digests(Compression::of(Algorithm::Zstd)),
            (
                DIFF_ID.to_string(),
                "sha256:20b355f6a6f9467a047defe8798ef7ebf0d4f88f4536fd5a6ee49192568833a5".into()
            )
        );
    }
}
