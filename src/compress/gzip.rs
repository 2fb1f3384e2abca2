//! gzip, pigz-style: the deflate stream is cut into fixed 512 KiB blocks, each compressed by a
//! fresh compressor primed with the previous block's last 32 KiB and ended by a sync flush, so the
//! output is the same whatever the write sizes (zlib-rs output otherwise varies with them) and
//! whatever the number of cores; the blocks compress in parallel on rayon's pool.

use std::io::{self, Write};

use flate2::{Compress, Compression, FlushCompress, Status};
use rayon::prelude::*;

use crate::digest::HashWriter;

/// Deflate block size. Changing it changes every layer digest. 512 KiB rather than pigz's 128 KiB:
/// each block sets up a compressor and loads the previous block's last 32 KiB as its dictionary
/// (~5 % of the instructions at 128 KiB, docs/src/performance.md); a 3 MB binary still makes 6 blocks.
pub const BLOCK_SIZE: usize = 512 << 10;
const WINDOW: usize = 32 << 10;
/// Blocks compressed per parallel batch: two a worker thread (at least 4), so every core has
/// work and memory stays at about 2 × this × BLOCK_SIZE a layer. The batch size never shows in
/// the output: block boundaries are fixed by BLOCK_SIZE alone.
fn batch_blocks() -> usize {
    (2 * rayon::current_num_threads()).max(4)
}
/// The default deflate level, chosen by measurement (docs/src/performance.md): on real binaries
/// zlib-rs's level 4 takes ~25 % less CPU than level 6 for layers ~3 % larger, still smaller than
/// buildah's at its default (ko's default is level 1, podman's 5, docker's 6).
pub const DEFAULT_LEVEL: u32 = 4;
/// Fixed gzip header: no name, mtime 0, no extra flags, OS "unknown", so no build machine leaks.
const GZIP_HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];

/// A fingerprint of this build's deflate output on a fixed sample (a block and a bit, so the
/// dictionary carry-over is covered; it is compressed at the start of every cached build, so no
/// larger): a deflate upgrade that moves digests changes it ([`super::Compression::encoding`]).
pub(super) fn fingerprint(level: u32) -> String {
    let sample = super::fingerprint_sample(BLOCK_SIZE as u32 + 4099);
    let mut gz = ParallelGzip::new(HashWriter::new(io::sink()), level);
    gz.write_all(&sample).expect("writing to a sink");
    let (_, digest, _) = gz.finish().expect("writing to a sink").finish();
    digest.hex()[..16].to_string()
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
    use super::super::test_sample as sample;
    use super::*;
    use std::io::Read;

    fn gzip(data: &[u8], write_size: usize, level: u32) -> Vec<u8> {
        let mut gz = ParallelGzip::new(Vec::new(), level);
        for chunk in data.chunks(write_size.max(1)) {
            gz.write_all(chunk).unwrap();
        }
        gz.finish().unwrap()
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
