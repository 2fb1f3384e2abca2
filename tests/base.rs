//! `base = "REGISTRY/REPO[:TAG][@sha256:…]"`: an image another tool made (buildah: a busybox
//! shell and an env var, amd64 and arm64, pushed by skopeo) under ironstar's layers, pulled
//! from a real registry, run by podman on both arches, pushed to the same registry (the base's
//! layers mounted) and to another (copied), and rebuilt from the cache with the registry gone.

mod support;

use std::path::Path;
use std::process::Command;

use support::common::*;
use support::registry::{http_status, Auth, Registry};
use support::token::{TokenServer, ISSUER, SERVICE};

/// buildah with a private storage and config.
struct Buildah {
    conf: ContainersConf,
}

impl Buildah {
    fn new() -> Self {
        require_tool("buildah", "buildah");
        Buildah {
            conf: ContainersConf::new(),
        }
    }

    fn run(&self, args: &[&str]) -> String {
        ok(self.conf.command("buildah").args(args))
            .trim()
            .to_string()
    }

    /// `FROM scratch`, busybox as /bin/sh, an env var: committed as `name`.
    fn base(&self, arch: &str, busybox: &Path, name: &str) {
        let c = self.run(&["from", "--arch", arch, "scratch"]);
        self.run(&["copy", &c, busybox.to_str().unwrap(), "/bin/sh"]);
        self.run(&[
            "config",
            "--env",
            "BASE_GREETING=from the base",
            "--env",
            "PATH=/bin",
            "--arch",
            arch,
            "--os",
            "linux",
            &c,
        ]);
        self.run(&["commit", &c, name]);
    }
}

/// Both arches' base as one index in an OCI layout, and the amd64 one alone, pushed by skopeo to
/// `registry` as `base:v1` and `base:amd64-only` (`creds`: `user:password`).
fn push_bases(registry: &Registry, creds: Option<&str>) {
    let (bb_amd64, bb_arm64) = busybox();
    let b = Buildah::new();
    b.base("amd64", &bb_amd64, "base-amd64");
    b.base("arm64", &bb_arm64, "base-arm64");
    b.run(&["manifest", "create", "base-list"]);
    for arch in ["amd64", "arm64"] {
        b.run(&[
            "manifest",
            "add",
            "base-list",
            &format!("containers-storage:localhost/base-{arch}"),
        ]);
    }
    let oci = b.conf.dir().join("oci");
    let both = format!("oci:{}:v1", oci.display());
    b.run(&[
        "manifest",
        "push",
        "--all",
        "--format",
        "oci",
        "base-list",
        &both,
    ]);
    let one = format!("oci:{}:amd64-only", oci.display());
    b.run(&["push", "--format", "oci", "base-amd64", &one]);
    require_tool("skopeo", "skopeo");
    for (src, tag) in [(both, "v1"), (one, "amd64-only")] {
        let mut c = Command::new("skopeo");
        c.args(["copy", "--all", "--dest-tls-verify=false"]);
        if let Some(creds) = creds {
            c.args(["--dest-creds", creds]);
        }
        ok(c.arg(&src)
            .arg(format!("docker://{}/base:{tag}", registry.addr())));
    }
}

fn build(dir: &Path, base: &str, cache: Option<&Path>, out: &Path) -> std::process::Output {
    build_with(dir, base, cache, out, &[])
}

fn build_with(
    dir: &Path,
    base: &str,
    cache: Option<&Path>,
    out: &Path,
    extra: &[&str],
) -> std::process::Output {
    let f = fixtures();
    let mut c = ironstar();
    // The README's definition, its base replaced by the test registry's.
    c.env("HOME", dir)
        .env_remove("DOCKER_CONFIG")
        .env_remove("REGISTRY_AUTH_FILE")
        .env_remove("XDG_RUNTIME_DIR")
        .arg("build")
        .arg(repo().join("images/on-base.toml"))
        .args(["--base", base, "--base-plain-http", "--binary"])
        .arg(format!("linux/amd64={}", f.amd64.display()))
        .arg("--binary")
        .arg(format!("linux/arm64={}", f.arm64.display()))
        .arg("-o")
        .arg(out)
        .args(extra);
    if let Some(cache) = cache {
        c.env_remove("IRONSTAR_NO_CACHE")
            .arg("--cache-dir")
            .arg(cache);
    }
    run(&mut c)
}

