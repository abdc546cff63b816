//! `cargo xtask bench-compare`: the same scenarios against a release fedamq and a
//! RabbitMQ from Debian's packages, on this machine, alternating between the two so drift
//! hits both; one table with each figure for both brokers and their ratio, also written
//! to `bench/results/<date>-<commit>.md`. The brokers are started and measured by
//! `brokers.rs`; the TLS scenarios' certificates and listeners, and the report's TLS cost,
//! by `bench_compare/tls.rs`; the federation scenario's pairs of brokers by
//! `bench_compare/federation.rs`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::bench_env::{release_binaries, revision, task_main, thousands};
mod federation;
mod tls;

use crate::brokers::{
    Broker, RssSampler, Which, clock_ticks_per_second, cpu_ticks, ensure_rabbitmq, reset_peak,
    vm_kib, wait_exit,
};

const USAGE: &str = "usage: cargo xtask bench-compare [--scenarios S1,S1u,S1w,S1b,S2,S1t,S2t,S3,S4,S5,S6,S7,F1] \
[--seconds N] [--rounds N] [--backlog N] [--connections N] [--no-build] [--no-write]";

const ALL: [&str; 13] = [
    "S1", "S1u", "S1w", "S1b", "S2", "S1t", "S2t", "S3", "S4", "S5", "S6", "S7", "F1",
];

struct Options {
    scenarios: Vec<String>,
    seconds: f64,
    rounds: usize,
    backlog: u64,
    connections: usize,
    build: bool,
    write: bool,
}

fn parse(args: &[&str]) -> Result<Options, String> {
    let mut o = Options {
        scenarios: ALL.iter().map(|s| s.to_string()).collect(),
        seconds: 10.0,
        rounds: 1,
        backlog: 1_000_000,
        connections: 1_000,
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
            "--scenarios" => {
                let mut picked = Vec::new();
                for s in value()?.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                    let known = ALL
                        .iter()
                        .find(|k| k.eq_ignore_ascii_case(s))
                        .ok_or_else(|| format!("unknown scenario {s:?}; known: {ALL:?}"))?;
                    picked.push(known.to_string());
                }
                o.scenarios = picked;
            }
            "--seconds" => {
                o.seconds = value()?
                    .parse()
                    .map_err(|_| "--seconds takes a number".to_string())?;
                if !(o.seconds > 0.0 && o.seconds.is_finite()) {
                    return Err("--seconds must be positive".into());
                }
            }
            "--rounds" => {
                o.rounds = value()?
                    .parse()
                    .map_err(|_| "--rounds takes a whole number".to_string())?;
            }
            "--backlog" => {
                o.backlog = value()?
                    .parse()
                    .map_err(|_| "--backlog takes a whole number".to_string())?;
            }
            "--connections" => {
                o.connections = value()?
                    .parse()
                    .map_err(|_| "--connections takes a whole number".to_string())?;
            }
            "--no-build" => o.build = false,
            "--no-write" => o.write = false,
            other => return Err(format!("unknown option {other:?}")),
        }
    }
    if o.scenarios.is_empty() || o.rounds == 0 || o.backlog == 0 || o.connections == 0 {
        return Err("nothing to run".into());
    }
    Ok(o)
}

pub fn main(root: &Path, args: &[&str]) -> ExitCode {
    task_main(
        "bench-compare",
        USAGE,
        "Runs the scenarios (default: all; --seconds per throughput run, default 10; \
         --rounds, default 1; S7's --backlog, default 1000000; S6's --connections, default \
         1000) against a release fedamq and a private RabbitMQ, and writes \
         bench/results/<date>-<commit>.md (unless --no-write).",
        args,
        parse,
        |o| run(root, o),
    )
}

// ---------------------------------------------------------------------------------------
// Scenarios

/// One figure from one run.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Metric {
    PublishRate,
    ConsumeRate,
    LatencyP50,
    LatencyP95,
    LatencyP99,
    LatencyP999,
    ConfirmP50,
    ConfirmP99,
    CpuPerMillion,
    PeakRss,
    RssAfterFill,
    RssPerConnection,
    ConnectTime,
}

