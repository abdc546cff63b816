//! The HA pair (issue 13): two in-process brokers, each reaching the other through a
//! fault proxy (so a test can split them, and restart one on a new port), with a short
//! timeout. Start-up, refusal of clients on the passive member, client-driven takeover
//! (and none without a client), the heal after a split with clients on both sides,
//! manual failback, restarts in either order, and the epoch on disk.
//!
//! Waits are bounded by PATIENCE to guard against hangs; no assertion is about time.

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fedamq::BrokerHandle;
use fedamq::config::HaRole;
use fedamq::ha::{Arbiter, HaHooks, HookFuture};
use fedamq::peering::Remote;
use support::broker::{closed_by_broker, reply_code};
use support::ha_inproc::{
    PATIENCE, Pair, TIMEOUT, connect, fedamqctl_ha_status, status, wait_peer, wait_state,
};
use support::management::Http;

/// An ordinary client is refused with 320 and a text naming the peer.
async fn assert_refused(b: &BrokerHandle) {
    let Err(err) = connect(b, "app").await else {
        panic!("an ordinary client is refused");
    };
    assert_eq!(reply_code(&err), Some(320), "{err}");
    let text = err.to_string();
    assert!(text.contains("HA pair"), "{text}");
    assert!(text.contains("connect to 127.0.0.1:"), "{text}");
}

#[tokio::test]
async fn primary_alone_becomes_active_backup_alone_stays_passive() {
    let pair = Pair::new(None).await;
    let primary = pair.start(HaRole::Primary).await;
    let s = wait_state(&primary, "active").await;
    assert_eq!(s.epoch, 1);
    assert!(s.reason.contains("no peer"), "{}", s.reason);
    let c = connect(&primary, "app").await.expect("clients get in");
    c.close(200, "bye").await.unwrap();
    primary.shutdown().await;

    // A backup alone: passive, and it stays so however many clients ask, because it
    // has never seen an active peer.
    let pair = Pair::new(None).await;
    let backup = pair.start(HaRole::Backup).await;
    wait_state(&backup, "passive").await;
    for _ in 0..3 {
        assert_refused(&backup).await;
        tokio::time::sleep(TIMEOUT).await;
    }
    let s = status(&backup);
    assert_eq!(s.state, "passive");
    assert_eq!(s.epoch, 0);
    assert!(s.refused_clients >= 3);
    // Peering and administrator logins always get in.
    for who in ["peer", "guest"] {
        let c = connect(&backup, who).await.expect("admitted");
        c.close(200, "bye").await.unwrap();
    }
    backup.shutdown().await;
}

#[tokio::test]
async fn pair_forms_and_the_passive_member_refuses_clients() {
    let pair = Pair::new(None).await;
    let primary = pair.start(HaRole::Primary).await;
    let backup = pair.start(HaRole::Backup).await;
    wait_state(&primary, "active").await;
    wait_state(&backup, "passive").await;
    wait_peer(&primary, "passive").await;
    assert_refused(&backup).await;
    connect(&primary, "app")
        .await
        .expect("the active member admits");
    // The status through the API, as fedamqctl reads it.
    let http = Http::of(&backup);
    let r = http.get("/api/ha").await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["state"], "passive");
    assert_eq!(r.body["role"], "backup");
    assert_eq!(r.body["peer"]["state"], "active");
    assert!(r.body["last_peer_heartbeat_ms"].is_u64());

    // fedamqctl ha status.
    let text = fedamqctl_ha_status(&backup).await;
    assert!(
        text.contains("passive") && text.contains("backup"),
        "{text}"
    );

    // The Prometheus gauges.
    let addr = primary.prometheus_addr().unwrap();
    let metrics = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("fedamq_ha_state{state=\"active\",role=\"primary\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("fedamq_ha_epoch 1"), "{metrics}");
    backup.shutdown().await;
    primary.shutdown().await;
}

#[tokio::test]
async fn takeover_needs_a_client_after_the_active_goes_silent() {
    let pair = Pair::new(None).await;
    let primary = pair.start(HaRole::Primary).await;
    let backup = pair.start(HaRole::Backup).await;
    wait_state(&primary, "active").await;
    wait_peer(&backup, "active").await;
    let primary_epoch = status(&primary).epoch;

    // A split with no clients: nobody takes over.
    pair.split();
    tokio::time::sleep(TIMEOUT * 4).await;
    assert_eq!(status(&backup).state, "passive");
    assert_eq!(status(&primary).state, "active");
    pair.heal();
    wait_peer(&backup, "active").await;

    // The active member stops; still no takeover until a client asks.
    primary.shutdown().await;
    tokio::time::sleep(TIMEOUT * 3).await;
    assert_eq!(status(&backup).state, "passive");
    let c = connect(&backup, "app")
        .await
        .expect("the client that asks makes the backup take over");
    let s = status(&backup);
    assert_eq!(s.state, "active");
    assert!(s.epoch > primary_epoch);
    c.close(200, "bye").await.unwrap();
    backup.shutdown().await;
}