#[test]
fn an_image_on_a_buildah_base_runs_pushes_and_rebuilds_offline() {
    let registry = Registry::start(Auth::None);
    push_bases(&registry, None);
    let dir = tempfile::tempdir().unwrap();
    let base = format!("{}/base:v1", registry.addr());
    let layout = dir.path().join("app");
    let o = build(dir.path(), &base, None, &layout);
    let digest = digest_line(&expect(&o, "build on the base"));

    // The layers are the base's, then ours; the config is the base's merged under ours.
    let base_index = json(&skopeo_raw(&base));
    for (i, (manifest, config)) in platform_images(&layout).iter().enumerate() {
        let base_entry = &base_index["manifests"][i];
        let base_manifest = json(&skopeo_raw(&format!(
            "{}/base@{}",
            registry.addr(),
            base_entry["digest"].as_str().unwrap()
        )));
        let layers = manifest["layers"].as_array().unwrap();
        assert_eq!(layers.len(), 2, "{manifest}");
        assert_eq!(layers[0]["digest"], base_manifest["layers"][0]["digest"]);
        let a = &manifest["annotations"];
        assert_eq!(a["org.opencontainers.image.base.name"], base.as_str());
        assert_eq!(
            a["org.opencontainers.image.base.digest"],
            base_entry["digest"]
        );
        let env = config["config"]["Env"].as_array().unwrap();
        assert!(
            env.contains(&"BASE_GREETING=from the base".into()),
            "{config}"
        );
        assert!(env.contains(&"PATH=/bin".into()), "{config}");
        assert_eq!(config["rootfs"]["diff_ids"].as_array().unwrap().len(), 2);
        assert_eq!(config["history"].as_array().unwrap().len(), 2);
    }

    // podman runs the base's shell and our binary, on both arches.
    let podman = Podman::new();
    let mut platforms = vec![("linux/amd64", "x86_64")];
    if binfmt_arm64() {
        platforms.push(("linux/arm64", "aarch64"));
    } else {
        eprintln!("skipping linux/arm64: /proc/sys/fs/binfmt_misc/qemu-aarch64 is missing, so podman cannot run arm64 images here");
    }
    for (platform, arch) in platforms {
        ok(podman
            .env(&mut ironstar())
            .args(["load", "--layout"])
            .arg(&layout)
            .args(["--platform", platform]));
        assert_eq!(podman.run("service:latest"), format!("hello from {arch}\n"));
        let shell = base_shell(&podman, "echo \"$BASE_GREETING\"; uname -m");
        assert_eq!(shell, format!("from the base\n{arch}\n"), "{platform}");
    }

    // To the base's registry: the base's layers are mounted from its repository.
    let home = dir.path().join("home");
    let push = |to: &str| {
        run(ironstar()
            .env("HOME", &home)
            .env("DOCKER_CONFIG", home.join(".docker"))
            .env_remove("REGISTRY_AUTH_FILE")
            .env_remove("XDG_RUNTIME_DIR")
            .args(["push", "--plain-http", "--layout"])
            .arg(&layout)
            .args(["--repository", to]))
    };
    let o = push(&format!("{}/app", registry.addr()));
    let out = expect(&o, "push to the base's registry");
    assert_eq!(out.trim(), format!("{}/app@{digest}", registry.addr()));
    assert_eq!(
        stderr(&o).matches(") mounted").count(),
        2,
        "the two base layers: {}",
        stderr(&o)
    );
    // To another registry: copied from the layout, then readable whole by skopeo.
    let other = Registry::start(Auth::None);
    let o = push(&format!("{}/app", other.addr()));
    expect(&o, "push to another registry");
    let layer = platform_images(&layout)[0].0["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        http_status(other.port, "HEAD", &format!("/v2/app/blobs/{layer}")),
        Some(200)
    );
    let copy = dir.path().join("copy");
    ok(Command::new("skopeo").args([
        "copy",
        "--all",
        "--src-tls-verify=false",
        &format!("docker://{}/app:latest", other.addr()),
        &format!("oci:{}:x", copy.display()),
    ]));

    // A base without a platform of the build: one line naming what it has.
    let o = build(
        dir.path(),
        &format!("{}/base:amd64-only", registry.addr()),
        None,
        &dir.path().join("no"),
    );
    assert!(!o.status.success());
    let e = stderr(&o);
    assert_eq!(e.trim().lines().count(), 1, "{e}");
    assert!(e.contains("has no linux/arm64 (it has linux/amd64)"), "{e}");
    assert!(!dir.path().join("no").exists());

    // Pinned by digest with a cache: the second build needs no registry at all.
    let index_digest = base_index_digest(&registry);
    let pinned = format!("{}/base@{index_digest}", registry.addr());
    let cache = dir.path().join("cache");
    let first = digest_line(&expect(
        &build(dir.path(), &pinned, Some(&cache), &dir.path().join("p1")),
        "pinned build",
    ));
    drop(registry);
    let second = digest_line(&expect(
        &build(dir.path(), &pinned, Some(&cache), &dir.path().join("p2")),
        "pinned build with the registry stopped",
    ));
    assert_eq!(first, second);
    let (manifest, _) = &platform_images(&dir.path().join("p2"))[1];
    assert_eq!(manifest["layers"].as_array().unwrap().len(), 2);
}

