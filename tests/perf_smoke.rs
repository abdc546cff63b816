//! `fedamq-perf` against an in-process broker: short runs that check it publishes,
//! consumes and reports (rates, counts, latency percentiles) — not how fast. Benchmarks
//! proper are `fedamq-perf` itself and `cargo xtask bench-compare`.

mod support;

use std::process::Output;

use fedamq::config::Config;
use fedamq::{BrokerHandle, Server};
use serde_json::Value;
use support::tls::Pki;

async fn broker() -> BrokerHandle {
    let config = Config {
        bind: "127.0.0.1".parse().unwrap(),
        port: 0,
        management: fedamq::config::ManagementListener {
            port: None,
            ..Default::default()
        },
        prometheus: fedamq::config::ManagementListener {
            port: None,
            ..Default::default()
        },
        ..Config::default()
    };
    Server::start(config).await.expect("broker starts")
}

/// Runs fedamq-perf with `--json --quiet` and the given flags; returns its JSON result.
async fn perf(broker: &BrokerHandle, flags: &[&str]) -> Value {
    perf_at(&broker.url("guest", "guest"), flags).await
}

/// Runs fedamq-perf against `uri` with `--json --quiet` and the given flags.
async fn perf_output(uri: &str, flags: &[&str]) -> Output {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_fedamq-perf"))
        .arg("--uri")
        .arg(uri)
        .args(["--json", "--quiet"])
        .args(flags)
        .output();
    tokio::time::timeout(std::time::Duration::from_secs(60), out)
        .await
        .expect("fedamq-perf finishes")
        .expect("fedamq-perf runs")
}

/// [`perf_output`], which must succeed; its JSON result.
async fn perf_at(uri: &str, flags: &[&str]) -> Value {
    let out = perf_output(uri, flags).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "fedamq-perf {flags:?} failed: {}\nstdout: {stdout}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"))
}

fn num(v: &Value, key: &str) -> f64 {
    v[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} missing or not a number in {v}"))
}

/// Percentiles present, positive and in order.
fn check_percentiles(v: &Value, key: &str) {
    let l = &v[key];
    assert!(l.is_object(), "{key} missing: {v}");
    let p: Vec<f64> = ["min", "p50", "p95", "p99", "p99_9", "max"]
        .iter()
        .map(|k| num(l, k))
        .collect();
    assert!(p[0] > 0.0, "{key}: min {}", p[0]);
    assert!(
        p.windows(2).all(|w| w[0] <= w[1]),
        "{key} out of order: {p:?}"
    );
    assert!(num(l, "count") > 0.0);
}

