//! `cargo xtask bench-memory`: loads that try to push a broker past its memory limit,
//! run against a release fedamq and a RabbitMQ from Debian's packages, both given the
//! same limit (fedamq `--memory-high-watermark`, RabbitMQ
//! `vm_memory_high_watermark.absolute`). The table gives each broker's peak RSS beside
//! the limit, and how many messages it took in.
//!
//! The loads are the ways a single client could take the host's memory (issue 15):
//! publishers of small or empty messages that nobody consumes, mandatory publishes that
//! route nowhere from a client that never reads its returns, a manual-ack consumer with
//! no prefetch limit that stops reading its socket, and publishers through a headers
//! exchange bound with 25,000 keys. The clients that "never read" are fedamq-perf's
//! `--no-read`.

use std::fmt::Write as _;
use std::path::Path;
use std::process::{Command, ExitCode, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::bench_env::{release_binaries, revision, task_main, thousands};
use crate::brokers::{Broker, RssSampler, Which, ensure_rabbitmq, vm_kib, wait_exit};

const USAGE: &str = "usage: cargo xtask bench-memory [--limit-mib N] [--seconds N] \
[--loads empty,16b,4k,returns,unread-deliveries,headers] [--no-build] [--no-write]";

/// One load: a name, what it does, and fedamq-perf's flags for it.
struct Load {
    name: &'static str,
    what: &'static str,
    flags: &'static [&'static str],
}

const LOADS: &[Load] = &[
    Load {
        name: "empty",
        what: "1 publisher of empty messages, no consumer",
        flags: &["-x", "1", "-y", "0", "-s", "0", "--no-read"],
    },
    Load {
        name: "16b",
        what: "1 publisher of 16 B messages, no consumer",
        flags: &["-x", "1", "-y", "0", "-s", "16", "--no-read"],
    },
    Load {
        name: "4k",
        what: "1 publisher of 4 KiB messages, no consumer",
        flags: &["-x", "1", "-y", "0", "-s", "4096", "--no-read"],
    },
    Load {
        name: "returns",
        what: "mandatory 64 KiB publishes that route nowhere, returns never read",
        flags: &[
            "-x",
            "1",
            "-y",
            "0",
            "-s",
            "65536",
            "-f",
            "mandatory",
            "-e",
            "",
            "-k",
            "no-such-queue",
            "--no-read",
        ],
    },
    Load {
        name: "unread-deliveries",
        what: "4 KiB messages to a manual-ack consumer without basic.qos that never reads",
        flags: &["-x", "1", "-y", "1", "-s", "4096", "--no-read"],
    },
    Load {
        name: "headers",
        what: "2 publishers of 16 B through a headers exchange bound with 25,000 keys, 1 auto-ack consumer",
        flags: &[
            "-x",
            "2",
            "-y",
            "1",
            "-a",
            "-s",
            "16",
            "-t",
            "headers",
            "-e",
            "fedamq-perf-headers",
            "--header-keys",
            "25000",
        ],
    },
];

struct Options {
    limit_mib: u64,
    seconds: f64,
    loads: Vec<&'static Load>,
    build: bool,
    write: bool,
}

fn parse(args: &[&str]) -> Result<Options, String> {
    let mut o = Options {
        limit_mib: 256,
        seconds: 10.0,
        loads: LOADS.iter().collect(),
        build: true,
        write: true,
    };
    let mut it = args.iter();
    while let Some(&a) = it.next() {
        let mut value = || {
            it.next()
                .copied()
                .ok_or_else(|| format!("{a} needs a value"))
        };
        match a {
            "--limit-mib" => {
                o.limit_mib = value()?
                    .parse()
                    .ok()
                    .filter(|m| *m > 0)
                    .ok_or("--limit-mib takes a positive whole number")?;
            }
            "--seconds" => {
                o.seconds = value()?
                    .parse()
                    .ok()
                    .filter(|s: &f64| *s > 0.0 && s.is_finite())
                    .ok_or("--seconds takes a positive number")?;
            }
            "--loads" => {
                let mut picked = Vec::new();
                for name in value()?.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                    let load = LOADS
                        .iter()
                        .find(|l| l.name.eq_ignore_ascii_case(name))
                        .ok_or_else(|| {
                            let known: Vec<&str> = LOADS.iter().map(|l| l.name).collect();
                            format!("unknown load {name:?}; known: {known:?}")
                        })?;
                    picked.push(load);
                }
                o.loads = picked;
            }
            "--no-build" => o.build = false,
            "--no-write" => o.write = false,
            other => return Err(format!("unknown option {other:?}")),
        }
    }
    if o.loads.is_empty() {
        return Err("nothing to run".into());
    }
    Ok(o)
}

