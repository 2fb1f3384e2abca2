//! The push never blocks its async runtime: a credential helper that takes a second runs while
//! a timer task on the same single-threaded runtime keeps ticking. Its own test binary, since it
//! sets `PATH` and `REGISTRY_AUTH_FILE` for the process.

mod support;

use std::os::unix::fs::PermissionsExt as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ironstar::layout::LayoutWriter;
use ironstar::push::{push, Plan, ProgressMode, PushOptions};
use support::fake::{Behaviour, FakeRegistry};

/// A one-manifest layout with an empty config and no layer.
fn tiny_layout(out: &std::path::Path) {
    let w = LayoutWriter::create(out).unwrap();
    let config = w.put_blob(b"{}").unwrap();
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config.to_string(), "size": 2},
        "layers": [],
    })
    .to_string();
    let m = w.put_blob(manifest.as_bytes()).unwrap();
    let index = serde_json::json!({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": m.to_string(), "size": manifest.len(),
    }]});
    w.commit(index.to_string().as_bytes()).unwrap();
}

#[test]
fn a_slow_credential_helper_does_not_stall_the_runtime() {
    let fake = FakeRegistry::start(Behaviour::default());
    let dir = tempfile::tempdir().unwrap();
    let helper = dir.path().join("docker-credential-slow");
    std::fs::write(
        &helper,
        "#!/bin/sh\nread _\nsleep 1\necho '{\"Username\":\"u\",\"Secret\":\"p\"}'\n",
    )
    .unwrap();
    std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let auth = dir.path().join("auth.json");
    let helpers = serde_json::json!({"credHelpers": {fake.addr.to_string(): "slow"}});
    std::fs::write(&auth, helpers.to_string()).unwrap();
    let path = format!(
        "{}:{}",
        dir.path().display(),
        std::env::var("PATH").unwrap()
    );
    // SAFETY (edition 2021: safe fn): this binary's only test, before any thread reads them.
    std::env::set_var("PATH", path);
    std::env::set_var("REGISTRY_AUTH_FILE", &auth);
    let layout = dir.path().join("layout");
    tiny_layout(&layout);

    let repository = fake.repository("rt/app");
    let plan = Plan::new(None, layout.to_str(), Some(&repository), &[]).unwrap();
    let opts = PushOptions {
        plain_http: true,
        progress: ProgressMode::Quiet,
        ..PushOptions::from_plan(plan)
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let ticks = Arc::new(AtomicUsize::new(0));
    let t = ticks.clone();
    let started = std::time::Instant::now();
    let outcome = rt.block_on(async move {
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(20)).await;
                t.fetch_add(1, Ordering::SeqCst);
            }
        });
        push(&opts).await.unwrap()
    });
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "the helper did not run"
    );
    assert_eq!(outcome.blobs_uploaded, 1);
    let n = ticks.load(Ordering::SeqCst);
    // A second of helper: ~50 ticks when the runtime is free, none when it is blocked.
    assert!(
        n >= 25,
        "the runtime ticked {n} times during a 1 s credential helper"
    );
}
