//! A workspace's images: selection as cargo does it, every member built by one cargo run and
//! published by one command (tags moving only when every image is up), `push --workspace` over
//! one token, `ironstar resolve` over YAML, and `cargo ironstar`.
//!
//! The fixture `tests/fixtures/workspace`: `api` (its image defined in Cargo.toml), `worker`
//! (C through the `cc` crate, so zig builds the workspace), `migrate` (not a default member) and
//! the library `common`; `deploy/` holds the YAML `resolve` reads. One target directory for
//! every test (`target/test-fixtures/workspace`): cargo builds the fixture once.

mod support;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use ironstar::cargo::{CargoError, CargoOptions, Workspace};
use ironstar::Digest;
use support::cli::skopeo_raw;
use support::common::{self, blob, json, layer_entries, ok, require_tool, run, stderr, stdout};
use support::proxy::{Faults, Proxy};
use support::registry::{Auth, Registry};
use support::token::{TokenServer, ISSUER, SERVICE};

const IMAGES: [&str; 3] = ["api", "migrate", "worker"];

fn fixture() -> PathBuf {
    common::repo().join("tests/fixtures/workspace")
}

/// ironstar run in the fixture's root, offline, with the shared target directory and none of
/// the machine's credentials. HOME stays: cargo-zigbuild's wrappers and zig's cache live under
/// it, and a HOME of its own would rebuild the fixture (its linker's path changes) and zig's libc.
fn ironstar(home: &Path) -> Command {
    let mut c = common::ironstar();
    in_fixture(&mut c, home);
    c
}

fn in_fixture(c: &mut Command, home: &Path) {
    c.current_dir(fixture())
        .env(
            "CARGO_TARGET_DIR",
            common::repo().join("target/test-fixtures/workspace"),
        )
        .env("CARGO_NET_OFFLINE", "true")
        .env("DOCKER_CONFIG", home.join(".docker"))
        .env_remove("REGISTRY_AUTH_FILE")
        .env_remove("XDG_RUNTIME_DIR")
        .env_remove("GITHUB_TOKEN")
        .env_remove("GITHUB_OUTPUT")
        .env_remove("IRONSTAR_REPOSITORY");
}

/// A PATH whose `cargo-zigbuild` logs each run to `log` before running the real one.
fn counting_path(dir: &Path, log: &Path) -> String {
    let real = String::from_utf8(
        ok(Command::new("sh").args(["-c", "command -v cargo-zigbuild"])).into_bytes(),
    )
    .unwrap();
    let wrapper = dir.join("cargo-zigbuild");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\necho \"$*\" >> '{}'\nexec '{}' \"$@\"\n",
            log.display(),
            real.trim()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    format!("{}:{}", dir.display(), std::env::var("PATH").unwrap())
}

/// `REPO@sha256:…` lines, by image name (the repository's last component).
fn references(out: &str) -> BTreeMap<String, (String, String)> {
    out.lines()
        .map(|l| {
            let (repo, digest) = l
                .split_once('@')
                .unwrap_or_else(|| panic!("not REPO@DIGEST: {l}"));
            let name = repo.rsplit('/').next().unwrap().to_string();
            (name, (repo.to_string(), digest.to_string()))
        })
        .collect()
}

/// The digest of what `addr` serves for `repo:tag`.
fn served(addr: &str, repo: &str, tag: &str) -> String {
    Digest::of(&skopeo_raw(addr, repo, tag)).to_string()
}

/// The image binary `name` for `platform` out of a layout, written into `dir`.
fn binary_from_layout(layout: &Path, platform: &str, name: &str, dir: &Path) -> PathBuf {
    let top = json(&std::fs::read(layout.join("index.json")).unwrap());
    let index = json(&blob(
        layout,
        top["manifests"][0]["digest"].as_str().unwrap(),
    ));
    let arch = platform.split('/').nth(1).unwrap();
    let m = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["platform"]["architecture"] == arch)
        .unwrap();
    let manifest = json(&blob(layout, m["digest"].as_str().unwrap()));
    let layer = manifest["layers"].as_array().unwrap().last().unwrap();
    let entries = layer_entries(&blob(layout, layer["digest"].as_str().unwrap()));
    let e = entries
        .into_iter()
        .find(|e| e.0 == name)
        .expect("the binary");
    let out = dir.join(format!("{name}-{arch}"));
    std::fs::write(&out, &e.5).unwrap();
    std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o755)).unwrap();
    out
}

