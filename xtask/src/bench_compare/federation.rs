//! bench-compare's federation scenario, F1: messages per second from a publisher on an
//! upstream broker to a consumer on a downstream broker, through one federation link
//! (subscriber mode, `ack-mode` on-confirm, `prefetch-count` 1000).
//!
//! fedamq→fedamq is two fedamq processes: the downstream loads a definitions file with
//! the `federation-upstream` parameter and the policy that federates the exchange.
//! RabbitMQ→RabbitMQ is one node with the `rabbitmq_federation` plugin enabled and two
//! vhosts, `fed-up` and `fed-down`, the downstream vhost's upstream URI naming the
//! upstream vhost: the link is a real AMQP connection to the same node, as between two
//! nodes, without a second Erlang VM on the two shared cores.
//!
//! Each run: the consumer (fedamq-perf, manual ack, prefetch 100) declares the
//! exchange and its queue downstream and binds it; a second, throw-away binding is
//! probed until a message published upstream reaches it, so the first binding has been
//! mirrored upstream; then the publisher (confirms, 1,000 in flight) publishes N
//! messages upstream. The rate is N over the time from the publisher's start to the
//! consumer's last message. A first run of 50,000 messages warms the link and sizes N
//! to about `--seconds` of the second, measured, run; both use the same queue, which
//! nothing else is bound to with the measured key.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{Ctx, Figures, Metric, ms, num, per_million, strings};
use crate::brokers::{Broker, Which, cpu_ticks, vm_kib, wait_exit};

/// The scenario's name in `--scenarios`.
pub(super) const SCENARIO: &str = "F1";

/// The federated exchange and the routing key the measured messages carry.
const EXCHANGE: &str = "bench-f1";
const KEY: &str = "f1";
/// Messages of the warm-up run, which also sizes the measured one.
const WARM_UP: u64 = 50_000;

pub(super) fn title() -> String {
    "F1: federation link, publisher upstream → consumer downstream, 16 B, link on-confirm \
     prefetch 1000, consumer manual ack prefetch 100, confirms (1,000 in flight)"
        .into()
}

/// The report's paragraph on F1: how the pairs were set up, and F1's rate against the
/// target (half of fedamq's S2, when S2 ran too).
pub(super) fn notes(fedamq: &Figures) -> String {
    let rate = |s: &str| {
        fedamq
            .get(&(s.to_string(), Metric::ConsumeRate))
            .map(|v| super::median(v))
    };
    let mut md = String::from(
        "\nF1: fedamq→fedamq is two fedamq processes, the downstream federating `bench-f1` \
         from the upstream (definitions file: a `federation-upstream` with `ack-mode` \
         on-confirm and `prefetch-count` 1000, and a policy); RabbitMQ→RabbitMQ is one \
         node with `rabbitmq_federation` enabled and two vhosts, the upstream URI of vhost \
         `fed-down` naming vhost `fed-up` (the link is an AMQP connection to the same \
         node). Rates are messages over the time from the publisher's start to the \
         downstream consumer's last message; CPU and RSS are both fedamq processes' sum.\n",
    );
    if let (Some(f1), Some(s2)) = (rate(SCENARIO), rate("S2")) {
        md.push_str(&format!(
            "F1 ÷ S2 (fedamq, consume msg/s): {:.2}.\n",
            f1 / s2
        ));
    }
    md
}

/// The two ends of a link: two fedamq processes, or one RabbitMQ node with two vhosts.
struct Pair {
    brokers: Vec<Broker>,
    up_uri: String,
    down_uri: String,
    /// The downstream fedamq's definitions file, removed on drop.
    defs: Option<PathBuf>,
}

