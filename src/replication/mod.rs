//! Replication between two brokers, independent of who plays which role: the building
//! blocks of the HA pair (issue 13), which decides when to use them.
//!
//! - [`Source`] / [`Sink`]: replicated definitions. A source streams its broker's
//!   vhosts, users, permissions, global and vhost parameters, policies, exchanges,
//!   queues and bindings to a remote's `replica` tunnel service (spec/tunnel-replica.xml,
//!   class 1003): a snapshot, then every change, driven by the core's change notices
//!   (topology events, the user table's and the broker's definition watches). A sink
//!   applies them through the paths a client uses, only while its owner says it accepts.
//!   Messages are not replicated.
//! - [`drain_to`]: moves every queued message to a remote broker over a peering with
//!   publisher confirms, removing each here only once the remote confirmed it.
//!
//! The parts: `definition` (one definition, a state, the difference of two), `apply`
//! (a difference applied to the local broker), `source`, `sink`, `drain`.

mod apply;
mod definition;
mod drain;
mod sink;
mod source;

pub use definition::{Change, Def};
pub use drain::{DrainReport, drain_to};
pub use sink::{Sink, SinkCounters};
pub use source::{Source, SourceCounters};

/// The definitions of `broker` that replication carries, in dependency order: what a
/// sink ends up with, to compare two brokers.
pub fn definitions(broker: &crate::broker::Broker) -> Vec<Def> {
    definition::collect(broker).into_values().collect()
}
