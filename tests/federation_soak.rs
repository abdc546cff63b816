//! Nothing lost across link cuts (issue 11): messages published upstream with
//! confirms, in subscriber mode, while the fault proxy between the link and the
//! upstream cuts every connection again and again at random moments. Every confirmed
//! message must reach the downstream queue at least once, and every extra copy must be
//! flagged (`redelivered: true` in its `x-received-from` entry).
//!
//! The test suite runs a short soak; `cargo xtask fed-soak` runs the long one (the
//! ignored test `long_soak`, sized by `FEDAMQ_SOAK_MESSAGES` and `FEDAMQ_SOAK_CUTS`) and
//! prints its report.

mod support;

use std::collections::HashMap;
use std::time::Instant;

use fedamq::federation::LinkState;
use fedamq::protocol::ShortString;
use lapin::options::{BasicConsumeOptions, BasicPublishOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel};
use serde_json::json;
use support::fault_proxy::FaultProxy;
use support::federation::*;
use tokio_stream_compat::next;

/// Confirms outstanding at once on the publishing channel.
const WINDOW: usize = 500;

/// What a soak saw.
#[derive(Debug)]
struct Report {
    messages: usize,
    cuts: usize,
    /// Confirmed upstream, never seen downstream.
    lost: usize,
    /// Copies beyond the first.
    duplicates: usize,
    /// Of those, flagged redelivered.
    flagged: usize,
    reconnects: u64,
    seconds: f64,
}

mod tokio_stream_compat {
    /// The next item of a lapin consumer.
    pub async fn next(c: &mut lapin::Consumer) -> Option<lapin::Result<lapin::message::Delivery>> {
        futures_lite::StreamExt::next(c).await
    }
}

/// Whether a delivery's newest `x-received-from` entry says redelivered.
fn redelivered(headers: &Option<FieldTable>) -> bool {
    let Some(AMQPValue::FieldArray(hops)) = headers
        .as_ref()
        .and_then(|h| h.inner().get("x-received-from").cloned())
    else {
        return false;
    };
    matches!(
        hops.as_slice().first(),
        Some(AMQPValue::FieldTable(t))
            if t.inner().get("redelivered") == Some(&AMQPValue::Boolean(true))
    )
}

async fn publish_all(ch: Channel, messages: usize) {
    let mut pending = std::collections::VecDeque::new();
    for i in 0..messages {
        let confirm = ch
            .basic_publish(
                "fed",
                "k",
                BasicPublishOptions::default(),
                &(i as u64).to_be_bytes(),
                BasicProperties::default(),
            )
            .await
            .unwrap();
        pending.push_back(confirm);
        if pending.len() >= WINDOW {
            let c = pending.pop_front().unwrap().await.unwrap();
            assert!(c.is_ack(), "message nacked upstream");
        }
    }
    for c in pending {
        assert!(c.await.unwrap().is_ack(), "message nacked upstream");
    }
}

