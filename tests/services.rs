//! Services that use C libraries (`ironstar build --cargo`): a failed build ends with its cause
//! and fix in one line, jemalloc's page size for arm64, musl's allocator replaced, and C++ compiled
//! with no build path in it.
//!
//! Fixtures under `tests/fixtures/`: `protoc-hello` (prost-build in its build script),
//! `vendored-app` (a `-sys` crate beside it asking pkg-config for its library unless `vendored`),
//! `jemalloc-hello` (tikv-jemalloc-sys), `alloc-threads` (8 threads allocating), `cxx-hello` (C++
//! through the `cc` crate naming its paths). Each builds in its own target directory under ours
//! (`target/test-fixtures/`), kept between runs. OpenSSL: tests/openssl.rs.

mod support;
use support::common;

use std::path::{Path, PathBuf};
use std::process::Command;

use support::common::{digest_line, ironstar, ok, run, stderr};
use support::fixture_crate::{binary_from_layout, build, fixture_target_dir, output_of};

/// A failed build's last line, with the whole of stderr for the assertion message.
fn failure(cmd: &mut Command, out: &Path) -> (String, String) {
    let o = run(cmd);
    let err = stderr(&o);
    assert!(!o.status.success(), "built, but should not have: {err}");
    assert!(!out.exists(), "a layout was written at {}", out.display());
    let last = err.lines().last().unwrap_or_default().to_string();
    (last, err)
}

/// PATH with `tool` hidden: each directory holding it is replaced by a copy of its links (in
/// `scratch`) without it, so the rest of /usr/bin (the host's `cc`, git) stays reachable.
fn path_without(tool: &str, scratch: &Path) -> std::ffi::OsString {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs: Vec<PathBuf> = std::env::split_paths(&path)
        .enumerate()
        .map(|(i, d)| {
            if !d.join(tool).exists() {
                return d;
            }
            let shadow = scratch.join(format!("path{i}"));
            std::fs::create_dir_all(&shadow).unwrap();
            for e in std::fs::read_dir(&d).unwrap().flatten() {
                if e.file_name() != tool {
                    let _ = std::os::unix::fs::symlink(e.path(), shadow.join(e.file_name()));
                }
            }
            shadow
        })
        .collect();
    std::env::join_paths(dirs).unwrap()
}

#[test]
fn a_build_script_needing_protoc_without_one_ends_naming_protoc_and_its_fix() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("oci");
    let (last, err) = failure(
        build("protoc-hello", "linux/amd64", &out)
            .env("PATH", path_without("protoc", tmp.path()))
            .env_remove("PROTOC"),
        &out,
    );
    assert!(
        last.starts_with("ironstar: error: cargo failed (exit status: 101): protoc-hello v0.1.0"),
        "{err}"
    );
    assert!(
        last.contains("needs protoc") && last.contains("or set PROTOC to its path"),
        "{err}"
    );
    // The package for this machine's OS (Debian here, as in CI).
    let debian = std::fs::read_to_string("/etc/os-release").is_ok_and(|o| o.contains("ID=debian"));
    if debian {
        assert!(
            last.contains("`apt-get install protobuf-compiler`"),
            "{last}"
        );
    }
    // prost-build's own message is still there, above.
    assert!(err.contains("Could not find `protoc`"), "{err}");
}

#[test]
fn a_sys_crate_asking_pkg_config_for_a_cross_target_is_told_its_vendored_feature() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("oci");
    let mut cmd = build("vendored-app", "linux/arm64", &out);
    for k in [
        "PKG_CONFIG_ALLOW_CROSS",
        "PKG_CONFIG_PATH",
        "PKG_CONFIG_SYSROOT_DIR",
    ] {
        cmd.env_remove(k);
    }
    let (last, err) = failure(&mut cmd, &out);
    assert!(
        last.contains("demo-sys v0.1.0 looked for its C library for aarch64-unknown-linux-musl"),
        "{err}"
    );
    assert!(
        last.contains("enable its `vendored` feature")
            && last.contains("--features demo-sys/vendored"),
        "{err}"
    );
    assert!(!last.contains("libssl-dev"), "{last}");

    // The advice, followed, builds; the binary says its library is the vendored one.
    let o =
        ok(build("vendored-app", "linux/arm64", &out).args(["--features", "demo-sys/vendored"]));
    digest_line(&o);
    let bin = binary_from_layout(&out, "linux/arm64", "vendored-app", tmp.path());
    assert_eq!(
        output_of(&bin, "linux/arm64").trim(),
        "vendored-app vendored"
    );
}

