//! `ironstar push` against a real registry (Debian's `docker-registry`, distribution 2.8) on
//! loopback, pulled back with skopeo; auth (htpasswd, token, docker config, credential helper);
//! faults injected by a proxy; re-push; kill -9; errors.

mod support;
use support::common;

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use base64::Engine as _;
use support::cli::*;
use support::proxy::{Faults, Proxy};
use support::registry::{Auth, Registry};
use support::token::{TokenServer, ISSUER, SERVICE};

/// Pull one architecture with skopeo into an OCI dir and return its binary's path.
fn pull_binary(addr: &str, repo: &str, tag: &str, arch: &str, work: &Path) -> PathBuf {
    common::require_tool("skopeo", "skopeo");
    let dest = work.join(format!("pulled-{arch}"));
    let o = common::run(Command::new("skopeo").args([
        "--insecure-policy",
        "copy",
        "--override-arch",
        arch,
        "--override-os",
        "linux",
        "--src-tls-verify=false",
        &format!("docker://{addr}/{repo}:{tag}"),
        &format!("oci:{}:x", dest.display()),
    ]));
    assert!(o.status.success(), "skopeo copy: {}", common::stderr(&o));
    let index = common::json(&std::fs::read(dest.join("index.json")).unwrap());
    let manifest = common::json(&common::blob(
        &dest,
        index["manifests"][0]["digest"].as_str().unwrap(),
    ));
    let config = common::json(&common::blob(
        &dest,
        manifest["config"]["digest"].as_str().unwrap(),
    ));
    assert_eq!(config["architecture"], arch);
    let mut biggest: Option<(String, Vec<u8>)> = None;
    for layer in manifest["layers"].as_array().unwrap() {
        for (path, _mode, _, _, _, data) in
            common::layer_entries(&common::blob(&dest, layer["digest"].as_str().unwrap()))
        {
            if biggest.as_ref().is_none_or(|(_, b)| data.len() > b.len()) {
                biggest = Some((path, data));
            }
        }
    }
    let (_, data) = biggest.expect("a file in the image");
    let bin = work.join(format!("hello-{arch}"));
    std::fs::write(&bin, data).unwrap();
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    bin
}

#[test]
fn pushes_two_platforms_that_skopeo_pulls_and_runs() {
    let reg = Registry::start(Auth::None);
    let home = tempfile::tempdir().unwrap();
    let (_, digest) = layout();
    let gh = home.path().join("github_output");
    std::fs::write(&gh, "earlier=1\n").unwrap();
    let o = common::run(
        push_cmd(home.path())
            .args(["--repository", &format!("{}/test/hello", reg.addr())])
            .args(["--plain-http", "--tag", "v1", "--tag", "latest"])
            .env("GITHUB_OUTPUT", &gh),
    );
    let out = expect_ok(&o, "push");
    let image = format!("{}/test/hello@{digest}", reg.addr());
    assert_eq!(out, format!("{image}\n"), "stdout must be exactly one line");
    assert_eq!(
        std::fs::read_to_string(&gh).unwrap(),
        // `images` (name → reference, as several images write it) too; the name is the
        // layout's title (no image file here).
        format!("earlier=1\ndigest={digest}\nimage={image}\nimages={{\"hello\":\"{image}\"}}\n")
    );

    for tag in ["v1", "latest"] {
        assert_eq!(
            skopeo_raw(&reg.addr(), "test/hello", tag),
            index_bytes(),
            "the registry must serve the layout's exact index bytes"
        );
    }

    let work = tempfile::tempdir().unwrap();
    common::require_tool("qemu-aarch64-static", "qemu-user-static");
    let arm = pull_binary(&reg.addr(), "test/hello", "v1", "arm64", work.path());
    let o = common::run(Command::new("qemu-aarch64-static").arg(&arm));
    assert_eq!(common::stdout(&o).trim(), "hello from aarch64");
    let amd = pull_binary(&reg.addr(), "test/hello", "v1", "amd64", work.path());
    let o = common::run(&mut Command::new(&amd));
    assert_eq!(common::stdout(&o).trim(), "hello from x86_64");
}

