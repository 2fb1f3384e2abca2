//! What a hostile base image does to `build` (issue 34, findings 1-5 and 13), served by the
//! in-process fake registry that the test fills: configs of 21-50 MB and configs packed with
//! tiny values, a 5,000-layer base, two platforms sharing 400 layers, configs of the wrong
//! types, layer media types no runtime unpacks, and a SIGTERM during a `--no-cache` pull. Each
//! refusal is one line; the peak RSS of every run, refused or built, stays under 64 MB.

mod support;

use std::path::Path;
use std::process::{Command, Output};
use std::sync::atomic::Ordering;

use serde_json::{json, Value};
use sha2::Digest as _;
use support::common::*;
use support::fake::{Behaviour, FakeRegistry};
use support::measure::{run_measured, MAX_RSS_MB};

const TAR: &str = "application/vnd.oci.image.layer.v1.tar";
const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const INDEX: &str = "application/vnd.oci.image.index.v1+json";
const CONFIG: &str = "application/vnd.oci.image.config.v1+json";

fn digest_of(b: &[u8]) -> String {
    format!("sha256:{:x}", sha2::Sha256::digest(b))
}

fn put_blob(fake: &FakeRegistry, bytes: Vec<u8>) -> String {
    let d = digest_of(&bytes);
    fake.state.blobs.lock().unwrap().insert(d.clone(), bytes);
    d
}

fn put_manifest(fake: &FakeRegistry, tag: Option<&str>, mt: &str, v: &Value) -> (String, usize) {
    let bytes = serde_json::to_vec(v).unwrap();
    let d = digest_of(&bytes);
    let mut m = fake.state.manifests.lock().unwrap();
    for name in std::iter::once(d.clone()).chain(tag.map(str::to_string)) {
        m.insert(name, (mt.to_string(), bytes.clone()));
    }
    (d, bytes.len())
}

/// A config of the schema's types for `diff_ids`, with `run` as its run config.
fn good_config(arch: &str, diff_ids: &[String], run: Value) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "architecture": arch, "os": "linux", "config": run,
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": diff_ids.iter().map(|_| json!({"created_by": "test"})).collect::<Vec<_>>(),
    }))
    .unwrap()
}

/// A base for amd64 and arm64 under `NAME:v1`, both platforms on the same `layers` (bytes,
/// media type), each platform's config made by `config(arch, diff_ids)`; `config_size`
/// overrides the size its descriptor says. Returns the reference.
fn push_base(
    fake: &FakeRegistry,
    name: &str,
    layers: &[(Vec<u8>, &str)],
    config: impl Fn(&str, &[String]) -> Vec<u8>,
    config_size: Option<usize>,
) -> String {
    let descriptors: Vec<Value> = layers
        .iter()
        .map(|(bytes, mt)| {
            let digest = put_blob(fake, bytes.clone());
            json!({"mediaType": mt, "digest": digest, "size": bytes.len()})
        })
        .collect();
    // Layers are plain tars here: a layer's diff id is its digest.
    let diff_ids: Vec<String> = layers.iter().map(|(b, _)| digest_of(b)).collect();
    let mut entries = Vec::new();
    for arch in ["amd64", "arm64"] {
        let bytes = config(arch, &diff_ids);
        let size = config_size.unwrap_or(bytes.len());
        let c = json!({"mediaType": CONFIG, "digest": put_blob(fake, bytes), "size": size});
        let m =
            json!({"schemaVersion": 2, "mediaType": MANIFEST, "config": c, "layers": descriptors});
        let (digest, size) = put_manifest(fake, None, MANIFEST, &m);
        entries.push(
            json!({"mediaType": MANIFEST, "digest": digest, "size": size,
            "platform": {"os": "linux", "architecture": arch}}),
        );
    }
    let index = json!({"schemaVersion": 2, "mediaType": INDEX, "manifests": entries});
    put_manifest(fake, Some("v1"), INDEX, &index);
    format!("{}:v1", fake.repository(name))
}

fn layers(n: usize) -> Vec<(Vec<u8>, &'static str)> {
    (0..n)
        .map(|i| (format!("layer {i}").into_bytes(), TAR))
        .collect()
}

/// `ironstar build` of a two-platform image on `base` into `out` (`cache`: its cache
/// directory, else `--no-cache`), with its peak RSS in MB.
fn build_on(base: &str, out: &Path, cache: Option<&Path>) -> (Output, u64) {
    run_measured(&build_cmd(base, out, cache))
}

