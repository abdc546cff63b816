//! Peering against a real remote: an in-process fedamq, and the private RabbitMQ that
//! `tests/run` and `.ci/run` start (its URL in FEDAMQ_TEST_RABBITMQ_URL). Faults come
//! from a TCP proxy between the peering and the remote: cut, refused, stalled links.
//! Each scenario runs against both remotes.

mod support;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use fedamq::BrokerHandle;
use fedamq::peering::{
    Backoff, OutboxLimits, Peering, PeeringConfig, PeeringError, PeeringEvent, PeeringState,
    PeeringStatus, Remote, StatusChange, outliving_queue,
};
use fedamq::protocol::ShortString;
use fedamq::protocol::generated::methods::{
    BasicConsume, BasicPublish, ExchangeDeclare, QueueBind, QueueDeclare,
};
use fedamq::protocol::generated::properties::EncodedBasicProperties;
use futures_lite::StreamExt;
use lapin::options::*;
use lapin::types::FieldTable as LapinTable;
use support::fault_proxy::FaultProxy;
use support::{broker, rabbitmq};
use tokio::time::{Instant, timeout};

/// The server a peering links to, and how to reach it directly (for checking).
struct Upstream {
    addr: std::net::SocketAddr,
    user: String,
    password: String,
    vhost: String,
    broker: Option<BrokerHandle>,
}

impl Upstream {
    async fn fedamq() -> Upstream {
        let b = broker::start().await;
        Upstream {
            addr: b.local_addr(),
            user: "guest".into(),
            password: "guest".into(),
            vhost: "/".into(),
            broker: Some(b),
        }
    }

    fn rabbitmq() -> Upstream {
        let p = rabbitmq::parts();
        Upstream {
            addr: rabbitmq::addr(),
            user: p.user,
            password: p.password,
            vhost: p.vhost,
            broker: None,
        }
    }

    fn direct_url(&self) -> String {
        let vhost = support::fault_proxy::percent_encode(&self.vhost);
        format!(
            "amqp://{}:{}@{}/{vhost}",
            self.user, self.password, self.addr
        )
    }

    async fn channel(&self) -> (lapin::Connection, lapin::Channel) {
        let c = lapin::Connection::connect(&self.direct_url(), Default::default())
            .await
            .expect("direct connection to the remote");
        let ch = c.create_channel().await.expect("channel");
        (c, ch)
    }

    /// A peering to this remote through `proxy`, reconnecting quickly.
    fn peering_via(&self, proxy: &FaultProxy) -> PeeringConfig {
        let url = proxy.url(&self.user, &self.password, &self.vhost);
        let mut config = PeeringConfig::new(Remote::from_uri(&url).unwrap());
        config.reconnect = Some(Backoff {
            min: Duration::from_millis(20),
            max: Duration::from_millis(200),
        });
        config.connect_timeout = Duration::from_secs(5);
        config
    }

    async fn stop(self) {
        if let Some(b) = self.broker {
            b.shutdown().await;
        }
    }
}

/// A name no other test (or earlier run against the shared RabbitMQ) uses.
fn unique(prefix: &str) -> String {
    format!("{prefix}-{:016x}", rand::random::<u64>())
}

fn ss(s: &str) -> ShortString {
    ShortString::new(s.to_owned()).unwrap()
}

async fn wait_for(
    peering: &Peering,
    what: &str,
    within: Duration,
    pred: impl Fn(&PeeringStatus) -> bool,
) -> PeeringStatus {
    let mut rx = peering.watch_status();
    let found = timeout(within, async {
        loop {
            let s = rx.borrow_and_update().clone();
            if pred(&s) {
                return s;
            }
            if rx.changed().await.is_err() {
                panic!("peering task gone while waiting for {what}");
            }
        }
    })
    .await;
    found.unwrap_or_else(|_| panic!("not {what} within {within:?}: {:?}", peering.status()))
}

