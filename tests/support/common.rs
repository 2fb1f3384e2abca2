//! Shared test harness: the ironstar binary, fixture binaries the tests build themselves, layouts,
//! and the OCI JSON schemas as the oracle.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

pub fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The ironstar binary under test.
pub fn ironstar() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ironstar"));
    // No layer cache unless a test asks for one: a hit would make a reproducibility check
    // compare a layer with itself.
    c.env_remove("SOURCE_DATE_EPOCH")
        .env_remove("IRONSTAR_REVISION")
        .env_remove("IRONSTAR_CACHE_DIR")
        .env("IRONSTAR_NO_CACHE", "true");
    c
}

/// Run and return the output, panicking with both streams if the command could not start.
pub fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Run, require success, return stdout.
pub fn ok(cmd: &mut Command) -> String {
    let o = run(cmd);
    assert!(
        o.status.success(),
        "{cmd:?} failed ({}):\nstdout: {}\nstderr: {}",
        o.status,
        stdout(&o),
        stderr(&o)
    );
    stdout(&o)
}

/// Require a system tool, naming the Debian package that provides it.
pub fn require_tool(tool: &str, package: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        found,
        "`{tool}` is not installed: apt-get install {package} (.ci/run does)"
    );
}

pub struct Fixtures {
    /// Static x86_64 musl binary printing `hello from x86_64`.
    pub amd64: PathBuf,
    /// Static aarch64 musl binary printing `hello from aarch64`.
    pub arm64: PathBuf,
    /// The same program linked dynamically against the host's glibc.
    pub dynamic: PathBuf,
}

/// Build the fixture program once per test process (cargo's lock serialises test binaries).
pub fn fixtures() -> &'static Fixtures {
    static F: OnceLock<Fixtures> = OnceLock::new();
    F.get_or_init(|| fixture_crate("hello", true))
}

/// `tests/fixtures/rootfs-probe` for both musl targets (no host build: `dynamic` is empty).
pub fn rootfs_probe() -> &'static Fixtures {
    static F: OnceLock<Fixtures> = OnceLock::new();
    F.get_or_init(|| fixture_crate("rootfs-probe", false))
}

/// The static busybox of each arch (Debian's busybox-static; the arm64 one unpacked by
/// scripts/install-deps.sh): `(amd64, arm64)`.
pub fn busybox() -> (PathBuf, PathBuf) {
    require_tool("busybox", "busybox-static");
    let data = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap()).join(".local/share"));
    let arm64 = data.join("ironstar/busybox-arm64/bin/busybox");
    assert!(
        arm64.is_file(),
        "no arm64 busybox at {}: sh scripts/install-deps.sh unpacks Debian's busybox-static:arm64 there",
        arm64.display()
    );
    (PathBuf::from("/bin/busybox"), arm64)
}

/// A fixture crate of `tests/fixtures/` built static for amd64 and arm64 (musl, rust-lld), and
/// for the host when `host`.
fn fixture_crate(name: &str, host: bool) -> Fixtures {
    {
        let dir = repo().join("tests/fixtures").join(name);
        let target_dir = repo().join("target/test-fixtures").join(name);
        let build = |target: Option<&str>| {
            let mut c = Command::new(env!("CARGO"));
            c.current_dir(&dir)
                .args(["build", "--release", "--quiet", "--locked"])
                .env("CARGO_TARGET_DIR", &target_dir)
                .env_remove("RUSTFLAGS");
            if let Some(t) = target {
                let var = t.to_uppercase().replace('-', "_");
                c.arg("--target").arg(t);
                c.env(format!("CARGO_TARGET_{var}_LINKER"), "rust-lld");
                c.env(
                    format!("CARGO_TARGET_{var}_RUSTFLAGS"),
                    "-C target-feature=+crt-static",
                );
            }
            ok(&mut c);
            match target {
                Some(t) => target_dir.join(t).join("release").join(name),
                None => target_dir.join("release").join(name),
            }
        };
        Fixtures {
            amd64: build(Some("x86_64-unknown-linux-musl")),
            arm64: build(Some("aarch64-unknown-linux-musl")),
            dynamic: if host { build(None) } else { PathBuf::new() },
        }
    }
}

/// The fixture binaries with `mib` MiB of seeded, half-compressible bytes appended (the ELFs still
/// run: the loader ignores trailing bytes), in `dir`: layers of several gzip blocks and zstd
/// frames. `(amd64, arm64)`.
pub fn padded_fixtures(dir: &Path, mib: usize) -> (PathBuf, PathBuf) {
    let f = fixtures();
    let pad = |src: &Path, name: &str| {
        let mut bytes = std::fs::read(src).unwrap();
        let mut x: u32 = 0x1234_5678;
        bytes.extend((0..mib << 20).map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            0x40 | (x & 0x0f) as u8
        }));
        let out = dir.join(name);
        std::fs::write(&out, bytes).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o755)).unwrap();
        out
    };
    (pad(&f.amd64, "hello-amd64"), pad(&f.arm64, "hello-arm64"))
}