fn build_cmd(base: &str, out: &Path, cache: Option<&Path>) -> Command {
    let f = fixtures();
    let dir = out.parent().unwrap();
    let def = dir.join("app.toml");
    std::fs::write(
        &def,
        "name = \"app\"\nplatforms = [\"linux/amd64\", \"linux/arm64\"]\n",
    )
    .unwrap();
    let mut c = ironstar();
    c.env("HOME", dir)
        .env_remove("DOCKER_CONFIG")
        .env_remove("REGISTRY_AUTH_FILE")
        .env_remove("XDG_RUNTIME_DIR")
        .arg("build")
        .arg(&def)
        .args(["--base", base, "--base-plain-http"])
        .arg(format!("--binary=linux/amd64={}", f.amd64.display()))
        .arg(format!("--binary=linux/arm64={}", f.arm64.display()))
        .arg("-o")
        .arg(out);
    match cache {
        Some(cache) => c
            .env_remove("IRONSTAR_NO_CACHE")
            .arg("--cache-dir")
            .arg(cache),
        None => c.arg("--no-cache"),
    };
    c
}

/// One line on stderr, exit 1, nothing on stdout, every `expect` in the line, no layout.
fn refused(o: &Output, out: &Path, expect: &[&str]) -> String {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(stdout(o).is_empty(), "stdout: {}", stdout(o));
    assert_eq!(err.trim_end().lines().count(), 1, "not one line: {err}");
    for e in expect {
        assert!(err.contains(e), "`{e}` missing from: {err}");
    }
    assert!(!out.exists(), "a layout was written");
    err
}

fn within_bound(rss: u64, what: &str) {
    assert!(
        rss <= MAX_RSS_MB,
        "{what}: peak RSS {rss} MB > {MAX_RSS_MB} MB"
    );
}

/// A config for an arch and its diff ids.
type MakeConfig = Box<dyn Fn(&str, &[String]) -> Vec<u8>>;

/// A history entry of 19 bytes.
const SMALL: &str = r#"{"created_by":"x"}"#;

/// Finding 1: configs of 21-50 MB (honest or lying descriptors) and configs under the cap
/// packed with tiny values are refused in one line naming the reference; a large but sound
/// config builds; each in bounded memory.
#[test]
fn base_configs_are_capped_and_counted_in_bounded_memory() {
    let fake = FakeRegistry::start(Behaviour::default());
    let tmp = tempfile::tempdir().unwrap();
    let one = layers(1);
    let big_env = |arch: &str, ids: &[String]| {
        good_config(
            arch,
            ids,
            json!({"Env": [format!("X={}", "a".repeat(50 << 20))]}),
        )
    };
    // A sound config whose history is `n` times `entry` (made as text: 21 MB as a `Value`
    // would take this test a gigabyte).
    let history = |n: usize, entry: &'static str| {
        move |arch: &str, ids: &[String]| {
            let mut v: Value = serde_json::from_slice(&good_config(arch, ids, json!({}))).unwrap();
            v.as_object_mut().unwrap().remove("history");
            let mut text = serde_json::to_string(&v).unwrap();
            let entries = vec![entry; n].join(",");
            text.insert_str(text.len() - 1, &format!(r#","history":[{entries}]"#));
            text.into_bytes()
        }
    };
    let labels = |arch: &str, ids: &[String]| {
        let labels: serde_json::Map<String, Value> = (0..200_000)
            .map(|i| (format!("{i:x}"), json!("")))
            .collect();
        good_config(arch, ids, json!({ "Labels": labels }))
    };
    let cases: Vec<(&str, MakeConfig, Option<usize>, &str)> = vec![
        (
            "env50",
            Box::new(big_env),
            None,
            "more than the 4.0 MiB a config may be",
        ),
        (
            "history21",
            Box::new(history(1_100_000, SMALL)),
            None,
            "more than the 4.0 MiB",
        ),
        (
            "lying",
            Box::new(history(1_100_000, SMALL)),
            Some(1 << 20),
            "more than the 1048576 bytes",
        ),
        (
            "tiny",
            Box::new(history(1_300_000, "{}")),
            None,
            "`history` has more than 4000 entries",
        ),
        (
            "labels",
            Box::new(labels),
            None,
            "more than 32768 JSON values",
        ),
    ];
    for (name, config, size, expect) in cases {
        let reference = push_base(&fake, name, &one, config, size);
        let out = tmp.path().join(name);
        let (o, rss) = build_on(&reference, &out, None);
        refused(&o, &out, &[&format!("base {reference}"), expect]);
        within_bound(rss, name);
    }
    // Sound, and large: 3,000 history entries.
    let reference = push_base(&fake, "large", &one, history(3_000, SMALL), None);
    let out = tmp.path().join("large");
    let (o, rss) = build_on(&reference, &out, None);
    assert!(o.status.success(), "{}", stderr(&o));
    validate_layout(&out);
    within_bound(rss, "3,000 history entries");
}

/// Finding 2: a 5,000-layer base is refused before any blob is asked for; a 400-layer one is
/// pulled `jobs` (4) requests at a time, each blob once, with no retries.
#[test]
fn a_base_s_layers_are_bounded_and_pulled_four_at_a_time() {
    let fake = FakeRegistry::start(Behaviour::default());
    let tmp = tempfile::tempdir().unwrap();
    let good = |arch: &str, ids: &[String]| good_config(arch, ids, json!({}));
    let reference = push_base(&fake, "huge", &layers(5_000), good, None);
    let out = tmp.path().join("huge");
    let (o, rss) = build_on(&reference, &out, None);
    refused(
        &o,
        &out,
        &["`layers` has more than 400 entries", "at most 400 layers"],
    );
    within_bound(rss, "5,000 layers");
    assert_eq!(fake.state.count("/blobs/"), 0, "blobs were fetched");

    let reference = push_base(&fake, "many", &layers(400), good, None);
    let out = tmp.path().join("many");
    fake.state.max_in_flight.store(0, Ordering::SeqCst);
    let (o, rss) = build_on(&reference, &out, None);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!stderr(&o).contains("retrying"), "{}", stderr(&o));
    within_bound(rss, "400 layers");
    let most = fake.state.max_in_flight.load(Ordering::SeqCst);
    assert!(most <= 4, "{most} requests at once");
    // 400 layers shared by both platforms and two configs: each fetched once.
    assert_eq!(fake.state.count("GET /v2/many/blobs/"), 402);
    for (manifest, _) in platform_images(&out) {
        assert_eq!(manifest["layers"].as_array().unwrap().len(), 401);
    }
}