#[test]
fn chunked_uploads_and_cross_repository_mounts() {
    let reg = Registry::start(Auth::None);
    let proxy = Proxy::start(
        reg.port,
        Faults {
            relative_location: true,
            ..Default::default()
        },
    );
    let home = tempfile::tempdir().unwrap();
    let (_, digest) = layout();
    // Small chunks: every layer goes up in several PATCHes, each answered with a relative
    // Location.
    let o = common::run(
        push_cmd(home.path())
            .args(["--repository", &format!("{}/a/first", proxy.addr())])
            .args(["--plain-http", "--chunk-size", "65536", "-v"]),
    );
    expect_ok(&o, "chunked push");
    assert!(
        common::stderr(&o).contains("PATCH"),
        "{}",
        common::stderr(&o)
    );
    assert_eq!(skopeo_raw(&reg.addr(), "a/first", "latest"), index_bytes());

    let o = common::run(
        push_cmd(home.path())
            .args(["--repository", &format!("{}/b/second", reg.addr())])
            .args(["--plain-http", "--mount-from", "a/first", "-t", "v9"]),
    );
    let out = expect_ok(&o, "push with --mount-from");
    assert_eq!(out.trim(), format!("{}/b/second@{digest}", reg.addr()));
    let err = common::stderr(&o);
    assert!(err.contains("mounted"), "blobs should be mounted:\n{err}");
    assert!(
        !err.contains("uploaded"),
        "no blob should be uploaded:\n{err}"
    );
    assert_eq!(skopeo_raw(&reg.addr(), "b/second", "v9"), index_bytes());

    // By default every blob goes up in one PUT; a registry that refuses a large one with 413
    // (ACR) gets the same blob in PATCH chunks.
    let acr = Proxy::start(
        reg.port,
        Faults {
            max_blob_put: 16 << 10,
            ..Default::default()
        },
    );
    let o = common::run(
        push_cmd(home.path())
            .args(["--repository", &format!("{}/c/third", acr.addr())])
            .args(["--plain-http", "-v"]),
    );
    expect_ok(&o, "push to a registry refusing large PUTs");
    let log = acr.stats.log.lock().unwrap().clone();
    let refused = log.iter().filter(|l| l.ends_with("-> 413")).count();
    assert_eq!(refused, 2, "one refused PUT per layer: {log:#?}");
    assert!(
        log.iter().any(|l| l.starts_with("PATCH")),
        "no chunk was sent: {log:#?}"
    );
    assert_eq!(skopeo_raw(&reg.addr(), "c/third", "latest"), index_bytes());
}

#[test]
fn basic_auth_good_and_bad_password() {
    let password = "s3cret-Basic-pw";
    let reg = Registry::start(Auth::Basic {
        user: "alice".into(),
        password: password.into(),
    });
    let home = tempfile::tempdir().unwrap();
    let repo = format!("{}/auth/basic", reg.addr());

    let o = with_stdin(
        push_cmd(home.path())
            .args(["--repository", &repo, "--plain-http", "-vv"])
            .args(["--username", "alice", "--password-stdin"]),
        &format!("{password}\n"),
    );
    expect_ok(&o, "push with the right password");
    let all = format!("{}{}", common::stdout(&o), common::stderr(&o));
    assert!(!all.contains(password), "password leaked at -vv:\n{all}");
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("alice:{password}"));
    assert!(!all.contains(&basic), "Basic header leaked at -vv");

    let o = with_stdin(
        push_cmd(home.path())
            .args(["--repository", &repo, "--plain-http", "-vv", "-t", "other"])
            .args(["--username", "alice", "--password-stdin"]),
        "wrong-password\n",
    );
    let line = expect_fail(&o, "push with a wrong password");
    assert!(
        line.contains("401") && line.contains("rejected"),
        "unclear error: {line}"
    );
    assert!(!common::stderr(&o).contains("wrong-password"));
    assert_eq!(tag_status(&reg, "auth/basic", "other"), Some(401));

    // No credentials at all: a clear error naming where they were looked for.
    let o = common::run(push_cmd(home.path()).args(["--repository", &repo, "--plain-http"]));
    let line = expect_fail(&o, "push without credentials");
    assert!(line.contains("no credentials were found"), "{line}");
}

