//! The `[ha]` section: this broker as one member of an HA pair (see `crate::ha`).
//!
//! ```toml
//! [ha]
//! role = "primary"                          # or "backup"
//! peer = "amqp://peer:secret@10.0.0.2:5672" # the other member, as a user with the
//!                                           # `peering` tag there
//! timeout = 5                               # seconds (or "500ms"); the peer is dead
//!                                           # after this much silence; state goes
//!                                           # every timeout/2
//! epoch_file = "/var/lib/fedamq/ha-epoch"   # default: ha-epoch beside the config file
//! name = "orders"                           # the pair's name, the same on both members
//!                                           # (names the arbiter's default key)
//!
//! [ha.arbiter]                              # optional: activation also needs an etcd
//! endpoints = ["127.0.0.1:2379"]            # lease (see `crate::arbiter::config`)
//! ttl = 10
//! ```
//!
//! Kept here with the rest of the configuration (the HA runtime reads it from the
//! broker's [`Config`](super::Config)); the peer's address is parsed in full when the
//! pair starts.

use std::path::PathBuf;
use std::time::Duration;

use crate::arbiter::ArbiterConfig;

/// primary or backup: who becomes active when both start, and who wins a tie.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HaRole {
    Primary,
    Backup,
}

impl HaRole {
    pub fn name(self) -> &'static str {
        match self {
            HaRole::Primary => "primary",
            HaRole::Backup => "backup",
        }
    }

    pub fn parse(s: &str) -> Result<HaRole, String> {
        match s {
            "primary" => Ok(HaRole::Primary),
            "backup" => Ok(HaRole::Backup),
            other => Err(format!("must be \"primary\" or \"backup\", got {other:?}")),
        }
    }
}

/// One member of an HA pair.
#[derive(Debug, Clone, PartialEq)]
pub struct HaConfig {
    pub role: HaRole,
    /// The other member: `amqp://user:password@host:port`, as a user with the `peering`
    /// tag on it.
    pub peer: String,
    /// Silence after which the peer counts as gone (Binary Star's failover timeout).
    pub timeout: Duration,
    /// Where the activation epoch is kept.
    pub epoch_file: PathBuf,
    /// The pair's name, the same on both members: the arbiter's key is named after it.
    pub name: String,
    /// The etcd arbiter (`[ha.arbiter]`); None: Binary Star's rules alone.
    pub arbiter: Option<ArbiterConfig>,
}

/// The pair's name when none is given.
pub const DEFAULT_NAME: &str = "default";

/// OpenAMQ's default failover timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// The epoch file's name when none is given: beside the config file (or in the working
/// directory without one).
pub const DEFAULT_EPOCH_FILE: &str = "ha-epoch";

impl HaConfig {
    /// A member with the default timeout and epoch file.
    pub fn new(role: HaRole, peer: impl Into<String>) -> HaConfig {
        HaConfig {
            role,
            peer: peer.into(),
            timeout: DEFAULT_TIMEOUT,
            epoch_file: PathBuf::from(DEFAULT_EPOCH_FILE),
            name: DEFAULT_NAME.to_owned(),
            arbiter: None,
        }
    }
}

/// The checks the file applies to `peer`: an AMQP URI.
pub fn check_peer(peer: String) -> Result<String, String> {
    if peer.starts_with("amqp://") || peer.starts_with("amqps://") {
        Ok(peer)
    } else {
        Err(format!("must be an amqp:// or amqps:// URI, got {peer:?}"))
    }
}

/// The checks the file applies to `timeout`: 100 ms to 60 s (OpenAMQ allows 1-60 s).
pub fn check_timeout(t: Duration) -> Result<Duration, String> {
    if t < Duration::from_millis(100) || t > Duration::from_secs(60) {
        Err(format!("must be between 100ms and 60s, got {t:?}"))
    } else {
        Ok(t)
    }
}
