//! Reuse: a `publish --cargo` whose inputs match an image already in the registry runs no
//! cargo build and moves only the tags, even from a fresh clone on a fresh runner (fresh HOME,
//! CARGO_HOME and target directory); a one-line change in one member builds that member alone;
//! a hostile record is a miss with one warning.
//!
//! The fixture `tests/fixtures/workspace` (api, worker with C through zig, migrate), copied
//! into a git repository of its own, published to a real `docker-registry`.

mod support;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use support::common::{self, ok, require_tool, run, stderr};
use support::proxy::{Faults, Proxy};
use support::registry::{Auth, Registry};

/// A wrapper of `program` on PATH (and as `$CARGO` for cargo) that logs each run to
/// `$REUSE_TEST_LOG`: the same bytes on every runner (the key holds cargo-zigbuild's).
fn wrapper(bin: &Path, name: &str, real: &str) -> PathBuf {
    let path = bin.join(name);
    let script =
        format!("#!/bin/sh\necho \"{name} $*\" >> \"$REUSE_TEST_LOG\"\nexec '{real}' \"$@\"\n");
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

fn which(program: &str) -> String {
    ok(Command::new("sh").args(["-c", &format!("command -v {program}")]))
        .trim()
        .to_string()
}

fn git(dir: &Path, args: &[&str]) -> String {
    ok(Command::new("git")
        .current_dir(dir)
        .args([
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
            "-c",
            "init.defaultBranch=main",
        ])
        .args(args)
        .env("GIT_AUTHOR_DATE", "2026-01-02T03:04:05Z")
        .env("GIT_COMMITTER_DATE", "2026-01-02T03:04:05Z"))
}

/// The fixture (without its target directory) in a git repository of its own at `dir`.
fn checkout(dir: &Path) -> String {
    let from = common::repo().join("tests/fixtures/workspace");
    ok(Command::new("cp").arg("-r").arg(&from).arg(dir));
    let _ = std::fs::remove_dir_all(dir.join("target"));
    git(dir, &["init", "-q"]);
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "-qm", "the fixture"]);
    git(dir, &["rev-parse", "HEAD"]).trim().to_string()
}

/// A runner: where its HOME, CARGO_HOME and target directory are, and the log of every cargo
/// and cargo-zigbuild it starts.
struct Runner {
    home: PathBuf,
    cargo_home: Option<PathBuf>,
    target: PathBuf,
    log: PathBuf,
    bin: PathBuf,
}

impl Runner {
    fn new(root: &Path, fresh: bool, target: PathBuf) -> Runner {
        let bin = root.join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        let log = root.join("cargo.log");
        std::fs::write(&log, "").unwrap();
        let home = match fresh {
            true => root.join("home"),
            false => PathBuf::from(std::env::var("HOME").unwrap()),
        };
        std::fs::create_dir_all(&home).unwrap();
        let cargo_home = fresh.then(|| root.join("cargo-home"));
        wrapper(&bin, "cargo-zigbuild", &which("cargo-zigbuild"));
        Runner {
            home,
            cargo_home,
            target,
            log,
            bin,
        }
    }

    fn ironstar(&self, dir: &Path) -> Command {
        let real_cargo = std::env::var("CARGO").unwrap_or_else(|_| which("cargo"));
        let cargo = wrapper(&self.bin, "cargo", &real_cargo);
        let rustup_home = std::env::var("RUSTUP_HOME")
            .unwrap_or_else(|_| format!("{}/.rustup", std::env::var("HOME").unwrap()));
        let path = format!("{}:{}", self.bin.display(), std::env::var("PATH").unwrap());
        let mut c = common::ironstar();
        c.current_dir(dir)
            .env("PATH", path)
            .env("CARGO", cargo)
            .env("REUSE_TEST_LOG", &self.log)
            .env("HOME", &self.home)
            .env("RUSTUP_HOME", rustup_home)
            .env("CARGO_TARGET_DIR", &self.target)
            .env("CARGO_NET_OFFLINE", "true")
            .env("DOCKER_CONFIG", self.home.join(".docker"))
            .env_remove("REGISTRY_AUTH_FILE")
            .env_remove("XDG_RUNTIME_DIR")
            .env_remove("GITHUB_TOKEN")
            .env_remove("GITHUB_OUTPUT")
            .env_remove("IRONSTAR_REPOSITORY")
            .env_remove("IRONSTAR_REBUILD");
        if let Some(h) = &self.cargo_home {
            c.env("CARGO_HOME", h);
        }
        c
    }

