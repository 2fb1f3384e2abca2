//! `ironstar load`: one platform of a layout into podman's image store under its name, run by that
//! name; the docker-archive file loaded by `podman load`; `--all` read back by skopeo.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use support::common::*;

/// A layout of the two fixture binaries, and its index digest.
fn layout() -> (tempfile::TempDir, PathBuf, String) {
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("layout");
    let index = build_layout(&layout);
    (tmp, layout, index)
}

#[test]
fn load_puts_each_platform_into_podman_under_its_name() {
    let (_tmp, layout, _) = layout();
    let podman = Podman::new();
    let load = |extra: &[&str]| {
        ok(podman
            .env(&mut ironstar())
            .arg("load")
            .arg("--layout")
            .arg(&layout)
            .args(extra))
    };
    // The host's platform by default (amd64 here), under the image's name (the fixture's binary).
    assert_eq!(load(&[]), "localhost/hello:latest\n");
    assert_eq!(podman.run("hello:latest"), "hello from x86_64\n");

    assert_eq!(
        load(&["--platform", "linux/arm64"]),
        "localhost/hello:latest\n"
    );
    let arch = ok(podman.cmd().args([
        "image",
        "inspect",
        "--format",
        "{{.Architecture}}",
        "hello:latest",
    ]));
    assert_eq!(arch, "arm64\n");
    if binfmt_arm64() {
        // podman warns that the platform is not the host's, and qemu (binfmt) runs it.
        assert_eq!(podman.run("hello:latest"), "hello from aarch64\n");
    } else {
        // No binfmt here: take the binary out of the loaded image and run it under qemu.
        eprintln!(
            "binfmt_misc has no qemu-aarch64: checking the arm64 binary with qemu-aarch64-static"
        );
        require_tool("qemu-aarch64-static", "qemu-user-static");
        let out = tempfile::tempdir().unwrap();
        let ctr = ok(podman.cmd().args(["create", "hello:latest"]));
        ok(podman
            .cmd()
            .args(["cp", &format!("{}:/hello", ctr.trim())])
            .arg(out.path().join("hello")));
        let got = ok(Command::new("qemu-aarch64-static").arg(out.path().join("hello")));
        assert_eq!(got, "hello from aarch64\n");
    }

    let e = run(podman
        .env(&mut ironstar())
        .args(["load", "--platform", "linux/s390x", "--layout"])
        .arg(&layout));
    assert_eq!(e.status.code(), Some(1));
    assert!(
        stderr(&e)
            .contains("no image for linux/s390x (platforms present: linux/amd64, linux/arm64)"),
        "{}",
        stderr(&e)
    );
}

#[test]
fn docker_archive_file_loads_with_podman_and_is_reproducible() {
    let (tmp, layout, _) = layout();
    let podman = Podman::new();
    let write = |file: &Path| {
        ok(ironstar()
            .args([
                "load",
                "--platform",
                "linux/amd64",
                "-t",
                "latest",
                "--layout",
            ])
            .arg(&layout)
            .arg("--output")
            .arg(file))
    };
    let a = tmp.path().join("a.tar");
    let b = tmp.path().join("b.tar");
    assert_eq!(write(&a), "hello:latest\n");
    write(&b);
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
    // No engine involved: the file is the whole result, complete and named.
    let loaded = ok(podman.cmd().args(["load", "-q", "-i"]).arg(&a));
    assert!(loaded.contains("localhost/hello:latest"), "{loaded}");
    assert_eq!(podman.run("hello:latest"), "hello from x86_64\n");
}

#[test]
fn all_platforms_as_an_oci_archive_that_skopeo_reads_as_the_same_index() {
    require_tool("skopeo", "skopeo");
    let (tmp, layout, index) = layout();
    let file = tmp.path().join("all.tar");
    let printed = ok(ironstar()
        .args(["load", "--all", "--layout"])
        .arg(&layout)
        .arg("-o")
        .arg(&file));
    assert_eq!(printed.trim(), index);
    let raw = run(Command::new("skopeo")
        .args(["inspect", "--raw"])
        .arg(format!("oci-archive:{}", file.display())));
    assert!(raw.status.success(), "{}", stderr(&raw));
    assert_eq!(raw.stdout, blob(&layout, &index));
    // Each platform inside it, as skopeo sees it.
    for arch in ["amd64", "arm64"] {
        let cfg = ok(Command::new("skopeo")
            .args(["inspect", "--config", "--override-arch", arch])
            .arg(format!("oci-archive:{}", file.display())));
        assert_eq!(json(cfg.as_bytes())["architecture"], arch);
    }
}

