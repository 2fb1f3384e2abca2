//! Why a cargo build failed, said in one line with its fix.
//!
//! Cargo's JSON messages carry no output of a build script that failed (a `build-script-executed`
//! message comes only on success), so the cause is read from cargo's stderr, which ironstar
//! passes on and keeps the tail of: the failing unit's block (`failed to run custom build command
//! for …`, with the script's `--- stdout` and `--- stderr`, or `linking with … failed`). The
//! common causes of static musl builds are named with their fix; anything else ends with the
//! crate and the target that failed, cargo's own output above it.

use std::path::Path;

/// What went wrong, and for which crate and target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnosis {
    /// `name vX.Y.Z`, as cargo names the unit.
    pub krate: Option<String>,
    pub target: Option<String>,
    pub cause: Cause,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cause {
    /// A build script (prost-build, tonic-build) needs `protoc`.
    Protoc,
    /// A build script runs `cmake`, which is not installed.
    Cmake,
    /// A `-sys` crate asked pkg-config (or its own search) for a C library of a cross target.
    /// `feature`: its feature that builds the library from source; `variable`: else the variable
    /// that points it at one.
    CrossLibrary {
        feature: Option<String>,
        variable: Option<String>,
    },
    /// openssl-sys found no usable OpenSSL where the user's variable points (`NAME = value`, as
    /// openssl-sys prints it). Without such a variable ironstar builds one, so this is the
    /// case left.
    OpenSslVariable {
        variable: String,
        value: String,
    },
    /// The link needs a symbol only glibc has: an object or library built against glibc.
    GlibcSymbol {
        symbol: String,
        library: Option<String>,
    },
    Unknown,
}

/// One failing unit's block of cargo's output.
struct Block<'a> {
    krate: Option<String>,
    lines: Vec<&'a str>,
}

/// Diagnose cargo's stderr (`output`, ANSI codes already removed) for a build of `triples`;
/// `features` gives a package's features by name (from `cargo metadata`).
pub fn diagnose(
    output: &str,
    triples: &[&str],
    features: &dyn Fn(&str) -> Vec<String>,
) -> Diagnosis {
    let lines: Vec<&str> = output
        .lines()
        .map(|l| l.rsplit('\r').next().unwrap_or(l))
        .collect();
    let Some(block) = failing_block(&lines) else {
        return Diagnosis {
            krate: None,
            target: only(triples),
            cause: Cause::Unknown,
        };
    };
    let target = triples
        .iter()
        .find(|t| {
            let under = t.replace('-', "_");
            let upper = under.to_uppercase();
            block
                .lines
                .iter()
                .any(|l| l.contains(**t) || l.contains(&under) || l.contains(&upper))
        })
        .map(|t| t.to_string())
        .or_else(|| only(triples));
    let name = block
        .krate
        .as_deref()
        .and_then(|k| k.split_whitespace().next())
        .unwrap_or_default()
        .to_string();
    let cause = cause(&block.lines, &name, target.as_deref(), features);
    Diagnosis {
        krate: block.krate,
        target,
        cause,
    }
}

fn only(triples: &[&str]) -> Option<String> {
    match triples {
        [t] => Some(t.to_string()),
        _ => None,
    }
}

/// The first failing unit: a build script's block, else a link error's, else the first
/// `could not compile`.
fn failing_block<'a>(lines: &[&'a str]) -> Option<Block<'a>> {
    let starts = |l: &str| {
        l.starts_with("error: failed to run custom build command for `")
            || l.starts_with("error: linking with `")
    };
    if let Some(i) = lines.iter().position(|l| starts(l)) {
        let end = lines[i + 1..]
            .iter()
            .position(|l| l.starts_with("error: failed to run custom build command"))
            .map_or(lines.len(), |n| i + 1 + n);
        let block = &lines[i..end];
        let krate = block
            .iter()
            .find_map(|l| quoted_after(l, "error: failed to run custom build command for `"))
            .or_else(|| compiled_crate(&lines[i..]));
        return Some(Block {
            krate,
            lines: block.to_vec(),
        });
    }
    let krate = compiled_crate(lines)?;
    Some(Block {
        krate: Some(krate),
        lines: lines.to_vec(),
    })
}

