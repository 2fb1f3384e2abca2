//! A small token server for distribution's `auth: token:`: it checks Basic credentials and signs
//! ES256 JWTs whose `x5c` header carries a self-signed certificate that is also the registry's
//! `rootcertbundle`. Key and certificate come from the `openssl` CLI; signing from `ring`.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use ring::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};

pub const SERVICE: &str = "ironstar-test-registry";
pub const ISSUER: &str = "ironstar-test-issuer";
/// How long past `exp` distribution still takes a token.
const LEEWAY: u64 = 60;

pub struct TokenServer {
    pub port: u16,
    pub cert: PathBuf,
    /// Every token handed out, to check none leaks into logs.
    pub issued: Arc<Mutex<Vec<String>>>,
    /// Every `Authorization` header received (to check what was sent, and that it never leaks).
    pub requests: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

/// Run the `openssl` CLI in `dir`.
pub fn openssl(dir: &std::path::Path, args: &[&str]) {
    let st = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("`openssl` is not installed: apt-get install openssl");
    assert!(
        st.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&st.stderr)
    );
}

impl TokenServer {
    pub fn start(user: &str, password: &str) -> TokenServer {
        Self::start_with_lifetime(user, password, Duration::from_secs(600))
    }

    /// Tokens that the registry refuses `lifetime` (to a second later) after they were issued,
    /// and that say so in `expires_in`. distribution accepts a token up to 60 s past its `exp`
    /// (clock skew), so `exp` is set that much earlier.
    pub fn start_with_lifetime(user: &str, password: &str, lifetime: Duration) -> TokenServer {
        let dir = tempfile::tempdir().unwrap();
        openssl(
            dir.path(),
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-keyout",
                "key.pem",
                "-out",
                "cert.pem",
                "-days",
                "2",
                "-subj",
                "/CN=ironstar-test-token",
            ],
        );
        openssl(
            dir.path(),
            &[
                "pkcs8", "-topk8", "-nocrypt", "-in", "key.pem", "-outform", "DER", "-out",
                "key.der",
            ],
        );
        openssl(
            dir.path(),
            &[
                "x509", "-in", "cert.pem", "-outform", "DER", "-out", "cert.der",
            ],
        );
        let key_der = std::fs::read(dir.path().join("key.der")).unwrap();
        let cert_der = std::fs::read(dir.path().join("cert.der")).unwrap();
        let rng = ring::rand::SystemRandom::new();
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &key_der, &rng)
            .expect("P-256 PKCS#8 key");
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let issued = Arc::new(Mutex::new(Vec::new()));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let x5c = base64::engine::general_purpose::STANDARD.encode(&cert_der);
        let expected = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
        );
        let (st, iss, reqs) = (stop.clone(), issued.clone(), requests.clone());
        let thread = std::thread::spawn(move || {
            while !st.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut conn, _)) => {
                        let _ = conn.set_nonblocking(false);
                        let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
                        let _ = serve(
                            &mut conn, &key, &rng, &x5c, &expected, &iss, &reqs, lifetime,
                        );
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        TokenServer {
            port,
            cert: dir.path().join("cert.pem"),
            issued,
            requests,
            stop,
            thread: Some(thread),
            _dir: dir,
        }
    }

    pub fn realm(&self) -> String {
        format!("http://127.0.0.1:{}/token", self.port)
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn b64url(b: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let h = u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap_or(b'?');
                out.push(h);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[allow(clippy::too_many_arguments)]
fn serve(
    conn: &mut TcpStream,
    key: &EcdsaKeyPair,
    rng: &ring::rand::SystemRandom,
    x5c: &str,
    expected_auth: &str,
    issued: &Mutex<Vec<String>>,
    requests: &Mutex<Vec<String>>,
    lifetime: Duration,
) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = conn.read(&mut chunk)?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let text = String::from_utf8_lossy(&buf).into_owned();
    let target = text.split(' ').nth(1).unwrap_or("");
    let auth = text
        .split("\r\n")
        .find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case("authorization")
                .then(|| v.trim().to_string())
        })
        .unwrap_or_default();
    requests.lock().unwrap().push(auth.clone());
    let reply = |conn: &mut TcpStream, status: &str, body: &str| {
        write!(
            conn,
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    };
    let authenticated = auth == expected_auth;
    if !auth.is_empty() && !authenticated {
        return reply(
            conn,
            "401 Unauthorized",
            r#"{"errors":[{"code":"UNAUTHORIZED","message":"bad credentials"}]}"#,
        );
    }
    let query = target.split_once('?').map(|(_, q)| q).unwrap_or("");
    let mut access = Vec::new();
    for pair in query.split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if k != "scope" {
            continue;
        }
        for scope in percent_decode(v).split(' ') {
            let mut it = scope.splitn(2, ':');
            let kind = it.next().unwrap_or("");
            let rest = it.next().unwrap_or("");
            let Some((name, actions)) = rest.rsplit_once(':') else {
                continue;
            };
            // Anonymous users get nothing; authenticated ones what they ask.
            let actions: Vec<&str> = if authenticated {
                actions.split(',').collect()
            } else {
                Vec::new()
            };
            access.push(serde_json::json!({"type": kind, "name": name, "actions": actions}));
        }
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let header = serde_json::json!({"alg": "ES256", "typ": "JWT", "x5c": [x5c]});
    let claims = serde_json::json!({
        "iss": ISSUER, "sub": "tester", "aud": SERVICE,
        "exp": (now + 1 + lifetime.as_secs()).saturating_sub(LEEWAY), "nbf": now - 60, "iat": now,
        "jti": format!("{:016x}", fastrand::u64(..)),
        "access": access,
    });
    let signing_input = format!(
        "{}.{}",
        b64url(header.to_string().as_bytes()),
        b64url(claims.to_string().as_bytes())
    );
    let sig = key.sign(rng, signing_input.as_bytes()).expect("sign token");
    let token = format!("{signing_input}.{}", b64url(sig.as_ref()));
    issued.lock().unwrap().push(token.clone());
    let body =
        serde_json::json!({"token": token, "access_token": token, "expires_in": lifetime.as_secs()}).to_string();
    reply(conn, "200 OK", &body)
}