/// The newest run of `package`'s build script for `triple` in fixture `name`'s target
/// directory: its `output` (what it printed) and its `OUT_DIR`.
fn build_script_run(name: &str, triple: &str, package: &str) -> (String, PathBuf) {
    let dir = fixture_target_dir(name).join(triple).join("release/build");
    let newest = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(&format!("{package}-"))
        })
        .filter_map(|e| {
            let output = e.path().join("output");
            let mtime = std::fs::metadata(&output).ok()?.modified().ok()?;
            Some((mtime, e.path()))
        })
        .max()
        .unwrap_or_else(|| panic!("no run of {package}'s build script in {}", dir.display()))
        .1;
    let output = std::fs::read_to_string(newest.join("output")).unwrap();
    (output, newest.join("out"))
}

#[test]
fn jemalloc_for_arm64_is_configured_with_a_64k_page_as_if_set_by_hand() {
    common::require_tool("zig", "zig: sh scripts/install-deps.sh");
    let tmp = tempfile::tempdir().unwrap();
    const VAR: &str = "JEMALLOC_SYS_WITH_LG_PAGE";
    let prefixed = format!("AARCH64_UNKNOWN_LINUX_MUSL_{VAR}");
    // SOURCE_DATE_EPOCH as tests/cargo.rs's jemalloc test has it: the same build, shared.
    let auto = build("jemalloc-hello", "linux/arm64", &tmp.path().join("auto"))
        .env("SOURCE_DATE_EPOCH", "1")
        .env_remove(VAR)
        .env_remove(&prefixed)
        .output()
        .unwrap();
    assert!(auto.status.success(), "{}", stderr(&auto));
    let auto = digest_line(&String::from_utf8_lossy(&auto.stdout));
    // What reached jemalloc's configure, and what configure made of it.
    let (output, out_dir) = build_script_run(
        "jemalloc-hello",
        "aarch64-unknown-linux-musl",
        "tikv-jemalloc-sys",
    );
    assert!(output.contains("--with-lg-page=16"), "{output}");
    let defs = std::fs::read_to_string(
        out_dir.join("build/include/jemalloc/internal/jemalloc_internal_defs.h"),
    )
    .unwrap();
    assert!(defs.contains("#define LG_PAGE 16"), "{defs}");

    // The plain variable set by hand (jemalloc reconfigured): the same binary, so digest.
    let by_hand = ok(
        build("jemalloc-hello", "linux/arm64", &tmp.path().join("hand"))
            .env("SOURCE_DATE_EPOCH", "1")
            .env(VAR, "16")
            .env_remove(&prefixed),
    );
    assert_eq!(digest_line(&by_hand), auto);
    let (output, _) = build_script_run(
        "jemalloc-hello",
        "aarch64-unknown-linux-musl",
        "tikv-jemalloc-sys",
    );
    assert!(output.contains("--with-lg-page=16"), "{output}");
    let bin = binary_from_layout(
        &tmp.path().join("hand"),
        "linux/arm64",
        "jemalloc-hello",
        tmp.path(),
    );
    assert!(output_of(&bin, "linux/arm64").starts_with("jemalloc-hello aarch64 5.3.0"));
}

/// The address of each of `names` in the ELF's symbol table.
fn symbols(bin: &Path, names: &[&str]) -> Vec<Option<u64>> {
    let bytes = std::fs::read(bin).unwrap();
    let elf = goblin::elf::Elf::parse(&bytes).unwrap();
    names
        .iter()
        .map(|n| {
            elf.syms
                .iter()
                .find(|s| s.st_value != 0 && elf.strtab.get_at(s.st_name) == Some(n))
                .map(|s| s.st_value)
        })
        .collect()
}

