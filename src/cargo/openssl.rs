//! OpenSSL without a sysroot: when a target's build has `openssl-sys` and not `openssl-src` (not
//! vendored), and the user pointed openssl-sys at no OpenSSL of their own, ironstar builds a
//! static OpenSSL for that target with zig and points openssl-sys at it through the
//! target-prefixed variables it reads (`<TARGET>_OPENSSL_DIR`, `<TARGET>_OPENSSL_STATIC`), so
//! build scripts for the build machine are untouched.
//!
//! The sources are the `openssl-src` crate's (fetched by cargo into its registry), configured as
//! openssl-sys's `vendored` feature configures them, for the target's OpenSSL platform. OpenSSL
//! embeds its install paths and the compiler's command line in libcrypto, and its build date:
//! the prefix is a fixed `/usr/local` (installed with `DESTDIR`), the compiler is called by a
//! bare name found on PATH (a wrapper that adds zig's target and maps the build directory away),
//! and `SOURCE_DATE_EPOCH` is fixed, so the libraries are the same bytes wherever they are
//! built. Each target's build is cached by the crate's version, the target, zig's version and
//! the options, built beside its entry and renamed into place (atomic), pruned as the other
//! cache entries are.

use std::ffi::OsStr;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use sha2::{Digest as _, Sha256};

use super::env::Env;
use super::{run_captured, CargoError, Result};

/// The `openssl-src` release whose OpenSSL is built: the newest 300.x (OpenSSL 3), which
/// openssl-sys 0.9 accepts for its own `vendored` build.
pub const OPENSSL_SRC_VERSION: &str = "300.6.1+3.6.3";

/// The OpenSSL release in it.
pub const OPENSSL_VERSION: &str = "3.6.3";

/// The `.crate`'s SHA-256 of that release (crates.io's, immutable).
const OPENSSL_SRC_CHECKSUM: &str =
    "46eb8fb9fb3b61ce1c0f8a026c4c1a0714d3a9e138e7fbde78753ce2babc3846";

/// OpenSSL's own directory: its default CA file (`/etc/ssl/cert.pem`) and directory
/// (`/etc/ssl/certs`) are where Debian and Alpine put theirs; the image's `ca-certificates`
/// item sets `SSL_CERT_FILE`, which OpenSSL reads first.
pub const OPENSSLDIR: &str = "/etc/ssl";

/// The variables openssl-sys reads for a system OpenSSL, each also as `<TARGET>_NAME`.
const USER_VARIABLES: [&str; 5] = [
    "OPENSSL_DIR",
    "OPENSSL_LIB_DIR",
    "OPENSSL_INCLUDE_DIR",
    "OPENSSL_STATIC",
    "OPENSSL_LIBS",
];

/// Configure's options, as openssl-sys's `vendored` build (openssl-src with its `legacy`
/// feature) gives them for a musl target, plus the flags the `cc` crate adds.
const OPTIONS: [&str; 19] = [
    "no-shared",
    "no-module",
    "no-tests",
    "no-comp",
    "no-zlib",
    "no-zlib-dynamic",
    "no-ssl3",
    "no-md2",
    "no-rc5",
    "no-weak-ssl-ciphers",
    "no-camellia",
    "no-idea",
    "no-seed",
    "no-engine",
    "no-async",
    "-DOPENSSL_NO_SECURE_MEMORY",
    "-ffunction-sections",
    "-fdata-sections",
    "-fPIC",
];

/// Where a target's OpenSSL comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpenSsl {
    /// Built by ironstar (static, [`OPENSSL_VERSION`]).
    Built,
    /// The user's: the variable they set.
    User(String),
}

/// OpenSSL's C, as the SBOM lists it: the `openssl-src` crate it is built from (its version
/// carries OpenSSL's after the `+`).
pub fn openssl_component() -> crate::sbom::Component {
    crate::sbom::Component {
        name: "openssl-src".into(),
        version: OPENSSL_SRC_VERSION.into(),
        source: Some("registry+https://github.com/rust-lang/crates.io-index".into()),
        checksum: Some(OPENSSL_SRC_CHECKSUM.into()),
        license: Some("Apache-2.0".into()),
        build_only: false,
    }
}

