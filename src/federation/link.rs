//! One federation link: a local exchange × one upstream. In the subscribing modes
//! (subscriber, RabbitMQ's behaviour; fanout; service) the link declares on the
//! upstream, through its own peering, as RabbitMQ's plugin does:
//!
//! - the upstream exchange (passively; declared like the local one if missing);
//! - the upstream queue `federation: <upstream-x> -> <cluster-name>[:<x>]`, durable,
//!   with `x-expires` and `x-message-ttl` from the upstream, so what is routed to it
//!   while the link is down waits there;
//! - the internal exchange `<queue> A|B` of type `x-federation-upstream` (fanout where
//!   the upstream lacks it), bound to the queue;
//! - one exchange-to-exchange binding from the upstream exchange to the internal one
//!   per distinct local binding (with `x-bound-from`), kept in step through a binding
//!   subscription and sent pipelined;
//!
//! then consumes the queue with the upstream's prefetch, republishes each message to
//! the local exchange with an `x-received-from` entry, and acks it upstream per
//! `ack-mode` (by default only once the local queues took it). The peering replays all
//! of this after a reconnect; the link only reacts to what changes.
//!
//! In the forwarding modes (publisher, locator, fanout, service) the link also takes
//! what its exchange hook (`super::forward`) queued, publishes it to the upstream
//! exchange through the peering's confirmed outbox, and hands the upstream's returns to
//! the original publishers. A forward the outbox sends again after a lost connection
//! (it may reach the upstream twice) is flagged `redelivered` in its `x-received-from`
//! entry, as a message brought down again is.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::SystemTime;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinSet;

use super::forward::{Backlog, Forward, Forwarder};
use super::headers::{
    BindingHop, Origin, bound_from, mark_forward_resent, prepend_forwarded_from,
    prepend_received_from,
};
use super::status::{LinkCounters, LinkState, LinkStatus};
use super::upstream::{AckMode, Mode, Upstream};
use super::upstream_view;
use crate::broker::Broker;
use crate::broker::exchange::ExchangeSpec;
use crate::broker::exchange_hook::{ExchangeHook, PublishSource};
use crate::broker::message::MessageRef;
use crate::broker::publish::{Confirm, InternalPublisher};
use crate::broker::routing::upstream::{
    DOWNSTREAM_NAME_ARG, DOWNSTREAM_VHOST_ARG, MAX_HOPS_ARG, should_forward,
};
use crate::broker::topology::{
    BindingNotice, BindingSubscription, DEFAULT_CAPACITY, DistinctBinding,
};
use crate::broker::vhost::VHost;
use crate::peering::{
    Backoff, Delivery, OutboxLimits, Peering, PeeringConfig, PeeringError, PeeringEvent,
    PeeringState, PeeringStatus, Remote, Returned, StatusChange,
};
use crate::protocol::arguments::arguments_key;
use crate::protocol::generated::methods::{
    BasicConsume, BasicPublish, ExchangeBind, ExchangeDeclare, ExchangeDelete, ExchangeUnbind,
    QueueBind, QueueDeclare, QueueDelete,
};
use crate::protocol::generated::properties::EncodedBasicProperties;
use crate::protocol::{FieldTable, FieldValue, ReplyCode, ShortString};

/// Forwards published to the peering and not yet confirmed, at most. The peering's
/// outbox has room for more (the [`Backlog`] holds publishers back well before), so a
/// forward is queued there at once and forwards go up in the order they were made.
const FORWARDS_IN_FLIGHT: usize = Backlog::HIGH;

/// The reason a link shows `blocked` for the downstream's memory alarm.
const ALARM: &str = "downstream memory alarm";

/// A forward's id and how the upstream took it.
type ForwardOutcome = (u64, Result<(), PeeringError>);

/// What a link is started with.
pub(super) struct LinkSpec {
    pub broker: Arc<Broker>,
    pub vhost: Arc<VHost>,
    pub exchange: ExchangeSpec,
    pub upstream: Upstream,
    pub cluster_name: String,
    pub id: String,
}

/// A running link, as the federation holds it.
pub(super) struct Link {
    pub upstream: Upstream,
    pub exchange: ExchangeSpec,
    pub status: Arc<Mutex<LinkStatus>>,
    stop: Option<oneshot::Sender<bool>>,
}