#[test]
fn basic_auth_from_docker_config_and_credential_helper() {
    let password = "pw-from-config-42";
    let reg = Registry::start(Auth::Basic {
        user: "bob".into(),
        password: password.into(),
    });
    let home = tempfile::tempdir().unwrap();
    let docker = home.path().join(".docker");
    std::fs::create_dir_all(&docker).unwrap();
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("bob:{password}"));
    std::fs::write(
        docker.join("config.json"),
        serde_json::json!({"auths": {reg.addr(): {"auth": auth}}}).to_string(),
    )
    .unwrap();
    let o = common::run(
        push_cmd(home.path())
            .args(["--repository", &format!("{}/cfg/app", reg.addr())])
            .args(["--plain-http", "-vv"]),
    );
    expect_ok(&o, "push with config.json auths");
    let all = format!("{}{}", common::stdout(&o), common::stderr(&o));
    assert!(
        !all.contains(password) && !all.contains(&auth),
        "credential leaked:\n{all}"
    );

    // A credential helper script on PATH, named by credHelpers.
    let bin = home.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let helper = bin.join("docker-credential-ironstartest");
    std::fs::write(
        &helper,
        format!(
            "#!/bin/sh\n[ \"$1\" = get ] || exit 1\nread server\n[ \"$server\" = \"{}\" ] || {{ echo \"credentials not found in native keychain\"; exit 1; }}\nprintf '{{\"ServerURL\":\"%s\",\"Username\":\"bob\",\"Secret\":\"{password}\"}}' \"$server\"\n",
            reg.addr()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(
        docker.join("config.json"),
        serde_json::json!({"credHelpers": {reg.addr(): "ironstartest"}}).to_string(),
    )
    .unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let o = common::run(
        push_cmd(home.path())
            .args(["--repository", &format!("{}/helper/app", reg.addr())])
            .args(["--plain-http", "-vv"])
            .env("PATH", &path),
    );
    expect_ok(&o, "push with a credential helper");
    let all = format!("{}{}", common::stdout(&o), common::stderr(&o));
    assert!(!all.contains(password), "credential leaked:\n{all}");
    assert_eq!(
        skopeo_raw_auth(&reg.addr(), "helper/app", "bob", password),
        index_bytes()
    );
}

#[test]
fn token_auth() {
    let password = "token-user-pw";
    let tokens = TokenServer::start("carol", password);
    let reg = Registry::start(Auth::Token {
        realm: tokens.realm(),
        service: SERVICE.into(),
        issuer: ISSUER.into(),
        root_cert: tokens.cert.clone(),
    });
    let home = tempfile::tempdir().unwrap();
    let auth_file = home.path().join("auth.json");
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("carol:{password}"));
    std::fs::write(
        &auth_file,
        serde_json::json!({"auths": {reg.addr(): {"auth": auth}}}).to_string(),
    )
    .unwrap();
    let (_, digest) = layout();
    let o = common::run(
        push_cmd(home.path())
            .args(["--repository", &format!("{}/tok/app", reg.addr())])
            .args(["--plain-http", "-vv", "-t", "t1"])
            .env("REGISTRY_AUTH_FILE", &auth_file),
    );
    let out = expect_ok(&o, "push with token auth");
    assert_eq!(out.trim(), format!("{}/tok/app@{digest}", reg.addr()));
    let issued = tokens.issued.lock().unwrap().clone();
    assert!(!issued.is_empty(), "no token was asked for");
    let all = format!("{out}{}", common::stderr(&o));
    for t in &issued {
        assert!(!all.contains(t.as_str()), "a token leaked at -vv");
        // Tokens are long; a fragment of the signature is enough to notice a leak.
        assert!(
            !all.contains(&t[t.len() - 30..]),
            "a token fragment leaked at -vv"
        );
    }
    assert!(!all.contains(password) && !all.contains(&auth));

    // A wrong password: the token endpoint refuses, the push fails clearly.
    std::fs::write(
        &auth_file,
        serde_json::json!({"auths": {reg.addr(): {"auth": base64::engine::general_purpose::STANDARD.encode("carol:nope")}}})
            .to_string(),
    )
    .unwrap();
    let o = common::run(
        push_cmd(home.path())
            .args(["--repository", &format!("{}/tok/app", reg.addr())])
            .args(["--plain-http", "-t", "t2"])
            .env("REGISTRY_AUTH_FILE", &auth_file),
    );
    let line = expect_fail(&o, "push with a wrong token password");
    assert!(line.contains("authentication failed"), "{line}");
}