async fn running(peering: &Peering) -> PeeringStatus {
    wait_for(peering, "running", Duration::from_secs(10), |s| {
        s.state == PeeringState::Running
    })
    .await
}

fn record_changes(peering: &Peering) -> Arc<Mutex<Vec<StatusChange>>> {
    let log = Arc::new(Mutex::new(Vec::new()));
    let sink = log.clone();
    peering.on_status(move |c| sink.lock().unwrap().push(c.clone()));
    log
}

fn publish_to(queue: &str) -> BasicPublish {
    BasicPublish {
        exchange: ShortString::default(),
        routing_key: ss(queue),
        ..Default::default()
    }
}

async fn next_event(
    events: &mut tokio::sync::mpsc::UnboundedReceiver<PeeringEvent>,
) -> PeeringEvent {
    timeout(Duration::from_secs(10), events.recv())
        .await
        .expect("an event within 10 s")
        .expect("peering alive")
}

async fn next_delivery(
    events: &mut tokio::sync::mpsc::UnboundedReceiver<PeeringEvent>,
) -> fedamq::peering::Delivery {
    loop {
        if let PeeringEvent::Delivery(d) = next_event(events).await {
            return d;
        }
    }
}

// ---------------------------------------------------------------------------------
// Scenarios

/// Declare, bind, consume, publish with confirms, receive, ack; then stop cleanly.
async fn round_trip(up: Upstream) {
    let proxy = FaultProxy::start(up.addr).await;
    let (peering, mut events) = Peering::new(up.peering_via(&proxy));
    // Nothing connects before start().
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(proxy.connections_accepted(), 0);
    assert_eq!(peering.status().state, PeeringState::Idle);
    peering.start();

    let exchange = unique("peer.x");
    peering
        .declare_exchange(ExchangeDeclare {
            exchange: ss(&exchange),
            r#type: ss("topic"),
            ..Default::default()
        })
        .await
        .unwrap();
    let q = peering
        .declare_queue(QueueDeclare {
            exclusive: true,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(q.queue.as_str().unwrap().starts_with("fedamq.peering.q-"));
    peering
        .bind_queue(QueueBind {
            queue: q.queue.clone(),
            exchange: ss(&exchange),
            routing_key: ss("a.*"),
            ..Default::default()
        })
        .await
        .unwrap();
    let tag = peering
        .consume(BasicConsume {
            queue: q.queue.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    running(&peering).await;

    let props =
        EncodedBasicProperties::encode(&fedamq::protocol::generated::properties::BasicProperties {
            content_type: Some(ss("text/plain")),
            message_id: Some(ss("m-1")),
            ..Default::default()
        });
    peering
        .publish(
            BasicPublish {
                exchange: ss(&exchange),
                routing_key: ss("a.b"),
                ..Default::default()
            },
            props,
            Bytes::from_static(b"hello upstream"),
        )
        .await
        .expect("confirmed");
    let d = next_delivery(&mut events).await;
    assert_eq!(d.consumer_tag, tag);
    assert_eq!(&d.body[..], b"hello upstream");
    assert_eq!(d.routing_key, "a.b");
    assert_eq!(d.properties.message_id(), Some(ss("m-1")));
    d.acker.ack();

    let s = peering.status();
    assert_eq!(s.counters.connects, 1);
    assert_eq!(s.counters.sent, 1);
    assert_eq!(s.counters.confirmed, 1);
    assert_eq!(s.counters.delivered, 1);
    assert_eq!(s.counters.outbox_depth, 0);

    peering.stop().await;
    assert_eq!(peering.status().state, PeeringState::Stopped);
    assert!(
        proxy.wait_live(0, Duration::from_secs(5)).await,
        "connection closed"
    );
    // After stop, publishes fail rather than wait.
    let err = peering
        .publish(publish_to("nowhere"), Default::default(), Bytes::new())
        .await
        .unwrap_err();
    assert_eq!(err, PeeringError::Stopped);
    up.stop().await;
}

/// A cut link: reported in order with reasons, reconnected with back-off, and the
/// bindings and consumers replayed: a message published upstream after the reconnect
/// arrives, and so does one published while the link was down (the queue outlived it).
async fn reconnect_replays(up: Upstream) {
    let proxy = FaultProxy::start(up.addr).await;
    let (peering, mut events) = Peering::new(up.peering_via(&proxy));
    let changes = record_changes(&peering);
    peering.start();

    let queue = unique("peer.inbox");
    let key = unique("rk");
    peering
        .declare_queue(outliving_queue(&queue, Duration::from_secs(60)))
        .await
        .unwrap();
    // Bound twice with the same key and arguments: one binding.
    for _ in 0..2 {
        peering
            .bind_queue(QueueBind {
                queue: ss(&queue),
                exchange: ss("amq.direct"),
                routing_key: ss(&key),
                ..Default::default()
            })
            .await
            .unwrap();
    }
    peering
        .consume(BasicConsume {
            queue: ss(&queue),
            ..Default::default()
        })
        .await
        .unwrap();
    running(&peering).await;

    let (_conn, ch) = up.channel().await;
    let send = |body: &'static [u8]| {
        let ch = ch.clone();
        let key = key.clone();
        async move {
            ch.basic_publish(
                "amq.direct",
                &key,
                BasicPublishOptions::default(),
                body,
                Default::default(),
            )
            .await
            .unwrap()
            .await
            .unwrap();
        }
    };

    // Link down: cut, and refused for a while.
    proxy.set_refuse(true);
    proxy.cut();
    wait_for(&peering, "backing off", Duration::from_secs(5), |s| {
        matches!(s.state, PeeringState::BackingOff { .. })
    })
    .await;
    send(b"while down").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    proxy.set_refuse(false);
    running(&peering).await;
    send(b"after").await;

    let mut got = Vec::new();
    while got.len() < 2 {
        let d = next_delivery(&mut events).await;
        got.push(d.body.clone());
        d.acker.ack();
    }
    got.sort();
    assert_eq!(
        got,
        [
            Bytes::from_static(b"after"),
            Bytes::from_static(b"while down")
        ]
    );

    // One binding upstream, not two: a further message arrives once.
    send(b"once").await;
    let d = next_delivery(&mut events).await;
    assert_eq!(&d.body[..], b"once");
    d.acker.ack();
    assert!(
        timeout(Duration::from_millis(300), events.recv())
            .await
            .is_err(),
        "a duplicated binding would deliver twice"
    );

    let status = peering.status();
    assert!(status.counters.connects >= 2, "{status:?}");
    assert!(status.counters.disconnects >= 1, "{status:?}");
    assert!(status.last_error.is_some());
    // Transitions in order, each with a reason.
    let log = changes.lock().unwrap().clone();
    let names: Vec<String> = log
        .iter()
        .map(|c| match &c.state {
            PeeringState::BackingOff { .. } => "backing-off".to_owned(),
            other => other.to_string(),
        })
        .collect();
    assert_eq!(&names[..2], ["connecting", "running"], "{log:?}");
    let first_backoff = names.iter().position(|n| n == "backing-off").unwrap();
    assert_eq!(names[first_backoff - 1], "running");
    assert_eq!(names.last().unwrap(), "running");
    for w in names.windows(2) {
        let ok = matches!(
            (w[0].as_str(), w[1].as_str()),
            ("connecting", "running")
                | ("connecting", "backing-off")
                | ("running", "backing-off")
                | ("backing-off", "connecting")
        );
        assert!(ok, "unexpected transition {w:?} in {names:?}");
    }
    assert!(log.iter().all(|c| !c.reason.is_empty()));

    peering.stop().await;
    ch.queue_delete(&queue, QueueDeleteOptions::default())
        .await
        .unwrap();
    up.stop().await;
}

/// 10,000 publishes across 20 forced cuts: every one confirmed exactly once, and every
/// one present upstream.
async fn publishes_survive_cuts(up: Upstream) {
    const N: usize = 10_000;
    const CUTS: usize = 20;
    let proxy = FaultProxy::start(up.addr).await;
    let mut config = up.peering_via(&proxy);
    config.outbox = OutboxLimits {
        messages: 1_000,
        bytes: 1 << 20,
    };
    let (peering, _events) = Peering::new(config);
    let peering = Arc::new(peering);
    peering.start();
    let queue = unique("peer.cuts");
    peering
        .declare_queue(outliving_queue(&queue, Duration::from_secs(120)))
        .await
        .unwrap();
    running(&peering).await;

    let publisher = {
        let peering = peering.clone();
        let queue = queue.clone();
        tokio::spawn(async move {
            let mut set = tokio::task::JoinSet::new();
            for i in 0..N {
                let peering = peering.clone();
                let method = publish_to(&queue);
                set.spawn(async move {
                    let r = peering
                        .publish(method, Default::default(), Bytes::from(i.to_string()))
                        .await;
                    (i, r)
                });
            }
            let mut done = vec![0u32; N];
            while let Some(r) = set.join_next().await {
                let (i, r) = r.unwrap();
                r.unwrap_or_else(|e| panic!("publish {i}: {e}"));
                done[i] += 1;
            }
            done
        })
    };
    // Cuts spread over the run: each once another share of the messages is confirmed,
    // and each on a live link (so every one of the 20 really cuts a connection).
    for k in 1..=CUTS {
        let share = (k * N / (CUTS + 1)) as u64;
        wait_for(&peering, "progress", Duration::from_secs(30), |s| {
            s.counters.confirmed >= share
                && s.counters.connects >= k as u64
                && s.state == PeeringState::Running
        })
        .await;
        proxy.cut();
    }
    let done = timeout(Duration::from_secs(120), publisher)
        .await
        .expect("all confirmed within 2 min")
        .unwrap();
    assert!(done.iter().all(|&n| n == 1), "each future completes once");
    let status = wait_for(&peering, "every cut seen", Duration::from_secs(10), |s| {
        s.counters.disconnects >= CUTS as u64
    })
    .await;
    assert!(status.counters.confirmed >= N as u64, "{status:?}");
    assert_eq!(status.counters.outbox_depth, 0);

    // Upstream: every message at least once (a publish resent after a cut may be there
    // twice: at-least-once).
    let (_conn, ch) = up.channel().await;
    let mut consumer = ch
        .basic_consume(
            &queue,
            "check",
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            LapinTable::default(),
        )
        .await
        .unwrap();
    let mut seen = HashSet::new();
    let mut total = 0usize;
    while seen.len() < N {
        let d = timeout(Duration::from_secs(10), consumer.next())
            .await
            .unwrap_or_else(|_| panic!("only {} of {N} distinct messages upstream", seen.len()))
            .unwrap()
            .unwrap();
        let i: usize = std::str::from_utf8(&d.data).unwrap().parse().unwrap();
        seen.insert(i);
        total += 1;
    }
    assert_eq!(seen.len(), N);
    assert!(total >= N);
    peering.stop().await;
    ch.queue_delete(&queue, QueueDeleteOptions::default())
        .await
        .unwrap();
    up.stop().await;
}

/// A stalled link (no bytes either way, socket open) is found dead within two
/// heartbeat intervals.
async fn stalled_link_detected(up: Upstream) {
    let proxy = FaultProxy::start(up.addr).await;
    let mut config = up.peering_via(&proxy);
    config.heartbeat = 1;
    let (peering, _events) = Peering::new(config);
    peering.start();
    running(&peering).await;
    proxy.set_stall(true);
    let stalled_at = Instant::now();
    let s = wait_for(&peering, "backing off", Duration::from_secs(10), |s| {
        matches!(s.state, PeeringState::BackingOff { .. })
    })
    .await;
    let took = stalled_at.elapsed();
    let err = s.last_error.expect("a reason");
    assert!(err.text.contains("no heartbeat"), "{err:?}");
    // Two 1 s intervals, and a little for the scheduler.
    assert!(
        took <= Duration::from_millis(2_300),
        "detected after {took:?}"
    );
    proxy.set_stall(false);
    running(&peering).await;
    peering.stop().await;
    up.stop().await;
}

/// The remote refusing things (a wrong password; an exchange redeclared with another
/// type) shows in the status with its code; the peering keeps trying, and the local
/// broker keeps serving its own clients.
async fn remote_errors_are_reported(up: Upstream) {
    let local = broker::start().await;
    let proxy = FaultProxy::start(up.addr).await;

    let mut bad = up.peering_via(&proxy);
    bad.remote.password = "wrong".into();
    let (wrong, _e) = Peering::new(bad);
    wrong.start();
    let s = wait_for(&wrong, "refused", Duration::from_secs(10), |s| {
        s.last_error.as_ref().is_some_and(|e| e.code == Some(403))
    })
    .await;
    assert!(
        matches!(
            s.state,
            PeeringState::BackingOff { .. } | PeeringState::Connecting
        ),
        "{s:?}"
    );
    // It keeps trying.
    let tries = proxy.connections_accepted();
    assert!(proxy.wait_accepted(tries + 2, Duration::from_secs(5)).await);
    wrong.stop().await;

    // The local broker is unaffected.
    let (_c, local_ch) = broker::channel(&local).await;
    local_ch
        .queue_declare(
            "local",
            QueueDeclareOptions::default(),
            LapinTable::default(),
        )
        .await
        .unwrap();

    let (peering, mut events) = Peering::new(up.peering_via(&proxy));
    peering.start();
    let exchange = unique("peer.typed");
    peering
        .declare_exchange(ExchangeDeclare {
            exchange: ss(&exchange),
            r#type: ss("direct"),
            ..Default::default()
        })
        .await
        .unwrap();
    let err = peering
        .declare_exchange(ExchangeDeclare {
            exchange: ss(&exchange),
            r#type: ss("topic"),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(
        matches!(err, PeeringError::Refused { code: 406, .. }),
        "{err:?}"
    );
    let closed = next_event(&mut events).await;
    assert!(
        matches!(closed, PeeringEvent::ChannelClosed { code: 406, .. }),
        "{closed:?}"
    );
    assert_eq!(peering.status().last_error.unwrap().code, Some(406));
    // The peering carries on: the channel was reopened and the replay (without the
    // refused declaration) went through.
    running(&peering).await;
    let q = unique("peer.after");
    peering
        .declare_queue(outliving_queue(&q, Duration::from_secs(30)))
        .await
        .unwrap();
    peering
        .publish(publish_to(&q), Default::default(), Bytes::from_static(b"x"))
        .await
        .unwrap();

    local_ch
        .basic_publish(
            "",
            "local",
            BasicPublishOptions::default(),
            b"still here",
            Default::default(),
        )
        .await
        .unwrap();
    let got = local_ch
        .basic_get("local", BasicGetOptions { no_ack: true })
        .await
        .unwrap()
        .expect("the local broker still serves");
    assert_eq!(got.delivery.data, b"still here");

    peering.stop().await;
    let (_conn, ch) = up.channel().await;
    ch.exchange_delete(&exchange, ExchangeDeleteOptions::default())
        .await
        .unwrap();
    ch.queue_delete(&q, QueueDeleteOptions::default())
        .await
        .unwrap();
    local.shutdown().await;
    up.stop().await;
}

/// While the link is down the outbox holds what it may; one more publish waits for
/// room, and everything goes once the link is back.
async fn full_outbox_waits(up: Upstream) {
    let proxy = FaultProxy::start(up.addr).await;
    let mut config = up.peering_via(&proxy);
    config.outbox = OutboxLimits {
        messages: 5,
        bytes: 1 << 20,
    };
    let (peering, _events) = Peering::new(config);
    let peering = Arc::new(peering);
    peering.start();
    let queue = unique("peer.outbox");
    peering
        .declare_queue(outliving_queue(&queue, Duration::from_secs(30)))
        .await
        .unwrap();
    running(&peering).await;
    proxy.set_refuse(true);
    proxy.cut();
    wait_for(&peering, "backing off", Duration::from_secs(5), |s| {
        matches!(s.state, PeeringState::BackingOff { .. })
    })
    .await;

    let mut tasks = Vec::new();
    for i in 0..6u8 {
        let peering = peering.clone();
        let m = publish_to(&queue);
        tasks.push(tokio::spawn(async move {
            peering
                .publish(m, Default::default(), Bytes::from(vec![i]))
                .await
        }));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    wait_for(
        &peering,
        "five in the outbox",
        Duration::from_secs(5),
        |s| s.counters.outbox_depth == 5,
    )
    .await;
    // The sixth is waiting for room, not queued and not dropped.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(peering.status().counters.outbox_depth, 5);
    assert!(!tasks[5].is_finished());

    proxy.set_refuse(false);
    for t in tasks {
        timeout(Duration::from_secs(10), t)
            .await
            .expect("confirmed after the reconnect")
            .unwrap()
            .unwrap();
    }
    let (_conn, ch) = up.channel().await;
    let q = ch
        .queue_declare(
            &queue,
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            LapinTable::default(),
        )
        .await
        .unwrap();
    assert!(q.message_count() >= 6);
    peering.stop().await;
    ch.queue_delete(&queue, QueueDeleteOptions::default())
        .await
        .unwrap();
    up.stop().await;
}

/// A delivery the owner has not acked when the link goes is not lost: the remote
/// delivers it again after the reconnect (redelivered), and an ack then settles it.
async fn unacked_delivery_comes_again(up: Upstream) {
    let proxy = FaultProxy::start(up.addr).await;
    let (peering, mut events) = Peering::new(up.peering_via(&proxy));
    peering.start();
    let queue = unique("peer.unacked");
    peering
        .declare_queue(outliving_queue(&queue, Duration::from_secs(60)))
        .await
        .unwrap();
    peering
        .consume(BasicConsume {
            queue: ss(&queue),
            ..Default::default()
        })
        .await
        .unwrap();
    peering
        .publish(
            publish_to(&queue),
            Default::default(),
            Bytes::from_static(b"m"),
        )
        .await
        .unwrap();
    let first = next_delivery(&mut events).await;
    assert!(!first.redelivered);
    // The owner "crashes" before taking it: no ack. The link goes.
    proxy.cut();
    wait_for(&peering, "reconnected", Duration::from_secs(10), |s| {
        s.counters.connects >= 2 && s.state == PeeringState::Running
    })
    .await;
    let again = next_delivery(&mut events).await;
    assert_eq!(&again.body[..], b"m");
    assert!(again.redelivered);
    // The stale acker does nothing (its channel is gone); the new one settles it.
    first.acker.ack();
    again.acker.ack();
    peering.stop().await;
    let (_conn, ch) = up.channel().await;
    let q = ch
        .queue_declare(
            &queue,
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            LapinTable::default(),
        )
        .await
        .unwrap();
    assert_eq!(q.message_count(), 0, "acked, so gone");
    ch.queue_delete(&queue, QueueDeleteOptions::default())
        .await
        .unwrap();
    up.stop().await;
}

/// A slow link (every chunk delayed) is slow, not dead: publishes are pipelined and all
/// confirmed, and heartbeats keep it up.
async fn slow_link_still_works(up: Upstream) {
    let proxy = FaultProxy::start(up.addr).await;
    proxy.set_delay(Duration::from_millis(30));
    let mut config = up.peering_via(&proxy);
    config.heartbeat = 1;
    let (peering, _events) = Peering::new(config);
    let peering = Arc::new(peering);
    peering.start();
    let queue = unique("peer.slow");
    peering
        .declare_queue(outliving_queue(&queue, Duration::from_secs(60)))
        .await
        .unwrap();
    let mut set = tokio::task::JoinSet::new();
    for i in 0..200u32 {
        let peering = peering.clone();
        let m = publish_to(&queue);
        set.spawn(async move {
            peering
                .publish(m, Default::default(), Bytes::from(i.to_string()))
                .await
        });
    }
    while let Some(r) = set.join_next().await {
        r.unwrap().unwrap();
    }
    // Longer than two heartbeat intervals on the slow link: still the first connection.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let s = peering.status();
    assert_eq!(s.state, PeeringState::Running);
    assert_eq!(s.counters.connects, 1, "{s:?}");
    assert_eq!(s.counters.confirmed, 200);
    peering.stop().await;
    let (_conn, ch) = up.channel().await;
    ch.queue_delete(&queue, QueueDeleteOptions::default())
        .await
        .unwrap();
    up.stop().await;
}

// ---------------------------------------------------------------------------------
// Against fedamq

#[tokio::test]
async fn unacked_delivery_comes_again_fedamq() {
    unacked_delivery_comes_again(Upstream::fedamq().await).await;
}

#[tokio::test]
async fn slow_link_still_works_fedamq() {
    slow_link_still_works(Upstream::fedamq().await).await;
}

/// The remote's connection.blocked shows as `blocked`, and publishing resumes (and
/// the status goes back to `running`) once it unblocks.
#[tokio::test]
async fn remote_blocking_shows_in_the_status() {
    let config = fedamq::config::Config {
        memory_high_watermark: 64 * 1024,
        ..Default::default()
    };
    let b = broker::start_with(config).await;
    let up = Upstream {
        addr: b.local_addr(),
        user: "guest".into(),
        password: "guest".into(),
        vhost: "/".into(),
        broker: Some(b),
    };
    let proxy = FaultProxy::start(up.addr).await;
    let (peering, _events) = Peering::new(up.peering_via(&proxy));
    let peering = Arc::new(peering);
    peering.start();
    let queue = unique("peer.fill");
    peering
        .declare_queue(QueueDeclare {
            queue: ss(&queue),
            ..Default::default()
        })
        .await
        .unwrap();
    running(&peering).await;
    // 16 KiB bodies past a 64 KiB watermark: the remote blocks us.
    let filling = {
        let peering = peering.clone();
        let m = publish_to(&queue);
        tokio::spawn(async move {
            for _ in 0..8 {
                let _ = peering
                    .publish(
                        m.clone(),
                        Default::default(),
                        Bytes::from(vec![7u8; 16 * 1024]),
                    )
                    .await;
            }
        })
    };
    let s = wait_for(&peering, "blocked", Duration::from_secs(10), |s| {
        s.state == PeeringState::Blocked
    })
    .await;
    assert_eq!(s.state, PeeringState::Blocked);
    // Draining the remote's queue unblocks it.
    let (_conn, ch) = up.channel().await;
    ch.queue_purge(&queue, QueuePurgeOptions::default())
        .await
        .unwrap();
    running(&peering).await;
    // The rest of the publishes may block it again: keep draining until they are done.
    let drained = timeout(Duration::from_secs(10), async {
        while !filling.is_finished() {
            ch.queue_purge(&queue, QueuePurgeOptions::default())
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(drained.is_ok(), "the publishes complete once unblocked");
    peering.stop().await;
    up.stop().await;
}

#[tokio::test]
async fn round_trip_fedamq() {
    round_trip(Upstream::fedamq().await).await;
}

#[tokio::test]
async fn reconnect_replays_fedamq() {
    reconnect_replays(Upstream::fedamq().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishes_survive_cuts_fedamq() {
    publishes_survive_cuts(Upstream::fedamq().await).await;
}

#[tokio::test]
async fn stalled_link_detected_fedamq() {
    stalled_link_detected(Upstream::fedamq().await).await;
}

#[tokio::test]
async fn remote_errors_are_reported_fedamq() {
    remote_errors_are_reported(Upstream::fedamq().await).await;
}

#[tokio::test]
async fn full_outbox_waits_fedamq() {
    full_outbox_waits(Upstream::fedamq().await).await;
}

/// Peering a broker to itself is refused, for good, and says why.
#[tokio::test]
async fn self_peering_is_refused() {
    let b = broker::start().await;
    let mut config = PeeringConfig::new(Remote::from_uri(&b.url("guest", "guest")).unwrap());
    config.local_identifier = Some(b.identifier().to_owned());
    let (peering, _e) = Peering::new(config);
    peering.start();
    let s = wait_for(&peering, "failed", Duration::from_secs(5), |s| {
        matches!(s.state, PeeringState::Failed { .. })
    })
    .await;
    let PeeringState::Failed { text, .. } = s.state else {
        unreachable!()
    };
    assert!(text.contains("ourselves"), "{text}");
    let err = peering
        .declare_queue(QueueDeclare::default())
        .await
        .unwrap_err();
    assert_eq!(err, PeeringError::Stopped);
    // The broker itself is fine.
    let (_c, ch) = broker::channel(&b).await;
    ch.queue_declare("ok", QueueDeclareOptions::default(), LapinTable::default())
        .await
        .unwrap();
    peering.stop().await;
    b.shutdown().await;
}

/// A login named in the local user table, with its password from there.
#[tokio::test]
async fn local_login_uses_the_local_password() {
    let b = broker::start().await;
    let users = fedamq::config::Config::default().user_table();
    let addr = b.local_addr();
    let remote = Remote::with_local_login("127.0.0.1", addr.port(), "/", "guest", &users).unwrap();
    let (peering, _e) = Peering::new(PeeringConfig::new(remote));
    peering.start();
    peering
        .declare_queue(QueueDeclare::default())
        .await
        .unwrap();
    assert!(Remote::with_local_login("127.0.0.1", 1, "/", "nobody", &users).is_err());
    peering.stop().await;
    b.shutdown().await;
}

/// Dropping the handle closes the connection.
#[tokio::test]
async fn dropping_the_handle_closes_the_connection() {
    let up = Upstream::fedamq().await;
    let proxy = FaultProxy::start(up.addr).await;
    let (peering, _e) = Peering::new(up.peering_via(&proxy));
    peering.start();
    running(&peering).await;
    assert_eq!(proxy.live_connections(), 1);
    drop(peering);
    assert!(proxy.wait_live(0, Duration::from_secs(5)).await);
    up.stop().await;
}

// ---------------------------------------------------------------------------------
// Against RabbitMQ

#[tokio::test]
async fn round_trip_rabbitmq() {
    round_trip(Upstream::rabbitmq()).await;
}

#[tokio::test]
async fn reconnect_replays_rabbitmq() {
    reconnect_replays(Upstream::rabbitmq()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishes_survive_cuts_rabbitmq() {
    publishes_survive_cuts(Upstream::rabbitmq()).await;
}

#[tokio::test]
async fn stalled_link_detected_rabbitmq() {
    stalled_link_detected(Upstream::rabbitmq()).await;
}

#[tokio::test]
async fn remote_errors_are_reported_rabbitmq() {
    remote_errors_are_reported(Upstream::rabbitmq()).await;
}

#[tokio::test]
async fn full_outbox_waits_rabbitmq() {
    full_outbox_waits(Upstream::rabbitmq()).await;
}

#[tokio::test]
async fn unacked_delivery_comes_again_rabbitmq() {
    unacked_delivery_comes_again(Upstream::rabbitmq()).await;
}

#[tokio::test]
async fn slow_link_still_works_rabbitmq() {
    slow_link_still_works(Upstream::rabbitmq()).await;
}