/// The summary's line for the platforms' OpenSSL (`platform`, where it comes from).
pub fn summary(of: &[(String, OpenSsl)]) -> Option<String> {
    let built: Vec<&str> = of
        .iter()
        .filter(|(_, o)| *o == OpenSsl::Built)
        .map(|(p, _)| p.as_str())
        .collect();
    let mut parts = Vec::new();
    if !built.is_empty() {
        let only = match built.len() == of.len() {
            true => String::new(),
            false => format!(" for {}", built.join(", ")),
        };
        parts.push(format!(
            "static {OPENSSL_VERSION} (built by ironstar){only}"
        ));
    }
    for (p, o) in of {
        if let OpenSsl::User(var) = o {
            parts.push(format!("{p}: yours ({var} is set)"));
        }
    }
    (!parts.is_empty()).then(|| format!("openssl: {}", parts.join("; ")))
}

fn upper(t: &str) -> String {
    t.to_uppercase().replace(['-', '.'], "_")
}

/// For each of `targets` whose build has an OpenSSL to find (`openssl-sys` in the lock, and
/// `openssl-src` not in that target's graph, judged by `vendored`, asked only when the lock has
/// it): the user's variable when they set one, else ironstar's to build.
pub(super) fn wanted(
    env: &Env,
    lock: &std::collections::BTreeSet<String>,
    targets: &[&str],
    vendored: &dyn Fn(&str) -> bool,
) -> Vec<(String, OpenSsl)> {
    if !lock.contains("openssl-sys") {
        return Vec::new();
    }
    targets
        .iter()
        .filter(|t| platform(t).is_some())
        .filter(|t| !(lock.contains("openssl-src") && vendored(t)))
        .map(|t| {
            let keys: Vec<String> = USER_VARIABLES
                .iter()
                .flat_map(|v| [format!("{}_{v}", upper(t)), v.to_string()])
                .collect();
            let from = match env.first(&keys) {
                Some((k, _)) => OpenSsl::User(k),
                None => OpenSsl::Built,
            };
            (t.to_string(), from)
        })
        .collect()
}

/// The build's OpenSSL, per target.
#[derive(Default)]
pub(super) struct Provided {
    /// Where each target's comes from.
    pub from: Vec<(String, OpenSsl)>,
    /// The directory of each one ironstar built (or found cached).
    pub dirs: Vec<(String, PathBuf)>,
}

/// Where each of `targets`' OpenSSL comes from, and the directory of each one ironstar built
/// (or found cached) for openssl-sys.
pub(super) fn for_build(
    sel: &super::Selection,
    opts: &super::CargoOptions,
    env: &Env,
    lock: &std::collections::BTreeSet<String>,
    targets: &[&str],
) -> Result<Provided> {
    let vendored = |t: &str| {
        let (f, m) = (&opts.features, &sel.manifest_path);
        // Cargo cannot tell: openssl-sys is left to find its own, as without ironstar.
        super::metadata::resolves(&sel.cargo, &sel.dir, m, f, t, "openssl-src") != Some(false)
    };
    // A variable of the user's `[env]` reaches openssl-sys as theirs: ironstar's would win over
    // a plain one there, the target-prefixed names being read first.
    let mut env = Env(env.0.clone());
    for (k, v) in super::config::env(&sel.dir)? {
        env.0.entry(k).or_insert(v.into());
    }
    let openssl = wanted(&env, lock, targets, &vendored);
    let to_build: Vec<&str> = openssl
        .iter()
        .filter(|(_, o)| *o == OpenSsl::Built)
        .map(|(t, _)| t.as_str())
        .collect();
    let dirs = match to_build.is_empty() {
        true => Vec::new(),
        false => prepare(&sel.cargo, &to_build, make_jobs(opts))?,
    };
    Ok(Provided {
        from: openssl,
        dirs,
    })
}

