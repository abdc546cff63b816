//! A held arbiter key: the fencing token, whether it is still held, and its release.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::client::EtcdClient;
use super::error::{ArbiterError, LostReason};
use super::keepalive::lose;
use super::liveness::{LeaseState, LeaseWatch};

/// The key, held under an etcd lease that a task renews. The holder must step down
/// when [`lost`](Lease::lost) completes (or [`is_lost`](Lease::is_lost) says so),
/// which happens before etcd lets anyone else take the key.
///
/// Dropping it stops the renewals and revokes the lease in the background (the key
/// frees at once if etcd is reachable, after the TTL otherwise); [`release`](Lease::release)
/// does the same and waits for etcd.
pub struct Lease {
    client: EtcdClient,
    id: i64,
    token: i64,
    key: String,
    holder: String,
    ttl: Duration,
    state: Arc<watch::Sender<LeaseState>>,
    watch: LeaseWatch,
    renewals: JoinHandle<()>,
    released: bool,
}

/// What [`Lease::new`] needs: an acquired key and its running renewal task.
pub struct Held {
    pub client: EtcdClient,
    pub id: i64,
    pub token: i64,
    pub key: String,
    pub holder: String,
    pub ttl: Duration,
    pub state: Arc<watch::Sender<LeaseState>>,
    pub renewals: JoinHandle<()>,
}

impl Lease {
    pub fn new(h: Held) -> Lease {
        let watch = LeaseWatch::new(h.state.subscribe());
        Lease {
            client: h.client,
            id: h.id,
            token: h.token,
            key: h.key,
            holder: h.holder,
            ttl: h.ttl,
            state: h.state,
            watch,
            renewals: h.renewals,
            released: false,
        }
    }

    /// The fencing token: the key's create revision. Each acquisition's is larger than
    /// every earlier one's.
    pub fn token(&self) -> i64 {
        self.token
    }

    /// etcd's lease id.
    pub fn id(&self) -> i64 {
        self.id
    }

    pub fn key(&self) -> &str {
        &self.key
    }

    /// The key's value: the name this holder acquired it with.
    pub fn holder(&self) -> &str {
        &self.holder
    }

    /// The TTL etcd granted (at least what was asked).
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// The instant the lease counts as lost unless renewed before.
    pub fn deadline(&self) -> Instant {
        self.watch.deadline()
    }

    pub fn is_lost(&self) -> bool {
        self.watch.is_lost()
    }

    pub fn lost_reason(&self) -> Option<LostReason> {
        self.watch.lost_reason()
    }

    /// Completes the moment the lease is lost.
    pub async fn lost(&self) -> LostReason {
        self.watch.lost().await
    }

    /// A view of the lease's liveness for other tasks.
    pub fn watch(&self) -> LeaseWatch {
        self.watch.clone()
    }

    /// Stops renewing and revokes the lease, which deletes the key. The lease counts
    /// as lost (`Released`) before etcd is asked.
    pub async fn release(mut self) -> Result<(), ArbiterError> {
        self.stop();
        self.released = true;
        self.client.revoke(self.id).await
    }

    fn stop(&self) {
        self.renewals.abort();
        lose(&self.state, LostReason::Released);
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if self.released {
            return;
        }
        self.stop();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let (client, id) = (self.client.clone(), self.id);
            runtime.spawn(async move {
                if let Err(e) = client.revoke(id).await {
                    tracing::warn!(lease = id, "arbiter: revoking a dropped lease: {e}");
                }
            });
        }
    }
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease")
            .field("key", &self.key)
            .field("holder", &self.holder)
            .field("id", &self.id)
            .field("token", &self.token)
            .field("lost", &self.lost_reason())
            .finish()
    }
}
