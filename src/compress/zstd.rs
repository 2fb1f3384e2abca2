//! zstd as independent fixed-size frames: the input is cut into FRAME_SIZE pieces, each compressed
//! alone (a fresh single-threaded libzstd context, fixed parameters) into a frame of its own, and
//! the frames are concatenated: a valid zstd stream (RFC 8878 §3.1: a stream is one or more
//! frames; containerd's, containers-storage's and libzstd's decoders read them in turn). The bytes
//! depend only on the input, the level and the libzstd version, never on write sizes or threads:
//! the frames compress in parallel on rayon's pool, as the gzip blocks do. libzstd's own
//! multithreaded mode is not used: its output differs from the single-threaded one, so a build
//! on one core would give other digests than on several.

use std::io::{self, Write};

use ::zstd::zstd_safe::{CCtx, CParameter};
use rayon::prelude::*;

use crate::digest::Digest;

/// Input per frame. Changing it changes every zstd layer digest. Frames are independent, so a
/// match never reaches into the previous frame: measured on the ~30 MB bench binaries, 4 MiB
/// frames cost ~0.5 % of size against one frame (docs/src/performance.md), and a 30 MB binary still
/// makes 8 frames to spread over the cores.
pub const FRAME_SIZE: usize = 4 << 20;
/// The default level, chosen by measurement (docs/src/performance.md).
pub const DEFAULT_LEVEL: u32 = 3;
/// The levels offered: libzstd's 1 to 19. 20 to 22 ("ultra") need windows of up to 128 MiB and
/// more, which some decoders refuse by default, and gain nothing on 4 MiB frames.
pub const LEVELS: std::ops::RangeInclusive<u32> = 1..=19;

/// Frames compressed per parallel batch: one a worker thread (at least 2). Never shows in the
/// output: frame boundaries are fixed by FRAME_SIZE alone.
fn batch_frames() -> usize {
    rayon::current_num_threads().max(2)
}

/// A zstd writer whose output depends only on the bytes written and the level.
pub struct ParallelZstd<W: Write> {
    out: W,
    level: u32,
    pending: Vec<u8>,
    /// Whether any frame was written (an empty input still gets one, empty, frame).
    framed: bool,
    /// The previous batch's output buffers, reused: fresh ones cost a page fault per 4 KiB.
    spare: Vec<Vec<u8>>,
    batch: usize,
}

impl<W: Write> ParallelZstd<W> {
    pub fn new(out: W, level: u32) -> Self {
        let batch = FRAME_SIZE * batch_frames();
        ParallelZstd {
            out,
            level: level.clamp(*LEVELS.start(), *LEVELS.end()),
            pending: Vec::with_capacity(batch),
            framed: false,
            spare: Vec::new(),
            batch,
        }
    }

    /// Compress the full frames of `pending` (all of it when `last`).
    fn flush_frames(&mut self, last: bool) -> io::Result<()> {
        let whole = match last {
            true => self.pending.len(),
            false => self.pending.len() / FRAME_SIZE * FRAME_SIZE,
        };
        let data = &self.pending[..whole];
        let frames: Vec<&[u8]> = match data.is_empty() && last && !self.framed {
            true => vec![&[][..]],
            false => data.chunks(FRAME_SIZE).collect(),
        };
        let level = self.level;
        let mut outs = std::mem::take(&mut self.spare);
        outs.resize_with(frames.len(), Vec::new);
        outs.par_iter_mut()
            .zip(&frames)
            .try_for_each(|(out, frame)| compress_frame(frame, level, out))?;
        for c in &outs {
            self.out.write_all(c)?;
        }
        self.framed |= !outs.is_empty();
        self.spare = outs;
        self.pending.drain(..whole);
        Ok(())
    }

    /// End the stream: the last frames.
    pub fn finish(mut self) -> io::Result<W> {
        self.flush_frames(true)?;
        self.out.flush()?;
        Ok(self.out)
    }
}