/// `ironstar build` of the two fixture binaries into `out`; returns the index digest.
pub fn build_layout(out: &Path) -> String {
    let f = fixtures();
    let digest = ok(ironstar()
        .arg("build")
        .arg("--binary")
        .arg(format!("linux/amd64={}", f.amd64.display()))
        .arg("--binary")
        .arg(format!("linux/arm64={}", f.arm64.display()))
        .arg("--output")
        .arg(out));
    digest.trim().to_string()
}

/// Where Debian's `golang-github-opencontainers-image-spec-dev` (installed by
/// `scripts/install-deps.sh`) keeps the image-spec JSON schemas.
pub const DEBIAN_SCHEMAS: &str =
    "/usr/share/gocode/src/github.com/opencontainers/image-spec/schema";

/// The OCI image-spec schemas: `$OCI_SCHEMAS` (an image-spec `schema/` folder), default
/// [`DEBIAN_SCHEMAS`]. Nothing outside the repository and what the README installs.
pub fn schemas_dir() -> PathBuf {
    let dir = std::env::var_os("OCI_SCHEMAS")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEBIAN_SCHEMAS));
    assert!(
        dir.join("image-index-schema.json").is_file(),
        "the OCI JSON schemas are absent at {}: install them with `sh scripts/install-deps.sh` \
         (apt package golang-github-opencontainers-image-spec-dev), or set OCI_SCHEMAS to an \
         image-spec `schema/` folder; schema checks cannot run without them",
        dir.display()
    );
    dir
}

/// The draft-04 meta-schema's two names: image-spec v1.1.0 and later (Debian's package among
/// them) write `https`, older releases and jsonschema's built-in registry `http`.
const DRAFT4_HTTP: &str = "http://json-schema.org/draft-04/schema";
const DRAFT4_HTTPS: &str = "https://json-schema.org/draft-04/schema";

/// Validate `instance` against one of the image-spec schemas, e.g. `config-schema.json`.
pub fn validate(schema_file: &str, instance: &serde_json::Value) {
    let dir = std::fs::canonicalize(schemas_dir()).unwrap();
    let base = format!("file://{}/", dir.display());
    let draft4 = jsonschema::Draft::Draft4;
    let mut opts = jsonschema::options()
        .with_draft(draft4)
        .with_base_uri(format!("{base}{schema_file}"));
    // jsonschema knows the http name only: register the meta-schema under the https one too.
    opts = opts.with_resource(DRAFT4_HTTPS, draft4.create_resource(draft4_meta_schema()));
    for entry in std::fs::read_dir(&dir).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".json") {
            // Draft-04 by construction, whichever name its `$schema` uses.
            let v = load_schema(&entry.path());
            opts = opts.with_resource(format!("{base}{name}"), draft4.create_resource(v));
        }
    }
    let schema = load_schema(&dir.join(schema_file));
    let validator = opts
        .build(&schema)
        .unwrap_or_else(|e| panic!("schema {schema_file}: {e}"));
    let errors: Vec<String> = validator
        .iter_errors(instance)
        .map(|e| format!("{} at {}", e, e.instance_path))
        .collect();
    assert!(
        errors.is_empty(),
        "{schema_file} rejects {instance}:\n{}",
        errors.join("\n")
    );
}

/// jsonschema's own copy of the draft-04 meta-schema, looked up under its `http` name.
fn draft4_meta_schema() -> serde_json::Value {
    // A registry takes in the meta-schemas only when one of its resources refers to them.
    let referrer = serde_json::json!({ "$ref": format!("{DRAFT4_HTTP}#") });
    let registry = jsonschema::Registry::try_new(
        "file:///ironstar-draft4.json",
        jsonschema::Draft::Draft4.create_resource(referrer),
    )
    .unwrap();
    let resolver = registry
        .try_resolver("file:///ironstar-draft4.json")
        .unwrap();
    let meta = resolver
        .lookup(&format!("{DRAFT4_HTTP}#"))
        .expect("jsonschema knows the draft-04 meta-schema");
    meta.contents().clone()
}

/// A schema with its draft-04 `id`s removed (its `$schema` is kept): they would rebase the
/// relative `$ref`s onto opencontainers.org, which cannot be fetched here; the refs are relative
/// to the schema folder.
fn load_schema(path: &Path) -> serde_json::Value {
    fn strip(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(m) => {
                if m.get("id").is_some_and(|id| id.is_string()) {
                    m.remove("id");
                }
                m.values_mut().for_each(strip);
            }
            serde_json::Value::Array(a) => a.iter_mut().for_each(strip),
            _ => {}
        }
    }
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    strip(&mut v);
    v
}