#[test]
fn a_repush_sends_no_blob_and_only_moves_differing_tags() {
    let reg = Registry::start(Auth::None);
    let home = tempfile::tempdir().unwrap();
    let repo = format!("{}/again/app", reg.addr());
    let first = common::run(push_cmd(home.path()).args([
        "--repository",
        &repo,
        "--plain-http",
        "-t",
        "v1",
    ]));
    expect_ok(&first, "first push");

    let proxy = Proxy::start(reg.port, Faults::default());
    let o = common::run(
        push_cmd(home.path())
            .args(["--repository", &format!("{}/again/app", proxy.addr())])
            .args(["--plain-http", "-t", "v1", "-t", "v2"]),
    );
    let out = expect_ok(&o, "re-push");
    let err = common::stderr(&o);
    assert!(err.contains("already in the registry"), "{err}");
    assert!(err.contains("tag v1 already points"), "{err}");
    assert!(err.contains("tag v2 ->"), "{err}");
    let s = &proxy.stats;
    assert_eq!(
        proxy.get(&s.blob_upload_requests),
        0,
        "blob upload requests on a re-push: {:?}",
        s.log.lock().unwrap()
    );
    assert_eq!(s.blob_bytes.load(std::sync::atomic::Ordering::SeqCst), 0);
    let manifest_puts = s
        .log
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.starts_with("PUT "))
        .count();
    assert_eq!(manifest_puts, 1, "only tag v2 should be written");
    assert_eq!(
        out.trim(),
        format!("{}/again/app@{}", proxy.addr(), layout().1)
    );
    assert_eq!(skopeo_raw(&reg.addr(), "again/app", "v2"), index_bytes());
}

