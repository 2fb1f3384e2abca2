//! zstd levels and frame sizes against ironstar's gzip (its default level), one thread, on one
//! file: size, compression time, decompression time (docs/src/performance.md, issue 21).
//!
//!     cargo run --release --example zstd-levels -- FILE 1,3,5,9 4     # levels, frame MiB (0: one)
use std::io::{Read, Write};
use std::time::Instant;
use zstd::zstd_safe::{CCtx, CParameter};

fn frame(data: &[u8], level: i32) -> Vec<u8> {
    let mut c = CCtx::create();
    c.set_parameter(CParameter::CompressionLevel(level))
        .unwrap();
    c.set_parameter(CParameter::ChecksumFlag(true)).unwrap();
    let mut out = Vec::with_capacity(zstd::zstd_safe::compress_bound(data.len()));
    c.compress2(&mut out, data).unwrap();
    out
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let data = std::fs::read(&args[1]).unwrap();
    let levels: Vec<i32> = args[2].split(',').map(|s| s.parse().unwrap()).collect();
    let frames: Vec<usize> = args[3]
        .split(',')
        .map(|s| s.parse::<usize>().unwrap() << 20)
        .collect();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    let t = Instant::now();
    let gz = pool.install(|| {
        let mut g = ironstar::compress::Compression::default().encoder(Vec::new());
        g.write_all(&data).unwrap();
        g.finish().unwrap()
    });
    let gt = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let mut back = Vec::new();
    flate2::read::GzDecoder::new(&gz[..])
        .read_to_end(&mut back)
        .unwrap();
    let gd = t.elapsed().as_secs_f64();
    println!(
        "input {} gzip-4 {} bytes {:.3}s ({:.0} MB/s) decode {:.3}s",
        data.len(),
        gz.len(),
        gt,
        data.len() as f64 / gt / 1e6,
        gd
    );
    for &l in &levels {
        for &f in &frames {
            let t = Instant::now();
            let mut total = Vec::new();
            for chunk in data.chunks(if f == 0 { data.len() } else { f }) {
                total.extend(frame(chunk, l));
            }
            let ct = t.elapsed().as_secs_f64();
            let t = Instant::now();
            let mut back = Vec::new();
            zstd::stream::read::Decoder::new(&total[..])
                .unwrap()
                .read_to_end(&mut back)
                .unwrap();
            let dt = t.elapsed().as_secs_f64();
            assert!(back == data);
            println!("zstd-{l:<2} frame {:>3} MiB: {:>9} bytes ({:.3}x gzip4) {:.3}s ({:.0} MB/s, {:.2}x gzip4 time) decode {:.3}s", f >> 20, total.len(), total.len() as f64 / gz.len() as f64, ct, data.len() as f64 / ct / 1e6, ct / gt, dt);
        }
    }
}