impl Link {
    pub fn start(spec: LinkSpec) -> Link {
        let upstream_exchange = spec.upstream.exchange_for(&spec.exchange.name);
        let status = Arc::new(Mutex::new(LinkStatus {
            vhost: spec.vhost.name.clone(),
            exchange: text(&spec.exchange.name),
            upstream_exchange,
            upstream: spec.upstream.name.clone(),
            id: spec.id.clone(),
            uri: String::new(),
            state: LinkState::Starting,
            reason: "starting".into(),
            since: SystemTime::now(),
            local_connection: String::new(),
            mode: spec.upstream.mode.name(),
            counters: LinkCounters::default(),
            upstream_view: Default::default(),
        }));
        let (stop, stop_rx) = oneshot::channel();
        let upstream = spec.upstream.clone();
        let exchange = spec.exchange.clone();
        tokio::spawn(run(spec, status.clone(), stop_rx));
        Link {
            upstream,
            exchange,
            status,
            stop: Some(stop),
        }
    }

    pub fn status(&self) -> LinkStatus {
        lock(&self.status).clone()
    }

    /// Stops the link; with `cleanup` (and unless `resource-cleanup-mode` is `never`)
    /// its upstream queue and internal exchange are deleted first. The link's task
    /// finishes that on its own.
    pub fn stop(mut self, cleanup: bool) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(cleanup);
        }
    }
}

fn lock(s: &Mutex<LinkStatus>) -> std::sync::MutexGuard<'_, LinkStatus> {
    s.lock().unwrap_or_else(|p| p.into_inner())
}

fn text(s: &ShortString) -> String {
    String::from_utf8_lossy(s.as_bytes()).into_owned()
}

fn short(s: &str) -> ShortString {
    ShortString::try_from(s).unwrap_or_default()
}

/// `uri` without its user and password, as a status and `x-received-from` show it.
pub(super) fn without_credentials(uri: &str) -> String {
    let Some((scheme, rest)) = uri.split_once("://") else {
        return uri.to_owned();
    };
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    match rest[..end].rfind('@') {
        Some(at) => format!("{scheme}://{}", &rest[at + 1..]),
        None => uri.to_owned(),
    }
}

/// RabbitMQ's upstream queue name.
fn queue_name(upstream_exchange: &str, upstream_vhost: &str, spec: &LinkSpec) -> String {
    let local = text(&spec.exchange.name);
    let tail = if upstream_vhost != spec.vhost.name {
        format!(":{}:{local}", spec.vhost.name)
    } else if local != upstream_exchange {
        format!(":{local}")
    } else {
        String::new()
    };
    format!(
        "federation: {upstream_exchange} -> {}{tail}",
        spec.cluster_name
    )
}

async fn run(spec: LinkSpec, status: Arc<Mutex<LinkStatus>>, mut stop: oneshot::Receiver<bool>) {
    let i = rand::random_range(0..spec.upstream.uris.len().max(1));
    let uri = spec.upstream.uris.get(i).cloned().unwrap_or_default();
    lock(&status).uri = without_credentials(&uri);
    let remote = match Remote::from_uri(&uri) {
        Ok(r) => r,
        Err(e) => {
            lock(&status).set(LinkState::Error, e.to_string());
            let _ = stop.await;
            lock(&status).set(LinkState::Stopped, "stopped");
            return;
        }
    };
    let upstream_vhost = remote.vhost.clone();
    let asker = tokio::spawn(upstream_view::ask(
        spec.broker.clone(),
        remote.clone(),
        Arc::downgrade(&status),
    ));
    let mut config = PeeringConfig::new(remote);
    let delay = spec.upstream.reconnect_delay;
    config.reconnect = Some(Backoff {
        min: delay,
        max: delay,
    });
    config.local_identifier = Some(spec.broker.identifier().to_owned());
    // Room beyond what the backlog lets publishers queue (see `FORWARDS_IN_FLIGHT`).
    config.outbox = OutboxLimits {
        messages: 2 * Backlog::HIGH,
        ..OutboxLimits::default()
    };
    if spec.upstream.mode.marks_forwards() {
        // A forward sent again says so, as a message brought down again does.
        config.mark_resent = Some(mark_forward_resent);
    }
    config.name = format!(
        "Federation link (upstream: {}, exchange: {})",
        spec.upstream.name,
        text(&spec.exchange.name)
    );
    lock(&status).local_connection = config.name.clone();
    let (peering, events) = Peering::new(config);
    let peering = Arc::new(peering);
    let ready = Arc::new(AtomicBool::new(false));
    {
        let (status, ready) = (status.clone(), ready.clone());
        let counters = peering.watch_status();
        peering.on_status(move |c| follow_peering(&status, &ready, &counters, c));
    }
    peering.start();
    let upstream_exchange = spec.upstream.exchange_for(&spec.exchange.name);
    let queue = queue_name(&upstream_exchange, &upstream_vhost, &spec);
    let mut publisher = spec.broker.internal_publisher(&spec.vhost.name);
    if let Some(p) = publisher.as_mut() {
        // What comes down is never forwarded back up.
        p.relayed();
    }
    let upstream_cluster = Arc::new(Mutex::new(None));
    let backlog = Arc::new(Backlog::default());
    let (forwards, hook) = if spec.upstream.mode.forwards() {
        let (tx, rx) = mpsc::unbounded_channel();
        let hook: Arc<dyn ExchangeHook> = Arc::new(Forwarder {
            mode: spec.upstream.mode,
            max_hops: spec.upstream.max_hops,
            upstream_cluster: upstream_cluster.clone(),
            upstream_vhost: upstream_vhost.clone(),
            queue: tx,
            backlog: backlog.clone(),
            status: status.clone(),
        });
        spec.vhost
            .set_exchange_hook(spec.exchange.name.clone(), hook.clone());
        (Some(rx), Some(hook))
    } else {
        (None, None)
    };
    let mut session = Session {
        publisher,
        forwards,
        hook,
        backlog,
        upstream_cluster,
        confirms: JoinSet::new(),
        returnable: VecDeque::new(),
        next_forward: 0,
        spec,
        status: status.clone(),
        ready,
        peering,
        events,
        upstream_exchange,
        upstream_vhost,
        queue,
        suffix: 'A',
        internal: String::new(),
        mirrored: Default::default(),
        pending: JoinSet::new(),
        origin: None,
    };
    let cleanup = tokio::select! {
        _ = session.run() => false,
        c = &mut stop => c.unwrap_or(false),
    };
    // Dropping its tunnel closes it.
    asker.abort();
    session.finish(cleanup).await;
}

