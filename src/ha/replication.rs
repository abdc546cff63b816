//! The pair's own hooks: replicated definitions and the step-down's hand-over of queued
//! messages, built from `crate::replication` and started with every pair member.
//!
//! - Every member registers the replica sink at start. It applies what arrives only
//!   while this member is passive *and* has nothing of its own left to hand over: a
//!   member stepping down must first move its messages, because the winner's snapshot
//!   removes queues the winner does not have (with their messages).
//! - On activation the member starts a [`Source`] toward the peer; it stops on any way
//!   out of active.
//! - On a step-down (its clients already closed) it waits for those connections to be
//!   gone, so their unacknowledged deliveries are back in the queues, then drains every
//!   queue to the winner with publisher confirms, bounded by [`DRAIN_TIMEOUT`]. What is
//!   left (the winner unreachable) is drained again in the background while the member
//!   stays passive; only when nothing is left does it accept definitions.
//!
//! Messages are otherwise not replicated.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::time::Instant;

use super::hooks::{HaHooks, HookFuture};
use super::node::Node;
use crate::broker::Broker;
use crate::peering::{Backoff, Remote};
use crate::protocol::generated::ha_machine::State;
use crate::replication::{Sink, Source, drain_to};
use crate::tunnel::{PEERING_TAG, TunnelConfig};

/// The longest a step-down's drain runs before the pair carries on (the rest is
/// drained in the background).
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// The longest a step-down waits for its closed client connections to be gone.
const CLOSE_WAIT: Duration = Duration::from_secs(10);

/// Replication as one pair member runs it.
pub(super) struct Replication {
    me: Weak<Replication>,
    broker: Weak<Broker>,
    node: Weak<Node>,
    sink: Sink,
    /// Passive with nothing left to hand over: the sink may apply.
    accepting: Arc<AtomicBool>,
    source: Mutex<Option<Source>>,
    /// Raised at every change of state: a background drain of an older one stops.
    generation: AtomicU64,
}

impl Replication {
    /// Registers the sink on `broker` (it applies nothing until this member is passive).
    pub(super) fn start(broker: &Arc<Broker>, node: &Arc<Node>) -> Arc<Replication> {
        let accepting = Arc::new(AtomicBool::new(false));
        let weak = Arc::downgrade(node);
        let flag = accepting.clone();
        let sink = Sink::register(broker, move || {
            flag.load(Ordering::SeqCst)
                && weak.upgrade().is_some_and(|n| n.state() == State::Passive)
        });
        Arc::new_cyclic(|me| Replication {
            me: me.clone(),
            broker: Arc::downgrade(broker),
            node: Arc::downgrade(node),
            sink,
            accepting,
            source: Mutex::new(None),
            generation: AtomicU64::new(0),
        })
    }

    /// What the sink did, for tests and status.
    pub(super) fn sink(&self) -> &Sink {
        &self.sink
    }

    /// The source streaming to the peer, if active.
    pub(super) fn source_running(&self) -> bool {
        lock(&self.source).is_some()
    }

    fn stop_source(source: Option<Source>) {
        if let Some(source) = source {
            // Closing tells the peer; without a runtime, dropping it stops it too.
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(source.stop());
            }
        }
    }

    /// Starts the source toward `peer` for the state of `generation`; false if it
    /// cannot be opened now.
    fn start_source(&self, generation: u64, peer: &Remote) -> bool {
        let (Some(broker), Some(node)) = (self.broker.upgrade(), self.node.upgrade()) else {
            return true;
        };
        match Source::start_with(&broker, source_config(peer, node.timeout())) {
            Ok(source) => {
                let mut slot = lock(&self.source);
                if self.current(generation) {
                    *slot = Some(source);
                } else {
                    Self::stop_source(Some(source));
                }
                true
            }
            Err(e) => {
                tracing::debug!("HA: the replica tunnel to the peer: {e}");
                false
            }
        }
    }

    /// Stops streaming, accepting and any background drain (the pair stops).
    pub(super) fn stop(&self) {
        self.turn();
    }

    fn accept(&self) {
        self.accepting.store(true, Ordering::SeqCst);
        self.sink.request_snapshots();
    }

    /// Stops streaming and accepting (a new state).
    fn turn(&self) -> u64 {
        self.accepting.store(false, Ordering::SeqCst);
        // Under the source's lock: a source started for an older state is not kept.
        let mut source = lock(&self.source);
        let generation = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
        Self::stop_source(source.take());
        generation
    }

    fn current(&self, generation: u64) -> bool {
        self.generation.load(Ordering::SeqCst) == generation
    }
}

/// The tunnel to the peer's replica service reconnects as fast as the state exchange.
fn source_config(peer: &Remote, timeout: Duration) -> TunnelConfig {
    let mut config = TunnelConfig::new(peer.clone());
    config.peering.reconnect = Some(Backoff {
        min: Duration::from_millis(50),
        max: (timeout / 2).max(Duration::from_millis(100)),
    });
    config.peering.connect_timeout = timeout.max(Duration::from_secs(1));
    config
}

