//! Fault tests of the HA pair (issue 13) with real `fedamq` processes, in the spirit of
//! Jepsen: `kill -9` of the active member, SIGSTOP past the timeout then SIGCONT, a split
//! between the members with no clients, a split with clients on both sides then the heal
//! (and the same with an etcd arbiter: never two actives), restarts in either order and
//! twice in a row, and wall-clock jumps under libfaketime. Each uses tests/support/ha_pair.rs: the two
//! processes, fault proxies between them and in front of each for clients, a sampler of
//! both members' `/api/ha`, and a checker (lapin, publishing with confirms and failing
//! over between the two addresses) that counts confirmed messages lost, duplicates and
//! the time with no active member.
//!
//! The timeout is 1 s. Waits poll with deadlines far above what the rules need (a loaded
//! CI machine runs these beside hundreds of other tests); the one timed assertion, the
//! failover bound, is a liveness check with a wide margin, and the measured figure is
//! printed (`cargo test --test ha_faults -- --nocapture`).

mod support;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lapin::{Connection, ConnectionProperties};
use support::broker::reply_code;
use support::etcd::EtcdServer;
use support::ha_checker::Checker;
use support::ha_pair::{HaPair, PairOptions, Role, Sampler, faketime_available};
use tokio::time::Instant;

const PATIENCE: Duration = Duration::from_secs(60);

fn options() -> PairOptions {
    PairOptions::default()
}