/// Follows the peering's state: the link is `running` only once its setup is done.
/// The peering's resends are taken with it (they happen on a reconnect, before the
/// peering says it runs again).
fn follow_peering(
    status: &Mutex<LinkStatus>,
    ready: &AtomicBool,
    peering: &watch::Receiver<PeeringStatus>,
    c: &StatusChange,
) {
    let (state, reason) = match &c.state {
        PeeringState::Idle | PeeringState::Connecting => (LinkState::Starting, c.reason.clone()),
        PeeringState::Running if ready.load(Ordering::Acquire) => {
            (LinkState::Running, c.reason.clone())
        }
        PeeringState::Running => (LinkState::Starting, "declaring upstream resources".into()),
        PeeringState::Blocked => (
            LinkState::Blocked,
            format!("upstream blocked: {}", c.reason),
        ),
        PeeringState::BackingOff { .. } => (LinkState::Backoff, c.reason.clone()),
        PeeringState::Failed { .. } => (LinkState::Error, c.state.to_string()),
        PeeringState::Stopped => (LinkState::Stopped, c.reason.clone()),
    };
    let resent = peering.borrow().counters.resent;
    let mut s = lock(status);
    s.counters.resent = resent;
    if matches!(c.state, PeeringState::Running) {
        s.counters.connects += 1;
    }
    s.set(state, reason);
}

/// What a bind or unbind request came back with.
type BindOutcome = Result<(), PeeringError>;

struct Session {
    spec: LinkSpec,
    status: Arc<Mutex<LinkStatus>>,
    ready: Arc<AtomicBool>,
    peering: Arc<Peering>,
    events: mpsc::UnboundedReceiver<PeeringEvent>,
    publisher: Option<InternalPublisher>,
    /// Local publishes to forward up (the modes that forward), from `hook`.
    forwards: Option<mpsc::UnboundedReceiver<Forward>>,
    hook: Option<Arc<dyn ExchangeHook>>,
    backlog: Arc<Backlog>,
    /// The upstream's cluster name, once connected (the hook checks it too).
    upstream_cluster: Arc<Mutex<Option<String>>>,
    /// Forwards waiting for the upstream's confirm.
    confirms: JoinSet<ForwardOutcome>,
    /// Mandatory forwards not yet confirmed, oldest first: a return from the upstream
    /// is one of them (it comes before that message's confirm).
    returnable: VecDeque<(u64, MessageRef, PublishSource)>,
    next_forward: u64,
    upstream_exchange: String,
    upstream_vhost: String,
    queue: String,
    /// The internal exchange's suffix this time (`A` or `B`) and its name: the one an
    /// earlier run left upstream is deleted once this one is bound, so its bindings go
    /// with it (see `choose_internal_exchange`).
    suffix: char,
    internal: String,
    /// The distinct local bindings mirrored upstream, by (routing key, arguments), with
    /// the arguments sent (`x-bound-from` added).
    mirrored: std::collections::HashMap<(ShortString, Bytes), FieldTable>,
    /// Bind and unbind requests on the wire.
    pending: JoinSet<BindOutcome>,
    /// This link's `x-received-from` entry.
    origin: Option<Origin>,
}

