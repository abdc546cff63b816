//! Who owns an exclusive queue: a client connection or a named broker object.
//!
//! Exclusive queues belong to whoever declared them and go when that owner goes. A
//! broker object (a federation link, a tunnel) that consumes without a connection owns
//! its queues under a name of its own, so the core treats both kinds alike.

use std::fmt;
use std::sync::Arc;

/// Identifies a connection within the broker (for exclusive queues and consumers).
pub type ConnectionId = u64;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Owner {
    /// A client connection, by its id.
    Connection(ConnectionId),
    /// A broker object, by a name unique among the broker's objects.
    Object(Arc<str>),
}

impl Owner {
    /// A broker object's identity.
    pub fn object(name: &str) -> Owner {
        Owner::Object(Arc::from(name))
    }
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Owner::Connection(id) => write!(f, "connection {id}"),
            Owner::Object(name) => write!(f, "broker object '{name}'"),
        }
    }
}
