//! The Prometheus endpoint: `/metrics` on its own listener (rabbitmq_prometheus's port,
//! 15692), in the names rabbitmq_prometheus uses, so that its dashboards and alerts
//! work unchanged; fedamq's own series are prefixed `fedamq_`.
//!
//! `/metrics` is the aggregated view (as rabbitmq_prometheus's default);
//! `/metrics/per-object` adds each queue's series, labelled `vhost` and `queue`.
//!
//! Everything is read when Prometheus scrapes: queue snapshots (depths and the counters
//! queues keep under their own lock), the broker's publish totals (which publishers add
//! to once per batch), the connection registry (with each connection's channel count)
//! and the memory gauge; each federation link's status (`federation.rs`).
//! Each tunnel (opened by this node or to it) has its own series, labelled
//! `direction`, `service` and `remote`, in both views: there are few of them.
//! The message path does no extra work for metrics. Counters must never go down, but a
//! deleted queue takes its counters with it, so the scraper remembers each queue's last
//! counters and keeps a deleted queue's in [`Totals::retired`] (what a queue did between
//! the last scrape and its deletion is not counted).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, Weak};

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::stats;
use crate::broker::Broker;
use crate::broker::hash::HashMap;
use crate::broker::publish::PublishCounts;
use crate::broker::queue::{Queue, QueueCounters};
use crate::federation::{Federation, LinkStatus};
use crate::tunnel::{TunnelCounters, TunnelState, Tunnels};

mod exposition;
mod federation;

use exposition::{CONTENT_TYPE, Exposition, Kind};

/// What the endpoint's handlers reach.
#[derive(Debug)]
struct Metrics {
    broker: Arc<Broker>,
    federation: Arc<Federation>,
    totals: Mutex<Totals>,
}

/// Counters summed over every queue there has been.
#[derive(Debug, Default)]
struct Totals {
    /// Each live queue's counters at the last scrape, by the queue's address. The weak
    /// reference keeps the allocation, so a new queue cannot reuse the address while an
    /// old one is remembered here.
    seen: HashMap<usize, (Weak<Queue>, QueueCounters)>,
    /// What deleted queues had counted when last seen.
    retired: QueueCounters,
}

/// One queue, as scraped.
struct QueueRow {
    vhost: String,
    name: String,
    ready: usize,
    unacked: usize,
    consumers: usize,
    counters: QueueCounters,
}

/// One tunnel, as scraped.
struct TunnelRow {
    /// `outgoing` (this node opened it) or `incoming`.
    direction: &'static str,
    service: &'static str,
    /// The other broker: the remote's address, or the opener's identifier.
    remote: String,
    state: &'static str,
    counters: TunnelCounters,
}

/// The names of the tunnel states, as `/api/tunnels` writes them.
const TUNNEL_STATES: [&str; 6] = [
    "inactive", "opening", "open", "retrying", "failed", "closed",
];

fn state_name(s: &TunnelState) -> &'static str {
    match s {
        TunnelState::Inactive => "inactive",
        TunnelState::Opening => "opening",
        TunnelState::Open => "open",
        TunnelState::Retrying => "retrying",
        TunnelState::Failed(_) => "failed",
        TunnelState::Closed => "closed",
    }
}

/// The broker, read at one scrape.
struct Scrape {
    tunnels: Vec<TunnelRow>,
    queues: Vec<QueueRow>,
    /// Over all queues, deleted ones included.
    counters: QueueCounters,
    /// What publishers did (the broker's publish totals).
    publishes: PublishCounts,
    vhosts: usize,
    exchanges: usize,
    connections: usize,
    channels: usize,
    pending_bytes: usize,
    memory_used: u64,
    watermark: u64,
    alarm: bool,
    /// This broker's member of an HA pair, if it is one.
    ha: Option<crate::ha::HaStatus>,
    links: Vec<LinkStatus>,
}