impl Metric {
    fn label(self) -> &'static str {
        match self {
            Metric::PublishRate => "publish msg/s",
            Metric::ConsumeRate => "consume msg/s",
            Metric::LatencyP50 => "latency p50 ms",
            Metric::LatencyP95 => "latency p95 ms",
            Metric::LatencyP99 => "latency p99 ms",
            Metric::LatencyP999 => "latency p99.9 ms",
            Metric::ConfirmP50 => "confirm latency p50 ms",
            Metric::ConfirmP99 => "confirm latency p99 ms",
            Metric::CpuPerMillion => "broker CPU µs / msg",
            Metric::PeakRss => "broker peak RSS MiB",
            Metric::RssAfterFill => "broker RSS with backlog MiB",
            Metric::RssPerConnection => "RSS per connection KiB",
            Metric::ConnectTime => "time to open all s",
        }
    }

    fn higher_is_better(self) -> bool {
        matches!(self, Metric::PublishRate | Metric::ConsumeRate)
    }
}

/// Results of one scenario on one broker: metric -> one value per round.
type Figures = BTreeMap<(String, Metric), Vec<f64>>;

struct Ctx<'a> {
    perf: &'a Path,
    seconds: f64,
    backlog: u64,
    connections: usize,
    ticks: f64,
}

/// Runs fedamq-perf to completion and returns its JSON.
fn perf_json(
    ctx: &Ctx,
    broker: &Broker,
    flags: &[String],
    limit: Duration,
) -> Result<Value, String> {
    let mut child = Command::new(ctx.perf)
        .arg("--uri")
        .arg(broker.uri())
        .args(["--json", "--quiet"])
        .args(flags)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("fedamq-perf: {e}"))?;
    if !wait_exit(&mut child, limit) {
        let _ = child.kill();
        let _ = child.wait();
        return Err(format!(
            "fedamq-perf {flags:?} against {} timed out",
            broker.name()
        ));
    }
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let v: Value = serde_json::from_str(stdout.trim()).map_err(|e| {
        format!(
            "fedamq-perf {flags:?} against {}: {e}\nstdout: {stdout}\nstderr: {}",
            broker.name(),
            String::from_utf8_lossy(&out.stderr)
        )
    })?;
    if let Some(errors) = v["errors"].as_array().filter(|e| !e.is_empty()) {
        return Err(format!(
            "fedamq-perf {flags:?} against {}: {errors:?}",
            broker.name()
        ));
    }
    Ok(v)
}

/// CPU seconds and peak RSS of the broker around a closure.
fn measured<T>(
    ctx: &Ctx,
    broker: &Broker,
    f: impl FnOnce() -> Result<T, String>,
) -> Result<(T, f64, f64), String> {
    let hwm_reset = reset_peak(broker.pid);
    let sampler = RssSampler::start(broker.pid);
    let before = cpu_ticks(broker.pid).ok_or("cannot read the broker's CPU time")?;
    let r = f();
    let after = cpu_ticks(broker.pid).ok_or("cannot read the broker's CPU time")?;
    let sampled = sampler.finish();
    let hwm = if hwm_reset {
        vm_kib(broker.pid, "VmHWM").unwrap_or(0)
    } else {
        0
    };
    let cpu = (after - before) as f64 / ctx.ticks;
    Ok((r?, cpu, sampled.max(hwm) as f64 / 1024.0))
}

fn ms(v: &Value, key: &str, p: &str) -> Option<f64> {
    v[key][p].as_f64().map(|us| us / 1_000.0)
}

