//! Where several images' tags go and how they move: one repository per image (refused before any
//! request otherwise), no tag hidden in a definition's repository, tags all or none when a tag
//! `PUT` fails (put back as far as the registry allows), and two identical workspace pushes at
//! once over one cache. Against the real `docker-registry`, the fault proxy in front.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use support::cli::expect_fail;
use support::common::{self, fixtures, ironstar, ok, run, stderr};
use support::proxy::{Faults, Proxy};
use support::registry::{Auth, Registry};

/// A definition of the fixture binaries named `name` with `extra` TOML lines, in `dir`.
fn definition(dir: &Path, name: &str, extra: &str) -> PathBuf {
    let f = fixtures();
    let file = dir.join(format!("{name}.toml"));
    std::fs::write(
        &file,
        format!(
            "name = \"{name}\"\n{extra}\n[binaries]\n\"linux/amd64\" = \"{}\"\n\"linux/arm64\" = \"{}\"\n",
            f.amd64.display(),
            f.arm64.display()
        ),
    )
    .unwrap();
    file
}

/// `ironstar build` of `definition` into `out` (`extra` flags); its index digest.
fn build(definition: &Path, out: &Path, extra: &[&str]) -> String {
    let digest = ok(ironstar()
        .arg("build")
        .arg(definition)
        .args(extra)
        .arg("-o")
        .arg(out));
    digest.trim().to_string()
}

/// `ironstar push --workspace` of the layouts under `dir`, isolated from the machine's
/// credentials.
fn push_workspace(home: &Path, dir: &Path) -> Command {
    let mut c = ironstar();
    c.env("HOME", home)
        .env("DOCKER_CONFIG", home.join(".docker"))
        .env_remove("REGISTRY_AUTH_FILE")
        .env_remove("GITHUB_OUTPUT")
        .args(["push", "--workspace", "--plain-http", "--layout-dir"])
        .arg(dir);
    c
}

#[test]
fn two_images_with_one_repository_are_refused_before_any_request() {
    let reg = Registry::start(Auth::None);
    let proxy = Proxy::start(reg.port, Faults::default());
    let tmp = tempfile::tempdir().unwrap();
    let repo = format!("{}/org/zz", proxy.addr());
    for name in ["a", "b"] {
        let def = definition(tmp.path(), name, &format!("repository = \"{repo}\""));
        build(&def, &tmp.path().join("oci").join(name), &[]);
    }
    let o = run(&mut push_workspace(tmp.path(), &tmp.path().join("oci")));
    let line = expect_fail(&o, "two images, one repository");
    assert_eq!(
        line,
        format!(
            "ironstar: error: images `a` and `b` both go to {repo}: which one a tag would name \
             depends on the run; give each its own `repository`"
        )
    );
    assert_eq!(proxy.get(&proxy.stats.requests), 0, "a request went out");

    // publish of two members of a workspace whose definitions name one repository: refused
    // before cargo builds anything.
    let ws = tmp.path().join("ws");
    copy_dir(&common::repo().join("tests/fixtures/workspace"), &ws);
    let api = ws.join("api/Cargo.toml");
    let text = std::fs::read_to_string(&api).unwrap().replace(
        "[package.metadata.ironstar]\n",
        &format!("[package.metadata.ironstar]\nrepository = \"{repo}\"\n"),
    );
    std::fs::write(&api, text).unwrap();
    let migrate = ws.join("migrate/Cargo.toml");
    let mut text = std::fs::read_to_string(&migrate).unwrap();
    text.push_str(&format!(
        "\n[package.metadata.ironstar]\nrepository = \"{repo}\"\n"
    ));
    std::fs::write(&migrate, text).unwrap();
    let target = tmp.path().join("target");
    let o = run(ironstar()
        .current_dir(&ws)
        .env("CARGO_NET_OFFLINE", "true")
        .args([
            "publish",
            "--cargo",
            "-p",
            "api",
            "-p",
            "migrate",
            "--plain-http",
        ])
        .arg("--target-dir")
        .arg(&target));
    let line = expect_fail(&o, "publish of two images to one repository");
    assert!(
        line.contains(&format!("images `api` and `migrate` both go to {repo}")),
        "{line}"
    );
    assert!(!target.exists(), "cargo ran");
    assert_eq!(proxy.get(&proxy.stats.requests), 0, "a request went out");
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let dest = to.join(e.file_name());
        match e.file_type().unwrap().is_dir() {
            true => copy_dir(&e.path(), &dest),
            false => drop(std::fs::copy(e.path(), dest).unwrap()),
        }
    }
}