#[test]
fn allocator_mimalloc_replaces_musls_malloc_on_both_arches() {
    common::require_tool("zig", "zig: sh scripts/install-deps.sh");
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("oci");
    // `allocator = "mimalloc"` is in the fixture's [package.metadata.ironstar].
    let o = run(&mut build("alloc-threads", "linux/amd64,linux/arm64", &out));
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("allocator      mimalloc 0.1.44 (libmimalloc-sys)"),
        "{err}"
    );
    for (platform, arch) in [("linux/amd64", "x86_64"), ("linux/arm64", "aarch64")] {
        let bin = binary_from_layout(&out, platform, "alloc-threads", tmp.path());
        // `malloc` and `free` are mimalloc's: the same code as its own entry points.
        let found = symbols(&bin, &["malloc", "mi_malloc", "free", "mi_free"]);
        assert!(found.iter().all(Option::is_some), "{platform}: {found:?}");
        assert_eq!(found[0], found[1], "{platform}: malloc is not mi_malloc");
        assert_eq!(found[2], found[3], "{platform}: free is not mi_free");
        // Static, and runs (arm64 under qemu).
        assert_eq!(
            output_of(&bin, platform).trim(),
            format!("alloc-threads {arch} 51928320")
        );
    }
    // The SBOM lists mimalloc's C beside the crates.
    let sbom = String::from_utf8(support::sbom::sbom_of(&out, "linux/arm64")).unwrap();
    assert!(sbom.contains("pkg:cargo/libmimalloc-sys@0.1.44"), "{sbom}");
    // Reproducible: a fresh mimalloc cache and another target directory give the same digest.
    let digest = |cmd: &mut Command| digest_line(&ok(cmd.env("SOURCE_DATE_EPOCH", "1")));
    let here = digest(&mut build(
        "alloc-threads",
        "linux/amd64",
        &tmp.path().join("a"),
    ));
    let mut fresh = ironstar();
    fresh
        .args(["build", "--cargo", "--locked", "--manifest-path"])
        .arg(common::repo().join("tests/fixtures/alloc-threads/Cargo.toml"))
        .arg("--target-dir")
        .arg(tmp.path().join("target"))
        .args(["--platform", "linux/amd64", "-o"])
        .arg(tmp.path().join("b"))
        .env("XDG_CACHE_HOME", tmp.path().join("cache"));
    assert_eq!(digest(&mut fresh), here);
    assert!(tmp.path().join("cache/ironstar/mimalloc").is_dir());
    // --allocator system: musl's malloc again.
    let system = tmp.path().join("system");
    ok(build("alloc-threads", "linux/amd64", &system).args(["--allocator", "system"]));
    let bin = binary_from_layout(&system, "linux/amd64", "alloc-threads", tmp.path());
    assert_eq!(symbols(&bin, &["mi_malloc"]), [None]);
}

#[test]
fn the_private_libcs_memcmp_orders_bytes_as_memcmp_must_on_both_arches() {
    // allocator = "mimalloc" links src/cargo/allocator/memcmp.c in place of musl's byte loop:
    // a harness compares it with a byte-by-byte reference (lengths, positions, signedness,
    // alignments), built by zig as the private libc's copy is.
    common::require_tool("zig", "zig: sh scripts/install-deps.sh");
    let tmp = tempfile::tempdir().unwrap();
    let repo = common::repo();
    for (platform, zig_target) in [
        ("linux/amd64", "x86_64-linux-musl"),
        ("linux/arm64", "aarch64-linux-musl"),
    ] {
        let bin = tmp.path().join(zig_target);
        ok(Command::new("zig")
            .args(["cc", "-target", zig_target, "-O3", "-fno-builtin", "-o"])
            .arg(&bin)
            .arg(repo.join("tests/fixtures/memcmp-check/check.c"))
            .arg(repo.join("src/cargo/allocator/memcmp.c")));
        assert_eq!(output_of(&bin, platform).trim(), "memcmp ok 337512");
    }
}

#[test]
fn cxx_compiled_through_cc_keeps_no_build_path_unless_the_user_set_cxxflags() {
    common::require_tool("zig", "zig: sh scripts/install-deps.sh");
    let tmp = tempfile::tempdir().unwrap();
    let fixture = common::repo().join("tests/fixtures/cxx-hello");
    let target_dir = fixture_target_dir("cxx-hello");
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cargo"));
    // The C++ source and a header generated under the target directory, both compiled by
    // absolute path: their __FILE__ is mapped as the rust paths are.
    let out = tmp.path().join("oci");
    ok(&mut build("cxx-hello", "linux/amd64", &out));
    let bin = binary_from_layout(&out, "linux/amd64", "cxx-hello", tmp.path());
    let printed = output_of(&bin, "linux/amd64");
    let words: Vec<&str> = printed.split_whitespace().collect();
    assert_eq!(
        words[..2],
        ["cxx-hello", "/build/src/hello.cpp"],
        "{printed}"
    );
    assert!(
        words[2].starts_with("/build/target/x86_64-unknown-linux-musl/release/build/cxx-hello-")
    );
    let bytes = std::fs::read(&bin).unwrap();
    for dir in [&fixture, &target_dir, &cargo_home] {
        let dir = dir.to_str().unwrap().as_bytes();
        assert!(
            !bytes.windows(dir.len()).any(|w| w == dir),
            "{} is in the binary",
            String::from_utf8_lossy(dir)
        );
    }
    // The user's CXXFLAGS win (and with no mapping, the paths are the machine's).
    let out = tmp.path().join("theirs");
    ok(build("cxx-hello", "linux/amd64", &out).env("CXXFLAGS_x86_64_unknown_linux_musl", "-O2"));
    let bin = binary_from_layout(&out, "linux/amd64", "cxx-hello", tmp.path());
    let printed = output_of(&bin, "linux/amd64");
    let source = fixture.join("src/hello.cpp");
    assert!(printed.contains(source.to_str().unwrap()), "{printed}");
}
