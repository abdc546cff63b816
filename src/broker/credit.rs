//! Prefetch credit: how many unacknowledged deliveries a consumer (or a whole channel)
//! may have outstanding.
//!
//! Shared between the queue, which takes credit when it hands a message out, and the
//! consumer's channel, which gives it back on ack, so it is a pair of atomics rather
//! than state behind either side's lock.

use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

use super::memory::{Account, MemoryGauge};

/// A prefetch window. A limit of 0 means unlimited (as `basic.qos` prefetch-count 0).
#[derive(Debug, Default)]
pub struct Credit {
    limit: AtomicU32,
    in_flight: AtomicU32,
}

impl Credit {
    pub fn new(limit: u32) -> Self {
        Credit {
            limit: AtomicU32::new(limit),
            in_flight: AtomicU32::new(0),
        }
    }

    pub fn set_limit(&self, limit: u32) {
        self.limit.store(limit, Ordering::Release);
    }

    pub fn limit(&self) -> u32 {
        self.limit.load(Ordering::Acquire)
    }

    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Acquire)
    }

    /// Whether one more delivery would fit, without taking it.
    pub fn has_room(&self) -> bool {
        let limit = self.limit();
        limit == 0 || self.in_flight() < limit
    }

    /// Takes one unit if the window allows it.
    pub fn try_take(&self) -> bool {
        let limit = self.limit();
        if limit == 0 {
            self.in_flight.fetch_add(1, Ordering::AcqRel);
            return true;
        }
        self.in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < limit).then_some(n + 1)
            })
            .is_ok()
    }

    /// Returns `n` units (acked, rejected, requeued or never sent).
    pub fn give_back(&self, n: u32) {
        let _ = self
            .in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| {
                Some(v.saturating_sub(n))
            });
    }
}

/// Bytes held for a connection that its client has not read yet: frames encoded but not
/// yet written to the socket, and deliveries waiting in the connection's mailbox. A
/// client that stops reading must not make the broker buffer without bound, so over
/// [`HIGH_WATER`](Self::HIGH_WATER) queues hand the connection's consumers nothing more
/// and the connection stops reading its socket (its publishes, whose returns and confirms
/// would add to the pile, wait in TCP), until the count is back under
/// [`LOW_WATER`](Self::LOW_WATER).
///
/// Encoded bytes are copies, so they are also charged to the broker's memory gauge;
/// deliveries in the mailbox are not (their messages are counted already).
#[derive(Debug, Default)]
pub struct PendingBytes {
    pending: AtomicUsize,
    /// The encoded part of `pending`, charged to the memory gauge (released when the
    /// count is dropped: bytes never written, the client gone, no longer take memory).
    encoded: Option<Account>,
}

impl PendingBytes {
    /// Above this many held bytes, the connection is not read and not handed deliveries.
    pub const HIGH_WATER: usize = 4 << 20;

    /// Paused consumers are resumed once the count is down to this: resuming at the high
    /// water mark itself would wake the queue for every message or two.
    pub const LOW_WATER: usize = Self::HIGH_WATER / 2;

    /// A count whose encoded bytes are charged to `memory`.
    pub fn charging(memory: &MemoryGauge) -> Self {
        PendingBytes {
            pending: AtomicUsize::new(0),
            encoded: Some(memory.account()),
        }
    }

    pub fn get(&self) -> usize {
        self.pending.load(Ordering::Acquire)
    }

    pub fn has_room(&self) -> bool {
        self.get() < Self::HIGH_WATER
    }

    /// What a delivery of `message` counts while it waits in the connection's mailbox,
    /// before it is encoded: so a connection task that falls behind its consumers holds
    /// them back too (it would otherwise collect deliveries without bound).
    pub fn queued_size(message: &crate::broker::message::Message) -> usize {
        message.body().len() + message.properties().as_bytes().len() + 64
    }

