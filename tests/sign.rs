//! Signing: keys made the way cosign makes them (scrypt + nacl/secretbox, by `cosign_check.py`
//! with `cryptography` and `pynacl`), images pushed with `--sign-key` to a real `docker-registry`
//! (no referrers API) and through a proxy that plays one with it, each signature checked by an
//! independent verifier (`cosign_check.py`: urllib, `cryptography`'s ECDSA, none of ironstar's
//! code) and by `ironstar verify`; signatures kept in a layout and pushed with no key; failures
//! that move no tag and send nothing.

mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use support::cli::{expect_fail, expect_ok, tag_status};
use support::common::{blob, json, ok, require_tool, run, stderr, validate_layout};
use support::proxy::{Faults, Proxy};
use support::registry::{Auth, Registry};
use support::signing::{
    checker, cmd, image_file, keys, push, signed_build, signed_push, verify, PASSWORD,
};

/// The independent verifier over `addr/repo:reference`, the payloads naming `identity`; the
/// `.sig` manifest digest of each signed digest, or the one-line failure.
fn py_verify(
    addr: &str,
    repo: &str,
    reference: &str,
    key: &Path,
    identity: &str,
) -> Result<Value, String> {
    let o = run(checker()
        .args(["verify", addr, repo, reference])
        .arg(key.join("cosign.pub"))
        .arg(identity));
    match o.status.success() {
        true => Ok(json(&o.stdout)),
        false => Err(stderr(&o)),
    }
}

/// Whether the registry holds the manifest or index `reference` (asked with an `Accept` that
/// takes OCI indexes, which distribution needs).
fn holds(reg: &Registry, repo: &str, reference: &str) -> bool {
    use std::io::{Read as _, Write as _};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", reg.port)).unwrap();
    write!(
        s,
        "HEAD /v2/{repo}/manifests/{reference} HTTP/1.1\r\nHost: {}\r\nAccept: application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json\r\nConnection: close\r\n\r\n",
        reg.addr()
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    resp.split_whitespace().nth(1) == Some("200")
}

fn layout() -> &'static (PathBuf, String) {
    support::cli::layout()
}

/// The lines of a PEM file's body: none may appear in a log.
fn pem_body(path: &Path) -> Vec<String> {
    fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with("-----") && l.len() > 16)
        .map(String::from)
        .collect()
}

/// When (start, end) each request matching `what` ran through the proxy.
fn spans(p: &Proxy, what: impl Fn(&str) -> bool) -> Vec<(std::time::Instant, std::time::Instant)> {
    let spans = p.stats.spans.lock().unwrap();
    spans
        .iter()
        .filter(|s| what(&s.0))
        .map(|s| (s.1, s.2))
        .collect()
}