/// Records what the pair tells its hooks (where replication plugs in).
#[derive(Default)]
struct Recorder(Mutex<Vec<String>>);

impl HaHooks for Recorder {
    fn activated(&self, epoch: u64, _: &Remote) {
        self.0.lock().unwrap().push(format!("activated {epoch}"));
    }
    fn became_passive(&self, _: &Remote) {
        self.0.lock().unwrap().push("passive".into());
    }
    fn step_down(&self, winner: &Remote) -> HookFuture {
        self.0
            .lock()
            .unwrap()
            .push(format!("step-down to {}", winner.port));
        Box::pin(async {})
    }
}

#[tokio::test]
async fn split_with_clients_on_both_sides_heals_to_the_newer_epoch() {
    let pair = Pair::new(None).await;
    let primary = pair.start(HaRole::Primary).await;
    let backup = pair.start(HaRole::Backup).await;
    let hooks = Arc::new(Recorder::default());
    primary.ha().unwrap().set_hooks(hooks.clone());
    wait_state(&primary, "active").await;
    wait_peer(&backup, "active").await;
    let on_primary = connect(&primary, "app").await.unwrap();
    let mut events = on_primary.events_listener();

    pair.split();
    // Wait for the backup to notice the silence, then a client makes it take over.
    tokio::time::timeout(PATIENCE, async {
        while status(&backup)
            .last_peer_heartbeat_ms
            .is_none_or(|ms| ms <= TIMEOUT.as_millis() as u64)
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap();
    let on_backup = connect(&backup, "app").await.expect("takeover");
    assert_eq!(status(&backup).state, "active");
    assert_eq!(status(&primary).state, "active");
    assert!(status(&backup).epoch > status(&primary).epoch);

    // The heal: the backup's epoch is newer, so the primary steps down and closes its
    // clients with a reason.
    pair.heal();
    let s = wait_state(&primary, "passive").await;
    assert!(s.reason.contains("peer is active"), "{}", s.reason);
    let err = closed_by_broker(&mut events).await;
    assert_eq!(reply_code(&err), Some(320), "{err}");
    assert!(err.to_string().contains("stepped down"), "{err}");
    assert_eq!(status(&backup).state, "active");
    assert!(on_backup.status().connected());
    assert_refused(&primary).await;
    // The hooks heard the activation (told when installed, or as it happened) and the
    // step-down, with the winner's address (the proxy to the backup), in that order.
    // They are told after the pair's own step-down (its drain) is done.
    let want = format!("step-down to {}", pair.to_backup.addr().port());
    tokio::time::timeout(PATIENCE, async {
        while !hooks.0.lock().unwrap().contains(&want) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("never told: {:?}", hooks.0.lock().unwrap()));
    let seen = hooks.0.lock().unwrap().clone();
    let activated = seen.iter().position(|e| e == "activated 1");
    let stepped = seen.iter().position(|e| *e == want);
    assert!(activated.is_some() && stepped.is_some(), "{seen:?}");
    assert!(activated < stepped, "{seen:?}");
    backup.shutdown().await;
    primary.shutdown().await;
}

#[tokio::test]
async fn failback_through_the_api() {
    let pair = Pair::new(None).await;
    let primary = pair.start(HaRole::Primary).await;
    let backup = pair.start(HaRole::Backup).await;
    wait_state(&primary, "active").await;
    wait_peer(&backup, "active").await;

    // Failback with nothing to fail back: refused.
    let r = Http::of(&primary).post("/api/ha/failback", "{}").await;
    assert_eq!(r.status, 409, "{:?}", r.body);

    // The backup takes over after the primary goes away, and the primary comes back
    // passive (the backup is active).
    primary.shutdown().await;
    wait_state(&backup, "passive").await;
    tokio::time::sleep(TIMEOUT * 2).await;
    connect(&backup, "app").await.expect("takeover");
    let primary = pair.start(HaRole::Primary).await;
    wait_state(&primary, "passive").await;
    assert_eq!(status(&backup).state, "active");

    // An ordinary user may not fail back.
    let r = Http::of(&primary)
        .as_user(Some(("app", "app")))
        .post("/api/ha/failback", "{}")
        .await;
    assert_ne!(r.status, 200);
    let r = Http::of(&primary).post("/api/ha/failback", "{}").await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    wait_state(&primary, "active").await;
    wait_state(&backup, "passive").await;
    assert!(status(&primary).epoch > status(&backup).epoch);
    backup.shutdown().await;
    primary.shutdown().await;
}

#[tokio::test]
async fn restarts_in_either_order_give_the_right_active_and_keep_the_epoch() {
    let pair = Pair::new(None).await;
    // Backup first, then the primary: the primary serves.
    let backup = pair.start(HaRole::Backup).await;
    wait_state(&backup, "passive").await;
    let primary = pair.start(HaRole::Primary).await;
    wait_state(&primary, "active").await;
    wait_peer(&backup, "active").await;
    assert_eq!(status(&primary).epoch, 1);

    // The primary restarts twice in a row (no clients): it serves again each time,
    // with a new epoch, and the backup never does.
    let mut primary = primary;
    for epoch in [2, 3] {
        primary.shutdown().await;
        primary = pair.start(HaRole::Primary).await;
        let s = wait_state(&primary, "active").await;
        assert_eq!(s.epoch, epoch);
        assert_eq!(status(&backup).state, "passive");
    }
    let on_disk = std::fs::read_to_string(pair.epoch_file(HaRole::Primary)).unwrap();
    assert_eq!(on_disk.trim(), "3");

    // The backup restarts: it stands by again.
    backup.shutdown().await;
    let backup = pair.start(HaRole::Backup).await;
    wait_peer(&backup, "active").await;
    wait_state(&backup, "passive").await;
    assert_eq!(status(&primary).state, "active");

    // Both stop; the primary comes back first and serves.
    backup.shutdown().await;
    primary.shutdown().await;
    let primary = pair.start(HaRole::Primary).await;
    let backup = pair.start(HaRole::Backup).await;
    let s = wait_state(&primary, "active").await;
    assert_eq!(s.epoch, 4);
    wait_state(&backup, "passive").await;

    // The link goes down, then the primary; a client makes the backup take over while
    // the link is still down. The primary, back on a healed link, finds the backup
    // active and stands by: what the backup said while passive is not news to it.
    pair.split();
    tokio::time::sleep(TIMEOUT).await;
    primary.shutdown().await;
    tokio::time::sleep(TIMEOUT).await;
    let c = connect(&backup, "app").await.expect("takeover");
    let taken = status(&backup);
    assert_eq!(taken.state, "active");
    let primary = pair.start(HaRole::Primary).await;
    pair.heal();
    let s = wait_state(&primary, "passive").await;
    assert!(s.reason.contains("peer is active"), "{}", s.reason);
    tokio::time::sleep(TIMEOUT * 2).await;
    assert_eq!(status(&primary).state, "passive");
    assert_eq!(status(&backup).state, "active");
    assert!(c.status().connected());
    backup.shutdown().await;
    primary.shutdown().await;
}

/// An arbiter whose lease a test grants and takes away.
struct Lease(AtomicBool);

impl Arbiter for Lease {
    fn may_activate(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
    fn fencing_token(&self) -> Option<u64> {
        Some(7)
    }
}

#[tokio::test]
async fn an_arbiter_gates_activation_and_its_loss_steps_down() {
    let pair = Pair::new(None).await;
    let primary = pair.start(HaRole::Primary).await;
    let lease = Arc::new(Lease(AtomicBool::new(false)));
    let ha = primary.ha().unwrap();
    ha.set_arbiter(Some(lease.clone()));
    tokio::time::sleep(TIMEOUT * 3).await;
    assert_eq!(status(&primary).state, "pending", "no lease, no activation");
    lease.0.store(true, Ordering::SeqCst);
    let s = wait_state(&primary, "active").await;
    assert_eq!(s.fencing_token, Some(7));
    let c = connect(&primary, "app").await.unwrap();
    let mut events = c.events_listener();
    lease.0.store(false, Ordering::SeqCst);
    ha.lost_lease("test");
    wait_state(&primary, "passive").await;
    let err = closed_by_broker(&mut events).await;
    assert_eq!(reply_code(&err), Some(320), "{err}");
    primary.shutdown().await;
}