/// The crate of cargo's `error: could not compile `NAME` (…)`.
fn compiled_crate(lines: &[&str]) -> Option<String> {
    lines
        .iter()
        .find_map(|l| quoted_after(l, "error: could not compile `"))
}

fn quoted_after(line: &str, prefix: &str) -> Option<String> {
    let rest = line.strip_prefix(prefix)?;
    // `name v1.2.3 (/path/of/a/local/package)`: the path is noise in one line.
    let unit = rest.split('`').next()?;
    Some(
        unit.split_whitespace()
            .take(2)
            .collect::<Vec<_>>()
            .join(" "),
    )
}

fn cause(
    lines: &[&str],
    name: &str,
    target: Option<&str>,
    features: &dyn Fn(&str) -> Vec<String>,
) -> Cause {
    let has = |needle: &str| lines.iter().any(|l| l.contains(needle));
    if has("Could not find `protoc`") || has("protoc failed") && has("No such file") {
        return Cause::Protoc;
    }
    if has("is `cmake` not installed?") {
        return Cause::Cmake;
    }
    if let Some(symbol) = lines.iter().find_map(|l| undefined_symbol(l)) {
        if glibc_only(&symbol) {
            let library = lines.iter().find_map(|l| {
                let path = l.split(" in archive ").nth(1)?;
                Some(Path::new(path.trim()).file_name()?.to_string_lossy().into())
            });
            return Cause::GlibcSymbol { symbol, library };
        }
    }
    if name == "openssl-sys" {
        if let Some((variable, value)) = lines.iter().find_map(|l| openssl_variable(l)) {
            return Cause::OpenSslVariable { variable, value };
        }
    }
    let sys = name.ends_with("-sys");
    let asks_library = has("pkg-config") || has("PKG_CONFIG") || has("Could not find directory of");
    if sys && asks_library && has("failed to run custom build command") {
        let feature = vendoring_feature(&features(name));
        let variable = match feature {
            Some(_) => None,
            None => library_variable(lines, target),
        };
        return Cause::CrossLibrary { feature, variable };
    }
    Cause::Unknown
}

/// A variable openssl-sys read and found set, from its `NAME = value` line.
fn openssl_variable(line: &str) -> Option<(String, String)> {
    let (name, value) = line.trim().split_once(" = ")?;
    let read = [
        "OPENSSL_DIR",
        "OPENSSL_LIB_DIR",
        "OPENSSL_INCLUDE_DIR",
        "OPENSSL_LIBS",
    ];
    let ok = |c: char| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_';
    (name.chars().all(ok) && read.iter().any(|r| name.ends_with(r)))
        .then(|| (name.to_string(), value.to_string()))
}

/// The symbol of lld's `undefined symbol: X` or GNU ld's "undefined reference to `X'".
fn undefined_symbol(line: &str) -> Option<String> {
    if let Some(rest) = line.split("undefined symbol: ").nth(1) {
        return Some(rest.split_whitespace().next()?.to_string());
    }
    let rest = line.split("undefined reference to `").nth(1)?;
    Some(rest.split('\'').next()?.to_string())
}

/// glibc's fortify (`__*_chk`), C99/C23 scanf aliases, the old stat ABI and versioned names:
/// musl has none of them, so an object that calls them was compiled against glibc's headers.
fn glibc_only(symbol: &str) -> bool {
    let s = symbol.trim_matches(|c| c == '`' || c == '\'');
    (s.starts_with("__") && s.ends_with("_chk"))
        || s.starts_with("__isoc99_")
        || s.starts_with("__isoc23_")
        || matches!(
            s,
            "__xstat" | "__fxstat" | "__lxstat" | "__xstat64" | "__fxstat64"
        )
        || s.starts_with("gnu_get_libc")
        || s.contains("@GLIBC_")
}