impl HaHooks for Replication {
    fn activated(&self, epoch: u64, peer: &Remote) {
        let generation = self.turn();
        if self.start_source(generation, peer) {
            tracing::info!(
                "HA: active (epoch {epoch}): replicating definitions to {}",
                peer.display()
            );
            return;
        }
        // The source of an earlier activation may still be closing its tunnel (one
        // per remote and service): try again until it has, while still active.
        let (me, peer) = (self.me.clone(), peer.clone());
        tokio::spawn(async move {
            let mut logged = false;
            loop {
                tokio::time::sleep(Duration::from_millis(100)).await;
                let Some(r) = me.upgrade() else { return };
                if !r.current(generation) {
                    return;
                }
                if r.start_source(generation, &peer) {
                    tracing::info!(
                        "HA: active (epoch {epoch}): replicating definitions to {}",
                        peer.display()
                    );
                    return;
                }
                if !logged {
                    logged = true;
                    tracing::warn!("HA: cannot replicate definitions to the peer yet; retrying");
                }
            }
        });
    }

    fn became_passive(&self, _: &Remote) {
        self.turn();
        self.accept();
    }

    fn step_down(&self, winner: &Remote) -> HookFuture {
        let generation = self.turn();
        let (Some(broker), Some(this)) = (self.broker.upgrade(), self.node.upgrade()) else {
            return Box::pin(async {});
        };
        let winner = winner.clone();
        let me = Hand {
            broker,
            node: Arc::downgrade(&this),
            generation,
        };
        let replication = self.me.clone();
        Box::pin(async move {
            wait_for_closed_clients(&me.broker).await;
            if me.drain(&winner, DRAIN_TIMEOUT).await {
                if let Some(r) = replication.upgrade()
                    && r.current(generation)
                {
                    r.accept();
                }
                return;
            }
            // The winner could not take everything: keep trying while still passive.
            tokio::spawn(async move {
                let pause = me
                    .node
                    .upgrade()
                    .map_or(Duration::from_secs(1), |n| n.timeout());
                loop {
                    tokio::time::sleep(pause).await;
                    let Some(r) = replication.upgrade() else {
                        return;
                    };
                    if !r.current(generation) {
                        return;
                    }
                    drop(r);
                    if me.drain(&winner, DRAIN_TIMEOUT).await {
                        if let Some(r) = replication.upgrade()
                            && r.current(generation)
                        {
                            r.accept();
                        }
                        return;
                    }
                }
            });
        })
    }
}

/// What a step-down's drain needs.
struct Hand {
    broker: Arc<Broker>,
    node: Weak<Node>,
    generation: u64,
}

impl Hand {
    /// Drains every queue to `winner`, bounded by `limit`; true when nothing is left.
    async fn drain(&self, winner: &Remote, limit: Duration) -> bool {
        if self
            .node
            .upgrade()
            .is_none_or(|n| n.state() != State::Passive)
        {
            return false;
        }
        let started = Instant::now();
        match tokio::time::timeout(limit, drain_to(&self.broker, winner.clone())).await {
            Ok(report) => {
                let left = queued(&self.broker);
                let done = report.failed.is_empty() && left == 0;
                if done {
                    tracing::warn!(
                        "HA: step-down (generation {}): moved {} message(s) from {} queue(s) to {} in {:?}",
                        self.generation,
                        report.moved,
                        report.queues.len(),
                        winner.display(),
                        started.elapsed()
                    );
                } else {
                    tracing::error!(
                        "HA: step-down: moved {} message(s) to {}; {} still queued here; failed: {:?}",
                        report.moved,
                        winner.display(),
                        left,
                        report.failed
                    );
                }
                done
            }
            Err(_) => {
                tracing::error!(
                    "HA: step-down: moving the queued messages to {} took longer than {limit:?}; {} still queued here, trying again",
                    winner.display(),
                    queued(&self.broker)
                );
                false
            }
        }
    }
}

/// Messages in the queues a drain moves (non-exclusive ones), ready or not.
fn queued(broker: &Broker) -> u64 {
    let mut n = 0;
    for name in broker.vhost_names() {
        if let Some(vhost) = broker.vhost(&name) {
            for q in vhost.queues() {
                if q.spec.exclusive_owner.is_none() {
                    n += u64::from(q.message_count()) + q.unacked_count() as u64;
                }
            }
        }
    }
    n
}

/// Waits (at most [`CLOSE_WAIT`]) until the client connections open now are gone: a
/// connection releases its unacknowledged deliveries back to their queues before it
/// leaves the registry, and a drain must not leave them behind.
async fn wait_for_closed_clients(broker: &Broker) {
    let clients = |b: &Broker| -> HashSet<_> {
        b.connections()
            .list()
            .into_iter()
            .filter(|c| {
                !b.users()
                    .user_tags(&c.user)
                    .iter()
                    .any(|t| t == PEERING_TAG)
            })
            .map(|c| c.id)
            .collect()
    };
    let closing = clients(broker);
    let until = Instant::now() + CLOSE_WAIT;
    while !closing.is_empty() && Instant::now() < until {
        if clients(broker).is_disjoint(&closing) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    if !closing.is_empty() && !clients(broker).is_disjoint(&closing) {
        tracing::warn!(
            "HA: step-down: client connections still open after {CLOSE_WAIT:?}; draining anyway"
        );
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
