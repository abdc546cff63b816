//! fedamq's development tasks, run as `cargo xtask <task>` (an alias in `.cargo/config.toml`).
//!
//! - `codegen`: regenerate the protocol layer from `spec/` and write what changed;
//! - `codegen --check`: regenerate in memory and fail, naming each stale file, when the
//!   checked-in files differ (CI runs this).
//! - `deps --check`: fail when the modules of `src/` import each other in a cycle
//!   (`deps.rs`); without `--check`, print the import graph.
//! - `bench-compare`: the benchmark scenarios against fedamq and RabbitMQ, side by side
//!   (`bench_compare.rs`);
//! - `bench-memory`: loads that try to push a broker past its memory limit, fedamq and
//!   RabbitMQ with the same limit, peak RSS side by side (`bench_memory.rs`).
//! - `fed-soak`: the federation soak, messages across a link cut again and again, in
//!   subscriber or publisher mode (`--mode`): none lost, every duplicate flagged
//!   (`fed_soak.rs`);
//! - `ha-failover`: the HA pair's failover time, kill -9 of the active to the first
//!   confirm by the new one, p50 and max (`ha_failover.rs`).

mod bench_compare;
mod bench_env;
mod bench_memory;
mod brokers;
mod deps;
mod fed_soak;
mod ha_failover;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args.as_slice() {
        ["codegen"] => codegen(false),
        ["codegen", "--check"] => codegen(true),
        ["bench-compare", rest @ ..] => bench_compare::main(&root(), rest),
        ["bench-memory", rest @ ..] => bench_memory::main(&root(), rest),
        ["deps", rest @ ..] => deps::main(&root(), rest),
        ["fed-soak", rest @ ..] => fed_soak::main(&root(), rest),
        ["ha-failover", rest @ ..] => ha_failover::main(&root(), rest),
        _ => {
            eprintln!(
                "usage: cargo xtask codegen [--check] | deps [--check] | bench-compare [--help] | bench-memory [--help] | fed-soak [--mode subscriber|publisher] [--messages N] [--cuts K] | ha-failover [--help]"
            );
            ExitCode::from(2)
        }
    }
}

fn root() -> PathBuf {
    // XTASK_ROOT lets tests run the tasks on a scratch copy of the repository.
    if let Some(dir) = std::env::var_os("XTASK_ROOT") {
        return PathBuf::from(dir);
    }
    // xtask/ sits in the repository root.
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

fn codegen(check: bool) -> ExitCode {
    let root = root();
    let files = match codegen::generate(&root.join("spec")) {
        Ok(files) => files,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut stale = Vec::new();
    for file in &files {
        let path = root.join(&file.path);
        let current = std::fs::read_to_string(&path).unwrap_or_default();
        if current.replace("\r\n", "\n") == file.contents {
            continue;
        }
        if check {
            stale.push(file.path.display().to_string());
            continue;
        }
        if let Some(dir) = path.parent() {
            if let Err(e) = std::fs::create_dir_all(dir) {
                eprintln!("error: {}: {e}", dir.display());
                return ExitCode::FAILURE;
            }
        }
        if let Err(e) = std::fs::write(&path, &file.contents) {
            eprintln!("error: {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
        println!("wrote {}", file.path.display());
    }
    if !stale.is_empty() {
        for s in &stale {
            eprintln!("stale: {s}");
        }
        eprintln!(
            "generated code does not match spec/: run `cargo xtask codegen` and commit the result"
        );
        return ExitCode::FAILURE;
    }
    if check {
        println!("generated code is up to date ({} files)", files.len());
    }
    ExitCode::SUCCESS
}
