//! A published message as the broker keeps it: stored once, shared by every queue it was
//! routed to.
//!
//! Compact, because a backlog is millions of these: the exchange name, the routing key
//! and a body up to [`INLINE_BODY`] octets are copied into one allocation of their exact
//! size, so a small message costs two allocations (that and its `Arc`) and pins nothing
//! of the connection's read buffer it arrived in. A larger body is kept as received (no
//! copy). The properties are kept as the publisher encoded them, checked and indexed on
//! arrival ([`EncodedBasicProperties`]), boxed and only when there are any: TTL,
//! priority, headers routing and dead-lettering read single properties from them, and a
//! delivery carries exactly what was published without re-encoding, unless the broker
//! changed something (dead-lettering adds `x-death`).

use std::sync::{Arc, LazyLock};

use bytes::Bytes;

use super::memory::{MemoryGauge, allocated, arc_allocated};
use crate::protocol::ShortString;
use crate::protocol::generated::properties::{BasicProperties, EncodedBasicProperties};

/// Bodies up to this long are copied in with the names; longer ones are kept as received.
pub const INLINE_BODY: usize = 4096;

/// One message, immutable once published. Queues hold [`MessageRef`]s.
pub struct Message {
    /// The exchange name, then the routing key, then the body when it is inline.
    data: Box<[u8]>,
    exchange_len: u8,
    routing_key_len: u8,
    /// The body when it is longer than [`INLINE_BODY`].
    large_body: Option<Box<Bytes>>,
    /// `None` for an empty property list.
    properties: Option<Box<EncodedBasicProperties>>,
    /// The gauge this message's [`footprint`](Message::footprint) is charged to while it
    /// lives; none for a copy (a dead letter is charged afresh by whoever publishes it).
    charged: Option<MemoryGauge>,
}

/// Messages are shared between queues; cloning a reference copies no body.
pub type MessageRef = Arc<Message>;

/// What an empty property list reads as.
static NO_PROPERTIES: LazyLock<EncodedBasicProperties> =
    LazyLock::new(EncodedBasicProperties::default);

impl Message {
    /// A message whose properties are encoded from `properties`.
    pub fn new(
        exchange: ShortString,
        routing_key: ShortString,
        properties: BasicProperties,
        body: Bytes,
    ) -> Message {
        Message::from_encoded(
            &exchange,
            &routing_key,
            EncodedBasicProperties::encode(&properties),
            body,
        )
    }

    /// A message of properties as encoded; nothing of `properties` or `body` that the
    /// message keeps shares an allocation with anything else, except a body longer than
    /// [`INLINE_BODY`].
    pub fn from_encoded(
        exchange: &ShortString,
        routing_key: &ShortString,
        properties: EncodedBasicProperties,
        body: Bytes,
    ) -> Message {
        let inline = body.len() <= INLINE_BODY;
        let mut data = Vec::with_capacity(
            exchange.len() + routing_key.len() + if inline { body.len() } else { 0 },
        );
        data.extend_from_slice(exchange.as_bytes());
        data.extend_from_slice(routing_key.as_bytes());
        if inline {
            data.extend_from_slice(&body);
        }
        let raw = properties.as_bytes();
        let properties = if raw.iter().all(|&b| b == 0) {
            // Flag words only, all clear: nothing to keep.
            None
        } else {
            // Copied out of the frame it came in, so the read buffer is not pinned.
            let copy = EncodedBasicProperties::decode(Bytes::copy_from_slice(raw));
            Some(Box::new(copy.unwrap_or(properties)))
        };
        Message {
            data: data.into_boxed_slice(),
            // Both are shortstrs: at most 255 octets.
            exchange_len: exchange.len() as u8,
            routing_key_len: routing_key.len() as u8,
            large_body: (!inline).then(|| Box::new(body)),
            properties,
            charged: None,
        }
    }

    /// Charges this message's footprint to `gauge` until it is dropped.
    pub fn charge_to(mut self, gauge: &MemoryGauge) -> Message {
        if self.charged.is_none() {
            gauge.charge(self.footprint());
            self.charged = Some(gauge.clone());
        }
        self
    }

    /// What this message occupies, shared by every queue it is in (each queue's entry
    /// for it is charged by the queue): the `Arc`ed struct, its data, the properties and
    /// a large body.
    pub fn footprint(&self) -> u64 {
        let properties = self.properties.as_ref().map_or(0, |p| {
            allocated(size_of::<EncodedBasicProperties>()) + allocated(p.as_bytes().len())
        });
        let large = self
            .large_body
            .as_ref()
            .map_or(0, |b| allocated(size_of::<Bytes>()) + b.len());
        (arc_allocated::<Message>() + allocated(self.data.len()) + properties + large) as u64
    }

    /// The footprint of a message with no properties, a body of `body` octets and
    /// exchange name and routing key of `names` octets together.
    pub fn footprint_of(body: usize, names: usize) -> u64 {
        let data = names + if body <= INLINE_BODY { body } else { 0 };
        let large = if body > INLINE_BODY {
            allocated(size_of::<Bytes>()) + body
        } else {
            0
        };
        (arc_allocated::<Message>() + allocated(data) + large) as u64
    }

    /// The exchange it was published to (or dead-lettered through).
    pub fn exchange(&self) -> ShortString {
        self.names(0, self.exchange_len)
    }

