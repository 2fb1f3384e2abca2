//! OpenSSL without a sysroot (`ironstar build --cargo`): a crate on `native-tls` (openssl-sys, not
//! vendored; fixture `tests/fixtures/native-tls-hello`) gets a static OpenSSL ironstar builds with
//! zig for each target, cached and the same bytes from one machine to the next, and its TLS
//! works on both arches against a test root.

mod support;
use support::common;

use std::path::{Path, PathBuf};
use std::process::Command;

use support::common::{digest_line, ok, run, stderr};
use support::fixture_crate::{
    binary_from_layout, build, build_in, command_for, fixture_target_dir,
};

/// A root CA and a server certificate for `localhost` it signed, made by the openssl CLI in
/// `dir`: (root.pem, server.pem, server.key).
fn test_pki(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    common::require_tool("openssl", "openssl");
    let f = |n: &str| dir.join(n);
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    ok(Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-days",
            "2",
            "-subj",
            "/CN=ironstar test root",
        ])
        .args(ec)
        .arg("-keyout")
        .arg(f("root.key"))
        .arg("-out")
        .arg(f("root.pem")));
    ok(Command::new("openssl")
        .args(["req", "-subj", "/CN=localhost"])
        .args(ec)
        .arg("-keyout")
        .arg(f("server.key"))
        .arg("-out")
        .arg(f("server.csr")));
    std::fs::write(
        f("ext"),
        "subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    ok(Command::new("openssl")
        .args(["x509", "-req", "-days", "2", "-set_serial", "2"])
        .arg("-in")
        .arg(f("server.csr"))
        .arg("-CA")
        .arg(f("root.pem"))
        .arg("-CAkey")
        .arg(f("root.key"))
        .arg("-extfile")
        .arg(f("ext"))
        .arg("-out")
        .arg(f("server.pem")));
    (f("root.pem"), f("server.pem"), f("server.key"))
}

/// A TLS server on 127.0.0.1 (python3's ssl module) that answers each client one line; killed
/// when dropped.
struct TlsServer {
    child: std::process::Child,
    port: u16,
}

impl TlsServer {
    fn start(cert: &Path, key: &Path) -> TlsServer {
        const SERVER: &str = "import socket, ssl, sys
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(sys.argv[1], sys.argv[2])
s = socket.socket()
s.bind(('127.0.0.1', 0))
s.listen(8)
print(s.getsockname()[1], flush=True)
while True:
    c, _ = s.accept()
    try:
        with ctx.wrap_socket(c, server_side=True) as t:
            t.recv(64)
            t.sendall(b'hello from the test server\\n')
    except Exception:
        pass
";
        let mut child = Command::new("python3")
            .args(["-c", SERVER])
            .arg(cert)
            .arg(key)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("python3");
        let mut line = String::new();
        let stdout = child.stdout.take().unwrap();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line).unwrap();
        let port = line
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("no port: {line:?}"));
        TlsServer { child, port }
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const OPENSSL_VARIABLES: [&str; 5] = [
    "OPENSSL_DIR",
    "OPENSSL_LIB_DIR",
    "OPENSSL_INCLUDE_DIR",
    "OPENSSL_STATIC",
    "OPENSSL_LIBS",
];