/// Binds `addr` and serves `/metrics` until `shutdown` turns true; returns the bound
/// address.
pub async fn start(
    broker: Arc<Broker>,
    federation: Arc<Federation>,
    addr: SocketAddr,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let app = router(Arc::new(Metrics {
        broker,
        federation,
        totals: Mutex::default(),
    }));
    tokio::spawn(async move {
        let stop = async move {
            let _ = shutdown.wait_for(|s| *s).await;
        };
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(stop)
            .await
        {
            tracing::warn!("Prometheus endpoint stopped: {e}");
        }
    });
    tracing::info!("Prometheus metrics on http://{bound}/metrics");
    Ok(bound)
}

fn router(metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route("/metrics", get(|s| scrape(s, false)))
        .route("/metrics/per-object", get(|s| scrape(s, true)))
        .with_state(metrics)
}

async fn scrape(State(metrics): State<Arc<Metrics>>, per_object: bool) -> impl IntoResponse {
    let text = render(&metrics.read(), per_object);
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], text)
}

impl Metrics {
    fn read(&self) -> Scrape {
        let broker = &self.broker;
        let mut queues = Vec::new();
        let (mut vhosts, mut exchanges) = (0, 0);
        let mut seen = HashMap::default();
        for name in broker.vhost_names() {
            let Some(vhost) = broker.vhost(&name) else {
                continue;
            };
            vhosts += 1;
            exchanges += vhost.exchange_count();
            for q in vhost.queues() {
                let s = q.snapshot();
                seen.insert(Arc::as_ptr(&q) as usize, (Arc::downgrade(&q), s.counters));
                queues.push(QueueRow {
                    vhost: name.clone(),
                    name: q.spec.name.to_string(),
                    ready: s.ready,
                    unacked: s.unacked,
                    consumers: s.consumers.len(),
                    counters: s.counters,
                });
            }
        }
        let mut totals = self.totals.lock().unwrap_or_else(|p| p.into_inner());
        let mut retired = totals.retired;
        for (at, (_, last)) in &totals.seen {
            if !seen.contains_key(at) {
                stats::add(&mut retired, last);
            }
        }
        totals.retired = retired;
        totals.seen = seen;
        drop(totals);
        let mut counters = retired;
        for q in &queues {
            stats::add(&mut counters, &q.counters);
        }
        let open = broker.connections().list();
        let registry = Tunnels::of(broker);
        let mut tunnels: Vec<TunnelRow> = registry
            .list()
            .into_iter()
            .map(|t| TunnelRow {
                direction: "outgoing",
                service: t.service,
                remote: t.remote,
                state: state_name(&t.state),
                counters: t.counters,
            })
            .collect();
        tunnels.extend(registry.list_accepted().into_iter().map(|t| TunnelRow {
            direction: "incoming",
            service: t.service,
            remote: t.opener,
            state: state_name(&t.state),
            counters: t.counters,
        }));
        Scrape {
            tunnels,
            queues,
            counters,
            publishes: broker.publish_totals().read(),
            vhosts,
            exchanges,
            connections: open.len(),
            channels: open.iter().map(|c| c.channel_count()).sum(),
            pending_bytes: open.iter().map(|c| c.pending_bytes()).sum(),
            memory_used: broker.memory().used(),
            watermark: broker.config().memory_high_watermark,
            alarm: *broker.alarm().borrow(),
            ha: crate::ha::Ha::of(broker).map(|h| h.status()),
            links: self.federation.links(),
        }
    }
}

const AMQP: (&str, &str) = ("protocol", "amqp091");
const CLASSIC: (&str, &str) = ("queue_type", "rabbit_classic_queue");