    /// A delivery of `message` was put in the connection's mailbox.
    pub fn delivery_queued(&self, message: &crate::broker::message::Message) {
        self.pending
            .fetch_add(Self::queued_size(message), Ordering::AcqRel);
    }

    /// A delivery of `message` was taken from the mailbox; true when that brought the
    /// count down across the low water mark.
    pub fn delivery_taken(&self, message: &crate::broker::message::Message) -> bool {
        self.release(Self::queued_size(message))
    }

    /// `n` encoded bytes were handed to the writer.
    pub fn add(&self, n: usize) {
        self.pending.fetch_add(n, Ordering::AcqRel);
        if let Some(encoded) = &self.encoded {
            encoded.charge(n as u64);
        }
    }

    /// `n` encoded bytes were written; true when that brought the count down across the
    /// low water mark.
    pub fn sub(&self, n: usize) -> bool {
        if let Some(encoded) = &self.encoded {
            encoded.release(n as u64);
        }
        self.release(n)
    }

    fn release(&self, n: usize) -> bool {
        let before = self.pending.fetch_sub(n, Ordering::AcqRel);
        before >= Self::LOW_WATER && before.saturating_sub(n) < Self::LOW_WATER
    }
}

/// Takes one unit from each window present, or from none.
pub fn take_all(windows: &[Option<&Credit>]) -> bool {
    for (i, w) in windows.iter().enumerate() {
        if let Some(w) = w {
            if !w.try_take() {
                for w in windows[..i].iter().flatten() {
                    w.give_back(1);
                }
                return false;
            }
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paused_consumers_resume_at_the_low_water_mark_only() {
        let p = PendingBytes::default();
        p.add(PendingBytes::HIGH_WATER);
        assert!(!p.has_room());
        // Back under the high mark: room again, but no wake-up yet.
        assert!(!p.sub(1));
        assert!(p.has_room());
        assert!(!p.sub(PendingBytes::HIGH_WATER - 1 - PendingBytes::LOW_WATER));
        // Across the low mark: wake the queues, once.
        assert!(p.sub(1));
        assert!(!p.sub(1));
    }

    #[test]
    fn written_bytes_are_charged_to_the_gauge_until_written_or_dropped() {
        let gauge = MemoryGauge::default();
        let p = PendingBytes::charging(&gauge);
        let message = crate::broker::message::Message::new(
            crate::protocol::ShortString::from_static(""),
            crate::protocol::ShortString::from_static("q"),
            Default::default(),
            bytes::Bytes::from_static(&[0; 100]),
        );
        p.delivery_queued(&message);
        assert_eq!(gauge.used(), 0, "the message is counted already");
        p.add(1000);
        assert_eq!(gauge.used(), 1000);
        p.sub(400);
        assert_eq!(gauge.used(), 600);
        assert_eq!(p.get(), 600 + PendingBytes::queued_size(&message));
        p.delivery_taken(&message);
        assert_eq!(p.get(), 600);
        drop(p);
        assert_eq!(gauge.used(), 0, "unwritten bytes released");
    }

    #[test]
    fn a_window_admits_up_to_its_limit() {
        let c = Credit::new(2);
        assert!(c.try_take());
        assert!(c.try_take());
        assert!(!c.try_take());
        c.give_back(1);
        assert!(c.try_take());
        c.give_back(5);
        assert_eq!(c.in_flight(), 0);
    }

    #[test]
    fn zero_is_unlimited() {
        let c = Credit::new(0);
        for _ in 0..1000 {
            assert!(c.try_take());
        }
        assert!(c.has_room());
    }

    #[test]
    fn take_all_is_all_or_nothing() {
        let consumer = Credit::new(5);
        let channel = Credit::new(1);
        assert!(take_all(&[Some(&consumer), Some(&channel)]));
        assert!(!take_all(&[Some(&consumer), Some(&channel)]));
        assert_eq!(consumer.in_flight(), 1, "the failed take was undone");
        assert!(take_all(&[Some(&consumer), None]));
    }
}