/// A private containers.conf (no ulimits, runc) and storage.conf (vfs, in this directory): what
/// podman and buildah need to run here without touching the user's storage.
pub struct ContainersConf {
    dir: tempfile::TempDir,
}

impl ContainersConf {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        std::fs::write(
            p.join("containers.conf"),
            "[containers]\ndefault_ulimits = []\n[engine]\nruntime = \"runc\"\n",
        )
        .unwrap();
        std::fs::write(
            p.join("storage.conf"),
            format!(
                "[storage]\ndriver = \"vfs\"\ngraphroot = \"{0}/storage\"\nrunroot = \"{0}/run\"\n",
                p.display()
            ),
        )
        .unwrap();
        ContainersConf { dir }
    }

    /// The directory holding the configuration and the storage (room for a tool's own files).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Point `c` at this configuration.
    pub fn env<'c>(&self, c: &'c mut Command) -> &'c mut Command {
        c.env("CONTAINERS_CONF", self.dir.path().join("containers.conf"))
            .env(
                "CONTAINERS_STORAGE_CONF",
                self.dir.path().join("storage.conf"),
            )
    }

    /// `program` with this configuration.
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        self.env(&mut c);
        c
    }
}

/// A private podman: its own config (runc; `default_ulimits = []`, which this sandbox needs) and
/// its own vfs storage, through the environment, so `ironstar load`'s own `podman load` uses them.
pub struct Podman {
    conf: ContainersConf,
}

impl Podman {
    pub fn new() -> Self {
        require_tool("podman", "podman");
        require_tool("runc", "runc");
        Podman {
            conf: ContainersConf::new(),
        }
    }

    /// Point `c` (ironstar, a shell) at this podman's storage.
    pub fn env<'c>(&self, c: &'c mut Command) -> &'c mut Command {
        self.conf.env(c)
    }

    pub fn cmd(&self) -> Command {
        self.conf.command("podman")
    }

    /// `podman run --rm IMAGE`: its stdout.
    pub fn run(&self, image: &str) -> String {
        ok(self.cmd().args(["run", "--rm", "--network", "none", image]))
    }
}

/// Whether qemu runs arm64 binaries through binfmt_misc (then podman runs arm64 images).
pub fn binfmt_arm64() -> bool {
    std::fs::read_to_string("/proc/sys/fs/binfmt_misc/qemu-aarch64")
        .is_ok_and(|s| s.starts_with("enabled"))
}

/// Read a blob of a layout by digest.
pub fn blob(layout: &Path, digest: &str) -> Vec<u8> {
    let hex = digest.strip_prefix("sha256:").expect("sha256 digest");
    std::fs::read(layout.join("blobs/sha256").join(hex)).unwrap()
}

pub fn json(bytes: &[u8]) -> serde_json::Value {
    serde_json::from_slice(bytes).expect("valid JSON")
}

/// The tar a gzip- or zstd-compressed layer holds (told apart by their magic numbers).
pub fn unpack_layer(layer: &[u8]) -> Vec<u8> {
    use std::io::Read;
    let mut tar = Vec::new();
    match layer.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        true => zstd::stream::read::Decoder::new(layer)
            .unwrap()
            .read_to_end(&mut tar)
            .unwrap(),
        false => flate2::read::GzDecoder::new(layer)
            .read_to_end(&mut tar)
            .unwrap(),
    };
    tar
}

/// The files of a gzip- or zstd-compressed tar layer: (path, mode, uid, gid, mtime, contents).
pub fn layer_entries(layer: &[u8]) -> Vec<(String, u32, u64, u64, u64, Vec<u8>)> {
    use std::io::Read;
    let tar = unpack_layer(layer);
    let mut ar = tar::Archive::new(&tar[..]);
    ar.entries()
        .unwrap()
        .map(|e| {
            let mut e = e.unwrap();
            let h = e.header().clone();
            let mut data = Vec::new();
            e.read_to_end(&mut data).unwrap();
            (
                e.path().unwrap().to_string_lossy().into_owned(),
                h.mode().unwrap(),
                h.uid().unwrap(),
                h.gid().unwrap(),
                h.mtime().unwrap(),
                data,
            )
        })
        .collect()
}

/// The one line `ironstar build` prints: the index digest.
pub fn digest_line(out: &str) -> String {
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 1, "stdout must be exactly one line: {out:?}");
    let d = lines[0];
    assert!(
        d.len() == 71 && d.starts_with("sha256:") && d[7..].bytes().all(|b| b.is_ascii_hexdigit()),
        "not a digest: {d}"
    );
    d.to_string()
}