/// The feature that builds the C library from source: `vendored`, `bundled`, or one named so.
fn vendoring_feature(features: &[String]) -> Option<String> {
    for exact in ["vendored", "bundled"] {
        if let Some(f) = features.iter().find(|f| *f == exact) {
            return Some(f.clone());
        }
    }
    features
        .iter()
        .find(|f| f.contains("vendored") || f.contains("bundled"))
        .cloned()
}

/// The variable a build script reads for the library's location (`cargo:rerun-if-env-changed`
/// lines name what it reads), the target's own spelling first; else pkg-config's.
fn library_variable(lines: &[&str], target: Option<&str>) -> Option<String> {
    let read: Vec<&str> = lines
        .iter()
        .filter_map(|l| l.trim().strip_prefix("cargo:rerun-if-env-changed="))
        .collect();
    let upper = target.map(|t| t.to_uppercase().replace('-', "_"));
    let is_dir = |v: &str| v.ends_with("_DIR") && !v.contains("PKG_CONFIG");
    let for_target = |v: &str| upper.as_ref().is_some_and(|u| v.starts_with(u.as_str()));
    read.iter()
        .find(|v| is_dir(v) && for_target(v))
        .or_else(|| read.iter().find(|v| is_dir(v)))
        .map(|v| v.to_string())
        .or_else(|| {
            let t = target?.replace('-', "_");
            Some(format!("PKG_CONFIG_PATH_{t} (with PKG_CONFIG_SYSROOT_DIR)"))
        })
}

/// The command that installs `what` (`protoc`, `cmake`) on this machine's OS.
pub fn install_command(what: &str) -> String {
    let os = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
    let ids: Vec<&str> = os
        .lines()
        .filter_map(|l| l.strip_prefix("ID=").or_else(|| l.strip_prefix("ID_LIKE=")))
        .flat_map(|v| v.trim_matches('"').split_whitespace())
        .collect();
    let pkg = |debian: &str, fedora: &str, alpine: &str, arch: &str, brew: &str| {
        let family = ["debian", "ubuntu", "fedora", "rhel", "alpine", "arch"]
            .into_iter()
            .find(|f| ids.contains(f));
        match (cfg!(target_os = "macos"), family) {
            (true, _) => format!("brew install {brew}"),
            (_, Some("debian" | "ubuntu")) => format!("apt-get install {debian}"),
            (_, Some("fedora" | "rhel")) => format!("dnf install {fedora}"),
            (_, Some("alpine")) => format!("apk add {alpine}"),
            (_, Some("arch")) => format!("pacman -S {arch}"),
            _ => format!(
                "apt-get install {debian}, dnf install {fedora}, apk add {alpine} or brew install {brew}"
            ),
        }
    };
    match what {
        "protoc" => pkg(
            "protobuf-compiler",
            "protobuf-compiler",
            "protoc",
            "protobuf",
            "protobuf",
        ),
        _ => pkg(what, what, what, what, what),
    }
}

