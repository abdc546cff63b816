//! The broker's one memory account: what it holds, in bytes, for the memory high
//! watermark.
//!
//! A message is charged what it occupies, not just its body and properties: its own
//! structures as the allocator rounds them, and each queue's entry for it. Queues,
//! exchanges, bindings and channels are charged a fixed footprint each. Anything else
//! that buffers for a client (outgoing bytes, pending returns) charges the same gauge,
//! through [`MemoryGauge::charge`]/[`MemoryGauge::release`] or an [`Account`]. The
//! footprints are computed from `size_of` of the structures involved, so they follow the
//! code; what they leave out (allocator metadata, hash-map slack, per-connection buffers
//! not charged by their owner) is the margin ARCHITECTURE.md states between the limit and
//! the process's RSS.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// The broker's count of bytes held. Cloning shares the count.
#[derive(Debug, Clone, Default)]
pub struct MemoryGauge(Arc<AtomicU64>);

impl MemoryGauge {
    /// Bytes charged now.
    pub fn used(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    /// Adds `bytes` to the count; whoever charges must [`release`](Self::release) them.
    pub fn charge(&self, bytes: u64) {
        self.0.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Takes back bytes charged earlier.
    pub fn release(&self, bytes: u64) {
        self.0.fetch_sub(bytes, Ordering::Relaxed);
    }

    /// A new account on this gauge, holding nothing yet.
    pub fn account(&self) -> Account {
        Account {
            gauge: self.clone(),
            bytes: AtomicU64::new(0),
        }
    }
}

/// A share of a [`MemoryGauge`] that grows and shrinks with what its owner holds, and is
/// released in full when dropped: so an owner that goes away (a connection, a queue) can
/// never leave its bytes counted.
#[derive(Debug)]
pub struct Account {
    gauge: MemoryGauge,
    bytes: AtomicU64,
}

impl Account {
    pub fn charge(&self, bytes: u64) {
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
        self.gauge.charge(bytes);
    }

    /// Releases `bytes` (at most what this account holds).
    pub fn release(&self, bytes: u64) {
        let mut held = self.bytes.load(Ordering::Relaxed);
        loop {
            let take = bytes.min(held);
            match self.bytes.compare_exchange_weak(
                held,
                held - take,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    self.gauge.release(take);
                    return;
                }
                Err(now) => held = now,
            }
        }
    }

    /// Charges or releases so that this account holds `bytes`.
    pub fn set(&self, bytes: u64) {
        // Most updates change nothing; those cost no write to the shared gauge.
        if self.bytes.load(Ordering::Relaxed) == bytes {
            return;
        }
        let before = self.bytes.swap(bytes, Ordering::Relaxed);
        if bytes > before {
            self.gauge.charge(bytes - before);
        } else {
            self.gauge.release(before - bytes);
        }
    }

    /// The gauge this account is a share of.
    pub fn gauge(&self) -> &MemoryGauge {
        &self.gauge
    }

    /// Bytes this account holds.
    pub fn held(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }
}

impl Drop for Account {
    fn drop(&mut self) {
        self.gauge.release(*self.bytes.get_mut());
    }
}

/// What an allocation of `n` bytes occupies: the allocator hands out size classes, a
/// multiple of 8 up to 64 bytes and then four classes per doubling (the scheme of both
/// mimalloc, the broker's allocator, and jemalloc), with room for an `Arc`'s counts
/// included by the caller.
pub const fn allocated(n: usize) -> usize {
    if n == 0 {
        return 0;
    }
    if n <= 64 {
        return n.div_ceil(8) * 8;
    }
    // Four classes between each power of two and the next.
    let high = usize::BITS - 1 - (n - 1).leading_zeros();
    let step = 1usize << (high - 2);
    n.div_ceil(step) * step
}

/// What an `Arc<T>`'s allocation occupies: the two counts and the value.
pub const fn arc_allocated<T>() -> usize {
    allocated(2 * size_of::<usize>() + size_of::<T>())
}

/// A map entry keyed by name (the name itself is inline in the key up to its inline
/// size): key, value, and the hash table's control byte and load-factor slack.
pub const fn map_entry<K, V>() -> usize {
    (size_of::<K>() + size_of::<V>() + 1) * 8 / 7
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocation_classes() {
        let got: Vec<usize> = [0, 1, 8, 9, 64, 65, 80, 81, 100, 128, 129, 200, 1000, 4097]
            .into_iter()
            .map(allocated)
            .collect();
        assert_eq!(
            got,
            [0, 8, 8, 16, 64, 80, 80, 96, 112, 128, 160, 224, 1024, 5120]
        );
    }

    #[test]
    fn an_account_releases_what_it_holds_when_dropped() {
        let gauge = MemoryGauge::default();
        let a = gauge.account();
        a.charge(100);
        a.release(30);
        assert_eq!((gauge.used(), a.held()), (70, 70));
        a.set(10);
        assert_eq!(gauge.used(), 10);
        a.release(1000);
        assert_eq!(gauge.used(), 0);
        a.set(500);
        gauge.charge(5);
        drop(a);
        assert_eq!(gauge.used(), 5);
    }
}
