//! Federated brokers in one test: in-process nodes with their own cluster names,
//! upstreams and policies set through the vhost (as the API would), and the waits and
//! counts the federation tests share.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use fedamq::BrokerHandle;
use fedamq::broker::policy::{ApplyTo, Parameter, Policy, PolicyKind};
use fedamq::broker::vhost::VHost;
use fedamq::config::Config;
use fedamq::federation::{LinkState, LinkStatus};
use fedamq::protocol::ShortString;
use lapin::options::{
    BasicGetOptions, BasicPublishOptions, ExchangeDeclareOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, ExchangeKind};
use serde_json::{Value, json};

use super::broker::start_with;

/// Long enough for any step on a loaded machine; a condition that never holds fails
/// the test when it runs out.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// A broker named `cluster_name` (with the management API, without Prometheus).
pub async fn node(cluster_name: &str) -> BrokerHandle {
    let mut config = Config {
        cluster_name: Some(cluster_name.into()),
        ..Config::default()
    };
    config.prometheus.port = None;
    start_with(config).await
}

/// A broker named `cluster_name` with only its AMQP listener (for many-node tests).
pub async fn bare_node(cluster_name: &str) -> BrokerHandle {
    let mut config = Config {
        cluster_name: Some(cluster_name.into()),
        ..Config::default()
    };
    config.prometheus.port = None;
    config.management.port = None;
    start_with(config).await
}

/// A bare node whose memory alarm only a test raises and clears (no watermark
/// watcher to undo it).
pub async fn node_with_manual_alarm(cluster_name: &str) -> BrokerHandle {
    let mut config = Config {
        cluster_name: Some(cluster_name.into()),
        memory_high_watermark: 0,
        ..Config::default()
    };
    config.prometheus.port = None;
    config.management.port = None;
    start_with(config).await
}

pub fn root(b: &BrokerHandle) -> Arc<VHost> {
    b.broker().vhost("/").expect("vhost /")
}

/// Makes the exchanges matching `exchange_pattern` on `down` federated from `uri`
/// (upstream `name`, policy `fed-…`, every upstream of the vhost).
pub fn federate(down: &BrokerHandle, name: &str, uri: &str, exchange_pattern: &str) {
    federate_with(down, name, uri, exchange_pattern, json!({}));
}

/// As [`federate`], with more upstream keys (`max-hops`, `fedamq-mode`, …).
pub fn federate_with(
    down: &BrokerHandle,
    name: &str,
    uri: &str,
    exchange_pattern: &str,
    extra: Value,
) {
    let v = root(down);
    let mut value = json!({"uri": uri, "reconnect-delay": 0.2, "expires": 600_000});
    if let (Some(m), Some(extra)) = (value.as_object_mut(), extra.as_object()) {
        m.extend(extra.clone());
    }
    v.set_parameter(Parameter::new("federation-upstream", "/", name, value).unwrap());
    v.set_policy(
        Policy::new(
            PolicyKind::User,
            "/",
            &format!("fed-{name}"),
            exchange_pattern,
            ApplyTo::Exchanges,
            0,
            &json!({"federation-upstream-set": "all"}),
        )
        .unwrap(),
    );
}