fn runs(bin: &Path, platform: &str) -> String {
    let mut c = match platform {
        "linux/arm64" => {
            require_tool("qemu-aarch64-static", "qemu-user-static");
            let mut c = Command::new("qemu-aarch64-static");
            c.arg(bin);
            c
        }
        _ => Command::new(bin),
    };
    ok(&mut c).trim().to_string()
}

/// The index digest of the layout at `dir`.
fn layout_digest(dir: &Path) -> String {
    let top = json(&std::fs::read(dir.join("index.json")).unwrap());
    top["manifests"][0]["digest"].as_str().unwrap().to_string()
}

#[test]
fn selection_follows_cargo() {
    let manifest = fixture().join("Cargo.toml");
    let select = |f: &dyn Fn(&mut CargoOptions)| {
        let mut o = CargoOptions {
            manifest_path: Some(manifest.clone()),
            offline: true,
            ..Default::default()
        };
        f(&mut o);
        Workspace::resolve(&o).map(|ws| {
            ws.members
                .iter()
                .map(|m| m.name.clone())
                .collect::<Vec<_>>()
        })
    };
    // At the root: default-members (migrate is not one, common is a library).
    assert_eq!(select(&|_| {}).unwrap(), ["api", "worker"]);
    assert_eq!(
        select(&|o| o.workspace = true).unwrap(),
        ["api", "worker", "migrate"]
    );
    // `--bin worker` alone finds its package, as `cargo build --bin worker` does.
    assert_eq!(
        select(&|o| o.bins = vec!["worker".into()]).unwrap(),
        ["worker"]
    );
    // A member's own manifest: that member.
    let migrate = fixture().join("migrate/Cargo.toml");
    assert_eq!(
        select(&|o| o.manifest_path = Some(migrate.clone())).unwrap(),
        ["migrate"]
    );
    // Refusals offer only members with a binary.
    let e = select(&|o| o.packages = vec!["nope".into()]).unwrap_err();
    let text = e.to_string();
    assert!(
        text.contains("api, worker, migrate") && !text.contains("common"),
        "{text}"
    );
    let e = select(&|o| o.packages = vec!["common".into()]).unwrap_err();
    assert!(matches!(e, CargoError::NoBinary { .. }), "{e}");
    let e = select(&|o| o.bins = vec!["migrate".into()]).unwrap_err();
    assert!(e.to_string().contains("add -p migrate"), "{e}");
}

