//! What a feature above the core may do to one exchange's publishes and bindings: a
//! federated exchange in OpenAMQ's publisher, locator, fanout or service mode forwards
//! some of what is published to it, and service mode refuses some bindings.
//!
//! The feature registers an [`ExchangeHook`] for the exchange's name on the vhost
//! ([`VHost::set_exchange_hook`](super::vhost::VHost::set_exchange_hook)); the core
//! calls it without knowing what it does: before routing a publish (whether to route it
//! locally at all), after routing it (whether the hook took it, which counts as a
//! delivery: no `mandatory` return), and before a bind (whether to refuse it). Publishing
//! to an exchange without a hook costs one atomic load.

use std::sync::Arc;

use super::error::AmqpResult;
use super::message::MessageRef;
use super::owner::ConnectionId;
use crate::protocol::{FieldTable, ShortString};

/// Who published a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublishSource {
    /// A client connection, on this channel.
    Client {
        connection: ConnectionId,
        channel: u16,
    },
    /// A broker object. `relayed`: it brings the message from another broker (a
    /// federation link's deliveries), so it must not be sent back out.
    Internal { relayed: bool },
}

/// Something a publisher should wait for before it publishes more (the core stops
/// reading the connection while it holds back: flow control).
pub trait HoldsBack: Send + Sync + std::fmt::Debug {
    fn holds_back(&self) -> bool;
}

/// A message routed to a hooked exchange.
#[derive(Debug)]
pub struct Published<'a> {
    pub message: &'a MessageRef,
    pub mandatory: bool,
    pub source: PublishSource,
    /// How many local queues took it (1 when local routing was skipped).
    pub delivered: usize,
}

/// The hook took the message (it counts as delivered).
#[derive(Debug, Default)]
pub struct Taken {
    /// The publisher should wait for this before publishing more.
    pub hold_back: Option<Arc<dyn HoldsBack>>,
}

/// A queue being bound to a hooked exchange.
#[derive(Debug)]
pub struct BindCheck<'a> {
    pub routing_key: &'a ShortString,
    pub arguments: &'a FieldTable,
    /// Whether the queue being bound is exclusive.
    pub exclusive: bool,
    /// The exclusivity of each queue already bound with the same key and arguments.
    pub bound: &'a [bool],
}

/// A feature's say over one exchange.
pub trait ExchangeHook: Send + Sync + std::fmt::Debug {
    /// Whether a message from `source` is routed to the local queues at all.
    fn route_locally(&self, source: PublishSource) -> bool {
        let _ = source;
        true
    }

    /// Called after local routing; `Some` when the hook took the message.
    fn published(&self, published: Published<'_>) -> Option<Taken>;

    /// Called before a queue is bound; an error refuses the bind.
    fn check_bind(&self, bind: &BindCheck<'_>) -> AmqpResult<()> {
        let _ = bind;
        Ok(())
    }
}