/// Validate every JSON document of a layout against the image-spec schemas, and return the index.
pub fn validate_layout(dir: &Path) -> serde_json::Value {
    validate(
        "image-layout-schema.json",
        &json(&std::fs::read(dir.join("oci-layout")).unwrap()),
    );
    let top = json(&std::fs::read(dir.join("index.json")).unwrap());
    validate("image-index-schema.json", &top);
    let index_digest = top["manifests"][0]["digest"].as_str().unwrap().to_string();
    let index = json(&blob(dir, &index_digest));
    validate("image-index-schema.json", &index);
    for m in index["manifests"].as_array().unwrap() {
        let manifest = json(&blob(dir, m["digest"].as_str().unwrap()));
        validate("image-manifest-schema.json", &manifest);
        let config = json(&blob(dir, manifest["config"]["digest"].as_str().unwrap()));
        validate("config-schema.json", &config);
    }
    index
}

/// Each platform's manifest and config of a layout, checked against the schemas.
pub fn platform_images(layout: &Path) -> Vec<(serde_json::Value, serde_json::Value)> {
    let index = validate_layout(layout);
    index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let manifest = json(&blob(layout, m["digest"].as_str().unwrap()));
            let config = json(&blob(
                layout,
                manifest["config"]["digest"].as_str().unwrap(),
            ));
            (manifest, config)
        })
        .collect()
}

/// `skopeo inspect --raw` of a reference (a tag or a digest) over plain http: its exact bytes.
pub fn skopeo_raw(reference: &str) -> Vec<u8> {
    let o = run(Command::new("skopeo").args([
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{reference}"),
    ]));
    assert!(
        o.status.success(),
        "skopeo inspect {reference}: {}",
        stderr(&o)
    );
    o.stdout
}

/// The amd64 fixture with `mib` MiB of pseudo-random bytes after it: still a static ELF, and
/// slow enough to pack that a signal lands in the middle.
pub fn big_binary(dir: &Path, mib: usize) -> PathBuf {
    use std::io::Write;
    let big = dir.join("big");
    std::fs::copy(&fixtures().amd64, &big).unwrap();
    let mut file = std::fs::OpenOptions::new().append(true).open(&big).unwrap();
    let mut state = 0x9e3779b97f4a7c15u64;
    let mut chunk = vec![0u8; 1 << 20];
    for _ in 0..mib {
        for b in chunk.chunks_exact_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            b.copy_from_slice(&state.to_le_bytes());
        }
        file.write_all(&chunk).unwrap();
    }
    big
}

/// Give the child of `cmd` the default action for the signals the tests send it. ironstar
/// keeps a signal its parent left ignored (`nohup`, some CI runners ignore SIGHUP), so a test
/// that sends one sets the disposition itself rather than inheriting the runner's.
pub fn default_signals(cmd: &mut Command) -> &mut Command {
    use std::os::unix::process::CommandExt as _;
    // SAFETY: signal(2) is async-signal-safe, as code between fork and exec must be.
    unsafe {
        cmd.pre_exec(|| {
            for s in [libc::SIGHUP, libc::SIGINT, libc::SIGTERM] {
                if libc::signal(s, libc::SIG_DFL) == libc::SIG_ERR {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        })
    }
}

/// `ironstar build` of `binary` (linux/amd64) to `out`, running in the background, quiet, with
/// the default signal dispositions ([`default_signals`]).
pub fn spawn_build(binary: &Path, out: &Path) -> std::process::Child {
    default_signals(&mut ironstar())
        .arg("build")
        .arg(format!("--binary=linux/amd64={}", binary.display()))
        .arg("-o")
        .arg(out)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

/// Names in `dir` starting with `prefix`.
pub fn names_with(dir: &Path, prefix: &str) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(prefix))
        .collect()
}

/// Wait (at most 60 s) until `ready` holds.
pub fn wait_for(what: &str, mut ready: impl FnMut() -> bool) {
    let started = std::time::Instant::now();
    while !ready() {
        assert!(
            started.elapsed().as_secs() < 60,
            "waited a minute for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// `python3 tests/NAME` with the venv's Python, where scripts/install-deps.sh put `cryptography`
/// and `pynacl` (the independent verifiers `cosign_check.py` and `dsse_check.py`).
pub fn venv_script(name: &str) -> Command {
    let data = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap()).join(".local/share"));
    let py = data.join("ironstar/venv/bin/python3");
    assert!(
        py.exists(),
        "{} is missing: run scripts/install-deps.sh",
        py.display()
    );
    let mut c = Command::new(py);
    c.arg(repo().join("tests").join(name));
    c
}
