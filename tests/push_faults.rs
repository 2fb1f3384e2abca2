//! `ironstar push` where registries are hard to live with: failures worth no retry (and
//! failures worth many), wrong digests, tokens that
//! expire mid-push, registries that keep part of a chunk, refused mounts, layouts of several
//! images. Against the real `docker-registry`, with the fault-injecting proxy in front.

mod support;
use support::common;

use std::path::Path;
use std::time::{Duration, Instant};

use base64::Engine as _;
use support::cli::*;
use support::proxy::{Faults, Proxy};
use support::registry::{Auth, Registry};
use support::token::{TokenServer, ISSUER, SERVICE};

/// The summed size of the configs and layers of the shared layout: what one push uploads.
fn blob_bytes() -> u64 {
    let (dir, digest) = layout();
    let index = common::json(&index_bytes());
    let mut total = 0;
    for m in index["manifests"].as_array().unwrap() {
        let d = m["digest"].as_str().unwrap();
        let manifest = common::json(&common::blob(dir, d));
        let layers = manifest["layers"].as_array().unwrap().iter();
        for b in layers.chain([&manifest["config"]]) {
            total += b["size"].as_u64().unwrap();
        }
    }
    assert!(!digest.is_empty());
    total
}

fn auth_file(home: &Path, registry: &str, user: &str, password: &str) -> std::path::PathBuf {
    let file = home.join("auth.json");
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    std::fs::write(
        &file,
        serde_json::json!({"auths": {registry: {"auth": auth}}}).to_string(),
    )
    .unwrap();
    file
}

/// A token endpoint that always fails: the push makes `--max-attempts` token requests, not
/// that many per retry of the request that needed the token.
#[test]
fn a_failing_token_endpoint_is_retried_at_one_level() {
    let tokens = TokenServer::start("dave", "pw");
    let broken = Proxy::start(
        tokens.port,
        Faults {
            fail_rate: 1.0,
            seed: 3,
            ..Default::default()
        },
    );
    let reg = Registry::start(Auth::Token {
        realm: format!("http://{}/token", broken.addr()),
        service: SERVICE.into(),
        issuer: ISSUER.into(),
        root_cert: tokens.cert.clone(),
    });
    let home = tempfile::tempdir().unwrap();
    let auth = auth_file(home.path(), &reg.addr(), "dave", "pw");
    let o = common::run(
        push_cmd(home.path())
            .args(["--repository", &format!("{}/nested/app", reg.addr())])
            .args(["--plain-http", "--max-attempts", "3"])
            .env("REGISTRY_AUTH_FILE", &auth),
    );
    expect_fail(&o, "push with a broken token endpoint");
    assert_eq!(
        broken.get(&broken.stats.requests),
        3,
        "token requests: {:#?}",
        broken.stats.log.lock().unwrap()
    );
}

/// Plain http answered to https, an untrusted certificate and a refused port fail at once,
/// with a hint, not after the retries a transient failure gets.
#[test]
fn hopeless_connections_fail_at_once() {
    let home = tempfile::tempdir().unwrap();
    let plain = Registry::start(Auth::None);
    let tls = Registry::start_tls(Auth::None);
    let refused = format!("127.0.0.1:{}", support::free_port());
    for (addr, hint) in [
        (plain.addr(), "--plain-http"),
        (tls.addr(), "SSL_CERT_FILE"),
        (refused, "refused"),
    ] {
        let started = Instant::now();
        let o = common::run(
            push_cmd(home.path())
                .args(["--repository", &format!("{addr}/x/y")])
                .env_remove("SSL_CERT_FILE")
                .env_remove("SSL_CERT_DIR"),
        );
        let line = expect_fail(&o, &addr);
        let took = started.elapsed();
        assert!(line.contains(hint), "{addr}: no `{hint}` in: {line}");
        let err = common::stderr(&o);
        assert!(!err.contains("retrying"), "{addr}: retried:\n{err}");
        assert!(took < Duration::from_secs(2), "{addr}: took {took:?}");
    }
}

