//! The broker: virtual hosts, exchanges, queues, bindings and consumers.
//!
//! Hand-written logic on top of the protocol layer: it sees typed methods only.

pub mod backlog;
pub mod clock;
pub mod consumer;
pub mod credit;
pub mod dead_letter;
pub mod error;
pub mod event_batch;
pub mod exchange;
pub mod hash;
pub mod message;
pub mod queue;
pub mod queue_args;
pub mod routing;
pub mod vhost;
