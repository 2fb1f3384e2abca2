//! `ironstar merge` (issue 30): two "machines" (their own HOME, caches, cargo target directory
//! and working directory) each build one platform of the `hello` fixture with `--cargo`; their
//! layouts merged give the layout a single build of both writes, byte for byte, and so does a
//! merge of their by-digest pushes in a real `docker-registry`, checked by skopeo, podman,
//! containerd, `ironstar sbom`, `ironstar verify` and the independent `cosign_check.py`. Then
//! the refusals (nothing left behind, no tag moved) and parts made by buildah.

mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;
use support::common::{
    self, binfmt_arm64, blob, ironstar, json, ok, require_tool, run, skopeo_raw, stderr, stdout,
    Podman,
};
use support::registry::{Auth, Registry};

const PASSWORD: &str = "merge-pass-7";

fn checker() -> Command {
    common::venv_script("cosign_check.py")
}

/// One simulated machine: its own home, caches, cargo target directory and working directory
/// (a copy of the `hello` fixture whose metadata names `repository`).
struct Machine {
    root: PathBuf,
}

impl Machine {
    fn new(root: &Path, repository: &str) -> Machine {
        let work = root.join("work");
        fs::create_dir_all(work.join("src")).unwrap();
        let from = common::repo().join("tests/fixtures/hello");
        for f in ["Cargo.lock", "src/main.rs"] {
            fs::copy(from.join(f), work.join(f)).unwrap();
        }
        let manifest = fs::read_to_string(from.join("Cargo.toml")).unwrap();
        let manifest = manifest.replace(
            "# Not part of ironstar's workspace.",
            &format!(
                "[package.metadata.ironstar]\nrepository = \"{repository}\"\ntags = [\"v1\"]\n\n\
                 # Not part of ironstar's workspace."
            ),
        );
        fs::write(work.join("Cargo.toml"), manifest).unwrap();
        for d in ["home", "cache", "target"] {
            fs::create_dir_all(root.join(d)).unwrap();
        }
        Machine {
            root: root.to_path_buf(),
        }
    }

