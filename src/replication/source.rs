//! The sending side: a tunnel to a remote broker's `replica` service, and a task that
//! sends it this broker's definitions: a snapshot first (and again whenever the sink
//! asks), then every change.
//!
//! The task wakes on the core's change notices: each vhost's topology events
//! (exchanges, queues, bindings, policies, parameters), the user table's watch (users,
//! permissions) and the broker's definitions watch (vhosts, global parameters). On each
//! wake it collects the definitions and sends the difference from what it sent last,
//! so changes made in a burst arrive as one ordered `change`, and changes made while
//! the tunnel is down (the send waits in the tunnel's window) are not lost: the next
//! difference carries them, deletions included. The tunnel itself delivers each method
//! once and in order across reconnects.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;

use crate::broker::Broker;
use crate::broker::events::DEFAULT_CAPACITY;
use crate::peering::Remote;
use crate::protocol::generated::methods::{Method, ReplicaChange, ReplicaResync, ReplicaSnapshot};
use crate::protocol::generated::services::{REPLICA, Replica, ReplicaService};
use crate::tunnel::{OpenError, Tunnel, TunnelConfig, TunnelSender, TunnelStatus, Tunnels};

use super::definition::{Change, Def, State, collect, diff};

/// The largest piece of JSON one method carries (well under any frame size).
const PART: usize = 32 * 1024;

/// What a source sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SourceCounters {
    pub snapshots_sent: u64,
    /// Definition changes sent (a `change` method may carry several).
    pub changes_sent: u64,
    /// Snapshots the sink asked for.
    pub resyncs_received: u64,
}

/// Replication of this broker's definitions to one remote; stops when dropped.
pub struct Source {
    tunnel: Arc<Tunnel>,
    counters: Arc<Mutex<SourceCounters>>,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Source")
            .field("tunnel", &self.tunnel.status())
            .field("counters", &self.counters())
            .finish()
    }
}

impl Drop for Source {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The source side's service: it only hears `resync`.
struct Requests(mpsc::UnboundedSender<String>);

impl ReplicaService for Requests {
    fn snapshot(&mut self, _: ReplicaSnapshot) {}
    fn change(&mut self, _: ReplicaChange) {}
    fn resync(&mut self, m: ReplicaResync) {
        let _ = self.0.send(m.reason.to_string());
    }
}

impl Source {
    /// Opens the `replica` tunnel to `remote` (a peering login there) and starts sending.
    /// Refused if this broker already replicates to that remote.
    pub fn start(broker: &Arc<Broker>, remote: Remote) -> Result<Source, OpenError> {
        Source::start_with(broker, TunnelConfig::new(remote))
    }

    /// [`Source::start`] with the tunnel's own settings (its peering's heartbeat,
    /// reconnect back-off, window).
    pub fn start_with(broker: &Arc<Broker>, config: TunnelConfig) -> Result<Source, OpenError> {
        let (tx, resyncs) = mpsc::unbounded_channel();
        let tunnel = Arc::new(
            Tunnels::of(broker).open(config, &REPLICA, move |_| Box::new(Replica(Requests(tx))))?,
        );
        let counters = Arc::new(Mutex::new(SourceCounters::default()));
        let task = tokio::spawn(run(
            broker.clone(),
            tunnel.sender(),
            resyncs,
            counters.clone(),
        ));
        Ok(Source {
            tunnel,
            counters,
            task,
        })
    }