fn num(v: &Value, key: &str) -> f64 {
    v[key].as_f64().unwrap_or(0.0)
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// The perf flags of the throughput scenarios (all but S6 and S7); `tag` makes queue and
/// exchange names unique per run.
fn throughput_flags(scenario: &str, seconds: f64, tag: &str) -> Vec<String> {
    let z = format!("{seconds}");
    let q = format!("bench-{tag}");
    let pattern = format!("bench-{tag}-%d");
    let mut f = match scenario {
        "S1" => strings(&["-x1", "-y1", "-s16", "-a"]),
        // S1 with a client that writes each publish on its own, as most libraries do.
        "S1u" => strings(&["-x1", "-y1", "-s16", "-a", "--unbatched"]),
        // S1u with one publish in flight: each waits for its confirm, so every publish
        // finds the broker asleep, as with a client slower than the broker.
        "S1w" => strings(&["-x1", "-y1", "-s16", "-a", "--unbatched", "-c1"]),
        "S1b" => strings(&["-x1", "-y1", "-s1024", "-a"]),
        "S2" => strings(&["-x1", "-y1", "-s16", "-q100", "-c1000"]),
        "S3" => strings(&[
            "-x4",
            "-y4",
            "-s256",
            "-a",
            "--queue-pattern-from",
            "1",
            "--queue-pattern-to",
            "4",
        ]),
        "S4" => strings(&[
            "-x1",
            "-y8",
            "-s64",
            "-a",
            "-t",
            "fanout",
            "--queue-pattern-from",
            "1",
            "--queue-pattern-to",
            "8",
        ]),
        "S5" => strings(&["-x1", "-y1", "-s16", "-a", "-r10000"]),
        _ => Vec::new(),
    };
    match scenario {
        "S3" => f.extend([
            "--queue-pattern".into(),
            pattern,
            "-e".into(),
            "amq.direct".into(),
        ]),
        "S4" => f.extend([
            "--queue-pattern".into(),
            pattern,
            "-e".into(),
            format!("bench-{tag}-fanout"),
        ]),
        _ => f.extend(["-u".into(), q, "-e".into(), "amq.direct".into()]),
    }
    f.extend(["-z".into(), z, "--cleanup".into()]);
    f
}

fn run_scenario(
    ctx: &Ctx,
    broker: &mut Broker,
    scenario: &str,
    round: usize,
    figures: &mut Figures,
) -> Result<(), String> {
    let tag = format!("{}-r{round}", scenario.to_lowercase());
    let mut put = |m: Metric, v: Option<f64>| {
        if let Some(v) = v {
            figures
                .entry((scenario.to_string(), m))
                .or_default()
                .push(v);
        }
    };
    match scenario {
        "S6" => {
            let rss_before = vm_kib(broker.pid, "VmRSS").unwrap_or(0);
            let hold = 3.0f64;
            let mut child = Command::new(ctx.perf)
                .arg("--uri")
                .arg(broker.uri())
                .args(["--json", "--quiet", "--connections"])
                .arg(ctx.connections.to_string())
                .args(["-z", &format!("{hold}")])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .map_err(|e| format!("fedamq-perf: {e}"))?;
            // Wait for "N connections open" on stderr, let the broker settle, sample RSS.
            let stderr = child.stderr.take().ok_or("no stderr")?;
            let mut lines = BufReader::new(stderr).lines();
            let mut open_line = None;
            for line in lines.by_ref() {
                let line = line.map_err(|e| e.to_string())?;
                if line.contains("connections open") {
                    open_line = Some(line);
                    break;
                }
            }
            std::thread::spawn(move || for _ in lines {});
            let open_line = open_line.ok_or("fedamq-perf ended before opening connections")?;
            std::thread::sleep(Duration::from_secs(1));
            let rss_open = vm_kib(broker.pid, "VmRSS").unwrap_or(0);
            let out = child.wait_with_output().map_err(|e| e.to_string())?;
            let v: Value = serde_json::from_str(String::from_utf8_lossy(&out.stdout).trim())
                .map_err(|e| format!("S6 output: {e} ({open_line})"))?;
            let opened = num(&v, "connections_opened");
            if opened < ctx.connections as f64 {
                return Err(format!(
                    "S6 on {}: only {opened} of {} connections opened: {:?}",
                    broker.name(),
                    ctx.connections,
                    v["errors"]
                ));
            }
            put(
                Metric::RssPerConnection,
                Some(rss_open.saturating_sub(rss_before) as f64 / opened),
            );
            put(Metric::ConnectTime, Some(num(&v, "connect_time_s")));
            put(Metric::PeakRss, Some(rss_open as f64 / 1024.0));
            note_version(broker, &v);
        }
        "S7" => {
            let q = format!("bench-{tag}");
            let n = ctx.backlog.to_string();
            let limit = Duration::from_secs(600);
            let fill = strings(&["-x1", "-y0", "-s16", "-e", "amq.direct", "-u", &q, "-C", &n]);
            let (v, cpu, peak) = measured(ctx, broker, || perf_json(ctx, broker, &fill, limit))?;
            let rss_full = vm_kib(broker.pid, "VmRSS").unwrap_or(0) as f64 / 1024.0;
            note_version(broker, &v);
            put(Metric::PublishRate, Some(num(&v, "publish_rate")));
            put(Metric::RssAfterFill, Some(rss_full));
            let fill_msgs = num(&v, "published");
            let drain = strings(&[
                "-x0",
                "-y1",
                "-s16",
                "-a",
                "-e",
                "amq.direct",
                "-u",
                &q,
                "-D",
                &n,
                "--cleanup",
            ]);
            let (d, cpu2, peak2) = measured(ctx, broker, || perf_json(ctx, broker, &drain, limit))?;
            put(Metric::ConsumeRate, Some(num(&d, "consume_rate")));
            let msgs = fill_msgs.max(num(&d, "consumed"));
            put(Metric::CpuPerMillion, per_million(cpu + cpu2, msgs));
            put(Metric::PeakRss, Some(peak.max(peak2)));
        }
        _ => {
            // A TLS scenario runs its plain one's flags.
            let plain = tls::plain_of(scenario).unwrap_or(scenario);
            let flags = throughput_flags(plain, ctx.seconds, &tag);
            let limit = Duration::from_secs_f64(ctx.seconds + 120.0);
            let (v, cpu, peak) = measured(ctx, broker, || perf_json(ctx, broker, &flags, limit))?;
            if flags.iter().any(|f| f == "--unbatched") && v["unbatched"] != true {
                return Err(format!("{scenario}: fedamq-perf did not write per publish"));
            }
            note_version(broker, &v);
            put(Metric::PublishRate, Some(num(&v, "publish_rate")));
            put(Metric::ConsumeRate, Some(num(&v, "consume_rate")));
            put(Metric::LatencyP50, ms(&v, "latency_us", "p50"));
            put(Metric::LatencyP95, ms(&v, "latency_us", "p95"));
            put(Metric::LatencyP99, ms(&v, "latency_us", "p99"));
            put(Metric::LatencyP999, ms(&v, "latency_us", "p99_9"));
            if plain == "S2" {
                put(Metric::ConfirmP50, ms(&v, "confirm_latency_us", "p50"));
                put(Metric::ConfirmP99, ms(&v, "confirm_latency_us", "p99"));
            }
            // Messages the broker handled: the larger of published and delivered (a
            // fanout delivers each message 8 times).
            let msgs = num(&v, "published").max(num(&v, "consumed"));
            put(Metric::CpuPerMillion, per_million(cpu, msgs));
            put(Metric::PeakRss, Some(peak));
        }
    }
    Ok(())
}

/// `/proc/loadavg`'s first three figures.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "-".into())
}