    /// The cargo builds started, one a line: `cargo-zigbuild zigbuild` runs (each runs a
    /// `cargo build` of its own), else `cargo build` runs.
    fn builds(&self) -> Vec<String> {
        let log = std::fs::read_to_string(&self.log).unwrap();
        std::fs::write(&self.log, "").unwrap();
        let of = |p: &str| -> Vec<String> {
            let lines = log.lines().filter(|l| l.starts_with(p));
            lines.map(String::from).collect()
        };
        let zig = of("cargo-zigbuild zigbuild");
        match zig.is_empty() {
            true => of("cargo build"),
            false => zig,
        }
    }
}

fn publish(runner: &Runner, dir: &Path, repository: &str, extra: &[&str]) -> (String, String) {
    let o = run(runner
        .ironstar(dir)
        .args([
            "publish",
            "--cargo",
            "--workspace",
            "--locked",
            "--plain-http",
        ])
        .args(["--repository", repository])
        .args(extra));
    assert!(o.status.success(), "{}", stderr(&o));
    (common::stdout(&o), stderr(&o))
}

/// `REPO@sha256:…` lines by image name.
fn digests(out: &str) -> BTreeMap<String, String> {
    out.lines()
        .map(|l| {
            let (repo, digest) = l.split_once('@').unwrap();
            (repo.rsplit('/').next().unwrap().into(), digest.into())
        })
        .collect()
}

fn served(addr: &str, repo: &str, tag: &str) -> String {
    ironstar::Digest::of(&support::cli::skopeo_raw(addr, repo, tag)).to_string()
}

/// The reuse record tags of `repo`.
fn record_tags(addr: &str, repo: &str) -> Vec<String> {
    let out = ok(Command::new("skopeo").args([
        "list-tags",
        "--tls-verify=false",
        &format!("docker://{addr}/{repo}"),
    ]));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let tags = v["Tags"].as_array().unwrap().iter();
    tags.filter_map(|t| t.as_str().filter(|t| t.starts_with("ironstar-reuse-")))
        .map(String::from)
        .collect()
}

/// `bytes` (an image index) under `repo:tag` of the registry at `addr`.
fn put(addr: &str, repo: &str, tag: &str, bytes: Vec<u8>) {
    use ironstar::registry::{Client, ClientOptions, Repository, Tag, Target};
    let repository = Repository::parse(&format!("{addr}/{repo}")).unwrap();
    let opts = ClientOptions {
        plain_http: true,
        chunk_size: None,
        max_attempts: 1,
        credential: None,
        pull_only: false,
        quiet_retries: false,
    };
    let client = Client::new(&repository, opts).unwrap();
    let tag = Tag::parse(tag).unwrap();
    let digest = ironstar::Digest::of(&bytes);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mt = "application/vnd.oci.image.index.v1+json";
    rt.block_on(client.put_manifest(Target::Tag(&tag), mt, &bytes, &digest))
        .unwrap();
}

/// The record of `repo` whose subject is `digest`: its tag and its JSON.
fn record_naming(addr: &str, repo: &str, digest: &str) -> (String, serde_json::Value) {
    for tag in record_tags(addr, repo) {
        let bytes = support::cli::skopeo_raw(addr, repo, &tag);
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        if v["subject"]["digest"] == digest {
            return (tag, v);
        }
    }
    panic!("no record of {repo} names {digest}")
}

