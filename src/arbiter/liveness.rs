//! Whether a held lease is still alive, as its holder must believe it: lost once
//! etcd said so, or once the local deadline passed without a confirmed renewal. The
//! deadline is checked against the monotonic clock by whoever asks, so a renewal task
//! that is late or stuck cannot make a lease look alive for longer.

use tokio::sync::watch;
use tokio::time::Instant;

use super::error::LostReason;

/// What the renewal task publishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseState {
    /// Alive until this instant unless renewed: the send time of the last confirmed
    /// renewal plus etcd's TTL, minus a margin.
    pub deadline: Instant,
    /// Set once, when the lease is known lost.
    pub lost: Option<LostReason>,
}

impl LeaseState {
    /// Why the lease is lost at `now`, if it is.
    pub fn lost_at(&self, now: Instant) -> Option<LostReason> {
        self.lost
            .or((now >= self.deadline).then_some(LostReason::Expired))
    }
}

/// A view of a lease's liveness that other tasks can hold. Cheap to clone.
#[derive(Debug, Clone)]
pub struct LeaseWatch {
    state: watch::Receiver<LeaseState>,
}

impl LeaseWatch {
    pub(super) fn new(state: watch::Receiver<LeaseState>) -> LeaseWatch {
        LeaseWatch { state }
    }

    /// The instant the lease counts as lost unless renewed before.
    pub fn deadline(&self) -> Instant {
        self.state.borrow().deadline
    }

    /// Why the lease is lost, if it is (now, by the monotonic clock).
    pub fn lost_reason(&self) -> Option<LostReason> {
        self.state.borrow().lost_at(Instant::now())
    }

    pub fn is_lost(&self) -> bool {
        self.lost_reason().is_some()
    }

    /// Completes the moment the lease is lost: etcd said so, or the deadline passed.
    pub async fn lost(&self) -> LostReason {
        let mut state = self.state.clone();
        loop {
            let now = *state.borrow_and_update();
            if let Some(reason) = now.lost_at(Instant::now()) {
                return reason;
            }
            tokio::select! {
                changed = state.changed() => {
                    if changed.is_err() {
                        // The renewal task is gone: nothing renews any more.
                        tokio::time::sleep_until(now.deadline).await;
                    }
                }
                _ = tokio::time::sleep_until(now.deadline) => {}
            }
        }
    }
}