pub fn main(root: &Path, args: &[&str]) -> ExitCode {
    task_main(
        "bench-memory",
        USAGE,
        "Runs each load (default: all) for --seconds (default 10) against a release fedamq \
         and a private RabbitMQ, both limited to --limit-mib (default 256), and writes \
         bench/results/<date>-<commit>-memory.md (unless --no-write).",
        args,
        parse,
        |o| run(root, o),
    )
}

/// What one load did to one broker.
struct Outcome {
    peak_rss_mib: f64,
    /// Messages the broker took in (fedamq-perf's count of what it wrote).
    published: f64,
    /// Publishes per second over the last second of the run: near 0 when the broker
    /// held the publishers back.
    last_second_rate: f64,
    delivered: f64,
}

fn run_load(perf: &Path, broker: &Broker, load: &Load, seconds: f64) -> Result<Outcome, String> {
    let sampler = RssSampler::start(broker.pid);
    let mut child = Command::new(perf)
        .arg("--uri")
        .arg(broker.uri())
        .args(["--json", "--quiet", "-z", &seconds.to_string()])
        .args(load.flags)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("fedamq-perf: {e}"))?;
    // Set-up, the run, and a stalled broker's slowness at the end.
    let limit = Duration::from_secs_f64(seconds + 120.0);
    let exited = wait_exit(&mut child, limit);
    if !exited {
        let _ = child.kill();
    }
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    let peak_kib = sampler
        .finish()
        .max(vm_kib(broker.pid, "VmHWM").unwrap_or(0));
    if !exited {
        return Err(format!(
            "fedamq-perf ({}) against {} did not finish",
            load.name,
            broker.name()
        ));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let v: Value = serde_json::from_str(stdout.trim()).map_err(|e| {
        format!(
            "fedamq-perf ({}) against {}: {e}\nstderr: {}",
            load.name,
            broker.name(),
            String::from_utf8_lossy(&out.stderr)
        )
    })?;
    let last_second_rate = v["per_second"]
        .as_array()
        .and_then(|s| s.last())
        .and_then(|s| s["published"].as_f64())
        .unwrap_or(f64::NAN);
    Ok(Outcome {
        peak_rss_mib: peak_kib as f64 / 1024.0,
        published: v["published"].as_f64().unwrap_or(f64::NAN),
        last_second_rate,
        delivered: v["consumed"].as_f64().unwrap_or(f64::NAN),
    })
}