#[test]
fn unchanged_inputs_build_nothing_even_on_a_fresh_runner() {
    require_tool("zig", "zig: sh scripts/install-deps.sh");
    let reg = Registry::start(Auth::None);
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    let commit = checkout(&a);
    let shared = common::repo().join("target/test-fixtures/workspace");
    let ci = Runner::new(&tmp.path().join("ci"), false, shared);
    let org = format!("{}/org", reg.addr());

    let (out, _) = publish(&ci, &a, &org, &[]);
    let first = digests(&out);
    assert_eq!(first.len(), 3, "{out}");
    assert_eq!(ci.builds().len(), 1, "one cargo run builds the workspace");
    for name in ["api", "migrate", "worker"] {
        let tags = record_tags(&reg.addr(), &format!("org/{name}"));
        assert_eq!(tags.len(), 1, "{name}: one record: {tags:?}");
        let record = support::cli::skopeo_raw(&reg.addr(), &format!("org/{name}"), &tags[0]);
        let record: serde_json::Value = serde_json::from_slice(&record).unwrap();
        assert_eq!(
            record["subject"]["digest"],
            first[name].as_str(),
            "{record}"
        );
        let inner = record["annotations"]["dev.ironstar.reuse.record"]
            .as_str()
            .unwrap();
        let inner: serde_json::Value = serde_json::from_str(inner).unwrap();
        assert_eq!(inner["commit"], commit.as_str());
        // What worker's build script declared (its C file; cc's variables) is recorded.
        let declared = &inner["declared"];
        assert!(
            declared["files"]["worker/src/checksum.c"].is_string(),
            "{inner}"
        );
        assert!(declared["env"]
            .as_object()
            .unwrap()
            .keys()
            .any(|k| k.starts_with("CC")));
    }

    // --check-reuse builds anyway, with each record's date: the same commit gives the same
    // digests, so the audit passes.
    let (out, _) = publish(&ci, &a, &org, &["--check-reuse", "-q"]);
    assert_eq!(ci.builds().len(), 1, "--check-reuse builds");
    assert_eq!(digests(&out), first);

    // A fresh clone on a fresh runner, through a proxy that counts requests: no cargo build,
    // no crate downloaded, no blob uploaded, the same digests, the new tag moved.
    git(
        tmp.path(),
        &["clone", "-q", a.to_str().unwrap(), b.to_str().unwrap()],
    );
    let fresh_root = tmp.path().join("fresh");
    let fresh = Runner::new(&fresh_root, true, fresh_root.join("target"));
    let proxy = Proxy::start(reg.port, Faults::default());
    let via = format!("{}/org", proxy.addr());
    let (out, err) = publish(&fresh, &b, &via, &["--tag", "next"]);
    assert_eq!(
        fresh.builds(),
        Vec::<String>::new(),
        "no cargo build: {err}"
    );
    assert!(
        !fresh_root.join("cargo-home/registry").exists(),
        "no crate download"
    );
    assert_eq!(
        proxy
            .stats
            .blob_upload_requests
            .load(std::sync::atomic::Ordering::SeqCst),
        0
    );
    assert_eq!(digests(&out), first, "{out}");
    for name in ["api", "migrate", "worker"] {
        let line = format!("{name}: reused: inputs unchanged since {commit}");
        assert!(err.contains(&line), "{err}");
        assert_eq!(
            served(&reg.addr(), &format!("org/{name}"), "next"),
            first[name]
        );
    }
    assert!(!fresh_root
        .join("target")
        .join("x86_64-unknown-linux-musl")
        .exists());

    // A commit touching only files no package holds: the same.
    std::fs::write(b.join("deploy/k8s.yaml"), "# replicas: 3\n").unwrap();
    git(&b, &["commit", "-qam", "docs"]);
    let (out, err) = publish(&fresh, &b, &via, &[]);
    assert_eq!(fresh.builds(), Vec::<String>::new(), "{err}");
    assert_eq!(digests(&out), first);

    // One line changed in api: api alone is built, the others are reused.
    let main = b.join("api/src/main.rs");
    let text = std::fs::read_to_string(&main).unwrap();
    std::fs::write(&main, text.replace("serving", "serving again")).unwrap();
    git(&b, &["commit", "-qam", "api: another word"]);
    let (out, err) = publish(&ci, &b, &org, &[]);
    let builds = ci.builds();
    assert_eq!(builds.len(), 1, "{builds:?}");
    assert!(builds[0].contains("--package api --bin api"), "{builds:?}");
    assert!(
        !builds[0].contains("worker") && !builds[0].contains("migrate"),
        "{builds:?}"
    );
    let second = digests(&out);
    assert_ne!(second["api"], first["api"]);
    assert_eq!(second["worker"], first["worker"]);
    assert_eq!(second["migrate"], first["migrate"]);
    assert!(
        err.contains(&format!("worker: reused: inputs unchanged since {commit}")),
        "{err}"
    );
    assert_eq!(served(&reg.addr(), "org/api", "latest"), second["api"]);

    // A record naming another index of the repository than the build gives (here api's
    // first): --check-reuse fails, naming the image and both digests.
    let (tag, mut record) = record_naming(&reg.addr(), "org/api", &second["api"]);
    record["subject"]["digest"] = first["api"].clone().into();
    put(
        &reg.addr(),
        "org/api",
        &tag,
        serde_json::to_vec(&record).unwrap(),
    );
    let o = run(ci
        .ironstar(&b)
        .args([
            "publish",
            "--cargo",
            "--workspace",
            "--locked",
            "--plain-http",
        ])
        .args(["--repository", &org, "--check-reuse"]));
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(err.contains("image `api` builds to"), "{err}");
    assert!(
        err.contains(&second["api"]) && err.contains(&first["api"]),
        "{err}"
    );
    ci.builds();

    // Locally: a layout holding the record of its inputs is left as it is; IRONSTAR_REBUILD=1
    // builds it again.
    let out_dir = tmp.path().join("oci");
    let build = |rebuild: &str| {
        let o = run(ci
            .ironstar(&b)
            .env("IRONSTAR_REBUILD", rebuild)
            .args(["build", "--cargo", "--workspace", "--locked", "--output"])
            .arg(&out_dir));
        assert!(o.status.success(), "{}", stderr(&o));
        (common::stdout(&o), stderr(&o))
    };
    let (built, _) = build("");
    assert_eq!(ci.builds().len(), 1);
    let (again, err) = build("");
    assert_eq!(ci.builds(), Vec::<String>::new(), "{err}");
    assert_eq!(again, built);
    assert!(err.contains("left as it is"), "{err}");
    let (rebuilt, _) = build("1");
    assert_eq!(ci.builds().len(), 1, "IRONSTAR_REBUILD=1 builds");
    assert_eq!(rebuilt, built);
    // Other tags: the layout would record the old ones, so it is built again.
    let o = run(ci
        .ironstar(&b)
        .args([
            "build",
            "--cargo",
            "--workspace",
            "--locked",
            "--tag",
            "v9",
            "--output",
        ])
        .arg(&out_dir));
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(ci.builds().len(), 1, "new tags: built");
}

