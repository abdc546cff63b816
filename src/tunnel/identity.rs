//! The `broker` service (spec/tunnel-broker.xml): ask a remote fedamq who it is. Every
//! broker accepts it and answers `identify` with its identifier, product, version and
//! uptime. `links` (its view of the links pointing at the asker) stays empty until
//! federation gives it something to say.

use std::sync::{Arc, Weak};

use tokio::sync::mpsc;

use crate::broker::node::Broker;
use crate::protocol::generated::methods::{BrokerIdentify, BrokerIdentifyOk, Method};
use crate::protocol::generated::services::{BROKER, BrokerService};
use crate::protocol::{FieldTable, ShortString};

use super::{TunnelSender, Tunnels};

/// Answers `identify` for one broker, in order, through one task (a handler must not
/// wait on the window).
pub struct Responder {
    broker: Weak<Broker>,
    answers: mpsc::UnboundedSender<Method>,
}

impl Responder {
    pub fn new(sender: TunnelSender, broker: Weak<Broker>) -> Responder {
        let (answers, mut rx) = mpsc::unbounded_channel::<Method>();
        tokio::spawn(async move {
            while let Some(m) = rx.recv().await {
                if sender.send(m).await.is_err() {
                    return;
                }
            }
        });
        Responder { broker, answers }
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
                links: FieldTable::new(),
            }));
    }

    fn identify_ok(&mut self, _: BrokerIdentifyOk) {}
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
    tunnels.register(&BROKER, move |sender| {
        Box::new(crate::protocol::generated::services::Broker(
            Responder::new(sender, broker.clone()),
        ))
    });
}