impl<W: Write> Write for ParallelZstd<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.pending.extend_from_slice(buf);
        if self.pending.len() >= self.batch {
            self.flush_frames(false)?;
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// One frame, into `out` (cleared first), by a fresh context: every parameter that shapes the
/// bytes is set here, none left to a context's history. The frame records its content size and
/// an XXH64 checksum of its content (decoders check it; ~free).
fn compress_frame(data: &[u8], level: u32, out: &mut Vec<u8>) -> io::Result<()> {
    let err = |code: usize| {
        io::Error::other(format!("zstd: {}", ::zstd::zstd_safe::get_error_name(code)))
    };
    let mut c = CCtx::create();
    c.set_parameter(CParameter::CompressionLevel(level as i32))
        .map_err(err)?;
    c.set_parameter(CParameter::ChecksumFlag(true))
        .map_err(err)?;
    c.set_parameter(CParameter::ContentSizeFlag(true))
        .map_err(err)?;
    c.set_parameter(CParameter::DictIdFlag(false))
        .map_err(err)?;
    out.clear();
    out.reserve(::zstd::zstd_safe::compress_bound(data.len()));
    c.compress2(out, data).map_err(err)?;
    Ok(())
}

/// A fingerprint of this build's zstd output: the libzstd version and the digest of a fixed
/// sample's frame ([`super::Compression::encoding`]).
pub(super) fn fingerprint(level: u32) -> String {
    let sample = super::fingerprint_sample((256 << 10) + 4099);
    let mut out = Vec::new();
    compress_frame(&sample, level, &mut out).expect("compressing to memory");
    let digest = Digest::of(&out);
    format!(
        "{}-{}",
        ::zstd::zstd_safe::version_number(),
        &digest.hex()[..12]
    )
}

#[cfg(test)]
mod tests {
    use super::super::test_sample as sample;
    use super::*;
    use std::io::Read;

    fn zstd(data: &[u8], write_size: usize, level: u32) -> Vec<u8> {
        let mut z = ParallelZstd::new(Vec::new(), level);
        for chunk in data.chunks(write_size.max(1)) {
            z.write_all(chunk).unwrap();
        }
        z.finish().unwrap()
    }

    fn unzstd(bytes: &[u8]) -> Vec<u8> {
        let mut back = Vec::new();
        ::zstd::stream::read::Decoder::new(bytes)
            .unwrap()
            .read_to_end(&mut back)
            .unwrap();
        back
    }

    #[test]
    fn round_trips_in_frames_and_ignores_write_sizes_and_threads() {
        for len in [
            0,
            1,
            FRAME_SIZE - 1,
            FRAME_SIZE,
            FRAME_SIZE * batch_frames() + 7,
            9 << 20,
        ] {
            let data = sample(len);
            let reference = zstd(&data, 1 << 20, DEFAULT_LEVEL);
            assert!(unzstd(&reference) == data, "len {len}");
            // One frame a FRAME_SIZE of input, at least one.
            let frames = ::zstd::zstd_safe::get_frame_content_size(&reference);
            assert_eq!(
                frames.ok().flatten(),
                Some(len.min(FRAME_SIZE) as u64),
                "the first frame's content size, len {len}"
            );
            for ws in [1000, 65536, 5 << 20] {
                assert!(
                    zstd(&data, ws, DEFAULT_LEVEL) == reference,
                    "len {len} write size {ws}"
                );
            }
        }
    }

    #[test]
    fn output_does_not_depend_on_threads_or_on_what_they_compressed_before() {
        let exe = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        let data = &exe[..exe.len().min(3 * FRAME_SIZE + 4099)];
        let before = sample(2 * FRAME_SIZE);
        let run = |threads: usize, warm: bool| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| {
                if warm {
                    zstd(&before, 1 << 20, 9);
                }
                zstd(data, 1 << 20, DEFAULT_LEVEL)
            })
        };
        let reference = run(4, false);
        assert!(unzstd(&reference) == data);
        for (threads, warm) in [(1, false), (1, true), (2, true), (4, true)] {
            assert!(
                run(threads, warm) == reference,
                "{threads} threads, warm {warm}"
            );
        }
    }
}