fn per_million(cpu_s: f64, msgs: f64) -> Option<f64> {
    (msgs > 0.0).then(|| cpu_s / (msgs / 1e6))
}

fn note_version(broker: &mut Broker, v: &Value) {
    if broker.version.is_empty() {
        if let Some(b) = v["broker"].as_str().filter(|b| !b.trim().is_empty()) {
            broker.version = b.trim().to_string();
        }
    }
    if let Some(t) = v["tls"].as_str().filter(|_| broker.tls.is_empty()) {
        broker.tls = t.to_string();
    }
}

// ---------------------------------------------------------------------------------------
// The run and the report

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let n = s.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

fn fmt_value(v: f64) -> String {
    if v.is_nan() {
        "-".into()
    } else if v >= 10_000.0 {
        thousands(v)
    } else if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

fn scenario_title(s: &str, o: &Options) -> String {
    if let Some(plain) = tls::plain_of(s) {
        return tls::title(s, &scenario_title(plain, o));
    }
    match s {
        federation::SCENARIO => federation::title(),
        "S1" => "S1: 1p/1c, 16 B, auto-ack".into(),
        "S1u" => "S1u: S1 with one write per publish (as pika, amqplib, amqprs)".into(),
        "S1w" => "S1w: S1u with one publish in flight (each waits for its confirm)".into(),
        "S1b" => "S1b: 1p/1c, 1 KiB, auto-ack".into(),
        "S2" => "S2: 1p/1c, 16 B, manual ack, prefetch 100, confirms (1,000 in flight)".into(),
        "S3" => "S3: 4p/4c over 4 queues, 256 B, auto-ack".into(),
        "S4" => "S4: fanout 1 → 8 queues, a consumer each, 64 B, auto-ack".into(),
        "S5" => "S5: latency at 10,000 msg/s, 1p/1c, 16 B, auto-ack".into(),
        "S6" => format!("S6: {} idle connections with a channel each", o.connections),
        "S7" => format!(
            "S7: backlog of {} × 16 B published with no consumer, then drained (auto-ack)",
            o.backlog
        ),
        _ => s.to_string(),
    }
}

fn table(o: &Options, names: (&str, &str), fed: &Figures, rab: &Figures) -> String {
    let mut t = String::new();
    let _ = writeln!(
        t,
        "| scenario | figure | {} | {} | fedamq ÷ RabbitMQ |",
        names.0, names.1
    );
    let _ = writeln!(t, "|---|---|--:|--:|--:|");
    for s in &o.scenarios {
        let mut first = true;
        let metrics: Vec<Metric> = fed
            .keys()
            .chain(rab.keys())
            .filter(|(sc, _)| sc == s)
            .map(|(_, m)| *m)
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        for m in metrics {
            let key = (s.clone(), m);
            let f = fed.get(&key).map(|v| median(v)).unwrap_or(f64::NAN);
            let r = rab.get(&key).map(|v| median(v)).unwrap_or(f64::NAN);
            let ratio = if f.is_nan() || r.is_nan() || r == 0.0 {
                "-".to_string()
            } else {
                let x = f / r;
                // Only differences over 5 % count as better.
                let better = if m.higher_is_better() {
                    x > 1.05
                } else {
                    x < 1.0 / 1.05
                };
                format!("{x:.2}{}", if better { " ✓" } else { "" })
            };
            let title = if first {
                scenario_title(s, o)
            } else {
                String::new()
            };
            first = false;
            let _ = writeln!(
                t,
                "| {title} | {} | {} | {} | {ratio} |",
                m.label(),
                fmt_value(f),
                fmt_value(r)
            );
        }
    }
    t
}

fn run(root: &Path, o: &Options) -> Result<(), String> {
    // Read when the binaries are built: the tree may move on while the run goes.
    let revision = revision(root);
    let (commit, date) = (revision.commit.clone(), revision.date.clone());
    let (fedamq_bin, perf) = release_binaries(root, o.build, "bench-compare")?;
    ensure_rabbitmq()?;
    let certs = tls::Certificates::for_scenarios(&o.scenarios)?;

    let ctx = Ctx {
        perf: &perf,
        seconds: o.seconds,
        backlog: o.backlog,
        connections: o.connections,
        ticks: clock_ticks_per_second(),
    };
    let started = Instant::now();
    let load_before = load_average();
    let mut figures: [Figures; 2] = [Figures::new(), Figures::new()];
    // Per broker: RSS right after start (one per start), version, Erlang release.
    let mut idle_rss: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    let mut names = ["fedamq".to_string(), "RabbitMQ".to_string()];
    let mut tls_sessions = [String::new(), String::new()];
    let mut erlang = String::new();
    for round in 1..=o.rounds {
        for s in &o.scenarios {
            // fedamq, RabbitMQ, fedamq, RabbitMQ …: machine drift hits both. Each run
            // gets a freshly started broker, so memory figures are the scenario's own and
            // not what an earlier one left in the allocator.
            for (i, which) in [Which::Fedamq, Which::Rabbit].into_iter().enumerate() {
                if s == federation::SCENARIO {
                    let (name, rss) =
                        federation::run_round(&ctx, which, &fedamq_bin, round, &mut figures[i])?;
                    idle_rss[i].push(rss);
                    if let Some(name) = name {
                        names[i] = name;
                    }
                    continue;
                }
                let mut broker = match certs.as_ref().filter(|_| tls::plain_of(s).is_some()) {
                    Some(certs) => tls::start(which, &fedamq_bin, certs)?,
                    None if which == Which::Fedamq => Broker::start_fedamq(&fedamq_bin, &[])?,
                    None => Broker::start_rabbit("")?,
                };
                // Let the start settle (RabbitMQ keeps booting plugins-less apps briefly).
                std::thread::sleep(Duration::from_secs(2));
                idle_rss[i].push(vm_kib(broker.pid, "VmRSS").unwrap_or(0) as f64 / 1024.0);
                eprintln!(
                    "bench-compare: round {round}, {s}, {} (pid {}, port {})",
                    broker.name(),
                    broker.pid,
                    broker.port
                );
                let r = run_scenario(&ctx, &mut broker, s, round, &mut figures[i]);
                if !broker.version.is_empty() {
                    names[i] = broker.version.clone();
                }
                if !broker.tls.is_empty() {
                    tls_sessions[i] = broker.tls.clone();
                }
                if which == Which::Rabbit && erlang.is_empty() {
                    erlang = broker
                        .rabbitmqctl(&["eval", "erlang:system_info(otp_release)."])
                        .map(|s| s.trim().trim_matches('"').to_string())
                        .unwrap_or_default();
                }
                broker.stop();
                r?;
            }
        }
    }

    let mut md = String::new();
    let _ = writeln!(md, "# fedamq vs RabbitMQ, {date}\n");
    md.push_str(&revision.lines());
    let _ = writeln!(
        md,
        "- brokers: {} (release build) and {}{} (Debian package, no plugins but F1's \
         rabbitmq_federation, default configuration)",
        names[0],
        names[1],
        if erlang.is_empty() {
            String::new()
        } else {
            format!(", Erlang/OTP {erlang}")
        }
    );
    let _ = writeln!(
        md,
        "- run: `cargo xtask bench-compare --scenarios {} --seconds {} --rounds {} --backlog {} --connections {}`, {:.0} s in all",
        o.scenarios.join(","),
        o.seconds,
        o.rounds,
        o.backlog,
        o.connections,
        started.elapsed().as_secs_f64()
    );
    let _ = writeln!(
        md,
        "- load average (1, 5, 15 min) before the run: {load_before}; after: {}",
        load_average()
    );
    let _ = writeln!(
        md,
        "- load generator: fedamq-perf on the same machine as the broker (they share the cores); \
         one connection per producer and consumer; each run starts its broker afresh (RSS \
         2 s after start: fedamq {:.1} MiB, RabbitMQ {:.1} MiB)",
        median(&idle_rss[0]),
        median(&idle_rss[1]),
    );
    let _ = writeln!(
        md,
        "- figures are medians over rounds; rates are fedamq-perf's averages over each run; \
         CPU is the broker process's utime+stime (RabbitMQ: beam.smp) per message, in µs \
         (the larger of published and delivered; the same figure as seconds per million \
         messages in earlier tables); RSS per connection is the RSS increase with \
         all connections open divided by their number; ✓ marks the figures where fedamq is better by more than 5 %\n"
    );
    md.push_str(&table(o, (&names[0], &names[1]), &figures[0], &figures[1]));
    if o.scenarios.iter().any(|s| s == federation::SCENARIO) {
        md.push_str(&federation::notes(&figures[0]));
    }
    md.push_str(&tls::cost_section(
        o,
        (&names[0], &names[1]),
        (&tls_sessions[0], &tls_sessions[1]),
        (&figures[0], &figures[1]),
    ));
    println!("\n{md}");

    if o.write {
        let dir = root.join("bench").join("results");
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let file = dir.join(format!("{date}-{commit}.md"));
        std::fs::write(&file, &md).map_err(|e| format!("{}: {e}", file.display()))?;
        eprintln!("bench-compare: wrote {}", file.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options() {
        let o = parse(&["--scenarios", "s1,S5", "--seconds", "2.5", "--rounds", "3"]).unwrap();
        assert_eq!(o.scenarios, vec!["S1", "S5"]);
        assert_eq!((o.seconds, o.rounds), (2.5, 3));
        let o = parse(&[]).unwrap();
        assert_eq!(o.scenarios.len(), ALL.len());
        assert!(parse(&["--scenarios", "S9"]).is_err());
        assert!(parse(&["--seconds", "0"]).is_err());
        assert!(parse(&["--rounds"]).is_err());
        assert!(parse(&["--bogus"]).is_err());
    }

    #[test]
    fn proc_stat_and_status_of_this_process() {
        let me = std::process::id();
        assert!(cpu_ticks(me).is_some());
        assert!(vm_kib(me, "VmRSS").unwrap() > 0);
        assert!(vm_kib(me, "VmNope").is_none());
    }

    #[test]
    fn medians_and_numbers() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0]), 2.5);
        assert!(median(&[]).is_nan());
        assert_eq!(fmt_value(1_234_567.4), "1,234,567");
        assert_eq!(fmt_value(123.4), "123");
        assert_eq!(fmt_value(1.234), "1.23");
        assert_eq!(fmt_value(0.1234), "0.123");
        assert_eq!(fmt_value(f64::NAN), "-");
    }

    #[test]
    fn scenario_flags() {
        let f = throughput_flags("S4", 10.0, "s4-r1");
        let joined = f.join(" ");
        assert!(joined.contains("-y8"));
        assert!(joined.contains("--queue-pattern bench-s4-r1-%d"));
        assert!(joined.contains("-e bench-s4-r1-fanout"));
        assert!(joined.contains("-t fanout"));
        assert!(joined.ends_with("-z 10 --cleanup"));
        let f = throughput_flags("S2", 10.0, "s2-r1").join(" ");
        assert!(f.contains("-c1000") && f.contains("-q100") && !f.contains("-a"));
        let f = throughput_flags("S1u", 10.0, "s1u-r1").join(" ");
        assert!(
            f.starts_with("-x1 -y1 -s16 -a --unbatched -u bench-s1u-r1"),
            "{f}"
        );
        let f = throughput_flags("S1w", 10.0, "s1w-r1").join(" ");
        assert!(
            f.starts_with("-x1 -y1 -s16 -a --unbatched -c1 -u bench-s1w-r1"),
            "{f}"
        );
        assert!(
            !throughput_flags("S1", 10.0, "s1-r1")
                .join(" ")
                .contains("unbatched")
        );
    }

    #[test]
    fn table_has_both_brokers_and_ratio() {
        let o = parse(&["--scenarios", "S1"]).unwrap();
        let mut f = Figures::new();
        let mut r = Figures::new();
        f.insert(("S1".into(), Metric::PublishRate), vec![200_000.0]);
        r.insert(("S1".into(), Metric::PublishRate), vec![100_000.0]);
        f.insert(("S1".into(), Metric::CpuPerMillion), vec![3.0]);
        r.insert(("S1".into(), Metric::CpuPerMillion), vec![6.0]);
        let t = table(&o, ("fedamq 0.1.0", "RabbitMQ 3.10.8"), &f, &r);
        assert!(
            t.contains(
                "| S1: 1p/1c, 16 B, auto-ack | publish msg/s | 200,000 | 100,000 | 2.00 ✓ |"
            ),
            "{t}"
        );
        assert!(
            t.contains("| broker CPU µs / msg | 3.00 | 6.00 | 0.50 ✓ |"),
            "{t}"
        );
    }
}
