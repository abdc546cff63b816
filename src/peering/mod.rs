//! Peering: a broker object that is an AMQP client of a remote server.
//!
//! Federated exchanges, tunnels and the HA pair all talk to other brokers through a
//! [`Peering`]: one connection to one remote server, with one channel in confirm mode,
//! kept up on its own. Its owner
//!
//! - sends requests ([`Peering::declare_exchange`], [`Peering::bind_queue`],
//!   [`Peering::consume`], … or any synchronous request with [`Peering::request`]) and
//!   gets the remote's `-ok` or its error code back;
//! - publishes with [`Peering::publish`], which completes only when the remote confirms
//!   the message: while the link is down publishes wait in a bounded outbox, and a
//!   publisher finding it full waits for room;
//! - receives deliveries, returns, server-sent cancels and closes as [`PeeringEvent`]s,
//!   and acks each delivery upstream only once it has taken it ([`Acker`]), so a crash
//!   in between loses nothing;
//! - watches the [`PeeringStatus`] (or registers a handler for every change, with its
//!   reason).
//!
//! After a failure (socket error, two heartbeat intervals of silence, connection.close
//! from the remote with any code) the peering backs off (exponentially, with jitter),
//! reconnects, replays its declared state (exchanges and queues it declared, bindings
//! deduplicated on key and arguments, its consumers and qos), sends the requests that
//! waited, then the outbox: first what was in flight when the link went, which may reach
//! the remote twice, so it is counted as resent and marked as the owner asks
//! ([`PeeringConfig::mark_resent`]). A remote error never stops the local broker: it
//! shows in the status with its code and the peering tries again. Peering to ourselves
//! is detected (the remote's `identifier` server property) and refused.
//!
//! ```
//! use bytes::Bytes;
//! use fedamq::peering::{Peering, PeeringConfig, PeeringEvent, Remote, outliving_queue};
//! use fedamq::protocol::ShortString;
//! use fedamq::protocol::generated::methods::{BasicConsume, BasicPublish, QueueBind};
//! use fedamq::protocol::generated::properties::EncodedBasicProperties;
//! use std::time::Duration;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! # let mut config = fedamq::config::Config::default();
//! # config.port = 0;
//! # config.management.port = None;
//! # let upstream = fedamq::Server::start(config).await.unwrap();
//! # let url = upstream.url("guest", "guest");
//! // A parent object (a federated exchange, say) links to a remote broker:
//! let (peering, mut events) =
//!     Peering::new(PeeringConfig::new(Remote::from_uri(&url).unwrap()));
//! peering.start();
//!
//! // A queue upstream that outlives a short disconnect, bound and consumed from.
//! let q = peering
//!     .declare_queue(outliving_queue("site-b.inbox", Duration::from_secs(600)))
//!     .await
//!     .unwrap();
//! peering
//!     .bind_queue(QueueBind {
//!         queue: q.queue.clone(),
//!         exchange: ShortString::from_static("amq.topic"),
//!         routing_key: ShortString::from_static("orders.#"),
//!         ..Default::default()
//!     })
//!     .await
//!     .unwrap();
//! peering
//!     .consume(BasicConsume { queue: q.queue, ..Default::default() })
//!     .await
//!     .unwrap();
//!
//! // Forward a message upstream: done once the remote has confirmed it.
//! let publish = BasicPublish {
//!     exchange: ShortString::from_static("amq.topic"),
//!     routing_key: ShortString::from_static("orders.new"),
//!     ..Default::default()
//! };
//! peering
//!     .publish(publish, EncodedBasicProperties::default(), Bytes::from_static(b"hi"))
//!     .await
//!     .unwrap();
//!
//! // It comes back through the binding; ack it once it is ours.
//! let Some(PeeringEvent::Delivery(d)) = events.recv().await else { panic!() };
//! assert_eq!(&d.body[..], b"hi");
//! d.acker.ack();
//!
//! peering.stop().await;
//! # upstream.shutdown().await;
//! # }
//! ```

