//! [`Broker`]: the core object everything else holds.
//!
//! API Boundary: the server, client connections and every broker object (peerings,
//! federation, tunnels, the HA pair, the management API) reach the broker's state
//! through an `Arc<Broker>`: its vhosts (added and removed at run time), its users and
//! permissions, its open connections, its memory gauge and alarm. Inside a vhost,
//! topology changes go through [`VHost::apply`], publishing through
//! [`crate::broker::publish`] and consuming through consumers added to queues.
//!
//! Architecture Invariant: the core knows nothing of sockets or of the features built on
//! it; it tells them what happened through topology events, binding notices and
//! connection mailboxes.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock, RwLockReadGuard};

use tokio::sync::watch;

use super::admission::Gate;
use super::connections::Connections;
use super::error::{AmqpError, AmqpResult};
use super::hash::HashMap;
use super::memory::MemoryGauge;
use super::publish::{InternalPublisher, PublishTotals};
use super::vhost::{VHost, VHostLimits};
use crate::auth::Users;
use crate::config::Config;

#[derive(Debug)]
pub struct Broker {
    config: Config,
    users: Users,
    vhosts: RwLock<HashMap<String, Arc<VHost>>>,
    limits: VHostLimits,
    connections: Arc<Connections>,
    /// Who may open a connection beyond authentication (the HA pair's gate).
    admission: Gate,
    /// A random identifier of this broker process (server property `identifier`).
    identifier: String,
    /// What the broker holds, in bytes, as the memory high watermark counts it: see
    /// [`crate::broker::memory`].
    memory: MemoryGauge,
    /// True while the memory high watermark is exceeded.
    alarm: watch::Sender<bool>,
    /// What every publisher did (see [`crate::broker::publish`]).
    publish_totals: Arc<PublishTotals>,
    /// Runtime parameters of no vhost (`set_global_parameter`), by name.
    global_parameters: RwLock<BTreeMap<String, serde_json::Value>>,
    /// Bumped when a vhost is added or deleted or a global parameter changes.
    definitions: watch::Sender<u64>,
    /// When this broker was made, for its uptime.
    started: std::time::Instant,
}

impl Broker {
    /// A broker with the configured vhosts and users, serving nobody yet.
    pub fn new(config: Config) -> Arc<Broker> {
        use rand::Rng;
        let limits = VHostLimits {
            max_queues: config.limits.max_queues,
            max_exchanges: config.limits.max_exchanges,
        };
        let memory = MemoryGauge::default();
        let vhosts = config
            .vhosts
            .iter()
            .map(|name| (name.clone(), VHost::with_memory(name, limits, &memory)))
            .collect();
        Arc::new(Broker {
            users: config.user_table(),
            config,
            vhosts: RwLock::new(vhosts),
            limits,
            connections: Arc::default(),
            admission: Gate::default(),
            identifier: format!("fedamq-{:016x}", rand::rng().random::<u64>()),
            memory,
            alarm: watch::channel(false).0,
            publish_totals: Arc::default(),
            global_parameters: RwLock::default(),
            definitions: watch::channel(0).0,
            started: std::time::Instant::now(),
        })
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn users(&self) -> &Users {
        &self.users
    }

    /// The gate every login passes at connection.open (see [`super::admission`]).
    pub fn admission(&self) -> &Gate {
        &self.admission
    }

    pub fn identifier(&self) -> &str {
        &self.identifier
    }

    /// How long this broker has run.
    pub fn uptime(&self) -> std::time::Duration {
        self.started.elapsed()
    }

    pub fn memory(&self) -> &MemoryGauge {
        &self.memory
    }

    pub fn connections(&self) -> &Arc<Connections> {
        &self.connections
    }

    /// What every publisher in the broker did, added to once per publisher batch.
    pub fn publish_totals(&self) -> &Arc<PublishTotals> {
        &self.publish_totals
    }

    /// Follows the memory alarm: true while publishers are blocked.
    pub fn alarm(&self) -> watch::Receiver<bool> {
        self.alarm.subscribe()
    }

    /// Raises or clears the memory alarm; true if that changed it.
    pub fn set_alarm(&self, on: bool) -> bool {
        self.alarm
            .send_if_modified(|a| std::mem::replace(a, on) != on)
    }

    /// A publisher for a broker object, into `vhost`.
    pub fn internal_publisher(&self, vhost: &str) -> Option<InternalPublisher> {
        let vhost = self.vhost(vhost)?;
        Some(InternalPublisher::new(
            vhost,
            self.memory.clone(),
            self.publish_totals.clone(),
        ))
    }

    fn vhosts_read(&self) -> RwLockReadGuard<'_, HashMap<String, Arc<VHost>>> {
        self.vhosts.read().unwrap_or_else(|p| p.into_inner())
    }

