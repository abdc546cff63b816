//! The broker core: [`Broker`] (vhosts, users, connections, memory), and inside each
//! vhost its exchanges, queues, bindings and consumers, changed through one topology
//! path (`topology`).
//!
//! Hand-written logic on top of the protocol layer: it sees typed methods only.

pub mod admission;
pub mod backlog;
pub mod channels;
pub mod clock;
pub mod connections;
pub mod consume;
pub mod credit;
pub mod dead_letter;
pub mod error;
pub mod events;
pub mod exchange;
pub mod exchange_hook;
pub mod hash;
pub mod memory;
pub mod message;
pub mod node;
pub mod owner;
pub mod policy;
pub mod publish;
pub mod queue;
pub mod queue_args;
pub mod routing;
pub mod topology;
pub mod unacked;
pub mod vhost;

pub use node::Broker;