#[test]
fn openssl_sys_gets_a_static_openssl_built_by_ironstar_and_tls_works_on_both_arches() {
    common::require_tool("zig", "zig: sh scripts/install-deps.sh");
    let tmp = tempfile::tempdir().unwrap();
    let (root, cert, key) = test_pki(tmp.path());
    let server = TlsServer::start(&cert, &key);
    // A private cache: OpenSSL is built here once per run, for both targets.
    let cache = tmp.path().join("cache");
    let build_here = |out: &Path| {
        let mut c = build("native-tls-hello", "linux/amd64,linux/arm64", out);
        c.env("XDG_CACHE_HOME", &cache)
            .env("SOURCE_DATE_EPOCH", "1");
        for v in OPENSSL_VARIABLES {
            c.env_remove(v);
        }
        c
    };
    let out = tmp.path().join("oci");
    let o = run(&mut build_here(&out));
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("\nopenssl: static 3.6.3 (built by ironstar)\n"),
        "{err}"
    );
    for t in ["x86_64-unknown-linux-musl", "aarch64-unknown-linux-musl"] {
        assert!(
            err.contains(&format!("building OpenSSL 3.6.3 for {t}")),
            "{err}"
        );
    }
    let port = server.port.to_string();
    for platform in ["linux/amd64", "linux/arm64"] {
        let bin = binary_from_layout(&out, platform, "native-tls-hello", tmp.path());
        // Static (checked first), and trusts the test root when told to.
        let mut trusted = command_for(&bin, platform);
        trusted
            .args(["localhost", &port])
            .env("SSL_CERT_FILE", &root);
        assert_eq!(
            ok(&mut trusted),
            "hello from the test server\n",
            "{platform}"
        );
        // Without the root, the server's chain is refused.
        let mut untrusted = command_for(&bin, platform);
        untrusted
            .args(["localhost", &port])
            .env_remove("SSL_CERT_FILE")
            .env_remove("SSL_CERT_DIR");
        let o = run(&mut untrusted);
        assert!(!o.status.success(), "{platform}: trusted without the root");
        let said = common::stdout(&o);
        assert!(
            said.contains("certificate verify failed"),
            "{platform}: {said}"
        );
    }
    // The SBOM lists OpenSSL's C beside the crates.
    let sbom = String::from_utf8(support::sbom::sbom_of(&out, "linux/arm64")).unwrap();
    assert!(
        sbom.contains("pkg:cargo/openssl-src@300.6.1+3.6.3"),
        "{sbom}"
    );
    // Built once: the next build finds it in the cache.
    let amd64 = |out: &str, cache: &Path, target: &Path, home: &Path| {
        let mut c = build_in(
            "native-tls-hello",
            "linux/amd64",
            &tmp.path().join(out),
            target,
        );
        c.env("XDG_CACHE_HOME", cache)
            .env("SOURCE_DATE_EPOCH", "1")
            // Another HOME, with the same toolchains and zig's own cache.
            .env("HOME", home)
            .env("CARGO_HOME", dir_of("CARGO_HOME", ".cargo"))
            .env("RUSTUP_HOME", dir_of("RUSTUP_HOME", ".rustup"))
            .env(
                "ZIG_GLOBAL_CACHE_DIR",
                dir_of("ZIG_GLOBAL_CACHE_DIR", ".cache/zig"),
            );
        for v in OPENSSL_VARIABLES {
            c.env_remove(v);
        }
        let o = run(&mut c);
        let err = stderr(&o);
        assert!(o.status.success(), "{err}");
        (digest_line(&common::stdout(&o)), err)
    };
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap();
    let (cached, err) = amd64(
        "cached",
        &cache,
        &fixture_target_dir("native-tls-hello"),
        &home,
    );
    assert!(!err.contains("building OpenSSL"), "{err}");
    assert!(
        err.contains("OpenSSL 3.6.3 for x86_64-unknown-linux-musl: cached"),
        "{err}"
    );
    // Same bytes elsewhere: another HOME, cache and target directory build the same OpenSSL
    // and the same image.
    let other = tmp.path().join("other");
    let (fresh, err) = amd64("fresh", &other.join("cache"), &other.join("target"), &other);
    assert!(err.contains("building OpenSSL 3.6.3 for x86_64"), "{err}");
    assert_eq!(fresh, cached);
    let libs = |cache: &Path| {
        let dir = cache.join("ironstar/openssl/x86_64-unknown-linux-musl");
        let entry = std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .find(|e| !e.file_name().to_string_lossy().starts_with('.'));
        let lib = entry.unwrap().path().join("lib");
        ["libcrypto.a", "libssl.a"].map(|a| std::fs::read(lib.join(a)).unwrap())
    };
    assert!(
        libs(&cache) == libs(&other.join("cache")),
        "the libraries differ"
    );
}

/// `$VAR`, else `~/<default>`: the directory a tool uses under the real HOME.
fn dir_of(var: &str, default: &str) -> PathBuf {
    std::env::var_os(var)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap()).join(default))
}