#[test]
fn one_command_publishes_every_member_and_a_refused_image_moves_no_tag() {
    require_tool("zig", "zig: sh scripts/install-deps.sh");
    let reg = Registry::start(Auth::None);
    let clean = Proxy::start(reg.port, Faults::default());
    let tmp = tempfile::tempdir().unwrap();
    let (bin_dir, log) = (tmp.path().join("bin"), tmp.path().join("zigbuild.log"));
    std::fs::create_dir(&bin_dir).unwrap();
    let path = counting_path(&bin_dir, &log);
    let (out_dir, gh) = (tmp.path().join("oci"), tmp.path().join("github_output"));
    let refs_file = tmp.path().join("refs.txt");

    let out = ok(ironstar(tmp.path())
        .env("PATH", &path)
        .env("GITHUB_OUTPUT", &gh)
        .args([
            "publish",
            "--cargo",
            "--workspace",
            "--locked",
            "--plain-http",
        ])
        .args(["--repository", &format!("{}/org", clean.addr())])
        .arg("--output")
        .arg(&out_dir)
        .arg("--image-refs")
        .arg(&refs_file));
    let runs_of_cargo = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        runs_of_cargo.lines().count(),
        1,
        "cargo ran once: {runs_of_cargo}"
    );
    for (pkg, bin) in [("api", "api"), ("worker", "worker"), ("migrate", "migrate")] {
        assert!(
            runs_of_cargo.contains(&format!("--package {pkg} --bin {bin}")),
            "{runs_of_cargo}"
        );
    }
    let first = references(&out);
    assert_eq!(first.keys().collect::<Vec<_>>(), IMAGES, "{out}");
    assert_eq!(std::fs::read_to_string(&refs_file).unwrap(), out);
    let outputs = std::fs::read_to_string(&gh).unwrap();
    let images_line = outputs
        .lines()
        .find_map(|l| l.strip_prefix("images="))
        .unwrap();
    let images: BTreeMap<String, String> = serde_json::from_str(images_line).unwrap();
    assert_eq!(images.len(), 3, "{outputs}");

    for name in IMAGES {
        let (repo, digest) = &first[name];
        assert_eq!(repo, &format!("{}/org/{name}", clean.addr()));
        assert_eq!(&images[name], &format!("{repo}@{digest}"));
        assert_eq!(
            &served(&reg.addr(), &format!("org/{name}"), "latest"),
            digest
        );
        let layout = out_dir.join(name);
        assert_eq!(&layout_digest(&layout), digest);
        common::validate_layout(&layout);
        for (platform, arch) in [("linux/amd64", "x86_64"), ("linux/arm64", "aarch64")] {
            let line = runs(
                &binary_from_layout(&layout, platform, name, tmp.path()),
                platform,
            );
            assert!(line.starts_with(&format!("{name} {arch}")), "{line}");
        }
    }
    assert_eq!(
        runs(
            &binary_from_layout(&out_dir.join("worker"), "linux/arm64", "worker", tmp.path()),
            "linux/arm64"
        ),
        "worker aarch64 checksum 3985626906",
        "the C code ran"
    );
    assert_eq!(&served(&reg.addr(), "org/api", "v3"), &first["api"].1);

    // Again with other content (another date), through a proxy refusing worker's manifests:
    // the command fails naming worker, and no image's tag moves, though api and migrate
    // were uploaded in full.
    let refusing = Proxy::start(
        reg.port,
        Faults {
            refuse_manifests_of: Some("org/worker".into()),
            ..Default::default()
        },
    );
    let second = tmp.path().join("second");
    let o = run(ironstar(tmp.path())
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .args([
            "publish",
            "--cargo",
            "--workspace",
            "--locked",
            "--plain-http",
            "-q",
        ])
        .args(["--repository", &format!("{}/org", refusing.addr())])
        .arg("--output")
        .arg(&second));
    assert!(!o.status.success(), "the push should have failed");
    let err = stderr(&o);
    assert!(
        err.contains("image `worker`") && err.contains("no image's tags were moved"),
        "{err}"
    );
    assert!(
        stdout(&o).is_empty(),
        "no reference printed: {}",
        stdout(&o)
    );
    for name in ["api", "migrate"] {
        let new = layout_digest(&second.join(name));
        assert_ne!(new, first[name].1);
        let o = run(Command::new("skopeo").args([
            "inspect",
            "--raw",
            "--tls-verify=false",
            &format!("docker://{}/org/{name}@{new}", reg.addr()),
        ]));
        assert!(o.status.success(), "{name} was uploaded: {}", stderr(&o));
        assert_eq!(
            served(&reg.addr(), &format!("org/{name}"), "latest"),
            first[name].1,
            "{name}:latest did not move"
        );
    }
    assert_eq!(served(&reg.addr(), "org/api", "v3"), first["api"].1);
    assert_eq!(
        served(&reg.addr(), "org/worker", "latest"),
        first["worker"].1
    );
}

