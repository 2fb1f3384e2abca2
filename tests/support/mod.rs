//! The tests' one harness: `common` (the ironstar command, fixtures, the OCI schemas, layout
//! readers), `cli` (push commands), a private containerd, a real `docker-registry` (distribution) on loopback, a small
//! token server, a fault-injecting HTTP/1.1 proxy and an in-process fake registry. Every process
//! and thread is stopped on drop; all traffic stays on 127.0.0.1.
#![allow(dead_code)]

pub mod cli;
pub mod common;
pub mod containerd;
pub mod fake;
pub mod fixture_crate;
pub mod measure;
pub mod proxy;
pub mod registry;
pub mod sbom;
pub mod signing;
pub mod token;
pub mod workdir;

use std::net::TcpListener;

/// A port free on 127.0.0.1 right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind 127.0.0.1:0")
        .local_addr()
        .unwrap()
        .port()
}
