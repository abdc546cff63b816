//! The HA pair with its replication and arbiter wired in (issue 13), with two in-process
//! brokers reaching each other through fault proxies and a short timeout, configured as
//! a user would (no extra code): definitions made on the active member reach the
//! passive one and are there after a takeover; after a split with clients on both
//! sides the loser's queued messages (those its consumers held unacknowledged too) are
//! on the winner, none of the confirmed lost; with an etcd arbiter, a split with clients
//! on both sides never makes two actives, and an active that loses its lease steps down.
//!
//! Waits are bounded by PATIENCE to guard against hangs; no assertion is about time.

mod support;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use fedamq::BrokerHandle;
use fedamq::arbiter::ArbiterConfig;
use fedamq::config::HaRole;
use fedamq::ha::Ha;
use fedamq::protocol::ShortString;
use fedamq::replication::{self, Def};
use futures_lite::StreamExt;
use lapin::options::{
    BasicConsumeOptions, BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions,
    ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ExchangeKind};
use support::broker::reply_code;
use support::etcd::EtcdServer;
use support::fault_proxy::FaultProxy;
use support::ha_inproc::{
    PATIENCE, Pair, TIMEOUT, connect, eventually, fedamqctl_ha_status, status, wait_peer,
    wait_state,
};
use support::management::Http;

/// Waits until `b` has not heard its peer for longer than the timeout.
async fn wait_silence(b: &BrokerHandle) {
    eventually(
        || {
            status(b)
                .last_peer_heartbeat_ms
                .is_some_and(|ms| ms > TIMEOUT.as_millis() as u64 * 2)
        },
        || format!("the peer never went silent: {:?}", status(b)),
    )
    .await;
}

