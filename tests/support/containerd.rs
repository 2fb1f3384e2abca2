//! A private containerd: its own root, state, sockets and config under a temporary directory (no
//! CRI plugin, the native snapshotter, which needs no overlay mounts), stopped on drop. `ctr`
//! talks to it by its socket.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::common::{ok, require_tool};

pub struct Containerd {
    dir: tempfile::TempDir,
    child: Child,
}

impl Containerd {
    /// Start one; `Err` says why containerd cannot run here (its log's last lines). A missing
    /// `containerd` is a failure, not a reason: scripts/install-deps.sh installs it.
    pub fn start() -> Result<Containerd, String> {
        require_tool("containerd", "containerd");
        require_tool("ctr", "containerd");
        let dir = tempfile::Builder::new()
            .prefix("containerd-")
            .tempdir()
            .unwrap();
        let d = dir.path().display();
        let config = format!(
            "version = 2\nroot = \"{d}/root\"\nstate = \"{d}/state\"\n\
             disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
             [grpc]\n  address = \"{d}/containerd.sock\"\n\
             [ttrpc]\n  address = \"{d}/containerd.sock.ttrpc\"\n\
             [debug]\n  address = \"{d}/debug.sock\"\n\
             [plugins.\"io.containerd.internal.v1.opt\"]\n  path = \"{d}/opt\"\n"
        );
        std::fs::write(dir.path().join("config.toml"), config).unwrap();
        let log = std::fs::File::create(dir.path().join("containerd.log")).unwrap();
        let child = Command::new("containerd")
            .arg("--config")
            .arg(dir.path().join("config.toml"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start containerd: {e}"))?;
        let c = Containerd { dir, child };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let up = c
                .ctr()
                .arg("version")
                .output()
                .is_ok_and(|o| o.status.success());
            if up {
                return Ok(c);
            }
            if Instant::now() > deadline {
                let log = std::fs::read_to_string(c.dir.path().join("containerd.log"))
                    .unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(5).collect();
                return Err(format!("containerd did not come up: {}", tail.join(" | ")));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn socket(&self) -> std::path::PathBuf {
        self.dir.path().join("containerd.sock")
    }

    /// `ctr` of this containerd, in the namespace `ironstar-test`.
    pub fn ctr(&self) -> Command {
        let mut c = Command::new("ctr");
        c.arg("--address")
            .arg(self.socket())
            .args(["--namespace", "ironstar-test"]);
        c
    }

    /// `ctr images pull` of `reference` for `platform` over plain http, unpacked with the native
    /// snapshotter.
    pub fn pull(&self, reference: &str, platform: &str) {
        ok(self.ctr().args([
            "images",
            "pull",
            "--plain-http",
            "--snapshotter",
            "native",
            "--platform",
            platform,
            reference,
        ]));
    }

    /// `ctr run --rm` of a pulled image for `platform` (no network namespace setup: host
    /// network); its stdout.
    pub fn run(&self, reference: &str, platform: &str, name: &str) -> String {
        ok(self.ctr().args([
            "run",
            "--rm",
            "--snapshotter",
            "native",
            "--net-host",
            "--platform",
            platform,
            reference,
            name,
        ]))
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        // SIGTERM first: containerd then stops its shims' bookkeeping cleanly.
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