fn render(s: &Scrape, per_object: bool) -> String {
    let mut e = Exposition::default();
    let c = &s.counters;

    // The node.
    e.family(
        "rabbitmq_build_info",
        Kind::Untyped,
        "RabbitMQ & Erlang/OTP version info",
    );
    e.sample(
        "rabbitmq_build_info",
        &[
            ("rabbitmq_version", super::overview::RABBITMQ_VERSION),
            ("product_name", "fedamq"),
            ("product_version", env!("CARGO_PKG_VERSION")),
        ],
        1,
    );
    e.family(
        "rabbitmq_identity_info",
        Kind::Untyped,
        "RabbitMQ node & cluster identity info",
    );
    e.sample(
        "rabbitmq_identity_info",
        &[
            ("rabbitmq_node", super::NODE),
            ("rabbitmq_cluster", super::NODE),
        ],
        1,
    );
    if let Some(rss) = resident_memory() {
        e.single(
            "rabbitmq_process_resident_memory_bytes",
            Kind::Gauge,
            "Memory used in bytes",
            rss,
        );
    }
    e.single(
        "rabbitmq_resident_memory_limit_bytes",
        Kind::Gauge,
        "Memory high watermark in bytes",
        s.watermark,
    );
    e.single(
        "rabbitmq_alarms_memory_used_watermark",
        Kind::Untyped,
        "is 1 if VM memory watermark alarm is in effect",
        u8::from(s.alarm),
    );

    if let Some(ha) = &s.ha {
        render_ha(&mut e, ha);
    }

    // Objects.
    e.single(
        "rabbitmq_connections",
        Kind::Gauge,
        "Connections currently open",
        s.connections,
    );
    e.single(
        "rabbitmq_channels",
        Kind::Gauge,
        "Channels currently open",
        s.channels,
    );
    let consumers: usize = s.queues.iter().map(|q| q.consumers).sum();
    e.single(
        "rabbitmq_consumers",
        Kind::Gauge,
        "Consumers currently connected",
        consumers,
    );
    e.single(
        "rabbitmq_queues",
        Kind::Gauge,
        "Queues available",
        s.queues.len(),
    );
    e.family(
        "rabbitmq_global_consumers",
        Kind::Gauge,
        "Current number of consumers",
    );
    e.sample("rabbitmq_global_consumers", &[AMQP], consumers);

    // Queues: summed in /metrics, one series each in /metrics/per-object.
    type Field = fn(&QueueRow) -> u64;
    let per_queue: [(&str, Kind, &str, Field); 5] = [
        (
            "rabbitmq_queue_messages_ready",
            Kind::Gauge,
            "Messages ready to be delivered to consumers",
            |q| q.ready as u64,
        ),
        (
            "rabbitmq_queue_messages_unacked",
            Kind::Gauge,
            "Messages delivered to consumers but not yet acknowledged",
            |q| q.unacked as u64,
        ),
        (
            "rabbitmq_queue_messages",
            Kind::Gauge,
            "Sum of ready and unacknowledged messages - total queue depth",
            |q| (q.ready + q.unacked) as u64,
        ),
        (
            "rabbitmq_queue_consumers",
            Kind::Gauge,
            "Consumers on a queue",
            |q| q.consumers as u64,
        ),
        (
            "rabbitmq_queue_messages_published_total",
            Kind::Counter,
            "Total number of messages published to queues",
            |q| q.counters.publish,
        ),
    ];
    for (name, kind, help, field) in per_queue {
        e.family(name, kind, help);
        if per_object {
            for q in &s.queues {
                e.sample(name, &[("vhost", &q.vhost), ("queue", &q.name)], field(q));
            }
        } else if name == "rabbitmq_queue_messages_published_total" {
            // Deleted queues' publishes too, so the counter never goes down.
            e.sample(name, &[], c.publish);
        } else {
            e.sample(name, &[], s.queues.iter().map(field).sum::<u64>());
        }
    }

    // What publishers did, in the channel-level names (summed over all channels).
    let p = &s.publishes;
    let published: [(&str, &str, u64); 4] = [
        (
            "rabbitmq_channel_messages_published_total",
            "Total number of messages published into an exchange on a channel",
            p.received,
        ),
        (
            "rabbitmq_channel_messages_confirmed_total",
            "Total number of messages published into an exchange and confirmed on the channel",
            p.confirmed,
        ),
        (
            "rabbitmq_channel_messages_unroutable_returned_total",
            "Total number of messages published as mandatory into an exchange and returned to the publisher as unroutable",
            p.unroutable_returned,
        ),
        (
            "rabbitmq_channel_messages_unroutable_dropped_total",
            "Total number of messages published as non-mandatory into an exchange and dropped as unroutable",
            p.unroutable_dropped,
        ),
    ];
    for (name, help, value) in published {
        e.single(name, Kind::Counter, help, value);
    }

    // What consumers did, in the channel-level names (summed over the queues).
    let channel: [(&str, &str, u64); 7] = [
        (
            "rabbitmq_channel_messages_delivered_ack_total",
            "Total number of messages delivered to consumers in manual acknowledgement mode",
            c.deliver,
        ),
        (
            "rabbitmq_channel_messages_delivered_total",
            "Total number of messages delivered to consumers in automatic acknowledgement mode",
            c.deliver_no_ack,
        ),
        (
            "rabbitmq_channel_get_ack_total",
            "Total number of messages fetched with basic.get in manual acknowledgement mode",
            c.get,
        ),
        (
            "rabbitmq_channel_get_total",
            "Total number of messages fetched with basic.get in automatic acknowledgement mode",
            c.get_no_ack,
        ),
        (
            "rabbitmq_channel_get_empty_total",
            "Total number of times basic.get operations fetched no message",
            c.get_empty,
        ),
        (
            "rabbitmq_channel_messages_redelivered_total",
            "Total number of messages redelivered to consumers",
            c.redeliver,
        ),
        (
            "rabbitmq_channel_messages_acked_total",
            "Total number of messages acknowledged by consumers",
            c.ack,
        ),
    ];
    for (name, help, value) in channel {
        e.single(name, Kind::Counter, help, value);
    }

    // The same, in the global (per-protocol and queue type) names.
    let global: [(&str, &str, u64); 8] = [
        (
            "rabbitmq_global_messages_delivered_total",
            "Total number of messages delivered to consumers",
            c.deliver + c.deliver_no_ack + c.get + c.get_no_ack,
        ),
        (
            "rabbitmq_global_messages_delivered_consume_manual_ack_total",
            "Total number of messages delivered to consumers using basic.consume with manual acknowledgment",
            c.deliver,
        ),
        (
            "rabbitmq_global_messages_delivered_consume_auto_ack_total",
            "Total number of messages delivered to consumers using basic.consume with automatic acknowledgment",
            c.deliver_no_ack,
        ),
        (
            "rabbitmq_global_messages_delivered_get_manual_ack_total",
            "Total number of messages delivered to consumers using basic.get with manual acknowledgment",
            c.get,
        ),
        (
            "rabbitmq_global_messages_delivered_get_auto_ack_total",
            "Total number of messages delivered to consumers using basic.get with automatic acknowledgment",
            c.get_no_ack,
        ),
        (
            "rabbitmq_global_messages_get_empty_total",
            "Total number of times basic.get operations fetched no message",
            c.get_empty,
        ),
        (
            "rabbitmq_global_messages_redelivered_total",
            "Total number of messages redelivered to consumers",
            c.redeliver,
        ),
        (
            "rabbitmq_global_messages_acknowledged_total",
            "Total number of messages acknowledged by consumers",
            c.ack,
        ),
    ];
    for (name, help, value) in global {
        e.family(name, Kind::Counter, help);
        e.sample(name, &[AMQP, CLASSIC], value);
    }

    // What publishers did, in the global names (per protocol only).
    let global_published: [(&str, &str, u64); 6] = [
        (
            "rabbitmq_global_messages_received_total",
            "Total number of messages received from publishers",
            p.received,
        ),
        (
            "rabbitmq_global_messages_received_confirm_total",
            "Total number of messages received from publishers expecting confirmations",
            p.received_confirm,
        ),
        (
            "rabbitmq_global_messages_routed_total",
            "Total number of messages routed to queues or streams",
            p.routed,
        ),
        (
            "rabbitmq_global_messages_unroutable_dropped_total",
            "Total number of messages published as non-mandatory into an exchange and dropped as unroutable",
            p.unroutable_dropped,
        ),
        (
            "rabbitmq_global_messages_unroutable_returned_total",
            "Total number of messages published as mandatory into an exchange and returned to the publisher as unroutable",
            p.unroutable_returned,
        ),
        (
            "rabbitmq_global_messages_confirmed_total",
            "Total number of messages confirmed to publishers",
            p.confirmed,
        ),
    ];
    for (name, help, value) in global_published {
        e.family(name, Kind::Counter, help);
        e.sample(name, &[AMQP], value);
    }

    // fedamq's own.
    e.single("fedamq_vhosts", Kind::Gauge, "Virtual hosts", s.vhosts);
    e.single(
        "fedamq_exchanges",
        Kind::Gauge,
        "Exchanges, the predeclared ones included",
        s.exchanges,
    );
    e.single(
        "fedamq_memory_used_bytes",
        Kind::Gauge,
        "Bytes of message data and queue structures held (what the memory high watermark is compared with)",
        s.memory_used,
    );
    e.single(
        "fedamq_connection_pending_bytes",
        Kind::Gauge,
        "Bytes held for connections whose clients have not read them yet",
        s.pending_bytes,
    );
    tunnel_series(&mut e, &s.tunnels);
    federation::render(&mut e, &s.links);
    e.finish()
}