/// make's parallelism: `--jobs`, else `CARGO_BUILD_JOBS`, else the machine's.
fn make_jobs(opts: &super::CargoOptions) -> usize {
    opts.jobs
        .clone()
        .or_else(|| std::env::var("CARGO_BUILD_JOBS").ok())
        .and_then(|j| j.parse().ok())
        .filter(|&j| j > 0)
        .or_else(|| std::thread::available_parallelism().ok().map(|n| n.get()))
        .unwrap_or(1)
}

/// The variables that point openssl-sys at ironstar's OpenSSL for `target`.
pub(super) fn variables(target: &str, dir: &Path) -> [(String, std::ffi::OsString); 2] {
    let u = upper(target);
    [
        (format!("{u}_OPENSSL_DIR"), dir.into()),
        (format!("{u}_OPENSSL_STATIC"), "1".into()),
    ]
}

/// OpenSSL's Configure platform and zig's target (with its CPU flag) for a Rust target.
fn platform(target: &str) -> Option<(&'static str, &'static str)> {
    Some(match target {
        "x86_64-unknown-linux-musl" => ("linux-x86_64", "x86_64-linux-musl"),
        "aarch64-unknown-linux-musl" => ("linux-aarch64", "aarch64-linux-musl"),
        "i686-unknown-linux-musl" => ("linux-elf", "x86-linux-musl"),
        "riscv64gc-unknown-linux-musl" => ("linux64-riscv64", "riscv64-linux-musl"),
        "powerpc64le-unknown-linux-musl" => ("linux-ppc64le", "powerpc64le-linux-musl"),
        "s390x-unknown-linux-musl" => ("linux64-s390x", "s390x-linux-musl"),
        "arm-unknown-linux-musleabihf" => {
            ("linux-armv4", "arm-linux-musleabihf -mcpu=arm1176jzf_s")
        }
        "armv7-unknown-linux-musleabihf" => {
            ("linux-armv4", "arm-linux-musleabihf -mcpu=generic+v7a")
        }
        _ => return None,
    })
}

/// For each target, the directory of its static OpenSSL (`include/`, `lib/`), built unless
/// cached. `jobs`: make's parallelism.
fn prepare(cargo: &OsStr, targets: &[&str], jobs: usize) -> Result<Vec<(String, PathBuf)>> {
    let zig =
        super::allocator::zig("openssl-sys needs an OpenSSL for the target; ironstar builds it")?;
    let zig_version = run_captured(Command::new(&zig).arg("version"), "zig version")?;
    for tool in ["perl", "make"] {
        if super::toolchain::which(tool).is_none() {
            return Err(CargoError::MissingTool {
                tool: tool.into(),
                hint: format!(
                    "OpenSSL's build runs it (ironstar builds OpenSSL for openssl-sys); install \
                     it (`{}`), or set OPENSSL_DIR to an OpenSSL built for the target",
                    super::diagnose::install_command(tool)
                ),
            });
        }
    }
    let top = crate::cache::default_dir()
        .ok_or_else(|| CargoError::MissingTool {
            tool: "a cache directory".into(),
            hint: "set XDG_CACHE_HOME or HOME".into(),
        })?
        .join("openssl");
    crate::cache::prune(&top);
    let mut source = None;
    let mut dirs = Vec::new();
    for t in targets {
        let (os, zig_target) = platform(t).expect("only targets `wanted` keeps");
        let mut key = Sha256::new();
        for part in [
            OPENSSL_SRC_VERSION,
            t,
            zig_version.trim(),
            OPENSSLDIR,
            os,
            zig_target,
        ] {
            key.update(part.as_bytes());
            key.update([0]);
        }
        key.update(OPTIONS.join(" ").as_bytes());
        let dir = top.join(t).join(format!("{:x}", key.finalize()));
        if dir.join("lib/libcrypto.a").is_file() {
            tracing::info!(
                "OpenSSL {OPENSSL_VERSION} for {t}: cached ({})",
                dir.display()
            );
            // Used: keep it from being pruned.
            let _ = std::fs::write(dir.join("used"), b"");
        } else {
            if source.is_none() {
                let fetched = super::fetch::crate_source(
                    cargo,
                    &top.join("fetch"),
                    "openssl-src",
                    OPENSSL_SRC_VERSION,
                    "openssl/Configure",
                )?;
                source = Some(fetched.join("openssl"));
            }
            let src = source.as_deref().expect("fetched");
            build(&zig, src, t, (os, zig_target), jobs, &dir)?;
        }
        dirs.push((t.to_string(), dir));
    }
    Ok(dirs)
}

