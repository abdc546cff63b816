//! Nothing lost across link cuts (issue 11): messages published with confirms while
//! the fault proxy between the link and the upstream cuts every connection again and
//! again at random moments. Every confirmed message must reach the queue at the other
//! end at least once, and every extra copy must be flagged (`redelivered: true` in its
//! newest `x-received-from` entry). Two directions, one soak:
//!
//! - subscriber mode: published to the upstream exchange, consumed from a queue bound
//!   downstream; a copy comes twice when the upstream redelivers what the link took
//!   but could not ack before a cut;
//! - publisher mode: published to the downstream exchange, forwarded up through the
//!   peering's confirmed outbox, consumed from a queue bound upstream; a copy comes
//!   twice when the outbox sends again what was in flight at a cut.
//!
//! The test suite runs a short soak in each mode; `cargo xtask fed-soak [--mode M]`
//! runs the long one (the ignored tests `long_soak` and `long_publisher_soak`, sized by
//! `FEDAMQ_SOAK_MESSAGES` and `FEDAMQ_SOAK_CUTS`) and prints its report.

mod support;

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fedamq::federation::upstream::Mode;
use fedamq::federation::{Federation, LinkState, LinkStatus};
use fedamq::protocol::ShortString;
use lapin::options::{BasicConsumeOptions, BasicPublishOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Consumer};
use serde_json::json;
use support::fault_proxy::FaultProxy;
use support::federation::*;

/// Confirms outstanding at once on the publishing channel.
const WINDOW: usize = 500;

/// What a soak saw.
#[derive(Debug)]
struct Report {
    mode: Mode,
    messages: usize,
    cuts: usize,
    /// Confirmed to the publisher, never seen by the consumer.
    lost: usize,
    /// Copies beyond the first.
    duplicates: usize,
    /// Of those, flagged redelivered.
    flagged: usize,
    /// Sent again by the side that could not know whether the other end had them: the
    /// upstream's redeliveries to the link (subscriber), the outbox's resends of
    /// forwards (publisher).
    resent: u64,
    reconnects: u64,
    seconds: f64,
}

/// The next item of a lapin consumer.
async fn next(c: &mut Consumer) -> Option<lapin::Result<lapin::message::Delivery>> {
    futures_lite::StreamExt::next(c).await
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

/// Each message's arrivals, by its number (the body): (copies, copies flagged).
#[derive(Default)]
struct Arrivals(HashMap<u64, (usize, usize)>);

impl Arrivals {
    fn note(&mut self, d: &lapin::message::Delivery) {
        let i = u64::from_be_bytes(d.data[..8].try_into().unwrap());
        let e = self.0.entry(i).or_default();
        e.0 += 1;
        e.1 += usize::from(redelivered(d.properties.headers()));
    }

    fn distinct(&self) -> usize {
        self.0.len()
    }

    fn lost(&self, messages: usize) -> usize {
        (0..messages as u64)
            .filter(|i| !self.0.contains_key(i))
            .count()
    }

    fn duplicates(&self) -> usize {
        self.0.values().map(|(n, _)| n - 1).sum()
    }

    fn flagged(&self) -> usize {
        self.0.values().map(|(n, f)| (*f).min(n - 1)).sum()
    }
}

/// Publishes messages 0..`messages` to `fed` with confirms; every one must be acked.
async fn publish_all(ch: Channel, messages: usize) {
    let mut pending = VecDeque::new();
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
            assert!(c.is_ack(), "message nacked");
        }
    }
    for c in pending {
        assert!(c.await.unwrap().is_ack(), "message nacked");
    }
}

/// How far the flow over the link has gone: deliveries the link took from the
/// upstream (subscriber), forwards the upstream confirmed (publisher).
fn progress(mode: Mode, l: &LinkStatus) -> u64 {
    if mode.subscribes() {
        l.counters.received
    } else {
        l.counters.forwarded
    }
}