mod config;
mod declared;
mod error;
mod link;
mod outbox;
mod status;
mod task;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{Semaphore, mpsc, oneshot, watch};

use crate::protocol::generated::methods::{
    BasicCancel, BasicConsume, BasicPublish, BasicQos, ExchangeDeclare, Method, QueueBind,
    QueueDeclare, QueueDeclareOk, QueueUnbind,
};
use crate::protocol::generated::properties::EncodedBasicProperties;
use crate::protocol::{FieldTable, FieldValue, ShortString};

pub use config::{Backoff, MarkResent, OutboxLimits, PeeringConfig, Remote, RemoteError};
pub use error::PeeringError;
pub use status::{Counters, LastError, PeeringState, PeeringStatus, StatusChange};
pub use task::side::{SideChannel, SideEvent, SideSender};

use outbox::Outgoing;
use task::{Command, Settle};

/// What the remote sends the owner.
#[derive(Debug)]
pub enum PeeringEvent {
    Delivery(Delivery),
    /// A mandatory publish the remote could not route.
    Returned(Returned),
    /// The remote cancelled one of our consumers (its queue went); it is not replayed.
    Cancelled(ShortString),
    /// channel.flow from the remote.
    Flow(bool),
    /// The remote closed our channel (a soft error); the peering has reopened it.
    ChannelClosed {
        code: u16,
        text: String,
    },
    /// The remote closed the connection; the peering reconnects if asked to.
    ConnectionClosed {
        code: u16,
        text: String,
    },
}

/// A message from one of our consumers upstream.
#[derive(Debug)]
pub struct Delivery {
    pub consumer_tag: ShortString,
    pub exchange: ShortString,
    pub routing_key: ShortString,
    pub redelivered: bool,
    pub properties: EncodedBasicProperties,
    pub body: Bytes,
    /// Acks it upstream: call once the message is safely taken.
    pub acker: Acker,
}

/// A returned (unroutable mandatory) publish.
#[derive(Debug)]
pub struct Returned {
    pub reply_code: u16,
    pub reply_text: ShortString,
    pub exchange: ShortString,
    pub routing_key: ShortString,
    pub properties: EncodedBasicProperties,
    pub body: Bytes,
}

/// Settles one delivery upstream. Dropping it settles nothing: the remote redelivers
/// the message after the next reconnect.
#[derive(Debug)]
pub struct Acker {
    commands: mpsc::WeakUnboundedSender<Command>,
    incarnation: u64,
    /// The incarnation whose channel is open now (the task moves it on when the
    /// connection or channel ends).
    live: Arc<std::sync::atomic::AtomicU64>,
    delivery_tag: u64,
    no_ack: bool,
}

impl Acker {
    /// The delivery came on a channel or connection that has ended: the remote has
    /// requeued it and will deliver it again, so the owner may drop it unsettled
    /// instead of taking a copy it will get anyway.
    pub fn is_stale(&self) -> bool {
        self.live.load(std::sync::atomic::Ordering::Acquire) != self.incarnation
    }

    /// The owner has the message: the remote may forget it.
    pub fn ack(self) {
        self.settle(Settle::Ack);
    }

    /// The owner cannot take it: the remote requeues it (or drops or dead-letters it).
    pub fn reject(self, requeue: bool) {
        self.settle(Settle::Reject { requeue });
    }

    fn settle(self, settle: Settle) {
        if self.no_ack {
            return;
        }
        if let Some(tx) = self.commands.upgrade() {
            let _ = tx.send(Command::Settle {
                incarnation: self.incarnation,
                delivery_tag: self.delivery_tag,
                settle,
            });
        }
    }
}

/// A named queue that outlives a short disconnect: not exclusive, not auto-delete, and
/// deleted by the remote only after `expires` unused (`x-expires`), so what the remote
/// routes to it while the link is down waits there.
pub fn outliving_queue(name: &str, expires: Duration) -> QueueDeclare {
    let ms = i64::try_from(expires.as_millis()).unwrap_or(i64::MAX);
    QueueDeclare {
        queue: ShortString::new(name.to_owned()).unwrap_or_default(),
        arguments: [(ShortString::from_static("x-expires"), FieldValue::I64(ms))]
            .into_iter()
            .collect::<FieldTable>(),
        ..Default::default()
    }
}