impl Pair {
    fn start(which: Which, fedamq: &Path) -> Result<Pair, String> {
        match which {
            Which::Fedamq => {
                let up = Broker::start_fedamq(fedamq, &["--cluster-name", "bench-up"])?;
                let up_uri = up.uri();
                let defs = std::env::temp_dir()
                    .join(format!("fedamq-bench-f1-{}.json", std::process::id()));
                std::fs::write(&defs, definitions(&up_uri).to_string())
                    .map_err(|e| format!("{}: {e}", defs.display()))?;
                let defs_arg = defs.display().to_string();
                let down = Broker::start_fedamq(
                    fedamq,
                    &[
                        "--cluster-name",
                        "bench-down",
                        "--load-definitions",
                        &defs_arg,
                    ],
                )?;
                let down_uri = down.uri();
                Ok(Pair {
                    brokers: vec![up, down],
                    up_uri,
                    down_uri,
                    defs: Some(defs),
                })
            }
            Which::Rabbit => {
                let node = Broker::start_rabbit_with_plugins("", &["rabbitmq_federation"])?;
                let base = format!("amqp://guest:guest@127.0.0.1:{}", node.port);
                let (up_uri, down_uri) = (format!("{base}/fed-up"), format!("{base}/fed-down"));
                for vhost in ["fed-up", "fed-down"] {
                    node.rabbitmqctl(&["add_vhost", vhost])?;
                    node.rabbitmqctl(&["set_permissions", "-p", vhost, "guest", ".*", ".*", ".*"])?;
                }
                let upstream = upstream_value(&up_uri).to_string();
                node.rabbitmqctl(&[
                    "set_parameter",
                    "-p",
                    "fed-down",
                    "federation-upstream",
                    "bench-up",
                    &upstream,
                ])?;
                node.rabbitmqctl(&[
                    "set_policy",
                    "-p",
                    "fed-down",
                    "--apply-to",
                    "exchanges",
                    "bench-federation",
                    &format!("^{EXCHANGE}$"),
                    r#"{"federation-upstream":"bench-up"}"#,
                ])?;
                Ok(Pair {
                    brokers: vec![node],
                    up_uri,
                    down_uri,
                    defs: None,
                })
            }
        }
    }

    fn cpu_ticks(&self) -> Result<u64, String> {
        self.brokers
            .iter()
            .map(|b| cpu_ticks(b.pid).ok_or_else(|| "cannot read a broker's CPU time".into()))
            .sum()
    }

    fn rss_mib(&self) -> f64 {
        self.brokers
            .iter()
            .map(|b| vm_kib(b.pid, "VmRSS").unwrap_or(0) as f64 / 1024.0)
            .sum()
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        for b in &mut self.brokers {
            b.stop();
        }
        if let Some(defs) = &self.defs {
            let _ = std::fs::remove_file(defs);
        }
    }
}

/// The upstream's parameter value: the link settings the scenario names.
fn upstream_value(uri: &str) -> Value {
    json!({"uri": uri, "ack-mode": "on-confirm", "prefetch-count": 1000})
}

/// The downstream fedamq's definitions: the upstream and the policy federating the
/// exchange (the consumer declares the exchange itself).
fn definitions(up_uri: &str) -> Value {
    json!({
        "parameters": [{
            "vhost": "/", "component": "federation-upstream", "name": "bench-up",
            "value": upstream_value(up_uri)
        }],
        "policies": [{
            "vhost": "/", "name": "bench-federation", "pattern": format!("^{EXCHANGE}$"),
            "apply-to": "exchanges", "priority": 0,
            "definition": {"federation-upstream": "bench-up"}
        }]
    })
}

fn spawn_perf(ctx: &Ctx, uri: &str, flags: &[String]) -> Result<Child, String> {
    Command::new(ctx.perf)
        .arg("--uri")
        .arg(uri)
        .args(["--json", "--quiet"])
        .args(flags)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("fedamq-perf: {e}"))
}

