//! `cargo xtask fed-soak`: the long run of the federation soak (issue 11): N messages
//! published with confirms while the fault proxy cuts the link K times at random
//! moments; it reports messages lost (must be 0), duplicates (each must be flagged
//! redelivered in `x-received-from`) and how many were sent again. `--mode` picks the
//! direction: `subscriber` (the default) publishes upstream and counts what arrives
//! downstream; `publisher` publishes downstream, the link forwarding up through the
//! peering's confirmed outbox, and counts what arrives upstream. The soak itself is the
//! ignored test `long_soak` or `long_publisher_soak` in tests/federation_soak.rs (their
//! short versions run with the test suite); this runs it in release mode with the sizes
//! given.
//!
//! With `--bindings N` it runs the binding-propagation measure instead (the ignored
//! test `long_binding_propagation`): N bindings made downstream, mirrored upstream over
//! a link with 100 ms of added latency; it prints how long that took.

use std::path::Path;
use std::process::{Command, ExitCode};

const USAGE: &str = "usage: cargo xtask fed-soak [--mode subscriber|publisher] [--messages N] [--cuts K] | --bindings N";

pub fn main(root: &Path, args: &[&str]) -> ExitCode {
    let mut messages = 100_000u64;
    let mut cuts = 1_000u64;
    let mut bindings = None;
    let mut test = "long_soak";
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let value = |it: &mut std::slice::Iter<'_, &str>| it.next().and_then(|v| v.parse().ok());
        match *arg {
            "--messages" => match value(&mut it) {
                Some(n) => messages = n,
                None => return usage(),
            },
            "--cuts" => match value(&mut it) {
                Some(n) => cuts = n,
                None => return usage(),
            },
            "--bindings" => match value(&mut it) {
                Some(n) => bindings = Some(n),
                None => return usage(),
            },
            "--mode" => match it.next().copied() {
                Some("subscriber") => test = "long_soak",
                Some("publisher") => test = "long_publisher_soak",
                _ => return usage(),
            },
            _ => return usage(),
        }
    }
    if bindings.is_some() {
        test = "long_binding_propagation";
    }
    let status = Command::new(env!("CARGO"))
        .current_dir(root)
        .env("FEDAMQ_SOAK_MESSAGES", messages.to_string())
        .env("FEDAMQ_SOAK_CUTS", cuts.to_string())
        .env("FEDAMQ_SOAK_BINDINGS", bindings.unwrap_or(0).to_string())
        .args([
            "test",
            "--release",
            "--test",
            "federation_soak",
            "--",
            "--ignored",
            "--exact",
            test,
            "--nocapture",
        ])
        .status();
    match status {
        Ok(s) if s.success() => ExitCode::SUCCESS,
        Ok(_) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("fed-soak: cannot run cargo: {e}");
            ExitCode::FAILURE
        }
    }
}

fn usage() -> ExitCode {
    eprintln!("{USAGE}");
    ExitCode::FAILURE
}
