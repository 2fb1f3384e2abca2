//! The environment variables ironstar sets for the cargo it runs, per target, each only where the
//! user has set nothing, and merged with what the user's cargo configuration says.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use super::config::{self, UserConfig};
use super::toolchain::{which, Toolchain};
use super::{CargoError, Result};
use crate::platform::Platform;

/// The environment the settings are checked against.
pub(super) struct Env(pub BTreeMap<String, OsString>);

impl Env {
    pub(super) fn from_process() -> Self {
        Env(std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v)))
            .collect())
    }

    fn get(&self, key: &str) -> Option<&OsString> {
        self.0.get(key)
    }

    /// The first of `keys` that is set, and its value.
    pub(super) fn first(&self, keys: &[String]) -> Option<(String, String)> {
        keys.iter()
            .find_map(|k| Some((k.clone(), self.get(k)?.to_string_lossy().into_owned())))
    }
}

/// What the plan works from.
pub(super) struct Inputs<'a> {
    pub toolchain: &'a Toolchain,
    pub platforms: &'a [&'static Platform],
    pub compiles_c: bool,
    /// The package names of `Cargo.lock`.
    pub lock: &'a BTreeSet<String>,
    /// Per target, a directory the link searches first (the private libc of
    /// [`super::allocator`]).
    pub link_dirs: &'a [(String, PathBuf)],
    /// Per target, the OpenSSL ironstar built for openssl-sys ([`super::openssl`]).
    pub openssl: &'a [(String, PathBuf)],
    /// Where cargo runs: its config files are read from here.
    pub dir: &'a Path,
    /// Path prefixes to hide from the binaries, and what they become; the most specific last.
    pub remaps: Vec<(PathBuf, &'static str)>,
}

type Set = Vec<(String, OsString)>;

/// The environment variables to set for the build.
pub(super) fn plan(env: &Env, inp: &Inputs) -> Result<Set> {
    let mut set: Set = Vec::new();
    let mut ours: Vec<String> = vec!["-C".into(), "target-feature=+crt-static".into()];
    for (from, to) in &inp.remaps {
        ours.push(format!("--remap-path-prefix={}={to}", from.display()));
    }
    let global = global_rustflags(env, &ours);
    if let Some(flags) = &global {
        tracing::debug!("CARGO_ENCODED_RUSTFLAGS={}", flags.join(" "));
        set.push(("CARGO_ENCODED_RUSTFLAGS".into(), flags.join("\x1f").into()));
    }
    if global.is_some() && !inp.link_dirs.is_empty() {
        return Err(CargoError::GlobalRustflags);
    }
    for p in inp.platforms {
        let t = p.rust_target;
        let user = config::read(inp.dir, t)?;
        let linker = linker(env, inp.toolchain, &user, t, &mut set)?;
        let mut ours = ours.clone();
        for (_, dir) in inp.link_dirs.iter().filter(|(d, _)| d == t) {
            ours.push(format!("-Lnative={}", dir.display()));
        }
        let rustflags = match global {
            Some(_) => "CARGO_ENCODED_RUSTFLAGS (above)".to_string(),
            None => target_rustflags(env, &user, &ours, t, &mut set)?,
        };
        let cc = c_compiler(env, inp, t, &mut set)?;
        tracing::debug!("{p}: target {t}, linker {linker}, rustflags {rustflags}, {cc}");
        if let Some(page) = jemalloc_page(env, inp, t, &mut set) {
            tracing::debug!("{p}: {page}");
        }
        for (_, dir) in inp.openssl.iter().filter(|(d, _)| d == t) {
            set.extend(super::openssl::variables(t, dir));
        }
    }
    Ok(set)
}

fn upper(t: &str) -> String {
    t.to_uppercase().replace(['-', '.'], "_")
}

