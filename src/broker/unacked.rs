//! Deliveries awaiting a settlement (ack, nack, reject), and settling them.
//!
//! A client channel and a broker object consuming without a connection keep their
//! outstanding deliveries the same way and settle them through the same functions, so
//! credit, requeueing and dead-lettering behave alike for both.

use std::collections::VecDeque;
use std::sync::Arc;

use super::backlog::Entry;
use super::queue::Queue;
use super::queue::consumer::Consumer;

/// A delivery awaiting ack, nack or reject.
#[derive(Debug)]
pub struct Unacked {
    pub tag: u64,
    pub queue: Arc<Queue>,
    pub entry: Entry,
    /// None for basic.get deliveries, which use no consumer credit.
    pub consumer: Option<Arc<Consumer>>,
}

/// One channel's (or internal consumer's) outstanding deliveries, in tag order.
#[derive(Debug)]
pub struct Outstanding {
    next_tag: u64,
    pending: VecDeque<Unacked>,
}

impl Default for Outstanding {
    fn default() -> Self {
        Outstanding {
            next_tag: 1,
            pending: VecDeque::new(),
        }
    }
}

impl Outstanding {
    /// The next delivery tag (tags start at 1 and only grow).
    pub fn next_tag(&mut self) -> u64 {
        let tag = self.next_tag;
        self.next_tag += 1;
        tag
    }

    pub fn push(&mut self, u: Unacked) {
        self.pending.push_back(u);
    }

    pub fn len(&self) -> usize {
        self.pending.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Whether a settlement of `tag` would find something (checked for transactions).
    pub fn knows(&self, tag: u64, multiple: bool) -> bool {
        if multiple {
            tag == 0 || self.pending.iter().any(|u| u.tag <= tag)
        } else {
            self.pending.iter().any(|u| u.tag == tag)
        }
    }

    /// Takes the deliveries `tag` names (all up to it when `multiple`; tag 0 with
    /// multiple means every one). None if a single tag is unknown.
    pub fn take(&mut self, tag: u64, multiple: bool) -> Option<Vec<Unacked>> {
        if multiple {
            let upto = if tag == 0 { u64::MAX } else { tag };
            let n = self.pending.partition_point(|u| u.tag <= upto);
            if n == 0 && tag != 0 {
                // RabbitMQ treats an unknown tag with multiple as an error too.
                return self.pending.iter().any(|u| u.tag == tag).then(Vec::new);
            }
            return Some(self.pending.drain(..n).collect());
        }
        let i = self.pending.binary_search_by_key(&tag, |u| u.tag).ok()?;
        self.pending.remove(i).map(|u| vec![u])
    }

    /// Takes every outstanding delivery.
    pub fn take_all(&mut self) -> Vec<Unacked> {
        self.pending.drain(..).collect()
    }
}

/// Returns the consumers' credit for settled deliveries and groups them by queue.
pub fn by_queue(unacked: Vec<Unacked>) -> Vec<(Arc<Queue>, Vec<Entry>)> {
    let mut groups: Vec<(Arc<Queue>, Vec<Entry>)> = Vec::new();
    for u in unacked {
        if let Some(c) = &u.consumer {
            c.give_back_credit(1);
        }
        match groups.iter_mut().find(|(q, _)| Arc::ptr_eq(q, &u.queue)) {
            Some((_, entries)) => entries.push(u.entry),
            None => groups.push((u.queue, vec![u.entry])),
        }
    }
    groups
}

/// Acknowledges deliveries: their queues forget them and hand out more.
pub fn ack(unacked: Vec<Unacked>) {
    for (q, entries) in by_queue(unacked) {
        q.acked(entries.len());
        q.dispatch();
    }
}

/// Gives deliveries back to their queues: requeued (redelivered), or rejected
/// (dead-lettered or dropped); either way their credit is free again.
pub fn give_back(unacked: Vec<Unacked>, requeue: bool) {
    for (q, entries) in by_queue(unacked) {
        q.returned(entries, requeue);
        if !requeue {
            // Requeueing dispatches by itself; a rejection only freed credit.
            q.dispatch();
        }
    }
}