/// Finding 2: a registry that throttles (429) and then lacks a layer: the retries are said
/// only with `-v`, the failure in one line naming the layer.
#[test]
fn a_failed_pull_is_one_line_whatever_was_retried() {
    let fake = FakeRegistry::start(Behaviour {
        throttle_first: 4,
        ..Default::default()
    });
    let tmp = tempfile::tempdir().unwrap();
    let good = |arch: &str, ids: &[String]| good_config(arch, ids, json!({}));
    let reference = push_base(&fake, "gone", &layers(20), good, None);
    let missing = digest_of(b"layer 7");
    fake.state.blobs.lock().unwrap().remove(&missing);
    let out = tmp.path().join("gone");
    let o = support::common::run(&mut build_cmd(&reference, &out, None));
    refused(&o, &out, &[&format!("base {reference}"), &missing]);
    assert!(fake.state.count("-> 429") >= 4, "not throttled");
}

/// Finding 3: two platforms linking the same 400 base layers into the temporary layout at
/// once, from a cache (hard links) and from a temporary store, round after round.
#[test]
fn two_platforms_sharing_many_base_layers_build_every_time() {
    let fake = FakeRegistry::start(Behaviour::default());
    let tmp = tempfile::tempdir().unwrap();
    let good = |arch: &str, ids: &[String]| good_config(arch, ids, json!({}));
    let reference = push_base(&fake, "shared", &layers(400), good, None);
    let cache = tmp.path().join("cache");
    for round in 0..4 {
        let out = tmp.path().join(format!("out{round}"));
        let cached = (round % 2 == 1).then_some(cache.as_path());
        let o = support::common::run(&mut build_cmd(&reference, &out, cached));
        assert!(o.status.success(), "round {round}: {}", stderr(&o));
        let images = platform_images(&out);
        let shared = |i: usize| images[i].0["layers"].as_array().unwrap()[..400].to_vec();
        assert_eq!(shared(0), shared(1));
        for l in images[0].0["layers"].as_array().unwrap() {
            let d = l["digest"].as_str().unwrap();
            assert_eq!(digest_of(&blob(&out, d)), d, "round {round}");
        }
    }
}

