//! The layer: a deterministic tar stream, gzip-compressed in parallel, hashed on the way.
//!
//! Determinism: entries are sorted, every header field is set (numeric owner, 0:0 unless an entry
//! says otherwise, no user or group names, mtime from `SOURCE_DATE_EPOCH`), and the gzip bytes depend only on the tar bytes. The
//! deflate stream is cut pigz-style into fixed 512 KiB blocks, each compressed by a fresh
//! compressor primed with the previous block's last 32 KiB and ended by a sync flush, so the output
//! is the same whatever the write sizes (zlib-rs output otherwise varies with them) and whatever
//! the number of cores.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{self, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use flate2::{Compress, Compression, FlushCompress, Status};
use rayon::prelude::*;

use crate::digest::{Digest, HashWriter};
use crate::spec::ImagePath;

/// Deflate block size. Changing it changes every layer digest. 512 KiB rather than pigz's 128 KiB:
/// each block sets up a compressor and loads the previous block's last 32 KiB as its dictionary
/// (~5 % of the instructions at 128 KiB, docs/performance.md); a 3 MB binary still makes 6 blocks.
pub const BLOCK_SIZE: usize = 512 << 10;
const WINDOW: usize = 32 << 10;
/// Blocks compressed per parallel batch: two a worker thread (at least 4), so every core has
/// work and memory stays at about 2 × this × BLOCK_SIZE a layer. The batch size never shows in
/// the output: block boundaries are fixed by BLOCK_SIZE alone.
fn batch_blocks() -> usize {
    (2 * rayon::current_num_threads()).max(4)
}
/// The default deflate level, chosen by measurement (docs/performance.md): on real binaries
/// zlib-rs's level 4 takes ~25 % less CPU than level 6 for layers ~3 % larger, still smaller than
/// buildah's at its default (ko's default is level 1, podman's 5, docker's 6).
pub const DEFAULT_LEVEL: u32 = 4;
/// Fixed gzip header: no name, mtime 0, no extra flags, OS "unknown", so no build machine leaks.
const GZIP_HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];

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
    pub level: u32,
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
    pub fn new(mut entries: Vec<Entry>, mtime: u64, level: u32) -> Result<Self, String> {
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
            level,
        })
    }

    /// Write the compressed layer to `out`, returning the tar's digest and size.
    pub fn write(&self, out: impl Write) -> io::Result<Written> {
        let (gz, written) = self.write_tar(ParallelGzip::new(out, self.level))?;
        gz.finish()?;
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

/// A name for everything that decides the compressed bytes of a layer given its tar: the format,
/// the level, and a fingerprint of this build's deflate output on a fixed sample (a block and a
/// bit, so the dictionary carry-over is covered; it is compressed at the start of every cached
/// build, so no larger). A deflate upgrade that moves digests changes the
/// fingerprint, so a layer cache never serves bytes an uncached build would not produce.
pub fn encoding(level: u32) -> String {
    let sample: Vec<u8> = (0..BLOCK_SIZE as u32 + 4099)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 27) as u8 ^ (i / 511) as u8)
        .collect();
    let mut gz = ParallelGzip::new(HashWriter::new(io::sink()), level);
    gz.write_all(&sample).expect("writing to a sink");
    let (_, digest, _) = gz.finish().expect("writing to a sink").finish();
    format!("gzip-{}-{}", level.min(9), &digest.hex()[..16])
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

/// A gzip writer whose output depends only on the bytes written and the level; blocks are
/// compressed in parallel on rayon's pool.
pub struct ParallelGzip<W: Write> {
    out: W,
    level: u32,
    pending: Vec<u8>,
    /// The last 32 KiB of the previous block, the next block's dictionary.
    dict: Vec<u8>,
    crc: crc32fast::Hasher,
    size: u64,
    header_written: bool,
    /// The previous batch's output buffers, reused: fresh ones cost a page fault per 4 KiB.
    spare: Vec<Vec<u8>>,
    /// Bytes gathered before a batch is compressed.
    batch: usize,
}