/// `kill -9` of the active primary while the lapin checker publishes with confirms and
/// consumes: the clients move to the backup, which takes over (a client asked after the
/// primary was silent for longer than the timeout). Measured: kill to the backup saying
/// active, and kill to the first message the backup confirms; the issue asks for
/// timeout + 1 s, asserted here with a margin for a loaded machine. The queue the
/// clients use was replicated to the backup before the kill (definitions only). No
/// confirmed message is lost (the consumer had each before the kill, or it went to the
/// backup).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_the_active_moves_clients_to_the_backup() {
    let mut pair = HaPair::started(options()).await;
    let checker = Checker::start(&pair, true);
    checker
        .wait_for("200 confirms", PATIENCE, |c| c.confirmed() >= 200)
        .await;
    // Definitions are replicated to the passive member (messages are not): the
    // clients will find their queue there.
    let deadline = Instant::now() + PATIENCE;
    while pair.queued(Role::Backup).await != Some(0) {
        assert!(
            Instant::now() < deadline,
            "the queue never reached the backup"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let sampler = Sampler::start(&pair);
    tokio::time::sleep(Duration::from_millis(300)).await;

    let killed = Instant::now();
    pair.kill9(Role::Primary);
    let (_, backup) = pair.wait_states(None, Some("active"), PATIENCE).await;
    let to_active = killed.elapsed();
    checker
        .wait_for("a confirm from the backup", PATIENCE, |c| {
            c.first_confirm_from(Role::Backup, killed).is_some()
        })
        .await;
    let to_confirm = checker.first_confirm_from(Role::Backup, killed).unwrap() - killed;
    let before = checker.confirmed();
    checker
        .wait_for("200 more confirms", PATIENCE, |c| {
            c.confirmed() >= before + 200
        })
        .await;
    let samples = sampler.finish().await;
    let confirms: Vec<_> = (1..=checker.published())
        .filter_map(|id| checker.confirm_of(id).map(|c| (id, c)))
        .collect();
    let report = checker.finish(&pair).await;
    // Where each lost message was confirmed, relative to the kill (negative: before).
    let lost: Vec<_> = report
        .lost
        .iter()
        .map(|id| {
            let (role, at) = confirms.iter().find(|(i, _)| i == id).unwrap().1;
            let ms = if at >= killed {
                (at - killed).as_millis() as i64
            } else {
                -((killed - at).as_millis() as i64)
            };
            (*id, role, ms)
        })
        .collect();
    println!(
        "kill -9 failover (timeout {:?}): backup active after {to_active:?}, first confirm \
         by the backup after {to_confirm:?}; longest without an active member (sampled) \
         {:?}; lost (id, by, ms from the kill): {lost:?}; {report:?}",
        pair.timeout, samples.longest_without_active
    );
    let backup = backup.unwrap();
    assert!(backup.reason.contains("client"), "{backup:?}");
    assert_eq!(samples.two_actives, 0, "{:?}", samples.trace);
    // Messages are kept in memory and not replicated (issue 13 replicates definitions
    // only), and a confirm goes out when the message is queued: one confirmed in the
    // last moment before the kill, whose delivery to the consumer had not been written
    // yet, dies with the process. That window is all that may be lost: the last
    // message(s) the primary confirmed, confirmed within a second of the kill.
    let last_on_primary: Vec<u64> = confirms
        .iter()
        .filter(|(_, (r, _))| *r == Role::Primary)
        .map(|(id, _)| *id)
        .rev()
        .take(3)
        .collect();
    for (id, role, ms) in &lost {
        assert!(
            *role == Role::Primary && *ms > -1000 && last_on_primary.contains(id),
            "lost {id}, confirmed by the {} {ms} ms from the kill, not in the last moment \
             before it (last on the primary: {last_on_primary:?})\n{report:?}",
            role.name()
        );
    }
    assert!(report.unexpected.is_empty(), "{report:?}");
    // Liveness, not performance: the rule gives timeout + 1 s; the bound leaves room
    // for a machine running hundreds of other tests.
    assert!(
        to_confirm < pair.timeout + Duration::from_secs(10),
        "failover took {to_confirm:?}\n{}",
        pair.logs()
    );
}

/// SIGSTOP of the active primary for three timeouts: the publisher's confirm does not
/// come, it moves to the backup, which takes over; SIGCONT: the old active hears an
/// active peer with a newer epoch and steps down (no two actives once it has, checked
/// by sampling), and the messages confirmed on it before the pause reach the backup.
/// Nothing confirmed is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigstop_of_the_active_then_sigcont_steps_it_down() {
    let mut pair = HaPair::started(options()).await;
    let checker = Checker::start(&pair, false);
    checker
        .wait_for("100 confirms", PATIENCE, |c| c.confirmed() >= 100)
        .await;
    let sampler = Sampler::start(&pair);

    let paused = Instant::now();
    pair.primary.pause();
    let (_, backup) = pair.wait_states(None, Some("active"), PATIENCE).await;
    let to_active = paused.elapsed();
    let backup = backup.unwrap();
    assert!(backup.reason.contains("client"), "{backup:?}");
    checker
        .wait_for("a confirm from the backup", PATIENCE, |c| {
            c.first_confirm_from(Role::Backup, paused).is_some()
        })
        .await;
    let to_confirm = checker.first_confirm_from(Role::Backup, paused).unwrap() - paused;
    let stop_for = pair.timeout * 3;
    tokio::time::sleep(stop_for.saturating_sub(paused.elapsed())).await;

    pair.primary.resume();
    let (primary, _) = pair
        .wait_states(Some("passive"), Some("active"), PATIENCE)
        .await;
    let stepped_down = sampler.elapsed();
    let primary = primary.unwrap();
    assert!(primary.epoch < backup.epoch, "{primary:?} {backup:?}");
    // Let it settle for a few timeouts: the one active member stays so.
    tokio::time::sleep(pair.timeout * 3).await;
    let before = checker.confirmed();
    checker
        .wait_for("more confirms", PATIENCE, |c| c.confirmed() >= before + 50)
        .await;
    let samples = sampler.finish().await;
    // The step-down hands the primary's queued messages to the backup.
    pair.wait_queue_empty(Role::Primary, PATIENCE).await;
    let report = checker.finish(&pair).await;
    println!(
        "SIGSTOP failover (timeout {:?}): backup active after {to_active:?}, first confirm \
         by the backup after {to_confirm:?}; sampled: longest without an active member {:?}, \
         samples with two actives {}; {report:?}",
        pair.timeout, samples.longest_without_active, samples.two_actives
    );
    assert_eq!(
        samples.two_actives_after(stepped_down),
        0,
        "{:?}",
        samples.trace
    );
    let (p, b) = pair.states().await;
    assert_eq!(p.map(|v| v.state).as_deref(), Some("passive"));
    assert_eq!(b.map(|v| v.state).as_deref(), Some("active"));
    assert!(report.lost.is_empty(), "lost {:?}\n{report:?}", report.lost);
    assert!(report.unexpected.is_empty(), "{report:?}");
    assert!(report.duplicates.is_empty(), "{report:?}");
    assert_eq!(report.received_at.get("primary"), None, "{report:?}");
}

