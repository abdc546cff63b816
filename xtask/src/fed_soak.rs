//! `cargo xtask fed-soak`: the long run of the federation soak (issue 11): N messages
//! published upstream with confirms in subscriber mode while the fault proxy cuts the
//! link K times at random moments; it reports messages lost (must be 0) and duplicates
//! (each must be flagged redelivered). The soak itself is the ignored test `long_soak`
//! in tests/federation_soak.rs (its short version runs with the test suite); this runs
//! it in release mode with the sizes given.
//!
//! With `--bindings N` it runs the binding-propagation measure instead (the ignored
//! test `long_binding_propagation`): N bindings made downstream, mirrored upstream over
//! a link with 100 ms of added latency; it prints how long that took.

use std::path::Path;
use std::process::{Command, ExitCode};

const USAGE: &str = "usage: cargo xtask fed-soak [--messages N] [--cuts K] | --bindings N";

pub fn main(root: &Path, args: &[&str]) -> ExitCode {
    let mut messages = 100_000u64;
    let mut cuts = 1_000u64;
    let mut bindings = None;
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
            _ => return usage(),
        }
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
            if bindings.is_some() {
                "long_binding_propagation"
            } else {
                "long_soak"
            },
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
