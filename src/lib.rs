//! fedamq: an AMQP 0-9-1 message broker whose protocol layer is generated from spec XML.
//!
//! See `ARCHITECTURE.md` at the repository root for a map of the code.

pub mod arbiter;
pub mod auth;
pub mod broker;
pub mod client;
pub mod config;
pub mod connection;
pub mod federation;
pub mod ha;
pub mod management;
pub mod peering;
pub mod protocol;
pub mod replication;
pub mod server;
pub mod transport;
pub mod tunnel;

pub use broker::Broker;
pub use server::{BrokerHandle, Server};
