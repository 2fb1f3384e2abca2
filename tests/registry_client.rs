//! The registry client against the in-process fake registry: fast tests of one behaviour each
//! (413 fallback, refused mounts, Retry-After, token expiry and revocation, Range resume, the
//! referrers API and `OCI-Subject`).

mod support;

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use ironstar::registry::{BlobOutcome, Client, ClientOptions, Repository, Tag, Target};
use ironstar::Digest;
use support::fake::{Behaviour, FakeRegistry};

fn client(fake: &FakeRegistry, name: &str, chunk_size: Option<u64>) -> Client {
    let repo = Repository::parse(&fake.repository(name)).unwrap();
    let opts = ClientOptions {
        plain_http: true,
        chunk_size,
        max_attempts: 3,
        credential: None,
        pull_only: false,
        quiet_retries: false,
    };
    Client::new(&repo, opts).unwrap()
}

/// A blob of `size` bytes on disk, its digest.
fn blob(size: usize) -> (tempfile::TempDir, PathBuf, Digest, Vec<u8>) {
    let bytes: Vec<u8> = (0..size).map(|i| (i * 31 % 251) as u8).collect();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("blob");
    std::fs::write(&path, &bytes).unwrap();
    (dir, path, Digest::of(&bytes), bytes)
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn a_put_refused_as_too_large_goes_up_in_chunks() {
    let fake = FakeRegistry::start(Behaviour {
        max_put: 1000,
        ..Default::default()
    });
    let c = client(&fake, "acr/app", None);
    let (_d, path, digest, bytes) = blob(5000);
    let how = rt()
        .block_on(c.push_blob(&digest, 5000, &path, None, None))
        .unwrap();
    assert_eq!(how, BlobOutcome::Uploaded);
    assert_eq!(fake.state.blobs.lock().unwrap()[&digest.to_string()], bytes);
    assert_eq!(fake.state.count("PUT /upload/0 -> 413"), 1);
    assert!(fake.state.count("PATCH") >= 2);
}

#[test]
fn a_refused_mount_becomes_an_upload() {
    let fake = FakeRegistry::start(Behaviour {
        refuse_mounts: true,
        ..Default::default()
    });
    let c = client(&fake, "two/app", None);
    let from = Repository::parse(&fake.repository("one/app")).unwrap();
    let (_d, path, digest, _) = blob(300);
    let how = rt()
        .block_on(c.push_blob(&digest, 300, &path, Some(&from), None))
        .unwrap();
    assert_eq!(how, BlobOutcome::Uploaded);
    assert_eq!(
        fake.state.count("POST /v2/two/app/blobs/uploads/ -> 403"),
        1
    );
}

#[test]
fn retry_after_is_honoured() {
    let fake = FakeRegistry::start(Behaviour {
        throttle_first: 1,
        ..Default::default()
    });
    let c = client(&fake, "slow/app", None);
    let started = Instant::now();
    rt().block_on(c.ping()).unwrap();
    let took = started.elapsed();
    assert!(took >= Duration::from_secs(1), "retried after {took:?}");
    assert!(took < Duration::from_secs(3), "took {took:?}");
    assert_eq!(fake.state.count("GET /v2/ -> 429"), 1);
    assert_eq!(fake.state.count("GET /v2/ -> 200"), 1);
}

#[test]
fn tokens_are_renewed_before_they_expire_and_once_when_revoked() {
    let fake = FakeRegistry::start(Behaviour {
        token_lifetime: Some(Duration::from_secs(2)),
        ..Default::default()
    });
    let c = client(&fake, "tok/app", None);
    let (_d, path, digest, _) = blob(100);
    let rt = rt();
    rt.block_on(async {
        c.ping().await.unwrap();
        assert!(!c.blob_exists(&digest).await.unwrap());
        assert_eq!(
            fake.state
                .tokens_issued
                .load(std::sync::atomic::Ordering::SeqCst),
            1
        );
        // Past the refresh point (a second before the end): a new token before any 401.
        tokio::time::sleep(Duration::from_millis(1200)).await;
        let refused = fake.state.count("-> 401");
        assert!(!c.blob_exists(&digest).await.unwrap());
        assert_eq!(
            fake.state
                .tokens_issued
                .load(std::sync::atomic::Ordering::SeqCst),
            2
        );
        assert_eq!(fake.state.count("-> 401"), refused, "a 401 before renewal");
        // Revoked mid-push: the 401 is answered by one new token, the upload goes on.
        fake.state.revoke_tokens();
        let how = c.push_blob(&digest, 100, &path, None, None).await.unwrap();
        assert_eq!(how, BlobOutcome::Uploaded);
        assert_eq!(
            fake.state
                .tokens_issued
                .load(std::sync::atomic::Ordering::SeqCst),
            3
        );
    });
}

#[test]
fn chunks_follow_the_registrys_range() {
    let fake = FakeRegistry::start(Behaviour {
        halve_patches: true,
        ..Default::default()
    });
    let c = client(&fake, "half/app", Some(1000));
    let (_d, path, digest, bytes) = blob(4500);
    rt().block_on(c.push_blob(&digest, 4500, &path, None, None))
        .unwrap();
    assert_eq!(fake.state.blobs.lock().unwrap()[&digest.to_string()], bytes);
}

#[test]
fn manifests_by_tag_and_digest() {
    let fake = FakeRegistry::start(Behaviour::default());
    let c = client(&fake, "man/app", None);
    let body = br#"{"schemaVersion":2,"manifests":[]}"#;
    let digest = Digest::of(body);
    let tag = Tag::parse("v1").unwrap();
    let mt = "application/vnd.oci.image.index.v1+json";
    rt().block_on(async {
        assert_eq!(c.manifest_digest(Target::Tag(&tag)).await.unwrap(), None);
        c.put_manifest(Target::Tag(&tag), mt, body, &digest)
            .await
            .unwrap();
        assert_eq!(
            c.manifest_digest(Target::Tag(&tag)).await.unwrap(),
            Some(digest.clone())
        );
        let got = c
            .get_manifest(Target::Digest(&digest))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&got.bytes[..], body);
        assert_eq!(got.media_type, mt);
        // No referrers API on this registry: none, not an error.
        assert!(c.referrers(&digest).await.unwrap().is_none());
    });
}

