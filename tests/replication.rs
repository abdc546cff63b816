//! Replication between two in-process brokers: definitions streamed over the `replica`
//! tunnel (snapshot, then each kind of change, deletions too, across a cut through the
//! fault proxy, and nothing applied by a sink that does not accept), and queues drained
//! to a remote with confirms (also with a cut in the middle).

mod support;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use fedamq::BrokerHandle;
use fedamq::auth::password::PasswordHash;
use fedamq::broker::policy::{ApplyTo, Parameter, Policy, PolicyKind};
use fedamq::config::{Config, PermissionConfig, UserConfig};
use fedamq::peering::{Backoff, Remote};
use fedamq::protocol::ShortString;
use fedamq::replication::{self, Def, Sink, Source, drain_to};
use fedamq::tunnel::TunnelConfig;
use futures_lite::StreamExt;
use lapin::options::{
    BasicConsumeOptions, BasicPublishOptions, ConfirmSelectOptions, ExchangeBindOptions,
    ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions, QueueDeclareOptions,
    QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, ExchangeKind};
use serde_json::json;
use support::broker;
use support::fault_proxy::FaultProxy;

/// Guards against a hang; no assertion is about time.
const PATIENCE: Duration = Duration::from_secs(60);

/// A broker whose configuration has the `peer` login (tag `peering`) beside guest.
async fn start() -> BrokerHandle {
    let mut config = Config::default();
    config.management.port = None;
    config.prometheus.port = None;
    config.users.push(UserConfig {
        name: "peer".into(),
        password_hash: PasswordHash::new("peer"),
        password: Some("peer".into()),
        tags: vec!["peering".into(), "administrator".into()],
    });
    config.permissions.push(PermissionConfig {
        user: "peer".into(),
        vhost: "/".into(),
        configure: ".*".into(),
        write: ".*".into(),
        read: ".*".into(),
    });
    broker::start_with(config).await
}

fn tunnel_config(url: &str) -> TunnelConfig {
    let mut c = TunnelConfig::new(Remote::from_uri(url).unwrap());
    c.peering.reconnect = Some(Backoff {
        min: Duration::from_millis(5),
        max: Duration::from_millis(50),
    });
    c
}