#[test]
fn kill_9_mid_push_then_push_again() {
    let reg = Registry::start(Auth::None);
    let proxy = Proxy::start(
        reg.port,
        Faults {
            delay: Duration::from_millis(150),
            ..Default::default()
        },
    );
    let home = tempfile::tempdir().unwrap();
    let repo = format!("{}/killed/app", proxy.addr());
    let (_, digest) = layout();
    for wait_ms in [400u64, 1200] {
        let mut child = push_cmd(home.path())
            .args([
                "--repository",
                &repo,
                "--plain-http",
                "-t",
                "v1",
                "--chunk-size",
                "262144",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(wait_ms));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        // The tag is absent, or (had the push finished) points at the complete index.
        match tag_status(&reg, "killed/app", "v1") {
            Some(404) => {}
            Some(200) => assert_eq!(skopeo_raw(&reg.addr(), "killed/app", "v1"), index_bytes()),
            other => panic!("HEAD tag after kill: {other:?}"),
        }
    }
    let o = common::run(push_cmd(home.path()).args([
        "--repository",
        &repo,
        "--plain-http",
        "-t",
        "v1",
    ]));
    let out = expect_ok(&o, "push after kill -9");
    assert_eq!(out.trim(), format!("{repo}@{digest}"));
    assert_eq!(skopeo_raw(&reg.addr(), "killed/app", "v1"), index_bytes());
}

#[test]
fn https_registry_trusted_through_ssl_cert_file() {
    let reg = Registry::start_tls(Auth::None);
    let ca = reg.ca.clone().unwrap();
    let home = tempfile::tempdir().unwrap();
    let repo = format!("{}/tls/app", reg.addr());

    // Not trusted: a one-line certificate error, nothing pushed.
    let o = common::run(
        push_cmd(home.path())
            .args(["--repository", &repo, "--max-attempts", "1"])
            .env_remove("SSL_CERT_FILE")
            .env_remove("SSL_CERT_DIR"),
    );
    let line = expect_fail(&o, "push to an untrusted https registry");
    assert!(line.to_lowercase().contains("certificate"), "{line}");

    // Trusted through SSL_CERT_FILE: pushes over https (h2 for manifests, HTTP/1.1 for blobs).
    let o = common::run(
        push_cmd(home.path())
            .args(["--repository", &repo, "-t", "v1", "--chunk-size", "1048576"])
            .env("SSL_CERT_FILE", &ca),
    );
    let out = expect_ok(&o, "push to an https registry trusted via SSL_CERT_FILE");
    assert_eq!(out.trim(), format!("{repo}@{}", layout().1));
    assert_eq!(skopeo_raw(&reg.addr(), "tls/app", "v1"), index_bytes());
}

#[test]
fn publish_builds_and_pushes_in_one_step() {
    let reg = Registry::start(Auth::None);
    let home = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let f = common::fixtures();
    let image_file = work.path().join("app.toml");
    std::fs::write(
        &image_file,
        format!(
            "name = \"app\"\nrepository = \"{}/team/app\"\ntags = [\"latest\", \"v2\"]\n",
            reg.addr()
        ),
    )
    .unwrap();
    let binaries = [
        format!("--binary=linux/amd64={}", f.amd64.display()),
        format!("--binary=linux/arm64={}", f.arm64.display()),
    ];
    let out = work.path().join("layout");
    let o = common::run(
        common::ironstar()
            .env("HOME", home.path())
            .env("DOCKER_CONFIG", home.path().join(".docker"))
            .arg("publish")
            .arg(&image_file)
            .args(&binaries)
            .arg("-o")
            .arg(&out)
            .arg("--plain-http"),
    );
    let printed = expect_ok(&o, "publish");
    // The same digest as a plain build of the same inputs.
    let built = common::ok(
        common::ironstar()
            .arg("build")
            .arg(&image_file)
            .args(&binaries)
            .arg("-o")
            .arg(work.path().join("again")),
    );
    let digest = built.trim();
    assert_eq!(printed, format!("{}/team/app@{digest}\n", reg.addr()));
    for tag in ["latest", "v2"] {
        assert_eq!(
            skopeo_raw(&reg.addr(), "team/app", tag),
            common::blob(&out, digest)
        );
    }
}

#[test]
fn a_second_repository_mounts_what_the_cache_says_the_first_holds() {
    let reg = Registry::start(Auth::None);
    let home = tempfile::tempdir().unwrap();
    let cache = home.path().join("cache");
    let (_, digest) = layout();
    let push = |repo: &str, extra: &[&str]| {
        let o = common::run(
            push_cmd(home.path())
                .env_remove("IRONSTAR_NO_CACHE")
                .arg("--cache-dir")
                .arg(&cache)
                .args(["--repository", &format!("{}/{repo}", reg.addr())])
                .arg("--plain-http")
                .args(extra),
        );
        let out = expect_ok(&o, repo);
        assert_eq!(out.trim(), format!("{}/{repo}@{digest}", reg.addr()));
        assert_eq!(skopeo_raw(&reg.addr(), repo, "latest"), index_bytes());
        let err = common::stderr(&o);
        (
            err.matches(" uploaded").count(),
            err.matches(" mounted").count(),
        )
    };
    // Two blobs a platform (config and layer; manifests are pushed as manifests): 4 in all.
    assert_eq!(push("one/app", &[]), (4, 0));
    // No --mount-from: the cache knows one/app holds every blob.
    assert_eq!(push("two/app", &[]), (0, 4));
    // Without the cache there is nothing to mount from.
    assert_eq!(push("three/app", &["--no-cache"]), (4, 0));
}
