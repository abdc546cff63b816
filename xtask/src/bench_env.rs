//! What both benchmark tasks need around the brokers: the release binaries, a line on
//! the machine, and the commit the figures belong to.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

/// Builds (unless `build` is false) and finds the release `fedamq` and `fedamq-perf`.
pub(crate) fn release_binaries(
    root: &Path,
    build: bool,
    task: &str,
) -> Result<(PathBuf, PathBuf), String> {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|p| if p.is_absolute() { p } else { root.join(p) })
        .unwrap_or_else(|| root.join("target"));
    if build {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        eprintln!("{task}: cargo build --release (fedamq, fedamq-perf)");
        let ok = Command::new(cargo)
            .current_dir(root)
            .args([
                "build",
                "--release",
                "-p",
                "fedamq",
                "--bin",
                "fedamq",
                "--bin",
                "fedamq-perf",
            ])
            .status()
            .map_err(|e| format!("cargo: {e}"))?
            .success();
        if !ok {
            return Err("cargo build --release failed".into());
        }
    }
    let fedamq_bin = target.join("release").join("fedamq");
    let perf = target.join("release").join("fedamq-perf");
    for b in [&fedamq_bin, &perf] {
        if !b.exists() {
            return Err(format!(
                "{} is missing (build it, or drop --no-build)",
                b.display()
            ));
        }
    }
    Ok((fedamq_bin, perf))
}

/// The commit the working tree is at, and when the run happened.
pub(crate) struct Revision {
    pub(crate) commit: String,
    /// Whether tracked files had uncommitted changes.
    pub(crate) dirty: bool,
    /// `YYYY-MM-DD`, for file names.
    pub(crate) date: String,
    /// Date and time, UTC.
    pub(crate) when: String,
}

impl Revision {
    /// The report's first lines: when, on what machine, at which commit.
    pub(crate) fn lines(&self) -> String {
        format!(
            "- date: {}\n- machine: {}\n- commit: {}{}\n",
            self.when,
            machine(),
            self.commit,
            if self.dirty {
                " (working tree had uncommitted changes)"
            } else {
                ""
            }
        )
    }
}

pub(crate) fn revision(root: &Path) -> Revision {
    let commit = command_text(
        "git",
        &[
            "-C",
            &root.display().to_string(),
            "rev-parse",
            "--short",
            "HEAD",
        ],
    );
    let dirty = !command_text(
        "git",
        &[
            "-C",
            &root.display().to_string(),
            "status",
            "--porcelain",
            "--untracked-files=no",
        ],
    )
    .is_empty();
    let date = command_text("date", &["-u", "+%Y-%m-%d"]);
    let when = command_text("date", &["-u", "+%Y-%m-%d %H:%M UTC"]);
    Revision {
        commit,
        dirty,
        date,
        when,
    }
}

pub(crate) fn command_text(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")?
                .split_once(':')
                .map(|(_, m)| m.trim())
        })
        .unwrap_or("unknown CPU")
        .to_string();
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let mem_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines().find_map(|l| {
                l.strip_prefix("MemTotal:")?
                    .trim()
                    .strip_suffix("kB")?
                    .trim()
                    .parse::<f64>()
                    .ok()
            })
        })
        .map(|kib| kib / 1024.0 / 1024.0)
        .unwrap_or(0.0);
    let kernel = command_text("uname", &["-sr"]);
    format!("{cores} cores, {model}, {mem_gib:.1} GiB RAM, {kernel}")
}

/// A whole number with thousands separated: `8,450,000`.
pub(crate) fn thousands(v: f64) -> String {
    let digits = format!("{:.0}", v);
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A benchmark task's command line: `--help` prints `usage` and `help`; a parse error
/// exits 2 with the usage; a failed run exits 1. Every line is prefixed with `task`.
pub(crate) fn task_main<O>(
    task: &str,
    usage: &str,
    help: &str,
    args: &[&str],
    parse: impl FnOnce(&[&str]) -> Result<O, String>,
    run: impl FnOnce(&O) -> Result<(), String>,
) -> ExitCode {
    if args.iter().any(|a| *a == "--help" || *a == "-h") {
        println!("{usage}\n\n{help}");
        return ExitCode::SUCCESS;
    }
    let opts = match parse(args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{task}: {e}\n{usage}");
            return ExitCode::from(2);
        }
    };
    match run(&opts) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{task}: {e}");
            ExitCode::FAILURE
        }
    }
}