#[test]
fn push_workspace_sends_every_layout_over_one_token_and_cargo_ironstar_builds_them() {
    require_tool("zig", "zig: sh scripts/install-deps.sh");
    let tmp = tempfile::tempdir().unwrap();
    let layouts = tmp.path().join("oci");
    // `cargo ironstar …`: cargo runs cargo-ironstar from PATH with `ironstar` first.
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_cargo-ironstar"));
    let path = format!(
        "{}:{}",
        exe.parent().unwrap().display(),
        std::env::var("PATH").unwrap()
    );
    let mut cargo = Command::new(env!("CARGO"));
    in_fixture(&mut cargo, tmp.path());
    let out = ok(cargo
        .env("PATH", &path)
        .env("IRONSTAR_NO_CACHE", "true")
        .env_remove("SOURCE_DATE_EPOCH")
        .args(["ironstar", "build", "--cargo", "--workspace", "--locked"])
        .arg("--output")
        .arg(&layouts));
    let names: Vec<&str> = out.lines().map(|l| l.split(' ').next().unwrap()).collect();
    assert_eq!(names, IMAGES, "NAME sha256:… a line, in name order: {out}");
    for l in out.lines() {
        let (name, digest) = l.split_once(' ').unwrap();
        assert_eq!(layout_digest(&layouts.join(name)), digest);
    }
    // The same build by `ironstar` itself: the same digests.
    let again = ok(ironstar(tmp.path())
        .args(["build", "--cargo", "--workspace", "--locked", "-q"])
        .arg("--output")
        .arg(tmp.path().join("again")));
    assert_eq!(again, out);

    let tokens = TokenServer::start("wanda", "pw");
    let reg = Registry::start(Auth::Token {
        realm: tokens.realm(),
        service: SERVICE.into(),
        issuer: ISSUER.into(),
        root_cert: tokens.cert.clone(),
    });
    let auth_file = tmp.path().join("auth.json");
    let auth = base64_basic("wanda:pw");
    std::fs::write(
        &auth_file,
        serde_json::json!({"auths": {reg.addr(): {"auth": auth}}}).to_string(),
    )
    .unwrap();
    let o = run(ironstar(tmp.path())
        .env("REGISTRY_AUTH_FILE", &auth_file)
        .args(["push", "--workspace", "--plain-http", "-t", "edge"])
        .arg("--layout-dir")
        .arg(&layouts)
        .args(["--repository", &format!("{}/team", reg.addr())]));
    let pushed = stdout(&o);
    assert!(o.status.success(), "push --workspace: {}", stderr(&o));
    let refs = references(&pushed);
    assert_eq!(refs.keys().collect::<Vec<_>>(), IMAGES, "{pushed}");
    for l in out.lines() {
        let (name, digest) = l.split_once(' ').unwrap();
        assert_eq!(refs[name].1, digest);
        assert_eq!(refs[name].0, format!("{}/team/{name}", reg.addr()));
    }
    assert_eq!(
        tokens.issued.lock().unwrap().len(),
        1,
        "one token covers the three repositories"
    );
}