/// The link between the members cut for five timeouts with no client anywhere: the
/// passive backup never takes over (Binary Star: only a client's request after the
/// silence may), so there is never a second active member, and nothing changes when the
/// link comes back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_split_with_no_clients_makes_no_takeover() {
    let pair = HaPair::started(options()).await;
    let (p0, b0) = pair.states().await;
    let (p0, b0) = (p0.unwrap(), b0.unwrap());
    let sampler = Sampler::start(&pair);
    pair.split();
    tokio::time::sleep(pair.timeout * 5).await;
    let (p1, b1) = pair.states().await;
    // The split was real: the backup heard nothing for longer than the timeout.
    let silent = pair
        .backup
        .http()
        .unwrap()
        .call("GET", "/api/ha", None)
        .await;
    let heard_ms = silent.body["last_peer_heartbeat_ms"].as_u64().unwrap();
    assert!(
        heard_ms > pair.timeout.as_millis() as u64,
        "{:?}",
        silent.body
    );
    pair.heal();
    tokio::time::sleep(pair.timeout * 3).await;
    let (p2, b2) = pair.states().await;
    let samples = sampler.finish().await;
    for (p, b) in [(p1, b1), (p2, b2)] {
        let (p, b) = (p.unwrap(), b.unwrap());
        assert_eq!((p.state.as_str(), b.state.as_str()), ("active", "passive"));
        assert_eq!((p.epoch, p.transitions), (p0.epoch, p0.transitions));
        assert_eq!((b.epoch, b.transitions), (b0.epoch, b0.transitions));
    }
    assert_eq!(samples.two_actives, 0, "{:?}", samples.trace);
    samples.assert_all("active", "passive");
}

