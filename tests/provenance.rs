//! Signed SLSA provenance (issue 31): a `--cargo` publish with `--sign-key` to a real
//! `docker-registry` (no referrers API) checked by an independent verifier (`dsse_check.py`:
//! urllib, `cryptography`'s ECDSA, written from the DSSE and in-toto specs, none of ironstar's
//! code), which refuses a wrong key and a payload with one byte changed; the same inputs built in
//! another directory and HOME give the same `.att` manifest and a re-push that writes nothing; a
//! registry with the referrers API gets the bundle as a referrer and no referrers tag; hostile
//! `.att` tags are a one-line refusal of `ironstar verify --require-provenance`.

mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use serde_json::Value;
use support::cli::{expect_fail, expect_ok};
use support::common::{self, blob, ironstar, json, ok, run, stderr};
use support::fake::{Behaviour, FakeRegistry};
use support::proxy::{Faults, Proxy};
use support::registry::{Auth, Registry};

const PASSWORD: &str = "pr0venance-pass";

fn script(name: &str) -> Command {
    common::venv_script(name)
}

/// Two key pairs made as cosign makes them (cosign.key, cosign.pub, key.pkcs8.pem).
fn keys() -> &'static (PathBuf, PathBuf) {
    static K: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    K.get_or_init(|| {
        let root = common::repo().join("target/test-provenance/keys");
        let _ = fs::remove_dir_all(&root);
        let make = |n: &str| {
            let d = root.join(n);
            fs::create_dir_all(&d).unwrap();
            ok(script("cosign_check.py")
                .arg("genkey")
                .arg(&d)
                .arg(PASSWORD));
            d
        };
        (make("a"), make("b"))
    })
}

/// `ironstar` with its own HOME (the toolchain still found), no CI or signing settings.
fn cmd(home: &Path) -> Command {
    let mut c = ironstar();
    let real = PathBuf::from(std::env::var_os("HOME").unwrap());
    let cargo_home = std::env::var_os("CARGO_HOME").map_or(real.join(".cargo"), PathBuf::from);
    let rustup_home = std::env::var_os("RUSTUP_HOME").map_or(real.join(".rustup"), PathBuf::from);
    c.env("HOME", home)
        .env("CARGO_HOME", cargo_home)
        .env("RUSTUP_HOME", rustup_home)
        .env("DOCKER_CONFIG", home.join(".docker"))
        .env("COSIGN_PASSWORD", PASSWORD)
        .env_remove("REGISTRY_AUTH_FILE")
        .env_remove("XDG_RUNTIME_DIR")
        .env_remove("GITHUB_OUTPUT")
        .env_remove("GITHUB_ACTIONS")
        .env_remove("IRONSTAR_SIGN_KEY")
        .env_remove("IRONSTAR_LOG")
        .env_remove("SOURCE_DATE_EPOCH");
    c
}

/// The `hello` fixture committed in a fresh git repository at `dir` (fixed names and dates: the
/// same commit wherever it is made).
fn hello_repo(dir: &Path) -> String {
    let from = common::repo().join("tests/fixtures/hello");
    fs::create_dir_all(dir.join("src")).unwrap();
    for f in ["Cargo.toml", "Cargo.lock", "src/main.rs"] {
        fs::copy(from.join(f), dir.join(f)).unwrap();
    }
    let git = |args: &[&str]| {
        ok(Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(args)
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@example.com")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@example.com")
            .env("GIT_AUTHOR_DATE", "2024-01-01T00:00:00Z")
            .env("GIT_COMMITTER_DATE", "2024-01-01T00:00:00Z"))
    };
    git(&["init", "-q", "-b", "main"]);
    git(&["add", "."]);
    git(&["commit", "-q", "-m", "hello"]);
    git(&["rev-parse", "HEAD"]).trim().to_string()
}

fn target_dir() -> PathBuf {
    common::repo().join("target/test-fixtures/hello")
}

