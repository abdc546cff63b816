//! The etcd arbiter as the pair asks it (`[ha.arbiter]`): an [`Arbiter`] that says yes
//! only while this member holds a live lease on the pair's key, and a task that takes
//! and gives back the lease.
//!
//! The pair asks `may_activate` only when everything else says it may activate, under
//! its lock, and must get an answer at once; so an answer of no also records that the
//! member *wants* the lease and wakes the task, which tries to acquire it (the member
//! asks again on its next tick or client). The task keeps a held lease while the member
//! is active (a healthy active keeps it; nobody else can take the key while it lives)
//! or still wants it; otherwise (it stepped down, or wanted it and then saw an active
//! peer) it gives it back, so that it never blocks the member that should be active.
//! When a held lease is lost the member is told at once (`LostLease`: an active one
//! steps down); etcd frees the key only after the holder counts it lost.

use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::{Notify, watch};
use tokio::time::Instant;

use super::hooks::Arbiter;
use super::node::Node;
use crate::arbiter::{ArbiterError, EtcdArbiter, Lease, LeaseWatch};
use crate::protocol::generated::ha_machine::{Event, State};

/// The arbiter one pair member asks.
pub(super) struct LeaseArbiter {
    /// The lease held now: its liveness and fencing token.
    held: Mutex<Option<(LeaseWatch, i64)>>,
    /// When the member last asked and was told no (or yes): it wants the lease.
    wanted: Mutex<Option<Instant>>,
    wake: Notify,
}

impl Arbiter for LeaseArbiter {
    fn may_activate(&self) -> bool {
        *lock(&self.wanted) = Some(Instant::now());
        let live = lock(&self.held).as_ref().is_some_and(|(w, _)| !w.is_lost());
        if !live {
            self.wake.notify_one();
        }
        live
    }

    fn fencing_token(&self) -> Option<u64> {
        lock(&self.held)
            .as_ref()
            .filter(|(w, _)| !w.is_lost())
            .and_then(|(_, token)| u64::try_from(*token).ok())
    }
}

impl LeaseArbiter {
    pub(super) fn new() -> Arc<LeaseArbiter> {
        Arc::new(LeaseArbiter {
            held: Mutex::new(None),
            wanted: Mutex::new(None),
            wake: Notify::new(),
        })
    }

    /// Wanted within `within`.
    fn wanted(&self, within: Duration) -> bool {
        lock(&self.wanted).is_some_and(|t| t.elapsed() <= within)
    }

    fn hold(&self, lease: Option<&Lease>) {
        *lock(&self.held) = lease.map(|l| (l.watch(), l.token()));
    }
}

/// What the task does next.
enum Next {
    Lost(crate::arbiter::LostReason),
    Tick,
    Stop,
}

/// Takes the lease when the member wants it, keeps it while needed, reports its loss,
/// and gives it back when no longer needed or when the pair stops.
pub(super) async fn run(
    arbiter: Arc<LeaseArbiter>,
    etcd: EtcdArbiter,
    holder: String,
    node: Weak<Node>,
    mut stop: watch::Receiver<bool>,
) {
    let Some(timeout) = node.upgrade().map(|n| n.timeout()) else {
        return;
    };
    // How often to look again; how long a want lasts (a client asks again after at
    // least the timeout); how long one acquisition may take.
    let pause = (timeout / 2).max(Duration::from_millis(100));
    let want_lasts = (timeout * 4).max(Duration::from_secs(2));
    let patience = etcd.ttl();
    let mut lease: Option<Lease> = None;
    let mut complained: Option<String> = None;
    loop {
        let next = match lease.as_ref() {
            Some(l) => tokio::select! {
                r = l.lost() => Next::Lost(r),
                _ = tokio::time::sleep(pause) => Next::Tick,
                _ = stop.wait_for(|s| *s) => Next::Stop,
            },
            None => tokio::select! {
                _ = arbiter.wake.notified() => Next::Tick,
                _ = tokio::time::sleep(pause) => Next::Tick,
                _ = stop.wait_for(|s| *s) => Next::Stop,
            },
        };
        let Some(state) = node.upgrade().map(|n| n.state()) else {
            break;
        };
        match next {
            Next::Stop => break,
            Next::Lost(reason) => {
                arbiter.hold(None);
                lease = None;
                let Some(n) = node.upgrade() else { break };
                if n.state() == State::Active {
                    tracing::error!("HA: the arbiter's lease is lost ({reason}): stepping down");
                } else {
                    tracing::info!("HA: the arbiter's lease is lost ({reason})");
                }
                n.fire(
                    Event::LostLease,
                    &format!("lost the arbiter's lease: {reason}"),
                );
            }
            Next::Tick if lease.is_some() => {
                if state != State::Active && !arbiter.wanted(want_lasts) {
                    arbiter.hold(None);
                    if let Some(l) = lease.take() {
                        tracing::info!(
                            "HA: giving back the arbiter's lease (token {}): this member is {state}",
                            l.token()
                        );
                        release(l).await;
                    }
                }
            }
            Next::Tick => {
                if state == State::Active || !arbiter.wanted(want_lasts) {
                    continue;
                }
                match tokio::time::timeout(patience, etcd.acquire(&holder)).await {
                    Ok(Ok(l)) => {
                        tracing::info!(
                            "HA: holding the arbiter's key {} (token {})",
                            etcd.key(),
                            l.token()
                        );
                        complained = None;
                        arbiter.hold(Some(&l));
                        lease = Some(l);
                        continue;
                    }
                    Ok(Err(e)) => {
                        let text = e.to_string();
                        if complained.as_ref() != Some(&text) {
                            match e {
                                ArbiterError::Held { .. } => {
                                    tracing::info!("HA: may not activate: the arbiter's {text}")
                                }
                                _ => tracing::warn!("HA: may not activate: arbiter: {text}"),
                            }
                            complained = Some(text);
                        }
                    }
                    Err(_) => tracing::warn!(
                        "HA: may not activate: the arbiter did not answer within {patience:?}"
                    ),
                }
                // Not at once again: each try is a lease granted and revoked.
                tokio::select! {
                    _ = tokio::time::sleep(pause) => {}
                    _ = stop.wait_for(|s| *s) => break,
                }
            }
        }
    }
    arbiter.hold(None);
    if let Some(l) = lease {
        release(l).await;
    }
}

/// Gives the lease back (the key frees at once), bounded: if etcd does not answer the
/// lease expires by itself.
async fn release(lease: Lease) {
    let token = lease.token();
    match tokio::time::timeout(Duration::from_secs(2), lease.release()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!("HA: giving back the arbiter's lease {token}: {e}"),
        Err(_) => tracing::warn!("HA: giving back the arbiter's lease {token}: no answer"),
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