impl std::fmt::Display for Diagnosis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let krate = self.krate.as_deref().unwrap_or("a crate");
        let name = krate.split_whitespace().next().unwrap_or(krate);
        let target = self.target.as_deref().unwrap_or("its target");
        match &self.cause {
            Cause::Protoc => write!(
                f,
                "{krate}'s build script needs protoc (the Protocol Buffers compiler) and none is \
                 on PATH: install it (`{}`) or set PROTOC to its path",
                install_command("protoc")
            ),
            Cause::Cmake => write!(
                f,
                "{krate}'s build script runs cmake, which is not installed (zig compiles the C, \
                 cmake must be on the build machine): install it (`{}`) or set CMAKE to its path",
                install_command("cmake")
            ),
            Cause::CrossLibrary {
                feature: Some(feature),
                ..
            } => write!(
                f,
                "{krate} looked for its C library for {target} on the build machine (pkg-config), \
                 which has none for a cross target: enable its `{feature}` feature, which builds \
                 it from source (`{name} = {{ version = \"…\", features = [\"{feature}\"] }}` in \
                 [dependencies], or `--features {name}/{feature}` if it is a direct dependency)"
            ),
            Cause::CrossLibrary { variable, .. } => {
                write!(
                f,
                "{krate} looked for its C library for {target} on the build machine (pkg-config), \
                 which has none for a cross target, and it has no vendored or bundled feature: \
                 build the library for {target} and set {}",
                variable.as_deref().unwrap_or("the variable its build script reads")
            )
            }
            Cause::OpenSslVariable { variable, value } => write!(
                f,
                "{krate} found no usable OpenSSL for {target} where {variable} points ({value}): \
                 correct it (an OpenSSL built for {target}), or unset the OPENSSL_* variables \
                 and ironstar builds a static OpenSSL for each target itself"
            ),
            Cause::GlibcSymbol { symbol, library } => write!(
                f,
                "{krate} did not link for {target}: `{symbol}` is a glibc-only symbol, so {} was \
                 compiled against glibc; build it from source for musl (its -sys crate's \
                 vendored/bundled feature) instead of linking a prebuilt glibc library",
                library.as_deref().unwrap_or("an object it links")
            ),
            Cause::Unknown => write!(
                f,
                "{krate} failed to build for {target}; cargo's output above says why"
            ),
        }
    }
}