/// A split between the members with a publisher on each side: the backup takes over
/// when its client asks after the silence, so both are active while the split lasts
/// and both confirm messages. On the heal the rule picks one: the newer activation
/// epoch (the backup's, raised above the primary's when it took over). The primary
/// steps down, closes its clients (its publisher moves to the backup) and hands its
/// queued messages to the backup: its queue ends empty, and no confirmed message is
/// lost or duplicated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_split_with_clients_on_both_sides_heals_to_the_newer_epoch() {
    let pair = HaPair::started(options()).await;
    let mut checker = Checker::start(&pair, false);
    checker
        .wait_for("50 confirms", PATIENCE, |c| c.confirmed() >= 50)
        .await;
    pair.split();
    tokio::time::sleep(pair.timeout * 2).await;
    checker.add_publisher(&pair, &[Role::Backup]);
    let (p, b) = pair
        .wait_states(Some("active"), Some("active"), PATIENCE)
        .await;
    let (p, b) = (p.unwrap(), b.unwrap());
    assert!(b.epoch > p.epoch, "{p:?} {b:?}");
    let (on_primary, on_backup) = (
        checker.confirmed_by(Role::Primary),
        checker.confirmed_by(Role::Backup),
    );
    checker
        .wait_for("confirms on both sides of the split", PATIENCE, |c| {
            c.confirmed_by(Role::Primary) >= on_primary + 50
                && c.confirmed_by(Role::Backup) >= on_backup + 50
        })
        .await;
    let held = pair.queued(Role::Primary).await.unwrap();
    assert!(held > 0, "the primary holds messages before the heal");

    let sampler = Sampler::start(&pair);
    pair.heal();
    pair.wait_states(Some("passive"), Some("active"), PATIENCE)
        .await;
    let healed = sampler.elapsed();
    pair.wait_queue_empty(Role::Primary, PATIENCE).await;
    let before = checker.confirmed_by(Role::Backup);
    checker
        .wait_for("confirms by the winner after the heal", PATIENCE, |c| {
            c.confirmed_by(Role::Backup) >= before + 50
        })
        .await;
    tokio::time::sleep(pair.timeout * 2).await;
    let samples = sampler.finish().await;
    let report = checker.finish(&pair).await;
    println!("split with clients on both sides: primary held {held} before the heal; {report:?}");
    assert_eq!(samples.two_actives_after(healed), 0, "{:?}", samples.trace);
    let (p, b) = pair.states().await;
    assert_eq!(
        (p.map(|v| v.state).as_deref(), b.map(|v| v.state).as_deref()),
        (Some("passive"), Some("active"))
    );
    assert!(report.lost.is_empty(), "lost {:?}\n{report:?}", report.lost);
    assert!(report.unexpected.is_empty(), "{report:?}");
    assert!(report.duplicates.is_empty(), "{report:?}");
    // The loser's messages reached the winner: the final drain found none on it.
    assert_eq!(report.received_at.get("primary"), None, "{report:?}");
}

/// The same split with clients on both sides, the pair using an etcd arbiter: the
/// backup's client asks after the silence, but activation also needs the etcd lease,
/// which the primary holds; so the backup stays passive and refuses clients, and there
/// is never a second active member, during the split or after the heal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_etcd_a_split_with_clients_never_makes_two_actives() {
    let Some(etcd) =
        EtcdServer::start("with_etcd_a_split_with_clients_never_makes_two_actives").await
    else {
        return;
    };
    let pair = HaPair::started(PairOptions {
        arbiter: Some(etcd.endpoint()),
        ..options()
    })
    .await;
    let mut checker = Checker::start(&pair, false);
    checker
        .wait_for("50 confirms", PATIENCE, |c| c.confirmed() >= 50)
        .await;
    let sampler = Sampler::start(&pair);
    pair.split();
    tokio::time::sleep(pair.timeout * 2).await;
    let (_, b0) = pair.states().await;
    let refused_before = b0.unwrap().refused_clients;
    checker.add_publisher(&pair, &[Role::Backup]);
    let on_primary = checker.confirmed_by(Role::Primary);
    tokio::time::sleep(pair.timeout * 5).await;
    let (_, b1) = pair.states().await;
    let b1 = b1.unwrap();
    assert!(
        b1.refused_clients > refused_before + 3,
        "the backup's clients kept asking: {b1:?}"
    );
    assert!(checker.confirmed_by(Role::Primary) > on_primary);
    pair.heal();
    tokio::time::sleep(pair.timeout * 3).await;
    let samples = sampler.finish().await;
    let report = checker.finish(&pair).await;
    println!("split with clients on both sides, with etcd: {b1:?}; {report:?}");
    assert_eq!(samples.two_actives, 0, "{:?}", samples.trace);
    samples.assert_all("active", "passive");
    assert_eq!(report.connections.get("backup"), None, "{report:?}");
    assert!(report.lost.is_empty(), "lost {:?}\n{report:?}", report.lost);
    assert!(report.duplicates.is_empty(), "{report:?}");
    drop(etcd);
}

