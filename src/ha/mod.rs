//! The HA pair: a primary and a backup broker, one active and one passive, that hand
//! over by themselves and never keep two actives (DESIGN.md §8; Binary Star, which is
//! OpenAMQ's `amq_failover` written up as a pattern).
//!
//! Each member opens a tunnel to the other's `ha` service (spec/tunnel-ha.xml) and sends
//! its state every timeout/2 ([`exchange`]); the state machine generated from
//! `spec/ha.xml` decides what each event does ([`node`]); new connections pass the
//! pair's gate in the broker core ([`admission`]): a passive member refuses ordinary
//! clients with 320 and a text naming the peer, and a client asking after the active
//! member has been silent for longer than the timeout makes it take over. When two
//! actives meet the newer activation epoch ([`epoch`], kept on disk) stays, the primary
//! on a tie; the other steps down: alert, close its clients, hand its messages over
//! (through [`HaHooks::step_down`]), passive. Failback is manual ([`Ha::failback`]).
//!
//! Integration points for replication and an arbiter are in [`hooks`]; the pair works
//! without them. Monotonic time only (`tokio::time::Instant`).

pub mod admission;
mod arbiter;
pub mod epoch;
mod exchange;
pub mod hooks;
pub mod node;
mod replication;
pub mod status;

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex, Weak};
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use crate::broker::Broker;
use crate::config::HaConfig;
use crate::peering::{Backoff, Remote};
use crate::protocol::generated::ha_machine::{Event, State};
use crate::protocol::generated::services::{HA, Ha as HaWrapper, ServiceHandler};
use crate::tunnel::{PEERING_TAG, Tunnel, TunnelConfig, TunnelState, Tunnels};

pub use hooks::{Arbiter, HaHooks, HookFuture, NoHooks};
pub use replication::DRAIN_TIMEOUT;
pub use status::{HaStatus, PeerStatus};

use node::{FollowUp, Node};
use replication::Replication;

/// Unacknowledged states per direction: a state that cannot go now is dropped (the
/// next one says the same, fresher) rather than queued behind stale ones.
const STATE_WINDOW: u32 = 4;

/// The running pair member of one broker.
pub struct Ha {
    node: Arc<Node>,
    replication: Arc<Replication>,
    broker: Weak<Broker>,
    stop: watch::Sender<bool>,
}

/// Each broker's pair member, by broker identifier, for the management API and the
/// features that plug into it.
static REGISTRY: LazyLock<Mutex<HashMap<String, Weak<Ha>>>> = LazyLock::new(Default::default);

