//! Publishing into a vhost: one path for client connections and broker objects.
//!
//! A [`Publisher`] owns what publishing needs besides the message: the memory account
//! each message is charged to, CC/BCC (sender-selected distribution), routing with a
//! cached target and route, and the outcome a publisher is told (returned for
//! `mandatory`, nacked for a refusing queue, held back for flow control). A client
//! connection turns the [`Outcome`] into basic.return and basic.ack/nack frames; an
//! [`InternalPublisher`], for broker objects without a connection, hands returns to a
//! callback and confirms as a future.
//!
//! A publisher also counts what it publishes, for the management API and Prometheus:
//! into its own plain integers while it works, added to the broker's
//! [`PublishTotals`] and the exchange's counters by [`Publisher::flush`], which a
//! connection calls once per read. So the message path takes no shared counter per
//! message, only a few atomic adds per batch.

use std::future::{Future, Ready, ready};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;

use super::error::AmqpResult;
use super::exchange::Exchange;
use super::exchange_hook::{HoldsBack, PublishSource, Published};
use super::memory::MemoryGauge;
use super::message::{Message, MessageRef};
use super::owner::ConnectionId;
use super::vhost::{RouteScratch, VHost};
use crate::protocol::generated::properties::{BasicProperties, EncodedBasicProperties};
use crate::protocol::{FieldTable, FieldValue, ReplyCode, ShortString};

/// What became of one published message.
#[derive(Debug, Default)]
pub struct Outcome {
    /// How many queues took it.
    pub queues: usize,
    /// A queue refused it (`x-overflow: reject-publish`): the publisher gets a nack.
    pub rejected: bool,
    /// `mandatory` and routed nowhere: the message goes back to the publisher.
    pub returned: Option<MessageRef>,
    /// A queue whose consumers fall behind, or an exchange hook's full buffer: the
    /// publisher should wait for it.
    pub behind: Option<Arc<dyn HoldsBack>>,
}

/// A publisher confirm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Confirm {
    Ack,
    Nack,
}

impl Outcome {
    pub fn confirm(&self) -> Confirm {
        if self.rejected {
            Confirm::Nack
        } else {
            Confirm::Ack
        }
    }
}

/// What every publisher in the broker did, as rabbitmq_prometheus's global counters
/// (`rabbitmq_global_messages_*_total`) and the overview's `message_stats` count it.
#[derive(Debug, Default)]
pub struct PublishTotals {
    received: AtomicU64,
    received_confirm: AtomicU64,
    routed: AtomicU64,
    unroutable_dropped: AtomicU64,
    unroutable_returned: AtomicU64,
    confirmed: AtomicU64,
}

/// A reading of [`PublishTotals`], or one publisher's counts not yet added to them.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PublishCounts {
    /// Messages published (routed, dropped or returned alike).
    pub received: u64,
    /// Of those, published on a channel in confirm mode.
    pub received_confirm: u64,
    /// Copies that reached a queue: a message routed to two queues counts two.
    pub routed: u64,
    /// Routed nowhere and dropped (not `mandatory`).
    pub unroutable_dropped: u64,
    /// Routed nowhere and returned to a `mandatory` publisher.
    pub unroutable_returned: u64,
    /// Publisher confirms (basic.ack) sent.
    pub confirmed: u64,
}

impl PublishTotals {
    pub fn read(&self) -> PublishCounts {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        PublishCounts {
            received: get(&self.received),
            received_confirm: get(&self.received_confirm),
            routed: get(&self.routed),
            unroutable_dropped: get(&self.unroutable_dropped),
            unroutable_returned: get(&self.unroutable_returned),
            confirmed: get(&self.confirmed),
        }
    }

