//! Signatures in cosign 3's form (issue 31): beside each `.sig`, a Sigstore bundle v0.3 referrer
//! of the index and of every platform manifest, checked by an independent verifier
//! (`cosign_check.py bundles`: urllib, `cryptography`'s ECDSA, none of ironstar's code) on a real
//! `docker-registry` (no referrers API: the `sha256-<hex>` referrers tag) and on the fake with
//! the referrers API; a wrong key refused, a re-push writing nothing, hostile bundles a one-line
//! warning of `ironstar verify`.

mod support;

use std::fs;
use std::path::Path;

use serde_json::{json, Value};
use support::cli::expect_ok;
use support::common::{self, json, ok, run, stderr};
use support::fake::{Behaviour, FakeRegistry};
use support::proxy::{Faults, Proxy};
use support::registry::{Auth, Registry};
use support::signing::{checker, image_file, keys, push, signed_build, signed_push, verify};

const BUNDLE: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";
const SIGN_PREDICATE: &str = "https://sigstore.dev/cosign/sign/v1";

/// The independent check of `addr/repo:reference`'s signature bundles with `key`: each signed
/// digest's verifying referrers, or the one-line failure.
fn py_bundles(addr: &str, repo: &str, reference: &str, key: &Path) -> Result<Value, String> {
    let o = run(checker()
        .args(["bundles", addr, repo, reference])
        .arg(key.join("cosign.pub")));
    match o.status.success() {
        true => Ok(json(&o.stdout)),
        false => Err(stderr(&o)),
    }
}

/// One verifying bundle for each of the index and its two platforms.
fn assert_one_each(got: &Value, index: &str) {
    let m = got.as_object().unwrap();
    assert_eq!(m.len(), 3, "{got}");
    assert!(m.contains_key(index), "{got}");
    assert!(
        m.values().all(|v| v.as_array().unwrap().len() == 1),
        "{got}"
    );
}

#[test]
fn signature_bundles_verify_independently_and_a_repush_writes_nothing() {
    let (a, b) = keys();
    let (dir, index) = support::cli::layout();
    let reg = Registry::start(Auth::None);
    let proxy = Proxy::start(reg.port, Faults::default());
    let via = proxy.addr();

    // Signed at push time: a bundle for the index and each platform, listed in the referrers
    // tags (this registry has no referrers API), after the index and before the tag.
    let o = signed_push(dir, &via, "bundle/app", a, &[]);
    expect_ok(&o, "signed push");
    let log = stderr(&o);
    assert_eq!(log.matches("signature bundle sha256:").count(), 3, "{log}");
    let timeline = proxy.stats.log.lock().unwrap().clone();
    let at = |what: &str| timeline.iter().position(|l| l.starts_with(what));
    let index_put = at(&format!("PUT /v2/bundle/app/manifests/{index}")).unwrap();
    let tag_put = at("PUT /v2/bundle/app/manifests/latest").unwrap();
    let fallback = at(&format!(
        "PUT /v2/bundle/app/manifests/sha256-{}",
        &index[7..]
    ));
    assert!(
        fallback.is_some_and(|f| index_put < f && f < tag_put),
        "{timeline:#?}"
    );

    let first = py_bundles(&reg.addr(), "bundle/app", "latest", a).unwrap();
    assert_one_each(&first, index);
    let err = py_bundles(&reg.addr(), "bundle/app", "latest", b).unwrap_err();
    assert!(err.contains("no signature bundle verifies"), "{err}");

    let reference = format!("{via}/bundle/app:latest");
    let v = verify(&["--plain-http", &reference], a);
    expect_ok(&v, "ironstar verify");
    assert_eq!(
        stderr(&v).matches("verified signature bundle of").count(),
        3,
        "{}",
        stderr(&v)
    );

    // A re-push with the same key: the same bundles, nothing written.
    let seen = proxy.stats.log.lock().unwrap().len();
    expect_ok(&signed_push(dir, &via, "bundle/app", a, &[]), "re-push");
    let log = proxy.stats.log.lock().unwrap()[seen..].to_vec();
    let writes: Vec<_> = (log.iter())
        .filter(|r| r.starts_with("PUT") || r.starts_with("POST") || r.starts_with("PATCH"))
        .collect();
    assert!(writes.is_empty(), "a re-push wrote: {writes:#?}");
    assert_eq!(
        py_bundles(&reg.addr(), "bundle/app", "latest", a).unwrap(),
        first
    );

    hostile_bundles_are_a_warning(&reg, &reference, index, a, b);
    unverified_statements_are_read_at_most_eight(&reg, &reference, index);
}

/// Without a key each statement read is kept: `provenance` reads at most 8 bundle referrers of
/// a manifest and says how many it left (the index has 5 by now; 6 more are planted).
fn unverified_statements_are_read_at_most_eight(reg: &Registry, reference: &str, index: &str) {
    let tmp = tempfile::tempdir().unwrap();
    for i in 0..6 {
        let f = tmp.path().join("bundle");
        fs::write(&f, format!("junk {i}")).unwrap();
        ok(checker()
            .args(["put-referrer", &reg.addr(), "bundle/app", index])
            .arg(&f));
    }
    let o = run(common::ironstar().args(["provenance", "--plain-http", reference]));
    assert!(!o.status.success(), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("3 more envelope(s) not read (at most 8 a store)"),
        "{err}"
    );
}