/// Connects as `app` to a member through its client proxy, retrying for up to
/// PATIENCE (a passive member refuses until it takes over).
async fn client_gets_in(pair: &HaPair, role: Role) -> Connection {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let url = pair.client_url(role, "app", "app");
        if let Ok(c) = Connection::connect(&url, ConnectionProperties::default()).await {
            return c;
        }
        assert!(
            Instant::now() < deadline,
            "{} never admitted a client",
            role.name()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Restarts: the pair in either order, each member twice in a row, and the primary
/// after a failover. Each time one member is active, and the right one: the primary
/// unless the backup took over while it was gone, and a member that restarts to find
/// an active peer stays passive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarts_leave_one_active_the_right_one() {
    // Backup first, then the primary.
    let mut pair = HaPair::new(options()).await;
    pair.start(Role::Backup);
    pair.wait_states(None, Some("passive"), PATIENCE).await;
    pair.start(Role::Primary);
    pair.wait_states(Some("active"), Some("passive"), PATIENCE)
        .await;

    // Both down, then primary first, then the backup.
    pair.kill9(Role::Primary);
    pair.kill9(Role::Backup);
    pair.start(Role::Primary);
    pair.start(Role::Backup);
    pair.wait_states(Some("active"), Some("passive"), PATIENCE)
        .await;

    // The backup twice in a row: the primary stays active throughout.
    let (p0, _) = pair.states().await;
    for _ in 0..2 {
        pair.restart(Role::Backup);
        pair.wait_states(Some("active"), Some("passive"), PATIENCE)
            .await;
    }
    let (p1, _) = pair.states().await;
    assert_eq!(
        p0.as_ref().map(|v| (v.epoch, v.transitions)),
        p1.as_ref().map(|v| (v.epoch, v.transitions)),
        "the primary was disturbed by the backup's restarts"
    );

    // The primary twice in a row, no clients: the backup never takes over, and the
    // primary comes back active each time.
    for _ in 0..2 {
        pair.restart(Role::Primary);
        pair.wait_states(Some("active"), Some("passive"), PATIENCE)
            .await;
    }
    let (_, b) = pair.states().await;
    assert_eq!(b.as_ref().map(|v| v.epoch), Some(0), "{b:?}");

    // A failover, then the primary back twice: it finds the backup active and stays
    // passive.
    pair.kill9(Role::Primary);
    let c = client_gets_in(&pair, Role::Backup).await;
    pair.wait_states(None, Some("active"), PATIENCE).await;
    for _ in 0..2 {
        if pair.primary.is_running() {
            pair.kill9(Role::Primary);
        }
        pair.start(Role::Primary);
        pair.wait_states(Some("passive"), Some("active"), PATIENCE)
            .await;
    }
    // And it stays so: sampled for a few timeouts.
    let sampler = Sampler::start(&pair);
    tokio::time::sleep(pair.timeout * 3).await;
    let samples = sampler.finish().await;
    samples.assert_all("passive", "active");
    let (p, b) = pair.states().await;
    assert_eq!(
        (p.map(|v| v.state).as_deref(), b.map(|v| v.state).as_deref()),
        (Some("passive"), Some("active"))
    );
    let _ = tokio::time::timeout(Duration::from_secs(2), c.close(200, "bye")).await;
}

/// The wall clock as a process sees it, from `/api/connections` (a connection's
/// `connected_at` is wall-clock milliseconds): opens an administrator connection and
/// returns its `connected_at` minus the test's own wall clock, in seconds.
async fn wall_clock_offset(pair: &HaPair, role: Role) -> i64 {
    let url = pair.client_url(role, "guest", "guest");
    let conn = Connection::connect(&url, ConnectionProperties::default())
        .await
        .expect("an administrator gets in");
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let http = pair.member(role).http().unwrap();
    let reply = http.call("GET", "/api/connections", None).await;
    let newest = reply
        .body
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["user"] == "guest")
        .filter_map(|c| c["connected_at"].as_i64())
        .max()
        .expect("our connection is listed");
    let _ = tokio::time::timeout(Duration::from_secs(2), conn.close(200, "bye")).await;
    (newest - now_ms) / 1000
}

