//! A bounded queue of notices from the topology path to one subscriber.
//!
//! The topology path pushes while it holds the vhost's topology lock and must never
//! wait for a subscriber, so a push never blocks: a subscriber that falls `capacity`
//! notices behind loses them all and is marked *overflowed*. Its next read then takes a
//! fresh snapshot under the topology lock (see `Subscription::recv`), so it resumes with
//! no gap and no duplicate. Publishing never touches a feed.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard};

use tokio::sync::Notify;

/// How many notices a subscriber may fall behind before it is resynchronised.
pub const DEFAULT_CAPACITY: usize = 65_536;

#[derive(Debug)]
pub(crate) struct Feed<N> {
    inner: Mutex<Inner<N>>,
    notify: Notify,
    capacity: usize,
}

#[derive(Debug)]
pub(crate) struct Inner<N> {
    pub items: VecDeque<N>,
    /// Notices were lost: the subscriber must take a fresh snapshot.
    pub overflowed: bool,
    /// The vhost is gone: nothing more will come.
    pub closed: bool,
}

impl<N> Feed<N> {
    pub fn new(capacity: usize) -> Feed<N> {
        Feed {
            inner: Mutex::new(Inner {
                items: VecDeque::new(),
                overflowed: false,
                closed: false,
            }),
            notify: Notify::new(),
            capacity: capacity.max(1),
        }
    }

    pub fn lock(&self) -> MutexGuard<'_, Inner<N>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds a notice, or marks the feed overflowed when it is full.
    pub fn push(&self, notice: N) {
        let mut inner = self.lock();
        if inner.overflowed || inner.closed {
            return;
        }
        if inner.items.len() >= self.capacity {
            inner.items.clear();
            inner.overflowed = true;
        } else {
            inner.items.push_back(notice);
        }
        drop(inner);
        self.notify.notify_one();
    }

    pub fn close(&self) {
        self.lock().closed = true;
        self.notify.notify_one();
    }

    /// Waits until something was pushed (a permit is stored if nobody waits, so a push
    /// between a check and this wait is not missed).
    pub async fn changed(&self) {
        self.notify.notified().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_feed_drops_everything_and_marks_itself() {
        let feed = Feed::new(2);
        feed.push(1);
        feed.push(2);
        assert!(!feed.lock().overflowed);
        feed.push(3);
        let inner = feed.lock();
        assert!(inner.overflowed);
        assert!(inner.items.is_empty());
    }
}