    /// `ironstar` on this machine: its HOME, caches and directories; the toolchain shared (a
    /// runner's preinstalled rustup), the fixture needing no crate from the network.
    fn ironstar(&self) -> Command {
        let real_home = PathBuf::from(std::env::var_os("HOME").unwrap());
        let cargo_home = std::env::var_os("CARGO_HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| real_home.join(".cargo"));
        let rustup_home = std::env::var_os("RUSTUP_HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| real_home.join(".rustup"));
        let home = self.root.join("home");
        let mut c = ironstar();
        c.current_dir(self.root.join("work"))
            .env("HOME", &home)
            .env("XDG_CACHE_HOME", self.root.join("cache"))
            .env("DOCKER_CONFIG", home.join(".docker"))
            .env("CARGO_HOME", cargo_home)
            .env("RUSTUP_HOME", rustup_home)
            .env("CARGO_TARGET_DIR", self.root.join("target"))
            .env("CARGO_NET_OFFLINE", "true")
            .env("SOURCE_DATE_EPOCH", "1700000000")
            .env("COSIGN_PASSWORD", PASSWORD)
            .env_remove("IRONSTAR_NO_CACHE")
            .env_remove("IRONSTAR_SIGN_KEY")
            .env_remove("IRONSTAR_REPOSITORY")
            .env_remove("IRONSTAR_TAGS")
            .env_remove("GITHUB_OUTPUT")
            .env_remove("REGISTRY_AUTH_FILE");
        c
    }

    /// The layout `build`/`publish --cargo` wrote (target/oci/<name> under the working dir).
    fn layout(&self) -> PathBuf {
        self.root.join("work/target/oci/hello")
    }
}

fn index_json(layout: &Path) -> Vec<u8> {
    fs::read(layout.join("index.json")).unwrap()
}

fn expect_fail(o: &Output, what: &str) -> String {
    assert!(!o.status.success(), "{what} succeeded: {}", stdout(o));
    let err = stderr(o);
    assert_eq!(err.trim().lines().count(), 1, "{what}: not one line: {err}");
    err
}

#[test]
fn two_machines_merge_to_the_index_one_machine_builds() {
    require_tool("skopeo", "skopeo");
    let reg = Registry::start(Auth::None);
    let addr = reg.addr();
    let repo = format!("{addr}/merge/app");
    let tmp = tempfile::tempdir().unwrap();
    let key = tmp.path().join("key");
    fs::create_dir_all(&key).unwrap();
    ok(checker().arg("genkey").arg(&key).arg(PASSWORD));
    let sign_key = key.join("cosign.key");
    let amd = Machine::new(&tmp.path().join("amd64"), &repo);
    let arm = Machine::new(&tmp.path().join("arm64"), &repo);

    // Each runner: publish its platform by digest (no tag moves), signed.
    let mut refs = Vec::new();
    for (m, p) in [(&amd, "linux/amd64"), (&arm, "linux/arm64")] {
        let out = ok(m
            .ironstar()
            .args(["publish", "--cargo", "--platform", p, "--by-digest"])
            .args(["--plain-http", "--sign-key"])
            .arg(&sign_key));
        let r = out.trim().to_string();
        assert!(r.starts_with(&format!("{repo}@sha256:")), "{r}");
        refs.push(r);
        let tag = support::cli::tag_status(&reg, "merge/app", "v1");
        assert_ne!(tag, Some(200), "--by-digest moved the tag v1");
    }

    // One machine building both platforms: the reference.
    let single = amd.root.join("single");
    let want = ok(amd
        .ironstar()
        .args(["build", "--cargo", "--platform", "linux/amd64,linux/arm64"])
        .arg("--sign-key")
        .arg(&sign_key)
        // A merge attests no provenance (a part's is about the part's own index).
        .arg("--no-provenance")
        .arg("-o")
        .arg(&single))
    .trim()
    .to_string();

    // The two layouts merged: the same layout, byte for byte in index.json and the index.
    let merged = tmp.path().join("merged");
    let got = ok(ironstar()
        .env("COSIGN_PASSWORD", PASSWORD)
        .arg("merge")
        .arg(amd.layout())
        .arg(arm.layout())
        .arg("--output")
        .arg(&merged)
        .arg("--sign-key")
        .arg(&sign_key))
    .trim()
    .to_string();
    assert_eq!(got, want, "the merged index is not the single build's");
    // The single `--cargo` build's index.json also records its reuse key (for a later build
    // of the same inputs): a merge of builds from two machines has no one key to record.
    let mut single_json = json(&index_json(&single));
    let annotations = single_json["annotations"].as_object_mut().unwrap();
    assert!(annotations.remove("dev.ironstar.reuse.record").is_some());
    assert_eq!(
        json(&index_json(&merged)),
        single_json,
        "index.json differs (tags, SBOMs or signatures)"
    );
    assert_eq!(blob(&merged, &want), blob(&single, &want));
    common::validate_layout(&merged);
    ok(ironstar()
        .args(["verify", "--key"])
        .arg(key.join("cosign.pub"))
        .arg("--layout")
        .arg(&merged));
    for p in ["linux/amd64", "linux/arm64"] {
        let sbom = ok(ironstar()
            .args(["sbom", "--layout"])
            .arg(&merged)
            .args(["--platform", p]));
        assert!(sbom.contains("hello"), "{p}: {sbom}");
    }

    // The same in the registry, from the two references (in either order): only manifests
    // read.
    let o = run(ironstar()
        .env("COSIGN_PASSWORD", PASSWORD)
        .arg("merge")
        .args(refs.iter().rev())
        .args(["--repository", &repo, "--tag", "v1", "--plain-http"])
        .arg("--sign-key")
        .arg(&sign_key));
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o).trim(), format!("{repo}@{want}"));
    assert!(stderr(&o).contains("no blob moved"), "{}", stderr(&o));
    assert_eq!(skopeo_raw(&format!("{repo}:v1")), blob(&single, &want));
    ok(ironstar()
        .args(["verify", "--plain-http", "--key"])
        .arg(key.join("cosign.pub"))
        .arg(format!("{repo}:v1")));
    let checked = ok(checker()
        .args(["verify", &addr, "merge/app", "v1"])
        .arg(key.join("cosign.pub"))
        .arg(&repo));
    assert_eq!(json(checked.as_bytes()).as_object().unwrap().len(), 3);
    for p in ["linux/amd64", "linux/arm64"] {
        let sbom = ok(ironstar()
            .args(["sbom", "--plain-http", "--platform", p])
            .arg(format!("{repo}:v1")));
        assert!(sbom.contains("hello"), "{p}: {sbom}");
    }
    run_both_arches(&format!("{repo}:v1"));
}

