//! `allocator = "mimalloc"`: musl's malloc family replaced by mimalloc's at link time, with no
//! change to the crate.
//!
//! musl's malloc takes one lock for the heap, so threads that allocate at once wait for each
//! other. mimalloc's C (from the `libmimalloc-sys` crate, fetched by cargo into its registry,
//! never vendored here) is compiled for the target by zig with `MI_MALLOC_OVERRIDE`, so it
//! defines `malloc`, `free`, … itself. Linking that object beside libc fails (both define
//! `posix_memalign`…), so a private copy of the target's `libc.a` is made without musl's
//! malloc members and with mimalloc's object added, and the link finds it first through
//! `-L native=DIR`. The copy is cached by mimalloc's version, the target, zig's version and the
//! libc it came from, and put in place by a rename (atomic).

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest as _, Sha256};

use super::toolchain::{which, Rustc};
use super::{run_captured, CargoError, Result};

/// The allocator a binary's C `malloc` is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Allocator {
    /// musl's own.
    #[default]
    System,
    /// mimalloc's, linked in place of musl's.
    Mimalloc,
}

impl std::str::FromStr for Allocator {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "system" => Ok(Allocator::System),
            "mimalloc" => Ok(Allocator::Mimalloc),
            _ => Err(format!(
                "unknown allocator `{s}`; expected `system` (musl's) or `mimalloc`"
            )),
        }
    }
}

impl std::fmt::Display for Allocator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Allocator::System => "system",
            Allocator::Mimalloc => "mimalloc",
        })
    }
}

/// The `libmimalloc-sys` release whose C sources are built (mimalloc v2).
pub const MIMALLOC_SYS_VERSION: &str = "0.1.44";

/// The `.crate`'s SHA-256 of that release (crates.io's, immutable).
const MIMALLOC_SYS_CHECKSUM: &str =
    "667f4fec20f29dfc6bc7357c582d91796c169ad7e2fce709468aefeb2c099870";

/// mimalloc's C, as the SBOM lists it.
pub fn mimalloc_component() -> crate::sbom::Component {
    crate::sbom::Component {
        name: "libmimalloc-sys".into(),
        version: MIMALLOC_SYS_VERSION.into(),
        source: Some("registry+https://github.com/rust-lang/crates.io-index".into()),
        checksum: Some(MIMALLOC_SYS_CHECKSUM.into()),
        license: Some("MIT".into()),
        build_only: false,
    }
}

/// musl's members that define the malloc family (two `free.lo` and `realloc.lo`: mallocng's
/// and the wrappers'); each name is deleted as often as it appears here.
const MUSL_MALLOC_MEMBERS: [&str; 15] = [
    "aligned_alloc.lo",
    "calloc.lo",
    "free.lo",
    "free.lo",
    "libc_calloc.lo",
    "lite_malloc.lo",
    "malloc_usable_size.lo",
    "memalign.lo",
    "posix_memalign.lo",
    "realloc.lo",
    "realloc.lo",
    "reallocarray.lo",
    "strdup.lo",
    "strndup.lo",
    "valloc.lo",
];

/// musl's string functions the heap's users lean on: measured, they were two thirds of the
/// cycles left once malloc was mimalloc's. x86_64's `memcpy` copies its tail and unaligned head
/// a byte at a time (`movsb`): zig's compiler_rt `memcpy` and `memmove` replace it (1.9x glibc's
/// time with musl's, 0.8x with zig's). `memcmp` is a byte loop in both musl and compiler_rt:
/// ours ([`MEMCMP_C`]) compares words (1.1x glibc's time with the byte loop, 0.8x with it).
const MUSL_STRING_MEMBERS: [&str; 4] = ["memcpy.lo", "memmove.lo", "memcmp.lo", "bcmp.lo"];

/// `memcmp` and `bcmp` compared a word at a time, compiled for each target by zig.
const MEMCMP_C: &str = include_str!("allocator/memcmp.c");

/// How [`MEMCMP_C`] is compiled (`-fno-builtin`: no call to `memcmp` in `memcmp`).
const MEMCMP_CFLAGS: [&str; 3] = ["-O3", "-fPIE", "-fno-builtin"];