#[test]
fn a_base_behind_auth_is_pulled_with_the_push_s_credentials() {
    let registry = Registry::start(Auth::Basic {
        user: "carol".into(),
        password: "base-s3cret".into(),
    });
    base_behind_auth(&registry);
    // Behind a token server (distribution's `token` auth, as ghcr and Docker Hub): the same
    // credential traded for a bearer token.
    let tokens = TokenServer::start("carol", "base-s3cret");
    let registry = Registry::start(Auth::Token {
        realm: tokens.realm(),
        service: SERVICE.into(),
        issuer: ISSUER.into(),
        root_cert: tokens.cert.clone(),
    });
    let before = tokens.issued.lock().unwrap().len();
    base_behind_auth(&registry);
    assert!(
        tokens.issued.lock().unwrap().len() > before,
        "no token was asked for"
    );
}

/// Refused in one line naming the registry without a credential; pulled with the one in
/// ~/.docker/config.json, as a push reads it.
fn base_behind_auth(registry: &Registry) {
    push_bases(registry, Some("carol:base-s3cret"));
    let dir = tempfile::tempdir().unwrap();
    let base = format!("{}/base:v1", registry.addr());
    let o = build(dir.path(), &base, None, &dir.path().join("refused"));
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(
        e.contains(&registry.addr()) && e.trim().lines().count() == 1,
        "{e}"
    );
    use base64::Engine as _;
    let auth = base64::engine::general_purpose::STANDARD.encode("carol:base-s3cret");
    std::fs::create_dir_all(dir.path().join(".docker")).unwrap();
    std::fs::write(
        dir.path().join(".docker/config.json"),
        serde_json::json!({"auths": {registry.addr(): {"auth": auth}}}).to_string(),
    )
    .unwrap();
    let layout = dir.path().join("app");
    expect(
        &build(dir.path(), &base, None, &layout),
        "build on a base behind auth",
    );
    assert_eq!(platform_images(&layout).len(), 2);
}

/// `script` run by the base's shell in the loaded `service:latest`.
fn base_shell(podman: &Podman, script: &str) -> String {
    ok(podman.cmd().args([
        "run",
        "--rm",
        "--network",
        "none",
        "--entrypoint",
        "/bin/sh",
        "service:latest",
        "-c",
        script,
    ]))
}

fn base_index_digest(registry: &Registry) -> String {
    let bytes = skopeo_raw(&format!("{}/base:v1", registry.addr()));
    format!("sha256:{}", ironstar::Digest::of(&bytes).hex())
}

fn expect(o: &std::process::Output, what: &str) -> String {
    support::cli::expect_ok(o, what)
}

/// zstd composes with a base: the base's gzip layers stay as pulled (bytes and media type), the
/// rootfs items' layer and the binary's are zstd, and podman runs the mixed image.
#[test]
fn zstd_layers_go_on_top_of_a_gzip_base() {
    let registry = Registry::start(Auth::None);
    push_bases(&registry, None);
    let dir = tempfile::tempdir().unwrap();
    let base = format!("{}/base:v1", registry.addr());
    let layout = dir.path().join("app");
    let extra = ["--compression", "zstd", "--rootfs", "tmp"];
    let o = build_with(dir.path(), &base, None, &layout, &extra);
    expect(&o, "a zstd build on the base");
    let base_index = json(&skopeo_raw(&base));
    for (i, (manifest, _)) in platform_images(&layout).iter().enumerate() {
        let base_manifest = json(&skopeo_raw(&format!(
            "{}/base@{}",
            registry.addr(),
            base_index["manifests"][i]["digest"].as_str().unwrap()
        )));
        let types: Vec<&str> = manifest["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["mediaType"].as_str().unwrap())
            .collect();
        let base_layer = &base_manifest["layers"][0];
        assert_eq!(manifest["layers"][0]["digest"], base_layer["digest"]);
        assert_eq!(types[0], base_layer["mediaType"].as_str().unwrap());
        assert!(types[0].ends_with("+gzip"), "{types:?}");
        let zstd = "application/vnd.oci.image.layer.v1.tar+zstd";
        assert_eq!(
            types[1..],
            [zstd, zstd],
            "the rootfs layer, then the binary's"
        );
    }
    let podman = Podman::new();
    ok(podman
        .env(&mut ironstar())
        .args(["load", "--platform", "linux/amd64", "--layout"])
        .arg(&layout));
    assert_eq!(podman.run("service:latest"), "hello from x86_64\n");
    let shell = base_shell(&podman, "echo \"$BASE_GREETING\"; test -d /tmp && echo tmp");
    assert_eq!(shell, "from the base\ntmp\n");
}
