//! The arbiter (src/arbiter/) against a real etcd (Debian's `etcd-server`; a private one
//! per test, tests/support/etcd.rs): one holder at a time, fencing tokens that grow, and
//! a holder that learns it lost the lease before anyone else can take the key. Skipped
//! with a message when etcd is not installed, failed instead under
//! `FEDAMQ_TEST_REQUIRE_ETCD` (CI sets it).

mod support;

use std::time::Duration;

use fedamq::arbiter::{ArbiterError, EtcdArbiter, LostReason};
use support::etcd::EtcdServer;
use support::fault_proxy::FaultProxy;
use tokio::time::{Instant, timeout};

const KEY: &str = "/fedamq/ha/test/active";
/// Short leases keep the tests short (etcd grants at least about 2 s).
const TTL: Duration = Duration::from_secs(2);
/// Far longer than anything below should take; only a hung test reaches it.
const PATIENCE: Duration = Duration::from_secs(20);

fn arbiter(endpoints: Vec<String>) -> EtcdArbiter {
    EtcdArbiter::new(endpoints, KEY.into(), TTL).expect("arbiter settings")
}

/// An endpoint where nothing listens.
fn dead_endpoint() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    format!("127.0.0.1:{}", l.local_addr().unwrap().port())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_holder_at_a_time_and_the_others_are_told_who() {
    let Some(etcd) = EtcdServer::start("one_holder_at_a_time").await else {
        return;
    };
    // The first endpoint is down: every call goes on to the second.
    let a = arbiter(vec![dead_endpoint(), etcd.endpoint()]);
    let b = arbiter(vec![etcd.endpoint()]);

    let lease = a.acquire("broker-a").await.expect("a takes the free key");
    assert!(lease.token() > 0);
    assert!(!lease.is_lost());
    assert_eq!(lease.holder(), "broker-a");

    let refused = b.acquire("broker-b").await.unwrap_err();
    assert_eq!(
        refused,
        ArbiterError::Held {
            holder: "broker-a".into(),
            token: lease.token()
        }
    );
    // The same name does not get it twice either (a restarted broker waits).
    assert!(matches!(
        a.acquire("broker-a").await,
        Err(ArbiterError::Held { .. })
    ));
    let holder = b.holder().await.unwrap().expect("held");
    assert_eq!(
        (holder.name.as_str(), holder.token, holder.lease),
        ("broker-a", lease.token(), lease.id())
    );
    // Held across several renewals.
    tokio::time::sleep(TTL * 2).await;
    assert_eq!(lease.lost_reason(), None);
    assert!(matches!(
        b.acquire("broker-b").await,
        Err(ArbiterError::Held { .. })
    ));
}

