//! The task that keeps a held lease alive: it renews every ttl/3, moves the deadline
//! after each confirmed renewal, checks that the key is still the holder's, and marks
//! the lease lost when it is.
//!
//! A renewal counts from the moment it was *sent*: etcd restarts the TTL when it
//! receives the request, which is later, so the holder's deadline falls before etcd's
//! expiry by at least the margin. A renewal that fails in transit is retried soon (the
//! next endpoint first) until the deadline; an answer that the lease or key is gone
//! ends the lease at once.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::{Instant, sleep_until, timeout_at};

use super::client::EtcdClient;
use super::error::{ArbiterError, LostReason};
use super::liveness::LeaseState;

/// How long before etcd's expiry the holder gives up: a fifth of the TTL. It covers
/// the time from sending a renewal to etcd receiving it and the clocks' rate difference.
pub fn margin(ttl: Duration) -> Duration {
    ttl / 5
}

/// Renew this often: three chances per TTL, as etcd's own clients do.
pub fn interval(ttl: Duration) -> Duration {
    ttl / 3
}

/// Wait this long after a failed renewal before the next try.
fn retry_delay(ttl: Duration) -> Duration {
    (ttl / 20).max(Duration::from_millis(50))
}

/// What the task needs.
pub struct Renewal {
    pub client: EtcdClient,
    pub lease: i64,
    pub key: Vec<u8>,
    /// The key's create revision when acquired: it must stay the same.
    pub token: i64,
    /// The TTL etcd granted.
    pub ttl: Duration,
    pub state: Arc<watch::Sender<LeaseState>>,
}

/// Marks the lease lost (the first reason stays).
pub fn lose(state: &watch::Sender<LeaseState>, reason: LostReason) {
    state.send_if_modified(|s| {
        if s.lost.is_some() {
            return false;
        }
        s.lost = Some(reason);
        true
    });
}

/// Runs until the lease is lost (or the task is aborted: released, dropped).
pub async fn run(r: Renewal) {
    let key = String::from_utf8_lossy(&r.key).into_owned();
    let mut next = Instant::now() + interval(r.ttl);
    loop {
        let deadline = r.state.borrow().deadline;
        sleep_until(next.min(deadline)).await;
        if r.state.borrow().lost.is_some() {
            return;
        }
        if Instant::now() >= deadline {
            tracing::warn!(%key, lease = r.lease, "arbiter: lease lost: no renewal confirmed in time");
            lose(&r.state, LostReason::Expired);
            return;
        }
        let sent = Instant::now();
        let renewed = match timeout_at(deadline, r.client.keepalive(r.lease)).await {
            Err(_) => continue, // the deadline passed: lost at the top
            Ok(answer) => answer,
        };
        match renewed {
            Ok(Some(ttl)) => {
                r.state.send_if_modified(|s| {
                    let renewed_until = sent + ttl.saturating_sub(margin(ttl));
                    let later = renewed_until > s.deadline && s.lost.is_none();
                    if later {
                        s.deadline = renewed_until;
                    }
                    later
                });
                next = sent + interval(ttl);
                let deadline = r.state.borrow().deadline;
                if let Some(reason) = check_key(&r, deadline).await {
                    tracing::warn!(%key, lease = r.lease, "arbiter: lease lost: {reason}");
                    lose(&r.state, reason);
                    return;
                }
            }
            Ok(None) | Err(ArbiterError::Etcd { code: 5, .. }) => {
                tracing::warn!(%key, lease = r.lease, "arbiter: lease lost: etcd no longer has it");
                lose(&r.state, LostReason::Revoked);
                return;
            }
            Err(e) => {
                tracing::warn!(%key, lease = r.lease, "arbiter: lease renewal failed, retrying: {e}");
                next = Instant::now() + retry_delay(r.ttl);
            }
        }
    }
}

/// `Some(KeyTaken)` if the key is gone or is another lease's. A failed read says
/// nothing: the renewal decides.
async fn check_key(r: &Renewal, deadline: Instant) -> Option<LostReason> {
    match timeout_at(deadline, r.client.get(&r.key)).await {
        Ok(Ok(Some(kv))) if kv.create_revision == r.token && kv.lease == r.lease => None,
        Ok(Ok(_)) => Some(LostReason::KeyTaken),
        Ok(Err(_)) | Err(_) => None,
    }
}