    fn add(&self, c: &PublishCounts) {
        let add = |a: &AtomicU64, n: u64| {
            if n != 0 {
                a.fetch_add(n, Ordering::Relaxed);
            }
        };
        add(&self.received, c.received);
        add(&self.received_confirm, c.received_confirm);
        add(&self.routed, c.routed);
        add(&self.unroutable_dropped, c.unroutable_dropped);
        add(&self.unroutable_returned, c.unroutable_returned);
        add(&self.confirmed, c.confirmed);
    }
}

/// An exchange's `publish_in` / `publish_out` counted since the last flush.
#[derive(Debug)]
struct ExchangeTally {
    exchange: Arc<Exchange>,
    publish_in: u64,
    publish_out: u64,
}

impl ExchangeTally {
    fn flush(&self) {
        let c = &self.exchange.counters;
        c.publish_in.fetch_add(self.publish_in, Ordering::Relaxed);
        if self.publish_out != 0 {
            c.publish_out.fetch_add(self.publish_out, Ordering::Relaxed);
        }
    }
}

/// One publisher's state in one vhost.
#[derive(Debug)]
pub struct Publisher {
    vhost: Arc<VHost>,
    memory: MemoryGauge,
    totals: Arc<PublishTotals>,
    /// Counted since the last [`Publisher::flush`].
    counts: PublishCounts,
    /// The exchanges published to since the last flush, with their counts (a publisher
    /// mostly uses one, so this is a short list).
    exchanges: Vec<ExchangeTally>,
    scratch: RouteScratch,
    /// The exchange last published to, checked, valid while the vhost's topology count
    /// and the caller's permission epoch are the ones noted: a publisher sends to the
    /// same exchange again and again, and this saves the lookups and checks each time.
    target: Option<(Arc<Exchange>, u64, u64)>,
    /// The client connection publishing, if it is one.
    connection: Option<ConnectionId>,
    /// A broker object relaying messages from another broker (see `PublishSource`).
    relayed: bool,
}

impl Publisher {
    pub fn new(vhost: Arc<VHost>, memory: MemoryGauge, totals: Arc<PublishTotals>) -> Publisher {
        Publisher {
            vhost,
            memory,
            totals,
            counts: PublishCounts::default(),
            exchanges: Vec::new(),
            scratch: RouteScratch::default(),
            target: None,
            connection: None,
            relayed: false,
        }
    }

    /// The publisher of a client connection (exchange hooks see it as the source).
    pub fn for_connection(
        vhost: Arc<VHost>,
        memory: MemoryGauge,
        totals: Arc<PublishTotals>,
        id: ConnectionId,
    ) -> Publisher {
        let mut publisher = Publisher::new(vhost, memory, totals);
        publisher.connection = Some(id);
        publisher
    }

    fn source(&self, channel: u16) -> PublishSource {
        match self.connection {
            Some(connection) => PublishSource::Client {
                connection,
                channel,
            },
            None => PublishSource::Internal {
                relayed: self.relayed,
            },
        }
    }

    pub fn vhost(&self) -> &Arc<VHost> {
        &self.vhost
    }

    /// The exchange `name`, or 404. `check` (not internal, permissions) runs when it is
    /// looked up afresh: after a topology change or when `epoch` (the caller's
    /// permission generation) moved.
    pub fn target(
        &mut self,
        name: &ShortString,
        epoch: u64,
        check: impl FnOnce(&Exchange) -> AmqpResult<()>,
    ) -> AmqpResult<Arc<Exchange>> {
        let topology = self.vhost.topology();
        if let Some((ex, seen, seen_epoch)) = &self.target {
            if *seen == topology && *seen_epoch == epoch && ex.spec.name == *name {
                return Ok(ex.clone());
            }
        }
        let exchange = self.vhost.exchange_or_404(name)?;
        check(&exchange)?;
        self.target = Some((exchange.clone(), topology, epoch));
        Ok(exchange)
    }

    /// A message charged to the broker's memory account while it lives.
    pub fn message(
        &self,
        exchange: ShortString,
        routing_key: ShortString,
        properties: EncodedBasicProperties,
        body: Bytes,
    ) -> MessageRef {
        Arc::new(
            Message::from_encoded(&exchange, &routing_key, properties, body)
                .charge_to(&self.memory),
        )
    }

