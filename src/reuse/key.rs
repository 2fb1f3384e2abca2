//! The input key of an image: a digest over everything its bytes depend on, computed before
//! cargo runs. Each input is one entry `name → value` (a file by its content digest); the key
//! is the digest of the sorted entries, so that two keys that differ can say which entry did.
//!
//! The entries ([`Inputs::entries`]):
//! - `file:<path>`: every file of the image's package and of its path dependencies (git's
//!   tracked files and the untracked ones it does not ignore; never `target/`);
//! - `Cargo.lock`;
//! - `tool:<…>`: every `.cargo/config.toml` cargo reads, the `rust-toolchain` files, `rustc -vV`,
//!   `cargo -V`, and with C code `zig version` and the `cargo-zigbuild` executable;
//! - `cargo`: the package, binary, profile, features, targets, the allocator, the extra
//!   arguments, and the packages built with it in one cargo run (their features unify);
//! - `env:<NAME>`: every variable that changes a build ([`changes_a_build`]);
//! - `definition`: the image definition (less its tags and repository: they do not change its
//!   bytes), with each `files[].source` as `source:<path>`'s content digest;
//! - `ironstar`: its version; `base`: the base's resolved digest; `compression-level`;
//!   `signer` and `sbom`: what is attached beside the image.

use std::collections::BTreeMap;
use std::path::Path;

use super::files;
use crate::cargo::{CargoOptions, Selection};
use crate::digest::Digest;
use crate::spec::ImageSpec;

/// What goes into one image's key, gathered by the caller.
pub struct Inputs<'a> {
    pub selection: &'a Selection,
    /// The definition as it will be built (the caller's overrides applied).
    pub spec: &'a ImageSpec,
    pub cargo: &'a CargoOptions,
    /// The tools' inputs ([`crate::cargo::tool_inputs`]), shared by a workspace's images.
    pub tools: &'a [(String, String)],
    /// `package/bin` of every image of the cargo run.
    pub selected: Vec<String>,
    pub compression_level: Option<u32>,
    /// The base's resolved digest (a pinned one as given).
    pub base: Option<Digest>,
    /// The signer's description, when the build signs.
    pub signer: Option<String>,
    /// The SBOMs attached: their format and the files given, or `none`.
    pub sbom: String,
}

/// An image's input key, and its entries (for saying what changed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputKey {
    pub digest: Digest,
    pub entries: BTreeMap<String, String>,
}

impl InputKey {
    pub fn of(entries: BTreeMap<String, String>) -> Self {
        let text = serde_json::to_string(&entries).expect("a map of strings");
        InputKey {
            digest: Digest::of(text.as_bytes()),
            entries,
        }
    }

    /// The names of the entries that differ between `self` and `other`.
    pub fn changed(&self, other: &InputKey) -> Vec<String> {
        let names: std::collections::BTreeSet<&String> =
            self.entries.keys().chain(other.entries.keys()).collect();
        names
            .into_iter()
            .filter(|k| self.entries.get(*k) != other.entries.get(*k))
            .cloned()
            .collect()
    }
}

