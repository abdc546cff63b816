//! Acquiring the arbiter key: one contender at a time gets it, the others are told who
//! holds it.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use super::client::EtcdClient;
use super::error::ArbiterError;
use super::keepalive::{self, Renewal, margin};
use super::lease::{Held, Lease};
use super::liveness::LeaseState;

/// The arbiter of one HA pair: a key in an etcd cluster.
#[derive(Clone)]
pub struct EtcdArbiter {
    client: EtcdClient,
    key: String,
    ttl: Duration,
}

/// Who holds the key now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    /// The name it acquired the key with.
    pub name: String,
    /// Its fencing token (the key's create revision).
    pub token: i64,
    /// Its etcd lease.
    pub lease: i64,
}

impl EtcdArbiter {
    /// An arbiter on `key` in the etcd cluster at `endpoints` (`host:port` or
    /// `http://host:port`), with leases of `ttl` (whole seconds; etcd may grant more).
    /// Nothing is sent until [`acquire`](Self::acquire).
    pub fn new(
        endpoints: Vec<String>,
        key: String,
        ttl: Duration,
    ) -> Result<EtcdArbiter, ArbiterError> {
        if ttl < Duration::from_secs(1) || ttl > Duration::from_secs(3600) {
            return Err(ArbiterError::Settings(format!(
                "ttl must be from 1 second to an hour, got {ttl:?}"
            )));
        }
        if key.is_empty() {
            return Err(ArbiterError::Settings("the key must not be empty".into()));
        }
        // A request may take a renewal interval; then the next endpoint is tried.
        let client = EtcdClient::new(&endpoints, keepalive::interval(ttl))?;
        Ok(EtcdArbiter { client, key, ttl })
    }

    pub fn key(&self) -> &str {
        &self.key
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// The etcd client, for calls beyond the arbiter's (tests, operators' tools).
    pub fn client(&self) -> &EtcdClient {
        &self.client
    }

    /// Takes the key as `holder` if nobody holds it: a lease is granted, and the key
    /// created under it only if it does not exist (one etcd transaction). Fails with
    /// [`ArbiterError::Held`] naming the holder otherwise, the same holder name
    /// included (a restarted broker waits for its old lease to expire).
    pub async fn acquire(&self, holder: &str) -> Result<Lease, ArbiterError> {
        let asked = Instant::now();
        let (id, ttl) = self.client.grant(self.ttl).await?;
        let deadline = asked + ttl.saturating_sub(margin(ttl));
        let put = self
            .client
            .put_if_absent(self.key.as_bytes(), holder.as_bytes(), id)
            .await;
        let token = match put {
            Ok(Ok(revision)) if Instant::now() < deadline => revision,
            other => {
                // Not ours, or not known to be: the revoke deletes the key if the put
                // happened after all.
                let _ = self.client.revoke(id).await;
                return Err(match other {
                    Ok(Ok(_)) => ArbiterError::TooSlow,
                    Ok(Err(Some(kv))) => ArbiterError::Held {
                        holder: String::from_utf8_lossy(&kv.value).into_owned(),
                        token: kv.create_revision,
                    },
                    Ok(Err(None)) => ArbiterError::Held {
                        holder: String::new(),
                        token: 0,
                    },
                    Err(e) => e,
                });
            }
        };
        let state = Arc::new(watch::Sender::new(LeaseState {
            deadline,
            lost: None,
        }));
        let renewals = tokio::spawn(keepalive::run(Renewal {
            client: self.client.clone(),
            lease: id,
            key: self.key.as_bytes().to_vec(),
            token,
            ttl,
            state: state.clone(),
        }));
        tracing::info!(key = %self.key, holder, token, lease = id, "arbiter: key acquired");
        Ok(Lease::new(Held {
            client: self.client.clone(),
            id,
            token,
            key: self.key.clone(),
            holder: holder.to_string(),
            ttl,
            state,
            renewals,
        }))
    }

    /// Who holds the key now, if anyone.
    pub async fn holder(&self) -> Result<Option<Holder>, ArbiterError> {
        Ok(self
            .client
            .get(self.key.as_bytes())
            .await?
            .map(|kv| Holder {
                name: String::from_utf8_lossy(&kv.value).into_owned(),
                token: kv.create_revision,
                lease: kv.lease,
            }))
    }
}

impl std::fmt::Debug for EtcdArbiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdArbiter")
            .field("key", &self.key)
            .field("ttl", &self.ttl)
            .finish()
    }
}