#[test]
fn a_corrupt_blob_fails_the_load_and_leaves_no_file() {
    let (tmp, layout, _) = layout();
    // Layers are the blobs past a few KiB: flip the last byte of each, keeping its size.
    for e in std::fs::read_dir(layout.join("blobs/sha256")).unwrap() {
        let layer = e.unwrap().path();
        let mut bytes = std::fs::read(&layer).unwrap();
        if bytes.len() > 16 << 10 {
            *bytes.last_mut().unwrap() ^= 1;
            std::fs::write(&layer, bytes).unwrap();
        }
    }
    let out = tmp.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let o = run(ironstar()
        .args(["load", "--platform", "linux/amd64", "--layout"])
        .arg(&layout)
        .arg("-o")
        .arg(out.join("image.tar")));
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(
        err.contains("does not hash to its name; the layout is corrupt, rebuild it"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    assert_eq!(
        std::fs::read_dir(&out).unwrap().count(),
        0,
        "a partial archive was left"
    );
}

/// A zstd image (layers of several frames): loaded into podman and run on both architectures;
/// its docker-archive carries each layer as the plain tar it holds, named by the diff id (what
/// `docker save` writes: any engine loads it, also those that cannot read zstd), and podman loads
/// that file; `--all` keeps the zstd blobs as they are, and podman loads and runs that too. A
/// corrupt zstd layer fails the load in one line.
#[test]
fn a_zstd_image_loads_as_plain_tar_layers_and_as_an_oci_archive() {
    let tmp = tempfile::tempdir().unwrap();
    let (amd64, arm64) = padded_fixtures(tmp.path(), 5);
    let layout = tmp.path().join("layout");
    ok(ironstar()
        .args(["build", "--compression", "zstd", "-o"])
        .arg(&layout)
        .arg(format!("--binary=linux/amd64={}", amd64.display()))
        .arg(format!("--binary=linux/arm64={}", arm64.display())));
    let podman = Podman::new();
    let mut arches = vec![("amd64", "x86_64")];
    if binfmt_arm64() {
        arches.push(("arm64", "aarch64"));
    }
    for (arch, uname) in &arches {
        let platform = format!("linux/{arch}");
        let loaded = ok(podman
            .env(&mut ironstar())
            .args(["load", "--platform", &platform, "--layout"])
            .arg(&layout));
        assert_eq!(loaded, "localhost/hello-amd64:latest\n");
        assert_eq!(podman.run("hello-amd64"), format!("hello from {uname}\n"));
    }

    let file = tmp.path().join("amd64.tar");
    ok(ironstar()
        .args(["load", "--platform", "linux/amd64", "--layout"])
        .arg(&layout)
        .arg("-o")
        .arg(&file));
    let mut ar = tar::Archive::new(std::fs::File::open(&file).unwrap());
    let mut files = std::collections::BTreeMap::new();
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut e, &mut bytes).unwrap();
        files.insert(e.path().unwrap().to_string_lossy().into_owned(), bytes);
    }
    let manifest = json(&files["manifest.json"]);
    let config = json(&files[manifest[0]["Config"].as_str().unwrap()]);
    let layer_path = manifest[0]["Layers"][0].as_str().unwrap();
    let tar = &files[layer_path];
    let diff_id = ironstar::Digest::of(tar).to_string();
    assert_eq!(config["rootfs"]["diff_ids"][0], diff_id.as_str());
    assert_eq!(layer_path, format!("blobs/sha256/{}", &diff_id[7..]));
    assert!(
        tar.len() > 5 << 20 && tar[257..262] == *b"ustar",
        "a plain tar"
    );
    let loaded = ok(podman.cmd().args(["load", "-q", "-i"]).arg(&file));
    assert!(loaded.contains("localhost/hello-amd64:latest"), "{loaded}");
    assert_eq!(podman.run("hello-amd64"), "hello from x86_64\n");

    let all = tmp.path().join("all.tar");
    ok(ironstar()
        .args(["load", "--all", "--layout"])
        .arg(&layout)
        .arg("-o")
        .arg(&all));
    let podman = Podman::new();
    // podman names an oci-archive's image after its ref.name (the tag): run it by what it says.
    let loaded = ok(podman.cmd().args(["load", "-q", "-i"]).arg(&all));
    let name = loaded.trim().rsplit(": ").next().unwrap();
    assert_eq!(podman.run(name), "hello from x86_64\n");

    // Corrupt every zstd layer (its last byte: a frame's checksum): one line, no file.
    for e in std::fs::read_dir(layout.join("blobs/sha256")).unwrap() {
        let layer = e.unwrap().path();
        let mut bytes = std::fs::read(&layer).unwrap();
        if bytes.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            *bytes.last_mut().unwrap() ^= 1;
            std::fs::write(&layer, bytes).unwrap();
        }
    }
    let out = tmp.path().join("corrupt.tar");
    let o = run(ironstar()
        .args(["load", "--platform", "linux/amd64", "--layout"])
        .arg(&layout)
        .arg("-o")
        .arg(&out));
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("does not hash to its name"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(!out.exists());
}