impl Inputs<'_> {
    /// The key, reading the files and asking the tools now; `env` is the process environment.
    pub fn key(&self, env: &BTreeMap<String, String>) -> InputKey {
        InputKey::of(self.entries(env))
    }

    fn entries(&self, env: &BTreeMap<String, String>) -> BTreeMap<String, String> {
        let sel = self.selection;
        let root = &sel.workspace_root;
        let mut e = BTreeMap::new();
        e.insert("ironstar".into(), env!("CARGO_PKG_VERSION").to_string());
        for dir in &sel.source_dirs {
            let all = files::package_files(dir, &sel.target_directory);
            for (f, d) in files::digests(&all) {
                e.insert(format!("file:{}", files::relative(f, root)), d);
            }
        }
        e.insert(
            "Cargo.lock".into(),
            files::digest_path(&root.join("Cargo.lock")),
        );
        for (name, text) in self.tools {
            e.insert(
                format!("tool:{name}"),
                Digest::of(text.as_bytes()).to_string(),
            );
        }
        e.insert("cargo".into(), self.cargo_flags());
        for (k, v) in env.iter().filter(|(k, _)| changes_a_build(k)) {
            e.insert(format!("env:{k}"), Digest::of(v.as_bytes()).to_string());
        }
        e.insert("definition".into(), definition(self.spec, root));
        for f in &self.spec.files {
            if let Some(s) = &f.source {
                e.insert(
                    format!("source:{}", files::relative(s, root)),
                    files::digest_path(s),
                );
            }
        }
        let opt = |o: Option<String>| o.unwrap_or_else(|| "none".into());
        e.insert(
            "base".into(),
            opt(self.base.as_ref().map(Digest::to_string)),
        );
        e.insert(
            "compression-level".into(),
            opt(self.compression_level.map(|l| l.to_string())),
        );
        e.insert("signer".into(), opt(self.signer.clone()));
        e.insert("sbom".into(), self.sbom.clone());
        e
    }

    /// The cargo flags that change what is built (not `--locked`, `--jobs`, `--target-dir`).
    fn cargo_flags(&self) -> String {
        let (sel, o) = (self.selection, self.cargo);
        let targets: Vec<&str> = self.spec.platforms.iter().map(|p| p.rust_target).collect();
        let args: Vec<String> = o.args.iter().map(|a| a.to_string_lossy().into()).collect();
        serde_json::json!({
            "package": sel.package,
            "bin": sel.bin,
            "profile": o.profile.as_deref().unwrap_or("release"),
            "features": o.features.features,
            "all-features": o.features.all_features,
            "no-default-features": o.features.no_default_features,
            "targets": targets,
            "allocator": format!("{:?}", o.allocator),
            "args": args,
            "built-with": self.selected,
        })
        .to_string()
    }
}

/// The definition as it shapes the image: everything but its tags, repository and binaries
/// (cargo's, given by the key's other entries); its files' sources named relative to `root`.
fn definition(spec: &ImageSpec, root: &Path) -> String {
    let mut s = spec.clone();
    s.tags.clear();
    s.repository = None;
    s.binaries.clear();
    for f in &mut s.files {
        if let Some(src) = &mut f.source {
            *src = files::relative(src, root).into();
        }
    }
    format!("{s:?}")
}