fn no_errors(v: &Value) {
    assert_eq!(v["errors"].as_array().map(Vec::len), Some(0), "errors: {v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_seconds_auto_ack() {
    let b = broker().await;
    let v = perf(&b, &["-x1", "-y1", "-s16", "-a", "-z2", "--cleanup"]).await;
    no_errors(&v);
    assert!(num(&v, "publish_rate") > 0.0);
    assert!(num(&v, "consume_rate") > 0.0);
    assert!(num(&v, "consumed") > 0.0);
    assert!(num(&v, "published") >= num(&v, "consumed"));
    assert!(num(&v, "duration_s") >= 2.0);
    check_percentiles(&v, "latency_us");
    assert!(v["confirm_latency_us"].is_null(), "no confirms asked for");
    let seconds = v["per_second"].as_array().expect("per_second");
    assert!(!seconds.is_empty());
    assert!(seconds.iter().any(|s| num(s, "consumed") > 0.0));
    assert!(v["broker"].as_str().unwrap().starts_with("fedamq"));
    b.shutdown().await;
}

/// S1u's client: each publish in its own write call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unbatched_writes_one_call_per_publish() {
    let b = broker().await;
    let v = perf(
        &b,
        &[
            "-x1",
            "-y1",
            "-s16",
            "-a",
            "-z1",
            "--unbatched",
            "--cleanup",
        ],
    )
    .await;
    no_errors(&v);
    assert_eq!(v["unbatched"], true);
    assert!(num(&v, "consumed") > 0.0);
    assert!(num(&v, "published") >= num(&v, "consumed"));
    // At least one call per publish (more when a write is cut short).
    assert!(num(&v, "publish_writes") >= num(&v, "published"), "{v}");
    check_percentiles(&v, "latency_us");
    // The default still batches.
    let v = perf(&b, &["-x1", "-y0", "-s16", "-C", "10000", "--cleanup"]).await;
    no_errors(&v);
    assert_eq!(v["unbatched"], false);
    assert!(num(&v, "publish_writes") < num(&v, "published"), "{v}");
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_seconds_confirms_and_manual_multi_ack() {
    let b = broker().await;
    let v = perf(
        &b,
        &[
            "-x1",
            "-y1",
            "-s64",
            "-q100",
            "-A10",
            "-c100",
            "-z2",
            "--cleanup",
        ],
    )
    .await;
    no_errors(&v);
    assert!(num(&v, "publish_rate") > 0.0);
    assert!(num(&v, "consume_rate") > 0.0);
    assert!(num(&v, "consumed") > 0.0);
    assert!(num(&v, "confirmed") > 0.0);
    assert_eq!(num(&v, "nacked"), 0.0);
    check_percentiles(&v, "latency_us");
    check_percentiles(&v, "confirm_latency_us");
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_counts_are_exact() {
    let b = broker().await;
    let v = perf(&b, &["-x2", "-y1", "-C", "3000", "-D", "6000", "-c", "50"]).await;
    no_errors(&v);
    assert_eq!(num(&v, "published"), 6000.0);
    assert_eq!(num(&v, "confirmed"), 6000.0);
    assert_eq!(num(&v, "consumed"), 6000.0);
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanout_over_a_queue_pattern() {
    let b = broker().await;
    let v = perf(
        &b,
        &[
            "-x1",
            "-y3",
            "-e",
            "perf-fanout",
            "-t",
            "fanout",
            "--queue-pattern",
            "fan-%d",
            "--queue-pattern-from",
            "1",
            "--queue-pattern-to",
            "3",
            "-C",
            "1000",
            "-D",
            "1000",
            "--cleanup",
        ],
    )
    .await;
    no_errors(&v);
    assert_eq!(num(&v, "queues"), 3.0);
    assert_eq!(num(&v, "published"), 1000.0);
    // Every message reaches each of the three queues.
    assert_eq!(num(&v, "consumed"), 3000.0);
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections() {
    let b = broker().await;
    let v = perf(&b, &["--connections", "20", "-z", "0.2"]).await;
    no_errors(&v);
    assert_eq!(num(&v, "connections_opened"), 20.0);
    b.shutdown().await;
}

/// An `amqps://` URI for the broker's TLS listener, with RabbitMQ's query parameters.
fn amqps_uri(b: &BrokerHandle, query: &str) -> String {
    let addr = b.tls_local_addr().expect("an amqps listener");
    format!("amqps://guest:guest@{addr}/%2f?{query}")
}

/// S2's client over TLS (confirms and manual acks, so both sides wait on each other and
/// a write left in the TLS stream's buffer would stall the run), the server's
/// certificate checked against the CA given in `cacertfile`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_second_over_tls() {
    let pki = Pki::new("perf smoke CA");
    let b =
        support::broker::start_with(support::tls::config(&pki, &pki.server(), false, false)).await;
    let uri = amqps_uri(&b, &format!("cacertfile={}", pki.ca.display()));
    let v = perf_at(
        &uri,
        &["-x1", "-y1", "-s16", "-q100", "-c1000", "-z1", "--cleanup"],
    )
    .await;
    no_errors(&v);
    assert!(num(&v, "consumed") > 0.0, "{v}");
    assert!(num(&v, "confirmed") > 0.0, "{v}");
    check_percentiles(&v, "confirm_latency_us");
    let tls = v["tls"].as_str().unwrap_or_default();
    assert!(tls.starts_with("TLSv1_3 TLS13_"), "{v}");
    // Over plain TCP there is no TLS to report.
    let v = perf(&b, &["-x1", "-y0", "-C", "10", "--cleanup"]).await;
    assert!(v["tls"].is_null(), "{v}");
    b.shutdown().await;
}

/// A server certificate from another CA is refused, with the reason; with
/// `verify=verify_none` the same server is accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_certificate_checked_unless_verify_none() {
    let pki = Pki::new("perf smoke CA");
    let other = Pki::new("another CA");
    let b =
        support::broker::start_with(support::tls::config(&pki, &pki.server(), false, false)).await;
    let flags = ["-x1", "-y0", "-C", "10", "--cleanup"];
    let uri = amqps_uri(&b, &format!("cacertfile={}", other.ca.display()));
    let out = perf_output(&uri, &flags).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("TLS handshake failed"), "{stderr}");
    let v = perf_at(
        &amqps_uri(
            &b,
            &format!("cacertfile={}&verify=verify_none", other.ca.display()),
        ),
        &flags,
    )
    .await;
    no_errors(&v);
    assert_eq!(num(&v, "published"), 10.0);
    b.shutdown().await;
}
