//! A fault-injecting HTTP/1.1 reverse proxy on 127.0.0.1 in front of a registry.
//!
//! One request per client connection (it answers `Connection: close`). It counts requests by
//! kind, refuses chunked request bodies (the client must always send `Content-Length`), and can
//! fail a seeded, deterministic fraction of requests with 503, with 429 + `Retry-After: 1`, or by
//! resetting the connection halfway through the request body; it can also rewrite every
//! `Docker-Content-Digest` to a wrong value, delay each request, or refuse large blob `PUT`s.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub const WRONG_DIGEST: &str =
    "sha256:0000000000000000000000000000000000000000000000000000000000000000";

#[derive(Clone, Default)]
pub struct Faults {
    /// Fraction of requests to fail, 0.0–1.0.
    pub fail_rate: f64,
    pub seed: u64,
    pub rewrite_digest: bool,
    /// Turn absolute `Location`s into relative ones (`/v2/…?…`), as some registries send.
    pub relative_location: bool,
    pub delay: Duration,
    /// Answer 413 to a blob upload `PUT` whose body is larger than this (0: no limit), as ACR
    /// does to large monolithic uploads.
    pub max_blob_put: usize,
    /// Forward only the first half of each blob `PATCH` (its `Content-Length` and
    /// `Content-Range` rewritten to match), as a registry that keeps less than it was sent.
    pub halve_patches: bool,
    /// Answer 403 DENIED to every cross-repository mount request.
    pub refuse_mounts: bool,
    /// Answer a manifest `PUT` with a `subject` with `OCI-Subject`, as a registry with the
    /// referrers API does.
    pub oci_subject: bool,
    /// Answer `GET /v2/<name>/referrers/<digest>` with 200 and an empty image index, as a
    /// registry with the referrers API does.
    pub referrers_api: bool,
    /// Answer 403 DENIED to every manifest `PUT` of this repository (its path, `org/app`), as a
    /// registry refusing one repository to a token does.
    pub refuse_manifests_of: Option<String>,
    /// Answer 403 DENIED to a manifest `PUT` whose path ends with this (e.g. `.sig`), as a
    /// registry whose policy refuses such tags.
    pub deny_manifest_suffix: Option<&'static str>,
}

#[derive(Default)]
pub struct Stats {
    pub requests: AtomicUsize,
    /// POST, PATCH and PUT under `/blobs/uploads/`.
    pub blob_upload_requests: AtomicUsize,
    pub blob_bytes: AtomicU64,
    pub faults: AtomicUsize,
    pub resets: AtomicUsize,
    pub throttles: AtomicUsize,
    pub unavailable: AtomicUsize,
    pub chunked_bodies: AtomicUsize,
    pub too_large: AtomicUsize,
    pub log: Mutex<Vec<String>>,
    /// `METHOD path`, when its connection was accepted and when the proxy was done with it.
    pub spans: Mutex<Vec<(String, Instant, Instant)>>,
}

impl Stats {
    /// The sequential round trips of what the proxy saw: the longest chain of requests each
    /// of which started after the one before it ended (requests in flight together count once).
    pub fn round_trips(&self) -> usize {
        let mut spans = self.spans.lock().unwrap().clone();
        spans.sort_by_key(|s| s.2);
        let mut depth: Vec<usize> = Vec::with_capacity(spans.len());
        for (i, (_, start, _)) in spans.iter().enumerate() {
            let before = (0..i).filter(|&j| spans[j].2 <= *start).map(|j| depth[j]);
            depth.push(1 + before.max().unwrap_or(0));
        }
        depth.into_iter().max().unwrap_or(0)
    }

    /// The requests in the order they started, each with the round trip it belongs to, for
    /// a failure message.
    pub fn timeline(&self) -> Vec<String> {
        let mut spans = self.spans.lock().unwrap().clone();
        spans.sort_by_key(|s| s.1);
        let t0 = spans.first().map(|s| s.1);
        spans
            .iter()
            .map(|(what, a, b)| {
                let ms = |t: &Instant| t.duration_since(t0.unwrap()).as_millis();
                format!("{:>5}–{:<5} ms {what}", ms(a), ms(b))
            })
            .collect()
    }
}

