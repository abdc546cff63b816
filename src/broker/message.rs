//! A published message as the broker keeps it: stored once, shared by every queue it was
//! routed to.
//!
//! The properties are kept as the publisher encoded them, checked and indexed on arrival
//! ([`EncodedBasicProperties`]): TTL, priority, headers routing and dead-lettering read
//! single properties from them, and a delivery carries exactly what was published without
//! re-encoding, unless the broker changed something (dead-lettering adds `x-death`).
//! Keeping the encoded form (~100 bytes) rather than a decoded struct (~370) is what
//! keeps a large backlog small.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;

use crate::protocol::ShortString;
use crate::protocol::generated::properties::{BasicProperties, EncodedBasicProperties};

/// One message, immutable once published. Queues hold [`MessageRef`]s.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// The exchange it was published to (or dead-lettered through).
    pub exchange: ShortString,
    pub routing_key: ShortString,
    /// As sent in the content header.
    pub properties: EncodedBasicProperties,
    pub body: Bytes,
    /// Counts the body against the broker's memory gauge while the message lives.
    pub accounted: Accounted,
}

/// The broker's count of message bytes held, for the memory high watermark.
pub type MemoryGauge = Arc<AtomicU64>;

/// Adds a message's size to a [`MemoryGauge`] and takes it off again when the message
/// is dropped. A clone is not counted (it is a new message, e.g. a dead letter).
#[derive(Debug, Default)]
pub struct Accounted(Option<(MemoryGauge, u64)>);

impl Accounted {
    pub fn new(gauge: &MemoryGauge, bytes: u64) -> Accounted {
        gauge.fetch_add(bytes, Ordering::Relaxed);
        Accounted(Some((gauge.clone(), bytes)))
    }
}

impl Clone for Accounted {
    fn clone(&self) -> Self {
        Accounted(None)
    }
}

impl PartialEq for Accounted {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Drop for Accounted {
    fn drop(&mut self) {
        if let Some((gauge, bytes)) = &self.0 {
            gauge.fetch_sub(*bytes, Ordering::Relaxed);
        }
    }
}

/// Messages are shared between queues; cloning a reference copies no body.
pub type MessageRef = Arc<Message>;

impl Message {
    /// A message whose properties are encoded from `properties`.
    pub fn new(
        exchange: ShortString,
        routing_key: ShortString,
        properties: BasicProperties,
        body: Bytes,
    ) -> Message {
        Message {
            exchange,
            routing_key,
            properties: EncodedBasicProperties::encode(&properties),
            body,
            accounted: Accounted::default(),
        }
    }

    /// The size counted against `x-max-length-bytes` (the body, as RabbitMQ counts it).
    pub fn body_size(&self) -> usize {
        self.body.len()
    }

    /// The per-message TTL from the `expiration` property, in milliseconds, if valid.
    /// RabbitMQ takes a non-negative integer written in decimal.
    pub fn expiration_ms(&self) -> Option<u64> {
        let text = self.properties.expiration()?;
        text.as_str()?.parse().ok()
    }

    /// The priority property (0 when absent).
    pub fn priority(&self) -> u8 {
        self.properties.priority().unwrap_or(0)
    }
}