/// `ironstar publish --cargo --sign-key` of the crate at `dir` to `addr/repo`; the output.
fn publish(dir: &Path, home: &Path, addr: &str, repo: &str, key: &Path) -> Output {
    // Every publish builds (`--rebuild`): the second, of the same inputs, would otherwise be
    // reused from the first's record, and this test is about what a build attests.
    run(cmd(home)
        .args([
            "publish",
            "--cargo",
            "--offline",
            "--plain-http",
            "--rebuild",
        ])
        .args(["--platform", "linux/amd64,linux/arm64"])
        .arg("--manifest-path")
        .arg(dir.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(target_dir())
        .arg("-o")
        .arg(dir.join("out"))
        .arg("--repository")
        .arg(format!("{addr}/{repo}"))
        .arg("--sign-key")
        .arg(key.join("cosign.key")))
}

/// The layout's `.att` entry for its index: (manifest digest, the envelope's bytes).
fn layout_att(layout: &Path) -> (String, Vec<u8>) {
    let index = json(&fs::read(layout.join("index.json")).unwrap());
    let list = index["manifests"].as_array().unwrap();
    let att = list
        .iter()
        .find(|e| {
            e["annotations"]["org.opencontainers.image.ref.name"]
                .as_str()
                .is_some_and(|t| t.ends_with(".att"))
        })
        .expect("an .att entry");
    let digest = att["digest"].as_str().unwrap().to_string();
    let m = json(&blob(layout, &digest));
    let layer = m["layers"][0]["digest"].as_str().unwrap();
    (digest, blob(layout, layer))
}

fn sha256_file(path: &Path) -> String {
    use sha2::Digest as _;
    hex(&sha2::Sha256::digest(fs::read(path).unwrap()))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn dep<'a>(statement: &'a Value, name: &str) -> &'a Value {
    statement["predicate"]["buildDefinition"]["resolvedDependencies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == name)
        .unwrap_or_else(|| panic!("no dependency `{name}` in {statement:#}"))
}

/// Envelope file check by the independent verifier: the statement, or the one-line failure.
fn py_envelope(envelope: &[u8], key: &Path, digest: &str) -> Result<Value, String> {
    let f = tempfile::NamedTempFile::new().unwrap();
    fs::write(f.path(), envelope).unwrap();
    let o = run(script("dsse_check.py")
        .arg("envelope")
        .arg(f.path())
        .arg(key.join("cosign.pub"))
        .arg(digest));
    match o.status.success() {
        true => Ok(json(&o.stdout)),
        false => Err(stderr(&o)),
    }
}

fn py_registry(addr: &str, repo: &str, reference: &str, key: &Path) -> Result<Value, String> {
    let o = run(script("dsse_check.py")
        .args(["registry", addr, repo, reference])
        .arg(key.join("cosign.pub")));
    match o.status.success() {
        true => Ok(json(&o.stdout)),
        false => Err(stderr(&o)),
    }
}

#[test]
fn a_cargo_publish_attests_what_went_in_and_a_rebuild_elsewhere_writes_nothing() {
    let (a, b) = keys();
    let reg = Registry::start(Auth::None);
    // Both publishes go through one proxy: the same repository name, the second's requests seen.
    let proxy = Proxy::start(reg.port, Faults::default());
    let addr = proxy.addr();
    let tmp = tempfile::tempdir().unwrap();
    let (src_a, home_a) = (tmp.path().join("one/hello"), tmp.path().join("home-a"));
    let commit = hello_repo(&src_a);
    let o = publish(&src_a, &home_a, &addr, "prov/hello", a);
    let log = stderr(&o);
    assert!(o.status.success(), "{log}");
    assert!(log.contains("attestation bundle sha256:"), "{log}");
    assert!(log.contains(".att (1 new)"), "{log}");
    let out_a = src_a.join("out");
    let index = ok(Command::new("cat").arg(out_a.join("index.json")));
    let index_digest = json(index.as_bytes())["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();

    // The independent verifier: both stores, the statement naming what went in.
    let got = py_registry(&addr, "prov/hello", "latest", a).unwrap();
    let st = &got["statement"];
    assert_eq!(st["subject"][0]["digest"]["sha256"], index_digest[7..]);
    assert_eq!(dep(st, "source")["digest"]["gitCommit"], commit.as_str());
    let lock = sha256_file(&src_a.join("Cargo.lock"));
    assert_eq!(dep(st, "Cargo.lock")["digest"]["sha256"], lock.as_str());
    for (platform, triple) in [
        ("linux/amd64", "x86_64-unknown-linux-musl"),
        ("linux/arm64", "aarch64-unknown-linux-musl"),
    ] {
        let bin = target_dir().join(triple).join("release/hello");
        let d = dep(st, &format!("{platform}/hello"));
        assert_eq!(
            d["digest"]["sha256"],
            sha256_file(&bin).as_str(),
            "{platform}"
        );
    }
    assert!(dep(st, "rustc")["digest"]["gitCommit"].is_string());
    let params = &st["predicate"]["buildDefinition"]["externalParameters"];
    assert_eq!(params["cargo"]["package"], "hello");
    assert_eq!(params["cargo"]["manifestPath"], "Cargo.toml");
    assert_eq!(
        params["platforms"],
        serde_json::json!(["linux/amd64", "linux/arm64"])
    );
    let text = st.to_string();
    assert!(
        !text.contains(tmp.path().to_str().unwrap()),
        "a path leaked: {text}"
    );

    // A wrong key and a payload with one byte changed are refused.
    let e = py_registry(&addr, "prov/hello", "latest", b).unwrap_err();
    assert!(e.contains("no signature of the envelope verifies"), "{e}");
    let (att_a, envelope) = layout_att(&out_a);
    assert_eq!(got["att"], att_a.as_str());
    assert!(py_envelope(&envelope, a, &index_digest).is_ok());
    let mut env = json(&envelope);
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut body = b64.decode(env["payload"].as_str().unwrap()).unwrap();
    let at = body.len() / 2;
    body[at] ^= 0x01;
    env["payload"] = Value::String(b64.encode(&body));
    let e = py_envelope(env.to_string().as_bytes(), a, &index_digest).unwrap_err();
    assert!(e.contains("no signature of the envelope verifies"), "{e}");

    // ironstar's own reading agrees.
    let home = tempfile::tempdir().unwrap();
    let reference = format!("{addr}/prov/hello:latest");
    let v = run(cmd(home.path())
        .args(["verify", "--plain-http", "--require-provenance", "--key"])
        .arg(a.join("cosign.pub"))
        .arg(&reference));
    expect_ok(&v, "verify --require-provenance");
    assert_eq!(
        stderr(&v).matches("verified provenance").count(),
        2,
        "{}",
        stderr(&v)
    );
    let printed = expect_ok(
        &run(cmd(home.path())
            .args(["provenance", "--plain-http", "--key"])
            .arg(a.join("cosign.pub"))
            .arg(&reference)),
        "provenance",
    );
    assert_eq!(&json(printed.as_bytes()), st);
    let wrong = run(cmd(home.path())
        .args(["verify", "--plain-http", "--require-provenance", "--key"])
        .arg(b.join("cosign.pub"))
        .arg(&reference));
    expect_fail(&wrong, "verify with another key");

    // The same inputs in another directory and HOME: the same attestation, and its publish
    // through a proxy writes nothing.
    let (src_b, home_b) = (
        tmp.path().join("two/deeper/hello"),
        tmp.path().join("home-b"),
    );
    assert_eq!(hello_repo(&src_b), commit);
    let before = proxy.stats.log.lock().unwrap().len();
    let o = publish(&src_b, &home_b, &addr, "prov/hello", a);
    assert!(o.status.success(), "{}", stderr(&o));
    let (att_b, envelope_b) = layout_att(&src_b.join("out"));
    assert_eq!(
        att_a,
        att_b,
        "{}\n{}",
        String::from_utf8_lossy(&envelope),
        String::from_utf8_lossy(&envelope_b)
    );
    let log = proxy.stats.log.lock().unwrap().clone();
    let writes: Vec<_> = log[before..]
        .iter()
        .filter(|r| r.starts_with("PUT") || r.starts_with("POST") || r.starts_with("PATCH"))
        .collect();
    assert!(writes.is_empty(), "a re-push wrote: {writes:?}");
}

/// A layout signed and attested at build time from the fixture binaries, for `repository`.
fn fixture_build(dir: &Path, repository: &str, key: &Path) -> String {
    let file = support::signing::image_file(dir, repository);
    let home = tempfile::tempdir().unwrap();
    ok(cmd(home.path())
        .arg("build")
        .arg(&file)
        .arg("-o")
        .arg(dir.join("layout"))
        .arg("--sign-key")
        .arg(key.join("cosign.key")))
    .trim()
    .to_string()
}

#[test]
fn a_registry_with_the_referrers_api_gets_the_bundle_as_a_referrer_and_no_referrers_tag() {
    let (a, _) = keys();
    let fake = FakeRegistry::start(Behaviour {
        referrers_api: true,
        ..Default::default()
    });
    let tmp = tempfile::tempdir().unwrap();
    let repository = fake.repository("api/app");
    let index = fixture_build(tmp.path(), &repository, a);
    let home = tempfile::tempdir().unwrap();
    let o = run(cmd(home.path())
        .args([
            "push",
            "--plain-http",
            "--repository",
            &repository,
            "--layout",
        ])
        .arg(tmp.path().join("layout")));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!stderr(&o).contains("referrers tag"), "{}", stderr(&o));
    let got = py_registry(&fake.addr.to_string(), "api/app", "latest", a).unwrap();
    assert_eq!(got["bundles"].as_array().unwrap().len(), 1, "{got}");
    let fallback = format!("sha256-{}", &index[7..]);
    assert!(!fake.state.manifests.lock().unwrap().contains_key(&fallback));
    // --no-provenance sends neither form.
    let fake2 = FakeRegistry::start(Behaviour {
        referrers_api: true,
        ..Default::default()
    });
    let repository = fake2.repository("api/app");
    ok(cmd(home.path())
        .args([
            "push",
            "--plain-http",
            "--no-provenance",
            "--repository",
            &repository,
        ])
        .arg("--sign-key")
        .arg(a.join("cosign.key"))
        .arg("--layout")
        .arg(tmp.path().join("layout")));
    let manifests = fake2.state.manifests.lock().unwrap();
    assert!(!manifests.keys().any(|k| k.ends_with(".att")));
    assert!(manifests.keys().any(|k| k.ends_with(".sig")));
}

#[test]
fn hostile_attestations_are_a_one_line_refusal_of_verify() {
    let (a, _) = keys();
    let reg = Registry::start(Auth::None);
    let addr = reg.addr();
    let tmp = tempfile::tempdir().unwrap();
    let index = fixture_build(tmp.path(), &format!("{addr}/bad/app"), a);
    let home = tempfile::tempdir().unwrap();
    // Signatures only: the attestation stores are the test's to fill.
    ok(cmd(home.path())
        .args(["push", "--plain-http", "--no-provenance", "--layout"])
        .arg(tmp.path().join("layout"))
        .arg("--repository")
        .arg(format!("{addr}/bad/app")));
    let reference = format!("{addr}/bad/app:latest");
    let verify = || {
        run(cmd(home.path())
            .args(["verify", "--plain-http", "--require-provenance", "--key"])
            .arg(a.join("cosign.pub"))
            .arg(&reference))
    };
    let e = expect_fail(&verify(), "verify with no attestation");
    assert!(e.contains("no provenance attestation"), "{e}");

    let sign = |payload: &[u8]| {
        let f = tmp.path().join("payload");
        fs::write(&f, payload).unwrap();
        ok(script("dsse_check.py")
            .arg("sign")
            .arg(&f)
            .arg(a.join("key.pkcs8.pem")))
        .into_bytes()
    };
    let (_, good) = layout_att(&tmp.path().join("layout"));
    let statement = py_envelope(&good, a, &index).unwrap();
    let other = statement.to_string().replace(&index[7..], &"0".repeat(64));
    let oversized = {
        let mut e = json(&good);
        e["padding"] = Value::String("x".repeat((1 << 20) + 10));
        e.to_string().into_bytes()
    };
    for (envelope, why) in [
        (oversized, "refused"),
        (sign(b"not json at all"), "not JSON"),
        (sign(other.as_bytes()), "another image"),
    ] {
        let f = tmp.path().join("envelope");
        fs::write(&f, &envelope).unwrap();
        ok(script("dsse_check.py")
            .args(["put-att", &addr, "bad/app", &index])
            .arg(&f));
        let o = verify();
        let e = expect_fail(&o, why);
        assert!(e.contains(why), "{why}: {e}");
        assert_eq!(
            stderr(&o).lines().filter(|l| l.contains("error")).count(),
            1
        );
        // Without --require-provenance the signature suffices; the envelope is a warning.
        let o = run(cmd(home.path())
            .args(["verify", "--plain-http", "--key"])
            .arg(a.join("cosign.pub"))
            .arg(&reference));
        assert!(o.status.success(), "{}", stderr(&o));
        assert!(stderr(&o).contains(why), "{why}: {}", stderr(&o));
    }
}