fn run(root: &Path, o: &Options) -> Result<(), String> {
    // Read when the binaries are built: the tree may move on while the run goes.
    let revision = revision(root);
    let (commit, date) = (revision.commit.clone(), revision.date.clone());
    let (fedamq_bin, perf) = release_binaries(root, o.build, "bench-memory")?;
    ensure_rabbitmq()?;
    let limit = format!("{}MiB", o.limit_mib);
    let rabbit_conf = format!("vm_memory_high_watermark.absolute = {}MiB\n", o.limit_mib);
    let mut rows = String::new();
    let mut failures = Vec::new();
    for load in &o.loads {
        let mut cells = Vec::new();
        for which in [Which::Fedamq, Which::Rabbit] {
            // A fresh broker per load: each peak is that load's own.
            let mut broker = match which {
                Which::Fedamq => {
                    Broker::start_fedamq(&fedamq_bin, &["--memory-high-watermark", &limit])?
                }
                Which::Rabbit => Broker::start_rabbit(&rabbit_conf)?,
            };
            eprintln!(
                "bench-memory: {} against {} (pid {})",
                load.name,
                broker.name(),
                broker.pid
            );
            let r = run_load(&perf, &broker, load, o.seconds);
            broker.stop();
            if let Err(e) = &r {
                // One load that fails still leaves the others' figures worth having.
                eprintln!("bench-memory: {e}");
                failures.push(format!("{} against {}: {e}", load.name, broker.name()));
            }
            cells.push(r.ok());
        }
        let cell = |c: &Option<Outcome>, f: &dyn Fn(&Outcome) -> String| {
            c.as_ref().map_or_else(|| "failed".to_string(), f)
        };
        let rss = |c: &Outcome| {
            format!(
                "{:.0} ({:.2}×)",
                c.peak_rss_mib,
                c.peak_rss_mib / o.limit_mib as f64
            )
        };
        let _ = writeln!(
            rows,
            "| {}: {} | {} | {} | {} / {} | {} / {} | {} / {} |",
            load.name,
            load.what,
            cell(&cells[0], &rss),
            cell(&cells[1], &rss),
            cell(&cells[0], &|c| count(c.published)),
            cell(&cells[1], &|c| count(c.published)),
            cell(&cells[0], &|c| count(c.last_second_rate)),
            cell(&cells[1], &|c| count(c.last_second_rate)),
            cell(&cells[0], &|c| count(c.delivered)),
            cell(&cells[1], &|c| count(c.delivered)),
        );
    }

    let mut md = String::new();
    let _ = writeln!(
        md,
        "# Memory under hostile loads, fedamq vs RabbitMQ, {date}\n"
    );
    md.push_str(&revision.lines());
    let _ = writeln!(
        md,
        "- run: `cargo xtask bench-memory --limit-mib {} --seconds {} --loads {}`",
        o.limit_mib,
        o.seconds,
        o.loads.iter().map(|l| l.name).collect::<Vec<_>>().join(",")
    );
    let _ = writeln!(
        md,
        "- both brokers limited to {} MiB (fedamq `--memory-high-watermark {limit}`, RabbitMQ \
         `vm_memory_high_watermark.absolute`); a fresh broker per load; peak RSS is the \
         largest VmRSS sampled every 50 ms (or VmHWM, if larger), shown with its ratio to \
         the limit; \"last second\" is the publish rate in the run's last second (near 0 \
         when the broker held its publishers back)\n",
        o.limit_mib
    );
    let _ = writeln!(
        md,
        "| load | fedamq peak RSS MiB | RabbitMQ peak RSS MiB | published fedamq / RabbitMQ | last second msg/s | delivered |"
    );
    let _ = writeln!(md, "|---|--:|--:|--:|--:|--:|");
    md.push_str(&rows);
    if !failures.is_empty() {
        let _ = writeln!(md, "\nFailed runs:\n");
        for f in &failures {
            let _ = writeln!(md, "- {f}");
        }
    }
    println!("\n{md}");
    if o.write && failures.len() < 2 * o.loads.len() {
        let dir = root.join("bench").join("results");
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let file = dir.join(format!("{date}-{commit}-memory.md"));
        std::fs::write(&file, &md).map_err(|e| format!("{}: {e}", file.display()))?;
        eprintln!("bench-memory: wrote {}", file.display());
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(format!("{} run(s) failed", failures.len()))
    }
}

/// A count with thousands separators; "-" when unknown.
fn count(v: f64) -> String {
    if v.is_finite() {
        thousands(v.max(0.0))
    } else {
        "-".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options() {
        let o = parse(&[
            "--limit-mib",
            "64",
            "--loads",
            "empty,RETURNS",
            "--seconds",
            "3",
        ])
        .unwrap();
        assert_eq!(o.limit_mib, 64);
        assert_eq!(o.seconds, 3.0);
        let names: Vec<&str> = o.loads.iter().map(|l| l.name).collect();
        assert_eq!(names, ["empty", "returns"]);
        assert_eq!(parse(&[]).unwrap().loads.len(), LOADS.len());
        assert!(parse(&["--loads", "nope"]).is_err());
        assert!(parse(&["--limit-mib", "0"]).is_err());
        assert!(parse(&["--seconds", "-1"]).is_err());
    }

    #[test]
    fn counts_read_well() {
        assert_eq!(count(0.0), "0");
        assert_eq!(count(999.0), "999");
        assert_eq!(count(1_000.0), "1,000");
        assert_eq!(count(8_450_000.4), "8,450,000");
        assert_eq!(count(f64::NAN), "-");
    }
}
