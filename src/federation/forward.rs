//! OpenAMQ's forwarding modes on the local exchange: the [`Forwarder`] is the
//! exchange's hook (`broker::exchange_hook`) while a publisher, locator, fanout or
//! service link runs. The core calls it on every publish to the exchange; it decides,
//! by OpenAMQ's rules (`amq_exchange.publish`), whether the message goes up:
//!
//! - publisher: always;
//! - fanout: when a client published it, and then it is not routed locally (the root
//!   fans it out, and it comes back down through the mirrored bindings);
//! - locator and service: when no local queue took it.
//!
//! Forwarding counts as a delivery, so the local `mandatory` return is suppressed (the
//! upstream returns it instead, and the link hands that to the original publisher).
//! Messages a link brought down (relayed) never go back up, and the loop rule
//! (`max-hops`, the upstream's cluster name in `x-received-from`) is checked as for
//! messages coming down. Service mode also refuses a bind that would mix exclusive and
//! non-exclusive queues on one key (OpenAMQ's 530).
//!
//! The hook never waits: it queues the message for the link's task, which publishes it
//! through the peering's confirmed outbox. What is queued or unconfirmed is counted;
//! over [`Backlog::HIGH`] the publishing connection is held back (flow) until it is
//! down to [`Backlog::LOW`], so nothing is dropped and nothing grows without bound.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;

use super::status::{LinkState, LinkStatus};
use super::upstream::Mode;
use crate::broker::error::{AmqpError, AmqpResult};
use crate::broker::exchange_hook::{
    BindCheck, ExchangeHook, HoldsBack, PublishSource, Published, Taken,
};
use crate::broker::message::MessageRef;
use crate::broker::routing::upstream::should_forward;

/// A message on its way up.
#[derive(Debug)]
pub(super) struct Forward {
    pub message: MessageRef,
    pub mandatory: bool,
    pub source: PublishSource,
}

/// Messages queued for the link's task or unconfirmed by the upstream.
#[derive(Debug, Default)]
pub(super) struct Backlog {
    count: AtomicUsize,
    /// The link stopped: nothing waits for it any more.
    stopped: AtomicBool,
}

impl Backlog {
    /// Over this, publishers are held back.
    pub const HIGH: usize = 2_000;
    /// They go on once it is down to this.
    pub const LOW: usize = Self::HIGH / 2;

    pub fn len(&self) -> usize {
        self.count.load(Ordering::Acquire)
    }

    /// One forward settled (confirmed, refused or given up).
    pub fn done(&self) {
        self.count.fetch_sub(1, Ordering::AcqRel);
    }

    pub fn stop(&self) {
        self.stopped.store(true, Ordering::Release);
    }
}

impl HoldsBack for Backlog {
    fn holds_back(&self) -> bool {
        !self.stopped.load(Ordering::Acquire) && self.len() > Self::LOW
    }
}

/// The local exchange's hook while a forwarding link runs.
#[derive(Debug)]
pub(super) struct Forwarder {
    pub mode: Mode,
    pub max_hops: i64,
    /// The upstream's cluster name (once connected) and vhost: a message that has been
    /// there does not go back.
    pub upstream_cluster: Arc<Mutex<Option<String>>>,
    pub upstream_vhost: String,
    pub queue: mpsc::UnboundedSender<Forward>,
    pub backlog: Arc<Backlog>,
    pub status: Arc<Mutex<LinkStatus>>,
}

impl ExchangeHook for Forwarder {
    fn route_locally(&self, source: PublishSource) -> bool {
        !(self.mode == Mode::Fanout && matches!(source, PublishSource::Client { .. }))
    }

    fn published(&self, p: Published<'_>) -> Option<Taken> {
        let forward = match p.source {
            PublishSource::Internal { relayed: true } => false,
            source => match self.mode {
                Mode::Subscriber => false,
                Mode::Publisher => true,
                Mode::Fanout => matches!(source, PublishSource::Client { .. }),
                Mode::Locator | Mode::Service => p.delivered == 0,
            },
        };
        if !forward {
            return None;
        }
        let headers = p.message.properties().headers();
        let cluster = self
            .upstream_cluster
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if !should_forward(
            headers.as_ref(),
            self.max_hops,
            cluster.as_deref().map(str::as_bytes),
            Some(self.upstream_vhost.as_bytes()),
        ) {
            return None;
        }
        let queued = self.backlog.count.fetch_add(1, Ordering::AcqRel) + 1;
        let sent = self.queue.send(Forward {
            message: p.message.clone(),
            mandatory: p.mandatory,
            source: p.source,
        });
        if sent.is_err() {
            // The link is stopping: the message was not taken.
            self.backlog.done();
            return None;
        }
        let hold_back = (queued > Backlog::HIGH).then(|| {
            let mut s = self.status.lock().unwrap_or_else(|e| e.into_inner());
            s.counters.held_back += 1;
            // Disconnected (backoff, blocked, …) says more; flow is its consequence.
            if s.state == LinkState::Running {
                s.set(
                    LinkState::Flow,
                    "forwarding backlog full: publishers held back",
                );
            }
            self.backlog.clone() as Arc<dyn HoldsBack>
        });
        Some(Taken { hold_back })
    }

    fn check_bind(&self, bind: &BindCheck<'_>) -> AmqpResult<()> {
        if self.mode == Mode::Service && bind.bound.iter().any(|&e| e != bind.exclusive) {
            return Err(AmqpError::not_allowed(
                "Invalid bind mix for service federation",
            ));
        }
        Ok(())
    }
}
