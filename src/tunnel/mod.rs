//! Tunnels: named peer-to-peer channels between two fedamq brokers, carrying the
//! methods of a service defined in spec XML.
//!
//! OpenAMQ designed tunnels and never built them. Here a tunnel is opened by one broker
//! to a service with a logical name on another; it rides a peering connection on a
//! channel of its own, is re-opened after every reconnect, and either side sends the
//! service's methods, which the other side's implementation receives exactly once and
//! in order, however often the connection is cut (`endpoint.rs`). The layers:
//!
//! ```text
//! spec/tunnel.xml, spec/tunnel-*.xml      the tunnel class and the service classes
//!   └─ codegen ─▶ protocol::generated::services   per service: a trait (GreetingService),
//!                                                  a wrapper (Greeting<S>), ServiceInfo
//!   └─ tunnel/ (this module)              endpoint.rs: sequence numbers, window, re-send
//!        opener.rs: the opening side       acceptor.rs: the accepting side, in the
//!        (a Peering + side channel)        connection of the opener's peering
//!   └─ peering/                            the connection, reconnects, side channels
//! ```
//!
//! Adding a service: write its class in an overlay (ids 1000-1999, see spec/README.md),
//! run `cargo xtask codegen`, implement the trait the compiler asks for, and register
//! it ([`Tunnels::register`] for the accepting side; [`Tunnels::open`] for the
//! opening side). The `greeting` service ([`greeting`]) is the example; the `broker`
//! service ([`identity`]) asks a remote fedamq who it is.
//!
//! Only a connection that announced the `tunnels` capability sees tunnel methods, and
//! only a user with the `peering` tag ([`PEERING_TAG`]) may open a tunnel.

mod acceptor;
mod endpoint;
pub mod greeting;
pub mod identity;
mod opener;
mod status;

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex, Weak};

use tokio::sync::{mpsc, oneshot, watch};

use crate::broker::node::Broker;
use crate::peering::{Backoff, Peering, PeeringConfig, Remote};
pub use crate::protocol::generated::services::{SERVICE_CLASS_IDS, service_method_ids};
use crate::protocol::generated::services::{ServiceHandler, ServiceInfo, ServiceMethod};

pub use acceptor::{Acceptor, Attach, FrameWriter};
pub use endpoint::{DEFAULT_WINDOW, SendError, TrySendError, TunnelCounters, TunnelSender};
pub use status::{TunnelState, TunnelStatus};

use endpoint::Endpoint;
use opener::Opener;
use status::StatusBoard;

/// The user tag that allows opening tunnels (RabbitMQ keeps any tag word as given).
pub const PEERING_TAG: &str = "peering";

/// Builds the accepting side's implementation of a service, given the sender it answers
/// with and the opener's identifier.
pub type ServiceFactory = Arc<dyn Fn(TunnelSender, &str) -> Box<dyn ServiceHandler> + Send + Sync>;