    /// Routes a message from `exchange` (CC and BCC keys too) into its queues.
    pub fn route(
        &mut self,
        exchange: &Arc<Exchange>,
        message: MessageRef,
        mandatory: bool,
    ) -> Outcome {
        self.route_on(0, exchange, message, mandatory)
    }

    /// Routes a message a client published on `channel` (see [`Publisher::route`]). An
    /// exchange hook may skip local routing and may take the message: a message it
    /// took counts as delivered, so it is not returned.
    pub fn route_on(
        &mut self,
        channel: u16,
        exchange: &Arc<Exchange>,
        message: MessageRef,
        mandatory: bool,
    ) -> Outcome {
        let hook = self.vhost.exchange_hook(&exchange.spec.name);
        let source = self.source(channel);
        let local = hook.as_ref().is_none_or(|h| h.route_locally(source));
        // Decoded once here: CC/BCC and headers exchanges all read them.
        let headers = message.properties().headers();
        let extra_keys = sender_selected_keys(headers.as_ref());
        let message = strip_bcc(message, headers.as_ref());
        let routed = if local {
            self.vhost.publish(
                exchange,
                &message,
                headers.as_ref(),
                &extra_keys,
                &mut self.scratch,
            )
        } else {
            Default::default()
        };
        let mut behind = routed.behind.map(|q| q as Arc<dyn HoldsBack>);
        let mut taken = false;
        if let Some(hook) = hook {
            let published = Published {
                message: &message,
                mandatory,
                source,
                delivered: if local { routed.queues } else { 1 },
            };
            if let Some(t) = hook.published(published) {
                taken = true;
                behind = t.hold_back.or(behind);
            }
        }
        let unrouted = local && routed.queues == 0 && !routed.rejected && !taken;
        let returned = (mandatory && unrouted).then_some(message);
        // A message a hook took is not unroutable.
        self.count(
            exchange,
            routed.queues as u64,
            routed.rejected || taken,
            mandatory,
        );
        Outcome {
            queues: routed.queues,
            rejected: routed.rejected,
            returned,
            behind,
        }
    }

    fn count(&mut self, exchange: &Arc<Exchange>, queues: u64, rejected: bool, mandatory: bool) {
        let c = &mut self.counts;
        c.received += 1;
        c.routed += queues;
        if queues == 0 && !rejected {
            if mandatory {
                c.unroutable_returned += 1;
            } else {
                c.unroutable_dropped += 1;
            }
        }
        let tally = match self
            .exchanges
            .iter_mut()
            .find(|t| Arc::ptr_eq(&t.exchange, exchange))
        {
            Some(t) => t,
            None => {
                self.exchanges.push(ExchangeTally {
                    exchange: exchange.clone(),
                    publish_in: 0,
                    publish_out: 0,
                });
                let last = self.exchanges.len() - 1;
                &mut self.exchanges[last]
            }
        };
        tally.publish_in += 1;
        tally.publish_out += queues;
    }

    /// Counts a message published on a channel in confirm mode.
    pub fn count_confirm_requested(&mut self) {
        self.counts.received_confirm += 1;
    }

    /// Counts `n` publisher confirms (basic.ack) sent.
    pub fn count_confirmed(&mut self, n: u64) {
        self.counts.confirmed += n;
    }

    /// Adds what was counted since the last flush to the broker's totals and the
    /// exchanges' counters. A connection calls it once per read.
    pub fn flush(&mut self) {
        if self.counts != PublishCounts::default() {
            self.totals.add(&self.counts);
            self.counts = PublishCounts::default();
        }
        for t in self.exchanges.drain(..) {
            t.flush();
        }
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        self.flush();
    }
}

/// A message a broker object published with `mandatory` that no queue took.
#[derive(Debug)]
pub struct Returned {
    pub reply_code: ReplyCode,
    pub reply_text: &'static str,
    pub message: MessageRef,
}

