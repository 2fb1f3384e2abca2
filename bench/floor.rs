//! The cold build's floor (issue 15): zlib-rs deflate alone, at the level ironstar uses, one file a
//! thread (one platform a core, as `ironstar build` packs them), nothing else: no tar, no hashing,
//! no block scheme, the output thrown away. `bench/bench.py` runs it beside `ironstar build`.
//!
//!   cargo build --release --example floor
//!   target/release/examples/floor [--level N] FILE...
//!
//! Prints one line a file: `<compressed bytes> <path>`.

use std::fs::File;
use std::io::{self, Read, Write};

use flate2::write::GzEncoder;
use flate2::Compression;

/// Counts what the compressor produces and drops it.
struct Count(u64);

impl Write for Count {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn deflate(path: &str, level: u32) -> io::Result<u64> {
    let mut f = File::open(path)?;
    let mut gz = GzEncoder::new(Count(0), Compression::new(level));
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        gz.write_all(&buf[..n])?;
    }
    Ok(gz.finish()?.0)
}

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut level = 6;
    if let Some(i) = args.iter().position(|a| a == "--level") {
        level = args
            .get(i + 1)
            .and_then(|l| l.parse().ok())
            .expect("--level N");
        args.drain(i..i + 2);
    }
    let results: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = args
            .iter()
            .map(|p| s.spawn(move || deflate(p, level)))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (p, r) in args.iter().zip(results) {
        match r {
            Ok(n) => println!("{n} {p}"),
            Err(e) => {
                eprintln!("floor: {p}: {e}");
                std::process::exit(1);
            }
        }
    }
}