/// A definition's repository with a tag: refused at its file, line and column, by every
/// command that reads it (a workspace push would have moved only that tag, a single push the
/// image's tags and that one).
#[test]
fn a_tag_in_a_definitions_repository_is_refused_at_its_line() {
    let tmp = tempfile::tempdir().unwrap();
    let def = definition(
        tmp.path(),
        "zz",
        "tags = [\"latest\"]\nrepository = \"127.0.0.1:9/org/zz:v9\"",
    );
    let want = format!(
        "ironstar: error: {}:3:14: repository `127.0.0.1:9/org/zz:v9` carries a tag or digest; \
         write `repository = \"127.0.0.1:9/org/zz\"` and put the tag in `tags`",
        def.display()
    );
    let out = tmp.path().join("out");
    for (command, output) in [("build", "-o"), ("publish", "-o"), ("push", "--layout")] {
        let o = run(ironstar()
            .arg(command)
            .arg(&def)
            .arg(output)
            .arg(&out)
            .env("HOME", tmp.path()));
        let line = expect_fail(&o, command);
        assert_eq!(line, want, "{command}: {}", stderr(&o));
    }
    assert!(!out.exists());

    // A layout that records such a repository (built before definitions refused it): `push
    // --workspace` refuses it too, before any request.
    let def = definition(tmp.path(), "zz", "repository = \"127.0.0.1:9/org/zz\"");
    let oci = tmp.path().join("oci");
    build(&def, &oci.join("zz"), &[]);
    let index = oci.join("zz/index.json");
    let text = std::fs::read_to_string(&index).unwrap();
    assert!(text.contains("\"127.0.0.1:9/org/zz\""), "{text}");
    std::fs::write(&index, text.replace("/org/zz\"", "/org/zz:v9\"")).unwrap();
    let line = expect_fail(
        &run(&mut push_workspace(tmp.path(), &oci)),
        "a recorded tag",
    );
    assert_eq!(
        line,
        "ironstar: error: image `zz`: its repository `127.0.0.1:9/org/zz:v9` carries a tag; a \
         definition's `repository` takes none (put the tag in `tags`, and build again)"
    );
}

/// The digest `reg` serves for `repo:tag`, straight from the registry (skopeo); `None` for no
/// such tag.
fn served(reg: &Registry, repo: &str, tag: &str) -> Option<String> {
    common::require_tool("skopeo", "skopeo");
    let o = run(Command::new("skopeo").args([
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{}/{repo}:{tag}", reg.addr()),
    ]));
    let missing = stderr(&o).contains("manifest unknown");
    assert!(o.status.success() || missing, "skopeo: {}", stderr(&o));
    o.status
        .success()
        .then(|| ironstar::Digest::of(&o.stdout).to_string())
}