    pub fn counters(&self) -> SourceCounters {
        *self.counters.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The tunnel's status (open, retrying, …) and counters.
    pub fn status(&self) -> TunnelStatus {
        self.tunnel.status()
    }

    /// Stops sending and closes the tunnel, telling the remote.
    pub async fn stop(self) {
        self.task.abort();
        self.tunnel.close().await;
    }
}

/// The topology subscriptions of the vhosts, each waking the task on every notice.
struct Watchers {
    wake: Arc<Notify>,
    by_vhost: HashMap<String, JoinHandle<()>>,
}

impl Watchers {
    /// Subscribes to the vhosts not yet followed; forgets those that are gone.
    fn refresh(&mut self, broker: &Broker) {
        self.by_vhost.retain(|_, t| !t.is_finished());
        for name in broker.vhost_names() {
            if self.by_vhost.contains_key(&name) {
                continue;
            }
            let Some(vhost) = broker.vhost(&name) else {
                continue;
            };
            let (_, _, mut sub) = vhost.subscribe_topology(DEFAULT_CAPACITY);
            let wake = self.wake.clone();
            let task = tokio::spawn(async move {
                while sub.recv().await.is_some() {
                    wake.notify_one();
                }
                wake.notify_one();
            });
            self.by_vhost.insert(name, task);
        }
    }
}

impl Drop for Watchers {
    fn drop(&mut self) {
        for t in self.by_vhost.values() {
            t.abort();
        }
    }
}

async fn run(
    broker: Arc<Broker>,
    sender: TunnelSender,
    mut resyncs: mpsc::UnboundedReceiver<String>,
    counters: Arc<Mutex<SourceCounters>>,
) {
    let count = |f: &dyn Fn(&mut SourceCounters)| {
        f(&mut counters.lock().unwrap_or_else(|e| e.into_inner()))
    };
    let mut users = broker.users().watch();
    let mut definitions = broker.watch_definitions();
    let mut watchers = Watchers {
        wake: Arc::new(Notify::new()),
        by_vhost: HashMap::new(),
    };
    let mut serial = 0u64;
    let mut last: Option<State> = None;
    loop {
        // Subscribed before collecting: a change after the collection wakes us.
        watchers.refresh(&broker);
        users.mark_unchanged();
        definitions.mark_unchanged();
        let now = collect(&broker);
        serial += 1;
        let sent = match &last {
            None => {
                count(&|c| c.snapshots_sent += 1);
                send_snapshot(&sender, serial, &now).await
            }
            Some(before) => {
                let changes = diff(before, &now);
                let n = changes.len() as u64;
                count(&|c| c.changes_sent += n);
                send_changes(&sender, serial, changes).await
            }
        };
        if sent.is_err() {
            return;
        }
        last = Some(now);
        tokio::select! {
            _ = watchers.wake.notified() => {}
            r = users.changed() => if r.is_err() { return },
            r = definitions.changed() => if r.is_err() { return },
            reason = resyncs.recv() => {
                let Some(reason) = reason else { return };
                tracing::info!("replication: the sink asks for a snapshot ({reason})");
                count(&|c| c.resyncs_received += 1);
                // Several asks in a row need one snapshot.
                while resyncs.try_recv().is_ok() {}
                last = None;
            }
        }
    }
}

async fn send_snapshot(
    sender: &TunnelSender,
    serial: u64,
    state: &State,
) -> Result<(), crate::tunnel::SendError> {
    let defs: Vec<&Def> = state.values().collect();
    let json = serde_json::to_vec(&defs).unwrap_or_else(|_| b"[]".to_vec());
    let json = Bytes::from(json);
    let parts = json.len().div_ceil(PART).max(1);
    for part in 0..parts {
        let items = json.slice((part * PART).min(json.len())..((part + 1) * PART).min(json.len()));
        sender
            .send(Method::ReplicaSnapshot(ReplicaSnapshot {
                serial,
                part: u32::try_from(part).unwrap_or(u32::MAX),
                last: part + 1 == parts,
                items,
            }))
            .await?;
    }
    Ok(())
}

async fn send_changes(
    sender: &TunnelSender,
    serial: u64,
    changes: Vec<Change>,
) -> Result<(), crate::tunnel::SendError> {
    let mut batch: Vec<serde_json::Value> = Vec::new();
    let mut size = 0;
    let mut changes = changes.into_iter().peekable();
    while let Some(c) = changes.next() {
        let v = serde_json::to_value(&c).unwrap_or_default();
        size += v.to_string().len();
        batch.push(v);
        if size >= PART || changes.peek().is_none() {
            let items = Bytes::from(serde_json::to_vec(&batch).unwrap_or_default());
            sender
                .send(Method::ReplicaChange(ReplicaChange { serial, items }))
                .await?;
            batch.clear();
            size = 0;
        }
    }
    Ok(())
}