/// A manifest whose `subject` is `subject`, as an SBOM's.
fn referrer_of(subject: &Digest) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "artifactType": "application/spdx+json",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": Digest::of(b"{}").to_string(), "size": 2},
        "layers": [],
        "subject": {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": subject.to_string(), "size": 2},
    }))
    .unwrap()
}

#[test]
fn oci_subject_and_the_referrers_api_are_detected() {
    let fake = FakeRegistry::start(Behaviour {
        referrers_api: true,
        ..Default::default()
    });
    let c = client(&fake, "ref/app", None);
    let subject = Digest::of(b"{}");
    let body = referrer_of(&subject);
    let digest = Digest::of(&body);
    let mt = "application/vnd.oci.image.manifest.v1+json";
    rt().block_on(async {
        let empty = c
            .referrers(&subject)
            .await
            .unwrap()
            .expect("the API answers");
        let v: serde_json::Value = serde_json::from_slice(&empty).unwrap();
        assert_eq!(v["manifests"], serde_json::json!([]));
        let indexed = c
            .put_manifest_subject(Target::Digest(&digest), mt, &body, &digest)
            .await
            .unwrap();
        assert!(indexed, "OCI-Subject was answered");
        let index = c.referrers(&subject).await.unwrap().unwrap();
        let v: serde_json::Value = serde_json::from_slice(&index).unwrap();
        assert_eq!(v["manifests"][0]["digest"], digest.to_string());
        assert_eq!(v["manifests"][0]["artifactType"], "application/spdx+json");
    });
}