/// Waits for a fedamq-perf started by [`spawn_perf`] and returns its JSON.
fn finish_perf(mut child: Child, what: &str, limit: Duration) -> Result<Value, String> {
    if !wait_exit(&mut child, limit) {
        let _ = child.kill();
        let _ = child.wait();
        return Err(format!("F1: the {what} timed out"));
    }
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let v: Value = serde_json::from_str(stdout.trim()).map_err(|e| {
        format!(
            "F1: the {what}: {e}\nstdout: {stdout}\nstderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })?;
    if let Some(errors) = v["errors"].as_array().filter(|e| !e.is_empty()) {
        return Err(format!("F1: the {what}: {errors:?}"));
    }
    Ok(v)
}

/// The consumer's flags: S2's consumer, on the federated exchange.
fn consumer_flags(queue: &str, messages: u64) -> Vec<String> {
    let mut f = strings(&["-x0", "-y1", "-s16", "-q100", "-t", "direct"]);
    f.extend(["-e".into(), EXCHANGE.into(), "-u".into(), queue.into()]);
    f.extend(["-k".into(), KEY.into(), "-D".into(), messages.to_string()]);
    f
}

/// The publisher's flags: S2's publisher, to the upstream exchange the link declared.
fn publisher_flags(messages: u64) -> Vec<String> {
    let mut f = strings(&["-x1", "-y0", "-s16", "-c1000", "-p"]);
    f.extend(["-e".into(), EXCHANGE.into(), "-k".into(), KEY.into()]);
    f.extend(["-C".into(), messages.to_string()]);
    f
}

/// Publishes single messages upstream with the routing key `ready` until a consumer of a
/// queue bound downstream with that key has one: the link is up and every binding made
/// before it has been mirrored.
fn await_link(ctx: &Ctx, pair: &Pair, queue: &str) -> Result<(), String> {
    let mut waiter = strings(&["-x0", "-y1", "-s16", "-a", "-t", "direct", "-k", "ready"]);
    waiter.extend(["-e".into(), EXCHANGE.into(), "-u".into(), queue.into()]);
    waiter.extend(strings(&["-D", "1"]));
    let mut child = spawn_perf(ctx, &pair.down_uri, &waiter)?;
    let probe = strings(&[
        "-x1", "-y0", "-s16", "-p", "-e", EXCHANGE, "-k", "ready", "-C", "1",
    ]);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Ok(Some(_)) = child.try_wait() {
            return finish_perf(child, "link probe", Duration::from_secs(1)).map(drop);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err("F1: no message crossed the federation link in 120 s".into());
        }
        // The upstream exchange may not exist yet: a failed probe is tried again.
        let _ = Command::new(ctx.perf)
            .arg("--uri")
            .arg(&pair.up_uri)
            .args(["--json", "--quiet"])
            .args(&probe)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// One transfer of `messages` through the link; the consumer's JSON, the publisher's
/// and the rate from the publisher's start to the consumer's end.
fn transfer(
    ctx: &Ctx,
    pair: &Pair,
    queue: &str,
    messages: u64,
) -> Result<(Value, Value, f64), String> {
    let consumer = spawn_perf(ctx, &pair.down_uri, &consumer_flags(queue, messages))?;
    // The consumer declares and binds before the probe's binding, on another connection:
    // give it a moment so its binding is made first.
    std::thread::sleep(Duration::from_millis(500));
    await_link(ctx, pair, "bench-f1-ready")?;
    let started = Instant::now();
    let publisher = spawn_perf(ctx, &pair.up_uri, &publisher_flags(messages))?;
    let limit = Duration::from_secs_f64(ctx.seconds * 20.0 + 300.0);
    let mut consumer = consumer;
    if !wait_exit(&mut consumer, limit) {
        let _ = consumer.kill();
        let _ = consumer.wait();
        let _ = finish_perf(publisher, "publisher", Duration::from_secs(5));
        return Err(format!(
            "F1: the consumer had not received {messages} in time"
        ));
    }
    let elapsed = started.elapsed().as_secs_f64();
    let c = finish_perf(consumer, "consumer", Duration::from_secs(1))?;
    let p = finish_perf(publisher, "publisher", limit)?;
    Ok((c, p, messages as f64 / elapsed))
}

/// One round of F1 on `which`: starts the pair, warms up, measures, stops the pair.
/// Returns the brokers' name (fedamq's version line, RabbitMQ's) when known, and the
/// pair's RSS 2 s after start, in MiB.
pub(super) fn run_round(
    ctx: &Ctx,
    which: Which,
    fedamq: &Path,
    round: usize,
    figures: &mut Figures,
) -> Result<(Option<String>, f64), String> {
    let pair = Pair::start(which, fedamq)?;
    std::thread::sleep(Duration::from_secs(2));
    let idle_rss = pair.rss_mib();
    eprintln!(
        "bench-compare: round {round}, {SCENARIO}, {} (pids {:?})",
        pair.brokers[0].name(),
        pair.brokers.iter().map(|b| b.pid).collect::<Vec<_>>()
    );
    let (_, _, warm_rate) = transfer(ctx, &pair, "bench-f1", WARM_UP)?;
    let messages = ((warm_rate * ctx.seconds) as u64).clamp(WARM_UP, 50_000_000);
    let before = pair.cpu_ticks()?;
    let sampler_peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let pids: Vec<u32> = pair.brokers.iter().map(|b| b.pid).collect();
        let (peak, stop) = (sampler_peak.clone(), stop.clone());
        std::thread::spawn(move || {
            use std::sync::atomic::Ordering::Relaxed;
            while !stop.load(Relaxed) {
                let kib: u64 = pids.iter().map(|p| vm_kib(*p, "VmRSS").unwrap_or(0)).sum();
                peak.fetch_max(kib, Relaxed);
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    let r = transfer(ctx, &pair, "bench-f1", messages);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = sampler.join();
    let (c, p, rate) = r?;
    let cpu = (pair.cpu_ticks()? - before) as f64 / ctx.ticks;
    let mut put = |m: Metric, v: Option<f64>| {
        if let Some(v) = v {
            figures
                .entry((SCENARIO.to_string(), m))
                .or_default()
                .push(v);
        }
    };
    put(Metric::ConsumeRate, Some(rate));
    put(Metric::PublishRate, Some(num(&p, "publish_rate")));
    put(Metric::LatencyP50, ms(&c, "latency_us", "p50"));
    put(Metric::LatencyP99, ms(&c, "latency_us", "p99"));
    put(Metric::CpuPerMillion, per_million(cpu, messages as f64));
    let peak = sampler_peak.load(std::sync::atomic::Ordering::Relaxed) as f64 / 1024.0;
    put(Metric::PeakRss, Some(peak.max(idle_rss)));
    let name = c["broker"]
        .as_str()
        .map(str::trim)
        .filter(|b| !b.is_empty())
        .map(str::to_string);
    Ok((name, idle_rss))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_downstream_definitions_federate_the_exchange() {
        let d = definitions("amqp://guest:guest@127.0.0.1:5999/%2f");
        let p = &d["parameters"][0];
        assert_eq!(p["component"], "federation-upstream");
        assert_eq!(p["value"]["ack-mode"], "on-confirm");
        assert_eq!(p["value"]["prefetch-count"], 1000);
        assert_eq!(d["policies"][0]["pattern"], "^bench-f1$");
        assert_eq!(
            d["policies"][0]["definition"]["federation-upstream"],
            "bench-up"
        );
    }

    #[test]
    fn perf_flags() {
        let c = consumer_flags("q", 10).join(" ");
        assert_eq!(
            c,
            "-x0 -y1 -s16 -q100 -t direct -e bench-f1 -u q -k f1 -D 10"
        );
        let p = publisher_flags(10).join(" ");
        assert_eq!(p, "-x1 -y0 -s16 -c1000 -p -e bench-f1 -k f1 -C 10");
    }
}
