//! The `ironstar push` command line as the push tests run it: one shared layout, a command
//! isolated from the machine's credentials, and checks of its output.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use super::common;

/// One two-platform layout for every test of this file (pushing only reads it).
pub fn layout() -> &'static (PathBuf, String) {
    static L: OnceLock<(PathBuf, String)> = OnceLock::new();
    L.get_or_init(|| {
        let dir = common::repo().join("target/test-push/layout");
        let digest = common::build_layout(&dir);
        (dir, digest)
    })
}

pub fn index_bytes() -> Vec<u8> {
    let (dir, digest) = layout();
    common::blob(dir, digest)
}

/// `ironstar push` isolated from the machine's credentials, with a fresh HOME.
pub fn push_cmd(home: &Path) -> Command {
    let mut c = common::ironstar();
    c.env("HOME", home)
        .env("DOCKER_CONFIG", home.join(".docker"))
        .env_remove("REGISTRY_AUTH_FILE")
        .env_remove("XDG_RUNTIME_DIR")
        .env_remove("GITHUB_TOKEN")
        .env_remove("GITHUB_OUTPUT")
        .env_remove("IRONSTAR_LOG")
        .stdin(Stdio::null())
        .arg("push")
        .arg("--layout")
        .arg(&layout().0);
    c
}

pub fn with_stdin(cmd: &mut Command, input: &str) -> Output {
    use std::io::Write as _;
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn ironstar");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

pub fn expect_ok(o: &Output, what: &str) -> String {
    assert!(
        o.status.success(),
        "{what} failed ({}):\nstdout: {}\nstderr: {}",
        o.status,
        common::stdout(o),
        common::stderr(o)
    );
    common::stdout(o)
}

pub fn expect_fail(o: &Output, what: &str) -> String {
    assert!(
        !o.status.success(),
        "{what} should have failed:\nstdout: {}\nstderr: {}",
        common::stdout(o),
        common::stderr(o)
    );
    let err = common::stderr(o);
    let last = err.lines().last().unwrap_or("").to_string();
    assert!(
        last.starts_with("ironstar: error:"),
        "{what}: the last stderr line should be the one-line error:\n{err}"
    );
    last
}

pub fn skopeo_raw(addr: &str, repo: &str, tag: &str) -> Vec<u8> {
    common::require_tool("skopeo", "skopeo");
    let o = common::run(Command::new("skopeo").args([
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{addr}/{repo}:{tag}"),
    ]));
    assert!(o.status.success(), "skopeo inspect: {}", common::stderr(&o));
    o.stdout
}

pub fn skopeo_raw_auth(addr: &str, repo: &str, user: &str, password: &str) -> Vec<u8> {
    let o = common::run(Command::new("skopeo").args([
        "inspect",
        "--raw",
        "--tls-verify=false",
        "--creds",
        &format!("{user}:{password}"),
        &format!("docker://{addr}/{repo}:latest"),
    ]));
    assert!(o.status.success(), "skopeo inspect: {}", common::stderr(&o));
    o.stdout
}

/// The status of `HEAD` on a tag, straight to the registry.
pub fn tag_status(reg: &crate::support::registry::Registry, repo: &str, tag: &str) -> Option<u16> {
    let path = format!("/v2/{repo}/manifests/{tag}");
    crate::support::registry::http_status(reg.port, "HEAD", &path)
}