impl Session {
    fn set(&self, state: LinkState, reason: impl Into<String>) {
        lock(&self.status).set(state, reason);
    }

    fn count(&self, f: impl FnOnce(&mut LinkCounters)) {
        f(&mut lock(&self.status).counters);
    }

    /// Sets up, then moves messages and bindings until the local exchange or vhost
    /// goes. A failed setup (or the upstream queue deleted under it) is retried after
    /// `reconnect-delay`.
    async fn run(&mut self) {
        loop {
            let bindings = match self.setup().await {
                Ok(b) => b,
                Err(e) => {
                    self.ready.store(false, Ordering::Release);
                    self.set(LinkState::Error, e);
                    tokio::time::sleep(self.spec.upstream.reconnect_delay).await;
                    continue;
                }
            };
            match self.work(bindings).await {
                Ok(()) => return,
                Err(e) => {
                    self.ready.store(false, Ordering::Release);
                    self.set(LinkState::Error, e);
                    tokio::time::sleep(self.spec.upstream.reconnect_delay).await;
                }
            }
        }
    }

    async fn setup(&mut self) -> Result<Option<BindingSubscription>, String> {
        let up = self.spec.upstream.clone();
        let x = self.spec.exchange.clone();
        let failed = |what: &str, e: PeeringError| format!("{what}: {e}");
        // The upstream exchange: used as it is, declared like ours if it is missing.
        let declare = ExchangeDeclare {
            exchange: short(&self.upstream_exchange),
            r#type: ShortString::from_static(x.kind.name()),
            passive: true,
            durable: x.durable,
            auto_delete: x.auto_delete,
            internal: x.internal,
            no_wait: false,
            arguments: x.arguments.clone(),
        };
        match self.peering.request(declare.clone()).await {
            Ok(_) => {}
            Err(PeeringError::Refused { code: 404, .. }) => {
                let declare = ExchangeDeclare {
                    passive: false,
                    ..declare
                };
                self.peering
                    .declare_exchange(declare)
                    .await
                    .map_err(|e| failed("declaring the upstream exchange", e))?;
            }
            Err(e) => return Err(failed("checking the upstream exchange", e)),
        }
        if !up.mode.subscribes() {
            self.note_upstream_cluster();
            self.ready.store(true, Ordering::Release);
            if matches!(self.peering.status().state, PeeringState::Running) {
                self.set(LinkState::Running, "forwarding to the upstream exchange");
            }
            return Ok(None);
        }
        let mut args = FieldTable::new();
        let mut put = |k: &'static str, v: FieldValue| args.insert(ShortString::from_static(k), v);
        if let Some(ms) = up.expires {
            put("x-expires", FieldValue::I64(ms));
        }
        if let Some(ms) = up.message_ttl {
            put("x-message-ttl", FieldValue::I64(ms));
        }
        put("x-internal-purpose", "federation".into());
        if let Some(t) = &up.queue_type {
            put("x-queue-type", t.as_str().into());
        }
        self.peering
            .declare_queue(QueueDeclare {
                queue: short(&self.queue),
                durable: true,
                arguments: args,
                ..Default::default()
            })
            .await
            .map_err(|e| failed("declaring the upstream queue", e))?;
        self.choose_internal_exchange().await;
        self.declare_internal_exchange().await?;
        self.peering
            .bind_queue(QueueBind {
                queue: short(&self.queue),
                exchange: short(&self.internal),
                ..Default::default()
            })
            .await
            .map_err(|e| failed("binding the upstream queue", e))?;
        // The local bindings now, then every change after them.
        let (now, subscription) = self
            .spec
            .vhost
            .subscribe_bindings(Some(x.name.clone()), DEFAULT_CAPACITY);
        self.mirrored.clear();
        for b in now {
            self.bind(&b);
        }
        if up.ack_mode != AckMode::NoAck {
            self.peering
                .qos(up.prefetch_count)
                .await
                .map_err(|e| failed("basic.qos", e))?;
        }
        self.peering
            .consume(BasicConsume {
                queue: short(&self.queue),
                consumer_tag: short(&format!("federation-link-{}", up.name)),
                no_ack: up.ack_mode == AckMode::NoAck,
                ..Default::default()
            })
            .await
            .map_err(|e| failed("consuming from the upstream queue", e))?;
        // The other suffix's exchange holds bindings from an earlier run, if any.
        let other = if self.suffix == 'A' { 'B' } else { 'A' };
        let old = format!("{} {other}", self.queue);
        let deleted = self.peering.pipelined(ExchangeDelete {
            exchange: short(&old),
            ..Default::default()
        });
        self.pending.spawn(async move { deleted.await.map(drop) });
        let cluster_name = self.note_upstream_cluster();
        self.origin = Some(Origin {
            uri: lock(&self.status).uri.clone(),
            exchange: self.upstream_exchange.clone(),
            cluster_name,
            vhost: self.upstream_vhost.clone(),
        });
        self.ready.store(true, Ordering::Release);
        let running = matches!(self.peering.status().state, PeeringState::Running);
        if running {
            self.set(LinkState::Running, "consuming from the upstream queue");
        }
        Ok(Some(subscription))
    }