/// The tunnels of one broker: the services it accepts, the tunnels others opened to
/// it, and the tunnels it opened.
pub struct Tunnels {
    identifier: String,
    services: Mutex<HashMap<&'static str, (&'static ServiceInfo, ServiceFactory)>>,
    /// By (opener's identifier, service): kept across the opener's reconnects.
    accepted: Mutex<HashMap<(String, &'static str), Arc<Endpoint>>>,
    opened: Mutex<HashMap<(String, &'static str), Weak<Opened>>>,
    window: u32,
}

/// Each broker's tunnels. The broker core knows nothing of the features above it, so
/// the registry is found by the broker's identifier rather than held by the broker.
static REGISTRY: LazyLock<Mutex<HashMap<String, Arc<Tunnels>>>> = LazyLock::new(Default::default);

impl Tunnels {
    /// This broker's tunnels, with the built-in services registered.
    pub fn of(broker: &Arc<Broker>) -> Arc<Tunnels> {
        let mut registry = REGISTRY.lock().unwrap_or_else(|e| e.into_inner());
        registry
            .entry(broker.identifier().to_owned())
            .or_insert_with(|| {
                let t = Arc::new(Tunnels {
                    identifier: broker.identifier().to_owned(),
                    services: Mutex::default(),
                    accepted: Mutex::default(),
                    opened: Mutex::default(),
                    window: DEFAULT_WINDOW,
                });
                greeting::register(&t, broker.identifier());
                identity::register(&t, broker);
                t
            })
            .clone()
    }

    /// Accepts tunnels to `service`: each opener's tunnel gets its own implementation
    /// from `factory`.
    pub fn register(
        &self,
        service: &'static ServiceInfo,
        factory: impl Fn(TunnelSender) -> Box<dyn ServiceHandler> + Send + Sync + 'static,
    ) {
        self.register_per_opener(service, move |sender, _| factory(sender));
    }

    /// As [`Tunnels::register`], for a service whose answers depend on who opened it.
    pub fn register_per_opener(
        &self,
        service: &'static ServiceInfo,
        factory: impl Fn(TunnelSender, &str) -> Box<dyn ServiceHandler> + Send + Sync + 'static,
    ) {
        lock(&self.services).insert(service.name, (service, Arc::new(factory)));
    }

    /// Opens a tunnel to `service` on the remote in `config`, with `handler` as this
    /// side's implementation. One per (remote, service): a second is refused while the
    /// first is still trying (not closed, nor failed for good).
    pub fn open(
        self: &Arc<Self>,
        config: TunnelConfig,
        service: &'static ServiceInfo,
        handler: impl FnOnce(TunnelSender) -> Box<dyn ServiceHandler>,
    ) -> Result<Tunnel, OpenError> {
        let remote = config.peering.remote.display();
        let key = (remote.clone(), service.name);
        let mut opened = lock(&self.opened);
        if let Some(t) = opened.get(&key).and_then(Weak::upgrade) {
            // Its task ended (closed, or failed for good) once nothing hears `close`.
            if !t.close.is_closed() {
                return Err(OpenError::AlreadyOpen {
                    remote,
                    service: service.name,
                });
            }
        }
        let mut peering_config = config.peering;
        peering_config.tunnels = true;
        peering_config.local_identifier = Some(self.identifier.clone());
        peering_config.name = format!("fedamq tunnel {}", service.name);
        let (peering, peering_events) = Peering::new(peering_config);
        let side = peering.side_channel().ok_or(OpenError::NoChannel)?;
        let endpoint = Endpoint::new(service, config.window, handler);
        let board = Arc::new(StatusBoard::new(service.name, remote));
        let (close_tx, close_rx) = mpsc::unbounded_channel();
        let opener = Opener {
            peering,
            side,
            endpoint: endpoint.clone(),
            board: board.clone(),
            identifier: self.identifier.clone(),
            refused_retry: config.refused_retry,
        };
        opener.peering.start();
        tokio::spawn(opener.run(close_rx, peering_events));
        let inner = Arc::new(Opened {
            endpoint,
            board,
            close: close_tx,
        });
        opened.insert(key, Arc::downgrade(&inner));
        Ok(Tunnel { inner })
    }

    /// The tunnels this broker opened, with their status.
    pub fn list(&self) -> Vec<TunnelStatus> {
        let mut out: Vec<TunnelStatus> = lock(&self.opened)
            .values()
            .filter_map(Weak::upgrade)
            .map(|t| t.status())
            .collect();
        out.sort_by(|a, b| (&a.remote, a.service).cmp(&(&b.remote, b.service)));
        out
    }

    /// The tunnels other brokers opened to this one.
    pub fn list_accepted(&self) -> Vec<AcceptedStatus> {
        let mut out: Vec<AcceptedStatus> = lock(&self.accepted)
            .iter()
            .map(|((opener, service), e)| AcceptedStatus {
                service,
                opener: opener.clone(),
                state: if e.attached() {
                    TunnelState::Open
                } else {
                    TunnelState::Retrying
                },
                counters: e.counters(),
            })
            .collect();
        out.sort_by(|a, b| (&a.opener, a.service).cmp(&(&b.opener, b.service)));
        out
    }

    /// The endpoint of the tunnel `opener` opens to `service`, made on first use.
    pub(crate) fn accepted(
        &self,
        opener: &[u8],
        service: &str,
    ) -> Option<(&'static ServiceInfo, Arc<Endpoint>)> {
        let (info, factory) = lock(&self.services).get(service).cloned()?;
        let key = (String::from_utf8_lossy(opener).into_owned(), info.name);
        let endpoint = lock(&self.accepted)
            .entry(key)
            .or_insert_with_key(|(opener, _)| {
                Endpoint::new(info, self.window, |s| factory(s, opener))
            })
            .clone();
        Some((info, endpoint))
    }

    /// A tunnel closed for good: the next open starts afresh.
    pub(crate) fn forget_accepted(&self, key: &(String, &'static str), endpoint: &Arc<Endpoint>) {
        let mut accepted = lock(&self.accepted);
        if accepted.get(key).is_some_and(|e| Arc::ptr_eq(e, endpoint)) {
            accepted.remove(key);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A tunnel another broker opened to this one: `open` while its connection is up,
/// `retrying` while the opener is away (its state waits for it to come back).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AcceptedStatus {
    pub service: &'static str,
    /// The opener's identifier.
    pub opener: String,
    #[serde(flatten)]
    pub state: TunnelState,
    pub counters: TunnelCounters,
}

/// How to open a tunnel.
#[derive(Debug, Clone)]
pub struct TunnelConfig {
    /// The peering the tunnel rides (its remote, heartbeat, …). Its `reconnect`
    /// back-off is the tunnel's after a lost connection: short waits first, growing to
    /// long ones (100 ms to 30 s by default).
    pub peering: PeeringConfig,
    /// Unacknowledged methods per direction before a sender waits.
    pub window: u32,
    /// After the remote refused the tunnel (403, 404, 406): how long until asking
    /// again, growing with each refusal in a row (10 s to 5 min by default).
    pub refused_retry: Backoff,
}

/// The default wait after a refusal: slow, since a refusal is the remote's
/// configuration, which changes seldom.
pub const REFUSED_RETRY: Backoff = Backoff {
    min: std::time::Duration::from_secs(10),
    max: std::time::Duration::from_secs(300),
};

impl TunnelConfig {
    pub fn new(remote: Remote) -> TunnelConfig {
        TunnelConfig {
            peering: PeeringConfig::new(remote),
            window: DEFAULT_WINDOW,
            refused_retry: REFUSED_RETRY,
        }
    }
}

/// Why a tunnel could not be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    #[error("a tunnel to service {service} on {remote} is already open")]
    AlreadyOpen {
        remote: String,
        service: &'static str,
    },
    #[error("the peering has no channel left for the tunnel")]
    NoChannel,
}

struct Opened {
    endpoint: Arc<Endpoint>,
    board: Arc<StatusBoard>,
    close: mpsc::UnboundedSender<oneshot::Sender<()>>,
}

impl Opened {
    fn status(&self) -> TunnelStatus {
        self.board.get(self.endpoint.counters())
    }
}

/// An open tunnel, as its opener holds it. Dropping it closes the tunnel.
pub struct Tunnel {
    inner: Arc<Opened>,
}

impl std::fmt::Debug for Tunnel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Tunnel").field(&self.status()).finish()
    }
}

impl Tunnel {
    /// Sends to the other side's service (see [`TunnelSender::send`]).
    pub async fn send(&self, method: impl ServiceMethod) -> Result<(), SendError> {
        self.inner.endpoint.sender().send(method).await
    }

    pub fn sender(&self) -> TunnelSender {
        self.inner.endpoint.sender()
    }

    pub fn status(&self) -> TunnelStatus {
        self.inner.status()
    }

    /// Every status change, as it happens.
    pub fn watch_status(&self) -> watch::Receiver<TunnelStatus> {
        self.inner.board.watch()
    }

    /// The states it went through, in order, with their reasons.
    pub fn transitions(&self) -> Vec<(TunnelState, String)> {
        self.inner.board.transitions()
    }

    /// Closes the tunnel (`tunnel.close` to the remote if open) and its peering.
    pub async fn close(&self) {
        let (tx, rx) = oneshot::channel();
        if self.inner.close.send(tx).is_ok() {
            let _ = rx.await;
        }
    }
}