    pub fn vhost(&self, name: &str) -> Option<Arc<VHost>> {
        self.vhosts_read().get(name).cloned()
    }

    /// The vhost names, sorted.
    pub fn vhost_names(&self) -> Vec<String> {
        let mut names: Vec<_> = self.vhosts_read().keys().cloned().collect();
        names.sort();
        names
    }

    /// Wakes on every vhost added or deleted and every global parameter set or cleared
    /// (users and permissions: [`Users::watch`]; a vhost's contents: its topology events).
    pub fn watch_definitions(&self) -> watch::Receiver<u64> {
        self.definitions.subscribe()
    }

    fn definitions_changed(&self) {
        self.definitions.send_modify(|n| *n += 1);
    }

    /// Adds a vhost; adding one that exists is fine (as RabbitMQ's PUT).
    pub fn add_vhost(&self, name: &str) -> AmqpResult<Arc<VHost>> {
        if name.is_empty() || name.len() > 255 {
            return Err(AmqpError::precondition_failed(format!(
                "invalid vhost name '{name}'"
            )));
        }
        let mut map = self.vhosts.write().unwrap_or_else(|p| p.into_inner());
        let mut added = false;
        let vhost = map
            .entry(name.to_string())
            .or_insert_with(|| {
                added = true;
                VHost::with_memory(name, self.limits, &self.memory)
            })
            .clone();
        drop(map);
        if added {
            self.definitions_changed();
        }
        Ok(vhost)
    }

    /// This node's name in a federation graph: the global parameter `cluster_name` (a
    /// JSON string, as RabbitMQ's `set_cluster_name` stores it), else the configured
    /// `cluster_name`, else `fedamq@<host name>`.
    pub fn cluster_name(&self) -> String {
        let set = self
            .global_parameters
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get("cluster_name")
            .and_then(|v| v.as_str().map(str::to_owned));
        set.or_else(|| self.config.cluster_name.clone())
            .unwrap_or_else(|| format!("fedamq@{}", host_name()))
    }

    /// Sets a global runtime parameter (`rabbitmqctl set_global_parameter`): broker-wide
    /// settings kept for definitions and the management API, with no behaviour here.
    pub fn set_global_parameter(&self, name: &str, value: serde_json::Value) {
        self.global_parameters
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_owned(), value);
        self.definitions_changed();
    }

    /// Removes a global parameter; false if there was none.
    pub fn clear_global_parameter(&self, name: &str) -> bool {
        let removed = self
            .global_parameters
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name)
            .is_some();
        if removed {
            self.definitions_changed();
        }
        removed
    }

    /// The global parameters, by name.
    pub fn global_parameters(&self) -> Vec<(String, serde_json::Value)> {
        let map = self
            .global_parameters
            .read()
            .unwrap_or_else(|p| p.into_inner());
        map.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }

    /// Deletes a vhost: its connections are closed (320, as in RabbitMQ), its queues and
    /// exchanges dropped, its subscriptions ended, its permissions removed. False if there was no such vhost.
    pub fn delete_vhost(&self, name: &str) -> bool {
        let removed = self
            .vhosts
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name);
        let Some(vhost) = removed else {
            return false;
        };
        self.connections
            .close_vhost(name, &format!("vhost '{name}' is deleted"));
        for q in vhost.queues() {
            vhost.remove_queue(&q, super::topology::Removal::VHostDeleted);
        }
        vhost.close_subscriptions();
        // Its permissions go with it, as in RabbitMQ.
        self.users.clear_vhost(name);
        self.definitions_changed();
        true
    }
}

/// The machine's host name, as the kernel has it (`localhost` where it cannot be read),
/// read once.
fn host_name() -> &'static str {
    static NAME: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    NAME.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .or_else(|_| std::fs::read_to_string("/etc/hostname"))
            .ok()
            .map(|h| h.trim().to_owned())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "localhost".into())
    })
}