/// Tokens living 2 s, a push taking several seconds (each request delayed): tokens are
/// fetched again before they expire, no request meets a 401, and no blob body goes twice.
#[test]
fn tokens_expiring_mid_push_are_renewed_without_resending_blobs() {
    let tokens = TokenServer::start_with_lifetime("erin", "pw", Duration::from_secs(2));
    let reg = Registry::start(Auth::Token {
        realm: tokens.realm(),
        service: SERVICE.into(),
        issuer: ISSUER.into(),
        root_cert: tokens.cert.clone(),
    });
    let slow = Proxy::start(
        reg.port,
        Faults {
            delay: Duration::from_millis(300),
            ..Default::default()
        },
    );
    let home = tempfile::tempdir().unwrap();
    let auth = auth_file(home.path(), &slow.addr(), "erin", "pw");
    let started = Instant::now();
    let o = common::run(
        push_cmd(home.path())
            .args(["--repository", &format!("{}/slow/app", slow.addr())])
            .args(["--plain-http", "--upload-jobs", "1"])
            .env("REGISTRY_AUTH_FILE", &auth),
    );
    let out = expect_ok(&o, "a push slower than its tokens");
    let took = started.elapsed();
    assert_eq!(
        out.trim(),
        format!("{}/slow/app@{}", slow.addr(), layout().1)
    );
    assert!(took > Duration::from_secs(3), "the push took only {took:?}");
    let issued = tokens.issued.lock().unwrap().len();
    eprintln!("2-second tokens: {issued} issued for a {took:?} push");
    assert!(issued >= 2, "one token for a {took:?} push");
    let log = slow.stats.log.lock().unwrap().clone();
    // The first requests meet the challenge (they go out together, before it is known); none
    // after the first token.
    let first_ok = log.iter().position(|l| !l.ends_with("-> 401"));
    let late = log
        .iter()
        .skip(first_ok.unwrap_or(0))
        .filter(|l| l.ends_with("-> 401"));
    assert_eq!(
        late.count(),
        0,
        "requests refused after the first token: {log:#?}"
    );
    assert_eq!(
        slow.stats
            .blob_bytes
            .load(std::sync::atomic::Ordering::SeqCst),
        blob_bytes(),
        "blob bytes sent more than once: {log:#?}"
    );
    assert_eq!(
        skopeo_raw_auth(&reg.addr(), "slow/app", "erin", "pw"),
        index_bytes()
    );
}

/// A registry that keeps only half of each `PATCH`: the next chunk starts where its `Range`
/// says its copy ends, and the pushed image is whole.
#[test]
fn chunks_resume_from_the_registrys_range() {
    let reg = Registry::start(Auth::None);
    let halving = Proxy::start(
        reg.port,
        Faults {
            halve_patches: true,
            ..Default::default()
        },
    );
    let home = tempfile::tempdir().unwrap();
    let o = common::run(
        push_cmd(home.path())
            .args(["--repository", &format!("{}/halves/app", halving.addr())])
            .args(["--plain-http", "--chunk-size", "65536"]),
    );
    expect_ok(
        &o,
        "a chunked push to a registry keeping half of each chunk",
    );
    let err = common::stderr(&o);
    assert!(err.contains("sending from there"), "{err}");
    let log = halving.stats.log.lock().unwrap().clone();
    assert!(
        log.iter().all(|l| !l.ends_with("-> 416")),
        "a chunk started at the wrong offset: {log:#?}"
    );
    assert_eq!(
        skopeo_raw(&reg.addr(), "halves/app", "latest"),
        index_bytes()
    );
}

/// `--mount-from` takes a repository of the same registry by its path; a refused mount says
/// so at the default log level and the blob is uploaded instead.
#[test]
fn mount_from_takes_a_path_and_a_refused_mount_is_reported() {
    let reg = Registry::start(Auth::None);
    let home = tempfile::tempdir().unwrap();
    let o = common::run(
        push_cmd(home.path())
            .args(["--repository", &format!("{}/m/two", reg.addr())])
            .args([
                "--plain-http",
                "--mount-from",
                &format!("{}/m/one", reg.addr()),
            ]),
    );
    let line = expect_fail(&o, "--mount-from with a registry host");
    assert!(
        line.contains("--mount-from") && line.contains("by its path"),
        "{line}"
    );
    assert_eq!(common::stderr(&o).lines().count(), 1);

    let denying = Proxy::start(
        reg.port,
        Faults {
            refuse_mounts: true,
            ..Default::default()
        },
    );
    let o = common::run(
        push_cmd(home.path())
            .args(["--repository", &format!("{}/m/two", denying.addr())])
            .args(["--plain-http", "--mount-from", "m/one"]),
    );
    expect_ok(&o, "a push whose mounts are refused");
    let err = common::stderr(&o);
    assert!(
        err.contains("mount from") && err.contains("refused"),
        "{err}"
    );
    assert_eq!(err.matches(" uploaded").count(), 4, "{err}");
}

