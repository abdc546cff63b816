//! How a peering's requests and publishes fail.

/// Why a request or publish did not complete.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeeringError {
    /// The remote refused it: it closed the channel or the connection with this code.
    #[error("refused by the remote: {code} {text}")]
    Refused { code: u16, text: String },
    /// The remote nacked the publish (it could not take it, e.g. a full queue that
    /// rejects publishes).
    #[error("the remote nacked the publish")]
    Nacked,
    /// The link went down while the request was in flight; it was not replayed because
    /// it is not part of the declared state (declarations, bindings and consumers are).
    #[error("the link went down before the remote answered")]
    Disconnected,
    /// The peering was stopped (or failed for good) first.
    #[error("the peering is stopped")]
    Stopped,
    /// Not something the peering sends this way (e.g. a method only servers send, or
    /// one with content: use `publish`).
    #[error("{0} cannot be sent as a request")]
    NotARequest(&'static str),
}
