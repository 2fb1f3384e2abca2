//! The layer cache: unchanged layers served byte for byte, damaged entries rebuilt, concurrent
//! builds sharing one cache, and a layer two platforms share.

mod support;

use std::fs;
use std::path::Path;

use support::common::*;

/// The cache's entry files: `layers/<encoding>/<diff id>/<layer digest>`.
fn cache_entries(cache: &Path) -> Vec<std::path::PathBuf> {
    let mut v = Vec::new();
    for enc in fs::read_dir(cache.join("layers")).into_iter().flatten() {
        let enc = enc.unwrap().path();
        if !enc.is_dir() {
            continue;
        }
        for entry in fs::read_dir(&enc).unwrap() {
            for f in fs::read_dir(entry.unwrap().path()).unwrap() {
                v.push(f.unwrap().path());
            }
        }
    }
    v.sort();
    v
}

#[test]
fn the_layer_cache_serves_unchanged_layers_byte_for_byte() {
    let f = fixtures();
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let command = |cache: &Path, out: &str| {
        let mut c = ironstar();
        c.current_dir(tmp.path())
            .env_remove("IRONSTAR_NO_CACHE")
            .arg("build")
            .arg(format!("--binary=linux/amd64={}", f.amd64.display()))
            .arg(format!("--binary=linux/arm64={}", f.arm64.display()))
            .arg("--cache-dir")
            .arg(cache)
            .args(["-o", out]);
        c
    };
    let build_with = |cache: &Path, out: &str, extra: &[&str]| {
        let o = run(command(cache, out).args(extra));
        assert!(o.status.success(), "{}", stderr(&o));
        (
            digest_line(&stdout(&o)),
            stderr(&o).matches("(cached)").count(),
        )
    };
    let build = |out: &str, extra: &[&str]| build_with(&cache, out, extra);
    let blobs = |out: &str| {
        let dir = tmp.path().join(out).join("blobs/sha256");
        let mut v: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (e.file_name(), fs::read(e.path()).unwrap())
            })
            .collect();
        v.sort();
        v
    };

    // Cold: both layers compressed and kept.
    let (cold, hits) = build("cold", &[]);
    assert_eq!(hits, 0);
    let entries = cache_entries(&cache);
    assert_eq!(entries.len(), 2, "{entries:?}");
    // Warm: both served, the layout byte-identical to the cold one and to an uncached build.
    let (warm, hits) = build("warm", &[]);
    assert_eq!((warm.as_str(), hits), (cold.as_str(), 2));
    let (fresh, hits) = build("fresh", &["--no-cache"]);
    assert_eq!((fresh.as_str(), hits), (cold.as_str(), 0));
    assert!(blobs("warm") == blobs("cold") && blobs("fresh") == blobs("cold"));
    validate_layout(&tmp.path().join("warm"));

    // Another level is another encoding: a miss, then its own entries.
    let (level1, hits) = build("level1", &["--compression-level", "1"]);
    assert_eq!(hits, 0);
    assert_ne!(level1, cold);
    assert_eq!(cache_entries(&cache).len(), 4);

    // Damaged entries (bytes that no longer hash to their names) are dropped and rebuilt, never
    // served: the image is still the right one.
    for e in &entries {
        fs::remove_file(e).unwrap(); // not through the hard link the layout shares
        fs::write(e, b"not a layer").unwrap();
    }
    let (repaired, hits) = build("repaired", &[]);
    assert_eq!((repaired.as_str(), hits), (cold.as_str(), 0));
    assert!(blobs("repaired") == blobs("cold"));
    for e in &entries {
        let name = e.file_name().unwrap().to_str().unwrap();
        let (d, _) = ironstar::digest::digest_reader(fs::File::open(e).unwrap()).unwrap();
        assert_eq!(d.hex(), name, "entry not restored");
    }

    // Two builds sharing a fresh cache at once: both whole, the same image.
    let shared = tmp.path().join("shared-cache");
    let spawn = |out: &str| {
        command(&shared, out)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn("race-a"), spawn("race-b"));
    for child in [a, b] {
        let o = child.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
        assert_eq!(digest_line(&stdout(&o)), cold);
    }
    assert_eq!(cache_entries(&shared).len(), 2);
    let (_, hits) = build_with(&shared, "after-race", &[]);
    assert_eq!(hits, 2);
}

/// A minimal static 32-bit ARM executable: an ELF header, one `PT_LOAD` and `payload` bytes.
/// Enough for the static/machine check; it is packed, never run.
fn arm_static_elf(payload: &[u8]) -> Vec<u8> {
    let mut e = Vec::with_capacity(84 + payload.len());
    e.extend_from_slice(b"\x7fELF\x01\x01\x01\0\0\0\0\0\0\0\0\0"); // 32-bit, little-endian
    for half in [2u16, 40, 1, 0] {
        // e_type ET_EXEC, e_machine EM_ARM, e_version (low half), (high half)
        e.extend_from_slice(&half.to_le_bytes());
    }
    // e_entry, e_phoff, e_shoff, e_flags (EABI5, hard float)
    for word in [0x10054u32, 52, 0, 0x0500_0400] {
        e.extend_from_slice(&word.to_le_bytes());
    }
    // e_ehsize, e_phentsize, e_phnum, e_shentsize, e_shnum, e_shstrndx
    for half in [52u16, 32, 1, 40, 0, 0] {
        e.extend_from_slice(&half.to_le_bytes());
    }
    let size = (84 + payload.len()) as u32;
    // PT_LOAD: offset 0 at 0x10000, r-x
    for word in [1u32, 0, 0x10000, 0x10000, size, size, 5, 0x1000] {
        e.extend_from_slice(&word.to_le_bytes());
    }
    e.extend_from_slice(payload);
    e
}