/// One peering. Dropping it closes the connection (as [`Peering::stop`] does, without
/// waiting).
pub struct Peering {
    commands: mpsc::UnboundedSender<Command>,
    status: watch::Receiver<PeeringStatus>,
    handler: Arc<Mutex<Option<status::StatusHandler>>>,
    properties: Arc<Mutex<Option<FieldTable>>>,
    room_messages: Arc<Semaphore>,
    room_bytes: Arc<Semaphore>,
    bytes_limit: u32,
    /// The next side channel's number (channel 1 is the peering's own).
    next_side: std::sync::atomic::AtomicU16,
}

impl std::fmt::Debug for Peering {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peering")
            .field("status", &*self.status.borrow())
            .finish()
    }
}

impl Peering {
    /// Makes the peering (its task is spawned on the current tokio runtime) without
    /// connecting; the receiver gets what the remote sends the owner.
    pub fn new(config: PeeringConfig) -> (Peering, mpsc::UnboundedReceiver<PeeringEvent>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let (board, status, handler) = status::StatusBoard::new();
        let limits = config.outbox;
        let bytes_limit = u32::try_from(limits.bytes.max(1)).unwrap_or(u32::MAX);
        let properties = board.properties.clone();
        tokio::spawn(task::run(config, rx, tx.downgrade(), events_tx, board));
        let peering = Peering {
            commands: tx,
            status,
            handler,
            properties,
            room_messages: Arc::new(Semaphore::new(limits.messages.max(1))),
            room_bytes: Arc::new(Semaphore::new(bytes_limit as usize)),
            bytes_limit,
            next_side: std::sync::atomic::AtomicU16::new(2),
        };
        (peering, events_rx)
    }

    /// Calls `handler` with every status change and its reason, in order.
    pub fn on_status(&self, handler: impl Fn(&StatusChange) + Send + Sync + 'static) {
        if let Ok(mut h) = self.handler.lock() {
            *h = Some(Arc::new(handler));
        }
    }