/// Two images a round, round 2 another revision (other digests), pushed over round 1's tags
/// with one more tag whose `PUT` the proxy refuses for one image: every tag that moved is put
/// back (a workspace push, and a push of that image alone); a tag that did not exist is
/// deleted where the registry can, else named on the line with what it names.
#[test]
fn a_failed_tag_put_puts_back_the_tags_that_moved() {
    let reg = Registry::start(Auth::None);
    let faults = Faults {
        deny_manifest_suffix: Some("/org/b/manifests/v3"),
        ..Default::default()
    };
    let proxy = Proxy::start(reg.port, faults);
    let tmp = tempfile::tempdir().unwrap();
    let mut digests = Vec::new();
    for round in ["r1", "r2"] {
        let mut d = Vec::new();
        for name in ["a", "b"] {
            let repository = format!("repository = \"{}/org/{name}\"", proxy.addr());
            let def = definition(tmp.path(), name, &repository);
            let out = tmp.path().join(round).join(name);
            d.push(build(&def, &out, &["--revision", round]));
        }
        digests.push(d);
    }
    let (old, new) = (&digests[0], &digests[1]);
    assert_ne!(old, new);
    let push = |round: &str, tags: &str| {
        run(push_workspace(tmp.path(), &tmp.path().join(round)).args(["-t", tags]))
    };
    let o = push("r1", "latest,v2");
    assert!(o.status.success(), "{}", stderr(&o));
    let o = push("r2", "latest,v2,v3");
    let line = expect_fail(&o, "a refused tag");
    let b = format!("{}/org/b", proxy.addr());
    assert!(
        line.starts_with(&format!(
            "ironstar: error: image `b` ({b}): tag org/b:v3: PUT "
        )),
        "{line}"
    );
    assert!(line.contains("403"), "{line}");
    assert!(
        line.contains("undone: org/a:latest, org/a:v2, org/b:latest, org/b:v2; not undone: org/a:v3 still names"),
        "{line}"
    );
    assert!(
        line.contains("it did not exist before, and deleting it failed"),
        "{line}"
    );
    assert!(
        line.ends_with("every image is in the registry by digest"),
        "{line}"
    );
    for (i, name) in ["a", "b"].into_iter().enumerate() {
        for tag in ["latest", "v2"] {
            let repo = format!("org/{name}");
            assert_eq!(
                served(&reg, &repo, tag).as_ref(),
                Some(&old[i]),
                "{repo}:{tag}"
            );
        }
    }
    // distribution 2.8 cannot delete a tag: the one that did not exist stays, as the line said.
    assert_eq!(served(&reg, "org/a", "v3").as_ref(), Some(&new[0]));
    assert_eq!(served(&reg, "org/b", "v3"), None);

    // One image alone, the same way.
    let o = run(ironstar()
        .env("HOME", tmp.path())
        .env("DOCKER_CONFIG", tmp.path().join(".docker"))
        .args([
            "push",
            "--plain-http",
            "-t",
            "latest,v2,v3",
            "--repository",
            &b,
        ])
        .arg("--layout")
        .arg(tmp.path().join("r2/b")));
    let line = expect_fail(&o, "a refused tag, one image");
    assert!(
        line.starts_with("ironstar: error: tag org/b:v3: PUT "),
        "{line}"
    );
    assert!(
        line.ends_with("the tags that had moved were undone: org/b:latest, org/b:v2"),
        "{line}"
    );
    for tag in ["latest", "v2"] {
        assert_eq!(
            served(&reg, "org/b", tag).as_ref(),
            Some(&old[1]),
            "org/b:{tag}"
        );
    }
}

/// Two identical `push --workspace` at once, sharing a cache, each round to new repositories:
/// both succeed and the tags name the layouts' indexes. distribution 2.8 answered one of them
/// MANIFEST_BLOB_UNKNOWN in 5 of 20 rounds (with the cache or without: a registry race, not
/// the cache's record, which is written only once the registry holds the blob).
#[test]
fn two_identical_workspace_pushes_at_once_both_succeed() {
    let reg = Registry::start(Auth::None);
    let tmp = tempfile::tempdir().unwrap();
    let oci = tmp.path().join("oci");
    let digests: Vec<String> = ["a", "b"]
        .iter()
        .map(|name| build(&definition(tmp.path(), name, ""), &oci.join(name), &[]))
        .collect();
    let cache = tmp.path().join("cache");
    for round in 0..6 {
        let prefix = format!("{}/round{round}", reg.addr());
        let children: Vec<_> = (0..2)
            .map(|_| {
                push_workspace(tmp.path(), &oci)
                    .env_remove("IRONSTAR_NO_CACHE")
                    .arg("--cache-dir")
                    .arg(&cache)
                    .args(["-q", "--repository", &prefix])
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for c in children {
            let o = c.wait_with_output().unwrap();
            assert!(o.status.success(), "round {round}: {}", stderr(&o));
        }
        for (name, digest) in ["a", "b"].iter().zip(&digests) {
            let repo = format!("round{round}/{name}");
            assert_eq!(
                served(&reg, &repo, "latest").as_ref(),
                Some(digest),
                "{repo}"
            );
        }
    }
}