pub async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let give_up = tokio::time::Instant::now() + PATIENCE;
    while !cond() {
        assert!(tokio::time::Instant::now() < give_up, "never: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub fn links(b: &BrokerHandle) -> Vec<LinkStatus> {
    b.federation().links()
}

/// Whether every link of `b` runs (and it has `n`).
pub fn links_run(b: &BrokerHandle, n: usize) -> bool {
    let l = links(b);
    l.len() == n && l.iter().all(|l| l.state == LinkState::Running)
}

/// Whether every link of `b` has settled all it received.
pub fn links_settled(b: &BrokerHandle) -> bool {
    links(b).iter().all(|l| {
        let c = &l.counters;
        c.bindings_pending == 0 && c.acked + c.dropped == c.received
    })
}

pub fn bindings_of(b: &BrokerHandle, exchange: &str) -> usize {
    root(b)
        .exchange(&ShortString::try_from(exchange).unwrap())
        .map_or(0, |x| x.table().len())
}

pub async fn declare_topic(ch: &Channel, name: &str) {
    ch.exchange_declare(
        name,
        ExchangeKind::Topic,
        ExchangeDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
}

pub async fn bound_queue(ch: &Channel, queue: &str, exchange: &str, key: &str) {
    ch.queue_declare(queue, QueueDeclareOptions::default(), FieldTable::default())
        .await
        .unwrap();
    ch.queue_bind(
        queue,
        exchange,
        key,
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
}

/// A channel on each of `up` and `down`, in confirm mode, each with the topic exchange
/// `fed` declared (the connections are returned to be kept).
pub async fn fed_on_both(
    up: &BrokerHandle,
    down: &BrokerHandle,
) -> (Vec<lapin::Connection>, Channel, Channel) {
    let (uc, uch) = super::broker::channel(up).await;
    let (dc, dch) = super::broker::channel(down).await;
    for ch in [&uch, &dch] {
        declare_topic(ch, "fed").await;
        ch.confirm_select(lapin::options::ConfirmSelectOptions::default())
            .await
            .unwrap();
    }
    (vec![uc, dc], uch, dch)
}

/// Publishes on a channel in confirm mode and waits for the confirm.
pub async fn publish_confirmed(ch: &Channel, exchange: &str, key: &str, body: &[u8]) {
    ch.basic_publish(
        exchange,
        key,
        BasicPublishOptions::default(),
        body,
        BasicProperties::default(),
    )
    .await
    .unwrap()
    .await
    .unwrap();
}

/// Every message in `queue` now: body → how many times, and the last one's headers.
pub async fn drain(ch: &Channel, queue: &str) -> (HashMap<Vec<u8>, usize>, Option<FieldTable>) {
    let mut seen = HashMap::new();
    let mut headers = None;
    while let Some(m) = ch
        .basic_get(queue, BasicGetOptions { no_ack: true })
        .await
        .unwrap()
    {
        *seen.entry(m.delivery.data.clone()).or_default() += 1;
        headers = m.delivery.properties.headers().clone();
    }
    (seen, headers)
}

/// How many messages `queue` on `b` holds now.
pub fn depth(b: &BrokerHandle, queue: &str) -> usize {
    let q = ShortString::try_from(queue).unwrap();
    root(b).queue(&q).map_or(0, |q| q.message_count() as usize)
}

/// Waits until `queue` holds `n` messages.
pub async fn wait_depth(b: &BrokerHandle, queue: &str, n: usize) {
    eventually(&format!("{queue} holds {n}"), || depth(b, queue) >= n).await;
}

/// Removes the policy [`federate`] set for upstream `name`.
pub fn unfederate(down: &BrokerHandle, name: &str) {
    root(down)
        .clear_policy(PolicyKind::User, &format!("fed-{name}"))
        .unwrap();
}

/// Publishes `key` with `mandatory` on a channel without confirms and waits for the
/// broker to return it: (reply code, body).
pub async fn returned(ch: &Channel, exchange: &str, key: &str) -> (u16, Vec<u8>) {
    ch.basic_publish(
        exchange,
        key,
        lapin::options::BasicPublishOptions {
            mandatory: true,
            ..Default::default()
        },
        key.as_bytes(),
        BasicProperties::default(),
    )
    .await
    .unwrap();
    let give_up = tokio::time::Instant::now() + PATIENCE;
    loop {
        let back = ch.wait_for_confirms().await.unwrap();
        if let Some(m) = back.first() {
            assert_eq!(back.len(), 1, "one return");
            return (m.reply_code, m.delivery.data.clone());
        }
        assert!(
            tokio::time::Instant::now() < give_up,
            "{key} never returned"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