/// Both members under libfaketime, their wall clocks stepped while they run: the
/// passive backup's forward by 10 more minutes every 100 ms, the active primary's
/// backward the same (as NTP or `date -s` would: CLOCK_REALTIME moves, CLOCK_MONOTONIC
/// does not). Meanwhile ordinary clients keep asking the backup. Nothing changes: no
/// takeover, no step-down, no transition, the same epochs.
///
/// Why this can fail: the pair measures the peer's silence on `tokio::time::Instant`
/// (monotonic). Were it measured with `SystemTime`, the backup would see its peer
/// silent for ten minutes or more for most of each 100 ms (a state arrives every
/// timeout/2 = 500 ms), a client asking then would make it take over, and this test
/// would see the backup admit a client, turn active and the primary step down. That the
/// jumps really reach the processes is checked: a connection opened during them shows
/// `connected_at` hours off the test's own clock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wall_clock_jump_changes_nothing() {
    if !faketime_available() {
        eprintln!("skipped: libfaketime is not installed (Debian package faketime)");
        return;
    }
    let pair = HaPair::started(PairOptions {
        faketime: vec![Role::Primary, Role::Backup],
        ..options()
    })
    .await;
    assert!(wall_clock_offset(&pair, Role::Backup).await.abs() < 60);
    let (p0, b0) = pair.states().await;
    let (p0, b0) = (p0.unwrap(), b0.unwrap());
    let sampler = Sampler::start(&pair);

    let mut refused = 0;
    let jumping = Instant::now();
    let mut step = 0i64;
    // Five timeouts of jumps, and at least 20 refused clients.
    while jumping.elapsed() < pair.timeout * 5 || refused < 20 {
        assert!(jumping.elapsed() < PATIENCE, "only {refused} clients tried");
        step += 1;
        pair.backup
            .set_wall_clock(&format!("+{}m", 120 + 10 * step));
        pair.primary
            .set_wall_clock(&format!("-{}m", 120 + 10 * step));
        let url = pair.client_url(Role::Backup, "app", "app");
        match Connection::connect(&url, ConnectionProperties::default()).await {
            Ok(_) => panic!(
                "the passive backup admitted a client during a wall-clock jump\n{}",
                pair.logs()
            ),
            Err(e) => {
                assert_eq!(reply_code(&e), Some(320), "{e}");
                refused += 1;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The jumps reached both processes.
    let backup_offset = wall_clock_offset(&pair, Role::Backup).await;
    let primary_offset = wall_clock_offset(&pair, Role::Primary).await;
    assert!(
        backup_offset > 3600,
        "backup's clock is {backup_offset} s off"
    );
    assert!(
        primary_offset < -3600,
        "primary's clock is {primary_offset} s off"
    );
    // The active primary kept serving clients.
    let c = Connection::connect(
        &pair.client_url(Role::Primary, "app", "app"),
        ConnectionProperties::default(),
    )
    .await
    .expect("the active primary admits clients");
    let _ = tokio::time::timeout(Duration::from_secs(2), c.close(200, "bye")).await;

    // And back to the real time at once: a jump the other way.
    pair.backup.set_wall_clock("+0");
    pair.primary.set_wall_clock("+0");
    tokio::time::sleep(pair.timeout * 3).await;
    let samples = sampler.finish().await;
    let (p1, b1) = pair.states().await;
    let (p1, b1) = (p1.unwrap(), b1.unwrap());
    println!(
        "wall-clock jumps: {step} steps, {refused} clients refused by the backup; offsets \
         seen: backup {backup_offset} s, primary {primary_offset} s; {} samples",
        samples.count
    );
    assert_eq!(
        (p1.state.as_str(), b1.state.as_str()),
        ("active", "passive")
    );
    assert_eq!((p1.epoch, p1.transitions), (p0.epoch, p0.transitions));
    assert_eq!((b1.epoch, b1.transitions), (b0.epoch, b0.transitions));
    samples.assert_all("active", "passive");
}