/// podman (amd64 natively, arm64 through qemu's binfmt when registered) and containerd run the
/// merged tag.
fn run_both_arches(reference: &str) {
    let podman = Podman::new();
    let mut arches = vec![("amd64", "x86_64")];
    if binfmt_arm64() {
        arches.push(("arm64", "aarch64"));
    } else {
        eprintln!(
            "skipping linux/arm64 in podman: /proc/sys/fs/binfmt_misc/qemu-aarch64 is missing"
        );
    }
    for (arch, machine) in &arches {
        let out = ok(podman.cmd().args([
            "run",
            "--rm",
            "--network",
            "none",
            "--tls-verify=false",
            "--arch",
            arch,
            reference,
        ]));
        assert!(
            out.contains(&format!("hello from {machine}")),
            "{arch}: {out}"
        );
    }
    match support::containerd::Containerd::start() {
        Ok(c) => {
            for (arch, machine) in &arches {
                let platform = format!("linux/{arch}");
                c.pull(reference, &platform);
                let out = c.run(reference, &platform, &format!("merge-{arch}"));
                assert!(out.contains(&format!("hello from {machine}")), "{out}");
            }
        }
        Err(why) => eprintln!("skipped containerd: {why}"),
    }
}

/// A layout of the fixture binary for `platform`, with `extra` flags.
fn binary_layout(out: &Path, platform: &str, extra: &[&str]) -> String {
    let f = common::fixtures();
    let bin = match platform {
        "linux/amd64" => &f.amd64,
        _ => &f.arm64,
    };
    ok(ironstar()
        .arg("build")
        .arg("--binary")
        .arg(format!("{platform}={}", bin.display()))
        .arg("-o")
        .arg(out)
        .args(extra))
    .trim()
    .to_string()
}

/// An OCI layout whose index lists no image.
fn empty_layout(dir: &Path) {
    let index = br#"{"manifests":[],"mediaType":"application/vnd.oci.image.index.v1+json","schemaVersion":2}"#;
    let d = ironstar::Digest::of(index);
    fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
    fs::write(dir.join("blobs/sha256").join(d.hex()), index).unwrap();
    fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let top = serde_json::json!({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "digest": d.to_string(), "size": index.len()}]});
    fs::write(dir.join("index.json"), top.to_string()).unwrap();
}