/// zig's compiler_rt functions taken, and how they are compiled.
const ZIG_STRING_FUNCTIONS: [&str; 2] = ["memcpy", "memmove"];
const ZIG_STRING_FLAGS: [&str; 4] = ["-OReleaseFast", "-fPIE", "-fno-stack-check", "-fstrip"];

/// The flags mimalloc's own crate builds it with for Linux, plus the override of malloc and
/// position independence (the binaries are static-pie).
const CFLAGS: [&str; 6] = [
    "-O3",
    "-fPIE",
    "-ftls-model=initial-exec",
    "-DMI_MALLOC_OVERRIDE",
    "-DMI_DEBUG=0",
    "-Wno-date-time",
];

/// For each target, the directory holding its private `libc.a` with mimalloc.
pub(super) fn prepare(
    cargo: &OsStr,
    rustc: &Rustc,
    targets: &[&str],
) -> Result<Vec<(String, PathBuf)>> {
    let zig = zig("allocator = \"mimalloc\" compiles mimalloc's C for each target")?;
    let zig_version = run_captured(Command::new(&zig).arg("version"), "zig version")?;
    let root = crate::cache::default_dir()
        .ok_or_else(|| missing("a cache directory", "set XDG_CACHE_HOME or HOME"))?
        .join("mimalloc");
    let mut source = None;
    let mut dirs = Vec::new();
    for t in targets {
        let libc = rustc.rustlib(t).join("lib/self-contained/libc.a");
        let bytes = std::fs::read(&libc)?;
        let mut key = Sha256::new();
        let members = [MUSL_MALLOC_MEMBERS.join(" "), MUSL_STRING_MEMBERS.join(" ")].join(" ");
        let parts = [
            MIMALLOC_SYS_VERSION,
            t,
            zig_version.trim(),
            &CFLAGS.join(" "),
            &members,
            &ZIG_STRING_FUNCTIONS.join(" "),
            &ZIG_STRING_FLAGS.join(" "),
            &MEMCMP_CFLAGS.join(" "),
            MEMCMP_C,
        ];
        for part in parts {
            key.update(part.as_bytes());
            key.update([0]);
        }
        key.update(Sha256::digest(&bytes));
        let dir = root.join(format!("{t}-{:x}", key.finalize()));
        if !dir.join("libc.a").is_file() {
            if source.is_none() {
                source = Some(fetch_source(cargo, &root)?);
            }
            let src = source.as_deref().expect("fetched");
            build_libc(&zig, src, t, &libc, &dir)?;
        }
        dirs.push((t.to_string(), dir));
    }
    Ok(dirs)
}

fn missing(tool: &str, hint: &str) -> CargoError {
    CargoError::MissingTool {
        tool: tool.into(),
        hint: hint.into(),
    }
}

/// zig, which compiles the C ironstar builds itself; `why` says what for.
pub(super) fn zig(why: &str) -> Result<PathBuf> {
    std::env::var_os("CARGO_ZIGBUILD_ZIG_PATH")
        .map(PathBuf::from)
        .or_else(|| which("zig"))
        .ok_or_else(|| {
            missing(
                "zig",
                &format!("{why} with zig; {}", super::ZIG_INSTALL_HINT),
            )
        })
}

/// mimalloc's sources, as cargo unpacks `libmimalloc-sys` into its registry.
fn fetch_source(cargo: &OsStr, root: &Path) -> Result<PathBuf> {
    let name = "libmimalloc-sys";
    let v2 = "c_src/mimalloc/v2";
    let has = format!("{v2}/src/static.c");
    let dir =
        super::fetch::crate_source(cargo, &root.join("fetch"), name, MIMALLOC_SYS_VERSION, &has)?;
    Ok(dir.join(v2))
}