async fn connect_when_admitted(b: &BrokerHandle, who: &str) -> Connection {
    tokio::time::timeout(PATIENCE, async {
        loop {
            match connect(b, who).await {
                Ok(c) => return c,
                Err(_) => tokio::time::sleep(TIMEOUT / 2).await,
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("never admitted; {:?}", status(b)))
}

fn definitions(b: &BrokerHandle) -> Vec<Def> {
    replication::definitions(b.broker())
}

/// Waits until both members have the same definitions.
async fn same_definitions(a: &BrokerHandle, b: &BrokerHandle) {
    eventually(
        || definitions(a) == definitions(b),
        || {
            let (x, y) = (definitions(a), definitions(b));
            format!(
                "only on the first: {:?}\nonly on the second: {:?}",
                x.iter().filter(|d| !y.contains(d)).collect::<Vec<_>>(),
                y.iter().filter(|d| !x.contains(d)).collect::<Vec<_>>()
            )
        },
    )
    .await;
}

async fn confirming_channel(c: &Connection) -> Channel {
    let ch = c.create_channel().await.unwrap();
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    ch
}

fn durable() -> QueueDeclareOptions {
    QueueDeclareOptions {
        durable: true,
        ..Default::default()
    }
}

/// Publishes `ids` to `queue` through the default exchange, each body its id; returns
/// the ids the broker confirmed (acked).
async fn publish_confirmed(ch: &Channel, queue: &str, ids: &[String]) -> Vec<String> {
    let mut pending = Vec::new();
    for id in ids {
        let c = ch
            .basic_publish(
                "",
                queue,
                BasicPublishOptions::default(),
                id.as_bytes(),
                BasicProperties::default().with_delivery_mode(2),
            )
            .await
            .unwrap();
        pending.push((id.clone(), c));
    }
    let mut confirmed = Vec::new();
    for (id, c) in pending {
        if c.await.is_ok_and(|c| c.is_ack()) {
            confirmed.push(id);
        }
    }
    confirmed
}

fn queue_depth(b: &BrokerHandle, queue: &str) -> u64 {
    b.broker()
        .vhost("/")
        .and_then(|v| v.queue(&ShortString::try_from(queue).unwrap()))
        .map_or(0, |q| u64::from(q.message_count()))
}

/// Every message of `queue` on `b`, consumed: each body with how often it came.
async fn take_all(b: &BrokerHandle, queue: &str, into: &mut HashMap<String, u32>) {
    let here = queue_depth(b, queue);
    let conn = connect(b, "app").await.unwrap();
    let ch = conn.create_channel().await.unwrap();
    let mut consumer = ch
        .basic_consume(
            queue,
            "check",
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
        *into.entry(String::from_utf8(d.data).unwrap()).or_default() += 1;
    }
    conn.close(200, "bye").await.unwrap();
}

#[tokio::test]
async fn definitions_made_on_the_active_reach_the_passive_and_survive_a_takeover() {
    let pair = Pair::new(None).await;
    let primary = pair.start(HaRole::Primary).await;
    let backup = pair.start(HaRole::Backup).await;
    wait_state(&primary, "active").await;
    wait_state(&backup, "passive").await;
    wait_peer(&backup, "active").await;
    assert!(primary.ha().unwrap().replicating());
    assert!(!backup.ha().unwrap().replicating());

    // An exchange, a queue and a binding from a client; a user, its permission, a
    // policy, a vhost and a parameter through the management API.
    let c = connect(&primary, "app").await.unwrap();
    let ch = c.create_channel().await.unwrap();
    ch.exchange_declare(
        "orders",
        ExchangeKind::Topic,
        ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .unwrap();
    ch.queue_declare("eu-orders", durable(), FieldTable::default())
        .await
        .unwrap();
    ch.queue_bind(
        "eu-orders",
        "orders",
        "eu.#",
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    c.close(200, "bye").await.unwrap();
    let api = Http::of(&primary);
    for (path, body) in [
        ("/api/users/newbie", r#"{"password":"newbie","tags":""}"#),
        (
            "/api/permissions/%2F/newbie",
            r#"{"configure":".*","write":".*","read":".*"}"#,
        ),
        (
            "/api/policies/%2F/eu-limit",
            r#"{"pattern":"^eu-","definition":{"max-length":1000},"apply-to":"queues"}"#,
        ),
        ("/api/vhosts/second", "{}"),
        (
            "/api/global-parameters/cluster_tags",
            r#"{"name":"cluster_tags","value":{"site":"test"}}"#,
        ),
    ] {
        let r = api.put(path, body).await;
        assert!(r.status == 201 || r.status == 204, "{path}: {r:?}");
    }

    // All of it on the passive member, exactly.
    same_definitions(&primary, &backup).await;
    let on_backup = definitions(&backup);
    let found = |pred: &dyn Fn(&Def) -> bool| on_backup.iter().any(pred);
    assert!(found(
        &|d| matches!(d, Def::Exchange { name, kind, .. } if name == "orders" && kind == "topic")
    ));
    assert!(found(
        &|d| matches!(d, Def::Queue { name, durable: true, .. } if name == "eu-orders")
    ));
    assert!(found(
        &|d| matches!(d, Def::Binding { source, destination, routing_key, .. }
            if source == "orders" && destination == "eu-orders" && routing_key == "eu.#")
    ));
    assert!(found(
        &|d| matches!(d, Def::User { name, .. } if name == "newbie")
    ));
    assert!(found(
        &|d| matches!(d, Def::Permission { user, .. } if user == "newbie")
    ));
    assert!(found(
        &|d| matches!(d, Def::Policy { name, .. } if name == "eu-limit")
    ));
    assert!(found(
        &|d| matches!(d, Def::Vhost { name } if name == "second")
    ));
    assert!(found(
        &|d| matches!(d, Def::GlobalParameter { name, .. } if name == "cluster_tags")
    ));
    assert!(backup.ha().unwrap().sink_counters().snapshots_applied >= 1);

    // A later change and a deletion reach it too.
    let r = api.delete("/api/vhosts/second").await;
    assert_eq!(r.status, 204, "{r:?}");
    same_definitions(&primary, &backup).await;

    // The active member goes away; a client that fails over, as the new user, finds
    // the exchange, the queue, the binding and the policy on the new active member.
    primary.shutdown().await;
    wait_silence(&backup).await;
    let c = connect_when_admitted(&backup, "newbie").await;
    assert_eq!(status(&backup).state, "active");
    let ch = confirming_channel(&c).await;
    ch.exchange_declare(
        "orders",
        ExchangeKind::Topic,
        ExchangeDeclareOptions {
            passive: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .expect("the exchange is there");
    let confirm = ch
        .basic_publish(
            "orders",
            "eu.paris",
            BasicPublishOptions::default(),
            b"order 1",
            BasicProperties::default(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    assert!(confirm.is_ack());
    let q = ch
        .queue_declare(
            "eu-orders",
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("the queue is there");
    assert_eq!(
        q.message_count(),
        1,
        "routed through the replicated binding"
    );
    let r = Http::of(&backup).get("/api/policies/%2F/eu-limit").await;
    assert_eq!(r.status, 200, "{r:?}");
    let r = Http::of(&backup).get("/api/queues/%2F/eu-orders").await;
    assert_eq!(r.body["policy"], "eu-limit", "{:?}", r.body);
    assert!(backup.ha().unwrap().replicating(), "now it streams");
    c.close(200, "bye").await.unwrap();
    backup.shutdown().await;
}

#[tokio::test]
async fn after_a_split_with_clients_on_both_sides_the_losers_messages_are_on_the_winner() {
    const N: usize = 300;
    let pair = Pair::new(None).await;
    let primary = pair.start(HaRole::Primary).await;
    let backup = pair.start(HaRole::Backup).await;
    wait_state(&primary, "active").await;
    wait_peer(&backup, "active").await;

    // A queue both know (replicated), before the split.
    let on_primary = connect(&primary, "app").await.unwrap();
    let ch = confirming_channel(&on_primary).await;
    ch.queue_declare("jobs", durable(), FieldTable::default())
        .await
        .unwrap();
    eventually(
        || {
            definitions(&backup)
                .iter()
                .any(|d| matches!(d, Def::Queue { name, .. } if name == "jobs"))
        },
        || "the queue never reached the passive member".into(),
    )
    .await;

    pair.split();
    // The primary keeps its clients: they publish, confirmed, to the shared queue and
    // to one declared during the split, and a consumer holds some unacknowledged.
    let mut confirmed = Vec::new();
    let ids: Vec<String> = (0..N).map(|i| format!("primary/jobs/{i}")).collect();
    confirmed.extend(publish_confirmed(&ch, "jobs", &ids).await);
    ch.queue_declare("split-only", durable(), FieldTable::default())
        .await
        .unwrap();
    let ids: Vec<String> = (0..N / 3).map(|i| format!("primary/split/{i}")).collect();
    confirmed.extend(publish_confirmed(&ch, "split-only", &ids).await);
    let consuming = on_primary.create_channel().await.unwrap();
    consuming
        .basic_qos(10, BasicQosOptions::default())
        .await
        .unwrap();
    let mut held = consuming
        .basic_consume(
            "jobs",
            "holder",
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    for _ in 0..10 {
        tokio::time::timeout(PATIENCE, held.next())
            .await
            .expect("a delivery")
            .unwrap()
            .unwrap();
    }

    // The backup takes over for a client of its own, which publishes too.
    wait_silence(&backup).await;
    let on_backup = connect_when_admitted(&backup, "app").await;
    assert_eq!(status(&primary).state, "active");
    assert_eq!(status(&backup).state, "active");
    let bch = confirming_channel(&on_backup).await;
    let ids: Vec<String> = (0..N).map(|i| format!("backup/jobs/{i}")).collect();
    confirmed.extend(publish_confirmed(&bch, "jobs", &ids).await);
    assert_eq!(confirmed.len(), N * 2 + N / 3, "all confirmed");

    // The heal: the backup's epoch is newer; the primary steps down and hands over.
    pair.heal();
    wait_state(&primary, "passive").await;
    assert_eq!(status(&backup).state, "active");
    eventually(
        || {
            queue_depth(&primary, "jobs") == 0
                && queue_depth(&primary, "split-only") == 0
                && queue_depth(&backup, "jobs") >= (N * 2) as u64
                && queue_depth(&backup, "split-only") >= (N / 3) as u64
        },
        || {
            format!(
                "primary jobs {} split-only {}; backup jobs {} split-only {}",
                queue_depth(&primary, "jobs"),
                queue_depth(&primary, "split-only"),
                queue_depth(&backup, "jobs"),
                queue_depth(&backup, "split-only")
            )
        },
    )
    .await;
    // The loser then takes the winner's definitions (and has kept what it had: the
    // drain declared it on the winner).
    same_definitions(&primary, &backup).await;
    assert!(
        definitions(&primary)
            .iter()
            .any(|d| matches!(d, Def::Queue { name, .. } if name == "split-only"))
    );

    let mut seen = HashMap::new();
    take_all(&backup, "jobs", &mut seen).await;
    take_all(&backup, "split-only", &mut seen).await;
    let lost: Vec<&String> = confirmed
        .iter()
        .filter(|id| !seen.contains_key(*id))
        .collect();
    let duplicates: u32 = seen.values().map(|n| n - 1).sum();
    println!(
        "{} confirmed, {} distinct on the winner, {} lost, {duplicates} duplicates",
        confirmed.len(),
        seen.len(),
        lost.len()
    );
    assert!(
        lost.is_empty(),
        "{} confirmed messages lost: {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );
    drop(held);
    backup.shutdown().await;
    primary.shutdown().await;
}

/// An arbiter on `etcd` with a short lease.
fn arbiter_on(etcd: &EtcdServer, key: &str) -> ArbiterConfig {
    ArbiterConfig {
        endpoints: vec![etcd.endpoint()],
        key: Some(key.into()),
        ttl: Duration::from_secs(2),
    }
}

/// Samples both members' states every few milliseconds until stopped, counting the
/// samples and the moments both were active.
struct Sampler {
    samples: Arc<AtomicU64>,
    both_active: Arc<AtomicU64>,
    primary_live: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Sampler {
    fn start(primary: Arc<Ha>, backup: Arc<Ha>) -> Sampler {
        let samples = Arc::new(AtomicU64::new(0));
        let both_active = Arc::new(AtomicU64::new(0));
        let primary_live = Arc::new(AtomicBool::new(true));
        let stop = Arc::new(AtomicBool::new(false));
        let (n, both, live, halt) = (
            samples.clone(),
            both_active.clone(),
            primary_live.clone(),
            stop.clone(),
        );
        let task = tokio::spawn(async move {
            while !halt.load(Ordering::SeqCst) {
                let p = live.load(Ordering::SeqCst) && primary.status().state == "active";
                if p && backup.status().state == "active" {
                    both.fetch_add(1, Ordering::SeqCst);
                }
                n.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        });
        Sampler {
            samples,
            both_active,
            primary_live,
            stop,
            task,
        }
    }

    fn both_active(&self) -> u64 {
        self.both_active.load(Ordering::SeqCst)
    }

    async fn finish(self) -> (u64, u64) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.task.await;
        (
            self.samples.load(Ordering::SeqCst),
            self.both_active.load(Ordering::SeqCst),
        )
    }
}

#[tokio::test]
async fn with_an_arbiter_a_split_with_clients_on_both_sides_never_makes_two_actives() {
    let Some(mut etcd) = EtcdServer::start("with_an_arbiter_a_split_never_makes_two_actives").await
    else {
        return;
    };
    let pair = Pair::new(Some(arbiter_on(&etcd, "/fedamq/test/split/active"))).await;
    let primary = pair.start(HaRole::Primary).await;
    let backup = pair.start(HaRole::Backup).await;
    let sampler = Sampler::start(primary.ha().unwrap().clone(), backup.ha().unwrap().clone());
    let s = wait_state(&primary, "active").await;
    let token = s
        .fencing_token
        .expect("the active member shows its lease's token");
    wait_state(&backup, "passive").await;
    wait_peer(&backup, "active").await;
    assert_eq!(status(&backup).fencing_token, None);
    let r = Http::of(&primary).get("/api/ha").await;
    assert_eq!(r.body["fencing_token"], token, "{:?}", r.body);
    let text = fedamqctl_ha_status(&primary).await;
    assert!(
        text.lines()
            .any(|l| l.contains("Arbiter token") && l.contains(&token.to_string())),
        "{text}"
    );
    let addr = primary.prometheus_addr().unwrap();
    let metrics = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(&format!("fedamq_ha_fencing_token {token}")),
        "{metrics}"
    );

    // A client on the primary publishes through the split.
    let on_primary = connect(&primary, "app").await.unwrap();
    let ch = confirming_channel(&on_primary).await;
    ch.queue_declare("work", durable(), FieldTable::default())
        .await
        .unwrap();
    pair.split();
    wait_silence(&backup).await;
    // Clients keep asking the backup, for several lease lifetimes: it never takes
    // over while the primary's lease lives, and the primary keeps serving.
    let mut refused = 0;
    let mut round = 0;
    let until = tokio::time::Instant::now() + Duration::from_secs(7);
    while tokio::time::Instant::now() < until {
        match connect(&backup, "app").await {
            Ok(_) => panic!("the backup admitted a client: {:?}", status(&backup)),
            Err(e) => {
                assert_eq!(reply_code(&e), Some(320), "{e}");
                refused += 1;
            }
        }
        let ids = vec![format!("split/{round}")];
        round += 1;
        assert_eq!(publish_confirmed(&ch, "work", &ids).await, ids);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(refused > 10);
    assert_eq!(status(&primary).state, "active");
    assert_eq!(status(&backup).state, "passive");
    assert_eq!(status(&primary).fencing_token, Some(token));
    pair.heal();
    wait_peer(&backup, "active").await;
    assert_eq!(sampler.both_active(), 0);

    // The primary goes away: its lease is given back, and the backup, asked by a
    // client, takes it (a larger token) and becomes active.
    sampler.primary_live.store(false, Ordering::SeqCst);
    drop(on_primary);
    primary.shutdown().await;
    let c = connect_when_admitted(&backup, "app").await;
    let s = status(&backup);
    assert_eq!(s.state, "active");
    assert!(s.fencing_token.is_some_and(|t| t > token), "{s:?}");

    // etcd goes away: the active member cannot renew its lease and steps down.
    let mut events = c.events_listener();
    etcd.stop();
    let s = wait_state(&backup, "passive").await;
    assert!(s.reason.contains("lease"), "{}", s.reason);
    assert_eq!(s.fencing_token, None);
    let err = support::broker::closed_by_broker(&mut events).await;
    assert_eq!(reply_code(&err), Some(320), "{err}");
    let (samples, both) = sampler.finish().await;
    println!("{samples} samples of both states, {both} with both active");
    assert!(samples > 100);
    assert_eq!(both, 0, "two actives at once");
    backup.shutdown().await;
}

#[tokio::test]
async fn with_an_arbiter_an_active_member_cut_from_etcd_steps_down() {
    let Some(etcd) =
        EtcdServer::start("with_an_arbiter_an_active_member_cut_from_etcd_steps_down").await
    else {
        return;
    };
    // The primary reaches etcd through a proxy the test cuts; the backup directly.
    let to_etcd = FaultProxy::start(etcd.client_addr()).await;
    let mut through_proxy = arbiter_on(&etcd, "/fedamq/test/cut/active");
    through_proxy.endpoints = vec![format!("http://{}", to_etcd.addr())];
    let pair = Pair::new(Some(through_proxy)).await;
    let primary = pair.start(HaRole::Primary).await;
    let s = wait_state(&primary, "active").await;
    let token = s.fencing_token.unwrap();
    let c = connect(&primary, "app").await.unwrap();
    let mut events = c.events_listener();

    to_etcd.set_refuse(true);
    to_etcd.cut();
    let s = wait_state(&primary, "passive").await;
    assert!(s.reason.contains("lease"), "{}", s.reason);
    let err = support::broker::closed_by_broker(&mut events).await;
    assert_eq!(reply_code(&err), Some(320), "{err}");
    assert_refused_for_a_while(&primary).await;
    assert_eq!(status(&primary).fencing_token, None);
    assert!(token > 0);
    primary.shutdown().await;
}

/// Clients are refused (the member is not active).
async fn assert_refused_for_a_while(b: &BrokerHandle) {
    for _ in 0..3 {
        let Err(e) = connect(b, "app").await else {
            panic!("admitted: {:?}", status(b));
        };
        assert_eq!(reply_code(&e), Some(320), "{e}");
        tokio::time::sleep(TIMEOUT).await;
    }
}