/// Two platforms sharing one layer (an ARMv6 build shipped to v7 too), built twice with a warm
/// cache: the layer is put into the layout twice and must never be written through the link
/// the cache shares with it (that once emptied both).
#[test]
fn a_layer_two_platforms_share_survives_a_warm_cache() {
    let tmp = tempfile::tempdir().unwrap();
    let bin = tmp.path().join("app");
    let payload: Vec<u8> = (0..200_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    fs::write(&bin, arm_static_elf(&payload)).unwrap();
    let cache = tmp.path().join("cache");
    let build = |out: &str| {
        ok(ironstar()
            .current_dir(tmp.path())
            .env_remove("IRONSTAR_NO_CACHE")
            .arg("build")
            .arg(format!("--binary=linux/arm/v6={}", bin.display()))
            .arg(format!("--binary=linux/arm/v7={}", bin.display()))
            .arg("--cache-dir")
            .arg(&cache)
            .args(["-o", out]))
    };
    let every_blob_hashes_to_its_name = |files: Vec<std::path::PathBuf>| {
        assert!(!files.is_empty());
        for f in files {
            let name = f.file_name().unwrap().to_str().unwrap().to_string();
            let (d, size) = ironstar::digest::digest_reader(fs::File::open(&f).unwrap()).unwrap();
            assert!(size > 0, "{} is empty", f.display());
            assert_eq!(d.hex(), name, "{} does not hash to its name", f.display());
        }
    };
    let layout_blobs = |out: &str| {
        fs::read_dir(tmp.path().join(out).join("blobs/sha256"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect::<Vec<_>>()
    };
    let first = build("one");
    let second = build("two");
    assert_eq!(first, second);
    for out in ["one", "two"] {
        every_blob_hashes_to_its_name(layout_blobs(out));
        validate_layout(&tmp.path().join(out));
    }
    every_blob_hashes_to_its_name(cache_entries(&cache));
    let third = build("two");
    assert_eq!(third, first);
    every_blob_hashes_to_its_name(layout_blobs("two"));
}

/// gzip and zstd layers of the same binaries live under encodings of their own: a zstd build
/// after a gzip one compresses anew (never serves the gzip bytes under a zstd media type), each
/// is then served from its own entries, and a cached build is the uncached one byte for byte.
#[test]
fn the_cache_never_mixes_gzip_and_zstd_layers() {
    let f = fixtures();
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let build = |out: &str, extra: &[&str]| {
        let o = run(ironstar()
            .env_remove("IRONSTAR_NO_CACHE")
            .arg("build")
            .arg(format!("--binary=linux/amd64={}", f.amd64.display()))
            .arg(format!("--binary=linux/arm64={}", f.arm64.display()))
            .arg("--cache-dir")
            .arg(&cache)
            .arg("-o")
            .arg(tmp.path().join(out))
            .args(extra));
        assert!(o.status.success(), "{}", stderr(&o));
        let layers: Vec<String> = {
            let layout = tmp.path().join(out);
            let top = json(&fs::read(layout.join("index.json")).unwrap());
            let index = json(&blob(
                &layout,
                top["manifests"][0]["digest"].as_str().unwrap(),
            ));
            index["manifests"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| {
                    let m = json(&blob(&layout, m["digest"].as_str().unwrap()));
                    let l = &m["layers"][0];
                    let bytes = blob(&layout, l["digest"].as_str().unwrap());
                    // The media type says what the bytes are.
                    let zstd = bytes.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]);
                    let gzip = bytes.starts_with(&[0x1f, 0x8b]);
                    let mt = l["mediaType"].as_str().unwrap().to_string();
                    assert!(
                        (mt.ends_with("+zstd") && zstd) || (mt.ends_with("+gzip") && gzip),
                        "{mt}"
                    );
                    mt
                })
                .collect()
        };
        (
            digest_line(&stdout(&o)),
            stderr(&o).matches("(cached)").count(),
            layers,
        )
    };
    let encodings = || -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(cache.join("layers"))
            .unwrap()
            .map(|e| e.unwrap())
            .filter(|e| e.path().is_dir())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    let (gzip, hits, _) = build("gzip", &[]);
    assert_eq!(hits, 0);
    let (zstd, hits, layers) = build("zstd", &["--compression", "zstd"]);
    assert_eq!(hits, 0, "zstd served from gzip entries");
    assert!(layers.iter().all(|l| l.ends_with("+zstd")));
    assert_ne!(zstd, gzip);
    let names = encodings();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(
        names[0].starts_with("gzip-4-") && names[1].starts_with("zstd-3-"),
        "{names:?}"
    );
    assert_eq!(cache_entries(&cache).len(), 4);

    // Each served from its own entries, as built without a cache.
    let (again, hits, layers) = build("zstd-again", &["--compression", "zstd"]);
    assert_eq!((again.as_str(), hits), (zstd.as_str(), 2));
    assert!(layers.iter().all(|l| l.ends_with("+zstd")));
    let (again, hits, layers) = build("gzip-again", &[]);
    assert_eq!((again.as_str(), hits), (gzip.as_str(), 2));
    assert!(layers.iter().all(|l| l.ends_with("+gzip")));
    let (fresh, hits, _) = build("zstd-fresh", &["--compression", "zstd", "--no-cache"]);
    assert_eq!((fresh.as_str(), hits), (zstd.as_str(), 0));
    // Another zstd level is another encoding again.
    let (l9, hits, _) = build(
        "zstd-9",
        &["--compression", "zstd", "--compression-level", "9"],
    );
    assert_eq!(hits, 0);
    assert_ne!(l9, zstd);
    assert_eq!(encodings().len(), 3);
}