#[test]
fn a_signed_push_verifies_independently_and_a_repush_writes_nothing() {
    let (a, b) = keys();
    let (dir, index) = layout();
    let reg = Registry::start(Auth::None);
    // Every push and verify goes through the proxy, so the signatures name its address.
    let proxy = Proxy::start(reg.port, Faults::default());
    let via = proxy.addr();
    let identity = format!("{via}/signed/app");
    let check = |key: &Path| py_verify(&reg.addr(), "signed/app", "latest", key, &identity);

    let o = signed_push(dir, &via, "signed/app", a, &["-vv"]);
    let out = expect_ok(&o, "signed push");
    assert_eq!(out.trim(), format!("{identity}@{index}"));
    // Neither the password nor the key reaches the log, even at -vv.
    let log = stderr(&o);
    assert!(!log.contains(PASSWORD), "the password is in the log");
    for line in pem_body(&a.join("cosign.key"))
        .iter()
        .chain(&pem_body(&a.join("key.pkcs8.pem")))
    {
        assert!(!log.contains(line.as_str()), "key bytes in the log: {line}");
    }
    assert_eq!(log.matches(".sig (1 new)").count(), 3, "{log}");
    // The signatures went up after the index and before the tag.
    let index_put = spans(&proxy, |w| {
        w == format!("PUT /v2/signed/app/manifests/{index}")
    });
    let sig_puts = spans(&proxy, |w| w.starts_with("PUT ") && w.ends_with(".sig"));
    let tag_put = spans(&proxy, |w| w == "PUT /v2/signed/app/manifests/latest");
    assert_eq!((index_put.len(), sig_puts.len(), tag_put.len()), (1, 3, 1));
    for s in &sig_puts {
        assert!(
            index_put[0].1 <= s.0 && s.1 <= tag_put[0].0,
            "{:#?}",
            proxy.stats.timeline()
        );
    }

    // The independent verifier: the index and both platforms, identity and signature.
    let first = check(a).unwrap();
    assert_eq!(first.as_object().unwrap().len(), 3, "{first}");
    assert!(first.get(index.as_str()).is_some(), "{first}");
    let reference = format!("{identity}:latest");
    let v = verify(&["--plain-http", &reference], a);
    assert_eq!(
        expect_ok(&v, "ironstar verify").trim(),
        format!("{identity}@{index}")
    );
    assert_eq!(
        stderr(&v).matches("verified sha256:").count(),
        3,
        "{}",
        stderr(&v)
    );

    // A key that signed nothing is refused by both, naming a digest.
    let err = check(b).unwrap_err();
    assert!(err.contains("no signature verifies"), "{err}");
    let line = expect_fail(
        &verify(&["--plain-http", &reference], b),
        "verify, wrong key",
    );
    assert!(
        line.contains("sha256:") && line.contains("no signature verifies"),
        "{line}"
    );

    // A re-push with the same key as plain PKCS#8: the same signatures, nothing written.
    let seen = proxy.stats.log.lock().unwrap().len();
    let uploads = proxy.get(&proxy.stats.blob_upload_requests);
    let home = tempfile::tempdir().unwrap();
    let o = run(cmd(home.path())
        .args(["push", "--plain-http", "--repository", &identity])
        .arg("--layout")
        .arg(dir)
        .arg("--sign-key")
        .arg(a.join("key.pkcs8.pem")));
    expect_ok(&o, "re-push");
    let log = proxy.stats.log.lock().unwrap()[seen..].to_vec();
    assert!(!log.iter().any(|l| l.starts_with("PUT ")), "{log:#?}");
    assert_eq!(
        proxy.get(&proxy.stats.blob_upload_requests),
        uploads,
        "{log:#?}"
    );
    assert_eq!(check(a).unwrap(), first);
    // And with the encrypted key read from the environment (`env://`, a CI secret): the same.
    let seen = proxy.stats.log.lock().unwrap().len();
    let home = tempfile::tempdir().unwrap();
    let secret = fs::read_to_string(a.join("cosign.key")).unwrap();
    let o = run(cmd(home.path())
        .env("COSIGN_PASSWORD", PASSWORD)
        .env("CI_SIGNING_KEY", &secret)
        .args(["push", "-vv", "--plain-http", "--repository", &identity])
        .arg("--layout")
        .arg(dir)
        .args(["--sign-key", "env://CI_SIGNING_KEY"]));
    expect_ok(&o, "re-push, key from the environment");
    let log = proxy.stats.log.lock().unwrap()[seen..].to_vec();
    assert!(!log.iter().any(|l| l.starts_with("PUT ")), "{log:#?}");
    for line in pem_body(&a.join("cosign.key")) {
        assert!(!stderr(&o).contains(line.as_str()), "key bytes in the log");
    }
    assert_eq!(check(a).unwrap(), first);

    // Another key's signatures join ours under the same tags; both keys verify.
    expect_ok(&signed_push(dir, &via, "signed/app", b, &[]), "second key");
    let both = check(a).unwrap();
    assert_eq!(check(b).unwrap(), both);
    assert_ne!(both, first, "the .sig manifests grew");
    for key in [a, b] {
        expect_ok(
            &verify(&["--plain-http", &reference], key),
            "verify either key",
        );
    }
}