    /// The upstream's cluster name (its `cluster_name` server property), noted for the
    /// forwarding hook's loop rule.
    fn note_upstream_cluster(&self) -> Option<String> {
        let cluster_name = self.peering.server_properties().and_then(|p| {
            p.get("cluster_name")
                .and_then(|v| v.as_str().map(str::to_owned))
        });
        *self
            .upstream_cluster
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = cluster_name.clone();
        cluster_name
    }

    /// Which internal exchange this run uses: the upstream itself says which one an
    /// earlier run (before a restart of this broker, say) left, as `A` existing or not,
    /// and this run takes the other. One that a run stopped between the two may have
    /// left holds stale bindings: it is deleted before it is declared afresh.
    async fn choose_internal_exchange(&mut self) {
        let a = format!("{} A", self.queue);
        let a_left = self
            .peering
            .request(ExchangeDeclare {
                exchange: short(&a),
                r#type: ShortString::from_static("fanout"),
                passive: true,
                ..Default::default()
            })
            .await
            .is_ok();
        self.suffix = if a_left { 'B' } else { 'A' };
        self.internal = format!("{} {}", self.queue, self.suffix);
        if a_left {
            let stale = self.peering.request(ExchangeDelete {
                exchange: short(&self.internal),
                ..Default::default()
            });
            if let Err(e) = stale.await {
                tracing::debug!("federation link: deleting a stale internal exchange: {e}");
            }
        }
    }

    /// RabbitMQ's `x-federation-upstream` exchange, or a fanout one where the upstream
    /// does not know that type (it closes the connection with 503; the peering
    /// reconnects).
    async fn declare_internal_exchange(&mut self) -> Result<(), String> {
        let mut args = FieldTable::new();
        args.insert(
            ShortString::from_static(MAX_HOPS_ARG),
            FieldValue::I64(self.spec.upstream.max_hops),
        );
        args.insert(
            ShortString::from_static(DOWNSTREAM_NAME_ARG),
            self.spec.cluster_name.as_str().into(),
        );
        args.insert(
            ShortString::from_static(DOWNSTREAM_VHOST_ARG),
            self.spec.vhost.name.as_str().into(),
        );
        args.insert(
            ShortString::from_static("x-internal-purpose"),
            "federation".into(),
        );
        let declare = ExchangeDeclare {
            exchange: short(&self.internal),
            r#type: ShortString::from_static("x-federation-upstream"),
            durable: true,
            auto_delete: true,
            internal: true,
            arguments: args,
            ..Default::default()
        };
        let code_invalid = ReplyCode::CommandInvalid.code();
        match self.peering.declare_exchange(declare).await {
            Ok(()) => Ok(()),
            Err(PeeringError::Refused { code, .. }) if code == code_invalid => {
                let mut purpose = FieldTable::new();
                purpose.insert(
                    ShortString::from_static("x-internal-purpose"),
                    "federation".into(),
                );
                let fanout = ExchangeDeclare {
                    exchange: short(&self.internal),
                    r#type: ShortString::from_static("fanout"),
                    durable: true,
                    auto_delete: true,
                    internal: true,
                    arguments: purpose,
                    ..Default::default()
                };
                self.peering
                    .declare_exchange(fanout)
                    .await
                    .map_err(|e| format!("declaring the internal exchange: {e}"))
            }
            Err(e) => Err(format!("declaring the internal exchange: {e}")),
        }
    }

    fn hop(&self) -> (String, Option<String>) {
        let exchange = format!(
            "{}:{} {}",
            self.spec.vhost.name,
            text(&self.spec.exchange.name),
            self.suffix
        );
        let upstream_cluster = self
            .origin
            .as_ref()
            .and_then(|o| o.cluster_name.clone())
            .or_else(|| {
                self.peering.server_properties().and_then(|p| {
                    p.get("cluster_name")
                        .and_then(|v| v.as_str().map(str::to_owned))
                })
            });
        (exchange, upstream_cluster)
    }