#[test]
fn refusals_name_the_sources_and_leave_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let a = src.join("amd64-r1");
    binary_layout(&a, "linux/amd64", &["--revision", "r1"]);
    let a2 = src.join("amd64-r2");
    binary_layout(&a2, "linux/amd64", &["--revision", "r2"]);
    let b2 = src.join("arm64-r2");
    binary_layout(&b2, "linux/arm64", &["--revision", "r2"]);
    let empty = src.join("empty");
    empty_layout(&empty);
    let out_dir = tmp.path().join("out");
    fs::create_dir_all(&out_dir).unwrap();
    let out = out_dir.join("merged");
    let cases: [(&[&Path], &[&str]); 3] = [
        (
            &[&a, &a2],
            &["amd64-r1 and", "amd64-r2 both hold linux/amd64"],
        ),
        (
            &[&a, &b2],
            &["differ in the index annotation `org.opencontainers.image.revision` (`r1`, `r2`)"],
        ),
        (&[&a, &empty], &["empty: no platform image in it"]),
    ];
    for (sources, says) in cases {
        let o = run(ironstar()
            .arg("merge")
            .args(sources)
            .arg("--output")
            .arg(&out));
        let err = expect_fail(&o, "a refused merge");
        for s in says {
            assert!(err.contains(s), "wanted `{s}` in: {err}");
        }
        let left: Vec<_> = fs::read_dir(&out_dir).unwrap().flatten().collect();
        assert!(left.is_empty(), "a refused merge left {left:?}");
    }

    // In a registry: refused before anything is written, the tag not moved.
    let reg = Registry::start(Auth::None);
    let repo = format!("{}/refuse/app", reg.addr());
    let push = |layout: &Path| {
        ok(ironstar()
            .args(["push", "--plain-http", "--by-digest", "--repository", &repo])
            .arg("--layout")
            .arg(layout))
        .trim()
        .to_string()
    };
    let (ra, rb) = (push(&a), push(&b2));
    let o = run(ironstar()
        .args(["merge", &ra, &rb, "--plain-http", "--repository", &repo])
        .args(["--tag", "v1"]));
    let err = expect_fail(&o, "a refused registry merge");
    assert!(err.contains("org.opencontainers.image.revision"), "{err}");
    assert!(err.contains(&ra) && err.contains(&rb), "{err}");
    assert_eq!(
        support::cli::tag_status(&reg, "refuse/app", "v1"),
        Some(404)
    );
    assert_eq!(
        support::cli::tag_status(&reg, "refuse/app", "latest"),
        Some(404),
        "push --by-digest moved `latest`"
    );
}

#[test]
fn a_buildah_made_part_merges_with_an_ironstar_one() {
    require_tool("buildah", "buildah");
    require_tool("skopeo", "skopeo");
    let tmp = tempfile::tempdir().unwrap();
    let reg = Registry::start(Auth::None);
    let repo = format!("{}/mixed/app", reg.addr());
    let amd = tmp.path().join("amd64");
    binary_layout(&amd, "linux/amd64", &[]);
    let ra = ok(ironstar()
        .args(["push", "--plain-http", "--by-digest", "--repository", &repo])
        .arg("--layout")
        .arg(&amd))
    .trim()
    .to_string();

    // buildah: an arm64 image FROM scratch with the fixture binary, pushed as one manifest, and
    // the same in a Docker v2 manifest list.
    let conf = common::ContainersConf::new();
    let buildah = |args: &[&str]| ok(conf.command("buildah").args(args)).trim().to_string();
    let c = buildah(&["from", "--arch", "arm64", "scratch"]);
    let arm64 = common::fixtures().arm64.display().to_string();
    buildah(&["copy", &c, &arm64, "/hello"]);
    buildah(&[
        "config",
        "--os",
        "linux",
        "--arch",
        "arm64",
        "--entrypoint",
        "[\"/hello\"]",
        &c,
    ]);
    buildah(&["commit", "--format", "docker", &c, "localhost/arm-img"]);
    buildah(&[
        "push",
        "--tls-verify=false",
        "localhost/arm-img",
        &format!("docker://{repo}:arm"),
    ]);
    buildah(&["manifest", "create", "localhost/arm-list"]);
    buildah(&[
        "manifest",
        "add",
        "localhost/arm-list",
        "containers-storage:localhost/arm-img",
    ]);
    buildah(&[
        "manifest",
        "push",
        "--all",
        "--tls-verify=false",
        "--format",
        "v2s2",
        "localhost/arm-list",
        &format!("docker://{repo}:list"),
    ]);
    // As layouts too: buildah's OCI layout beside ironstar's.
    let arm_layout = tmp.path().join("arm-layout");
    buildah(&[
        "push",
        "--format",
        "oci",
        "localhost/arm-img",
        &format!("oci:{}", arm_layout.display()),
    ]);
    let out = tmp.path().join("mixed-layout");
    ok(ironstar()
        .arg("merge")
        .args([&amd, &arm_layout])
        .args(["--tag", "mixed", "--output"])
        .arg(&out));
    let index = common::validate_layout(&out);
    assert_eq!(index["manifests"].as_array().unwrap().len(), 2, "{index}");
    let top = json(&index_json(&out));
    assert_eq!(
        top["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"],
        "mixed"
    );
    let copy = tmp.path().join("copy-layout");
    ok(Command::new("skopeo").args([
        "copy",
        "--all",
        &format!("oci:{}:mixed", out.display()),
        &format!("oci:{}", copy.display()),
    ]));

    let arm_manifest = skopeo_raw(&format!("{repo}:arm"));
    let arm_digest = ironstar::Digest::of(&arm_manifest).to_string();
    let list: Value = json(&skopeo_raw(&format!("{repo}:list")));
    assert_eq!(
        list["mediaType"],
        "application/vnd.docker.distribution.manifest.list.v2+json"
    );

    for (source, tag) in [
        (format!("{repo}:arm"), "mixed"),
        (format!("{repo}:list"), "mixed-list"),
    ] {
        let o = run(ironstar()
            .args(["merge", &ra, &source, "--plain-http", "--repository", &repo])
            .args(["--tag", tag]));
        assert!(o.status.success(), "{}", stderr(&o));
        let index = json(&skopeo_raw(&format!("{repo}:{tag}")));
        common::validate("image-index-schema.json", &index);
        let m = index["manifests"].as_array().unwrap();
        assert_eq!(m.len(), 2, "{index}");
        assert_eq!(m[1]["platform"]["architecture"], "arm64");
        // buildah's manifest kept as it was: the same digest, its own media type.
        let kept = m[1]["digest"].as_str().unwrap();
        if tag == "mixed" {
            assert_eq!(kept, arm_digest);
        } else {
            assert_eq!(kept, list["manifests"][0]["digest"].as_str().unwrap());
        }
        assert_eq!(
            m[1]["mediaType"],
            "application/vnd.docker.distribution.manifest.v2+json"
        );
        // Every part is whole in the repository: skopeo copies all of it.
        let copy = tmp.path().join(format!("copy-{tag}"));
        ok(Command::new("skopeo").args([
            "copy",
            "--all",
            "--src-tls-verify=false",
            &format!("docker://{repo}:{tag}"),
            &format!("oci:{}", copy.display()),
        ]));
    }
}