#[test]
fn a_bad_key_or_password_is_one_line_before_any_request() {
    let (a, _) = keys();
    let (dir, _) = layout();
    let tmp = tempfile::tempdir().unwrap();
    let garbage = tmp.path().join("garbage.key");
    fs::write(&garbage, "not a key\n").unwrap();
    // Nothing listens behind the proxy: a request would be counted, then fail.
    let proxy = Proxy::start(support::free_port(), Faults::default());
    let key = a.join("cosign.key").display().to_string();
    let cases: [(&str, Option<&str>, &str); 5] = [
        (&key, Some("wrong-password"), "wrong password"),
        (&key, None, "COSIGN_PASSWORD"),
        (garbage.to_str().unwrap(), None, "not a PEM private key"),
        ("/nonexistent/cosign.key", None, "/nonexistent/cosign.key"),
        ("env://NO_SUCH_KEY_VAR", None, "NO_SUCH_KEY_VAR is not set"),
    ];
    for (file, password, says) in cases {
        let home = tempfile::tempdir().unwrap();
        let mut c = cmd(home.path());
        if let Some(p) = password {
            c.env("COSIGN_PASSWORD", p);
        }
        let o = run(c
            .args(["push", "--plain-http", "--repository"])
            .arg(format!("{}/bad/app", proxy.addr()))
            .arg("--layout")
            .arg(dir)
            .args(["--sign-key", file]));
        let line = expect_fail(&o, says);
        assert!(line.contains("--sign-key") && line.contains(says), "{line}");
        assert!(!stderr(&o).contains("wrong-password"), "{}", stderr(&o));
        assert_eq!(stderr(&o).lines().count(), 1, "{}", stderr(&o));
    }
    assert_eq!(proxy.get(&proxy.stats.requests), 0, "no request was sent");
}

#[test]
fn a_refused_signature_tag_moves_no_tag() {
    let (a, _) = keys();
    let (dir, index) = layout();
    let reg = Registry::start(Auth::None);
    let faults = Faults {
        deny_manifest_suffix: Some(".sig"),
        ..Default::default()
    };
    let proxy = Proxy::start(reg.port, faults);
    let line = expect_fail(
        &signed_push(dir, &proxy.addr(), "deny/app", a, &[]),
        "a refused .sig tag",
    );
    assert!(line.contains(".sig") && line.contains("403"), "{line}");
    assert_eq!(
        tag_status(&reg, "deny/app", "latest"),
        Some(404),
        "no tag moved"
    );
    assert!(holds(&reg, "deny/app", index), "the index went up first");
    expect_ok(
        &signed_push(dir, &reg.addr(), "deny/app", a, &[]),
        "then without the fault",
    );
    let identity = format!("{}/deny/app", reg.addr());
    py_verify(&reg.addr(), "deny/app", "latest", a, &identity).unwrap();
}