    /// Mirrors a distinct local binding upstream (pipelined).
    fn bind(&mut self, b: &DistinctBinding) {
        let key = (b.routing_key.clone(), arguments_key(&b.arguments));
        if self.mirrored.contains_key(&key) {
            return;
        }
        // Service mode offers upstream only what exclusive queues take.
        if self.spec.upstream.mode == Mode::Service && !b.exclusive {
            return;
        }
        let (exchange, upstream_cluster) = self.hop();
        let hop = BindingHop {
            cluster_name: &self.spec.cluster_name,
            vhost: &self.spec.vhost.name,
            exchange: &exchange,
            max_hops: self.spec.upstream.max_hops,
            upstream_cluster: upstream_cluster.as_deref(),
            upstream_vhost: &self.upstream_vhost,
        };
        let Some(arguments) = bound_from(&b.arguments, &hop) else {
            return;
        };
        let sent = self.peering.pipelined(ExchangeBind {
            destination: short(&self.internal),
            source: short(&self.upstream_exchange),
            routing_key: b.routing_key.clone(),
            no_wait: false,
            arguments: arguments.clone(),
        });
        self.mirrored.insert(key, arguments);
        self.count(|c| {
            c.bindings_pending += 1;
            c.bindings += 1;
        });
        self.pending.spawn(async move { sent.await.map(drop) });
    }

    /// Removes a mirrored binding upstream (pipelined).
    fn unbind(&mut self, routing_key: &ShortString, arguments: &FieldTable) {
        let key = (routing_key.clone(), arguments_key(arguments));
        let Some(sent_with) = self.mirrored.remove(&key) else {
            return;
        };
        let sent = self.peering.pipelined(ExchangeUnbind {
            destination: short(&self.internal),
            source: short(&self.upstream_exchange),
            routing_key: routing_key.clone(),
            no_wait: false,
            arguments: sent_with,
        });
        self.count(|c| {
            c.bindings_pending += 1;
            c.bindings = c.bindings.saturating_sub(1);
        });
        self.pending.spawn(async move { sent.await.map(drop) });
    }

    fn binding_notice(&mut self, n: BindingNotice) {
        match n {
            BindingNotice::Created { binding, .. } => self.bind(&binding),
            BindingNotice::Destroyed { binding, .. } => {
                self.unbind(&binding.routing_key, &binding.arguments)
            }
            BindingNotice::Resync { bindings, .. } => {
                let now: std::collections::HashSet<_> = bindings
                    .iter()
                    .map(|b| (b.routing_key.clone(), arguments_key(&b.arguments)))
                    .collect();
                let gone: Vec<_> = self
                    .mirrored
                    .iter()
                    .filter(|(k, _)| !now.contains(*k))
                    .map(|((rk, _), args)| (rk.clone(), args.clone()))
                    .collect();
                for (rk, args) in gone {
                    // `args` carries our x-bound-from entry; unbind by the local key.
                    let local = bindings_without_hop(&args);
                    self.unbind(&rk, &local);
                }
                for b in &bindings {
                    self.bind(b);
                }
            }
        }
    }

