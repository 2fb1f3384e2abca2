//! The fixture crates under `tests/fixtures/` built by `ironstar build --cargo`, and their
//! binaries read back from the layout and run (natively on amd64, under qemu on arm64).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::common::{self, blob, ironstar, json, layer_entries, ok};

pub fn fixture_target_dir(name: &str) -> PathBuf {
    common::repo().join("target/test-fixtures").join(name)
}

/// `ironstar build --cargo --locked` of fixture `name` for `platforms`, into `out`.
pub fn build(name: &str, platforms: &str, out: &Path) -> Command {
    build_in(name, platforms, out, &fixture_target_dir(name))
}

/// [`build`] with cargo's target directory `target`.
pub fn build_in(name: &str, platforms: &str, out: &Path, target: &Path) -> Command {
    let mut c = ironstar();
    c.args(["build", "--cargo", "--locked", "--manifest-path"])
        .arg(
            common::repo()
                .join("tests/fixtures")
                .join(name)
                .join("Cargo.toml"),
        )
        .arg("--target-dir")
        .arg(target)
        .args(["--platform", platforms, "-o"])
        .arg(out);
    c
}

/// The layout's binary `name` for `platform`, written to `dir` as an executable file.
pub fn binary_from_layout(layout: &Path, platform: &str, name: &str, dir: &Path) -> PathBuf {
    let mut index = json(&std::fs::read(layout.join("index.json")).unwrap());
    while index["manifests"][0]["mediaType"] == "application/vnd.oci.image.index.v1+json" {
        index = json(&blob(
            layout,
            index["manifests"][0]["digest"].as_str().unwrap(),
        ));
    }
    let arch = platform.split_once('/').unwrap().1;
    let m = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["platform"]["architecture"] == arch)
        .unwrap_or_else(|| panic!("no {platform} manifest in {index}"));
    let manifest = json(&blob(layout, m["digest"].as_str().unwrap()));
    for layer in manifest["layers"].as_array().unwrap() {
        let entries = layer_entries(&blob(layout, layer["digest"].as_str().unwrap()));
        if let Some(e) = entries.into_iter().find(|e| e.0 == name) {
            let out = dir.join(format!("{}-{name}", platform.replace('/', "-")));
            std::fs::write(&out, &e.5).unwrap();
            std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o755)).unwrap();
            return out;
        }
    }
    panic!("no {name} in the {platform} image");
}

/// What the binary prints, checked static first: natively on amd64, under qemu on arm64.
pub fn output_of(bin: &Path, platform: &str) -> String {
    ok(&mut command_for(bin, platform))
}

/// The command that runs the binary, checked static first: itself on amd64, qemu on arm64.
pub fn command_for(bin: &Path, platform: &str) -> Command {
    let p = ironstar::platform::Platform::parse(platform).unwrap();
    ironstar::elf::check(bin, p).unwrap_or_else(|e| panic!("{platform}: {e}"));
    match platform {
        "linux/arm64" => {
            common::require_tool("qemu-aarch64-static", "qemu-user-static");
            let mut c = Command::new("qemu-aarch64-static");
            c.arg(bin);
            c
        }
        _ => Command::new(bin),
    }
}
