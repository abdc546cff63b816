//! The arbiter: an etcd lease that an HA pair's active broker must hold, so that no
//! network split can make two actives (issue 13, point 3; LavinMQ elects its leader the
//! same way).
//!
//! Binary Star alone lets the clients be the third vote, and a split with clients on
//! both sides defeats it. With an arbiter configured, activation also needs the key
//! `/fedamq/ha/<pair>/active` in etcd, created under a lease of this broker's: etcd
//! grants it to one contender at a time ([`EtcdArbiter::acquire`]), and a holder that
//! cannot keep its lease alive is told so ([`Lease::lost`]) *before* etcd can give the
//! key to anyone else:
//!
//! - the holder renews its lease every ttl/3;
//! - it counts the lease as alive until the moment it sent its last confirmed renewal,
//!   plus the ttl etcd granted, minus a margin ([`Lease::deadline`]). etcd counts from
//!   when it received that renewal, which is later, so etcd's expiry is always after
//!   the holder's deadline. Only monotonic time is used (`tokio::time::Instant`): a
//!   wall-clock jump changes nothing;
//! - etcd saying the lease is gone, or the key no longer being the holder's, ends it at
//!   once; a renewal that fails in transit is retried, on the next endpoint, until the
//!   deadline.
//!
//! The key's create revision is a fencing token ([`Lease::token`]): etcd revisions only
//! grow, so each acquisition's token is larger than every earlier one's, and a stale
//! holder (one paused between checking its lease and acting) can be told apart.
//!
//! etcd is spoken to over its JSON gateway (`/v3/...`, HTTP/1.1, keys and values in
//! base64), which needs no gRPC stack or protoc; only the five calls used are there
//! ([`client`]). TLS to etcd is not supported.
//!
//! # Where things are
//!
//! - [`config`]: `[ha.arbiter]` (endpoints, key, ttl) and its TOML reader;
//! - [`election`]: [`EtcdArbiter`], acquiring the key;
//! - [`lease`]: [`Lease`], a held key: token, deadline, `lost()`, `release()`;
//! - [`liveness`]: whether a lease is alive, by its deadline ([`LeaseWatch`]);
//! - [`keepalive`]: the task that renews a lease and decides it is lost;
//! - [`client`]: the etcd calls over HTTP, with endpoint failover; [`wire`]: their JSON;
//! - [`error`]: [`ArbiterError`] and [`LostReason`].

pub mod client;
pub mod config;
pub mod election;
pub mod error;
pub mod keepalive;
pub mod lease;
pub mod liveness;
pub mod wire;

pub use config::{ArbiterConfig, ConfigProblem, default_key};
pub use election::{EtcdArbiter, Holder};
pub use error::{ArbiterError, LostReason};
pub use lease::Lease;
pub use liveness::LeaseWatch;