/// Waits until `what` holds, polling; panics with `why()` if it never does.
async fn eventually(what: impl Fn() -> bool, why: impl Fn() -> String) {
    let ok = tokio::time::timeout(PATIENCE, async {
        while !what() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    if ok.is_err() {
        panic!("never happened: {}", why());
    }
}

/// Waits until the sink's definitions are the source's.
async fn same_definitions(a: &BrokerHandle, b: &BrokerHandle) {
    eventually(
        || replication::definitions(a.broker()) == replication::definitions(b.broker()),
        || {
            let (x, y) = (
                replication::definitions(a.broker()),
                replication::definitions(b.broker()),
            );
            format!(
                "source has, sink lacks: {:?}\nsink has, source lacks: {:?}",
                x.iter().filter(|d| !y.contains(d)).collect::<Vec<_>>(),
                y.iter().filter(|d| !x.contains(d)).collect::<Vec<_>>()
            )
        },
    )
    .await;
}

fn has(b: &BrokerHandle, pred: impl Fn(&Def) -> bool) -> bool {
    replication::definitions(b.broker()).iter().any(pred)
}

fn s(v: &str) -> ShortString {
    ShortString::try_from(v).unwrap()
}

/// One object of every kind, on `b` ("v1", "x1", "q1", "u1", …), made the way a client
/// or the management API makes them.
async fn make_one_of_each(b: &BrokerHandle, n: u32, ch: &lapin::Channel) {
    let broker = b.broker();
    let vhost = format!("v{n}");
    broker.add_vhost(&vhost).unwrap();
    let user = format!("u{n}");
    broker
        .users()
        .add_user(&user, PasswordHash::new("pw"), vec!["monitoring".into()])
        .unwrap();
    broker
        .users()
        .set_permissions(&user, &vhost, "^c", "^w", "^r")
        .unwrap();
    broker.set_global_parameter(&format!("g{n}"), json!({"n": n}));
    let root = broker.vhost("/").unwrap();
    root.set_parameter(
        Parameter::new(
            "federation-upstream",
            "/",
            &format!("up{n}"),
            json!({"uri": "amqp://localhost:1"}),
        )
        .unwrap(),
    );
    root.set_policy(
        Policy::new(
            PolicyKind::User,
            "/",
            &format!("p{n}"),
            &format!("^q{n}$"),
            ApplyTo::Queues,
            n.into(),
            &json!({"max-length": 1000}),
        )
        .unwrap(),
    );
    root.set_policy(
        Policy::new(
            PolicyKind::Operator,
            "/",
            &format!("op{n}"),
            &format!("^q{n}$"),
            ApplyTo::Queues,
            0,
            &json!({"max-length": 2000}),
        )
        .unwrap(),
    );
    let mut args = FieldTable::default();
    args.insert("x-max-priority".into(), AMQPValue::LongLongInt(5));
    ch.exchange_declare(
        format!("x{n}").as_str(),
        ExchangeKind::Topic,
        ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .unwrap();
    ch.queue_declare(
        format!("q{n}").as_str(),
        QueueDeclareOptions {
            durable: true,
            ..Default::default()
        },
        args,
    )
    .await
    .unwrap();
    ch.queue_bind(
        format!("q{n}").as_str(),
        format!("x{n}").as_str(),
        "k.#",
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    ch.exchange_bind(
        "amq.fanout",
        format!("x{n}").as_str(),
        "e.#",
        ExchangeBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
}

/// Removes what [`make_one_of_each`] made.
async fn delete_one_of_each(b: &BrokerHandle, n: u32, ch: &lapin::Channel) {
    let broker = b.broker();
    ch.queue_unbind(
        format!("q{n}").as_str(),
        format!("x{n}").as_str(),
        "k.#",
        FieldTable::default(),
    )
    .await
    .unwrap();
    ch.queue_delete(format!("q{n}").as_str(), QueueDeleteOptions::default())
        .await
        .unwrap();
    ch.exchange_delete(format!("x{n}").as_str(), ExchangeDeleteOptions::default())
        .await
        .unwrap();
    let root = broker.vhost("/").unwrap();
    root.clear_policy(PolicyKind::User, &format!("p{n}"))
        .unwrap();
    root.clear_policy(PolicyKind::Operator, &format!("op{n}"))
        .unwrap();
    root.clear_parameter("federation-upstream", &format!("up{n}"))
        .unwrap();
    assert!(broker.clear_global_parameter(&format!("g{n}")));
    let user = format!("u{n}");
    broker
        .users()
        .clear_permissions(&user, &format!("v{n}"))
        .unwrap();
    broker.users().delete_user(&user).unwrap();
    assert!(broker.delete_vhost(&format!("v{n}")));
}

/// Whether `b` has each kind of object numbered `n`, by kind.
fn kinds_present(b: &BrokerHandle, n: u32) -> Vec<(&'static str, bool)> {
    let v = format!("v{n}");
    let u = format!("u{n}");
    let g = format!("g{n}");
    let up = format!("up{n}");
    let p = format!("p{n}");
    let op = format!("op{n}");
    let x = format!("x{n}");
    let q = format!("q{n}");
    vec![
        (
            "vhost",
            has(b, |d| matches!(d, Def::Vhost { name } if *name == v)),
        ),
        (
            "user",
            has(b, |d| matches!(d, Def::User { name, .. } if *name == u)),
        ),
        (
            "permission",
            has(
                b,
                |d| matches!(d, Def::Permission { user, vhost, .. } if *user == u && *vhost == v),
            ),
        ),
        (
            "global parameter",
            has(
                b,
                |d| matches!(d, Def::GlobalParameter { name, .. } if *name == g),
            ),
        ),
        (
            "parameter",
            has(
                b,
                |d| matches!(d, Def::Parameter { name, .. } if *name == up),
            ),
        ),
        (
            "policy",
            has(b, |d| matches!(d, Def::Policy { name, .. } if *name == p)),
        ),
        (
            "operator policy",
            has(
                b,
                |d| matches!(d, Def::Policy { name, operator: true, .. } if *name == op),
            ),
        ),
        (
            "exchange binding",
            has(
                b,
                |d| matches!(d, Def::Binding { source, destination, destination_type, .. } if *source == x && destination == "amq.fanout" && destination_type == "exchange"),
            ),
        ),
        (
            "exchange",
            has(b, |d| matches!(d, Def::Exchange { name, .. } if *name == x)),
        ),
        (
            "queue",
            has(b, |d| matches!(d, Def::Queue { name, .. } if *name == q)),
        ),
        (
            "binding",
            has(
                b,
                |d| matches!(d, Def::Binding { source, destination, .. } if *source == x && *destination == q),
            ),
        ),
    ]
}

#[tokio::test]
async fn a_snapshot_then_every_kind_of_change_and_deletion_reach_the_sink() {
    let a = start().await;
    let b = start().await;
    let sink = Sink::register(b.broker(), || true);
    let (_conn, ch) = broker::channel(&a).await;
    // Before the source starts: the snapshot carries these.
    make_one_of_each(&a, 1, &ch).await;
    // An exclusive queue is the connection's: never replicated.
    ch.queue_declare(
        "mine",
        QueueDeclareOptions {
            exclusive: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .unwrap();
    let source = Source::start_with(a.broker(), tunnel_config(&b.url("peer", "peer"))).unwrap();
    same_definitions(&a, &b).await;
    assert!(
        kinds_present(&b, 1).iter().all(|(_, p)| *p),
        "{:?}",
        kinds_present(&b, 1)
    );
    assert!(b.broker().vhost("/").unwrap().queue(&s("mine")).is_none());
    let snapshots = sink.counters().snapshots_applied;
    assert!(snapshots >= 1);

    // Then changes, each kind.
    make_one_of_each(&a, 2, &ch).await;
    same_definitions(&a, &b).await;
    assert!(
        kinds_present(&b, 2).iter().all(|(_, p)| *p),
        "{:?}",
        kinds_present(&b, 2)
    );
    // The queue's arguments arrived with their types.
    let q2 = b.broker().vhost("/").unwrap().queue(&s("q2")).unwrap();
    assert!(q2.spec.durable);
    assert!(q2.spec.arguments.get("x-max-priority").is_some());

    // Deletions, each kind.
    delete_one_of_each(&a, 1, &ch).await;
    same_definitions(&a, &b).await;
    assert!(
        kinds_present(&b, 1).iter().all(|(_, p)| !*p),
        "{:?}",
        kinds_present(&b, 1)
    );
    assert!(kinds_present(&b, 2).iter().all(|(_, p)| *p));
    // The sink's own vhost, users and amq.* exchanges stay.
    assert!(
        b.broker()
            .vhost("/")
            .unwrap()
            .exchange(&s("amq.topic"))
            .is_some()
    );
    assert!(b.broker().users().user("guest").is_some());
    // What the sink's configuration made stays, even when the source deletes it.
    a.broker().users().delete_user("guest").unwrap();
    a.broker().delete_vhost("v2");
    a.broker().set_global_parameter("after", json!(1));
    eventually(
        || {
            has(
                &b,
                |d| matches!(d, Def::GlobalParameter { name, .. } if name == "after"),
            )
        },
        || "the change after the deletions".into(),
    )
    .await;
    assert!(
        b.broker().vhost("v2").is_none(),
        "a vhost the source deleted"
    );
    assert!(b.broker().users().user("guest").is_some());
    assert!(b.broker().users().may_access_vhost("guest", "/"));
    assert!(b.broker().vhost("/").is_some());
    assert!(source.counters().changes_sent > 0);
    assert_eq!(
        sink.counters().snapshots_applied,
        snapshots,
        "changes, not snapshots"
    );
    source.stop().await;
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn changes_made_during_a_cut_deletions_too_arrive_after_the_reconnect() {
    let a = start().await;
    let b = start().await;
    let _sink = Sink::register(b.broker(), || true);
    let proxy = FaultProxy::start(b.local_addr()).await;
    let (_conn, ch) = broker::channel(&a).await;
    make_one_of_each(&a, 1, &ch).await;
    let source =
        Source::start_with(a.broker(), tunnel_config(&proxy.url("peer", "peer", "/"))).unwrap();
    same_definitions(&a, &b).await;

    proxy.set_refuse(true);
    proxy.cut();
    eventually(|| proxy.live_connections() == 0, || "the cut".into()).await;
    delete_one_of_each(&a, 1, &ch).await;
    make_one_of_each(&a, 2, &ch).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        kinds_present(&b, 2).iter().all(|(_, p)| !*p),
        "nothing passes a cut: {:?}",
        kinds_present(&b, 2)
    );
    proxy.set_refuse(false);
    same_definitions(&a, &b).await;
    assert!(
        kinds_present(&b, 1).iter().all(|(_, p)| !*p),
        "{:?}",
        kinds_present(&b, 1)
    );
    assert!(
        kinds_present(&b, 2).iter().all(|(_, p)| *p),
        "{:?}",
        kinds_present(&b, 2)
    );
    assert!(proxy.connections_accepted() >= 2, "it reconnected");
    source.stop().await;
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn a_sink_that_does_not_accept_applies_nothing_until_it_does() {
    let a = start().await;
    let b = start().await;
    let accept = Arc::new(AtomicBool::new(false));
    let flag = accept.clone();
    let sink = Sink::register(b.broker(), move || flag.load(Ordering::SeqCst));
    let (_conn, ch) = broker::channel(&a).await;
    make_one_of_each(&a, 1, &ch).await;
    let source = Source::start_with(a.broker(), tunnel_config(&b.url("peer", "peer"))).unwrap();
    make_one_of_each(&a, 2, &ch).await;
    // The snapshot and the change arrived, and were dropped.
    eventually(
        || sink.counters().dropped >= 2,
        || format!("{:?} / {:?}", sink.counters(), source.counters()),
    )
    .await;
    for n in [1, 2] {
        assert!(
            kinds_present(&b, n).iter().all(|(_, p)| !*p),
            "a sink not accepting applied {:?}",
            kinds_present(&b, n)
        );
    }
    assert_eq!(sink.counters().snapshots_applied, 0);

    // Accepting now: it asks for a snapshot and catches up.
    accept.store(true, Ordering::SeqCst);
    sink.request_snapshots();
    same_definitions(&a, &b).await;
    assert!(sink.counters().snapshots_applied >= 1);
    assert!(source.counters().resyncs_received >= 1);
    source.stop().await;
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn a_new_sink_behind_the_same_address_gets_a_snapshot_without_waiting_for_a_change() {
    let a = start().await;
    let b = start().await;
    let c = start().await;
    let _sink_b = Sink::register(b.broker(), || true);
    let sink_c = Sink::register(c.broker(), || true);
    let proxy = FaultProxy::start(b.local_addr()).await;
    let (_conn, ch) = broker::channel(&a).await;
    make_one_of_each(&a, 1, &ch).await;
    // A window of 2: the sink acknowledges every method at once, so nothing the old
    // sink got is sent again to the new one by the tunnel itself.
    let mut config = tunnel_config(&proxy.url("peer", "peer", "/"));
    config.window = 2;
    let source = Source::start_with(a.broker(), config).unwrap();
    same_definitions(&a, &b).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    // The sink "restarts": another broker, with no tunnel state, behind the address.
    proxy.set_upstream(c.local_addr());
    proxy.cut();
    same_definitions(&a, &c).await;
    assert!(kinds_present(&c, 1).iter().all(|(_, p)| *p));
    assert!(sink_c.counters().snapshots_applied >= 1);
    source.stop().await;
    a.shutdown().await;
    b.shutdown().await;
    c.shutdown().await;
}

const QUEUES: usize = 5;
const PER_QUEUE: usize = 2_000;

/// Publishes PER_QUEUE messages with headers to each of QUEUES queues on `b`, confirmed.
async fn fill(b: &BrokerHandle) {
    let (_conn, ch) = broker::channel(b).await;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    for q in 0..QUEUES {
        let mut args = FieldTable::default();
        args.insert("x-max-length".into(), AMQPValue::LongLongInt(1_000_000));
        ch.queue_declare(
            format!("drain{q}").as_str(),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            args,
        )
        .await
        .unwrap();
        let mut confirms = Vec::new();
        for i in 0..PER_QUEUE {
            let mut headers = FieldTable::default();
            headers.insert("n".into(), AMQPValue::LongLongInt(i as i64));
            let props = BasicProperties::default()
                .with_headers(headers)
                .with_content_type("text/plain".into());
            confirms.push(
                ch.basic_publish(
                    "",
                    format!("drain{q}").as_str(),
                    BasicPublishOptions::default(),
                    format!("{q}/{i}").as_bytes(),
                    props,
                )
                .await
                .unwrap(),
            );
        }
        for c in confirms {
            assert!(c.await.unwrap().is_ack());
        }
    }
}

fn local_count(b: &BrokerHandle) -> u64 {
    let v = b.broker().vhost("/").unwrap();
    (0..QUEUES)
        .map(|q| {
            v.queue(&s(&format!("drain{q}")))
                .map_or(0, |q| u64::from(q.message_count()))
        })
        .sum()
}

/// Consumes everything from the drain queues on `b`: each body with how often it came.
async fn take_all(b: &BrokerHandle) -> HashMap<String, u32> {
    let expected = local_count(b);
    let (_conn, ch) = broker::channel(b).await;
    let mut seen: HashMap<String, u32> = HashMap::new();
    let mut got = 0;
    for q in 0..QUEUES {
        // Counted before consuming: a no-ack consumer empties the queue at once.
        let here = b
            .broker()
            .vhost("/")
            .unwrap()
            .queue(&s(&format!("drain{q}")))
            .map_or(0, |q| q.message_count());
        let mut consumer = ch
            .basic_consume(
                format!("drain{q}").as_str(),
                format!("check{q}").as_str(),
                BasicConsumeOptions {
                    no_ack: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .unwrap();
        for _ in 0..here {
            let d = tokio::time::timeout(PATIENCE, consumer.next())
                .await
                .expect("a delivery")
                .expect("the consumer")
                .expect("no error");
            let headers = d.properties.headers().clone().expect("headers kept");
            assert!(headers.inner().contains_key("n"), "header n kept");
            assert_eq!(
                d.properties.content_type().as_ref().map(|c| c.as_str()),
                Some("text/plain")
            );
            *seen.entry(String::from_utf8(d.data).unwrap()).or_default() += 1;
            got += 1;
        }
    }
    assert_eq!(got, expected);
    seen
}

fn check_all_there(seen: &HashMap<String, u32>) {
    let mut lost = Vec::new();
    for q in 0..QUEUES {
        for i in 0..PER_QUEUE {
            if !seen.contains_key(&format!("{q}/{i}")) {
                lost.push(format!("{q}/{i}"));
            }
        }
    }
    let duplicates: u32 = seen.values().map(|n| n - 1).sum();
    println!("{} distinct messages, {duplicates} duplicates", seen.len());
    assert!(
        lost.is_empty(),
        "{} messages lost (first {:?}); {duplicates} duplicates",
        lost.len(),
        &lost[..lost.len().min(5)]
    );
    assert_eq!(seen.len(), QUEUES * PER_QUEUE, "{duplicates} duplicates");
}

#[tokio::test]
async fn a_drain_moves_every_message_with_its_headers_and_empties_the_queues() {
    let a = start().await;
    let b = start().await;
    fill(&a).await;
    assert_eq!(local_count(&a), (QUEUES * PER_QUEUE) as u64);
    let remote = Remote::from_uri(&b.url("peer", "peer")).unwrap();
    let report = tokio::time::timeout(PATIENCE, drain_to(a.broker(), remote))
        .await
        .expect("the drain ends");
    assert!(report.failed.is_empty(), "{report:?}");
    assert_eq!(report.moved, (QUEUES * PER_QUEUE) as u64);
    assert_eq!(report.queues.len(), QUEUES);
    assert_eq!(local_count(&a), 0, "the local queues end empty");
    let seen = take_all(&b).await;
    check_all_there(&seen);
    assert!(seen.values().all(|n| *n == 1), "no cut: no duplicate");
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn a_drain_cut_in_the_middle_loses_nothing() {
    let a = start().await;
    let b = start().await;
    fill(&a).await;
    // The remote already has one of the queues: found by the passive declare.
    let (_conn, ch) = broker::channel(&b).await;
    let mut args = FieldTable::default();
    args.insert("x-max-length".into(), AMQPValue::LongLongInt(1_000_000));
    ch.queue_declare(
        "drain0",
        QueueDeclareOptions {
            durable: true,
            ..Default::default()
        },
        args,
    )
    .await
    .unwrap();
    let proxy = Arc::new(FaultProxy::start(b.local_addr()).await);
    let remote = Remote::from_uri(&proxy.url("peer", "peer", "/")).unwrap();
    // Cut once the remote has a third of the messages.
    let cutter = {
        let proxy = proxy.clone();
        let b = b.broker().clone();
        tokio::spawn(async move {
            loop {
                let there: u64 = b
                    .vhost("/")
                    .unwrap()
                    .queues()
                    .iter()
                    .map(|q| u64::from(q.message_count()))
                    .sum();
                if there >= (QUEUES * PER_QUEUE / 3) as u64 {
                    proxy.cut();
                    return;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
    };
    let report = tokio::time::timeout(PATIENCE, drain_to(a.broker(), remote))
        .await
        .expect("the drain ends");
    cutter.await.unwrap();
    assert!(proxy.connections_accepted() >= 2, "the drain reconnected");
    assert!(report.failed.is_empty(), "{report:?}");
    assert_eq!(local_count(&a), 0, "the local queues end empty");
    let seen = take_all(&b).await;
    check_all_there(&seen);
    a.shutdown().await;
    b.shutdown().await;
}