/// Cargo takes the first of CARGO_ENCODED_RUSTFLAGS, RUSTFLAGS, the target's rustflags and
/// build.rustflags, and ignores the rest. If the user set one of the two global variables (the
/// config files are then ignored by cargo too), ours go after them, globally: as cargo gets
/// --target, global flags reach neither build scripts nor proc macros. Encoded, so paths with
/// spaces stay whole; that is also the way when our own flags hold spaces.
fn global_rustflags(env: &Env, ours: &[String]) -> Option<Vec<String>> {
    let mut flags: Vec<String> = if let Some(v) = env.get("CARGO_ENCODED_RUSTFLAGS") {
        let v = v.to_string_lossy();
        v.split('\x1f')
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect()
    } else if let Some(v) = env.get("RUSTFLAGS") {
        v.to_string_lossy()
            .split_whitespace()
            .map(String::from)
            .collect()
    } else if ours.iter().any(|f| f.contains(char::is_whitespace)) {
        Vec::new()
    } else {
        return None;
    };
    flags.extend(ours.iter().cloned());
    Some(flags)
}

/// Per target: CARGO_TARGET_<T>_RUSTFLAGS. Cargo joins that variable to the config files'
/// `target.<T>.rustflags`, so those stay; but once it is set, cargo drops `build.rustflags`,
/// so those are carried into it. When a `target.'cfg(…)'` table has rustflags as well, which of
/// the two cargo would use depends on the cfg: refused rather than guessed.
fn target_rustflags(
    env: &Env,
    user: &UserConfig,
    ours: &[String],
    t: &str,
    set: &mut Set,
) -> Result<String> {
    let key = format!("CARGO_TARGET_{}_RUSTFLAGS", upper(t));
    let from_env: Option<Vec<String>> = env.get(&key).map(|v| {
        v.to_string_lossy()
            .split_whitespace()
            .map(String::from)
            .collect()
    });
    let build_env: Vec<String> = env
        .get("CARGO_BUILD_RUSTFLAGS")
        .map(|v| {
            v.to_string_lossy()
                .split_whitespace()
                .map(String::from)
                .collect()
        })
        .unwrap_or_default();
    let target_set = from_env.is_some() || !user.target_rustflags.is_empty();
    let has_build = !user.build_rustflags.is_empty() || !build_env.is_empty();
    let mut v: Vec<String> = from_env.unwrap_or_default();
    if !target_set && has_build {
        if let Some(file) = &user.cfg_rustflags {
            return Err(CargoError::RustflagsConflict {
                file: file.clone(),
                target: t.to_string(),
            });
        }
        v.extend(user.build_rustflags.iter().cloned());
        v.extend(build_env);
    }
    v.extend(ours.iter().cloned());
    let shown = user
        .target_rustflags
        .iter()
        .chain(&v)
        .cloned()
        .collect::<Vec<_>>()
        .join(" ");
    set.push((key, v.join(" ").into()));
    Ok(shown)
}

/// The user's linker (environment, then config files) is kept and must exist; otherwise
/// rust-lld for pure Rust, and cargo-zigbuild's zig for C.
fn linker(env: &Env, tc: &Toolchain, user: &UserConfig, t: &str, set: &mut Set) -> Result<String> {
    let key = format!("CARGO_TARGET_{}_LINKER", upper(t));
    let chosen = match (env.first(std::slice::from_ref(&key)), &user.linker) {
        (Some((_, l)), _) => Some((l, format!("{key} names it as the linker for {t}"))),
        (None, Some((l, file))) => {
            // Set it, or cargo-zigbuild's variable would win over the file.
            set.push((key.clone(), l.into()));
            let why = format!("{} names it as the linker for {t}", file.display());
            Some((l.clone(), why))
        }
        (None, None) => None,
    };
    if let Some((l, why)) = chosen {
        if which(&l).is_none() {
            return Err(CargoError::MissingTool { tool: l, hint: why });
        }
        return Ok(l);
    }
    Ok(match tc {
        Toolchain::RustLld => {
            set.push((key, "rust-lld".into()));
            "rust-lld".into()
        }
        Toolchain::Zig { .. } => "zig (cargo-zigbuild)".into(),
    })
}