/// Each tunnel's state (1 for the state it is in, 0 for the others) and counters;
/// no families at all without tunnels.
fn tunnel_series(e: &mut Exposition, tunnels: &[TunnelRow]) {
    if tunnels.is_empty() {
        return;
    }
    e.family(
        "fedamq_tunnel_state",
        Kind::Gauge,
        "A tunnel's state: 1 for the state it is in, 0 for the others",
    );
    for t in tunnels {
        for state in TUNNEL_STATES {
            e.sample(
                "fedamq_tunnel_state",
                &[
                    ("direction", t.direction),
                    ("service", t.service),
                    ("remote", &t.remote),
                    ("state", state),
                ],
                u8::from(t.state == state),
            );
        }
    }
    type Field = fn(&TunnelCounters) -> u64;
    let counters: [(&str, &str, Field); 3] = [
        (
            "fedamq_tunnel_methods_sent_total",
            "Service methods a tunnel sent (each once, however often re-sent)",
            |c| c.sent,
        ),
        (
            "fedamq_tunnel_methods_received_total",
            "Service methods a tunnel handed to its service",
            |c| c.received,
        ),
        (
            "fedamq_tunnel_methods_resent_total",
            "Service methods a tunnel sent again after a reconnect",
            |c| c.resent,
        ),
    ];
    for (name, help, field) in counters {
        e.family(name, Kind::Counter, help);
        for t in tunnels {
            e.sample(
                name,
                &[
                    ("direction", t.direction),
                    ("service", t.service),
                    ("remote", &t.remote),
                ],
                field(&t.counters),
            );
        }
    }
}