/// Why the pair could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("ha.peer: {0}")]
    Peer(#[from] crate::peering::RemoteError),
    #[error("ha.epoch_file: {0}")]
    Epoch(std::io::Error),
    #[error("ha: cannot open the tunnel to the peer: {0}")]
    Tunnel(#[from] crate::tunnel::OpenError),
    #[error("ha.arbiter: {0}")]
    Arbiter(#[from] crate::arbiter::ArbiterError),
}

impl Ha {
    /// Starts `broker` as a member of the pair `config` describes: its gate refuses
    /// clients until the machine says otherwise. Definitions are replicated from the
    /// active member to the passive one, a step-down moves the queued messages to the
    /// winner, and `[ha.arbiter]`, if configured, gates activation.
    pub fn start(broker: &Arc<Broker>, config: &HaConfig) -> Result<Arc<Ha>, StartError> {
        let peer = Remote::from_uri(&config.peer)?;
        let etcd = match &config.arbiter {
            Some(a) => Some(a.arbiter(&config.name)?),
            None => None,
        };
        let epoch = epoch::EpochFile::open(&config.epoch_file).map_err(StartError::Epoch)?;
        let (follow_tx, follow_rx) = mpsc::unbounded_channel();
        let node = Arc::new(Node::new(
            config.role,
            config.timeout,
            peer.clone(),
            epoch,
            broker,
            follow_tx,
        ));
        let (stop, stop_rx) = watch::channel(false);
        // Before anything can activate the member.
        if let Some(etcd) = etcd {
            let lease = arbiter::LeaseArbiter::new();
            node.set_arbiter(Some(lease.clone()));
            let holder = format!("{} {}", config.role.name(), broker.identifier());
            tracing::info!(
                "HA: activation needs the arbiter's key {} (etcd {:?}, ttl {:?})",
                etcd.key(),
                config.arbiter.as_ref().map(|a| &a.endpoints),
                etcd.ttl()
            );
            tokio::spawn(arbiter::run(
                lease,
                etcd,
                holder,
                Arc::downgrade(&node),
                stop_rx.clone(),
            ));
        }
        let replication = Replication::start(broker, &node);
        broker
            .admission()
            .set(Some(Arc::new(admission::Gate(Arc::downgrade(&node)))));
        let tunnels = Tunnels::of(broker);
        exchange::register(&tunnels, &node);
        let mut tunnel_config = TunnelConfig::new(peer);
        tunnel_config.window = STATE_WINDOW;
        let p = &mut tunnel_config.peering;
        p.reconnect = Some(Backoff {
            min: Duration::from_millis(50),
            max: (config.timeout / 2).max(Duration::from_millis(100)),
        });
        p.connect_timeout = config.timeout.max(Duration::from_secs(1));
        p.heartbeat = 1;
        let weak = Arc::downgrade(&node);
        let open = move || {
            let weak = weak.clone();
            tunnels.open(
                tunnel_config.clone(),
                &HA,
                move |_| -> Box<dyn ServiceHandler> {
                    Box::new(HaWrapper(exchange::Receiver {
                        node: weak,
                        answer_with: None,
                    }))
                },
            )
        };
        let tunnel = open()?;
        tokio::spawn(beat(node.clone(), tunnel, open, stop_rx.clone()));
        tokio::spawn(follow_ups(
            node.clone(),
            replication.clone(),
            follow_rx,
            stop_rx,
        ));
        tracing::info!(
            "HA: {} member, peer {}, timeout {:?}, epoch {}",
            config.role.name(),
            node.peer().display(),
            config.timeout,
            node.status().epoch
        );
        let ha = Arc::new(Ha {
            node,
            replication,
            broker: Arc::downgrade(broker),
            stop,
        });
        lock(&REGISTRY).insert(broker.identifier().to_owned(), Arc::downgrade(&ha));
        Ok(ha)
    }

    /// The pair member of `broker`, if it is one.
    pub fn of(broker: &Broker) -> Option<Arc<Ha>> {
        lock(&REGISTRY)
            .get(broker.identifier())
            .and_then(Weak::upgrade)
    }

    pub fn status(&self) -> HaStatus {
        self.node.status()
    }

    pub fn state(&self) -> State {
        self.node.state()
    }

    /// Manual failback to the primary: on the passive primary it activates (its newer
    /// epoch makes the active backup step down); on the active backup it steps down
    /// (the primary, seeing it passive, activates). Err: nothing to do here, with why.
    pub fn failback(&self) -> Result<HaStatus, String> {
        self.manual(Event::Failback, "failback requested by an operator")
    }

    /// Makes this member active although it has not seen an active peer (a backup
    /// whose primary is gone for good). Err: nothing to do here, with why.
    pub fn promote(&self) -> Result<HaStatus, String> {
        self.manual(Event::Promote, "promoted by an operator")
    }

    fn manual(&self, event: Event, why: &str) -> Result<HaStatus, String> {
        match self.node.fire(event, why) {
            Some(_) => Ok(self.status()),
            None => {
                let s = self.status();
                Err(format!(
                    "nothing to do: this broker is the {} {} member{}",
                    s.state,
                    s.role,
                    if event == Event::Promote || s.role == "backup" {
                        ""
                    } else {
                        " (fail back on the active backup, or here when this primary is passive)"
                    }
                ))
            }
        }
    }

    /// The arbiter took the lease away: an active member steps down at once.
    pub fn lost_lease(&self, why: &str) {
        self.node.fire(
            Event::LostLease,
            &format!("lost the arbiter's lease: {why}"),
        );
    }

    /// The replica sink's counters (definitions applied here while passive).
    pub fn sink_counters(&self) -> crate::replication::SinkCounters {
        self.replication.sink().counters()
    }

    /// Whether this member streams its definitions to the peer now (it is active).
    pub fn replicating(&self) -> bool {
        self.replication.source_running()
    }

    /// Installs hooks of a caller's own (see [`HaHooks`]), told after the pair's own
    /// (replication, the step-down's drain), which they do not replace. They are told
    /// the state as it is then (`activated` or `became_passive`; nothing while
    /// pending), then every change; a change just before the call may be told twice.
    pub fn set_hooks(&self, hooks: Arc<dyn HaHooks>) {
        self.node.set_hooks(hooks);
    }

    /// Installs (or removes) the arbiter asked before every activation, in place of
    /// the one `[ha.arbiter]` configured.
    pub fn set_arbiter(&self, arbiter: Option<Arc<dyn Arbiter>>) {
        self.node.set_arbiter(arbiter);
    }

    /// Stops the exchange and removes the gate (at shutdown).
    pub fn stop(&self) {
        let _ = self.stop.send(true);
        self.replication.stop();
        if let Some(broker) = self.broker.upgrade() {
            broker.admission().set(None);
            lock(&REGISTRY).remove(broker.identifier());
        }
    }
}

impl Drop for Ha {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Sends our state every timeout/2 (and at once after a change) and checks the
/// peer's silence every timeout/4, until stopped. States go only while the tunnel is
/// open: one queued while it is down would reach the peer late, saying what is no
/// longer so. A tunnel that failed for good (the peer refused the login or the
/// service) is opened again after the timeout, with a warning.
async fn beat(
    node: Arc<Node>,
    mut tunnel: Tunnel,
    open: impl Fn() -> Result<Tunnel, crate::tunnel::OpenError>,
    mut stop: watch::Receiver<bool>,
) {
    let quarter = (node.timeout() / 4).max(Duration::from_millis(10));
    let mut tick = tokio::time::interval(quarter);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_sent = None;
    // Every other tick (timeout/2), and whenever the state changed since the last send.
    let mut due = true;
    let mut failed_since: Option<tokio::time::Instant> = None;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => break,
        }
        let status = tunnel.status();
        match status.state {
            TunnelState::Open => {
                failed_since = None;
                let state = node.state();
                if due || last_sent != Some(state) {
                    let _ = tunnel.sender().try_send(node.state_message(false));
                    last_sent = Some(state);
                }
            }
            TunnelState::Failed(_) | TunnelState::Closed => {
                let since = *failed_since.get_or_insert_with(|| {
                    tracing::warn!(
                        "HA: the tunnel to the peer {} failed ({}); trying again",
                        node.peer().display(),
                        status.why
                    );
                    tokio::time::Instant::now()
                });
                if since.elapsed() > node.timeout() {
                    tunnel.close().await;
                    match open() {
                        Ok(t) => tunnel = t,
                        Err(e) => tracing::warn!("HA: cannot open the tunnel again: {e}"),
                    }
                    failed_since = None;
                }
            }
            _ => {}
        }
        due = !due;
        node.check_silence();
    }
    tunnel.close().await;
}

/// Runs the slower consequences of changes, in order: the pair's own hooks, then the
/// caller's, and on a step-down closing the clients before the hooks move the messages.
async fn follow_ups(
    node: Arc<Node>,
    own: Arc<Replication>,
    mut rx: mpsc::UnboundedReceiver<FollowUp>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let f = tokio::select! {
            f = rx.recv() => match f { Some(f) => f, None => return },
            _ = stop.wait_for(|s| *s) => return,
        };
        let hooks = node.hooks();
        match f {
            FollowUp::Replay => match node.state() {
                State::Active => hooks.activated(node.epoch(), node.peer()),
                State::Passive => hooks.became_passive(node.peer()),
                State::Pending => {}
            },
            FollowUp::Activated(epoch) => {
                own.activated(epoch, node.peer());
                hooks.activated(epoch, node.peer());
            }
            FollowUp::BecamePassive => {
                own.became_passive(node.peer());
                hooks.became_passive(node.peer());
            }
            FollowUp::StepDown { reason } => {
                let closed = close_clients(&node, &reason);
                tracing::error!(
                    "HA: stepped down ({reason}): closed {closed} client connection(s); moving queued messages to {}",
                    node.peer().display()
                );
                own.step_down(node.peer()).await;
                hooks.step_down(node.peer()).await;
            }
        }
    }
}

/// Closes every connection but the peering ones with a reason naming the peer, so the
/// clients move to it. Returns how many.
fn close_clients(node: &Node, reason: &str) -> usize {
    let Some(broker) = node.broker() else {
        return 0;
    };
    let text = format!(
        "fedamq: this broker stepped down from active in its HA pair ({reason}); connect to {}:{}",
        node.peer().host,
        node.peer().port
    );
    let mut closed = 0;
    for c in broker.connections().list() {
        if broker
            .users()
            .user_tags(&c.user)
            .iter()
            .any(|t| t == PEERING_TAG)
        {
            continue;
        }
        if broker.connections().close(c.id, &text) {
            closed += 1;
        }
    }
    closed
}