/// jemalloc fixes its page size when it is configured, to the build machine's unless told: built
/// on a 4K-page arm64 machine it aborts on 16K/64K-page kernels ("Unsupported system page size").
/// For arm64, 64 KiB (which works on every arm64 kernel) whatever the builder, unless the user
/// chose. tikv-jemalloc-sys reads the target-prefixed variable first; the old jemalloc-sys only
/// the plain one, which would reach every target, so it is set only when all targets are arm64.
fn jemalloc_page(env: &Env, inp: &Inputs, t: &str, set: &mut Set) -> Option<String> {
    const VAR: &str = "JEMALLOC_SYS_WITH_LG_PAGE";
    let arm64 = |t: &str| t.starts_with("aarch64-");
    let tikv = inp.lock.contains("tikv-jemalloc-sys");
    let old = inp.lock.contains("jemalloc-sys");
    if !arm64(t) || !(tikv || old) {
        return None;
    }
    let prefixed = format!("{}_{VAR}", upper(t));
    if let Some((k, v)) = env.first(&[prefixed.clone(), VAR.into()]) {
        return Some(format!("jemalloc page 2^{v} (from {k})"));
    }
    let all_arm64 = inp.platforms.iter().all(|p| arm64(p.rust_target));
    if tikv {
        set.push((prefixed, "16".into()));
    }
    if old && all_arm64 && !set.iter().any(|(k, _)| k == VAR) {
        set.push((VAR.into(), "16".into()));
    }
    Some("jemalloc page 64 KiB (JEMALLOC_SYS_WITH_LG_PAGE=16)".into())
}