/// Configure, make and install OpenSSL for `target` into `dir`, built beside it.
fn build(
    zig: &Path,
    src: &Path,
    target: &str,
    (os, zig_target): (&str, &str),
    jobs: usize,
    dir: &Path,
) -> Result<()> {
    let parent = dir.parent().expect("under the cache root");
    std::fs::create_dir_all(parent)?;
    let tmp = tempfile::Builder::new()
        .prefix(".partial-")
        .tempdir_in(parent)?;
    let work = tmp.path().join("src");
    let bin = tmp.path().join("bin");
    std::fs::create_dir_all(&bin)?;
    let mut cp = Command::new("cp");
    cp.arg("-R").arg(src).arg(&work);
    run_captured(&mut cp, "cp (OpenSSL's sources)")?;
    let sh = |s: &Path| format!("'{}'", s.display().to_string().replace('\'', r"'\''"));
    let wrappers = [
        (
            "ironstar-cc",
            format!(
                "cc -target {zig_target} -ffile-prefix-map={}=/openssl",
                sh(&work)
            ),
        ),
        ("ironstar-ar", "ar".into()),
        ("ironstar-ranlib", "ranlib".into()),
    ];
    for (name, args) in wrappers {
        let script = format!("#!/bin/sh\nexec {} {args} \"$@\"\n", sh(zig));
        let path = bin.join(name);
        std::fs::write(&path, script)?;
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    let path =
        std::env::join_paths(std::iter::once(bin.clone()).chain(std::env::split_paths(&path)))
            .map_err(|e| CargoError::Io(std::io::Error::other(e)))?;
    let log_path = tmp.path().join("build.log");
    let log = File::create(&log_path)?;
    let step = |args: &[&str]| -> Result<()> {
        let (program, rest) = args.split_first().expect("a program");
        let mut cmd = Command::new(program);
        cmd.args(rest)
            .current_dir(&work)
            .env("PATH", &path)
            .env("CC", "ironstar-cc")
            .env("AR", "ironstar-ar")
            .env("RANLIB", "ironstar-ranlib")
            // The build date in libcrypto (`OpenSSL_version(OPENSSL_BUILT_ON)`): fixed.
            .env("SOURCE_DATE_EPOCH", "0")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log.try_clone()?);
        for k in [
            "CFLAGS",
            "CPPFLAGS",
            "CXXFLAGS",
            "LDFLAGS",
            "LDLIBS",
            "CROSS_COMPILE",
            "CXX",
            "MAKEFLAGS",
            "MFLAGS",
            "OPENSSL_LOCAL_CONFIG_DIR",
            "HASHBANGPERL",
        ] {
            cmd.env_remove(k);
        }
        let status = cmd.status().map_err(|source| CargoError::Spawn {
            command: program.to_string(),
            source,
        })?;
        if status.success() {
            return Ok(());
        }
        Err(CargoError::CargoFailed {
            command: format!(
                "{} (building OpenSSL {OPENSSL_VERSION} for {target}; its log: {})",
                args.join(" "),
                log_path.display()
            ),
            status,
        })
    };
    tracing::info!(
        "building OpenSSL {OPENSSL_VERSION} for {target} with zig (once: it is cached; a few minutes)"
    );
    let started = std::time::Instant::now();
    let openssldir = format!("--openssldir={OPENSSLDIR}");
    let mut configure = vec!["perl", "./Configure", "--prefix=/usr/local", &openssldir];
    configure.push("--libdir=lib");
    configure.extend(OPTIONS);
    configure.push(os);
    let jobs = format!("-j{jobs}");
    let destdir = format!("DESTDIR={}", tmp.path().join("install").display());
    let steps: [&[&str]; 3] = [
        &configure,
        &["make", &jobs, "build_libs"],
        &["make", "install_dev", &destdir],
    ];
    if let Some(e) = steps.into_iter().find_map(|args| step(args).err()) {
        let _ = tmp.keep(); // its log is named in the error
        return Err(e);
    }
    let installed = tmp.path().join("install/usr/local");
    for d in ["include", "lib"] {
        std::fs::rename(installed.join(d), tmp.path().join(d))?;
    }
    // Their paths are the fixed prefix's, not this directory's: not for use.
    for d in ["lib/pkgconfig", "lib/cmake", "install", "src", "bin"] {
        let _ = std::fs::remove_dir_all(tmp.path().join(d));
    }
    std::fs::write(tmp.path().join("used"), b"")?;
    tracing::info!(
        "built OpenSSL {OPENSSL_VERSION} for {target} in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    let done = tmp.keep();
    if let Err(e) = std::fs::rename(&done, dir) {
        // Another build put the same bytes in place first.
        let _ = std::fs::remove_dir_all(&done);
        if !dir.join("lib/libcrypto.a").is_file() {
            return Err(e.into());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{BTreeMap, BTreeSet};

    const MUSL: &str = "x86_64-unknown-linux-musl";
    const ARM: &str = "aarch64-unknown-linux-musl";

    fn env(pairs: &[(&str, &str)]) -> Env {
        Env(pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.into()))
            .collect::<BTreeMap<_, _>>())
    }

    #[test]
    fn builds_for_openssl_sys_unless_vendored_or_the_users() {
        let lock: BTreeSet<String> = ["cc".into(), "openssl-sys".into()].into();
        let no = |_: &str| false;
        let w = wanted(&env(&[]), &lock, &[MUSL, ARM], &no);
        assert_eq!(
            w,
            [(MUSL.into(), OpenSsl::Built), (ARM.into(), OpenSsl::Built)]
        );
        // Vendored: openssl-sys builds its own. In the lock only (an optional dependency whose
        // feature is off): not.
        let mut vendored = lock.clone();
        vendored.insert("openssl-src".into());
        assert!(wanted(&env(&[]), &vendored, &[MUSL], &|_| true).is_empty());
        // Vendored for one target only (a target-specific dependency): built for the other.
        let arm_only = |t: &str| t == ARM;
        let w = wanted(&env(&[]), &vendored, &[MUSL, ARM], &arm_only);
        assert_eq!(w, [(MUSL.into(), OpenSsl::Built)]);
        assert_eq!(wanted(&env(&[]), &vendored, &[MUSL], &no).len(), 1);
        assert!(wanted(&env(&[]), &BTreeSet::new(), &[MUSL], &no).is_empty());
        // Any variable the user set, plain (every target) or the target's own.
        let e = env(&[("AARCH64_UNKNOWN_LINUX_MUSL_OPENSSL_LIB_DIR", "/x")]);
        let w = wanted(&e, &lock, &[MUSL, ARM], &no);
        assert_eq!(w[0].1, OpenSsl::Built);
        assert_eq!(
            w[1].1,
            OpenSsl::User("AARCH64_UNKNOWN_LINUX_MUSL_OPENSSL_LIB_DIR".into())
        );
        let w = wanted(&env(&[("OPENSSL_STATIC", "1")]), &lock, &[MUSL, ARM], &no);
        assert!(w
            .iter()
            .all(|(_, o)| *o == OpenSsl::User("OPENSSL_STATIC".into())));
        assert_eq!(
            summary(&[
                ("linux/amd64".into(), OpenSsl::Built),
                ("linux/arm64".into(), w[1].1.clone())
            ])
            .unwrap(),
            "openssl: static 3.6.3 (built by ironstar) for linux/amd64; linux/arm64: yours (OPENSSL_STATIC is set)"
        );
        assert_eq!(
            variables(ARM, Path::new("/c"))[0].0,
            "AARCH64_UNKNOWN_LINUX_MUSL_OPENSSL_DIR"
        );
    }
}