/// ANSI escape sequences (cargo's colours) removed.
pub fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\x1b' {
            out.push(c);
            continue;
        }
        if chars.next() == Some('[') {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const MUSL: &str = "x86_64-unknown-linux-musl";
    const ARM: &str = "aarch64-unknown-linux-musl";

    fn no_features(_: &str) -> Vec<String> {
        Vec::new()
    }

    #[test]
    fn openssl_sys_for_a_cross_target_gets_its_vendored_feature() {
        let out = "   Compiling foo v0.1.0\n\
error: failed to run custom build command for `openssl-sys v0.9.104`\n\
\n\
Caused by:\n\
  process didn't exit successfully: `/t/release/build/openssl-sys-1/build-script-main` (exit status: 101)\n\
  --- stdout\n\
  cargo:rerun-if-env-changed=AARCH64_UNKNOWN_LINUX_MUSL_OPENSSL_DIR\n\
  cargo:rerun-if-env-changed=OPENSSL_DIR\n\
  cargo:rerun-if-env-changed=PKG_CONFIG_aarch64-unknown-linux-musl\n\
  --- stderr\n\
  Could not find directory of OpenSSL installation, and this `-sys` crate cannot\n\
  proceed without this knowledge. ... apt-get install libssl-dev\n";
        let feats = |n: &str| {
            assert_eq!(n, "openssl-sys");
            vec!["bindgen".to_string(), "vendored".to_string()]
        };
        let d = diagnose(out, &[MUSL, ARM], &feats);
        assert_eq!(d.krate.as_deref(), Some("openssl-sys v0.9.104"));
        assert_eq!(d.target.as_deref(), Some(ARM));
        let line = d.to_string();
        assert!(line.contains("`vendored` feature"), "{line}");
        assert!(line.contains("--features openssl-sys/vendored"), "{line}");
        assert!(!line.contains("libssl-dev"), "{line}");
        // Without such a feature: the target's own variable.
        let d = diagnose(out, &[MUSL, ARM], &no_features);
        assert!(
            d.to_string()
                .ends_with("set AARCH64_UNKNOWN_LINUX_MUSL_OPENSSL_DIR"),
            "{d}"
        );
    }

    #[test]
    fn openssl_sys_with_the_users_variable_is_told_to_correct_or_unset_it() {
        let out = "error: failed to run custom build command for `openssl-sys v0.9.118`\n\
  --- stdout\n\
  cargo:rerun-if-env-changed=X86_64_UNKNOWN_LINUX_MUSL_OPENSSL_LIB_DIR\n\
  X86_64_UNKNOWN_LINUX_MUSL_OPENSSL_LIB_DIR unset\n\
  cargo:rerun-if-env-changed=OPENSSL_DIR\n\
  OPENSSL_DIR = /usr\n\
  --- stderr\n\
  thread 'main' panicked: OpenSSL include directory does not exist: /usr/include\n";
        let d = diagnose(out, &[MUSL], &no_features);
        assert_eq!(
            d.cause,
            Cause::OpenSslVariable {
                variable: "OPENSSL_DIR".into(),
                value: "/usr".into()
            }
        );
        let line = d.to_string();
        assert!(line.contains("where OPENSSL_DIR points (/usr)"), "{line}");
        assert!(line.contains("unset the OPENSSL_* variables"), "{line}");
        assert!(!line.contains("libssl-dev"), "{line}");
    }

    #[test]
    fn protoc_cmake_and_glibc_symbols_are_named() {
        let protoc = "error: failed to run custom build command for `svc v0.1.0 (/src/svc)`\n\
  --- stderr\n\
  thread 'main' panicked at build.rs:2:5:\n\
  called `Result::unwrap()` on an `Err` value: Custom { kind: NotFound, error: \"Could not find `protoc`. If `protoc` is installed, try setting the `PROTOC` environment variable\" }\n";
        let d = diagnose(protoc, &[MUSL], &no_features);
        assert_eq!(d.cause, Cause::Protoc);
        assert_eq!(d.target.as_deref(), Some(MUSL));
        assert!(d.to_string().contains("set PROTOC"), "{d}");

        let cmake = "\x1b[1m\x1b[91merror\x1b[0m: failed to run custom build command for `rdkafka-sys v4.8.0+2.3.0`\n\
  running: cd \"/t/x86_64-unknown-linux-musl/release/build/rdkafka-sys-1/out/build\" && \"cmake\"\n\
  --- stderr\n\
  failed to execute command: No such file or directory (os error 2)\n\
  is `cmake` not installed?\n";
        let d = diagnose(&strip_ansi(cmake), &[MUSL, ARM], &no_features);
        assert_eq!(d.cause, Cause::Cmake);
        assert_eq!(d.target.as_deref(), Some(MUSL));

        let link = "error: linking with `/root/.cache/cargo-zigbuild/0.20/zigcc-aarch64-unknown-linux-musl-1.sh` failed: exit status: 1\n\
  = note: error: undefined symbol: __memcpy_chk\n\
          note: referenced by foo.c\n\
          note:               foo.o:(bar) in archive /t/aarch64-unknown-linux-musl/release/build/foo-sys-1/out/libfoo.a\n\
\n\
error: could not compile `app` (bin \"app\") due to 1 previous error\n";
        let d = diagnose(link, &[MUSL, ARM], &no_features);
        assert_eq!(d.krate.as_deref(), Some("app"));
        assert_eq!(d.target.as_deref(), Some(ARM));
        assert_eq!(
            d.cause,
            Cause::GlibcSymbol {
                symbol: "__memcpy_chk".into(),
                library: Some("libfoo.a".into())
            }
        );
    }

    #[test]
    fn unknown_causes_name_the_crate_and_target() {
        let out = "error[E0425]: cannot find value `x`\nerror: could not compile `app` (bin \"app\") due to 1 previous error\n";
        let d = diagnose(out, &[MUSL], &no_features);
        assert_eq!(d.cause, Cause::Unknown);
        assert_eq!(
            d.to_string(),
            format!("app failed to build for {MUSL}; cargo's output above says why")
        );
    }
}