pub struct Proxy {
    pub port: u16,
    pub stats: Arc<Stats>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Proxy {
    pub fn start(upstream: u16, faults: Faults) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let stats = Arc::new(Stats::default());
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st) = (stats.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !st.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        let (s, f) = (s.clone(), faults.clone());
                        std::thread::spawn(move || {
                            let _ = conn.set_nonblocking(false);
                            let _ = conn.set_read_timeout(Some(Duration::from_secs(30)));
                            let (started, mut what) = (Instant::now(), String::new());
                            let _ = handle(conn, upstream, &f, &s, &mut what);
                            let span = (what, started, Instant::now());
                            s.spans.lock().unwrap().push(span);
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Proxy {
            port,
            stats,
            stop,
            thread: Some(thread),
        }
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn get(&self, c: &AtomicUsize) -> usize {
        c.load(Ordering::SeqCst)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// splitmix64: the same seed gives the same faults on the same request numbers.
fn uniform(seed: u64, n: u64) -> f64 {
    let mut z = seed.wrapping_add(n.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

fn read_head(conn: &mut TcpStream) -> std::io::Result<(Vec<u8>, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = buf.split_off(i + 4);
            return Ok((buf, rest));
        }
        let n = conn.read(&mut chunk)?;
        if n == 0 || buf.len() > 1 << 20 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn respond(conn: &mut TcpStream, status: &str, extra: &str) {
    let body =
        format!("{{\"errors\":[{{\"code\":\"UNAVAILABLE\",\"message\":\"injected {status}\"}}]}}");
    let _ = write!(
        conn,
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{extra}Connection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = conn.flush();
    let _ = conn.shutdown(Shutdown::Write);
}

fn handle(
    mut conn: TcpStream,
    upstream: u16,
    f: &Faults,
    s: &Stats,
    what: &mut String,
) -> std::io::Result<()> {
    let (head, mut body) = read_head(&mut conn)?;
    let n = s.requests.fetch_add(1, Ordering::SeqCst) as u64;
    let text = String::from_utf8_lossy(&head).into_owned();
    let mut lines = text.split("\r\n");
    let request_line = lines.next().unwrap_or("").to_string();
    let mut parts = request_line.split(' ');
    let method = parts.next().unwrap_or("").to_string();
    let path = parts.next().unwrap_or("").to_string();
    *what = format!("{method} {}", path.split('?').next().unwrap_or(""));
    let mut content_length = 0usize;
    let mut chunked = false;
    let mut forwarded = format!("{request_line}\r\n");
    for line in lines.filter(|l| !l.is_empty()) {
        let (name, value) = line.split_once(':').unwrap_or((line, ""));
        let lname = name.trim().to_ascii_lowercase();
        match lname.as_str() {
            "content-length" => content_length = value.trim().parse().unwrap_or(0),
            "transfer-encoding" if value.to_ascii_lowercase().contains("chunked") => chunked = true,
            "connection" | "keep-alive" => continue,
            _ => {}
        }
        forwarded.push_str(line);
        forwarded.push_str("\r\n");
    }
    forwarded.push_str("Connection: close\r\n\r\n");
    let upload = path.contains("/blobs/uploads") && method != "HEAD" && method != "GET";
    if upload {
        s.blob_upload_requests.fetch_add(1, Ordering::SeqCst);
        s.blob_bytes
            .fetch_add(content_length as u64, Ordering::SeqCst);
    }
    if chunked {
        s.chunked_bodies.fetch_add(1, Ordering::SeqCst);
        respond(&mut conn, "411 Length Required", "");
        return Ok(());
    }
    if !f.delay.is_zero() {
        std::thread::sleep(f.delay);
    }
    let short_path = path.split('?').next().unwrap_or("").to_string();
    if f.referrers_api && method == "GET" && short_path.contains("/referrers/") {
        let body = r#"{"manifests":[],"mediaType":"application/vnd.oci.image.index.v1+json","schemaVersion":2}"#;
        write!(
            conn,
            "HTTP/1.1 200 OK\r\nContent-Type: application/vnd.oci.image.index.v1+json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )?;
        s.log
            .lock()
            .unwrap()
            .push(format!("{method} {short_path} -> 200"));
        return Ok(());
    }
    if upload && method == "PUT" && f.max_blob_put > 0 && content_length > f.max_blob_put {
        read_body(&mut conn, &mut body, content_length)?;
        let what = format!("{method} {short_path}");
        refuse(
            &mut conn,
            s,
            &s.too_large,
            &what,
            "413 Payload Too Large",
            "",
        );
        return Ok(());
    }
    let refused_repo = f
        .refuse_manifests_of
        .as_ref()
        .is_some_and(|r| short_path.starts_with(&format!("/v2/{r}/manifests/")));
    if refused_repo && method == "PUT" {
        read_body(&mut conn, &mut body, content_length)?;
        let what = format!("{method} {short_path}");
        refuse(&mut conn, s, &s.faults, &what, "403 Forbidden", "");
        return Ok(());
    }
    if f.refuse_mounts && method == "POST" && path.contains("mount=") {
        read_body(&mut conn, &mut body, content_length)?;
        let what = format!("{method} {short_path}");
        refuse(&mut conn, s, &s.faults, &what, "403 Forbidden", "");
        return Ok(());
    }
    let denied = f
        .deny_manifest_suffix
        .is_some_and(|x| short_path.contains("/manifests/") && short_path.ends_with(x));
    if method == "PUT" && denied {
        read_body(&mut conn, &mut body, content_length)?;
        let what = format!("{method} {short_path}");
        refuse(&mut conn, s, &s.faults, &what, "403 Forbidden", "");
        return Ok(());
    }
    let fault = f.fail_rate > 0.0 && uniform(f.seed, n) < f.fail_rate;
    if fault {
        s.faults.fetch_add(1, Ordering::SeqCst);
        match n % 3 {
            0 => {
                // Reset mid-body: read half of the body (if any), then drop the connection.
                s.resets.fetch_add(1, Ordering::SeqCst);
                s.log
                    .lock()
                    .unwrap()
                    .push(format!("{method} {short_path} -> reset"));
                let mut want = content_length / 2;
                want = want.saturating_sub(body.len().min(want));
                let mut sink = vec![0u8; 8192];
                while want > 0 {
                    let k = conn.read(&mut sink[..want.min(8192)])?;
                    if k == 0 {
                        break;
                    }
                    want -= k;
                }
                drop(conn);
                return Ok(());
            }
            k => {
                read_body(&mut conn, &mut body, content_length)?;
                let what = format!("{method} {short_path}");
                if k == 1 {
                    let retry = "Retry-After: 1\r\n";
                    refuse(
                        &mut conn,
                        s,
                        &s.throttles,
                        &what,
                        "429 Too Many Requests",
                        retry,
                    );
                } else {
                    refuse(
                        &mut conn,
                        s,
                        &s.unavailable,
                        &what,
                        "503 Service Unavailable",
                        "",
                    );
                }
                return Ok(());
            }
        }
    }
    read_body(&mut conn, &mut body, content_length)?;
    if f.halve_patches && upload && method == "PATCH" && content_length >= 2 {
        forwarded = halve(&forwarded, &mut body);
    }
    let mut up = TcpStream::connect(("127.0.0.1", upstream))?;
    up.set_read_timeout(Some(Duration::from_secs(60)))?;
    up.write_all(forwarded.as_bytes())?;
    up.write_all(&body)?;
    let mut resp = Vec::new();
    up.read_to_end(&mut resp)?;
    let split = resp
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 4)
        .unwrap_or(resp.len());
    let (rhead, rbody) = resp.split_at(split);
    let mut rhead = String::from_utf8_lossy(rhead).into_owned();
    let status = rhead.split(' ').nth(1).unwrap_or("?").to_string();
    if f.relative_location {
        rhead = rhead
            .split("\r\n")
            .map(|l| match l.split_once(':') {
                Some((n, v)) if n.eq_ignore_ascii_case("location") => {
                    let v = v.trim();
                    let rel = v
                        .strip_prefix("http://")
                        .and_then(|r| r.find('/').map(|i| &r[i..]))
                        .unwrap_or(v);
                    format!("Location: {rel}")
                }
                _ => l.to_string(),
            })
            .collect::<Vec<_>>()
            .join("\r\n");
    }
    if f.oci_subject && method == "PUT" && short_path.contains("/manifests/") {
        let subject = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["subject"]["digest"].as_str().map(str::to_string));
        if let Some(d) = subject {
            rhead = rhead.replacen("\r\n", &format!("\r\nOCI-Subject: {d}\r\n"), 1);
        }
    }
    if f.rewrite_digest {
        rhead = rhead
            .split("\r\n")
            .map(|l| {
                if l.to_ascii_lowercase().starts_with("docker-content-digest:") {
                    format!("Docker-Content-Digest: {WRONG_DIGEST}")
                } else {
                    l.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("\r\n");
    }
    s.log
        .lock()
        .unwrap()
        .push(format!("{method} {short_path} -> {status}"));
    conn.write_all(rhead.as_bytes())?;
    conn.write_all(rbody)?;
    conn.flush()?;
    let _ = conn.shutdown(Shutdown::Write);
    Ok(())
}

/// Answer `status` in the registry's stead, counting it in `counter` and the log.
fn refuse(
    conn: &mut TcpStream,
    s: &Stats,
    counter: &AtomicUsize,
    what: &str,
    status: &str,
    headers: &str,
) {
    counter.fetch_add(1, Ordering::SeqCst);
    let code = status.split(' ').next().unwrap_or(status);
    s.log.lock().unwrap().push(format!("{what} -> {code}"));
    respond(conn, status, headers);
}

fn read_body(conn: &mut TcpStream, body: &mut Vec<u8>, len: usize) -> std::io::Result<()> {
    let mut chunk = vec![0u8; 64 << 10];
    while body.len() < len {
        let n = conn.read(&mut chunk)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        body.extend_from_slice(&chunk[..n]);
    }
    body.truncate(len);
    Ok(())
}

/// The request head for the first half of `body` (which is cut to it): `Content-Length` and
/// `Content-Range` (`start-end`) rewritten.
fn halve(head: &str, body: &mut Vec<u8>) -> String {
    let keep = body.len() / 2;
    body.truncate(keep);
    head.split("\r\n")
        .map(|l| match l.split_once(':') {
            Some((n, _)) if n.eq_ignore_ascii_case("content-length") => {
                format!("Content-Length: {keep}")
            }
            Some((n, v)) if n.eq_ignore_ascii_case("content-range") => {
                let start: usize = v
                    .trim()
                    .split('-')
                    .next()
                    .unwrap_or("0")
                    .parse()
                    .unwrap_or(0);
                format!("Content-Range: {start}-{}", start + keep - 1)
            }
            _ => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\r\n")
}