    /// Moves messages (down, and up in the forwarding modes) and keeps bindings in
    /// step. `Ok`: the local side is gone (stop); `Err`: set up again.
    async fn work(&mut self, mut bindings: Option<BindingSubscription>) -> Result<(), String> {
        let mut alarm = self.spec.broker.alarm();
        let mut alarm_open = self.spec.upstream.mode.subscribes();
        if alarm_open && *alarm.borrow_and_update() {
            self.set(LinkState::Blocked, ALARM);
        }
        loop {
            let room = self.confirms.len() < FORWARDS_IN_FLIGHT;
            tokio::select! {
                // Events first: a return is handled before the confirm of its message.
                biased;
                event = self.events.recv() => match event {
                    None => return Ok(()),
                    Some(PeeringEvent::Delivery(d)) => {
                        if *alarm.borrow() {
                            self.set(LinkState::Blocked, ALARM);
                            let _ = alarm.wait_for(|on| !*on).await;
                            self.set(LinkState::Running, "memory alarm cleared");
                        }
                        if !self.deliver(d).await {
                            return Ok(());
                        }
                    }
                    Some(PeeringEvent::Returned(r)) => self.returned(r),
                    Some(PeeringEvent::Cancelled(_)) => {
                        return Err("the upstream cancelled the consumer (its queue was deleted)".into());
                    }
                    Some(PeeringEvent::ChannelClosed { code, text }) => {
                        tracing::warn!(code, %text, "federation link: upstream closed the channel");
                    }
                    Some(_) => {}
                },
                notice = next(bindings.as_mut().map(BindingSubscription::recv)) => match notice {
                    Some(n) => self.binding_notice(n),
                    None => return Ok(()),
                },
                Some(done) = self.pending.join_next() => {
                    self.count(|c| c.bindings_pending = c.bindings_pending.saturating_sub(1));
                    if let Ok(Err(e)) = done {
                        tracing::warn!("federation link: binding change refused upstream: {e}");
                    }
                }
                // The downstream's memory alarm: nothing is taken from the upstream
                // while it lasts (the delivery in hand waits, see above), and the
                // status says so at once.
                r = alarm.changed(), if alarm_open => {
                    alarm_open = r.is_ok();
                    let on = *alarm.borrow_and_update();
                    let mut s = lock(&self.status);
                    if on {
                        s.set(LinkState::Blocked, ALARM);
                    } else if s.state == LinkState::Blocked && s.reason == ALARM {
                        s.set(LinkState::Running, "memory alarm cleared");
                    }
                }
                Some(done) = self.confirms.join_next() => match done {
                    Ok(outcome) => self.confirmed(outcome),
                    Err(e) => tracing::warn!("federation link: forward task failed: {e}"),
                },
                forward = next(self.forwards.as_mut().map(mpsc::UnboundedReceiver::recv)), if room => match forward {
                    Some(f) => self.forward(f).await,
                    None => return Ok(()),
                },
            }
        }
    }

    /// Publishes one local message to the upstream exchange through the peering's
    /// confirmed outbox.
    async fn forward(&mut self, f: Forward) {
        let id = self.next_forward;
        self.next_forward += 1;
        let mut properties = f.message.properties().to_properties();
        if self.spec.upstream.mode.marks_forwards() {
            let mut h = properties.headers.take().unwrap_or_default();
            prepend_forwarded_from(
                &mut h,
                &self.spec.cluster_name,
                &self.spec.vhost.name,
                &text(&self.spec.exchange.name),
            );
            properties.headers = Some(h);
        }
        if !self.spec.upstream.trust_user_id {
            // The upstream checks user-id against the link's own user.
            properties.user_id = None;
        }
        let method = BasicPublish {
            exchange: short(&self.upstream_exchange),
            routing_key: f.message.routing_key(),
            mandatory: f.mandatory,
            ..Default::default()
        };
        if f.mandatory {
            self.returnable.push_back((id, f.message.clone(), f.source));
        }
        let peering = self.peering.clone();
        let body = f.message.body_bytes();
        let mut publish: Pin<Box<dyn Future<Output = ForwardOutcome> + Send>> =
            Box::pin(async move {
                let props = EncodedBasicProperties::encode(&properties);
                (id, peering.publish(method, props, body).await)
            });
        // Polled once here, so that it reaches the outbox before the next forward.
        let first = std::future::poll_fn(|cx| Poll::Ready(publish.as_mut().poll(cx))).await;
        match first {
            Poll::Ready(outcome) => self.confirmed(outcome),
            Poll::Pending => {
                self.confirms.spawn(publish);
            }
        }
    }

    /// The upstream confirmed (or refused) forward `id`.
    fn confirmed(&mut self, (id, result): ForwardOutcome) {
        self.backlog.done();
        self.returnable.retain(|(i, _, _)| *i != id);
        match result {
            Ok(()) => self.count(|c| c.forwarded += 1),
            Err(e) => {
                tracing::warn!("federation link: forward refused upstream: {e}");
                self.count(|c| c.forward_failed += 1);
            }
        }
        if self.backlog.len() <= Backlog::LOW {
            let mut s = lock(&self.status);
            if s.state == LinkState::Flow {
                s.set(LinkState::Running, "forwarding backlog drained");
            }
        }
    }

    /// The upstream returned a mandatory forward: it goes back to its publisher.
    fn returned(&mut self, r: Returned) {
        let at = self
            .returnable
            .iter()
            .position(|(_, m, _)| m.routing_key() == r.routing_key && m.body() == &r.body[..]);
        let Some((_, message, source)) = at.and_then(|i| self.returnable.remove(i)) else {
            tracing::warn!(routing_key = %r.routing_key, "federation link: a return matching no forward");
            self.count(|c| c.returns_lost += 1);
            return;
        };
        self.count(|c| c.returned += 1);
        let sent = match source {
            PublishSource::Client {
                connection,
                channel,
            } => self.spec.broker.connections().send_return(
                connection,
                channel,
                r.reply_code,
                r.reply_text,
                message,
            ),
            PublishSource::Internal { .. } => false,
        };
        if !sent {
            tracing::warn!(routing_key = %r.routing_key, "federation link: returned message's publisher is gone");
            self.count(|c| c.returns_lost += 1);
        }
    }