/// In a layout of two images, `--layout DIR:TAG` picks one and `-t` only names remote tags: a
/// `-t` equal to the other image's local tag does not push that image.
#[test]
fn the_layout_chooses_the_image_and_t_names_the_remote_tag() {
    let reg = Registry::start(Auth::None);
    let work = tempfile::tempdir().unwrap();
    let f = common::fixtures();
    let second = work.path().join("second");
    let d2 = common::ok(
        common::ironstar()
            .arg("build")
            .args(["-t", "solo", "--output"])
            .arg(&second)
            .arg("--binary")
            .arg(format!("linux/amd64={}", f.amd64.display())),
    );
    let d2 = d2.trim();
    // One layout holding both: the shared one (tag `latest`) and `solo`.
    let both = work.path().join("both");
    let (first, d1) = layout();
    for from in [first.as_path(), second.as_path()] {
        std::fs::create_dir_all(both.join("blobs/sha256")).unwrap();
        for e in std::fs::read_dir(from.join("blobs/sha256")).unwrap() {
            let e = e.unwrap();
            std::fs::copy(e.path(), both.join("blobs/sha256").join(e.file_name())).unwrap();
        }
    }
    std::fs::copy(first.join("oci-layout"), both.join("oci-layout")).unwrap();
    let entries = |dir: &Path| {
        let v = common::json(&std::fs::read(dir.join("index.json")).unwrap());
        v["manifests"].as_array().unwrap().clone()
    };
    let mut all = entries(first);
    all.extend(entries(&second));
    let index = serde_json::json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": all});
    std::fs::write(both.join("index.json"), index.to_string()).unwrap();

    let home = tempfile::tempdir().unwrap();
    let push = |layout_arg: String, tag: &str| {
        let mut c = common::ironstar();
        c.env("HOME", home.path())
            .env("DOCKER_CONFIG", home.path().join(".docker"))
            .env_remove("REGISTRY_AUTH_FILE")
            .args(["push", "--layout", &layout_arg, "--plain-http", "-t", tag])
            .args(["--repository", &format!("{}/two/images", reg.addr())]);
        common::run(&mut c)
    };
    let both_arg = both.display().to_string();
    // `-t solo` names a local image too, but chooses nothing: which image is ambiguous.
    let o = push(both_arg.clone(), "solo");
    let line = expect_fail(&o, "-t naming a local tag of an ambiguous layout");
    assert!(line.contains("DIR:TAG"), "{line}");

    let o = push(format!("{both_arg}:solo"), "release");
    let out = expect_ok(&o, "--layout DIR:solo -t release");
    assert_eq!(out.trim(), format!("{}/two/images@{d2}", reg.addr()));
    let o = push(format!("{both_arg}:latest"), "solo");
    let out = expect_ok(&o, "--layout DIR:latest -t solo");
    assert_eq!(out.trim(), format!("{}/two/images@{d1}", reg.addr()));
    assert_eq!(skopeo_raw(&reg.addr(), "two/images", "solo"), index_bytes());
}

#[test]
fn survives_a_proxy_that_fails_a_quarter_of_requests() {
    let reg = Registry::start(Auth::None);
    let proxy = Proxy::start(
        reg.port,
        Faults {
            fail_rate: 0.3,
            seed: 7,
            ..Default::default()
        },
    );
    let home = tempfile::tempdir().unwrap();
    let (_, digest) = layout();
    let o = common::run(
        push_cmd(home.path())
            .args(["--repository", &format!("{}/faults/app", proxy.addr())])
            .args([
                "--plain-http",
                "--chunk-size",
                "1048576",
                "-t",
                "v1",
                "--max-attempts",
                "10",
            ]),
    );
    let out = expect_ok(&o, "push through a faulty proxy");
    assert_eq!(out.trim(), format!("{}/faults/app@{digest}", proxy.addr()));
    let s = &proxy.stats;
    let (requests, faults) = (proxy.get(&s.requests), proxy.get(&s.faults));
    eprintln!(
        "faulty proxy: {requests} requests, {faults} faults ({} resets, {} 429, {} 503)",
        proxy.get(&s.resets),
        proxy.get(&s.throttles),
        proxy.get(&s.unavailable)
    );
    assert!(faults * 5 >= requests, "fewer than 20 % of requests failed");
    assert!(
        proxy.get(&s.resets) > 0 && proxy.get(&s.throttles) > 0 && proxy.get(&s.unavailable) > 0
    );
    assert_eq!(
        proxy.get(&s.chunked_bodies),
        0,
        "a request body was sent chunked"
    );
    assert_eq!(skopeo_raw(&reg.addr(), "faults/app", "v1"), index_bytes());
}

