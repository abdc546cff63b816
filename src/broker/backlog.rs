//! The ready messages of one queue, in delivery order, with RabbitMQ's length limits,
//! priorities and TTLs applied.
//!
//! A pure data structure: no locks, no clock, no I/O. "Now" is passed in as milliseconds
//! on the broker's monotonic clock, so every rule here is tested deterministically. The
//! queue object (consumers, locking, timers, dead-letter publishing) sits on top and owns
//! the decisions this module only reports: the entries it hands back from `push`,
//! `requeue`, `pop` and `expire` are for the owner to dead-letter.
//!
//! # Layout
//!
//! One `VecDeque` per priority level actually used, highest level first; within a level,
//! entries are kept sorted by `seq` (publish order). Push is `push_back`, pop is
//! `pop_front` of the first non-empty level: O(1) for a plain queue, O(levels in use) for
//! a priority queue. Requeue inserts at the entry's original place, found from its `seq`;
//! the usual case (the returned message is older than everything ready) is `push_front`.
//!
//! # RabbitMQ's rules, as followed here
//!
//! - **Priorities** (`x-max-priority`): a message's level is its `priority` property
//!   capped at the maximum (absent = 0); higher levels first, FIFO within a level.
//! - **Length limits** (`x-max-length`, `x-max-length-bytes`) count ready messages and
//!   their body sizes only; unacknowledged ones are not here and do not count.
//!   - `drop-head`: the message is enqueued, then entries are dropped from the head (in
//!     delivery order, so in a priority queue from the highest level, as RabbitMQ's
//!     priority queue drops) until both limits hold. The new message itself may be the
//!     one dropped. Requeues apply the same rule.
//!   - `reject-publish` / `reject-publish-dlx`: a message that would take the queue over
//!     a limit is refused and nothing is stored; requeues are never refused (RabbitMQ
//!     lets them exceed the limit). With `reject-publish-dlx` the owner dead-letters the
//!     refused message itself (reason `maxlen`).
//! - **TTL**: an entry expires at `enqueue time + min(x-message-ttl, expiration)`, and is
//!   expired when `expires_at <= now`. Requeued entries keep their original expiry.
//!   Entries expire only at the head: one behind an entry that does not expire waits for
//!   it, as in RabbitMQ.
//!
//! # What the owner must do
//!
//! - **Immediate delivery.** RabbitMQ hands a published message straight to a consumer
//!   when one can take it and nothing is ready, without enqueuing it. That is what makes
//!   `x-message-ttl = 0` mean "expire unless delivered at once" and `x-max-length = 0`
//!   with `drop-head` deliver to a waiting consumer. The owner does this before `push`:
//!   if the backlog is empty, a consumer has credit and — in the reject modes only —
//!   [`Backlog::would_overflow`] is false (RabbitMQ checks overflow before trying to
//!   deliver), it takes an entry from [`Backlog::direct_entry`] and delivers it.
//!   Pushing and then popping gives the same result except for those two zero settings.
//! - **Dead-lettering.** `dropped` from push and requeue → reason `maxlen`; entries from
//!   `expire` and the expired list from `pop` → reason `expired`; a refused push under
//!   `reject-publish-dlx` → `maxlen`. Purged entries are not dead-lettered.
//! - **Timers.** [`Backlog::next_expiry`] is the head's expiry; ask again after anything
//!   that can change the head (push, pop, requeue, expire, purge).

use std::cmp::Reverse;
use std::collections::VecDeque;

use super::message::{Message, MessageRef};
use super::queue_args::{Overflow, QueueArgs};

/// One ready (or handed-out) message and its bookkeeping in this queue.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub message: MessageRef,
    /// When it expires (ms), [`NEVER`] when it does not: see [`Entry::expires_at`].
    /// Not an `Option`, which would make every entry of every backlog 8 bytes longer.
    expiry: u64,
    /// Set when it has been handed out before and came back (the `redelivered` flag).
    pub redelivered: bool,
    /// How many times it has come back (requeued) so far.
    pub delivery_count: u32,
    /// Position in publish order within this queue: requeue puts it back by this.
    pub seq: u64,
}

impl Entry {
    /// RabbitMQ's test: expired once `expires_at <= now`, so a TTL of 0 is already
    /// expired at the moment of enqueueing.
    pub fn is_expired(&self, now_ms: u64) -> bool {
        self.expires_at().is_some_and(|at| at <= now_ms)
    }

    /// When it expires (ms): enqueue time plus the smaller of the queue's TTL and the
    /// message's `expiration`; `None` when neither is set.
    pub fn expires_at(&self) -> Option<u64> {
        (self.expiry != NEVER).then_some(self.expiry)
    }

    fn size(&self) -> u64 {
        body_size(&self.message)
    }
}

/// [`Entry::expiry`] of an entry that does not expire.
const NEVER: u64 = u64::MAX;

fn body_size(m: &Message) -> u64 {
    u64::try_from(m.body_size()).unwrap_or(u64::MAX)
}