/// The C compiler: the user's (`CC_<triple>`, either spelling, or `TARGET_CC`; a plain `CC` is
/// for the host), which must exist when C is compiled, or zig through cargo-zigbuild. With zig,
/// CFLAGS and CXXFLAGS map the build's paths away as the rust flags do, unless the user set them
/// (C++ through the `cc` crate, and cmake-rs, which takes CMAKE_CXX_FLAGS from it, read CXXFLAGS).
fn c_compiler(env: &Env, inp: &Inputs, t: &str, set: &mut Set) -> Result<String> {
    let under = t.replace(['-', '.'], "_");
    let cc_keys = [format!("CC_{t}"), format!("CC_{under}"), "TARGET_CC".into()];
    if let Some((k, user)) = env.first(&cc_keys) {
        let program = user.split_whitespace().next().unwrap_or("").to_string();
        if inp.compiles_c && which(&program).is_none() {
            return Err(CargoError::MissingTool {
                tool: program,
                hint: format!(
                    "a dependency compiles C for {t} (Cargo.lock has the `cc` crate) and {k} \
                     names it; install it, or unset {k} to use zig"
                ),
            });
        }
        return Ok(format!("CC {user} (from {k})"));
    }
    let Toolchain::Zig { .. } = inp.toolchain else {
        return Ok("no C compiler".into());
    };
    let remap: Vec<String> = inp
        .remaps
        .iter()
        .map(|(from, to)| format!("-ffile-prefix-map={}={to}", from.display()))
        .collect();
    let remap = remap.join(" ");
    let mut flags = |name: &str| {
        let keys = [
            format!("{name}_{t}"),
            format!("{name}_{under}"),
            format!("TARGET_{name}"),
        ];
        match env.first(&keys) {
            Some((k, v)) => format!("{v} (from {k})"),
            None => {
                set.push((format!("{name}_{under}"), remap.clone().into()));
                remap.clone()
            }
        }
    };
    let (cflags, cxxflags) = (flags("CFLAGS"), flags("CXXFLAGS"));
    Ok(if cflags == cxxflags {
        format!("CC zig, CFLAGS and CXXFLAGS {cflags}")
    } else {
        format!("CC zig, CFLAGS {cflags}, CXXFLAGS {cxxflags}")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Env {
        let mut m: BTreeMap<String, OsString> = BTreeMap::new();
        m.insert("PATH".into(), std::env::var_os("PATH").unwrap_or_default());
        for (k, v) in pairs {
            m.insert(k.to_string(), v.into());
        }
        Env(m)
    }

    const ARM64: &str = "aarch64-unknown-linux-musl";

    fn plan_in(dir: &Path, e: &Env, tc: &Toolchain, compiles_c: bool) -> Result<Set> {
        plan_with(dir, e, tc, compiles_c, &BTreeSet::new())
    }

    fn plan_with(
        dir: &Path,
        e: &Env,
        tc: &Toolchain,
        compiles_c: bool,
        lock: &BTreeSet<String>,
    ) -> Result<Set> {
        let platforms = [Platform::parse("linux/arm64").unwrap()];
        plan(
            e,
            &Inputs {
                toolchain: tc,
                platforms: &platforms,
                compiles_c,
                lock,
                link_dirs: &[],
                openssl: &[],
                dir,
                remaps: vec![
                    ("/src/ws".into(), "/build"),
                    ("/src/ws/target".into(), "/build/target"),
                ],
            },
        )
    }

    fn zig() -> Toolchain {
        Toolchain::Zig {
            cargo_zigbuild: "cargo-zigbuild".into(),
        }
    }

    fn get<'a>(set: &'a Set, key: &str) -> Option<&'a str> {
        set.iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.to_str().unwrap())
    }

    const FLAGS: &str = "CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_RUSTFLAGS";
    const LINKER: &str = "CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER";

    #[test]
    fn pure_rust_gets_rust_lld_and_c_gets_zig_with_remapped_paths() {
        let tmp = tempfile::tempdir().unwrap();
        let set = plan_in(tmp.path(), &env(&[]), &Toolchain::RustLld, false).unwrap();
        assert_eq!(get(&set, LINKER), Some("rust-lld"));
        assert_eq!(
            get(&set, FLAGS),
            Some("-C target-feature=+crt-static --remap-path-prefix=/src/ws=/build --remap-path-prefix=/src/ws/target=/build/target")
        );
        assert_eq!(get(&set, "CC_aarch64_unknown_linux_musl"), None);
        assert_eq!(get(&set, "CXXFLAGS_aarch64_unknown_linux_musl"), None);

        let set = plan_in(tmp.path(), &env(&[]), &zig(), true).unwrap();
        // cargo-zigbuild sets the linker and CC; ironstar only adds its flags, for C and C++.
        assert_eq!(get(&set, LINKER), None);
        assert_eq!(get(&set, "CC_aarch64_unknown_linux_musl"), None);
        let remap =
            "-ffile-prefix-map=/src/ws=/build -ffile-prefix-map=/src/ws/target=/build/target";
        assert_eq!(get(&set, "CFLAGS_aarch64_unknown_linux_musl"), Some(remap));
        assert_eq!(
            get(&set, "CXXFLAGS_aarch64_unknown_linux_musl"),
            Some(remap)
        );
        assert_eq!(get(&set, "CARGO_ENCODED_RUSTFLAGS"), None);
    }

    #[test]
    fn c_and_cxx_flags_are_each_kept_when_the_user_set_them() {
        let tmp = tempfile::tempdir().unwrap();
        let (c, cxx) = (
            "CFLAGS_aarch64_unknown_linux_musl",
            "CXXFLAGS_aarch64_unknown_linux_musl",
        );
        for (user, c_kept, cxx_kept) in [
            ("CFLAGS_aarch64-unknown-linux-musl", true, false),
            ("TARGET_CFLAGS", true, false),
            ("CXXFLAGS_aarch64-unknown-linux-musl", false, true),
            ("CXXFLAGS_aarch64_unknown_linux_musl", false, true),
            ("TARGET_CXXFLAGS", false, true),
        ] {
            let set = plan_in(tmp.path(), &env(&[(user, "-O2")]), &zig(), true).unwrap();
            assert_eq!(get(&set, c).is_none(), c_kept, "{user}");
            assert_eq!(get(&set, cxx).is_none(), cxx_kept, "{user}");
        }
    }

    #[test]
    fn jemalloc_on_arm64_gets_a_64k_page_unless_the_user_chose() {
        let tmp = tempfile::tempdir().unwrap();
        let lock: BTreeSet<String> = ["cc".into(), "tikv-jemalloc-sys".into()].into();
        let key = "AARCH64_UNKNOWN_LINUX_MUSL_JEMALLOC_SYS_WITH_LG_PAGE";
        let set = plan_with(tmp.path(), &env(&[]), &zig(), true, &lock).unwrap();
        assert_eq!(get(&set, key), Some("16"));
        assert_eq!(get(&set, "JEMALLOC_SYS_WITH_LG_PAGE"), None);
        for user in [key, "JEMALLOC_SYS_WITH_LG_PAGE"] {
            let e = env(&[(user, "14")]);
            let set = plan_with(tmp.path(), &e, &zig(), true, &lock).unwrap();
            assert_eq!(get(&set, key), None, "{user}");
        }
        let set = plan_with(tmp.path(), &env(&[]), &zig(), true, &BTreeSet::new()).unwrap();
        assert_eq!(get(&set, key), None);
    }

    #[test]
    fn keeps_what_the_user_set() {
        let tmp = tempfile::tempdir().unwrap();
        let e = env(&[
            (LINKER, "sh"),
            ("CC_aarch64-unknown-linux-musl", "sh"),
            ("RUSTFLAGS", "-C opt-level=2"),
        ]);
        let set = plan_in(tmp.path(), &e, &zig(), true).unwrap();
        assert_eq!(get(&set, LINKER), None);
        assert_eq!(get(&set, "CC_aarch64_unknown_linux_musl"), None);
        assert_eq!(get(&set, "CFLAGS_aarch64_unknown_linux_musl"), None);
        assert_eq!(get(&set, "CXXFLAGS_aarch64_unknown_linux_musl"), None);
        // RUSTFLAGS would hide per-target flags: ours go after the user's, globally.
        let enc = get(&set, "CARGO_ENCODED_RUSTFLAGS").unwrap();
        assert!(
            enc.starts_with("-C\x1fopt-level=2\x1f-C\x1ftarget-feature=+crt-static\x1f"),
            "{enc:?}"
        );
        assert_eq!(get(&set, FLAGS), None);
    }

    #[test]
    fn merges_the_cargo_config() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir(tmp.path().join(".cargo")).unwrap();
        let config = tmp.path().join(".cargo/config.toml");
        // build.rustflags would be dropped by cargo once the target's variable is set: carried.
        std::fs::write(&config, "[build]\nrustflags = [\"--cfg\", \"mine\"]\n").unwrap();
        let set = plan_in(tmp.path(), &env(&[]), &zig(), true).unwrap();
        assert!(get(&set, FLAGS)
            .unwrap()
            .starts_with("--cfg mine -C target-feature=+crt-static "));
        // target.<triple>.rustflags are joined by cargo to the variable: not repeated; the
        // config's linker is set explicitly, or cargo-zigbuild's would win.
        std::fs::write(
            &config,
            format!("[build]\nrustflags = [\"--cfg\", \"mine\"]\n[target.{ARM64}]\nrustflags = [\"--cfg\", \"t\"]\nlinker = \"sh\"\n"),
        )
        .unwrap();
        let set = plan_in(tmp.path(), &env(&[]), &zig(), true).unwrap();
        assert!(get(&set, FLAGS)
            .unwrap()
            .starts_with("-C target-feature=+crt-static "));
        assert_eq!(get(&set, LINKER), Some("sh"));
        // A cfg table with rustflags besides build.rustflags: refused, naming the file.
        std::fs::write(
            &config,
            "[build]\nrustflags = [\"--cfg\", \"mine\"]\n[target.'cfg(unix)']\nrustflags = [\"--cfg\", \"u\"]\n",
        )
        .unwrap();
        let err = plan_in(tmp.path(), &env(&[]), &zig(), true).unwrap_err();
        assert!(matches!(err, CargoError::RustflagsConflict { .. }), "{err}");
        assert!(
            err.to_string().contains(".cargo/config.toml sets both"),
            "{err}"
        );
    }

    #[test]
    fn missing_tools_are_named() {
        let tmp = tempfile::tempdir().unwrap();
        let e = env(&[(LINKER, "no-such-linker-xyz")]);
        let err = plan_in(tmp.path(), &e, &Toolchain::RustLld, false).unwrap_err();
        assert!(
            err.to_string().starts_with("no-such-linker-xyz not found"),
            "{err}"
        );
        let e = env(&[("CC_aarch64_unknown_linux_musl", "no-such-cc-xyz")]);
        let err = plan_in(tmp.path(), &e, &zig(), true).unwrap_err();
        assert!(
            err.to_string().contains("no-such-cc-xyz not found"),
            "{err}"
        );
        // Not needed without C code.
        plan_in(tmp.path(), &e, &Toolchain::RustLld, false).unwrap();
    }
}
