//! A child's peak memory, as GNU time's `%M` (its `ru_maxrss` from `wait4`, the figure
//! `/usr/bin/time -v` prints), for the bound every hostile input must stay under. Measured
//! through `time` rather than from the test itself: a child's `ru_maxrss` counts the pages of the
//! process it was forked from, and a test holding a 50 MB config would be counted in it.

use std::process::{Command, Output};

/// The bound on ironstar's resident memory whatever a registry or a user sends.
pub const MAX_RSS_MB: u64 = 64;

/// `cmd`'s output and its peak resident set in MB. `IRONSTAR_MEASURED_BIN` names another
/// ironstar to run in its place (the release binary: `cargo build --release`, then
/// `IRONSTAR_MEASURED_BIN=target/release/ironstar cargo test --test hostile_base -- --nocapture`).
pub fn run_measured(cmd: &Command) -> (Output, u64) {
    super::common::require_tool("/usr/bin/time", "time");
    let report = tempfile::NamedTempFile::new().unwrap();
    let mut timed = Command::new("/usr/bin/time");
    timed
        .args(["-f", "%M", "-o"])
        .arg(report.path())
        .arg(match std::env::var_os("IRONSTAR_MEASURED_BIN") {
            Some(bin) if cmd.get_program() == env!("CARGO_BIN_EXE_ironstar") => bin,
            _ => cmd.get_program().to_os_string(),
        })
        .args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => timed.env(k, v),
            None => timed.env_remove(k),
        };
    }
    if let Some(dir) = cmd.get_current_dir() {
        timed.current_dir(dir);
    }
    let output = super::common::run(&mut timed);
    let text = std::fs::read_to_string(report.path()).unwrap();
    // `time` says how a signal ended its child on a line before the figure.
    let kb: u64 = text
        .lines()
        .last()
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or_else(|| panic!("no figure from time: {text}"));
    // Named by the output (`-o`), else by the last argument (a reference).
    let args: Vec<_> = cmd.get_args().map(|a| a.to_string_lossy()).collect();
    let out = args
        .iter()
        .position(|a| a == "-o")
        .and_then(|i| args.get(i + 1));
    let name = out
        .or(args.last())
        .map(|a| a.to_string())
        .unwrap_or_default();
    eprintln!("peak RSS {} MB: {name}", kb / 1024);
    (output, kb / 1024)
}