#[test]
fn a_hostile_record_is_a_miss_with_one_warning() {
    require_tool("zig", "zig: sh scripts/install-deps.sh");
    let reg = Registry::start(Auth::None);
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a");
    checkout(&a);
    let shared = common::repo().join("target/test-fixtures/workspace");
    let ci = Runner::new(&tmp.path().join("ci"), false, shared);
    let org = format!("{}/org", reg.addr());
    let (out, _) = publish(&ci, &a, &org, &["-q"]);
    let first = digests(&out);
    ci.builds();

    // migrate's record names api's index (in another repository); worker's is over the cap.
    let record_of = |name: &str| record_naming(&reg.addr(), &format!("org/{name}"), &first[name]);
    let (tag, mut record) = record_of("migrate");
    record["subject"]["digest"] = first["api"].clone().into();
    put(
        &reg.addr(),
        "org/migrate",
        &tag,
        serde_json::to_vec(&record).unwrap(),
    );
    let (tag, mut record) = record_of("worker");
    record["annotations"]["padding"] = "x".repeat(300 << 10).into();
    put(
        &reg.addr(),
        "org/worker",
        &tag,
        serde_json::to_vec(&record).unwrap(),
    );

    let (out, err) = publish(&ci, &a, &org, &[]);
    let builds = ci.builds();
    assert_eq!(builds.len(), 1, "{builds:?}");
    assert!(builds[0].contains("--package migrate") && builds[0].contains("--package worker"));
    assert!(!builds[0].contains("--package api"), "{builds:?}");
    assert!(err.contains("api: reused"), "{err}");
    let warnings: Vec<&str> = err.lines().filter(|l| l.contains("WARN")).collect();
    assert_eq!(warnings.len(), 1, "one warning: {err}");
    assert!(
        warnings[0].contains("worker") && warnings[0].contains("cap"),
        "{err}"
    );
    assert!(
        err.contains("migrate: building: its recorded index"),
        "{err}"
    );
    assert_eq!(digests(&out), first, "rebuilt, the same digests");
}