    pub fn routing_key(&self) -> ShortString {
        self.names(usize::from(self.exchange_len), self.routing_key_len)
    }

    pub fn routing_key_bytes(&self) -> &[u8] {
        let start = usize::from(self.exchange_len);
        &self.data[start..start + usize::from(self.routing_key_len)]
    }

    fn names(&self, start: usize, len: u8) -> ShortString {
        // `data` holds at least `start + len` octets, and `len` is at most 255.
        ShortString::from_prefix(&self.data[start..], usize::from(len)).unwrap_or_default()
    }

    /// As sent in the content header.
    pub fn properties(&self) -> &EncodedBasicProperties {
        self.properties.as_deref().unwrap_or(&NO_PROPERTIES)
    }

    pub fn body(&self) -> &[u8] {
        match &self.large_body {
            Some(b) => b,
            None => {
                &self.data[usize::from(self.exchange_len) + usize::from(self.routing_key_len)..]
            }
        }
    }

    /// The body as a `Bytes` (a copy when it is inline).
    pub fn body_bytes(&self) -> Bytes {
        match &self.large_body {
            Some(b) => Bytes::clone(b),
            None => Bytes::copy_from_slice(self.body()),
        }
    }

    /// The size counted against `x-max-length-bytes` (the body, as RabbitMQ counts it).
    pub fn body_size(&self) -> usize {
        self.body().len()
    }

    /// The per-message TTL from the `expiration` property, in milliseconds, if valid.
    /// RabbitMQ takes a non-negative integer written in decimal.
    pub fn expiration_ms(&self) -> Option<u64> {
        let text = self.properties.as_ref()?.expiration()?;
        text.as_str()?.parse().ok()
    }

    /// The priority property (0 when absent).
    pub fn priority(&self) -> u8 {
        self.properties
            .as_ref()
            .and_then(|p| p.priority())
            .unwrap_or(0)
    }

    /// The same message with other properties, uncharged.
    pub fn with_properties(&self, properties: EncodedBasicProperties) -> Message {
        Message::from_encoded(
            &self.exchange(),
            &self.routing_key(),
            properties,
            self.body_bytes(),
        )
    }
}

impl Drop for Message {
    fn drop(&mut self) {
        if let Some(gauge) = &self.charged {
            gauge.release(self.footprint());
        }
    }
}

/// A copy is a new message, not charged (e.g. a dead letter, charged when published).
impl Clone for Message {
    fn clone(&self) -> Self {
        Message {
            data: self.data.clone(),
            exchange_len: self.exchange_len,
            routing_key_len: self.routing_key_len,
            large_body: self.large_body.clone(),
            properties: self.properties.clone(),
            charged: None,
        }
    }
}

impl PartialEq for Message {
    fn eq(&self, other: &Self) -> bool {
        self.exchange_len == other.exchange_len
            && self.routing_key_len == other.routing_key_len
            && self.properties() == other.properties()
            && self.body() == other.body()
            && self.data[..self.names_len()] == other.data[..other.names_len()]
    }
}

impl Message {
    fn names_len(&self) -> usize {
        usize::from(self.exchange_len) + usize::from(self.routing_key_len)
    }
}

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Message")
            .field("exchange", &self.exchange())
            .field("routing_key", &self.routing_key())
            .field("properties", self.properties())
            .field("body", &Bytes::copy_from_slice(self.body()))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(body: &'static [u8], properties: BasicProperties) -> Message {
        Message::new(
            ShortString::from_static("amq.direct"),
            ShortString::from_static("some.key"),
            properties,
            Bytes::from_static(body),
        )
    }

    #[test]
    fn parts_read_back_as_published() {
        let big: &'static [u8] = Box::leak(vec![7u8; INLINE_BODY + 1].into_boxed_slice());
        for body in [&b""[..], b"hello", big] {
            let props = BasicProperties {
                priority: Some(3),
                expiration: Some(ShortString::from_static("1500")),
                ..Default::default()
            };
            let m = message(body, props.clone());
            assert_eq!(m.exchange(), "amq.direct");
            assert_eq!(m.routing_key(), "some.key");
            assert_eq!(m.routing_key_bytes(), b"some.key");
            assert_eq!(m.body(), body);
            assert_eq!(&m.body_bytes()[..], body);
            assert_eq!((m.priority(), m.expiration_ms()), (3, Some(1500)));
            assert_eq!(m.properties().to_properties(), props);
            assert_eq!(m.clone(), m);
        }
        let plain = message(b"x", BasicProperties::default());
        assert!(plain.properties.is_none());
        assert_eq!(&plain.properties().as_bytes()[..], &[0, 0]);
        assert_eq!((plain.priority(), plain.expiration_ms()), (0, None));
    }

    #[test]
    fn a_charged_message_releases_its_footprint_when_dropped() {
        let gauge = MemoryGauge::default();
        let m = message(b"", BasicProperties::default()).charge_to(&gauge);
        let least = Message::footprint_of(0, "amq.directsome.key".len());
        assert_eq!((gauge.used(), m.footprint()), (least, least));
        let copy = m.clone();
        drop(m);
        assert_eq!(gauge.used(), 0);
        drop(copy);
        assert_eq!(gauge.used(), 0);
    }
}