/// The process's resident set size (Linux's `/proc/self/status`), if known.
/// The HA pair's gauges (fedamq's own names: RabbitMQ has no such pair).
fn render_ha(e: &mut Exposition, ha: &crate::ha::HaStatus) {
    e.family(
        "fedamq_ha_state",
        Kind::Gauge,
        "1 for this broker's HA state (pending, active, passive), 0 for the others",
    );
    for state in ["pending", "active", "passive"] {
        e.sample(
            "fedamq_ha_state",
            &[("state", state), ("role", ha.role)],
            u8::from(ha.state == state),
        );
    }
    e.single(
        "fedamq_ha_epoch",
        Kind::Gauge,
        "The HA activation epoch (raised at every activation)",
        ha.epoch,
    );
    if let Some(token) = ha.fencing_token {
        e.single(
            "fedamq_ha_fencing_token",
            Kind::Gauge,
            "The fencing token of the HA arbiter's lease this broker holds",
            token,
        );
    }
    if let Some(ms) = ha.last_peer_heartbeat_ms {
        e.single(
            "fedamq_ha_peer_heartbeat_age_seconds",
            Kind::Gauge,
            "Seconds since the HA peer's last state message",
            ms as f64 / 1000.0,
        );
    }
    e.single(
        "fedamq_ha_transitions_total",
        Kind::Counter,
        "HA state changes since start",
        ha.transitions,
    );
    e.single(
        "fedamq_ha_refused_clients_total",
        Kind::Counter,
        "Client connections refused while not active",
        ha.refused_clients,
    );
}

fn resident_memory() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}