/// What became of a pushed message.
#[derive(Debug, Clone, PartialEq)]
pub enum PushOutcome {
    /// Stored. `dropped` are the `drop-head` evictions (possibly including the new
    /// message), oldest first, to be dead-lettered with reason `maxlen`.
    Accepted { dropped: Vec<Entry> },
    /// `reject-publish(-dlx)`: the queue is full; nothing was stored and the publisher
    /// gets a nack. Under `reject-publish-dlx` the owner dead-letters the message.
    Rejected,
}

#[derive(Debug)]
struct Level {
    priority: u8,
    /// Sorted by `seq`.
    entries: VecDeque<Entry>,
}

/// The ready messages of one queue. See the module documentation for the rules.
#[derive(Debug)]
pub struct Backlog {
    /// Highest priority first; created when first used and kept when empty (a level
    /// that comes and goes would reallocate on every message).
    levels: Vec<Level>,
    len: usize,
    bytes: u64,
    next_seq: u64,
    message_ttl: Option<u64>,
    max_length: Option<u64>,
    max_length_bytes: Option<u64>,
    overflow: Overflow,
    max_priority: Option<u8>,
}

impl Backlog {
    pub fn new(args: &QueueArgs) -> Self {
        Backlog {
            levels: vec![Level {
                priority: 0,
                entries: VecDeque::new(),
            }],
            len: 0,
            bytes: 0,
            next_seq: 0,
            message_ttl: args.message_ttl,
            max_length: args.max_length,
            max_length_bytes: args.max_length_bytes,
            overflow: args.overflow,
            max_priority: args.max_priority,
        }
    }

    /// Changes the TTL and the length limits (a policy changed). The TTL applies to
    /// entries made from now on; under `drop-head`, entries are dropped from the head
    /// until the new limits hold and returned, for dead-lettering as `maxlen`. The
    /// priority levels stay as declared.
    pub fn set_limits(&mut self, args: &QueueArgs) -> Vec<Entry> {
        self.message_ttl = args.message_ttl;
        self.max_length = args.max_length;
        self.max_length_bytes = args.max_length_bytes;
        self.overflow = args.overflow;
        self.drop_head_while_over()
    }

    /// What the backlog's own storage occupies (its messages are charged by themselves):
    /// every slot of its deques, used or not.
    pub fn footprint(&self) -> u64 {
        let slots: usize = self.levels.iter().map(|l| l.entries.capacity()).sum();
        (slots * size_of::<Entry>() + self.levels.capacity() * size_of::<Level>()) as u64
    }

    /// Gives back the storage beyond `kept` slots per level once the backlog is empty.
    pub fn shrink_when_empty(&mut self, kept: usize) {
        if self.len == 0 {
            for l in &mut self.levels {
                if l.entries.capacity() > kept {
                    l.entries.shrink_to(kept);
                }
            }
        }
    }

    /// Number of ready messages.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Total body size of the ready messages (what `x-max-length-bytes` limits).
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The level a message goes to: its priority capped at the queue's maximum; every
    /// message is level 0 in a queue without `x-max-priority`.
    fn level_of(&self, m: &Message) -> u8 {
        self.max_priority.map_or(0, |max| m.priority().min(max))
    }

