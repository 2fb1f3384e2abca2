//! An in-process fake registry (hyper on a loopback port) for fast tests of the client: blobs
//! and manifests in memory, and the behaviours real registries show one at a time: 413 for large
//! monolithic `PUT`s (ACR), refused mounts (Harbor), 429 with `Retry-After`, bearer tokens that
//! expire or are revoked, `PATCH`es of which only half is kept, the referrers API (or a 405 for
//! its unknown route). Beside the tests against the real
//! `docker-registry`, not instead of them.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt as _, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use sha2::Digest as _;

/// What the fake does beyond the happy path.
#[derive(Default, Clone)]
pub struct Behaviour {
    /// Answer 413 to a monolithic `PUT` whose body is larger than this (0: no limit).
    pub max_put: usize,
    /// Answer 403 DENIED to cross-repository mounts.
    pub refuse_mounts: bool,
    /// Keep only the first half of each `PATCH`.
    pub halve_patches: bool,
    /// Answer 429 with `Retry-After: 1` to this many requests first.
    pub throttle_first: usize,
    /// Bearer tokens from `/token` that live this long (`None`: no auth at all).
    pub token_lifetime: Option<Duration>,
    /// Have the referrers API: answer a manifest `PUT` with a `subject` with `OCI-Subject`, and
    /// `GET /v2/<name>/referrers/<digest>` with the index of those manifests.
    pub referrers_api: bool,
    /// Without the referrers API, answer its route with this status (default: 404).
    pub referrers_refusal: Option<StatusCode>,
    /// Hold each `GET` of a blob larger than this for a minute before answering (a pull that
    /// is under way when a signal comes).
    pub stall_blobs_over: Option<usize>,
}

#[derive(Default)]
pub struct State {
    pub blobs: Mutex<HashMap<String, Vec<u8>>>,
    pub manifests: Mutex<HashMap<String, (String, Vec<u8>)>>,
    /// Subject digest → descriptors of the manifests that name it (with the referrers API).
    referrers: Mutex<HashMap<String, Vec<serde_json::Value>>>,
    uploads: Mutex<HashMap<usize, Vec<u8>>>,
    next_upload: AtomicUsize,
    /// Token → when it was issued.
    tokens: Mutex<HashMap<String, Instant>>,
    pub tokens_issued: AtomicUsize,
    /// `METHOD path -> status` of every request.
    pub log: Mutex<Vec<String>>,
    throttled: AtomicUsize,
    /// Requests being answered now, and the most at once.
    pub in_flight: AtomicUsize,
    pub max_in_flight: AtomicUsize,
}

impl State {
    /// Make every token issued so far invalid (as a registry whose tokens expire early).
    pub fn revoke_tokens(&self) {
        self.tokens.lock().unwrap().clear();
    }

    /// Upload sessions started and neither finished nor cancelled.
    pub fn open_uploads(&self) -> usize {
        self.uploads.lock().unwrap().len()
    }

    pub fn count(&self, needle: &str) -> usize {
        let log = self.log.lock().unwrap();
        log.iter().filter(|l| l.contains(needle)).count()
    }
}

pub struct FakeRegistry {
    pub addr: SocketAddr,
    pub state: Arc<State>,
    stop: Arc<AtomicBool>,
}

impl FakeRegistry {
    pub fn start(behaviour: Behaviour) -> FakeRegistry {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(State::default());
        let stop = Arc::new(AtomicBool::new(false));
        let (st, sp) = (state.clone(), stop.clone());
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(serve(listener, behaviour, st, sp));
        });
        FakeRegistry { addr, state, stop }
    }

    /// `127.0.0.1:PORT/NAME`, a repository on the fake.
    pub fn repository(&self, name: &str) -> String {
        format!("{}/{name}", self.addr)
    }
}

impl Drop for FakeRegistry {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = std::net::TcpStream::connect(self.addr);
    }
}

async fn serve(
    listener: std::net::TcpListener,
    b: Behaviour,
    state: Arc<State>,
    stop: Arc<AtomicBool>,
) {
    let listener = tokio::net::TcpListener::from_std(listener).unwrap();
    let b = Arc::new(b);
    while let Ok((conn, _)) = listener.accept().await {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let (b, state) = (b.clone(), state.clone());
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let (b, state) = (b.clone(), state.clone());
                async move { Ok::<_, std::convert::Infallible>(handle(req, &b, &state).await) }
            });
            let io = hyper_util::rt::TokioIo::new(conn);
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(io, svc)
                .await;
        });
    }
}

type Resp = Response<Full<Bytes>>;