#[test]
fn parts_from_another_repository_are_mounted_and_from_another_registry_copied() {
    require_tool("skopeo", "skopeo");
    let tmp = tempfile::tempdir().unwrap();
    let (amd, arm) = (tmp.path().join("amd64"), tmp.path().join("arm64"));
    // Each with an SBOM, which must follow its platform into the destination.
    let sbom = |p: &str| {
        let f = tmp
            .path()
            .join(format!("{}.spdx.json", p.replace('/', "-")));
        let doc = serde_json::json!({"spdxVersion": "SPDX-2.3", "name": format!("sbom of {p}")});
        fs::write(&f, doc.to_string()).unwrap();
        format!("{p}={}", f.display())
    };
    binary_layout(&amd, "linux/amd64", &["--sbom", &sbom("linux/amd64")]);
    binary_layout(&arm, "linux/arm64", &["--sbom", &sbom("linux/arm64")]);
    let local = tmp.path().join("merged");
    let want = ok(ironstar()
        .arg("merge")
        .args([&amd, &arm])
        .arg("--output")
        .arg(&local))
    .trim()
    .to_string();

    let (here, there) = (Registry::start(Auth::None), Registry::start(Auth::None));
    let push = |reg: &Registry, repo: &str, layout: &Path| {
        ok(ironstar()
            .args(["push", "--plain-http", "--by-digest", "--repository"])
            .arg(format!("{}/{repo}", reg.addr()))
            .arg("--layout")
            .arg(layout))
        .trim()
        .to_string()
    };
    let ra = push(&here, "parts/amd64", &amd);
    let rb = push(&there, "parts/arm64", &arm);
    let dest = format!("{}/final/app", here.addr());
    let key = tmp.path().join("key");
    fs::create_dir_all(&key).unwrap();
    ok(checker().arg("genkey").arg(&key).arg(PASSWORD));
    let o = run(ironstar()
        .env("COSIGN_PASSWORD", PASSWORD)
        .args(["merge", &ra, &rb, "--plain-http", "--repository", &dest])
        .args(["--tag", "v1", "--sign-key"])
        .arg(key.join("cosign.key")));
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o).trim(), format!("{dest}@{want}"));
    let err = stderr(&o);
    assert!(
        // Config, layer, SBOM document and its empty config each; the arm64 side's empty
        // config may be there already (mounted for amd64's SBOM).
        err.contains("4 blob(s) mounted, ") && err.contains(" copied from another registry"),
        "{err}"
    );
    assert_eq!(skopeo_raw(&format!("{dest}:v1")), blob(&local, &want));
    // Signed at the merge: the index, and the parts it brought (unsigned where they were).
    ok(ironstar()
        .args(["verify", "--plain-http", "--key"])
        .arg(key.join("cosign.pub"))
        .arg(format!("{dest}:v1")));
    for p in ["linux/amd64", "linux/arm64"] {
        let got = ok(ironstar()
            .args(["sbom", "--plain-http", "--platform", p])
            .arg(format!("{dest}:v1")));
        assert!(got.contains(&format!("sbom of {p}")), "{p}: {got}");
    }
    // Whole in the destination: every blob of both platforms is there.
    let copy = tmp.path().join("copy");
    ok(Command::new("skopeo").args([
        "copy",
        "--all",
        "--src-tls-verify=false",
        &format!("docker://{dest}:v1"),
        &format!("oci:{}", copy.display()),
    ]));
}