    fn expiry_for(&self, m: &Message, now_ms: u64) -> Option<u64> {
        let ttl = match (self.message_ttl, m.expiration_ms()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        ttl.map(|t| now_ms.saturating_add(t))
    }

    fn new_entry(&mut self, message: MessageRef, now_ms: u64) -> Entry {
        let seq = self.next_seq;
        self.next_seq += 1;
        Entry {
            // An expiry at the end of time is no expiry.
            expiry: self.expiry_for(&message, now_ms).unwrap_or(NEVER),
            message,
            redelivered: false,
            delivery_count: 0,
            seq,
        }
    }

    /// RabbitMQ's `will_overflow`: whether one more message would break a limit. Decides
    /// `reject-publish(-dlx)`, also before an immediate delivery (see module docs).
    pub fn would_overflow(&self, message: &Message) -> bool {
        let too_long = self
            .max_length
            .is_some_and(|max| (self.len as u64).saturating_add(1) > max);
        let too_big = self
            .max_length_bytes
            .is_some_and(|max| self.bytes.saturating_add(body_size(message)) > max);
        too_long || too_big
    }

    fn over_limit(&self) -> bool {
        self.max_length.is_some_and(|max| self.len as u64 > max)
            || self.max_length_bytes.is_some_and(|max| self.bytes > max)
    }

    /// The entry for a message delivered straight to a consumer without being stored
    /// (see module docs). It takes the next `seq` and gets its expiry, so a later
    /// requeue puts it in publish order with its TTL running from now.
    pub fn direct_entry(&mut self, message: MessageRef, now_ms: u64) -> Entry {
        self.new_entry(message, now_ms)
    }

    /// Enqueues a published message, applying the length limits (module docs).
    pub fn push(&mut self, message: MessageRef, now_ms: u64) -> PushOutcome {
        if self.overflow != Overflow::DropHead && self.would_overflow(&message) {
            return PushOutcome::Rejected;
        }
        let entry = self.new_entry(message, now_ms);
        let level = self.level_of(&entry.message);
        self.len += 1;
        self.bytes = self.bytes.saturating_add(entry.size());
        // The newest seq: always the back of its level.
        self.level_mut(level).push_back(entry);
        PushOutcome::Accepted {
            dropped: self.drop_head_while_over(),
        }
    }

    /// Removes the next message to deliver. Expired entries found at the head on the way
    /// are removed too and returned second, to be dead-lettered as `expired`.
    pub fn pop(&mut self, now_ms: u64) -> (Option<Entry>, Vec<Entry>) {
        let expired = self.expire(now_ms);
        (self.take_head(), expired)
    }

    /// The next message to deliver, without removing it (it may be expired).
    pub fn peek(&self) -> Option<&Entry> {
        self.levels.iter().find_map(|l| l.entries.front())
    }

    /// Takes back handed-out entries (nack/reject with requeue, a closed channel, a
    /// failed delivery): each returns to its original place by `seq`, flagged
    /// redelivered, its expiry unchanged. Under `drop-head` the queue may now be over a
    /// limit; the entries dropped to fix that are returned, for dead-lettering as
    /// `maxlen` (RabbitMQ's `requeue_and_run` does the same).
    pub fn requeue(&mut self, entries: impl IntoIterator<Item = Entry>) -> Vec<Entry> {
        let mut entries: Vec<Entry> = entries.into_iter().collect();
        // Newest first, so that a batch older than everything ready goes in with
        // push_front each time.
        entries.sort_unstable_by_key(|e| Reverse(e.seq));
        for mut entry in entries {
            entry.redelivered = true;
            entry.delivery_count = entry.delivery_count.saturating_add(1);
            let level = self.level_of(&entry.message);
            self.len += 1;
            self.bytes = self.bytes.saturating_add(entry.size());
            insert_by_seq(self.level_mut(level), entry);
        }
        self.drop_head_while_over()
    }

    /// Removes the expired entries at the head, oldest first, for dead-lettering as
    /// `expired`. Stops at the first entry that has not expired.
    pub fn expire(&mut self, now_ms: u64) -> Vec<Entry> {
        let mut expired = Vec::new();
        while self.peek().is_some_and(|e| e.is_expired(now_ms)) {
            if let Some(e) = self.take_head() {
                expired.push(e);
            }
        }
        expired
    }

    /// When the head expires (ms), if it has an expiry: when the owner should wake up and
    /// call [`Backlog::expire`].
    pub fn next_expiry(&self) -> Option<u64> {
        self.peek().and_then(Entry::expires_at)
    }

    /// Removes every ready message, in delivery order. RabbitMQ does not dead-letter
    /// purged messages; the owner drops them.
    pub fn purge(&mut self) -> Vec<Entry> {
        let mut all = Vec::with_capacity(self.len);
        for level in &mut self.levels {
            all.extend(level.entries.drain(..));
        }
        self.len = 0;
        self.bytes = 0;
        all
    }

    fn drop_head_while_over(&mut self) -> Vec<Entry> {
        let mut dropped = Vec::new();
        if self.overflow == Overflow::DropHead {
            while self.over_limit() {
                match self.take_head() {
                    Some(e) => dropped.push(e),
                    None => break,
                }
            }
        }
        dropped
    }

    fn take_head(&mut self) -> Option<Entry> {
        let entry = self.levels.iter_mut().find_map(|l| l.entries.pop_front())?;
        self.len -= 1;
        self.bytes = self.bytes.saturating_sub(entry.size());
        Some(entry)
    }

    /// The entries of level `priority`, creating the level in its place if needed.
    fn level_mut(&mut self, priority: u8) -> &mut VecDeque<Entry> {
        // Sorted highest first, so compare the other way round.
        let i = match self.levels.binary_search_by(|l| priority.cmp(&l.priority)) {
            Ok(i) => i,
            Err(i) => {
                self.levels.insert(
                    i,
                    Level {
                        priority,
                        entries: VecDeque::new(),
                    },
                );
                i
            }
        };
        &mut self.levels[i].entries
    }
}

/// Inserts keeping the level sorted by `seq`: O(1) at either end, else a binary search
/// and an insert that moves the shorter side.
fn insert_by_seq(entries: &mut VecDeque<Entry>, entry: Entry) {
    match (entries.front(), entries.back()) {
        (Some(front), _) if entry.seq <= front.seq => entries.push_front(entry),
        (_, Some(back)) if entry.seq >= back.seq => entries.push_back(entry),
        (None, _) | (_, None) => entries.push_back(entry),
        _ => {
            let at = entries.partition_point(|e| e.seq < entry.seq);
            entries.insert(at, entry);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use bytes::Bytes;

    use crate::protocol::ShortString;
    use crate::protocol::generated::properties::BasicProperties;

    fn msg_with(body: &str, priority: Option<u8>, expiration: Option<&str>) -> MessageRef {
        let props = BasicProperties {
            priority,
            expiration: expiration.map(|e| ShortString::try_from(e).unwrap()),
            ..Default::default()
        };
        Arc::new(Message::new(
            ShortString::from_static("x"),
            ShortString::from_static("rk"),
            props,
            Bytes::copy_from_slice(body.as_bytes()),
        ))
    }

    fn msg(body: &str) -> MessageRef {
        msg_with(body, None, None)
    }

    fn body(e: &Entry) -> String {
        String::from_utf8_lossy(e.message.body()).into_owned()
    }

    fn bodies(es: &[Entry]) -> Vec<String> {
        es.iter().map(body).collect()
    }

    fn accepted(o: PushOutcome) -> Vec<Entry> {
        match o {
            PushOutcome::Accepted { dropped } => dropped,
            PushOutcome::Rejected => panic!("rejected"),
        }
    }

    fn drain(b: &mut Backlog, now: u64) -> Vec<String> {
        let mut out = Vec::new();
        while let (Some(e), _) = b.pop(now) {
            out.push(body(&e));
        }
        out
    }

    fn args() -> QueueArgs {
        QueueArgs::default()
    }

    #[test]
    fn fifo_and_accounting() {
        let mut b = Backlog::new(&args());
        assert!(b.is_empty());
        assert_eq!(b.pop(0), (None, vec![]));
        for s in ["a", "bb", "ccc"] {
            assert!(accepted(b.push(msg(s), 0)).is_empty());
        }
        assert_eq!((b.len(), b.bytes()), (3, 6));
        assert_eq!(b.peek().map(body).as_deref(), Some("a"));
        let (e, exp) = b.pop(0);
        let e = e.unwrap();
        assert!(exp.is_empty());
        assert_eq!(
            (body(&e), e.seq, e.redelivered, e.delivery_count),
            ("a".into(), 0, false, 0)
        );
        assert_eq!((b.len(), b.bytes()), (2, 5));
        assert_eq!(drain(&mut b, 0), ["bb", "ccc"]);
        assert_eq!((b.len(), b.bytes()), (0, 0));
    }

    #[test]
    fn max_length_drop_head() {
        let mut b = Backlog::new(&QueueArgs {
            max_length: Some(2),
            ..args()
        });
        assert!(accepted(b.push(msg("1"), 0)).is_empty());
        assert!(accepted(b.push(msg("2"), 0)).is_empty());
        assert_eq!(bodies(&accepted(b.push(msg("3"), 0))), ["1"]);
        assert_eq!(bodies(&accepted(b.push(msg("4"), 0))), ["2"]);
        assert_eq!(drain(&mut b, 0), ["3", "4"]);
    }

    #[test]
    fn max_length_zero_drop_head_drops_the_new_message() {
        let mut b = Backlog::new(&QueueArgs {
            max_length: Some(0),
            ..args()
        });
        assert_eq!(bodies(&accepted(b.push(msg("1"), 0))), ["1"]);
        assert!(b.is_empty());
        assert_eq!(b.bytes(), 0);
    }

    #[test]
    fn max_length_bytes_drop_head() {
        let mut b = Backlog::new(&QueueArgs {
            max_length_bytes: Some(5),
            ..args()
        });
        accepted(b.push(msg("aa"), 0));
        accepted(b.push(msg("bbb"), 0));
        assert_eq!(b.bytes(), 5);
        // 5 + 2 > 5: dropping "aa" leaves 3 + 2 = 5, which fits.
        assert_eq!(bodies(&accepted(b.push(msg("cc"), 0))), ["aa"]);
        assert_eq!(b.bytes(), 5);
        // A body larger than the limit drops everything, itself included.
        assert_eq!(
            bodies(&accepted(b.push(msg("dddddd"), 0))),
            ["bbb", "cc", "dddddd"]
        );
        assert_eq!((b.len(), b.bytes()), (0, 0));
        // Empty bodies never exceed a byte limit.
        assert!(accepted(b.push(msg(""), 0)).is_empty());
    }

    #[test]
    fn both_limits_drop_until_both_hold() {
        let mut b = Backlog::new(&QueueArgs {
            max_length: Some(3),
            max_length_bytes: Some(4),
            ..args()
        });
        for s in ["a", "b", "c"] {
            accepted(b.push(msg(s), 0));
        }
        // 4 messages, 6 bytes: dropping "a" fixes the count, "b" too to fit 4 bytes.
        assert_eq!(bodies(&accepted(b.push(msg("ddd"), 0))), ["a", "b"]);
        assert_eq!(drain(&mut b, 0), ["c", "ddd"]);
    }

    #[test]
    fn reject_publish_refuses_and_stores_nothing() {
        for overflow in [Overflow::RejectPublish, Overflow::RejectPublishDlx] {
            let mut b = Backlog::new(&QueueArgs {
                max_length: Some(2),
                overflow,
                ..args()
            });
            accepted(b.push(msg("1"), 0));
            assert!(!b.would_overflow(&msg("x")));
            accepted(b.push(msg("2"), 0));
            assert!(b.would_overflow(&msg("x")));
            assert_eq!(b.push(msg("3"), 0), PushOutcome::Rejected);
            assert_eq!((b.len(), b.bytes()), (2, 2));
            // Room again after a pop.
            b.pop(0);
            accepted(b.push(msg("4"), 0));
            assert_eq!(drain(&mut b, 0), ["2", "4"]);
        }
    }

    #[test]
    fn reject_publish_on_bytes() {
        let mut b = Backlog::new(&QueueArgs {
            max_length_bytes: Some(4),
            overflow: Overflow::RejectPublish,
            ..args()
        });
        accepted(b.push(msg("abc"), 0));
        assert_eq!(b.push(msg("de"), 0), PushOutcome::Rejected);
        accepted(b.push(msg("d"), 0));
        assert_eq!(b.bytes(), 4);
        // Zero-length bodies still fit a full byte limit.
        accepted(b.push(msg(""), 0));
        assert_eq!(b.len(), 3);
    }

    #[test]
    fn reject_publish_with_zero_length_rejects_everything() {
        let mut b = Backlog::new(&QueueArgs {
            max_length: Some(0),
            overflow: Overflow::RejectPublish,
            ..args()
        });
        assert!(b.would_overflow(&msg("")));
        assert_eq!(b.push(msg(""), 0), PushOutcome::Rejected);
    }

    #[test]
    fn requeue_may_exceed_limit_in_reject_modes_but_drops_in_drop_head() {
        let mut b = Backlog::new(&QueueArgs {
            max_length: Some(1),
            overflow: Overflow::RejectPublish,
            ..args()
        });
        accepted(b.push(msg("1"), 0));
        let (e1, _) = b.pop(0);
        accepted(b.push(msg("2"), 0));
        assert!(b.requeue(e1).is_empty());
        assert_eq!(b.len(), 2);
        assert_eq!(drain(&mut b, 0), ["1", "2"]);

        let mut b = Backlog::new(&QueueArgs {
            max_length: Some(1),
            ..args()
        });
        accepted(b.push(msg("1"), 0));
        let (e1, _) = b.pop(0);
        accepted(b.push(msg("2"), 0));
        // "1" goes back in front of "2", then the head is dropped: "1" again.
        let dropped = b.requeue(e1);
        assert_eq!(bodies(&dropped), ["1"]);
        assert!(dropped[0].redelivered);
        assert_eq!(drain(&mut b, 0), ["2"]);
    }

    #[test]
    fn priorities_highest_first_fifo_within_level() {
        let mut b = Backlog::new(&QueueArgs {
            max_priority: Some(5),
            ..args()
        });
        for (s, p) in [
            ("a0", None),
            ("b3", Some(3)),
            ("c0", Some(0)),
            ("d3", Some(3)),
        ] {
            accepted(b.push(msg_with(s, p, None), 0));
        }
        // Above the maximum counts as the maximum: same level as a 5.
        accepted(b.push(msg_with("e9", Some(9), None), 0));
        accepted(b.push(msg_with("f5", Some(5), None), 0));
        accepted(b.push(msg_with("g1", Some(1), None), 0));
        assert_eq!(drain(&mut b, 0), ["e9", "f5", "b3", "d3", "g1", "a0", "c0"]);
    }

    #[test]
    fn priority_ignored_without_max_priority() {
        let mut b = Backlog::new(&args());
        accepted(b.push(msg_with("low", Some(0), None), 0));
        accepted(b.push(msg_with("high", Some(9), None), 0));
        assert_eq!(drain(&mut b, 0), ["low", "high"]);
        let mut b = Backlog::new(&QueueArgs {
            max_priority: Some(0),
            ..args()
        });
        accepted(b.push(msg_with("low", Some(0), None), 0));
        accepted(b.push(msg_with("high", Some(9), None), 0));
        assert_eq!(drain(&mut b, 0), ["low", "high"]);
    }

    #[test]
    fn drop_head_in_priority_queue_drops_highest_first() {
        let mut b = Backlog::new(&QueueArgs {
            max_priority: Some(9),
            max_length: Some(2),
            ..args()
        });
        accepted(b.push(msg_with("lo", Some(1), None), 0));
        accepted(b.push(msg_with("hi", Some(8), None), 0));
        // The head in delivery order is "hi": that is what RabbitMQ drops.
        assert_eq!(
            bodies(&accepted(b.push(msg_with("lo2", Some(1), None), 0))),
            ["hi"]
        );
        // A new top-priority message becomes the head and is itself dropped.
        assert_eq!(
            bodies(&accepted(b.push(msg_with("top", Some(9), None), 0))),
            ["top"]
        );
        assert_eq!(drain(&mut b, 0), ["lo", "lo2"]);
    }

    #[test]
    fn requeue_returns_to_original_place() {
        let mut b = Backlog::new(&args());
        for s in ["1", "2", "3", "4", "5"] {
            accepted(b.push(msg(s), 0));
        }
        let (e1, _) = b.pop(0);
        let (e2, _) = b.pop(0);
        let (e3, _) = b.pop(0);
        let (e1, e2, e3) = (e1.unwrap(), e2.unwrap(), e3.unwrap());
        // Out of order: still lands in publish order, ahead of 4 and 5.
        assert!(b.requeue([e3, e1]).is_empty());
        assert_eq!(b.len(), 4);
        assert_eq!(b.bytes(), 4);
        let (h, _) = b.pop(0);
        let h = h.unwrap();
        assert_eq!(
            (body(&h), h.redelivered, h.delivery_count),
            ("1".into(), true, 1)
        );
        // Requeue 2 and 1 again: 1 is now delivered twice.
        assert!(b.requeue([h, e2]).is_empty());
        let all: Vec<_> = std::iter::from_fn(|| b.pop(0).0).collect();
        assert_eq!(bodies(&all), ["1", "2", "3", "4", "5"]);
        let flags: Vec<_> = all
            .iter()
            .map(|e| (e.redelivered, e.delivery_count))
            .collect();
        assert_eq!(
            flags,
            [(true, 2), (true, 1), (true, 1), (false, 0), (false, 0)]
        );
    }

    #[test]
    fn requeue_into_the_middle() {
        let mut b = Backlog::new(&args());
        for s in ["1", "2", "3"] {
            accepted(b.push(msg(s), 0));
        }
        let (e1, _) = b.pop(0);
        let (e2, _) = b.pop(0);
        b.requeue(e1);
        accepted(b.push(msg("4"), 0));
        // Backlog is 1, 3, 4: 2 goes between 1 and 3.
        b.requeue(e2);
        assert_eq!(drain(&mut b, 0), ["1", "2", "3", "4"]);
    }

    #[test]
    fn requeue_into_priority_levels() {
        let mut b = Backlog::new(&QueueArgs {
            max_priority: Some(3),
            ..args()
        });
        accepted(b.push(msg_with("a1", Some(1), None), 0));
        accepted(b.push(msg_with("b3", Some(3), None), 0));
        accepted(b.push(msg_with("c1", Some(1), None), 0));
        let (b3, _) = b.pop(0);
        let (a1, _) = b.pop(0);
        accepted(b.push(msg_with("d3", Some(3), None), 0));
        b.requeue([a1.unwrap(), b3.unwrap()]);
        assert_eq!(drain(&mut b, 0), ["b3", "d3", "a1", "c1"]);
    }

    #[test]
    fn queue_ttl() {
        let mut b = Backlog::new(&QueueArgs {
            message_ttl: Some(100),
            ..args()
        });
        accepted(b.push(msg("a"), 1000));
        accepted(b.push(msg("b"), 1050));
        assert_eq!(b.next_expiry(), Some(1100));
        assert!(b.expire(1099).is_empty());
        assert_eq!(bodies(&b.expire(1100)), ["a"]);
        assert_eq!(b.next_expiry(), Some(1150));
        let (e, expired) = b.pop(2000);
        assert_eq!((e, bodies(&expired)), (None, vec!["b".to_string()]));
        assert_eq!(b.next_expiry(), None);
        assert_eq!((b.len(), b.bytes()), (0, 0));
    }

    #[test]
    fn ttl_zero_is_expired_at_once() {
        let mut b = Backlog::new(&QueueArgs {
            message_ttl: Some(0),
            ..args()
        });
        accepted(b.push(msg("a"), 10));
        assert_eq!(b.next_expiry(), Some(10));
        let (e, expired) = b.pop(10);
        assert!(e.is_none());
        assert_eq!(bodies(&expired), ["a"]);
        // A direct delivery (the owner's immediate path) still gets an entry.
        let d = b.direct_entry(msg("b"), 20);
        assert_eq!((d.seq, d.expires_at()), (1, Some(20)));
        assert!(b.is_empty());
    }

    #[test]
    fn per_message_ttl_and_minimum() {
        let mut b = Backlog::new(&QueueArgs {
            message_ttl: Some(100),
            ..args()
        });
        accepted(b.push(msg_with("short", None, Some("30")), 0));
        accepted(b.push(msg_with("long", None, Some("500")), 0));
        accepted(b.push(msg_with("bad", None, Some("soon")), 0));
        let es = b.purge();
        let at: Vec<_> = es.iter().map(Entry::expires_at).collect();
        assert_eq!(at, [Some(30), Some(100), Some(100)]);

        let mut b = Backlog::new(&args());
        accepted(b.push(msg_with("m", None, Some("25")), 5));
        accepted(b.push(msg("none"), 5));
        assert_eq!(b.next_expiry(), Some(30));
        assert_eq!(bodies(&b.expire(30)), ["m"]);
        assert_eq!(b.next_expiry(), None);
        assert!(b.expire(u64::MAX).is_empty());
    }

    #[test]
    fn expiry_only_at_the_head() {
        let mut b = Backlog::new(&args());
        accepted(b.push(msg("forever"), 0));
        accepted(b.push(msg_with("soon", None, Some("10")), 0));
        accepted(b.push(msg_with("later", None, Some("50")), 0));
        // The head does not expire, so nothing behind it does.
        assert_eq!(b.next_expiry(), None);
        assert!(b.expire(100).is_empty());
        let (e, expired) = b.pop(100);
        assert_eq!(body(&e.unwrap()), "forever");
        assert!(expired.is_empty());
        // Now both expired ones are at the head.
        assert_eq!(b.next_expiry(), Some(10));
        let (e, expired) = b.pop(100);
        assert!(e.is_none());
        assert_eq!(bodies(&expired), ["soon", "later"]);
    }

    #[test]
    fn expiry_stops_at_first_live_entry() {
        let mut b = Backlog::new(&args());
        accepted(b.push(msg_with("a", None, Some("10")), 0));
        accepted(b.push(msg_with("b", None, Some("100")), 0));
        accepted(b.push(msg_with("c", None, Some("5")), 0));
        let (e, expired) = b.pop(50);
        assert_eq!(bodies(&expired), ["a"]);
        assert_eq!(body(&e.unwrap()), "b");
        assert_eq!(bodies(&b.expire(50)), ["c"]);
    }

    #[test]
    fn requeue_keeps_expiry() {
        let mut b = Backlog::new(&QueueArgs {
            message_ttl: Some(100),
            ..args()
        });
        accepted(b.push(msg("a"), 0));
        let (e, _) = b.pop(50);
        let e = e.unwrap();
        assert_eq!(e.expires_at(), Some(100));
        b.requeue([e]);
        assert_eq!(b.next_expiry(), Some(100));
        assert_eq!(bodies(&b.expire(100)), ["a"]);
    }

    #[test]
    fn priority_expiry_follows_delivery_order() {
        let mut b = Backlog::new(&QueueArgs {
            max_priority: Some(2),
            ..args()
        });
        accepted(b.push(msg_with("lo", Some(0), Some("10")), 0));
        accepted(b.push(msg_with("hi", Some(2), Some("50")), 0));
        // Head is "hi"; "lo" waits behind it although it expires first.
        assert_eq!(b.next_expiry(), Some(50));
        assert!(b.expire(20).is_empty());
        assert_eq!(bodies(&b.expire(60)), ["hi", "lo"]);
    }

    #[test]
    fn purge_returns_everything_in_delivery_order() {
        let mut b = Backlog::new(&QueueArgs {
            max_priority: Some(2),
            ..args()
        });
        accepted(b.push(msg_with("a", Some(1), None), 0));
        accepted(b.push(msg_with("b", Some(2), None), 0));
        accepted(b.push(msg_with("c", None, None), 0));
        assert_eq!(bodies(&b.purge()), ["b", "a", "c"]);
        assert_eq!((b.len(), b.bytes(), b.peek()), (0, 0, None));
        // Usable after a purge; seqs keep increasing.
        accepted(b.push(msg("d"), 0));
        assert_eq!(b.peek().map(|e| e.seq), Some(3));
    }

    #[test]
    fn insert_by_seq_keeps_order() {
        let m = msg("");
        let e = |seq| Entry {
            message: m.clone(),
            expiry: NEVER,
            redelivered: false,
            delivery_count: 0,
            seq,
        };
        let mut d = VecDeque::new();
        for s in [5, 1, 9, 3, 7, 2, 8, 0, 10] {
            insert_by_seq(&mut d, e(s));
        }
        let seqs: Vec<_> = d.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, [0, 1, 2, 3, 5, 7, 8, 9, 10]);
    }

    mod model {
        //! The backlog against a naive model: a flat Vec searched for the head each time.

        use super::*;
        use proptest::prelude::*;

        #[derive(Debug, Clone)]
        enum Op {
            Push {
                priority: Option<u8>,
                size: usize,
                ttl: Option<u8>,
            },
            Pop,
            Direct,
            /// Requeue the handed-out entries picked by these indexes.
            Requeue(Vec<usize>),
            Advance(u8),
            Expire,
            Purge,
        }

        fn op() -> impl Strategy<Value = Op> {
            prop_oneof![
                6 => (proptest::option::of(0u8..8), 0usize..6, proptest::option::of(0u8..40))
                    .prop_map(|(priority, size, ttl)| Op::Push { priority, size, ttl }),
                4 => Just(Op::Pop),
                1 => Just(Op::Direct),
                3 => proptest::collection::vec(any::<usize>(), 0..4).prop_map(Op::Requeue),
                2 => (0u8..30).prop_map(Op::Advance),
                1 => Just(Op::Expire),
                1 => Just(Op::Purge),
            ]
        }

        fn queue_args() -> impl Strategy<Value = QueueArgs> {
            (
                proptest::option::of(0u64..40),
                proptest::option::of(0u64..6),
                proptest::option::of(0u64..16),
                prop_oneof![
                    Just(Overflow::DropHead),
                    Just(Overflow::RejectPublish),
                    Just(Overflow::RejectPublishDlx)
                ],
                proptest::option::of(0u8..5),
            )
                .prop_map(
                    |(message_ttl, max_length, max_length_bytes, overflow, max_priority)| {
                        QueueArgs {
                            message_ttl,
                            max_length,
                            max_length_bytes,
                            overflow,
                            max_priority,
                            ..QueueArgs::default()
                        }
                    },
                )
        }

        #[derive(Debug, Clone, PartialEq)]
        struct M {
            seq: u64,
            level: u8,
            size: u64,
            expires_at: Option<u64>,
            redelivered: bool,
            count: u32,
        }

        struct Model {
            args: QueueArgs,
            ready: Vec<M>,
            next_seq: u64,
        }

        impl Model {
            fn head(&self) -> Option<usize> {
                (0..self.ready.len()).min_by_key(|&i| {
                    let m = &self.ready[i];
                    (Reverse(m.level), m.seq)
                })
            }
            fn take_head(&mut self) -> Option<M> {
                self.head().map(|i| self.ready.remove(i))
            }
            fn bytes(&self) -> u64 {
                self.ready.iter().map(|m| m.size).sum()
            }
            fn over(&self, extra_len: u64, extra_bytes: u64) -> bool {
                self.args
                    .max_length
                    .is_some_and(|l| self.ready.len() as u64 + extra_len > l)
                    || self
                        .args
                        .max_length_bytes
                        .is_some_and(|l| self.bytes() + extra_bytes > l)
            }
            fn drop_over(&mut self) -> Vec<M> {
                let mut out = vec![];
                if self.args.overflow == Overflow::DropHead {
                    while self.over(0, 0) {
                        out.extend(self.take_head());
                    }
                }
                out
            }
            fn expire(&mut self, now: u64) -> Vec<M> {
                let mut out = vec![];
                while let Some(i) = self.head() {
                    if self.ready[i].expires_at.is_none_or(|t| t > now) {
                        break;
                    }
                    out.push(self.ready.remove(i));
                }
                out
            }
            fn new_m(&mut self, priority: Option<u8>, size: usize, ttl: Option<u8>, now: u64) -> M {
                let level = self
                    .args
                    .max_priority
                    .map_or(0, |m| priority.unwrap_or(0).min(m));
                let t = match (self.args.message_ttl, ttl.map(u64::from)) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                let seq = self.next_seq;
                self.next_seq += 1;
                M {
                    seq,
                    level,
                    size: size as u64,
                    expires_at: t.map(|t| now + t),
                    redelivered: false,
                    count: 0,
                }
            }
        }

        fn view(e: &Entry, max_priority: Option<u8>) -> M {
            M {
                seq: e.seq,
                level: max_priority.map_or(0, |m| e.message.priority().min(m)),
                size: e.message.body().len() as u64,
                expires_at: e.expires_at(),
                redelivered: e.redelivered,
                count: e.delivery_count,
            }
        }

        fn views(es: &[Entry], max_priority: Option<u8>) -> Vec<M> {
            es.iter().map(|e| view(e, max_priority)).collect()
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(512))]
            #[test]
            fn backlog_matches_model(args in queue_args(), ops in proptest::collection::vec(op(), 0..80)) {
                let mp = args.max_priority;
                let mut b = Backlog::new(&args);
                let mut m = Model { args: args.clone(), ready: vec![], next_seq: 0 };
                let mut now = 0u64;
                // Handed out: (real, model) pairs.
                let mut out: Vec<(Entry, M)> = vec![];
                for op in ops {
                    match op {
                        Op::Push { priority, size, ttl } => {
                            let exp = ttl.map(|t| t.to_string());
                            let message = msg_with(&"x".repeat(size), priority, exp.as_deref());
                            let got = b.push(message, now);
                            if args.overflow != Overflow::DropHead && m.over(1, size as u64) {
                                prop_assert_eq!(got, PushOutcome::Rejected);
                            } else {
                                let me = m.new_m(priority, size, ttl, now);
                                m.ready.push(me);
                                let want = m.drop_over();
                                match got {
                                    PushOutcome::Accepted { dropped } => {
                                        prop_assert_eq!(views(&dropped, mp), want);
                                    }
                                    PushOutcome::Rejected => prop_assert!(false, "rejected"),
                                }
                            }
                        }
                        Op::Pop => {
                            let (e, expired) = b.pop(now);
                            let want_expired = m.expire(now);
                            prop_assert_eq!(views(&expired, mp), want_expired);
                            let want = m.take_head();
                            prop_assert_eq!(e.as_ref().map(|e| view(e, mp)), want.clone());
                            if let (Some(e), Some(w)) = (e, want) {
                                out.push((e, w));
                            }
                        }
                        Op::Direct => {
                            let e = b.direct_entry(msg("dd"), now);
                            let w = m.new_m(None, 2, None, now);
                            prop_assert_eq!(view(&e, mp), w.clone());
                            out.push((e, w));
                        }
                        Op::Requeue(picks) => {
                            let mut back = vec![];
                            for p in picks {
                                if !out.is_empty() {
                                    let i = p % out.len();
                                    back.push(out.swap_remove(i));
                                }
                            }
                            let (real, model): (Vec<_>, Vec<_>) = back.into_iter().unzip();
                            for mut w in model {
                                w.redelivered = true;
                                w.count += 1;
                                m.ready.push(w);
                            }
                            let dropped = b.requeue(real);
                            prop_assert_eq!(views(&dropped, mp), m.drop_over());
                        }
                        Op::Advance(dt) => now += u64::from(dt),
                        Op::Expire => {
                            prop_assert_eq!(views(&b.expire(now), mp), m.expire(now));
                        }
                        Op::Purge => {
                            let mut want = std::mem::take(&mut m.ready);
                            want.sort_by_key(|w| (Reverse(w.level), w.seq));
                            prop_assert_eq!(views(&b.purge(), mp), want);
                        }
                    }
                    prop_assert_eq!(b.len(), m.ready.len());
                    prop_assert_eq!(b.bytes(), m.bytes());
                    let head = m.head().map(|i| m.ready[i].clone());
                    prop_assert_eq!(b.peek().map(|e| view(e, mp)), head.clone());
                    prop_assert_eq!(b.next_expiry(), head.and_then(|h| h.expires_at));
                }
            }
        }
    }
}