fn reply(status: StatusCode, headers: &[(&str, String)], body: Vec<u8>) -> Resp {
    let mut r = Response::builder().status(status);
    for (k, v) in headers {
        r = r.header(*k, v);
    }
    r.body(Full::new(Bytes::from(body))).unwrap()
}

fn error(status: StatusCode, code: &str) -> Resp {
    let body = format!(r#"{{"errors":[{{"code":"{code}","message":"fake"}}]}}"#);
    reply(status, &[], body.into_bytes())
}

fn digest_of(b: &[u8]) -> String {
    format!("sha256:{:x}", sha2::Sha256::digest(b))
}

async fn handle(req: Request<Incoming>, b: &Behaviour, s: &State) -> Resp {
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let now = s.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    s.max_in_flight.fetch_max(now, Ordering::SeqCst);
    let resp = route(req, b, s, &path, &query).await;
    s.in_flight.fetch_sub(1, Ordering::SeqCst);
    let line = format!("{method} {path} -> {}", resp.status().as_u16());
    s.log.lock().unwrap().push(line);
    resp
}

fn authorised(req: &Request<Incoming>, b: &Behaviour, s: &State) -> bool {
    let Some(lifetime) = b.token_lifetime else {
        return true;
    };
    let Some(auth) = req.headers().get("authorization") else {
        return false;
    };
    let token = auth.to_str().unwrap_or("").trim_start_matches("Bearer ");
    let tokens = s.tokens.lock().unwrap();
    tokens.get(token).is_some_and(|t| t.elapsed() < lifetime)
}

fn query_param<'a>(query: &'a str, key: &str) -> Option<&'a str> {
    query
        .split('&')
        .find_map(|p| p.strip_prefix(key)?.strip_prefix('='))
}