#[test]
fn the_workflow_example_and_the_action_match_githubs_schemas() {
    require_tool(
        "check-jsonschema",
        "check-jsonschema (scripts/install-deps.sh)",
    );
    let root = common::repo();
    for (schema, file) in [
        ("vendor.github-workflows", "docs/examples/two-runners.yml"),
        ("vendor.github-actions", "action.yml"),
    ] {
        ok(Command::new("check-jsonschema")
            .args(["--builtin-schema", schema])
            .arg(root.join(file)));
    }
    let action = fs::read_to_string(root.join("action.yml")).unwrap();
    assert!(action.contains("inputs.command == 'merge' && inputs.sources"));
}

#[test]
fn a_failed_tag_puts_back_the_tags_that_moved() {
    use support::proxy::{Faults, Proxy};
    let tmp = tempfile::tempdir().unwrap();
    let (amd, arm) = (tmp.path().join("amd64"), tmp.path().join("arm64"));
    binary_layout(&amd, "linux/amd64", &[]);
    binary_layout(&arm, "linux/arm64", &[]);
    let reg = Registry::start(Auth::None);
    // The registry refuses the tag `v2`, as one whose policy protects a tag does.
    let faults = Faults {
        deny_manifest_suffix: Some("/manifests/v2"),
        ..Default::default()
    };
    let proxy = Proxy::start(reg.port, faults);
    let repo = format!("{}/org/app", proxy.addr());
    let push = |layout: &Path, tag: &str| {
        ok(ironstar()
            .args(["push", "--plain-http", "--repository", &repo, "--tag", tag])
            .arg("--layout")
            .arg(layout))
        .trim()
        .to_string()
    };
    // v1 names the amd64 part before the merge.
    let ra = push(&amd, "v1");
    let rb = push(&arm, "arm");
    let before = skopeo_raw(&format!("{repo}:v1"));
    let o = run(ironstar()
        .args(["merge", &ra, &rb, "--plain-http", "--repository", &repo])
        .args(["--tag", "v1", "--tag", "v2"]));
    assert!(!o.status.success(), "merge succeeded: {}", stdout(&o));
    let err = stderr(&o);
    let last = err.trim().lines().last().unwrap_or_default().to_string();
    assert!(
        last.starts_with("ironstar: error: tag org/app:v2: "),
        "{err}"
    );
    assert!(
        last.contains("undone: ") && last.contains("org/app:v1"),
        "{err}"
    );
    // v1 names what it named before the merge: the tags moved all or none.
    assert_eq!(skopeo_raw(&format!("{repo}:v1")), before);
}
