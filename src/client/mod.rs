//! An AMQP 0-9-1 client on fedamq's own protocol layer, for everything in fedamq that
//! talks to a server: the peering (a broker as a client of another), `fedamq-perf`, and
//! the tests.
//!
//! - [`Connection::open`] runs the client side of the handshake over any byte stream
//!   (protocol header, SASL PLAIN or AMQPLAIN, tune, open) through the generated
//!   connection machine (`spec/amq_peer.xml`), so the server's methods are checked the
//!   same way as in a running peering;
//! - a [`Connection`] is the stream and its buffers, public so a hot path can read
//!   frames in place and write batches itself (fedamq-perf does: no per-message cost is
//!   added here);
//! - synchronous calls ([`Connection::call`] and helpers such as
//!   [`Connection::declare_queue`]) for set-up and tear-down.
//!
//! It knows nothing of the broker: it depends on `protocol` only.

mod connection;
mod error;
mod handshake;
mod sasl;

pub use connection::Connection;
pub use error::{Error, Result};
pub use handshake::{ConnectOptions, Heartbeat, lower_nonzero};