/// Cuts the link `cuts` times at random points of the flow: after a random amount of
/// progress (on average messages / cuts), so the cuts spread over the whole run
/// whatever its speed. Each cut breaks a link that is up again since the last one.
async fn cut_randomly(
    links: Arc<Federation>,
    proxy: FaultProxy,
    mode: Mode,
    messages: usize,
    cuts: usize,
) -> FaultProxy {
    let at = || progress(mode, &links.links()[0]);
    let mean = (messages / cuts.max(1)).max(1);
    let mut accepted = 0;
    for _ in 0..cuts {
        let from = at();
        let after = rand::random_range(1..=2 * mean) as u64;
        while at() < from + after && at() < messages as u64 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        // Flow (publishers held back) is a connected link too.
        let up = || matches!(links.links()[0].state, LinkState::Running | LinkState::Flow);
        let give_up = Instant::now() + PATIENCE;
        while proxy.connections_accepted() <= accepted || !up() {
            assert!(Instant::now() < give_up, "the link does not come back");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        accepted = proxy.connections_accepted();
        proxy.cut();
    }
    proxy
}

/// One soak: `messages` published with confirms across the link in `mode`'s direction
/// while it is cut `cuts` times; what arrived, counted by message number.
async fn soak(mode: Mode, messages: usize, cuts: usize) -> Report {
    let started = Instant::now();
    let up = bare_node("up").await;
    let down = bare_node("down").await;
    let proxy = FaultProxy::start(up.local_addr()).await;
    let (_conns, uch, dch) = fed_on_both(&up, &down).await;
    // Messages go from the publishing broker's `fed` to the queue on the other one.
    let (publish_on, consume_on, queue_on) = if mode == Mode::Subscriber {
        (uch, dch, &down)
    } else {
        (dch, uch, &up)
    };
    bound_queue(&consume_on, "q", "fed", "#").await;
    federate_with(
        &down,
        "up",
        &proxy.url("guest", "guest", "/"),
        "^fed$",
        json!({"reconnect-delay": 0.01, "fedamq-mode": mode.name()}),
    );
    eventually("the link runs", || links_run(&down, 1)).await;
    if mode.subscribes() {
        eventually("mirrored", || bindings_of(&up, "fed") == 1).await;
    }

    let publisher = tokio::spawn(publish_all(publish_on, messages));
    let cutter = tokio::spawn(cut_randomly(
        down.federation().clone(),
        proxy,
        mode,
        messages,
        cuts,
    ));

    let mut consumer = consume_on
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
    let mut seen = Arrivals::default();
    let give_up = Instant::now() + PATIENCE * 10;
    while seen.distinct() < messages {
        let Ok(d) = tokio::time::timeout(PATIENCE, next(&mut consumer)).await else {
            // Nothing more comes: the report says what is missing.
            break;
        };
        seen.note(&d.expect("consumer open").unwrap());
        assert!(
            Instant::now() < give_up,
            "only {} of {messages}",
            seen.distinct()
        );
    }
    publisher.await.unwrap();
    let _proxy = cutter.await.unwrap();
    // Copies still on their way: wait until the link has settled all it took and the
    // queues on the way are empty, then take the rest.
    let upstream_queue = ShortString::from_static("federation: fed -> down");
    eventually("settled", || {
        let c = &links(&down)[0].counters;
        let link_settled = if mode == Mode::Subscriber {
            links_settled(&down)
                && root(&up)
                    .queue(&upstream_queue)
                    .is_some_and(|q| q.message_count() == 0 && q.unacked_count() == 0)
        } else {
            c.forwarded + c.forward_failed == messages as u64
        };
        link_settled && depth(queue_on, "q") == 0
    })
    .await;
    while let Ok(Some(Ok(d))) =
        tokio::time::timeout(Duration::from_millis(200), next(&mut consumer)).await
    {
        seen.note(&d);
    }
    let c = &links(&down)[0].counters;
    Report {
        mode,
        messages,
        cuts,
        lost: seen.lost(messages),
        duplicates: seen.duplicates(),
        flagged: seen.flagged(),
        resent: if mode == Mode::Subscriber {
            c.redelivered
        } else {
            c.resent
        },
        reconnects: c.connects.saturating_sub(1),
        seconds: started.elapsed().as_secs_f64(),
    }
}

fn check(r: &Report) {
    println!(
        "fed-soak ({} mode): {} messages, {} cuts ({} reconnects), {} lost, {} duplicates, {} of them flagged redelivered, {} sent again, {:.1} s",
        r.mode.name(),
        r.messages,
        r.cuts,
        r.reconnects,
        r.lost,
        r.duplicates,
        r.flagged,
        r.resent,
        r.seconds
    );
    assert_eq!(r.lost, 0, "{r:?}");
    assert_eq!(r.duplicates, r.flagged, "unflagged duplicates: {r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_soak_loses_nothing_across_cuts() {
    check(&soak(Mode::Subscriber, 3_000, 20).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_publisher_soak_loses_nothing_across_cuts() {
    check(&soak(Mode::Publisher, 3_000, 20).await);
}

/// The long soak in `mode`, sized by the environment `cargo xtask fed-soak` sets.
async fn long(mode: Mode) {
    let env = |k: &str, d: usize| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let r = soak(
        mode,
        env("FEDAMQ_SOAK_MESSAGES", 100_000),
        env("FEDAMQ_SOAK_CUTS", 1_000),
    )
    .await;
    check(&r);
}

/// `cargo xtask fed-soak`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "long: run by cargo xtask fed-soak"]
async fn long_soak() {
    long(Mode::Subscriber).await;
}

/// `cargo xtask fed-soak --mode publisher`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "long: run by cargo xtask fed-soak --mode publisher"]
async fn long_publisher_soak() {
    long(Mode::Publisher).await;
}

/// Binds `bindings` distinct keys downstream (pipelined, nowait) while the link's
/// connection has 100 ms of added latency each way, and returns how long it took from
/// the first bind until all of them were mirrored upstream. The link pipelines its
/// `exchange.bind`s, so this is a few round trips, not one per binding.
async fn binding_propagation(bindings: usize) -> Duration {
    let up = bare_node("up").await;
    let down = bare_node("down").await;
    let proxy = FaultProxy::start(up.local_addr()).await;
    let (_conns, _uch, dch) = fed_on_both(&up, &down).await;
    proxy.set_delay(Duration::from_millis(100));
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
        tokio::time::sleep(Duration::from_millis(5)).await;
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
