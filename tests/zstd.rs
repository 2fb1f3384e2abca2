//! zstd layers (`--compression zstd`): a valid layout of several zstd frames a layer, the same
//! digest whatever the thread count and directory, pushed to a real registry, then pulled and run
//! by containerd (a private instance, native snapshotter) and podman, on amd64 and arm64.

mod support;

use std::path::Path;

use support::common::*;
use support::containerd::Containerd;
use support::registry::{Auth, Registry};

/// The zstd frames of a layer: each frame's content size, in order.
fn frames(mut layer: &[u8]) -> Vec<u64> {
    let mut sizes = Vec::new();
    while !layer.is_empty() {
        let n = zstd::zstd_safe::find_frame_compressed_size(layer).expect("a zstd frame");
        let content = zstd::zstd_safe::get_frame_content_size(layer).unwrap();
        sizes.push(content.expect("frames record their content size"));
        layer = &layer[n..];
    }
    sizes
}

fn build(bins: &(std::path::PathBuf, std::path::PathBuf), out: &Path, extra: &[&str]) -> String {
    digest_line(&ok(ironstar()
        .arg("build")
        .arg(format!("--binary=linux/amd64={}", bins.0.display()))
        .arg(format!("--binary=linux/arm64={}", bins.1.display()))
        .arg("--output")
        .arg(out)
        .args(extra)))
}

/// Each platform's manifest of a layout.
fn manifests(layout: &Path) -> Vec<serde_json::Value> {
    let top = json(&std::fs::read(layout.join("index.json")).unwrap());
    let index = json(&blob(
        layout,
        top["manifests"][0]["digest"].as_str().unwrap(),
    ));
    index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| json(&blob(layout, m["digest"].as_str().unwrap())))
        .collect()
}

#[test]
fn zstd_layers_are_valid_frames_and_the_same_whatever_the_threads_and_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let bins = padded_fixtures(tmp.path(), 9);
    let zstd = ["--compression", "zstd"];
    let reference = build(&bins, &tmp.path().join("a/out"), &zstd);
    validate_layout(&tmp.path().join("a/out"));
    for m in manifests(&tmp.path().join("a/out")) {
        let layout = tmp.path().join("a/out");
        let layer = &m["layers"][0];
        assert_eq!(
            layer["mediaType"],
            "application/vnd.oci.image.layer.v1.tar+zstd"
        );
        let bytes = blob(&layout, layer["digest"].as_str().unwrap());
        // Independent 4 MiB frames, the last one the rest: the ~9.4 MB tar makes three.
        let sizes = frames(&bytes);
        assert_eq!(sizes.len(), 3, "{sizes:?}");
        assert!(sizes[..2].iter().all(|&s| s == 4 << 20), "{sizes:?}");
        // The diff id is the tar's digest, and the tar holds the binary as it is.
        let config = json(&blob(&layout, m["config"]["digest"].as_str().unwrap()));
        let tar = unpack_layer(&bytes);
        assert_eq!(
            config["rootfs"]["diff_ids"][0],
            ironstar::Digest::of(&tar).to_string()
        );
        let arch = config["architecture"].as_str().unwrap();
        let (path, mode, _, _, _, data) = layer_entries(&bytes).pop().unwrap();
        assert_eq!((path, mode), (format!("hello-{arch}"), 0o755));
        let bin = if arch == "amd64" { &bins.0 } else { &bins.1 };
        assert!(data == std::fs::read(bin).unwrap(), "{arch}");
    }

    // One digest from 1, 2 and 4 threads and from another directory; gzip's is another.
    for (threads, dir) in [("1", "b"), ("2", "a"), ("4", "b")] {
        let out = tmp.path().join(dir).join(format!("out-{threads}"));
        std::fs::create_dir_all(out.parent().unwrap()).unwrap();
        let digest = digest_line(&ok(ironstar()
            .current_dir(out.parent().unwrap())
            .env("RAYON_NUM_THREADS", threads)
            .arg("build")
            .args(zstd)
            .arg(format!("--binary=linux/amd64={}", bins.0.display()))
            .arg(format!("--binary=linux/arm64={}", bins.1.display()))
            .arg("--output")
            .arg(&out)));
        assert_eq!(digest, reference, "{threads} threads in {dir}");
    }
    let gzip = build(&bins, &tmp.path().join("gzip"), &[]);
    assert_ne!(gzip, reference);
    let level = build(
        &bins,
        &tmp.path().join("l19"),
        &["--compression=zstd", "--compression-level=19"],
    );
    assert_ne!(level, reference);

    // Levels are checked per algorithm, before anything is written.
    let o = run(ironstar()
        .arg("build")
        .args(["--compression", "gzip", "--compression-level", "12"])
        .arg(format!("--binary=linux/amd64={}", bins.0.display()))
        .arg("--output")
        .arg(tmp.path().join("bad")));
    assert!(!o.status.success());
    assert!(stderr(&o).contains("0 to 9"), "{}", stderr(&o));
    assert!(!tmp.path().join("bad").exists());
}

