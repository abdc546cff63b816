//! The receiving side: the `replica` tunnel service registered on a broker, applying
//! what a source sends while the broker accepts it.
//!
//! A new tunnel endpoint here asks its source for a snapshot at once: the source may
//! have sent its first one to an endpoint that is gone (this broker restarted), and the
//! tunnel re-sends only what it never delivered.
//!
//! A sink that is not accepting (an active HA member) applies nothing and remembers
//! that it dropped something. A sink with no snapshot applied on this tunnel (a fresh
//! tunnel endpoint: this broker restarted, or the tunnel was closed and opened again)
//! or one that dropped changes asks the source for a snapshot (`resync`) and ignores
//! changes until it comes: applying a change to a state it does not know would be a
//! guess.

use std::sync::{Arc, Mutex, Weak};

use crate::broker::Broker;
use crate::protocol::ShortString;
use crate::protocol::generated::methods::{Method, ReplicaChange, ReplicaResync, ReplicaSnapshot};
use crate::protocol::generated::services::{REPLICA, Replica, ReplicaService};
use crate::tunnel::{TunnelSender, Tunnels};

use super::apply::{apply_changes, apply_snapshot};
use super::definition::{Change, Def, State};

/// What the sinks of one broker did, for tests and status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SinkCounters {
    pub snapshots_applied: u64,
    pub changes_applied: u64,
    /// Methods dropped: not accepting, or waiting for a snapshot.
    pub dropped: u64,
    pub resyncs_asked: u64,
}

struct Shared {
    broker: Weak<Broker>,
    accept: Box<dyn Fn() -> bool + Send + Sync>,
    counters: Mutex<SinkCounters>,
    /// The senders of the tunnels sources opened to us, to ask them for snapshots.
    senders: Mutex<Vec<TunnelSender>>,
}

/// The replica service of one broker; dropping it does not unregister it (a later
/// [`Sink::register`] replaces it).
#[derive(Clone)]
pub struct Sink {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Sink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sink")
            .field("counters", &self.counters())
            .finish_non_exhaustive()
    }
}

impl Sink {
    /// Accepts `replica` tunnels on `broker`; what arrives is applied while `accept`
    /// says yes (it is asked at each method).
    pub fn register(
        broker: &Arc<Broker>,
        accept: impl Fn() -> bool + Send + Sync + 'static,
    ) -> Sink {
        let shared = Arc::new(Shared {
            broker: Arc::downgrade(broker),
            accept: Box::new(accept),
            counters: Mutex::default(),
            senders: Mutex::default(),
        });
        let s = shared.clone();
        Tunnels::of(broker).register(&REPLICA, move |sender| {
            lock(&s.senders).push(sender.clone());
            // A new endpoint: this broker knows nothing of what the source sent before
            // (it restarted, or the tunnel was closed); the source's first snapshot
            // may be long acknowledged. Asked now, the request leaves on attachment.
            let asked = (s.accept)() && sender.try_send(resync("a new tunnel")).is_ok();
            if asked {
                lock(&s.counters).resyncs_asked += 1;
            }
            Box::new(Replica(Receiver {
                shared: s.clone(),
                sender,
                synced: false,
                parts: Vec::new(),
                next_part: 0,
                asked,
            }))
        });
        Sink { shared }
    }

    pub fn counters(&self) -> SinkCounters {
        *lock(&self.shared.counters)
    }

    /// Asks every source connected now for a snapshot (call it when the broker starts
    /// accepting, so it need not wait for the next change).
    pub fn request_snapshots(&self) {
        let senders = lock(&self.shared.senders).clone();
        for s in senders {
            let _ = s.try_send(resync("asked by the sink"));
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn resync(reason: &str) -> Method {
    Method::ReplicaResync(ReplicaResync {
        reason: ShortString::try_from(reason).unwrap_or_default(),
    })
}

/// One source's tunnel.
struct Receiver {
    shared: Arc<Shared>,
    sender: TunnelSender,
    /// A snapshot was applied and every change since.
    synced: bool,
    /// The parts of a snapshot arriving, and the number of the next one.
    parts: Vec<u8>,
    next_part: u32,
    /// A resync was asked and its snapshot has not come yet.
    asked: bool,
}

impl Receiver {
    fn count(&self, f: impl FnOnce(&mut SinkCounters)) {
        f(&mut lock(&self.shared.counters));
    }

    /// Drops what arrived: not accepting, or out of sync.
    fn drop_it(&mut self, why: &str) {
        self.synced = false;
        self.parts.clear();
        self.next_part = 0;
        self.count(|c| c.dropped += 1);
        if (self.shared.accept)() && !self.asked {
            self.asked = true;
            self.count(|c| c.resyncs_asked += 1);
            let _ = self.sender.try_send(resync(why));
        }
    }
}

impl ReplicaService for Receiver {
    fn snapshot(&mut self, m: ReplicaSnapshot) {
        let Some(broker) = self.shared.broker.upgrade() else {
            return;
        };
        if !(self.shared.accept)() {
            return self.drop_it("not accepting");
        }
        if m.part == 0 {
            self.parts.clear();
            self.next_part = 0;
        }
        if m.part != self.next_part {
            // The start of this snapshot was dropped (we were not accepting then).
            return self.drop_it("a snapshot part is missing");
        }
        self.next_part += 1;
        self.parts.extend_from_slice(&m.items);
        if !m.last {
            return;
        }
        self.next_part = 0;
        let parts = std::mem::take(&mut self.parts);
        match serde_json::from_slice::<Vec<Def>>(&parts) {
            Ok(defs) => {
                let state: State = defs.into_iter().map(|d| (d.key(), d)).collect();
                let n = apply_snapshot(&broker, &state);
                tracing::info!("replication: snapshot {} applied ({n} changes)", m.serial);
                self.synced = true;
                self.asked = false;
                self.count(|c| c.snapshots_applied += 1);
            }
            Err(e) => {
                tracing::warn!("replication: a snapshot could not be read: {e}");
                self.drop_it("unreadable snapshot");
            }
        }
    }

    fn change(&mut self, m: ReplicaChange) {
        let Some(broker) = self.shared.broker.upgrade() else {
            return;
        };
        if !(self.shared.accept)() {
            return self.drop_it("not accepting");
        }
        if !self.synced {
            return self.drop_it("no snapshot");
        }
        match serde_json::from_slice::<Vec<Change>>(&m.items) {
            Ok(changes) => {
                let n = changes.len() as u64;
                apply_changes(&broker, changes);
                self.count(|c| c.changes_applied += n);
            }
            Err(e) => {
                tracing::warn!("replication: change {} could not be read: {e}", m.serial);
                self.drop_it("unreadable change");
            }
        }
    }

    fn resync(&mut self, _: ReplicaResync) {}
}
