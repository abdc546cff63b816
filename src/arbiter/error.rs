//! Why acquiring the arbiter's key failed, and why a held lease was lost.

use std::fmt;

/// Why [`EtcdArbiter::acquire`](super::EtcdArbiter::acquire) (or another call) failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArbiterError {
    /// Someone holds the key: its value (the holder's name) and create revision.
    #[error("the key is held by {holder:?} (token {token})")]
    Held { holder: String, token: i64 },
    /// No endpoint answered (each one's error, in order).
    #[error("no etcd endpoint answered: {0}")]
    Unreachable(String),
    /// etcd answered with an error (gRPC code and message).
    #[error("etcd refused: {message} (code {code})")]
    Etcd { code: i64, message: String },
    /// etcd's answer was not what its API says.
    #[error("unexpected answer from etcd: {0}")]
    Protocol(String),
    /// The settings cannot work (no endpoints, an https endpoint, a zero ttl).
    #[error("arbiter settings: {0}")]
    Settings(String),
    /// The lease's local deadline passed while the key was being acquired.
    #[error("acquiring the key took longer than the lease lasts")]
    TooSlow,
}

/// Why a [`Lease`](super::Lease) was lost. A holder steps down at once on any of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LostReason {
    /// No renewal was confirmed in time: the local deadline passed.
    Expired,
    /// etcd said the lease is gone (expired there, or revoked).
    Revoked,
    /// The key is gone or belongs to another lease (deleted behind the holder's back).
    KeyTaken,
    /// The holder released it.
    Released,
}

impl fmt::Display for LostReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LostReason::Expired => "no lease renewal confirmed before the deadline",
            LostReason::Revoked => "etcd says the lease is gone",
            LostReason::KeyTaken => "the arbiter key is no longer this broker's",
            LostReason::Released => "released",
        })
    }
}