    /// Republishes one delivery locally and settles it upstream. False: the local
    /// exchange is gone.
    async fn deliver(&mut self, d: Delivery) -> bool {
        if d.acker.is_stale() {
            // Its connection is gone: the upstream has requeued it and delivers it
            // again on the next one; taking it now would only make a duplicate.
            self.count(|c| c.stale += 1);
            return true;
        }
        let redelivered = d.redelivered;
        self.count(|c| {
            c.received += 1;
            c.redelivered += u64::from(redelivered);
        });
        let headers = d.properties.headers();
        let forward = should_forward(
            headers.as_ref(),
            self.spec.upstream.max_hops,
            Some(self.spec.cluster_name.as_bytes()),
            Some(self.spec.vhost.name.as_bytes()),
        );
        if !forward {
            d.acker.ack();
            self.count(|c| c.dropped += 1);
            return true;
        }
        let mut properties = d.properties.to_properties();
        let mut h = properties.headers.take().unwrap_or_default();
        if let Some(origin) = &self.origin {
            prepend_received_from(&mut h, origin, redelivered);
        }
        properties.headers = Some(h);
        if !self.spec.upstream.trust_user_id {
            properties.user_id = None;
        }
        let Some(publisher) = self.publisher.as_mut() else {
            d.acker.reject(true);
            return false;
        };
        let published = publisher.publish(
            &self.spec.exchange.name,
            d.routing_key,
            &properties,
            d.body,
            false,
        );
        let confirm = match published {
            Ok(c) => c,
            Err(_) => {
                d.acker.reject(true);
                return false;
            }
        };
        self.count(|c| c.published += 1);
        match self.spec.upstream.ack_mode {
            AckMode::OnConfirm => match confirm.await {
                Confirm::Ack => {
                    d.acker.ack();
                    self.count(|c| c.acked += 1);
                }
                Confirm::Nack => d.acker.reject(true),
            },
            AckMode::OnPublish => {
                d.acker.ack();
                self.count(|c| c.acked += 1);
            }
            AckMode::NoAck => self.count(|c| c.acked += 1),
        }
        true
    }

    /// Stops the peering; with `cleanup`, deletes the upstream queue and internal
    /// exchange first (unless `resource-cleanup-mode` is `never`).
    async fn finish(self, cleanup: bool) {
        if let Some(hook) = &self.hook {
            self.spec
                .vhost
                .clear_exchange_hook(&self.spec.exchange.name, hook);
        }
        self.backlog.stop();
        let subscribed = self.spec.upstream.mode.subscribes();
        if cleanup && subscribed && !self.spec.upstream.keep_resources {
            let q = self.peering.pipelined(QueueDelete {
                queue: short(&self.queue),
                ..Default::default()
            });
            let x = self.peering.pipelined(ExchangeDelete {
                exchange: short(&self.internal),
                ..Default::default()
            });
            let both = async { (q.await, x.await) };
            let _ = tokio::time::timeout(std::time::Duration::from_secs(5), both).await;
        }
        self.peering.stop().await;
        lock(&self.status).set(LinkState::Stopped, "stopped");
    }
}

/// The next item of an optional stream: never, when there is none.
async fn next<T>(recv: Option<impl Future<Output = Option<T>>>) -> Option<T> {
    match recv {
        Some(r) => r.await,
        None => std::future::pending().await,
    }
}

/// A mirrored binding's arguments without the first `x-bound-from` entry (ours).
fn bindings_without_hop(args: &FieldTable) -> FieldTable {
    let mut local = args.clone();
    if let Some(FieldValue::Array(mut hops)) = local.remove(super::headers::BOUND_FROM) {
        if !hops.is_empty() {
            hops.remove(0);
        }
        if !hops.is_empty() {
            local.insert(
                ShortString::from_static(super::headers::BOUND_FROM),
                FieldValue::Array(hops),
            );
        }
    }
    local
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_left_out_of_uris() {
        assert_eq!(
            without_credentials("amqp://u:p@host:5672/%2f"),
            "amqp://host:5672/%2f"
        );
        assert_eq!(without_credentials("amqp://host"), "amqp://host");
        assert_eq!(without_credentials("amqp://h/v?x=a@b"), "amqp://h/v?x=a@b");
    }
}
