//! Where features built beside the HA pair plug in: replication (definitions streamed
//! active → passive, queued messages moved to the winner on step-down) through
//! [`HaHooks`], and an arbiter (an etcd lease with a fencing token) through [`Arbiter`].
//! The pair runs without either: the defaults do nothing and allow everything.

use std::future::Future;
use std::pin::Pin;

use crate::peering::Remote;

/// A future a hook returns; the pair waits for it where the doc says so.
pub type HookFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Told of the pair's changes, in order, from the pair's own task (install with
/// `Ha::set_hooks`, which first tells the state as it is). `activated` and
/// `became_passive` must not block; `step_down` is awaited.
pub trait HaHooks: Send + Sync {
    /// This broker became active with `epoch`: start streaming definitions to `peer`.
    fn activated(&self, epoch: u64, peer: &Remote) {
        let _ = (epoch, peer);
    }

    /// This broker became passive without having been active (start-up, or it saw an
    /// active peer): receive definitions, stop any streaming.
    fn became_passive(&self, peer: &Remote) {
        let _ = peer;
    }

    /// This broker stepped down (a lost heal, a failback, a lost lease). It is already
    /// passive (new clients are refused) and its client connections were closed; move
    /// its queued messages to `winner`, confirmed, and stop streaming. The pair waits
    /// for the future before it reports the step-down done.
    fn step_down(&self, winner: &Remote) -> HookFuture {
        let _ = winner;
        Box::pin(async {})
    }
}

/// The default hooks: nothing to do.
#[derive(Debug, Default)]
pub struct NoHooks;

impl HaHooks for NoHooks {}

/// An arbiter the pair asks before it activates (LavinMQ-style: an etcd lease).
pub trait Arbiter: Send + Sync {
    /// True when this broker holds the lease now and may activate. Asked under the
    /// pair's lock: it must answer at once from what the arbiter already knows.
    fn may_activate(&self) -> bool;

    /// The fencing token of the lease held (e.g. the key's revision), for the status.
    fn fencing_token(&self) -> Option<u64> {
        None
    }
}