/// A bundle file of `statement` signed (DSSE, in-toto) with `key`'s PKCS#8 key.
fn signed_bundle(tmp: &Path, statement: &Value, key: &Path) -> Vec<u8> {
    let f = tmp.join("statement");
    fs::write(&f, statement.to_string()).unwrap();
    let envelope = ok(common::venv_script("dsse_check.py")
        .arg("sign")
        .arg(&f)
        .arg(key.join("key.pkcs8.pem")));
    json!({
        "mediaType": BUNDLE,
        "verificationMaterial": { "publicKey": { "hint": "x" } },
        "dsseEnvelope": json(envelope.as_bytes()),
    })
    .to_string()
    .into_bytes()
}

/// Each hostile bundle referrer of the index is one warning line of `verify`, which still
/// verifies (the `.sig` and the good bundle stand).
fn hostile_bundles_are_a_warning(reg: &Registry, reference: &str, index: &str, a: &Path, b: &Path) {
    let tmp = tempfile::tempdir().unwrap();
    let statement = |hex: &str| {
        json!({
            "_type": "https://in-toto.io/Statement/v1",
            "subject": [{ "digest": { "sha256": hex } }],
            "predicateType": SIGN_PREDICATE,
            "predicate": {},
        })
    };
    let good = signed_bundle(tmp.path(), &statement(&index[7..]), a);
    let oversized = {
        let mut v = json(&good);
        v["padding"] = Value::String("x".repeat((1 << 20) + 10));
        v.to_string().into_bytes()
    };
    for (bundle, why) in [
        (oversized, "refused"),
        (b"not json at all".to_vec(), "not a Sigstore bundle"),
        (
            signed_bundle(tmp.path(), &statement(&"0".repeat(64)), a),
            "another manifest",
        ),
        (
            signed_bundle(tmp.path(), &statement(&index[7..]), b),
            "no signature of the envelope verifies",
        ),
    ] {
        let f = tmp.path().join("bundle");
        fs::write(&f, &bundle).unwrap();
        ok(checker()
            .args(["put-referrer", &reg.addr(), "bundle/app", index])
            .arg(&f));
        let o = verify(&["--plain-http", reference], a);
        expect_ok(&o, why);
        let err = stderr(&o);
        let lines: Vec<&str> = err.lines().filter(|l| l.contains(why)).collect();
        assert_eq!(lines.len(), 1, "{why}: {err}");
        assert!(lines[0].contains("signature bundle of"), "{}", lines[0]);
    }
}

#[test]
fn a_registry_with_the_referrers_api_gets_the_build_time_bundles_and_no_referrers_tag() {
    let (a, _) = keys();
    let fake = FakeRegistry::start(Behaviour {
        referrers_api: true,
        ..Default::default()
    });
    let tmp = tempfile::tempdir().unwrap();
    let repository = fake.repository("api/app");
    let file = image_file(tmp.path(), &repository);
    let dir = tmp.path().join("layout");
    let index = signed_build(&file, &dir, a, &[]);
    // The layout keeps them: three bundle referrers of signatures in index.json.
    let entries = json(&fs::read(dir.join("index.json")).unwrap());
    let kept = (entries["manifests"].as_array().unwrap().iter())
        .filter(|e| e["artifactType"] == BUNDLE)
        .filter(|e| e["annotations"]["dev.sigstore.bundle.predicateType"] == SIGN_PREDICATE)
        .count();
    assert_eq!(kept, 3, "{entries}");
    let l = dir.display().to_string();
    let v = verify(&["--layout", &l], a);
    expect_ok(&v, "verify the layout");
    assert_eq!(
        stderr(&v).matches("verified signature bundle of").count(),
        3,
        "{}",
        stderr(&v)
    );

    // Pushed with no key at hand: the bundles go with it, by the referrers API.
    let o = push(&dir, &fake.addr.to_string(), "api/app", &[]);
    let log = expect_ok(&o, "push").to_string() + &stderr(&o);
    assert_eq!(log.matches("signature bundle sha256:").count(), 3, "{log}");
    assert!(!log.contains("referrers tag"), "{log}");
    let got = py_bundles(&fake.addr.to_string(), "api/app", "latest", a).unwrap();
    assert_one_each(&got, &index);
    let manifests = fake.state.manifests.lock().unwrap();
    assert!(!manifests.contains_key(&format!("sha256-{}", &index[7..])));
    drop(manifests);

    // --no-sign sends neither form.
    let fake2 = FakeRegistry::start(Behaviour {
        referrers_api: true,
        ..Default::default()
    });
    let o = push(&dir, &fake2.addr.to_string(), "api/app", &["--no-sign"]);
    expect_ok(&o, "--no-sign");
    assert!(!stderr(&o).contains("signature bundle"), "{}", stderr(&o));
    let err = py_bundles(&fake2.addr.to_string(), "api/app", "latest", a).unwrap_err();
    assert!(err.contains("none found"), "{err}");
}