#[test]
fn a_wrong_digest_from_the_registry_fails_the_push_and_moves_no_tag() {
    let reg = Registry::start(Auth::None);
    let proxy = Proxy::start(
        reg.port,
        Faults {
            rewrite_digest: true,
            ..Default::default()
        },
    );
    let home = tempfile::tempdir().unwrap();
    let o = common::run(
        push_cmd(home.path())
            .args(["--repository", &format!("{}/lying/app", proxy.addr())])
            .args(["--plain-http", "-t", "v1"]),
    );
    let line = expect_fail(&o, "push through a digest-rewriting proxy");
    assert!(line.contains("digest"), "{line}");
    assert_eq!(common::stdout(&o), "", "nothing on stdout after a failure");
    assert_eq!(
        tag_status(&reg, "lying/app", "v1"),
        Some(404),
        "the tag moved"
    );
}

#[test]
fn unreachable_refused_and_malformed_fail_in_one_line() {
    let home = tempfile::tempdir().unwrap();
    let port = support::free_port();
    let o = common::run(
        push_cmd(home.path())
            .args([
                "--repository",
                &format!("127.0.0.1:{port}/x/y"),
                "--plain-http",
            ])
            .args(["--max-attempts", "2"]),
    );
    let line = expect_fail(&o, "push to a refused port");
    assert!(line.to_lowercase().contains("connect"), "{line}");

    let o = common::run(push_cmd(home.path()).args([
        "--repository",
        "registry.invalid/x/y",
        "--max-attempts",
        "2",
    ]));
    let line = expect_fail(&o, "push to an unresolvable host");
    assert!(line.contains("registry.invalid"), "{line}");

    for bad in [
        "127.0.0.1:5000/Upper/case",
        "ghcr.io/org/app@sha256:abc",
        "[::1/x",
        "-x.io/y",
    ] {
        let o = common::run(push_cmd(home.path()).arg(format!("--repository={bad}")));
        let line = expect_fail(&o, bad);
        assert!(line.contains("invalid image reference"), "{bad}: {line}");
        assert_eq!(
            common::stderr(&o).lines().count(),
            1,
            "{bad}: more than one line"
        );
    }

    // A password never goes over plain http to a host that is not loopback.
    let o = with_stdin(
        push_cmd(home.path())
            .args([
                "--repository",
                "registry.invalid/x/y",
                "--plain-http",
                "--max-attempts",
                "1",
            ])
            .args(["--username", "u", "--password-stdin"]),
        "pw\n",
    );
    let line = expect_fail(&o, "plain-http with credentials to a remote host");
    assert!(line.contains("plain http"), "{line}");
}

/// The push's critical path, through a proxy adding 100 ms to each request: a first push to an
/// empty repository waits for at most 5 round trips one after another (existence checks, upload
/// sessions, uploads, platform manifests, the index under its tag), a re-push of the same image
/// for at most 2 (here 1: the index and the tag checked together) and makes 2 requests.
#[test]
fn a_first_push_takes_five_round_trips_and_a_repush_one() {
    let reg = Registry::start(Auth::None);
    let proxy = Proxy::start(
        reg.port,
        Faults {
            delay: Duration::from_millis(100),
            ..Default::default()
        },
    );
    let home = tempfile::tempdir().unwrap();
    let repo = format!("{}/rtt/app", proxy.addr());
    let push = || {
        common::run(push_cmd(home.path()).args(["--repository", &repo, "--plain-http", "-t", "v1"]))
    };
    let first = push();
    expect_ok(&first, "first push");
    let s = &proxy.stats;
    let (trips, timeline) = (s.round_trips(), s.timeline());
    eprintln!("first push: {trips} round trips:\n{}", timeline.join("\n"));
    assert!(
        trips <= 5,
        "first push: {trips} round trips:\n{}",
        timeline.join("\n")
    );
    assert_eq!(skopeo_raw(&reg.addr(), "rtt/app", "v1"), index_bytes());

    s.spans.lock().unwrap().clear();
    let again = push();
    expect_ok(&again, "re-push");
    let (trips, timeline) = (s.round_trips(), s.timeline());
    eprintln!("re-push: {trips} round trips:\n{}", timeline.join("\n"));
    assert!(
        trips <= 2,
        "re-push: {trips} round trips:\n{}",
        timeline.join("\n")
    );
    assert!(
        timeline.len() <= 2,
        "re-push requests:\n{}",
        timeline.join("\n")
    );
}