fn base64_basic(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// The input's lines against the output's: the same number, and each changed line is the
/// input line with its one `ironstar://NAME` replaced by `images[NAME]`. Returns how many changed.
fn only_references_replaced(input: &str, output: &str, images: &BTreeMap<String, String>) -> usize {
    let (a, b): (Vec<&str>, Vec<&str>) =
        (input.split('\n').collect(), output.split('\n').collect());
    assert_eq!(a.len(), b.len(), "line count changed:\n{output}");
    let mut changed = 0;
    for (x, y) in a.iter().zip(&b) {
        if x == y {
            continue;
        }
        changed += 1;
        let replaced = images.iter().find_map(|(name, r)| {
            let reference = format!("ironstar://{name}");
            let at = x.find(&reference)?;
            let mut line = x.to_string();
            line.replace_range(at..at + reference.len(), r);
            (line == *y).then_some(())
        });
        assert!(
            replaced.is_some(),
            "not just a reference replaced:\n- {x}\n+ {y}"
        );
    }
    changed
}

#[test]
fn resolve_replaces_the_references_with_the_digests_the_registry_serves() {
    require_tool("zig", "zig: sh scripts/install-deps.sh");
    let reg = Registry::start(Auth::None);
    let tmp = tempfile::tempdir().unwrap();
    let deploy = fixture().join("deploy");
    // Directories are read recursively, in path order.
    let files = ["compose.yml", "helm/values.yaml", "k8s.yaml"];
    let out = ok(ironstar(tmp.path())
        .args(["resolve", "-f", "deploy", "--locked", "--plain-http", "-q"])
        .args(["--repository", &format!("{}/org", reg.addr())])
        .arg("--output")
        .arg(tmp.path().join("oci")));
    let inputs: Vec<String> = files
        .iter()
        .map(|f| std::fs::read_to_string(deploy.join(f)).unwrap())
        .collect();
    let outputs: Vec<&str> = out.split("---\n").collect();
    // The k8s file has its own `---` line: two documents.
    assert_eq!(outputs.len(), 4, "{out}");
    let outputs = [
        outputs[0].to_string(),
        outputs[1].to_string(),
        format!("{}---\n{}", outputs[2], outputs[3]),
    ];
    let mut images = BTreeMap::new();
    for name in ["api", "worker"] {
        let digest = served(&reg.addr(), &format!("org/{name}"), "latest");
        images.insert(
            name.to_string(),
            format!("{}/org/{name}@{digest}", reg.addr()),
        );
    }
    let changed: Vec<usize> = inputs
        .iter()
        .zip(&outputs)
        .map(|(i, o)| only_references_replaced(i, o, &images))
        .collect();
    assert_eq!(changed, [2, 2, 3], "{out}");
    assert!(out.contains("# Two documents; a comment naming ironstar://api is a comment"));
    assert!(out.contains("# ironstar://not-alone in a comment is kept"));
    // Exactly the images referenced: migrate was neither built nor pushed.
    let o = run(Command::new("skopeo").args([
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{}/org/migrate:latest", reg.addr()),
    ]));
    assert!(!o.status.success(), "migrate was pushed");
    assert!(!tmp.path().join("oci/migrate").exists());

    // An unknown name: one line with file and line, before anything is built.
    let bad = tmp.path().join("bad.yaml");
    std::fs::write(&bad, "a: 1\nimage: ironstar://nope\n").unwrap();
    let o = run(ironstar(tmp.path())
        .args(["resolve", "--locked", "--plain-http", "-f"])
        .arg(&bad)
        .args(["--repository", &format!("{}/org", reg.addr())]));
    assert!(!o.status.success());
    let err = stderr(&o);
    assert_eq!(
        err.trim(),
        format!(
            "ironstar: error: {}:2: no image named `nope` (images: api, migrate, worker)",
            bad.display()
        )
    );
}

#[test]
fn resolve_local_loads_the_images_and_writes_name_tag() {
    require_tool("zig", "zig: sh scripts/install-deps.sh");
    let podman = common::Podman::new();
    let tmp = tempfile::tempdir().unwrap();
    let mut c = ironstar(tmp.path());
    podman.env(&mut c);
    let yaml = "services:\n  api: {image: ironstar://api}  # the API\n";
    let o = support::cli::with_stdin(
        c.args([
            "resolve", "--local", "-f", "-", "--locked", "-q", "-p", "api",
        ])
        .arg("--output")
        .arg(tmp.path().join("oci")),
        yaml,
    );
    let out = support::cli::expect_ok(&o, "resolve --local");
    assert_eq!(out, "services:\n  api: {image: api:latest}  # the API\n");
    let line = podman.run("api:latest");
    assert_eq!(
        line.trim(),
        format!("api {} serving", std::env::consts::ARCH)
    );
}

/// The guide's "Workspaces and resolve" block (the README shows the same), run as written in the
/// fixture (twins: a local registry for ghcr.io, and the resolved YAML in a temporary file): one
/// command publishes every image, and resolve prints deployable YAML.
#[test]
fn the_guide_workspace_block_runs_as_written() {
    require_tool("zig", "zig: sh scripts/install-deps.sh");
    let text = std::fs::read_to_string(common::repo().join("docs/src/workspaces.md")).unwrap();
    let section = &text[text.find("# Workspaces").expect("a Workspaces chapter")..];
    let start = section.find("```sh\n").unwrap() + 6;
    let block = &section[start..start + section[start..].find("```").unwrap()];
    assert!(block.contains("ironstar publish --cargo --workspace --repository ghcr.io/org"));
    let reg = Registry::start(Auth::None);
    let tmp = tempfile::tempdir().unwrap();
    let resolved = tmp.path().join("deploy.resolved.yaml");
    let script = block
        .replace(
            "ghcr.io/org",
            &format!("{}/org --plain-http --locked -q", reg.addr()),
        )
        .replace("deploy.resolved.yaml", &resolved.display().to_string());
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_ironstar"));
    let path = format!(
        "{}:{}",
        bin.parent().unwrap().display(),
        std::env::var("PATH").unwrap()
    );
    let mut sh = Command::new("sh");
    in_fixture(&mut sh, tmp.path());
    let out = ok(sh
        .env("PATH", path)
        .env("IRONSTAR_NO_CACHE", "true")
        .args(["-ec", &script]));
    let refs = references(&out);
    assert_eq!(refs.keys().collect::<Vec<_>>(), IMAGES, "{out}");
    let yaml = std::fs::read_to_string(&resolved).unwrap();
    for name in ["api", "worker"] {
        let (repo, digest) = &refs[name];
        assert!(yaml.contains(&format!("image: {repo}@{digest}")), "{yaml}");
    }
    assert!(!yaml.contains("image: ironstar://"), "{yaml}");
}