/// Compile mimalloc for `target` and make `dir/libc.a`: the target's libc without musl's
/// malloc, with mimalloc's object. Built beside `dir`, renamed into place.
fn build_libc(zig: &Path, src: &Path, target: &str, libc: &Path, dir: &Path) -> Result<()> {
    let parent = dir.parent().expect("under the cache root");
    std::fs::create_dir_all(parent)?;
    let tmp = tempfile::tempdir_in(parent)?;
    let object = tmp.path().join("mimalloc.o");
    let zig_target = target.replace("-unknown-linux-", "-linux-");
    let home = super::toolchain::cargo_home().unwrap_or_default();
    let mut cc = Command::new(zig);
    cc.arg("cc")
        .args(["-target", &zig_target])
        .args(CFLAGS)
        .arg(format!("-ffile-prefix-map={}=/cargo", home.display()))
        .arg("-I")
        .arg(src.join("include"))
        .arg("-I")
        .arg(src.join("src"))
        .arg("-c")
        .arg(src.join("src/static.c"))
        .arg("-o")
        .arg(&object)
        // mimalloc prints its build date in verbose mode: fixed, so the bytes are.
        .env("SOURCE_DATE_EPOCH", "0");
    tracing::info!("compiling mimalloc {MIMALLOC_SYS_VERSION} for {target} (zig)");
    run_captured(&mut cc, &format!("zig cc (mimalloc for {target})"))?;
    let mut objects = vec![object];
    objects.extend(string_objects(zig, &zig_target, tmp.path())?);
    let archive = tmp.path().join("libc.a");
    std::fs::copy(libc, &archive)?;
    for member in MUSL_MALLOC_MEMBERS.iter().chain(&MUSL_STRING_MEMBERS) {
        let mut ar = Command::new(zig);
        ar.arg("ar").arg("d").arg(&archive).arg(member);
        run_captured(&mut ar, "zig ar d")?;
    }
    let mut ar = Command::new(zig);
    ar.arg("ar").arg("rs").arg(&archive).args(&objects);
    run_captured(&mut ar, "zig ar rs")?;
    for o in objects {
        std::fs::remove_file(o)?;
    }
    let done = tmp.keep();
    if let Err(e) = std::fs::rename(&done, dir) {
        // Another build put the same bytes in place first.
        let _ = std::fs::remove_dir_all(&done);
        if !dir.join("libc.a").is_file() {
            return Err(e.into());
        }
    }
    Ok(())
}

/// zig's compiler_rt `memcpy` and `memmove`, and our `memcmp` and `bcmp`, compiled for
/// `zig_target`.
fn string_objects(zig: &Path, zig_target: &str, dir: &Path) -> Result<Vec<PathBuf>> {
    let env = run_captured(Command::new(zig).arg("env"), "zig env")?;
    // `.lib_dir = "…",` (zig 0.15 prints ZON; older ones JSON: `"lib_dir": "…",`).
    let lib_dir = env
        .lines()
        .find(|l| l.contains("lib_dir"))
        .and_then(|l| l.split('"').rev().nth(1))
        .map(PathBuf::from)
        .ok_or_else(|| CargoError::Output {
            command: "zig env".into(),
            message: "no lib_dir".into(),
        })?;
    let mut out = Vec::new();
    for name in ZIG_STRING_FUNCTIONS {
        let object = dir.join(format!("zig-{name}.o"));
        let mut cmd = Command::new(zig);
        cmd.args(["build-obj", "-target", zig_target])
            .args(ZIG_STRING_FLAGS)
            .arg(format!("-femit-bin={}", object.display()))
            .arg(lib_dir.join("compiler_rt").join(format!("{name}.zig")))
            .current_dir(dir);
        run_captured(
            &mut cmd,
            &format!("zig build-obj ({name} for {zig_target})"),
        )?;
        out.push(object);
    }
    // Named relative to `dir`, so no temporary path reaches the object's symbols.
    std::fs::write(dir.join("ironstar-memcmp.c"), MEMCMP_C)?;
    let mut cc = Command::new(zig);
    cc.arg("cc")
        .args(["-target", zig_target])
        .args(MEMCMP_CFLAGS)
        .args(["-c", "ironstar-memcmp.c", "-o", "ironstar-memcmp.o"])
        .current_dir(dir);
    run_captured(&mut cc, &format!("zig cc (memcmp for {zig_target})"))?;
    std::fs::remove_file(dir.join("ironstar-memcmp.c"))?;
    out.push(dir.join("ironstar-memcmp.o"));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_names_the_allocators() {
        assert_eq!("mimalloc".parse(), Ok(Allocator::Mimalloc));
        assert_eq!("system".parse(), Ok(Allocator::System));
        let e = "jemalloc".parse::<Allocator>().unwrap_err();
        assert!(e.contains("`system` (musl's) or `mimalloc`"), "{e}");
        assert_eq!(Allocator::Mimalloc.to_string(), "mimalloc");
    }
}
