//! The Prometheus endpoint: `/metrics` and `/metrics/per-object` on their own listener,
//! in rabbitmq_prometheus's names, moving with what clients do, and valid for
//! `promtool check metrics` (Debian's `prometheus` package) when it is installed, and
//! always under `FEDAMQ_TEST_REQUIRE_PROMTOOL` (CI sets it).

mod support;

use std::io::Write;
use std::process::{Command, Stdio};

use fedamq::BrokerHandle;
use fedamq::config::Config;
use lapin::BasicProperties;
use lapin::options::{
    BasicAckOptions, BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions, QueueBindOptions,
    QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::FieldTable;
use support::broker;

const PROMTOOL: &str = "/usr/bin/promtool";

/// GETs `path` from the broker's Prometheus listener: the content type and the text.
async fn scrape(b: &BrokerHandle, path: &str) -> (String, String) {
    let addr = b.prometheus_addr().expect("the Prometheus endpoint is on");
    let reply = reqwest::get(format!("http://{addr}{path}"))
        .await
        .expect("scrape");
    assert_eq!(reply.status(), 200, "{path}");
    let kind = reply.headers()[reqwest::header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .to_string();
    (kind, reply.text().await.unwrap())
}

/// The value of the sample `series` (a name with its labels, as written).
fn value(text: &str, series: &str) -> f64 {
    let found: Vec<f64> = text
        .lines()
        .filter_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map(|v| v.parse().expect("a number"))
        .collect();
    assert_eq!(found.len(), 1, "one sample {series} in:\n{text}");
    found[0]
}

/// Runs `promtool check metrics` on `text` if promtool is installed; its output is
/// printed either way.
fn promtool_check(text: &str, what: &str) {
    if !std::path::Path::new(PROMTOOL).exists() {
        assert!(
            std::env::var_os("FEDAMQ_TEST_REQUIRE_PROMTOOL").is_none(),
            "FEDAMQ_TEST_REQUIRE_PROMTOOL is set (as in CI) but {PROMTOOL} is missing"
        );
        eprintln!(
            "skipping promtool check of {what}: {PROMTOOL} not found (Debian's `prometheus` package)"
        );
        return;
    }
    let mut child = Command::new(PROMTOOL)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("promtool check metrics ({what}): {:?}: {said}", out.status);
    assert!(out.status.success(), "promtool on {what}: {said}\n{text}");
    assert!(
        said.trim().is_empty(),
        "promtool finds nothing to lint in {what}: {said}"
    );
}

#[tokio::test]
async fn series_move_with_client_activity_and_pass_promtool() {
    let b = broker::start().await;
    let (kind, before) = scrape(&b, "/metrics").await;
    assert!(kind.starts_with("text/plain; version=0.0.4"), "{kind}");
    assert_eq!(value(&before, "rabbitmq_connections"), 0.0);
    assert_eq!(value(&before, "rabbitmq_queues"), 0.0);
    assert_eq!(
        value(&before, "rabbitmq_queue_messages_published_total"),
        0.0
    );
    assert!(before.contains("# TYPE rabbitmq_queue_messages_published_total counter\n"));
    assert!(before.contains("# TYPE rabbitmq_queue_messages_ready gauge\n"));
    assert!(before.contains("rabbitmq_build_info{rabbitmq_version=\"3.10.8\""));
    promtool_check(&before, "/metrics of an idle broker");

    let (conn, ch) = broker::channel(&b).await;
    ch.queue_declare(
        "metrics-q",
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    for i in 0..3 {
        ch.basic_publish(
            "",
            "metrics-q",
            BasicPublishOptions::default(),
            format!("m{i}").as_bytes(),
            BasicProperties::default(),
        )
        .await
        .unwrap();
    }
    // The publishes come before the get on the channel, so the queue has all three.
    let got = ch
        .basic_get("metrics-q", BasicGetOptions { no_ack: false })
        .await
        .unwrap()
        .expect("a message");
    got.ack(BasicAckOptions::default()).await.unwrap();
    let empty_get = ch
        .basic_get("nothing-here", BasicGetOptions { no_ack: true })
        .await;
    assert!(empty_get.is_err(), "no such queue");
    let ch = conn.create_channel().await.unwrap();
    // A round trip after the ack, so the broker has taken it.
    ch.queue_declare(
        "metrics-q",
        QueueDeclareOptions {
            passive: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .unwrap();

    let (_, during) = scrape(&b, "/metrics").await;
    assert_eq!(value(&during, "rabbitmq_connections"), 1.0);
    assert_eq!(value(&during, "rabbitmq_queues"), 1.0);
    assert_eq!(value(&during, "rabbitmq_queue_messages_ready"), 2.0);
    assert_eq!(value(&during, "rabbitmq_queue_messages_unacked"), 0.0);
    assert_eq!(value(&during, "rabbitmq_queue_messages"), 2.0);
    assert_eq!(
        value(&during, "rabbitmq_queue_messages_published_total"),
        3.0
    );
    assert_eq!(value(&during, "rabbitmq_channel_get_ack_total"), 1.0);
    assert_eq!(value(&during, "rabbitmq_channel_messages_acked_total"), 1.0);
    let amqp = "{protocol=\"amqp091\",queue_type=\"rabbit_classic_queue\"}";
    assert_eq!(
        value(
            &during,
            &format!("rabbitmq_global_messages_delivered_total{amqp}")
        ),
        1.0
    );
    assert_eq!(
        value(
            &during,
            &format!("rabbitmq_global_messages_acknowledged_total{amqp}")
        ),
        1.0
    );
    assert!(
        value(&during, "fedamq_memory_used_bytes") > value(&before, "fedamq_memory_used_bytes")
    );
    promtool_check(&during, "/metrics with a queue and a connection");

    let (_, per_object) = scrape(&b, "/metrics/per-object").await;
    let q = "{vhost=\"/\",queue=\"metrics-q\"}";
    assert_eq!(
        value(&per_object, &format!("rabbitmq_queue_messages_ready{q}")),
        2.0
    );
    assert_eq!(
        value(
            &per_object,
            &format!("rabbitmq_queue_messages_published_total{q}")
        ),
        3.0
    );
    assert_eq!(value(&per_object, "rabbitmq_connections"), 1.0);
    promtool_check(&per_object, "/metrics/per-object");

    // A deleted queue's counts stay in the totals: counters never go down.
    ch.queue_delete("metrics-q", QueueDeleteOptions::default())
        .await
        .unwrap();
    conn.close(200, "bye").await.unwrap();
    let (_, after) = scrape(&b, "/metrics").await;
    assert_eq!(value(&after, "rabbitmq_queues"), 0.0);
    assert_eq!(value(&after, "rabbitmq_queue_messages_ready"), 0.0);
    assert_eq!(
        value(&after, "rabbitmq_queue_messages_published_total"),
        3.0
    );
    assert_eq!(value(&after, "rabbitmq_channel_get_ack_total"), 1.0);
    let (_, per_object) = scrape(&b, "/metrics/per-object").await;
    assert!(!per_object.contains("metrics-q"), "{per_object}");
    b.shutdown().await;
}

#[tokio::test]
async fn publisher_counters_in_rabbitmq_prometheus_names() {
    let b = broker::start().await;
    let (_, before) = scrape(&b, "/metrics").await;
    let amqp = "{protocol=\"amqp091\"}";
    let global = |text: &str, name: &str| value(text, &format!("{name}{amqp}"));
    assert_eq!(
        global(&before, "rabbitmq_global_messages_received_total"),
        0.0
    );
    assert_eq!(value(&before, "rabbitmq_channels"), 0.0);

    let (conn, ch) = broker::channel(&b).await;
    for q in ["pm-1", "pm-2"] {
        ch.queue_declare(q, QueueDeclareOptions::default(), FieldTable::default())
            .await
            .unwrap();
        ch.queue_bind(
            q,
            "amq.fanout",
            "",
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    }
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    // One to two queues, one returned, one dropped; then one without confirms.
    for (exchange, mandatory) in [
        ("amq.fanout", false),
        ("amq.direct", true),
        ("amq.direct", false),
    ] {
        ch.basic_publish(
            exchange,
            "k",
            BasicPublishOptions {
                mandatory,
                ..Default::default()
            },
            b"m",
            BasicProperties::default(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    }
    let plain = conn.create_channel().await.unwrap();
    plain
        .basic_publish(
            "",
            "pm-1",
            BasicPublishOptions::default(),
            b"m",
            BasicProperties::default(),
        )
        .await
        .unwrap();
    // A round trip on that channel: the publish before it is counted.
    plain
        .queue_declare(
            "pm-1",
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();

    let (_, after) = scrape(&b, "/metrics").await;
    for (name, expected) in [
        ("rabbitmq_global_messages_received_total", 4.0),
        ("rabbitmq_global_messages_received_confirm_total", 3.0),
        ("rabbitmq_global_messages_routed_total", 3.0),
        ("rabbitmq_global_messages_unroutable_dropped_total", 1.0),
        ("rabbitmq_global_messages_unroutable_returned_total", 1.0),
        ("rabbitmq_global_messages_confirmed_total", 3.0),
    ] {
        assert_eq!(global(&after, name), expected, "{name}");
    }
    for (name, expected) in [
        ("rabbitmq_channel_messages_published_total", 4.0),
        ("rabbitmq_channel_messages_confirmed_total", 3.0),
        ("rabbitmq_channel_messages_unroutable_returned_total", 1.0),
        ("rabbitmq_channel_messages_unroutable_dropped_total", 1.0),
        ("rabbitmq_channels", 2.0),
    ] {
        assert_eq!(value(&after, name), expected, "{name}");
    }
    assert!(after.contains("# TYPE rabbitmq_global_messages_received_total counter\n"));
    promtool_check(&after, "/metrics with publisher counters");
    // The broker forgets a channel before its close-ok goes out.
    plain.close(200, "bye").await.unwrap();
    let (_, closed) = scrape(&b, "/metrics").await;
    assert_eq!(value(&closed, "rabbitmq_channels"), 1.0);
    assert_eq!(
        global(&closed, "rabbitmq_global_messages_received_total"),
        4.0
    );
    conn.close(200, "bye").await.unwrap();
    b.shutdown().await;
}

#[tokio::test]
async fn prometheus_port_off_means_no_listener_and_the_api_stays() {
    let mut config = Config::default();
    config.prometheus.port = None;
    let b = broker::start_with(config).await;
    assert_eq!(b.prometheus_addr(), None);
    assert!(b.management_addr().is_some());
    b.shutdown().await;
}

#[tokio::test]
async fn own_listener_not_the_api_and_unknown_paths_are_404() {
    let b = broker::start().await;
    let prometheus = b.prometheus_addr().unwrap();
    let api = b.management_addr().unwrap();
    assert_ne!(prometheus, api);
    assert_eq!(
        prometheus.ip(),
        "127.0.0.1".parse::<std::net::IpAddr>().unwrap()
    );
    let missing = reqwest::get(format!("http://{prometheus}/api/overview"))
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    b.shutdown().await;
}

/// Each tunnel has its state and counters on both brokers (opener `outgoing`, remote
/// `incoming`), and the page with them passes promtool.
#[tokio::test]
async fn each_tunnel_has_its_state_and_counters() {
    use fedamq::auth::password::PasswordHash;
    use fedamq::peering::Remote;
    use fedamq::protocol::generated::services::{GREETING, Greeting};
    use fedamq::tunnel::greeting::{Forward, hello};
    use fedamq::tunnel::{PEERING_TAG, TunnelConfig, Tunnels};

    let a = broker::start().await;
    let b = broker::start().await;
    let (_, idle) = scrape(&a, "/metrics").await;
    assert!(!idle.contains("fedamq_tunnel_"), "no tunnels, no series");
    let users = b.broker().users();
    users
        .add_user("link", PasswordHash::new("link"), vec![PEERING_TAG.into()])
        .unwrap();
    users
        .set_permissions("link", "/", ".*", ".*", ".*")
        .unwrap();
    let remote = Remote::from_uri(&b.url("link", "link")).unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let t = Tunnels::of(a.broker())
        .open(TunnelConfig::new(remote), &GREETING, |_| {
            Box::new(Greeting(Forward(tx)))
        })
        .unwrap();
    for serial in 1..=3 {
        t.send(hello(serial, "metrics")).await.unwrap();
    }
    for _ in 1..=3 {
        rx.recv().await.expect("a hello-ok");
    }

    let (_, out) = scrape(&a, "/metrics").await;
    let at = format!(
        "direction=\"outgoing\",service=\"greeting\",remote=\"{}\"",
        t.status().remote
    );
    assert_eq!(
        value(&out, &format!("fedamq_tunnel_state{{{at},state=\"open\"}}")),
        1.0
    );
    assert_eq!(
        value(
            &out,
            &format!("fedamq_tunnel_state{{{at},state=\"retrying\"}}")
        ),
        0.0
    );
    assert_eq!(
        value(&out, &format!("fedamq_tunnel_methods_sent_total{{{at}}}")),
        3.0
    );
    assert_eq!(
        value(
            &out,
            &format!("fedamq_tunnel_methods_received_total{{{at}}}")
        ),
        3.0
    );
    assert_eq!(
        value(&out, &format!("fedamq_tunnel_methods_resent_total{{{at}}}")),
        0.0
    );
    assert!(out.contains("# TYPE fedamq_tunnel_methods_sent_total counter\n"));
    promtool_check(&out, "/metrics with a tunnel");

    let (_, remote_side) = scrape(&b, "/metrics/per-object").await;
    let at = format!(
        "direction=\"incoming\",service=\"greeting\",remote=\"{}\"",
        a.identifier()
    );
    assert_eq!(
        value(
            &remote_side,
            &format!("fedamq_tunnel_state{{{at},state=\"open\"}}")
        ),
        1.0
    );
    assert_eq!(
        value(
            &remote_side,
            &format!("fedamq_tunnel_methods_received_total{{{at}}}")
        ),
        3.0
    );
    promtool_check(&remote_side, "/metrics/per-object with a tunnel");
    t.close().await;
    a.shutdown().await;
    b.shutdown().await;
}