impl<W: Write> ParallelGzip<W> {
    pub fn new(out: W, level: u32) -> Self {
        let batch = BLOCK_SIZE * batch_blocks();
        ParallelGzip {
            out,
            level: level.min(9),
            pending: Vec::with_capacity(batch),
            dict: Vec::new(),
            crc: crc32fast::Hasher::new(),
            size: 0,
            header_written: false,
            spare: Vec::new(),
            batch,
        }
    }

    /// Compress the full blocks of `pending` (all of it, ending the stream, when `last`).
    fn flush_blocks(&mut self, last: bool) -> io::Result<()> {
        if !self.header_written {
            self.out.write_all(&GZIP_HEADER)?;
            self.header_written = true;
        }
        // Hold back at least one byte until the end, so that the final block (the one finished
        // rather than sync-flushed) is fixed by the total length alone, not by write sizes.
        let whole = if last {
            self.pending.len()
        } else {
            self.pending.len().saturating_sub(1) / BLOCK_SIZE * BLOCK_SIZE
        };
        let data = &self.pending[..whole];
        let blocks: Vec<&[u8]> = if data.is_empty() && last {
            vec![&[][..]]
        } else {
            data.chunks(BLOCK_SIZE).collect()
        };
        let n = blocks.len();
        let dict = &self.dict;
        let level = self.level;
        let mut outs = std::mem::take(&mut self.spare);
        outs.resize_with(n, Vec::new);
        outs.par_iter_mut().enumerate().try_for_each(|(i, out)| {
            let prev: &[u8] = if i == 0 { dict } else { blocks[i - 1] };
            let prev = &prev[prev.len().saturating_sub(WINDOW)..];
            deflate_block(blocks[i], prev, level, last && i == n - 1, out)
        })?;
        for c in &outs {
            self.out.write_all(c)?;
        }
        self.spare = outs;
        if let Some(b) = blocks.last() {
            if !b.is_empty() {
                self.dict.clear();
                self.dict
                    .extend_from_slice(&b[b.len().saturating_sub(WINDOW)..]);
            }
        }
        self.pending.drain(..whole);
        Ok(())
    }

    /// End the stream: last blocks, CRC-32 and size trailer.
    pub fn finish(mut self) -> io::Result<W> {
        self.flush_blocks(true)?;
        self.out
            .write_all(&self.crc.clone().finalize().to_le_bytes())?;
        self.out.write_all(&(self.size as u32).to_le_bytes())?;
        self.out.flush()?;
        Ok(self.out)
    }
}