/// Contenders asking at the same moment: exactly one gets the key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_contenders_one_wins() {
    let Some(etcd) = EtcdServer::start("racing_contenders_one_wins").await else {
        return;
    };
    let mut racers = tokio::task::JoinSet::new();
    for i in 0..8 {
        let a = arbiter(vec![etcd.endpoint()]);
        racers.spawn(async move { (i, a.acquire(&format!("broker-{i}")).await) });
    }
    let (mut won, mut held) = (Vec::new(), Vec::new());
    while let Some(r) = racers.join_next().await {
        match r.unwrap() {
            (i, Ok(lease)) => won.push((i, lease)),
            (_, Err(ArbiterError::Held { holder, token })) => held.push((holder, token)),
            (i, Err(e)) => panic!("broker-{i}: {e}"),
        }
    }
    assert_eq!(won.len(), 1, "winners: {won:?}");
    let (i, lease) = &won[0];
    // Every loser was told the winner (none saw the key vanish).
    for (holder, token) in &held {
        assert_eq!(
            (holder.as_str(), *token),
            (format!("broker-{i}").as_str(), lease.token())
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_released_key_goes_to_the_next_with_a_larger_token() {
    let Some(etcd) = EtcdServer::start("a_released_key_goes_to_the_next").await else {
        return;
    };
    let a = arbiter(vec![etcd.endpoint()]);
    let b = arbiter(vec![etcd.endpoint()]);

    let first = a.acquire("broker-a").await.unwrap();
    let watch = first.watch();
    let first_token = first.token();
    first.release().await.expect("revoked");
    assert_eq!(watch.lost_reason(), Some(LostReason::Released));
    assert_eq!(
        b.holder().await.unwrap(),
        None,
        "the release deleted the key"
    );

    let second = b
        .acquire("broker-b")
        .await
        .expect("b takes the released key");
    assert!(
        second.token() > first_token,
        "token {} after {first_token}",
        second.token()
    );

    // Dropping a lease frees the key too (revoked in the background).
    drop(second);
    let until = Instant::now() + PATIENCE;
    while b.holder().await.unwrap().is_some() {
        assert!(
            Instant::now() < until,
            "the dropped lease still holds the key"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let third = a.acquire("broker-a").await.unwrap();
    assert!(third.token() > first_token);
}

/// The holder's link to etcd stalls (bytes stop, sockets stay open): its renewals
/// stop arriving. It must count the lease lost before etcd gives the key to a
/// contender that keeps trying.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_renewals_lose_the_lease_before_the_key_can_be_taken() {
    let Some(etcd) = EtcdServer::start("stalled_renewals_lose_the_lease").await else {
        return;
    };
    let proxy = FaultProxy::start(etcd.client_addr()).await;
    let a = arbiter(vec![format!("http://{}", proxy.addr())]);
    let b = arbiter(vec![etcd.endpoint()]);

    let lease = a.acquire("broker-a").await.unwrap();
    // Let a renewal or two through first.
    tokio::time::sleep(TTL).await;
    assert!(!lease.is_lost());
    proxy.set_stall(true);
    let stalled = Instant::now();

    let watch = lease.watch();
    let lost = tokio::spawn(async move {
        let reason = watch.lost().await;
        (reason, Instant::now())
    });
    let taken = timeout(PATIENCE, async {
        loop {
            match b.acquire("broker-b").await {
                Ok(l) => return (l, Instant::now()),
                Err(ArbiterError::Held { holder, .. }) => assert_eq!(holder, "broker-a"),
                Err(e) => panic!("b: {e}"),
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("etcd expires the stalled holder's lease");
    let (reason, lost_at) = timeout(PATIENCE, lost).await.unwrap().unwrap();
    let (b_lease, taken_at) = taken;
    eprintln!(
        "stalled at 0; holder lost the lease at {:?}; the contender took the key at {:?}",
        lost_at - stalled,
        taken_at - stalled
    );
    assert_eq!(reason, LostReason::Expired);
    assert!(
        lost_at < taken_at,
        "the holder believed it held the key until {:?}, after the contender took it at {:?}",
        lost_at - stalled,
        taken_at - stalled
    );
    assert!(lease.is_lost());
    assert!(b_lease.token() > lease.token());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_stopped_loses_the_lease() {
    let Some(mut etcd) = EtcdServer::start("etcd_stopped_loses_the_lease").await else {
        return;
    };
    let a = arbiter(vec![etcd.endpoint()]);
    let lease = a.acquire("broker-a").await.unwrap();
    let deadline = lease.deadline();
    etcd.stop();
    let reason = timeout(PATIENCE, lease.lost())
        .await
        .expect("lost() fires once etcd is gone");
    assert_eq!(reason, LostReason::Expired);
    assert!(Instant::now() >= deadline);
    assert!(lease.is_lost());
}

/// etcd ends the lease (an operator revokes it): the holder stops at the next renewal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_lease_is_lost() {
    let Some(etcd) = EtcdServer::start("a_revoked_lease_is_lost").await else {
        return;
    };
    let a = arbiter(vec![etcd.endpoint()]);
    let other = arbiter(vec![etcd.endpoint()]);
    let lease = a.acquire("broker-a").await.unwrap();
    other.client().revoke(lease.id()).await.unwrap();
    let reason = timeout(PATIENCE, lease.lost()).await.unwrap();
    assert_eq!(reason, LostReason::Revoked);
}

/// The key is deleted behind the holder's back (its lease lives on): the holder stops
/// at its next renewal rather than share the key with the next contender.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_key_is_lost() {
    let Some(etcd) = EtcdServer::start("a_deleted_key_is_lost").await else {
        return;
    };
    let a = arbiter(vec![etcd.endpoint()]);
    let other = arbiter(vec![etcd.endpoint()]);
    let lease = a.acquire("broker-a").await.unwrap();
    other.client().delete(KEY.as_bytes()).await.unwrap();
    let reason = timeout(PATIENCE, lease.lost()).await.unwrap();
    assert_eq!(reason, LostReason::KeyTaken);
}