#[test]
fn without_the_referrers_api_nothing_is_indexed_and_a_405_is_no_error() {
    let fake = FakeRegistry::start(Behaviour {
        referrers_refusal: Some(hyper::StatusCode::METHOD_NOT_ALLOWED),
        ..Default::default()
    });
    let c = client(&fake, "noref/app", None);
    let subject = Digest::of(b"{}");
    let body = referrer_of(&subject);
    let digest = Digest::of(&body);
    let mt = "application/vnd.oci.image.manifest.v1+json";
    rt().block_on(async {
        let indexed = c
            .put_manifest_subject(Target::Digest(&digest), mt, &body, &digest)
            .await
            .unwrap();
        assert!(!indexed, "no OCI-Subject without the API");
        assert!(c.referrers(&subject).await.unwrap().is_none());
    });
    assert_eq!(fake.state.count(" -> 405"), 1, "a 405 is not retried");
}

#[test]
fn a_small_blob_is_read_back_and_checked() {
    let fake = FakeRegistry::start(Behaviour::default());
    let c = client(&fake, "blob/app", None);
    let (_d, path, digest, bytes) = blob(3000);
    rt().block_on(async {
        c.push_blob(&digest, 3000, &path, None, None).await.unwrap();
        assert_eq!(&c.get_blob(&digest, 3000).await.unwrap()[..], &bytes[..]);
        let too_small = c.get_blob(&digest, 2999).await.unwrap_err();
        assert!(
            too_small.to_string().contains("more than 2999 bytes"),
            "{too_small}"
        );
        let absent = c.get_blob(&Digest::of(b"x"), 10).await.unwrap_err();
        assert!(
            absent.to_string().contains("not in the registry"),
            "{absent}"
        );
    });
}

/// Parallel requests share one token fetch, with the challenge known from a ping or not (the
/// first requests of a push go out together, before any challenge is known: all meet a 401).
fn parallel_heads_share_one_token(ping: bool) {
    let fake = FakeRegistry::start(Behaviour {
        token_lifetime: Some(Duration::from_secs(60)),
        ..Default::default()
    });
    let c = client(&fake, "par/app", None);
    rt().block_on(async {
        if ping {
            c.ping().await.unwrap();
        }
        let digests: Vec<Digest> = (0..8u8).map(|i| Digest::of(&[i])).collect();
        let all = digests.iter().map(|d| c.blob_exists(d));
        for r in futures_util::future::join_all(all).await {
            assert!(!r.unwrap());
        }
    });
    let issued = fake.state.tokens_issued.load(Ordering::SeqCst);
    assert_eq!(issued, 1, "{:#?}", fake.state.log.lock().unwrap());
}

#[test]
fn parallel_requests_share_one_token_fetch() {
    parallel_heads_share_one_token(true);
}

#[test]
fn parallel_first_requests_without_a_ping_share_one_token_fetch() {
    parallel_heads_share_one_token(false);
}

/// `push_blob` checks and opens the upload in one go: a blob the registry lacks is uploaded,
/// one it holds is not, and the session opened for it is cancelled.
#[test]
fn push_blob_uploads_only_what_is_missing_and_leaves_no_session_open() {
    let fake = FakeRegistry::start(Behaviour::default());
    let c = client(&fake, "ensure/app", None);
    let (_dir, path, digest, bytes) = blob(4096);
    let ensure = || c.push_blob(&digest, bytes.len() as u64, &path, None, None);
    assert_eq!(rt().block_on(ensure()).unwrap(), BlobOutcome::Uploaded);
    assert_eq!(rt().block_on(ensure()).unwrap(), BlobOutcome::Existed);
    assert_eq!(fake.state.count("PUT /upload"), 1);
    assert_eq!(fake.state.count("DELETE /upload"), 1);
    assert_eq!(fake.state.open_uploads(), 0);
    assert_eq!(fake.state.blobs.lock().unwrap()[&digest.to_string()], bytes);
}