/// `compression = "zstd"` in the image file; `--compression gzip` wins over it.
#[test]
fn the_image_file_chooses_zstd_and_the_flag_wins() {
    let tmp = tempfile::tempdir().unwrap();
    let f = fixtures();
    let file = tmp.path().join("app.toml");
    std::fs::write(
        &file,
        format!(
            "name = \"app\"\ncompression = \"zstd\"\n[binaries]\n\"linux/amd64\" = \"{}\"\n",
            f.amd64.display()
        ),
    )
    .unwrap();
    let media = |extra: &[&str]| {
        let out = tmp.path().join("out");
        ok(ironstar()
            .arg("build")
            .arg(&file)
            .arg("--output")
            .arg(&out)
            .args(extra));
        manifests(&out)[0]["layers"][0]["mediaType"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert!(media(&[]).ends_with("+zstd"));
    assert!(media(&["--compression", "gzip"]).ends_with("+gzip"));
    std::fs::write(&file, "name = \"app\"\ncompression = \"lz4\"\n").unwrap();
    let o = run(ironstar().arg("build").arg(&file));
    let e = stderr(&o);
    assert!(
        !o.status.success() && e.contains("app.toml:2:15") && e.contains("gzip or zstd"),
        "{e}"
    );
}

/// Pushed to a real registry, a zstd image (several frames a layer) is pulled, unpacked and run
/// by containerd and by podman, on both architectures (arm64 through qemu's binfmt_misc entry).
#[test]
fn containerd_and_podman_pull_and_run_a_zstd_image() {
    let tmp = tempfile::tempdir().unwrap();
    let bins = padded_fixtures(tmp.path(), 9);
    let layout = tmp.path().join("zstd");
    let index = build(&bins, &layout, &["--compression", "zstd"]);
    let reg = Registry::start(Auth::None);
    let repo = format!("{}/hello-zstd", reg.addr());
    let pushed = ok(ironstar()
        .args(["push", "--plain-http", "--layout"])
        .arg(&layout)
        .args(["--repository", &repo]));
    assert_eq!(pushed.trim(), format!("{repo}@{index}"));
    let reference = format!("{repo}:latest");
    let arches: &[(&str, &str)] = match binfmt_arm64() {
        true => &[("amd64", "x86_64"), ("arm64", "aarch64")],
        false => {
            eprintln!("binfmt_misc has no qemu-aarch64: running amd64 only");
            &[("amd64", "x86_64")]
        }
    };

    let podman = Podman::new();
    for (arch, uname) in arches {
        ok(podman.cmd().args([
            "pull",
            "--tls-verify=false",
            "--quiet",
            "--arch",
            arch,
            &reference,
        ]));
        assert_eq!(
            ok(podman.cmd().args([
                "run",
                "--rm",
                "--network",
                "none",
                "--arch",
                arch,
                &reference
            ])),
            format!("hello from {uname}\n"),
            "podman, {arch}"
        );
    }

    let containerd = match Containerd::start() {
        Ok(c) => c,
        Err(why) => {
            eprintln!("skipped containerd: {why}");
            return;
        }
    };
    for (arch, uname) in arches {
        let platform = format!("linux/{arch}");
        containerd.pull(&reference, &platform);
        assert_eq!(
            containerd.run(&reference, &platform, &format!("zstd-{arch}")),
            format!("hello from {uname}\n"),
            "containerd, {arch}"
        );
    }
}
