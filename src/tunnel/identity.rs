//! The `broker` service (spec/tunnel-broker.xml): ask a remote fedamq who it is. Every
//! broker accepts it and answers `identify` with its identifier, product, version and
//! uptime, and `links`: its view of the asker's connections to it (those whose
//! `identifier` client property is the asker's), with the queues each consumes from, so
//! a federation link can show what its upstream sees of it.

use std::sync::{Arc, Weak};

use tokio::sync::mpsc;

use crate::broker::node::Broker;
use crate::protocol::generated::methods::{BrokerIdentify, BrokerIdentifyOk, Method};
use crate::protocol::generated::services::{BROKER, BrokerService};
use crate::protocol::{FieldTable, FieldValue, ShortString};

use super::{TunnelSender, Tunnels};

/// Answers `identify` for one broker, in order, through one task (a handler must not
/// wait on the window).
pub struct Responder {
    broker: Weak<Broker>,
    /// The asker's identifier.
    opener: String,
    answers: mpsc::UnboundedSender<Method>,
}

impl Responder {
    pub fn new(sender: TunnelSender, broker: Weak<Broker>, opener: &str) -> Responder {
        let (answers, mut rx) = mpsc::unbounded_channel::<Method>();
        tokio::spawn(async move {
            while let Some(m) = rx.recv().await {
                if sender.send(m).await.is_err() {
                    return;
                }
            }
        });
        Responder {
            broker,
            opener: opener.to_owned(),
            answers,
        }
    }
}

impl BrokerService for Responder {
    fn identify(&mut self, method: BrokerIdentify) {
        let Some(broker) = self.broker.upgrade() else {
            return;
        };
        let s = |v: &str| ShortString::try_from(v).unwrap_or_default();
        let uptime = u64::try_from(broker.uptime().as_millis()).unwrap_or(u64::MAX);
        let _ = self
            .answers
            .send(Method::BrokerIdentifyOk(BrokerIdentifyOk {
                serial: method.serial,
                identifier: s(broker.identifier()),
                product: ShortString::from_static("fedamq"),
                version: ShortString::from_static(env!("CARGO_PKG_VERSION")),
                uptime,
                links: links(&broker, &self.opener),
            }));
    }

    fn identify_ok(&mut self, _: BrokerIdentifyOk) {}
}

/// `identify-ok.links` (shape in spec/tunnel-broker.xml): `connections`, an array with
/// a table per connection from `opener`, each with the queues it consumes from.
pub fn links(broker: &Broker, opener: &str) -> FieldTable {
    let put = |t: &mut FieldTable, k: &'static str, v: FieldValue| {
        t.insert(ShortString::from_static(k), v)
    };
    let count = |n: usize| FieldValue::I64(i64::try_from(n).unwrap_or(i64::MAX));
    let mut connections = Vec::new();
    for c in broker.connections().list() {
        if c.identifier.as_deref() != Some(opener) {
            continue;
        }
        let mut queues = Vec::new();
        if let Some(vhost) = broker.vhost(&c.vhost) {
            for queue in vhost.queues() {
                let s = queue.snapshot();
                if !s.consumers.iter().any(|k| c.owns(&k.mailbox)) {
                    continue;
                }
                let mut q = FieldTable::new();
                put(&mut q, "name", queue.name().clone().into());
                put(&mut q, "messages_ready", count(s.ready));
                put(&mut q, "messages_unacknowledged", count(s.unacked));
                put(&mut q, "consumers", count(s.consumers.len()));
                queues.push(FieldValue::Table(q));
            }
        }
        let mut t = FieldTable::new();
        let peer = c.peer.map(|p| p.to_string()).unwrap_or_default();
        put(&mut t, "peer", peer.into());
        put(&mut t, "user", c.user.as_str().into());
        put(&mut t, "vhost", c.vhost.as_str().into());
        put(&mut t, "channels", count(c.channel_count()));
        put(&mut t, "queues", FieldValue::Array(queues));
        connections.push(FieldValue::Table(t));
    }
    let mut links = FieldTable::new();
    put(&mut links, "connections", FieldValue::Array(connections));
    links
}

/// Hands every answer that arrives to a channel: for the broker that asks.
pub struct Answers(pub mpsc::UnboundedSender<BrokerIdentifyOk>);

impl BrokerService for Answers {
    fn identify(&mut self, _: BrokerIdentify) {}

    fn identify_ok(&mut self, method: BrokerIdentifyOk) {
        let _ = self.0.send(method);
    }
}

/// Registers the broker service on `broker`'s tunnels.
pub(super) fn register(tunnels: &Tunnels, broker: &Arc<Broker>) {
    let broker = Arc::downgrade(broker);
    tunnels.register_per_opener(&BROKER, move |sender, opener| {
        Box::new(crate::protocol::generated::services::Broker(
            Responder::new(sender, broker.clone(), opener),
        ))
    });
}