#[test]
fn a_layout_signed_at_build_is_pushed_with_no_key() {
    require_tool("skopeo", "skopeo");
    require_tool("umoci", "umoci");
    let (a, b) = keys();
    let reg = Registry::start(Auth::None);
    let addr = reg.addr();
    let tmp = tempfile::tempdir().unwrap();
    let file = image_file(tmp.path(), &format!("{addr}/built/app"));
    let dir = tmp.path().join("layout");
    let index = signed_build(&file, &dir, a, &[]);

    // The layout still reads as before; the signatures are entries tagged sha256-<hex>.sig.
    validate_layout(&dir);
    let raw = ok(Command::new("skopeo")
        .args(["inspect", "--raw"])
        .arg(format!("oci:{}:latest", dir.display())));
    assert_eq!(raw.as_bytes(), blob(&dir, &index));
    let ls = ok(Command::new("umoci").args(["ls", "--layout"]).arg(&dir));
    assert_eq!(
        ls.lines().filter(|l| l.ends_with(".sig")).count(),
        3,
        "{ls}"
    );
    assert!(ls.lines().any(|l| l == "latest"), "{ls}");
    // Deterministic: a second build writes the same index.json, signatures included.
    let again = tmp.path().join("again");
    assert_eq!(signed_build(&file, &again, a, &[]), index);
    assert_eq!(
        fs::read(dir.join("index.json")).unwrap(),
        fs::read(again.join("index.json")).unwrap()
    );
    let l = dir.display().to_string();
    expect_ok(&verify(&["--layout", &l], a), "verify the layout");
    let line = expect_fail(&verify(&["--layout", &l], b), "the layout, wrong key");
    assert!(
        line.contains("(index)") || line.contains("(linux/"),
        "{line}"
    );

    // Pushed with no key at hand: the signatures go with it.
    let o = push(&dir, &addr, "built/app", &[]);
    assert_eq!(
        stderr(&o).matches(".sig (1 new)").count(),
        3,
        "{}",
        stderr(&o)
    );
    let r = format!("{addr}/built/app");
    py_verify(&addr, "built/app", "latest", a, &r).unwrap();
    expect_ok(&verify(&["--plain-http", &r], a), "verify the pushed image");

    // Another repository: refused without a key (they name built/app), nothing tagged; with
    // --no-sign it goes unsigned, even with a key at hand (as a CI-wide $IRONSTAR_SIGN_KEY would
    // give); with a key it is signed for the new name.
    let line = expect_fail(
        &push(&dir, &addr, "other/app", &[]),
        "signatures for another repo",
    );
    assert!(
        line.contains(&format!("`{addr}/built/app`")) && line.contains("--sign-key"),
        "{line}"
    );
    assert_eq!(tag_status(&reg, "other/app", "latest"), Some(404));
    expect_ok(
        &signed_push(&dir, &addr, "other/app", b, &["--no-sign"]),
        "--no-sign",
    );
    let sig = format!("sha256-{}.sig", &index["sha256:".len()..]);
    assert_eq!(tag_status(&reg, "other/app", &sig), Some(404), "unsigned");
    expect_ok(&signed_push(&dir, &addr, "other/app", b, &[]), "re-signed");
    let other = format!("{addr}/other/app");
    let checked = py_verify(&addr, "other/app", "latest", b, &other).unwrap();
    assert_eq!(checked.as_object().unwrap().len(), 3);
    let err = py_verify(&addr, "other/app", "latest", a, &other).unwrap_err();
    assert!(
        err.contains("no signature verifies"),
        "built/app's are not sent: {err}"
    );

    // publish signs for the repository it pushes to (--repository over the file's).
    let home = tempfile::tempdir().unwrap();
    let published = format!("{addr}/pub/app");
    expect_ok(
        &run(cmd(home.path())
            .env("COSIGN_PASSWORD", PASSWORD)
            .arg("publish")
            .arg(&file)
            .arg("--output")
            .arg(tmp.path().join("published"))
            .args(["--plain-http", "--repository", &published, "--sign-key"])
            .arg(a.join("cosign.key"))),
        "publish --sign-key",
    );
    py_verify(&addr, "pub/app", "latest", a, &published).unwrap();
}

#[test]
fn a_registry_with_the_referrers_api_takes_signatures_beside_sboms() {
    let (a, _) = keys();
    let reg = Registry::start(Auth::None);
    let faults = Faults {
        oci_subject: true,
        referrers_api: true,
        ..Default::default()
    };
    let proxy = Proxy::start(reg.port, faults);
    let tmp = tempfile::tempdir().unwrap();
    let file = image_file(tmp.path(), &format!("{}/ref/app", proxy.addr()));
    let sbom = tmp.path().join("bom.json");
    fs::write(&sbom, br#"{"bomFormat":"CycloneDX","specVersion":"1.5"}"#).unwrap();
    let dir = tmp.path().join("layout");
    signed_build(
        &file,
        &dir,
        a,
        &[&format!("--sbom=linux/amd64={}", sbom.display())],
    );
    let o = push(&dir, &proxy.addr(), "ref/app", &[]);
    let log = expect_ok(&o, "push with SBOM and signatures").to_string() + &stderr(&o);
    assert!(
        log.contains("sbom sha256:") && !log.contains("referrers tag"),
        "{log}"
    );
    assert_eq!(log.matches(".sig (1 new)").count(), 3, "{log}");
    let r = format!("{}/ref/app", proxy.addr());
    expect_ok(
        &verify(&["--plain-http", &r], a),
        "verify through the proxy",
    );
    // The payloads name the repository as pushed (through the proxy's address).
    py_verify(&reg.addr(), "ref/app", "latest", a, &r).unwrap();
}