impl<W: Write> Write for ParallelGzip<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.crc.update(buf);
        self.size += buf.len() as u64;
        self.pending.extend_from_slice(buf);
        if self.pending.len() >= self.batch {
            self.flush_blocks(false)?;
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Raw-deflate one block into `out` (cleared first) with a fresh compressor: sync-flushed
/// (byte-aligned, not final) unless it is the last block of the stream. Fresh, not reset: zlib-rs's
/// reset leaves the hash chains' `prev` links of the last block in place, and they change which
/// matches the next block finds (the output then depends on which thread compressed what).
fn deflate_block(
    block: &[u8],
    dict: &[u8],
    level: u32,
    last: bool,
    out: &mut Vec<u8>,
) -> io::Result<()> {
    let mut c = Compress::new(Compression::new(level), false);
    if !dict.is_empty() {
        c.set_dictionary(dict).map_err(io::Error::other)?;
    }
    let flush = if last {
        FlushCompress::Finish
    } else {
        FlushCompress::Sync
    };
    out.clear();
    out.reserve(block.len() + block.len() / 8 + 1024);
    loop {
        let consumed = c.total_in() as usize;
        let status = c
            .compress_vec(&block[consumed..], out, flush)
            .map_err(io::Error::other)?;
        let done = c.total_in() as usize == block.len() && out.len() < out.capacity();
        match status {
            Status::StreamEnd => break,
            Status::Ok | Status::BufError if done && !last => break,
            _ => out.reserve(out.capacity().max(4096)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn gzip(data: &[u8], write_size: usize, level: u32) -> Vec<u8> {
        let mut gz = ParallelGzip::new(Vec::new(), level);
        for chunk in data.chunks(write_size.max(1)) {
            gz.write_all(chunk).unwrap();
        }
        gz.finish().unwrap()
    }

    fn sample(len: usize) -> Vec<u8> {
        // Compressible but not trivial: a text-like pattern with a slow-moving counter.
        (0..len)
            .map(|i| b"static binaries in scratch images "[i % 34] ^ ((i / 4099) as u8 & 3))
            .collect()
    }

    #[test]
    fn round_trips_and_ignores_write_sizes_and_threads() {
        for len in [
            0,
            1,
            BLOCK_SIZE - 1,
            BLOCK_SIZE,
            BLOCK_SIZE * batch_blocks() + 7,
            5 << 20,
        ] {
            let data = sample(len);
            let reference = gzip(&data, 1 << 20, 6);
            let mut back = Vec::new();
            flate2::read::GzDecoder::new(&reference[..])
                .read_to_end(&mut back)
                .unwrap();
            assert!(back == data, "len {len}");
            for ws in [1000, 4096, 65536, 3 << 20] {
                assert!(gzip(&data, ws, 6) == reference, "len {len} write size {ws}");
            }
            let one = rayon::ThreadPoolBuilder::new()
                .num_threads(1)
                .build()
                .unwrap();
            assert!(
                one.install(|| gzip(&data, 8192, 6)) == reference,
                "one thread, len {len}"
            );
        }
    }

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
            1,
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
        let e = Recipe::new(vec![data("/a/b"), data("/a/b")], 0, 1).unwrap_err();
        assert!(e.contains("twice"), "{e}");
        let e = Recipe::new(vec![data("/a/b-c"), data("/a/b"), data("/a/b/c")], 0, 1).unwrap_err();
        assert_eq!(e, "/a/b is a file but other paths are inside it");
        assert!(Recipe::new(vec![data("/a/b"), data("/a/b-c")], 0, 1).is_ok());
    }

    #[test]
    fn compresses() {
        let data = sample(1 << 20);
        assert!(gzip(&data, 1 << 16, 6).len() < data.len() / 10);
    }

    #[test]
    fn output_does_not_depend_on_threads_or_on_what_they_compressed_before() {
        // A real binary (this test's own executable): zlib-rs's match finder reaches states on it
        // that the samples above do not (a reused, reset compressor failed here, not above).
        let exe = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        let data = &exe[..exe.len().min(4 * BLOCK_SIZE + 4099)];
        let before = sample(3 * BLOCK_SIZE);
        let run = |threads: usize, warm: bool| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| {
                if warm {
                    gzip(&before, 1 << 20, DEFAULT_LEVEL);
                }
                gzip(data, 1 << 20, DEFAULT_LEVEL)
            })
        };
        let reference = run(4, false);
        for (threads, warm) in [(1, false), (1, true), (2, true), (4, true)] {
            assert!(
                run(threads, warm) == reference,
                "{threads} threads, warm {warm}"
            );
        }
    }
}

#[cfg(test)]
mod golden {
    use super::*;

    /// The digest of a fixed layer, committed: a crate upgrade or change that moves it moves every
    /// image digest, and must be deliberate (then update these values and say so).
    #[test]
    fn fixed_input_gives_the_committed_digest() {
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
        let recipe = Recipe::new(entries, 1_700_000_000, DEFAULT_LEVEL).unwrap();
        let mut out = crate::digest::HashWriter::new(Vec::new());
        let w = recipe.write(&mut out).unwrap();
        let (bytes, digest, size) = out.finish();
        assert_eq!(bytes.len() as u64, size);
        assert_eq!(
            w.diff_id.to_string(),
            "sha256:3ffa65e40f697f704ea7e3d1f35402037656d511eea3c7b8ffe90c76876b25a4"
        );
        assert_eq!(
            digest.to_string(),
            "sha256:b74e6d65ef91073114879066bd2e9272daea93d0863456fc74309f1a1aa89336"
        );
    }
}