/// Whether the environment variable `name` changes what a build makes: the compiler's flags
/// and wrappers, cargo's build settings, the C toolchain's variables, OpenSSL and pkg-config's,
/// `SOURCE_DATE_EPOCH`. Not where things are (`CARGO_HOME`, `CARGO_TARGET_DIR`: the build
/// remaps them), how many jobs, the network, credentials, nor what cargo sets for a program it
/// runs.
pub fn changes_a_build(name: &str) -> bool {
    const NOT_CARGO: [&str; 12] = [
        "CARGO",
        "CARGO_HOME",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET_DIR",
        "CARGO_BUILD_JOBS",
        "CARGO_CRATE_NAME",
        "CARGO_BIN_NAME",
        "CARGO_PRIMARY_PACKAGE",
        "CARGO_RUSTC_CURRENT_DIR",
        "CARGO_TARGET_TMPDIR",
        "CARGO_MAKEFLAGS",
        "CARGO_REGISTRY_TOKEN",
    ];
    const NOT_CARGO_PREFIX: [&str; 9] = [
        "CARGO_PKG_",
        "CARGO_CFG_",
        "CARGO_MANIFEST_",
        "CARGO_BIN_EXE_",
        "CARGO_TERM_",
        "CARGO_NET_",
        "CARGO_HTTP_",
        "CARGO_REGISTRIES_",
        "CARGO_CACHE_",
    ];
    if name.starts_with("CARGO") {
        return !NOT_CARGO.contains(&name) && !NOT_CARGO_PREFIX.iter().any(|p| name.starts_with(p));
    }
    const EXACT: [&str; 7] = [
        "RUSTFLAGS",
        "RUSTC",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "RUSTC_BOOTSTRAP",
        "SOURCE_DATE_EPOCH",
        "AR",
    ];
    const PREFIX: [&str; 10] = [
        "CC",
        "CFLAGS",
        "CXX",
        "CPP",
        "AR_",
        "TARGET_",
        "HOST_",
        "PKG_CONFIG",
        "ZIG",
        "CRATE_CC_",
    ];
    EXACT.contains(&name) || PREFIX.iter().any(|p| name.starts_with(p)) || name.contains("OPENSSL")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cargo::Workspace;
    use std::path::PathBuf;

    /// A workspace of two members (`svc` with a binary, depending on the library `lib` by
    /// path) and a `docs/` directory no package holds.
    fn workspace(dir: &Path) {
        let w = |p: &str, text: &str| {
            let path = dir.join(p);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        };
        w(
            "Cargo.toml",
            "[workspace]\nresolver = \"2\"\nmembers = [\"svc\", \"lib\"]\n",
        );
        w("Cargo.lock", "version = 4\n");
        w(
            "svc/Cargo.toml",
            "[package]\nname = \"svc\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n\
             [dependencies]\nlib = { path = \"../lib\" }\n",
        );
        w("svc/src/main.rs", "fn main() { lib::hi() }\n");
        w(
            "lib/Cargo.toml",
            "[package]\nname = \"lib\"\nversion = \"0.1.0\"\nedition = \"2021\"\n",
        );
        w("lib/src/lib.rs", "pub fn hi() {}\n");
        w("docs/guide.md", "# Guide\n");
    }

    struct Keyed {
        sel: Selection,
        spec: ImageSpec,
        cargo: CargoOptions,
    }

    fn tools(sel: &Selection) -> Vec<(String, String)> {
        crate::cargo::tool_inputs(sel, &sel.workspace_root).unwrap()
    }

    impl Keyed {
        fn new(dir: &Path) -> Self {
            let cargo = CargoOptions {
                manifest_path: Some(dir.join("Cargo.toml")),
                packages: vec!["svc".into()],
                target_dir: Some(dir.join("target")),
                ..Default::default()
            };
            let ws = Workspace::resolve(&cargo).unwrap();
            let sel = ws.selections(&ws.members[0], None).unwrap().remove(0);
            let spec = ImageSpec {
                name: "svc".into(),
                platforms: vec![crate::Platform::parse("linux/amd64").unwrap()],
                ..Default::default()
            };
            Keyed { sel, spec, cargo }
        }

        fn key_with(&self, env: &[(&str, &str)], base: Option<Digest>) -> InputKey {
            let tools = tools(&self.sel);
            let inputs = Inputs {
                selection: &self.sel,
                spec: &self.spec,
                cargo: &self.cargo,
                tools: &tools,
                selected: vec!["svc/svc".into()],
                compression_level: None,
                base,
                signer: None,
                sbom: "spdx".into(),
            };
            let env = env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            inputs.key(&env)
        }

        fn key(&self) -> InputKey {
            self.key_with(&[], None)
        }
    }

    /// The entries of `after` that differ from `before`.
    fn changed(before: &InputKey, after: &InputKey) -> Vec<String> {
        assert_ne!(before.digest, after.digest, "the key did not change");
        after.changed(before)
    }

    #[test]
    fn each_input_class_flips_the_key_and_nothing_else_does() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().canonicalize().unwrap();
        workspace(&dir);
        let k = Keyed::new(&dir);
        let k0 = k.key();
        assert!(k0.entries.contains_key("file:lib/src/lib.rs"), "{k0:?}");
        assert!(k0.entries.contains_key("tool:rustc -vV"));
        assert_eq!(k.key(), k0, "the same inputs give the same key");

        let edit = |p: &str, text: &str| std::fs::write(dir.join(p), text).unwrap();
        // Neither a file no package holds nor the target directory is an input.
        edit("docs/guide.md", "# Guide, revised\n");
        std::fs::create_dir_all(dir.join("target/release")).unwrap();
        edit("target/release/svc", "a binary");
        assert_eq!(k.key(), k0);

        edit("lib/src/lib.rs", "pub fn hi() { println!(\"hi\") }\n");
        assert_eq!(changed(&k0, &k.key()), ["file:lib/src/lib.rs"]);
        edit("lib/src/lib.rs", "pub fn hi() {}\n");
        assert_eq!(k.key(), k0, "reverted: the key is back");

        edit("Cargo.lock", "version = 4\n# changed\n");
        assert_eq!(changed(&k0, &k.key()), ["Cargo.lock"]);
        edit("Cargo.lock", "version = 4\n");

        std::fs::create_dir_all(dir.join(".cargo")).unwrap();
        edit(
            ".cargo/config.toml",
            "[build]\nrustflags = [\"-Copt-level=2\"]\n",
        );
        assert_eq!(changed(&k0, &k.key()), ["tool:.cargo/config.toml"]);
        std::fs::remove_file(dir.join(".cargo/config.toml")).unwrap();
        assert_eq!(k.key(), k0);

        let with_flags = k.key_with(&[("RUSTFLAGS", "-Ctarget-cpu=native")], None);
        assert_eq!(changed(&k0, &with_flags), ["env:RUSTFLAGS"]);
        let elsewhere = k.key_with(&[("CARGO_TARGET_DIR", "/elsewhere"), ("HOME", "/x")], None);
        assert_eq!(elsewhere, k0, "where things are is not an input");

        let based = k.key_with(&[], Some(Digest::of(b"base v1")));
        assert_eq!(changed(&k0, &based), ["base"]);
        let rebased = k.key_with(&[], Some(Digest::of(b"base v2")));
        assert_eq!(changed(&based, &rebased), ["base"]);

        let mut redefined = Keyed::new(&dir);
        redefined.spec.config.user = Some("65532".into());
        assert_eq!(changed(&k0, &redefined.key()), ["definition"]);
        redefined.spec = k.spec.clone();
        redefined.spec.tags = vec!["v9".into()];
        assert_eq!(redefined.key(), k0, "tags do not change the image's bytes");
    }

    #[test]
    fn the_same_checkout_elsewhere_has_the_same_key() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let dirs: Vec<PathBuf> = [a.path(), b.path()]
            .iter()
            .map(|d| d.canonicalize().unwrap())
            .collect();
        dirs.iter().for_each(|d| workspace(d));
        assert_eq!(Keyed::new(&dirs[0]).key(), Keyed::new(&dirs[1]).key());
    }

    #[test]
    fn variables_that_change_a_build_and_those_that_do_not() {
        for v in [
            "RUSTFLAGS",
            "CARGO_ENCODED_RUSTFLAGS",
            "CARGO_PROFILE_RELEASE_LTO",
            "CC_x86_64_unknown_linux_musl",
            "CFLAGS",
            "CXXFLAGS",
            "OPENSSL_DIR",
            "X86_64_UNKNOWN_LINUX_MUSL_OPENSSL_LIB_DIR",
            "PKG_CONFIG_PATH",
            "SOURCE_DATE_EPOCH",
        ] {
            assert!(changes_a_build(v), "{v}");
        }
        for v in [
            "HOME",
            "PATH",
            "CARGO_HOME",
            "CARGO_TARGET_DIR",
            "CARGO_BUILD_JOBS",
            "CARGO_NET_OFFLINE",
            "CARGO_REGISTRY_TOKEN",
            "CARGO_REGISTRIES_MY_TOKEN",
            "CARGO_PKG_NAME",
            "GITHUB_TOKEN",
        ] {
            assert!(!changes_a_build(v), "{v}");
        }
    }
}
