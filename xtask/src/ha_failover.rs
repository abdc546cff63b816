//! `cargo xtask ha-failover`: the HA pair's failover time (issue 13's benchmark). The
//! runs themselves are the ignored test `failover_time` in tests/ha_failover_time.rs (a
//! fresh pair of release fedamq processes per run, `kill -9` of the active, time to the
//! first message confirmed by the new active); this runs it in release mode, takes p50
//! and max over the runs, and writes the table to
//! `bench/results/<date>-<commit>-ha-failover.md`.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, ExitCode, Stdio};

use crate::bench_env::{revision, task_main};

const TASK: &str = "ha-failover";
const USAGE: &str = "usage: cargo xtask ha-failover [--runs N] [--timeout-ms MS] [--no-write]";
const HELP: &str = "Starts an HA pair per run with the given timeout (default 1000 ms), a \
publisher with confirms on the active member, kill -9 of it, and measures the time to the \
first message confirmed by the new active one, the client trying both addresses every \
100 ms. Prints p50 and max over the runs (default 20; target: under 2 s) and writes them \
to bench/results/ unless --no-write.";

struct Options {
    runs: u32,
    timeout_ms: u64,
    write: bool,
}

/// One run as the test printed it.
struct Run {
    ms: u64,
    refused: u64,
}

pub fn main(root: &Path, args: &[&str]) -> ExitCode {
    task_main(TASK, USAGE, HELP, args, parse, |o| run(root, o))
}

fn parse(args: &[&str]) -> Result<Options, String> {
    let mut o = Options {
        runs: 20,
        timeout_ms: 1000,
        write: true,
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = || {
            it.next()
                .ok_or_else(|| format!("{arg} needs a value"))
                .and_then(|v| v.parse::<u64>().map_err(|e| format!("{arg} {v}: {e}")))
        };
        match *arg {
            "--runs" => o.runs = value()?.clamp(1, 10_000) as u32,
            "--timeout-ms" => o.timeout_ms = value()?.max(100),
            "--no-write" => o.write = false,
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(o)
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

fn run(root: &Path, o: &Options) -> Result<(), String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    // Builds the release fedamq and the test first, so the load average taken next
    // is not the compiler's.
    let ok = Command::new(&cargo)
        .current_dir(root)
        .args([
            "test",
            "--release",
            "--test",
            "ha_failover_time",
            "--no-run",
        ])
        .status()
        .map_err(|e| format!("cargo: {e}"))?
        .success();
    if !ok {
        return Err("cargo test --release --no-run failed".into());
    }
    let load_before = loadavg();
    let mut child = Command::new(&cargo)
        .current_dir(root)
        .env("FEDAMQ_HA_RUNS", o.runs.to_string())
        .env("FEDAMQ_HA_TIMEOUT_MS", o.timeout_ms.to_string())
        .args(["test", "--release", "--test", "ha_failover_time", "--"])
        .args(["--ignored", "--exact", "failover_time", "--nocapture"])
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cargo: {e}"))?;
    let mut runs = Vec::new();
    for line in BufReader::new(child.stdout.take().expect("piped")).lines() {
        let line = line.map_err(|e| format!("reading the test's output: {e}"))?;
        println!("{line}");
        if let Some(r) = parse_run(&line) {
            runs.push(r);
        }
    }
    let status = child.wait().map_err(|e| format!("cargo: {e}"))?;
    let load_after = loadavg();
    if !status.success() {
        return Err(format!("the benchmark failed ({status})"));
    }
    if runs.len() != o.runs as usize {
        return Err(format!("expected {} runs, read {}", o.runs, runs.len()));
    }
    let report = report(root, o, &runs, &load_before, &load_after);
    println!("\n{report}");
    if o.write {
        let rev = revision(root);
        let dir = root.join("bench").join("results");
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let path = dir.join(format!("{}-{}-ha-failover.md", rev.date, rev.commit));
        std::fs::write(&path, &report).map_err(|e| format!("{}: {e}", path.display()))?;
        println!("{TASK}: wrote {}", path.display());
    }
    Ok(())
}

/// `ha-failover run 3: 1234 ms, 9 connection attempts refused or failed`
fn parse_run(line: &str) -> Option<Run> {
    let rest = line.strip_prefix("ha-failover run ")?;
    let (_, rest) = rest.split_once(": ")?;
    let (ms, rest) = rest.split_once(" ms, ")?;
    let (refused, _) = rest.split_once(' ')?;
    Some(Run {
        ms: ms.parse().ok()?,
        refused: refused.parse().ok()?,
    })
}

/// The value at quantile `q` of `sorted` (nearest rank).
fn quantile(sorted: &[u64], q: f64) -> u64 {
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn report(root: &Path, o: &Options, runs: &[Run], before: &str, after: &str) -> String {
    let mut sorted: Vec<u64> = runs.iter().map(|r| r.ms).collect();
    sorted.sort_unstable();
    let (min, p50, max) = (sorted[0], quantile(&sorted, 0.5), sorted[sorted.len() - 1]);
    let target = if max < 2000 { "met" } else { "NOT met" };
    let mut s = String::new();
    let _ = writeln!(s, "# HA pair failover time\n");
    s += &revision(root).lines();
    let _ = writeln!(
        s,
        "- command: `cargo xtask ha-failover --runs {} --timeout-ms {}`",
        o.runs, o.timeout_ms
    );
    let _ = writeln!(
        s,
        "- load average (1/5/15 min): before {before}, after {after}"
    );
    let _ = writeln!(
        s,
        "- setup: a fresh pair of release fedamq processes on 127.0.0.1 per run, HA timeout \
         {} ms (state every {} ms); a lapin publisher with confirms on the primary; after \
         200 confirms, SIGKILL to the primary; the client then tries the primary's and the \
         backup's address in turn, a round every 100 ms, and publishes once connected",
        o.timeout_ms,
        o.timeout_ms / 2
    );
    let _ = writeln!(
        s,
        "- measured: from the kill to the first message confirmed by the new active member \
         (the backup admits the client once the primary has been silent longer than the \
         timeout)\n"
    );
    let _ = writeln!(s, "| runs | min | p50 | max | target (max < 2000 ms) |");
    let _ = writeln!(s, "|---|---|---|---|---|");
    let _ = writeln!(
        s,
        "| {} | {min} ms | {p50} ms | {max} ms | {target} |\n",
        runs.len()
    );
    let _ = writeln!(
        s,
        "| run | kill to first confirm | attempts refused or failed |"
    );
    let _ = writeln!(s, "|---|---|---|");
    for (i, r) in runs.iter().enumerate() {
        let _ = writeln!(s, "| {} | {} ms | {} |", i + 1, r.ms, r.refused);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_run_lines() {
        let r = parse_run("ha-failover run 3: 1234 ms, 9 connection attempts refused or failed")
            .unwrap();
        assert_eq!((r.ms, r.refused), (1234, 9));
        assert!(parse_run("running 1 test").is_none());
    }

    #[test]
    fn p50_is_the_nearest_rank() {
        assert_eq!(quantile(&[1, 2, 3, 4], 0.5), 2);
        assert_eq!(quantile(&[1, 2, 3], 0.5), 2);
        assert_eq!(quantile(&[7], 0.5), 7);
    }
}