    /// Connects (and keeps connecting, if reconnection is on).
    /// Another channel on this peering's connection, for an owner that speaks its own
    /// methods on it (see [`SideChannel`]); `None` when the link's channels are used up.
    pub fn side_channel(&self) -> Option<SideChannel> {
        use std::sync::atomic::Ordering;
        let channel = self
            .next_side
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |c| {
                (c <= link::CHANNEL_MAX).then_some(c + 1)
            })
            .ok()?;
        let (tx, events) = mpsc::unbounded_channel();
        self.commands.send(Command::AttachSide(channel, tx)).ok()?;
        Some(SideChannel {
            channel,
            events,
            commands: self.commands.clone(),
        })
    }

    pub fn start(&self) {
        let _ = self.commands.send(Command::Start);
    }

    pub fn status(&self) -> PeeringStatus {
        self.status.borrow().clone()
    }

    /// For waiting on status changes.
    pub fn watch_status(&self) -> watch::Receiver<PeeringStatus> {
        self.status.clone()
    }

    /// Closes the connection cleanly (connection.close, then close-ok or the close
    /// timeout); pending publishes and requests fail with [`PeeringError::Stopped`].
    pub async fn stop(&self) {
        let (tx, rx) = oneshot::channel();
        if self.commands.send(Command::Stop(tx)).is_ok() {
            let _ = rx.await;
        }
    }

    /// The server properties of the last connection made (`None` before the first):
    /// a federation link reads the remote's `cluster_name` from them.
    pub fn server_properties(&self) -> Option<FieldTable> {
        self.properties.lock().ok().and_then(|p| p.clone())
    }

    /// Sends any synchronous request on the peering's channel and waits for the answer.
    /// Declarations, bindings, consumers and qos become part of the declared state and
    /// are replayed after a reconnect; unbind, cancel and delete remove what they undo.
    pub async fn request(&self, method: impl Into<Method>) -> Result<Method, PeeringError> {
        self.pipelined(method).await
    }

    /// As [`Peering::request`], but the request is queued when this is called, not when
    /// the future is first polled: requests made one after another go out back to back
    /// and in that order, each answered in turn (many bindings cost one round trip, not
    /// one each).
    pub fn pipelined(
        &self,
        method: impl Into<Method>,
    ) -> impl Future<Output = Result<Method, PeeringError>> + Send + 'static {
        let (tx, rx) = oneshot::channel();
        let sent = self.commands.send(Command::Request(method.into(), tx));
        async move {
            sent.map_err(|_| PeeringError::Stopped)?;
            rx.await.unwrap_or(Err(PeeringError::Stopped))
        }
    }

    pub async fn declare_exchange(&self, m: ExchangeDeclare) -> Result<(), PeeringError> {
        self.request(m).await.map(drop)
    }

    /// A queue with an empty name is named by the peering (not the server), so that the
    /// same name is declared again after a reconnect.
    pub async fn declare_queue(&self, m: QueueDeclare) -> Result<QueueDeclareOk, PeeringError> {
        match self.request(m).await? {
            Method::QueueDeclareOk(ok) => Ok(ok),
            other => Err(unexpected(other)),
        }
    }

    pub async fn bind_queue(&self, m: QueueBind) -> Result<(), PeeringError> {
        self.request(m).await.map(drop)
    }

    pub async fn unbind_queue(&self, m: QueueUnbind) -> Result<(), PeeringError> {
        self.request(m).await.map(drop)
    }

    pub async fn qos(&self, prefetch_count: u16) -> Result<(), PeeringError> {
        self.request(BasicQos {
            prefetch_count,
            ..Default::default()
        })
        .await
        .map(drop)
    }

    /// Starts a consumer and returns its tag (made up by the peering when empty, so it
    /// stays the same across reconnects).
    pub async fn consume(&self, m: BasicConsume) -> Result<ShortString, PeeringError> {
        match self.request(m).await? {
            Method::BasicConsumeOk(ok) => Ok(ok.consumer_tag),
            other => Err(unexpected(other)),
        }
    }

    pub async fn cancel(&self, consumer_tag: ShortString) -> Result<(), PeeringError> {
        self.request(BasicCancel {
            consumer_tag,
            no_wait: false,
        })
        .await
        .map(drop)
    }

    /// Publishes to the remote. Completes when the remote confirms the message; while the
    /// outbox is full it first waits for room.
    pub async fn publish(
        &self,
        method: BasicPublish,
        properties: EncodedBasicProperties,
        body: Bytes,
    ) -> Result<(), PeeringError> {
        let one = self
            .room_messages
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| PeeringError::Stopped)?;
        // A body larger than the whole byte limit takes all of it (it goes alone).
        let size = u32::try_from(body.len() + properties.as_bytes().len())
            .unwrap_or(u32::MAX)
            .min(self.bytes_limit);
        let bytes = if size == 0 {
            None
        } else {
            Some(
                self.room_bytes
                    .clone()
                    .acquire_many_owned(size)
                    .await
                    .map_err(|_| PeeringError::Stopped)?,
            )
        };
        let (done, rx) = oneshot::channel();
        self.commands
            .send(Command::Publish(Outgoing {
                method,
                properties,
                body,
                done,
                resent: false,
                _room: (one, bytes),
            }))
            .map_err(|_| PeeringError::Stopped)?;
        rx.await.unwrap_or(Err(PeeringError::Stopped))
    }
}

fn unexpected(m: Method) -> PeeringError {
    PeeringError::Refused {
        code: crate::protocol::ReplyCode::CommandInvalid.code(),
        text: format!("unexpected answer {}", m.name()),
    }
}