async fn soak(messages: usize, cuts: usize) -> Report {
    let started = Instant::now();
    let up = bare_node("up").await;
    let down = bare_node("down").await;
    let proxy = FaultProxy::start(up.local_addr()).await;
    let (_conns, uch, dch) = fed_on_both(&up, &down).await;
    bound_queue(&dch, "q", "fed", "#").await;
    federate_with(
        &down,
        "up",
        &proxy.url("guest", "guest", "/"),
        "^fed$",
        json!({"reconnect-delay": 0.01}),
    );
    eventually("the link runs", || links_run(&down, 1)).await;
    eventually("mirrored", || bindings_of(&up, "fed") == 1).await;

    let publisher = tokio::spawn(publish_all(uch, messages));

    // Cuts at random points of the flow: after a random number of deliveries to the
    // link (on average messages / cuts), so they spread over the whole run whatever
    // its speed.
    let cutter = {
        let down_links = down.federation().clone();
        tokio::spawn(async move {
            let mean = (messages / cuts.max(1)).max(1);
            let mut accepted = 0;
            for _ in 0..cuts {
                let from = down_links.links()[0].counters.received;
                let after = rand::random_range(1..=2 * mean) as u64;
                while down_links.links()[0].counters.received < from + after
                    && down_links.links()[0].counters.received < messages as u64
                {
                    tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                }
                // Each cut breaks a running link (set up again since the last cut).
                let give_up = Instant::now() + PATIENCE;
                while proxy.connections_accepted() <= accepted
                    || down_links.links()[0].state != LinkState::Running
                {
                    assert!(Instant::now() < give_up, "the link does not come back");
                    tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                }
                accepted = proxy.connections_accepted();
                proxy.cut();
            }
            proxy
        })
    };

    let mut consumer = dch
        .basic_consume(
            "q",
            "soak",
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    let mut seen: HashMap<u64, (usize, usize)> = HashMap::new();
    let give_up = Instant::now() + PATIENCE * 10;
    while seen.len() < messages {
        let d = tokio::time::timeout(PATIENCE, next(&mut consumer))
            .await
            .expect("deliveries stopped")
            .expect("consumer open")
            .unwrap();
        let i = u64::from_be_bytes(d.data[..8].try_into().unwrap());
        let e = seen.entry(i).or_default();
        e.0 += 1;
        e.1 += usize::from(redelivered(d.properties.headers()));
        assert!(
            Instant::now() < give_up,
            "only {} of {messages}",
            seen.len()
        );
    }
    publisher.await.unwrap();
    let _proxy = cutter.await.unwrap();
    // Copies still on their way: wait until the link has settled all it took and the
    // upstream queue is empty, then take the rest.
    let upstream_queue = ShortString::from_static("federation: fed -> down");
    eventually("settled", || {
        links_settled(&down)
            && root(&up)
                .queue(&upstream_queue)
                .is_some_and(|q| q.message_count() == 0 && q.unacked_count() == 0)
            && depth(&down, "q") == 0
    })
    .await;
    while let Ok(Some(Ok(d))) =
        tokio::time::timeout(std::time::Duration::from_millis(200), next(&mut consumer)).await
    {
        let i = u64::from_be_bytes(d.data[..8].try_into().unwrap());
        let e = seen.entry(i).or_default();
        e.0 += 1;
        e.1 += usize::from(redelivered(d.properties.headers()));
    }
    let duplicates = seen.values().map(|(n, _)| n - 1).sum();
    let flagged = seen.values().map(|(n, f)| (*f).min(n - 1)).sum();
    Report {
        messages,
        cuts,
        lost: (0..messages as u64)
            .filter(|i| !seen.contains_key(i))
            .count(),
        duplicates,
        flagged,
        reconnects: links(&down)[0].counters.connects.saturating_sub(1),
        seconds: started.elapsed().as_secs_f64(),
    }
}

fn check(r: &Report) {
    println!(
        "fed-soak: {} messages, {} cuts ({} reconnects), {} lost, {} duplicates, {} of them flagged redelivered, {:.1} s",
        r.messages, r.cuts, r.reconnects, r.lost, r.duplicates, r.flagged, r.seconds
    );
    assert_eq!(r.lost, 0, "{r:?}");
    assert_eq!(r.duplicates, r.flagged, "unflagged duplicates: {r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_soak_loses_nothing_across_cuts() {
    check(&soak(3_000, 20).await);
}

/// `cargo xtask fed-soak`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "long: run by cargo xtask fed-soak"]
async fn long_soak() {
    let env = |k: &str, d: usize| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let r = soak(
        env("FEDAMQ_SOAK_MESSAGES", 100_000),
        env("FEDAMQ_SOAK_CUTS", 1_000),
    )
    .await;
    check(&r);
}

/// Binds `bindings` distinct keys downstream (pipelined, nowait) while the link's
/// connection has 100 ms of added latency each way, and returns how long it took from
/// the first bind until all of them were mirrored upstream. The link pipelines its
/// `exchange.bind`s, so this is a few round trips, not one per binding.
async fn binding_propagation(bindings: usize) -> std::time::Duration {
    let up = bare_node("up").await;
    let down = bare_node("down").await;
    let proxy = FaultProxy::start(up.local_addr()).await;
    let (_conns, _uch, dch) = fed_on_both(&up, &down).await;
    proxy.set_delay(std::time::Duration::from_millis(100));
    federate(&down, "up", &proxy.url("guest", "guest", "/"), "^fed$");
    eventually("the link runs", || links_run(&down, 1)).await;
    dch.queue_declare(
        "q",
        lapin::options::QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    let started = Instant::now();
    for i in 0..bindings {
        dch.queue_bind(
            "q",
            "fed",
            &format!("k.{i}"),
            lapin::options::QueueBindOptions { nowait: true },
            FieldTable::default(),
        )
        .await
        .unwrap();
    }
    // A hang guard only: how long it takes is the report's figure, not a test bound.
    let give_up = Instant::now() + PATIENCE * 4;
    while bindings_of(&up, "fed") < bindings {
        assert!(
            Instant::now() < give_up,
            "only {} of {bindings} bindings mirrored",
            bindings_of(&up, "fed")
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let took = started.elapsed();
    assert_eq!(depth(&down, "q"), 0);
    eventually("the link settles", || links_settled(&down)).await;
    assert_eq!(links(&down)[0].counters.bindings, bindings as u64);
    took
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bindings_propagate_pipelined_over_a_slow_link() {
    let took = binding_propagation(2_000).await;
    println!("fed-soak: 2000 bindings mirrored over 100 ms latency in {took:?}");
}

/// `cargo xtask fed-soak --bindings N`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "long: run by cargo xtask fed-soak --bindings"]
async fn long_binding_propagation() {
    let n = std::env::var("FEDAMQ_SOAK_BINDINGS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(40_000);
    let took = binding_propagation(n).await;
    println!(
        "fed-soak: {n} bindings mirrored over a link with 100 ms added latency in {:.2} s",
        took.as_secs_f64()
    );
}
