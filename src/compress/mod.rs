//! Layer compression: the algorithm and level of an image's layers, the media type they give,
//! the name the layer cache keys them by, and the two parallel encoders, gzip (`gzip.rs`,
//! pigz-style blocks) and zstd (`zstd.rs`, independent frames), whose bytes depend only on their
//! input, never on write sizes or the number of cores.

mod gzip;
mod zstd;

use std::fmt;
use std::io::{self, Write};
use std::ops::RangeInclusive;
use std::str::FromStr;

use oci_spec::image::MediaType;

use crate::oci::media_type;

pub use self::gzip::ParallelGzip;
pub use self::zstd::ParallelZstd;

/// The gzip blocks' and the zstd frames' sizes (part of the output).
pub use self::gzip::BLOCK_SIZE as GZIP_BLOCK_SIZE;
pub use self::zstd::FRAME_SIZE as ZSTD_FRAME_SIZE;

/// How layers are compressed. gzip is the default: every runtime and registry reads it; zstd needs
/// containerd 1.5+, Docker 23+, podman 3+ / containers-storage (README, "Compression").
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Algorithm {
    #[default]
    Gzip,
    Zstd,
}

impl Algorithm {
    pub const ALL: [Algorithm; 2] = [Algorithm::Gzip, Algorithm::Zstd];

    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Gzip => "gzip",
            Algorithm::Zstd => "zstd",
        }
    }

    /// The levels `--compression-level` takes for this algorithm.
    pub fn levels(self) -> RangeInclusive<u32> {
        match self {
            Algorithm::Gzip => 0..=9,
            Algorithm::Zstd => zstd::LEVELS,
        }
    }

    /// The level used when none is given, chosen by measurement (docs/src/performance.md).
    pub fn default_level(self) -> u32 {
        match self {
            Algorithm::Gzip => gzip::DEFAULT_LEVEL,
            Algorithm::Zstd => zstd::DEFAULT_LEVEL,
        }
    }

    /// The layer media type of the image-spec.
    pub fn media_type(self) -> MediaType {
        match self {
            Algorithm::Gzip => MediaType::from(media_type::LAYER_GZIP),
            Algorithm::Zstd => MediaType::from(media_type::LAYER_ZSTD),
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Algorithm {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Algorithm::ALL
            .into_iter()
            .find(|a| a.name() == s)
            .ok_or_else(|| format!("unknown compression `{s}`: use gzip or zstd"))
    }
}

/// An algorithm and a level within its range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Compression {
    algorithm: Algorithm,
    level: u32,
}

impl Default for Compression {
    fn default() -> Self {
        Compression::of(Algorithm::Gzip)
    }
}

impl Compression {
    /// `algorithm` at its default level.
    pub fn of(algorithm: Algorithm) -> Self {
        Compression {
            algorithm,
            level: algorithm.default_level(),
        }
    }

    /// `algorithm` at `level` (its default when `None`); a level outside the algorithm's range is
    /// refused, naming the range.
    pub fn new(algorithm: Algorithm, level: Option<u32>) -> Result<Self, String> {
        let range = algorithm.levels();
        match level {
            None => Ok(Compression::of(algorithm)),
            Some(l) if range.contains(&l) => Ok(Compression {
                algorithm,
                level: l,
            }),
            Some(l) => Err(format!(
                "compression level {l} is out of range for {algorithm}: use {} to {} \
                 (--compression-level)",
                range.start(),
                range.end()
            )),
        }
    }

    pub fn algorithm(self) -> Algorithm {
        self.algorithm
    }

    pub fn level(self) -> u32 {
        self.level
    }

    pub fn media_type(self) -> MediaType {
        self.algorithm.media_type()
    }

    /// A name for everything that decides a layer's compressed bytes given its tar: the
    /// algorithm, the level, and a fingerprint of this build's encoder output on a fixed sample
    /// (for zstd also libzstd's version). An encoder upgrade that moves digests changes the name,
    /// so a layer cache never serves bytes an uncached build would not produce, and gzip and zstd
    /// layers are never under one name.
    pub fn encoding(self) -> String {
        let fingerprint = match self.algorithm {
            Algorithm::Gzip => gzip::fingerprint(self.level),
            Algorithm::Zstd => zstd::fingerprint(self.level),
        };
        format!("{}-{}-{fingerprint}", self.algorithm, self.level)
    }

    /// A writer compressing into `out`; [`Encoder::finish`] ends the stream.
    pub fn encoder<W: Write>(self, out: W) -> Encoder<W> {
        match self.algorithm {
            Algorithm::Gzip => Encoder::Gzip(ParallelGzip::new(out, self.level)),
            Algorithm::Zstd => Encoder::Zstd(ParallelZstd::new(out, self.level)),
        }
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} level {}", self.algorithm, self.level)
    }
}

/// The fixed sample an encoder's fingerprint compresses: `len` bytes of a pseudo-random mix
/// that compresses a little, so matches and literals are both exercised. Changing it changes
/// every [`Compression::encoding`] name (and so empties the layer cache once).
fn fingerprint_sample(len: u32) -> Vec<u8> {
    (0..len)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 27) as u8 ^ (i / 511) as u8)
        .collect()
}

/// Test input for the encoders: compressible but not trivial, a text-like pattern with a
/// slow-moving counter.
#[cfg(test)]
fn test_sample(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| b"static binaries in scratch images "[i % 34] ^ ((i / 4099) as u8 & 3))
        .collect()
}

/// One of the encoders.
pub enum Encoder<W: Write> {
    Gzip(ParallelGzip<W>),
    Zstd(ParallelZstd<W>),
}

impl<W: Write> Encoder<W> {
    /// End the stream; the inner writer.
    pub fn finish(self) -> io::Result<W> {
        match self {
            Encoder::Gzip(e) => e.finish(),
            Encoder::Zstd(e) => e.finish(),
        }
    }
}

impl<W: Write> Write for Encoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Encoder::Gzip(e) => e.write(buf),
            Encoder::Zstd(e) => e.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_are_checked_per_algorithm_and_encodings_differ() {
        assert_eq!(Compression::default(), Compression::of(Algorithm::Gzip));
        assert_eq!(Compression::default().level(), 4);
        assert!(Compression::new(Algorithm::Gzip, Some(9)).is_ok());
        let e = Compression::new(Algorithm::Gzip, Some(12)).unwrap_err();
        assert!(e.contains("gzip") && e.contains("0 to 9"), "{e}");
        assert!(Compression::new(Algorithm::Zstd, Some(19)).is_ok());
        let e = Compression::new(Algorithm::Zstd, Some(0)).unwrap_err();
        assert!(e.contains("zstd") && e.contains("1 to 19"), "{e}");
        assert_eq!("zstd".parse::<Algorithm>(), Ok(Algorithm::Zstd));
        assert!("xz"
            .parse::<Algorithm>()
            .unwrap_err()
            .contains("gzip or zstd"));
        let g = Compression::new(Algorithm::Gzip, Some(3))
            .unwrap()
            .encoding();
        let z = Compression::new(Algorithm::Zstd, Some(3))
            .unwrap()
            .encoding();
        assert!(
            g.starts_with("gzip-3-") && z.starts_with("zstd-3-"),
            "{g} {z}"
        );
        assert_eq!(
            Compression::of(Algorithm::Zstd).media_type().to_string(),
            "application/vnd.oci.image.layer.v1.tar+zstd"
        );
    }
}