/// Publishes for a broker object that has no connection (a federation link, the HA
/// pair's replication, the management API's publish).
pub struct InternalPublisher {
    publisher: Publisher,
    on_return: Option<Box<dyn FnMut(Returned) + Send>>,
}

impl std::fmt::Debug for InternalPublisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InternalPublisher")
            .field("vhost", &self.publisher.vhost.name)
            .finish_non_exhaustive()
    }
}

impl InternalPublisher {
    pub fn new(
        vhost: Arc<VHost>,
        memory: MemoryGauge,
        totals: Arc<PublishTotals>,
    ) -> InternalPublisher {
        InternalPublisher {
            publisher: Publisher::new(vhost, memory, totals),
            on_return: None,
        }
    }

    /// Marks what this publisher publishes as relayed from another broker (a federation
    /// link's deliveries): exchange hooks never send it back out.
    pub fn relayed(&mut self) {
        self.publisher.relayed = true;
    }

    /// Where `mandatory` messages that no queue took go (without it they are dropped,
    /// and counted nowhere, as an AMQP client without a return listener).
    pub fn on_return(&mut self, f: impl FnMut(Returned) + Send + 'static) {
        self.on_return = Some(Box::new(f));
    }

    /// Publishes one message. Fails at once if the exchange does not exist (404);
    /// otherwise returns the publisher confirm as a future. The broker keeps messages in
    /// memory, where a message is confirmed once every queue has taken it, so today the
    /// future is ready when returned; callers await it so that a durable store can
    /// confirm later without changing them.
    pub fn publish(
        &mut self,
        exchange: &ShortString,
        routing_key: ShortString,
        properties: &BasicProperties,
        body: Bytes,
        mandatory: bool,
    ) -> AmqpResult<impl Future<Output = Confirm> + Send + use<>> {
        let ex = self.publisher.target(exchange, 0, |_| Ok(()))?;
        let message = self.publisher.message(
            exchange.clone(),
            routing_key,
            EncodedBasicProperties::encode(properties),
            body,
        );
        let outcome = self.publisher.route(&ex, message, mandatory);
        // Confirmed at once (see above), and counted as RabbitMQ counts its management
        // plugin's publishes, which go through a channel in confirm mode.
        self.publisher.count_confirm_requested();
        if outcome.confirm() == Confirm::Ack {
            self.publisher.count_confirmed(1);
        }
        self.publisher.flush();
        if let (Some(message), Some(f)) = (outcome.returned.clone(), self.on_return.as_mut()) {
            f(Returned {
                reply_code: ReplyCode::NoRoute,
                reply_text: "NO_ROUTE",
                message,
            });
        }
        let confirm: Ready<Confirm> = ready(outcome.confirm());
        Ok(confirm)
    }
}

/// The `CC` and `BCC` headers' routing keys (RabbitMQ's sender-selected distribution).
fn sender_selected_keys(headers: Option<&FieldTable>) -> Vec<ShortString> {
    let Some(headers) = headers else {
        return Vec::new();
    };
    let mut keys = Vec::new();
    for name in ["CC", "BCC"] {
        if let Some(FieldValue::Array(values)) = headers.get(name) {
            for v in values {
                if let FieldValue::LongString(b) = v {
                    if let Ok(k) = ShortString::new(b.clone()) {
                        keys.push(k);
                    }
                }
            }
        }
    }
    keys
}

/// `BCC` is routed on but never delivered: the message loses that header.
fn strip_bcc(message: MessageRef, headers: Option<&FieldTable>) -> MessageRef {
    if headers.is_none_or(|h| h.get("BCC").is_none()) {
        return message;
    }
    let mut properties = message.properties().to_properties();
    if let Some(h) = &mut properties.headers {
        h.remove("BCC");
    }
    Arc::new(message.with_properties(EncodedBasicProperties::encode(&properties)))
}
