//! What the signing tests share: keys made the way cosign makes them (by `cosign_check.py`), the
//! independent checker, `ironstar` isolated from the machine's credentials and signing
//! settings, signed builds and pushes of the fixture binaries.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use super::common::{self, ironstar, ok, run};

pub const PASSWORD: &str = "tr0ub4dor-Xq7-horse";

pub fn checker() -> Command {
    common::venv_script("cosign_check.py")
}

/// A key pair in `dir`, as `cosign generate-key-pair` writes it (cosign.key, cosign.pub), and
/// the same private key as plain PKCS#8 (key.pkcs8.pem).
pub fn genkey(dir: &Path) -> PathBuf {
    fs::create_dir_all(dir).unwrap();
    ok(checker().arg("genkey").arg(dir).arg(PASSWORD));
    dir.to_path_buf()
}

/// Two key pairs for the whole test process.
pub fn keys() -> &'static (PathBuf, PathBuf) {
    static K: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    K.get_or_init(|| {
        let root = common::repo().join("target/test-sign/keys");
        let _ = fs::remove_dir_all(&root);
        (genkey(&root.join("a")), genkey(&root.join("b")))
    })
}

/// `ironstar` isolated from the machine's credentials and signing settings.
pub fn cmd(home: &Path) -> Command {
    let mut c = ironstar();
    c.env("HOME", home)
        .env("DOCKER_CONFIG", home.join(".docker"))
        .env_remove("REGISTRY_AUTH_FILE")
        .env_remove("XDG_RUNTIME_DIR")
        .env_remove("GITHUB_OUTPUT")
        .env_remove("COSIGN_PASSWORD")
        .env_remove("IRONSTAR_SIGN_KEY")
        .env_remove("IRONSTAR_LOG");
    c
}

pub fn push(layout: &Path, addr: &str, repo: &str, extra: &[&str]) -> Output {
    let home = tempfile::tempdir().unwrap();
    run(cmd(home.path())
        .args(["push", "--plain-http", "--repository"])
        .arg(format!("{addr}/{repo}"))
        .arg("--layout")
        .arg(layout)
        .args(extra))
}

pub fn with_key<'a>(key: &'a Path, file: &str, args: &mut Vec<String>) -> &'a Path {
    args.push("--sign-key".into());
    args.push(key.join(file).display().to_string());
    key
}

pub fn signed_push(layout: &Path, addr: &str, repo: &str, key: &Path, extra: &[&str]) -> Output {
    let home = tempfile::tempdir().unwrap();
    let mut args = Vec::new();
    with_key(key, "cosign.key", &mut args);
    run(cmd(home.path())
        .env("COSIGN_PASSWORD", PASSWORD)
        .args(["push", "--plain-http", "--repository"])
        .arg(format!("{addr}/{repo}"))
        .arg("--layout")
        .arg(layout)
        .args(&args)
        .args(extra))
}

pub fn verify(args: &[&str], key: &Path) -> Output {
    let home = tempfile::tempdir().unwrap();
    run(cmd(home.path())
        .arg("verify")
        .arg("--key")
        .arg(key.join("cosign.pub"))
        .args(args))
}

/// An image file for the fixture binaries that names `repository`.
pub fn image_file(dir: &Path, repository: &str) -> PathBuf {
    let f = common::fixtures();
    let file = dir.join("app.toml");
    fs::write(
        &file,
        format!(
            "name = \"app\"\nrepository = \"{repository}\"\n[binaries]\n\"linux/amd64\" = \"{}\"\n\"linux/arm64\" = \"{}\"\n",
            f.amd64.display(),
            f.arm64.display()
        ),
    )
    .unwrap();
    file
}

pub fn signed_build(file: &Path, out: &Path, key: &Path, extra: &[&str]) -> String {
    let home = tempfile::tempdir().unwrap();
    ok(cmd(home.path())
        .env("COSIGN_PASSWORD", PASSWORD)
        .arg("build")
        .arg(file)
        .arg("--output")
        .arg(out)
        .arg("--sign-key")
        .arg(key.join("cosign.key"))
        .args(extra))
    .trim()
    .to_string()
}