/// Finding 4: a base config whose fields are not of the schema's types is refused in one line
/// naming the field; Docker's `null`s are taken as absent and the layout passes the schema.
#[test]
fn a_merged_config_of_the_wrong_types_is_refused_naming_the_field() {
    let fake = FakeRegistry::start(Behaviour::default());
    let tmp = tempfile::tempdir().unwrap();
    let one = layers(1);
    let cases = [
        (
            json!({"Env": ["A=1", 7, null]}),
            "config.Env[1] is not a string",
        ),
        (json!({"Env": ["A=\u{0}b"]}), "config.Env[0] holds a NUL"),
        (json!({"Env": "A=1"}), "config.Env is not a list"),
        (
            json!({"User": "root\nevil"}),
            "config.User holds a line break",
        ),
        (
            json!({"ExposedPorts": "80/tcp"}),
            "config.ExposedPorts is not an object",
        ),
        (json!({"Volumes": 3}), "config.Volumes is not an object"),
    ];
    for (i, (run, field)) in cases.into_iter().enumerate() {
        let name = format!("types{i}");
        let config = move |arch: &str, ids: &[String]| good_config(arch, ids, run.clone());
        let reference = push_base(&fake, &name, &one, config, None);
        let out = tmp.path().join(&name);
        let o = support::common::run(&mut build_cmd(&reference, &out, None));
        refused(&o, &out, &[&format!("base {reference}"), field]);
    }
    let passwd = |arch: &str, ids: &[String]| {
        let ids: Vec<String> = ids
            .iter()
            .map(|_| "sha256:../../etc/passwd".into())
            .collect();
        good_config(arch, &ids, json!({}))
    };
    let reference = push_base(&fake, "passwd", &one, passwd, None);
    let out = tmp.path().join("passwd");
    let o = support::common::run(&mut build_cmd(&reference, &out, None));
    refused(&o, &out, &["rootfs.diff_ids[0] is not a sha256 digest"]);

    let nulls = |arch: &str, ids: &[String]| {
        good_config(
            arch,
            ids,
            json!({"Env": null, "User": null, "Cmd": null, "Labels": null}),
        )
    };
    let reference = push_base(&fake, "nulls", &one, nulls, None);
    let out = tmp.path().join("nulls");
    let o = support::common::run(&mut build_cmd(&reference, &out, None));
    assert!(o.status.success(), "{}", stderr(&o));
    for (_, config) in platform_images(&out) {
        for absent in ["Env", "User"] {
            assert!(config["config"].get(absent).is_none(), "{config}");
        }
    }
}

/// Finding 5: only the layer media types a runtime unpacks.
#[test]
fn layer_media_types_no_runtime_unpacks_are_refused() {
    let fake = FakeRegistry::start(Behaviour::default());
    let tmp = tempfile::tempdir().unwrap();
    let good = |arch: &str, ids: &[String]| good_config(arch, ids, json!({}));
    for (i, mt) in [
        "application/vnd.oci.image.layer.v1.tar+evil",
        "application/vnd.oci.image.layer.v1.tar+gzip+x",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    ]
    .into_iter()
    .enumerate()
    {
        let name = format!("mt{i}");
        let reference = push_base(&fake, &name, &[(b"x".to_vec(), mt)], good, None);
        let out = tmp.path().join(&name);
        let o = support::common::run(&mut build_cmd(&reference, &out, None));
        refused(
            &o,
            &out,
            &[&format!("layer media type `{mt}`"), "a runtime unpacks"],
        );
    }
    // Docker's names for the same layers are taken, written as OCI's.
    let docker = [
        (
            b"a".to_vec(),
            "application/vnd.docker.image.rootfs.diff.tar.gzip",
        ),
        (b"b".to_vec(), "application/vnd.oci.image.layer.v1.tar+zstd"),
    ];
    let reference = push_base(&fake, "docker", &docker, good, None);
    let out = tmp.path().join("docker");
    let o = support::common::run(&mut build_cmd(&reference, &out, None));
    assert!(o.status.success(), "{}", stderr(&o));
    let types: Vec<_> = platform_images(&out)[0].0["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["mediaType"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        types[..2],
        [
            "application/vnd.oci.image.layer.v1.tar+gzip",
            "application/vnd.oci.image.layer.v1.tar+zstd"
        ]
    );
}

/// Finding 13: a SIGTERM while a `--no-cache` pull is under way leaves nothing in `$TMPDIR`.
#[test]
fn sigterm_during_a_no_cache_base_pull_leaves_nothing_in_tmpdir() {
    let fake = FakeRegistry::start(Behaviour {
        stall_blobs_over: Some(1 << 10),
        ..Default::default()
    });
    let tmp = tempfile::tempdir().unwrap();
    let private = tmp.path().join("tmpdir");
    std::fs::create_dir(&private).unwrap();
    let good = |arch: &str, ids: &[String]| good_config(arch, ids, json!({}));
    let big = vec![(vec![7u8; 4 << 10], TAR), (b"small".to_vec(), TAR)];
    let reference = push_base(&fake, "slow", &big, good, None);
    let out = tmp.path().join("out");
    let mut child = build_cmd(&reference, &out, None)
        .env("TMPDIR", &private)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // The configs are stored, and the large layer's GET is being held.
    wait_for("the pull to be under way", || {
        fake.state.in_flight.load(Ordering::SeqCst) > 0 && fake.state.count("/blobs/") >= 2
    });
    // SAFETY: a signal to our own child, not yet reaped.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    let status = child.wait().unwrap();
    use std::os::unix::process::ExitStatusExt as _;
    assert_eq!(status.signal(), Some(libc::SIGTERM), "{status}");
    assert_eq!(
        names_with(&private, ""),
        Vec::<String>::new(),
        "left in TMPDIR"
    );
    assert!(!out.exists());
}