async fn route(req: Request<Incoming>, b: &Behaviour, s: &State, path: &str, query: &str) -> Resp {
    if s.throttled.fetch_add(1, Ordering::SeqCst) < b.throttle_first {
        return reply(
            StatusCode::TOO_MANY_REQUESTS,
            &[("retry-after", "1".into())],
            Vec::new(),
        );
    }
    if path == "/token" {
        let n = s.tokens_issued.fetch_add(1, Ordering::SeqCst);
        let token = format!("token-{n}");
        s.tokens
            .lock()
            .unwrap()
            .insert(token.clone(), Instant::now());
        let secs = b.token_lifetime.unwrap_or_default().as_secs();
        let body = format!(r#"{{"token":"{token}","expires_in":{secs}}}"#);
        return reply(StatusCode::OK, &[], body.into_bytes());
    }
    if !authorised(&req, b, s) {
        let host = req
            .headers()
            .get("host")
            .unwrap()
            .to_str()
            .unwrap()
            .to_string();
        let challenge = format!(r#"Bearer realm="http://{host}/token",service="fake""#);
        return reply(
            StatusCode::UNAUTHORIZED,
            &[("www-authenticate", challenge)],
            Vec::new(),
        );
    }
    let method = req.method().clone();
    let body = req.into_body().collect().await.unwrap().to_bytes().to_vec();
    if path == "/v2/" {
        return reply(StatusCode::OK, &[], Vec::new());
    }
    if let Some(id) = path.strip_prefix("/upload/") {
        let id: usize = id.parse().unwrap_or(usize::MAX);
        return upload(s, b, &method, id, query, body);
    }
    let Some(rest) = path.strip_prefix("/v2/") else {
        return error(StatusCode::NOT_FOUND, "NAME_UNKNOWN");
    };
    if rest.ends_with("/blobs/uploads/") {
        if let Some(d) = query_param(query, "mount") {
            let d = d.replace("%3A", ":");
            if b.refuse_mounts {
                return error(StatusCode::FORBIDDEN, "DENIED");
            }
            if s.blobs.lock().unwrap().contains_key(&d) {
                return reply(StatusCode::CREATED, &[], Vec::new());
            }
        }
        let id = s.next_upload.fetch_add(1, Ordering::SeqCst);
        s.uploads.lock().unwrap().insert(id, Vec::new());
        return reply(
            StatusCode::ACCEPTED,
            &[
                ("location", format!("/upload/{id}")),
                ("range", "0-0".into()),
            ],
            Vec::new(),
        );
    }
    if let Some((_, d)) = rest.split_once("/blobs/") {
        let size = s.blobs.lock().unwrap().get(d).map_or(0, Vec::len);
        if b.stall_blobs_over.is_some_and(|n| size > n) && method == hyper::Method::GET {
            tokio::time::sleep(Duration::from_secs(60)).await;
        }
        let blobs = s.blobs.lock().unwrap();
        return match blobs.get(d) {
            Some(b) if method == hyper::Method::GET => reply(StatusCode::OK, &[], b.clone()),
            Some(b) => reply(
                StatusCode::OK,
                &[("content-length", b.len().to_string())],
                Vec::new(),
            ),
            None => error(StatusCode::NOT_FOUND, "BLOB_UNKNOWN"),
        };
    }
    if let Some((_, reference)) = rest.split_once("/manifests/") {
        return manifest(s, b, &method, reference, body);
    }
    if let Some((_, subject)) = rest.split_once("/referrers/") {
        return referrers(s, b, subject);
    }
    error(StatusCode::NOT_FOUND, "NAME_UNKNOWN")
}

fn upload(
    s: &State,
    b: &Behaviour,
    method: &hyper::Method,
    id: usize,
    query: &str,
    body: Vec<u8>,
) -> Resp {
    let mut uploads = s.uploads.lock().unwrap();
    let Some(data) = uploads.get_mut(&id) else {
        return error(StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN");
    };
    if *method == hyper::Method::DELETE {
        uploads.remove(&id);
        return reply(StatusCode::NO_CONTENT, &[], Vec::new());
    }
    if *method == hyper::Method::PATCH {
        let keep = if b.halve_patches && body.len() >= 2 {
            body.len() / 2
        } else {
            body.len()
        };
        data.extend_from_slice(&body[..keep]);
        let end = data.len().saturating_sub(1);
        return reply(
            StatusCode::ACCEPTED,
            &[
                ("location", format!("/upload/{id}")),
                ("range", format!("0-{end}")),
            ],
            Vec::new(),
        );
    }
    if b.max_put > 0 && body.len() > b.max_put {
        return error(StatusCode::PAYLOAD_TOO_LARGE, "SIZE_INVALID");
    }
    data.extend_from_slice(&body);
    let want = query_param(query, "digest")
        .unwrap_or("")
        .replace("%3A", ":");
    let got = digest_of(data);
    if want != got {
        return error(StatusCode::BAD_REQUEST, "DIGEST_INVALID");
    }
    let data = uploads.remove(&id).unwrap();
    s.blobs.lock().unwrap().insert(got.clone(), data);
    reply(
        StatusCode::CREATED,
        &[("docker-content-digest", got)],
        Vec::new(),
    )
}

fn manifest(
    s: &State,
    b: &Behaviour,
    method: &hyper::Method,
    reference: &str,
    body: Vec<u8>,
) -> Resp {
    let mut manifests = s.manifests.lock().unwrap();
    if *method == hyper::Method::PUT {
        let d = digest_of(&body);
        let mut headers = vec![("docker-content-digest", d.clone())];
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        if let (true, Some(subject)) = (b.referrers_api, json["subject"]["digest"].as_str()) {
            let descriptor = serde_json::json!({
                "mediaType": json["mediaType"],
                "digest": d,
                "size": body.len(),
                "artifactType": json["artifactType"],
            });
            let mut referrers = s.referrers.lock().unwrap();
            referrers
                .entry(subject.to_string())
                .or_default()
                .push(descriptor);
            headers.push(("oci-subject", subject.to_string()));
        }
        let entry = ("application/vnd.oci.image.index.v1+json".to_string(), body);
        manifests.insert(d.clone(), entry.clone());
        manifests.insert(reference.to_string(), entry);
        return reply(StatusCode::CREATED, &headers, Vec::new());
    }
    match manifests.get(reference) {
        Some((mt, bytes)) => {
            let headers = [
                ("content-type", mt.clone()),
                ("docker-content-digest", digest_of(bytes)),
            ];
            let body = if *method == hyper::Method::GET {
                bytes.clone()
            } else {
                Vec::new()
            };
            reply(StatusCode::OK, &headers, body)
        }
        None => error(StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN"),
    }
}

fn referrers(s: &State, b: &Behaviour, subject: &str) -> Resp {
    if !b.referrers_api {
        let status = b.referrers_refusal.unwrap_or(StatusCode::NOT_FOUND);
        return error(status, "UNSUPPORTED");
    }
    let list = s.referrers.lock().unwrap();
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": list.get(subject).cloned().unwrap_or_default(),
    });
    let mt = "application/vnd.oci.image.index.v1+json".to_string();
    let body = serde_json::to_vec(&index).unwrap();
    reply(StatusCode::OK, &[("content-type", mt)], body)
}
