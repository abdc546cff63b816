//! A queue: its ready messages, its consumers, and the handing out of messages to them.
//!
//! All of a queue's state sits behind one mutex of its own, so publishers and consumers
//! of different queues never contend. The lock is never held across an await or while
//! publishing elsewhere: dead letters are collected under the lock and republished to
//! the dead-letter exchange after it is released.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use tokio::sync::Notify;

pub mod consumer;
pub mod mailbox;

use self::consumer::{ConnectionEvent, Consumer};
use crate::broker::backlog::{Backlog, Entry, PushOutcome};
use crate::broker::clock;
use crate::broker::dead_letter::{self, Reason};
use crate::broker::error::{AmqpError, AmqpResult};
use crate::broker::memory::{Account, MemoryGauge, arc_allocated, map_entry};
use crate::broker::message::MessageRef;
use crate::broker::owner::Owner;
use crate::broker::policy::EffectivePolicy;
use crate::broker::queue_args::{Overflow, QueueArgs};
use crate::protocol::{FieldTable, ShortString};

/// How a queue was declared.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueSpec {
    pub name: ShortString,
    pub durable: bool,
    /// Who owns an exclusive queue.
    pub exclusive_owner: Option<Owner>,
    pub auto_delete: bool,
    pub arguments: FieldTable,
    /// The settings the arguments ask for; what applies is these combined with the
    /// queue's policies ([`Queue::settings`]).
    pub args: QueueArgs,
}

#[derive(Debug)]
struct State {
    backlog: Backlog,
    /// What applies: the declared arguments combined with the policies.
    settings: QueueArgs,
    policy: EffectivePolicy,
    consumers: Vec<Arc<Consumer>>,
    /// Where round-robin delivery resumes.
    next_consumer: usize,
    had_consumer: bool,
    unacked: usize,
    /// Last time the queue was used, for `x-expires`.
    last_used_ms: u64,
    /// Last time a message went to a consumer: the consumers are taking messages.
    last_hand_out_ms: u64,
    /// Counted under the lock each of these events already holds, so they cost the
    /// message path no atomic operation and no extra lock.
    counters: QueueCounters,
}

/// What a queue has done since it was declared (the management API's `message_stats`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueCounters {
    /// Messages it took.
    pub publish: u64,
    /// Handed to consumers that acknowledge, and to consumers that do not.
    pub deliver: u64,
    pub deliver_no_ack: u64,
    /// basic.get answered with a message, in ack mode and not.
    pub get: u64,
    pub get_no_ack: u64,
    /// basic.get answered get-empty.
    pub get_empty: u64,
    /// Handed out again after a requeue.
    pub redeliver: u64,
    /// Acknowledged.
    pub ack: u64,
}

/// Publisher flow control. A queue whose consumers are taking messages but fall behind
/// its publishers holds them back: once its backlog passes `FLOW_HIGH` messages, a
/// connection publishing to it stops reading until the backlog is down to `FLOW_LOW`.
/// So a fast publisher runs at its consumers' pace with a bounded backlog and latency,
/// instead of growing the queue until the memory alarm blocks everyone. A queue whose
/// consumers have stopped taking messages (none handed out for `FLOW_STALL_MS`), or that
/// has none, holds nobody back: a backlog is what queues are for.
pub const FLOW_HIGH: usize = 20_000;
pub const FLOW_LOW: usize = 10_000;
const FLOW_STALL_MS: u64 = 100;

/// What a queue asks of the vhost it lives in: its name for error texts, republishing
/// dead letters, and removing the queue when `x-expires` runs out. The vhost gives
/// itself to each queue, weakly, as this trait so that the queue module does not depend
/// on the vhost's (which depends on it).
pub trait QueueHost: Send + Sync {
    fn name(&self) -> &str;
    /// Routes a dead-lettered message from the dead-letter exchange `dlx`.
    fn publish_dead_letter(&self, dlx: &ShortString, message: MessageRef);
    /// Removes this queue (if it is still the vhost's): its `x-expires` ran out.
    fn expire_queue(&self, queue: &Arc<Queue>);
}

#[derive(Debug)]
pub struct Queue {
    pub spec: QueueSpec,
    vhost: Weak<dyn QueueHost>,
    state: Mutex<State>,
    deleted: AtomicBool,
    /// Wakes the housekeeping task when expiry times may have moved earlier.
    housekeeping: Arc<Notify>,
    housekeeping_started: AtomicBool,
    /// Set by a publish that found the consumers behind (see [`FLOW_HIGH`]); the
    /// publishing connection then asks [`Queue::holds_back`] until it says no.
    behind: AtomicBool,
    /// What the queue occupies besides its messages: itself, its backlog's storage and
    /// the channels' records of its unacknowledged deliveries. Kept up to date under
    /// the state lock ([`Queue::account`]).
    memory: Account,
}

/// A queue's own footprint: the `Arc`ed queue and its entry in the vhost's map.
const QUEUE_FOOTPRINT: u64 =
    (arc_allocated::<Queue>() + map_entry::<ShortString, Arc<Queue>>()) as u64;

/// Slots an emptied backlog keeps: enough for a queue that is emptied and refilled in
/// small batches not to reallocate each time.
const KEPT_SLOTS: usize = 1024;

/// A channel's record of one unacknowledged delivery: the entry, its delivery tag, and
/// the queue and consumer it came from.
const UNACKED_FOOTPRINT: u64 = (size_of::<Entry>() + 3 * size_of::<usize>()) as u64;

/// A queue's state as the management API shows it.
#[derive(Debug, Clone)]
pub struct QueueSnapshot {
    pub ready: usize,
    pub unacked: usize,
    pub consumers: Vec<Arc<Consumer>>,
    pub counters: QueueCounters,
}

/// What became of a published message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accepted {
    Yes,
    /// `x-overflow: reject-publish`: the queue is full; the publisher gets a nack.
    Rejected,
}

impl Queue {
    /// A queue charged to `memory`.
    pub fn new(spec: QueueSpec, vhost: Weak<dyn QueueHost>, memory: &MemoryGauge) -> Arc<Queue> {
        let backlog = Backlog::new(&spec.args);
        let settings = spec.args.clone();
        let account = memory.account();
        account.set(QUEUE_FOOTPRINT + backlog.footprint());
        let queue = Arc::new(Queue {
            spec,
            vhost,
            state: Mutex::new(State {
                backlog,
                settings,
                policy: EffectivePolicy::default(),
                consumers: Vec::new(),
                next_consumer: 0,
                had_consumer: false,
                unacked: 0,
                last_used_ms: clock::now_ms(),
                last_hand_out_ms: 0,
                counters: QueueCounters::default(),
            }),
            deleted: AtomicBool::new(false),
            housekeeping: Arc::new(Notify::new()),
            housekeeping_started: AtomicBool::new(false),
            behind: AtomicBool::new(false),
            memory: account,
        });
        if queue.spec.args.message_ttl.is_some() || queue.spec.args.expires.is_some() {
            queue.start_housekeeping();
        }
        queue
    }

    pub fn name(&self) -> &ShortString {
        &self.spec.name
    }

    /// Brings the queue's charge up to date after a change to its state.
    fn account(&self, st: &mut State) {
        if self.is_deleted() {
            // What is left is the struct, kept only while someone still holds it.
            st.backlog.shrink_when_empty(0);
            self.memory.set(0);
            return;
        }
        st.backlog.shrink_when_empty(KEPT_SLOTS);
        self.memory
            .set(QUEUE_FOOTPRINT + st.backlog.footprint() + st.unacked as u64 * UNACKED_FOOTPRINT);
    }

    /// The bytes this queue is charged besides its messages.
    pub fn footprint(&self) -> u64 {
        self.memory.held()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves consistent-enough state for a broker
        // that must keep serving; poisoning would turn one bug into an outage.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn is_deleted(&self) -> bool {
        self.deleted.load(Ordering::Acquire)
    }

    pub fn message_count(&self) -> u32 {
        self.lock().backlog.len() as u32
    }

    pub fn consumer_count(&self) -> u32 {
        self.lock().consumers.len() as u32
    }

    pub fn unacked_count(&self) -> usize {
        self.lock().unacked
    }

    /// The settings in force: the declared arguments combined with the policies.
    pub fn settings(&self) -> QueueArgs {
        self.lock().settings.clone()
    }

    /// The policies in force for this queue.
    pub fn policy(&self) -> EffectivePolicy {
        self.lock().policy.clone()
    }

    /// Puts new policies in force, with `settings` the result (see
    /// `policy::effective`), as RabbitMQ does on a policy change: a lower length limit
    /// drops from the head now (dead-lettered as `maxlen`, under `drop-head`); a new
    /// message TTL applies to messages enqueued from now on; a new `expires` counts
    /// from the queue's last use.
    pub fn apply_policy(self: &Arc<Self>, policy: EffectivePolicy, settings: QueueArgs) {
        let timers = settings.message_ttl.is_some() || settings.expires.is_some();
        let dead = {
            let mut st = self.lock();
            let dropped = st.backlog.set_limits(&settings);
            st.settings = settings;
            st.policy = policy;
            dropped.into_iter().map(|e| (e, Reason::MaxLen)).collect()
        };
        if timers {
            self.start_housekeeping();
            self.housekeeping.notify_one();
        }
        self.dead_letter(dead);
    }

    /// Ready and unacknowledged messages, consumers and counters, read at one instant.
    pub fn snapshot(&self) -> QueueSnapshot {
        let st = self.lock();
        QueueSnapshot {
            ready: st.backlog.len(),
            unacked: st.unacked,
            consumers: st.consumers.clone(),
            counters: st.counters,
        }
    }

    /// Marks the queue used now (declare, get, consume), pushing back `x-expires`.
    pub fn touch(&self) {
        self.lock().last_used_ms = clock::now_ms();
    }

    /// Enqueues a routed message and hands out what consumers can take.
    pub fn publish(self: &Arc<Self>, message: MessageRef) -> Accepted {
        let now = clock::now_ms();
        let mut has_expiry = message.expiration_ms().is_some();
        let mut dead = Vec::new();
        let accepted = {
            let mut st = self.lock();
            // With a queue TTL, the housekeeper sleeps while the queue is empty; the first
            // message sets its next wake-up (later ones expire after it).
            has_expiry |= st.settings.message_ttl.is_some() && st.backlog.is_empty();
            let accepted = if st.backlog.is_empty() && self.deliver_directly(&mut st, &message, now)
            {
                st.counters.publish += 1;
                Accepted::Yes
            } else {
                let refused = matches!(st.settings.overflow, Overflow::RejectPublishDlx)
                    .then(|| message.clone());
                match st.backlog.push(message, now) {
                    PushOutcome::Accepted { dropped } => {
                        st.counters.publish += 1;
                        dead.extend(dropped.into_iter().map(|e| (e, Reason::MaxLen)));
                        self.dispatch_locked(&mut st, now, &mut dead);
                        if Self::falls_behind(&st, FLOW_HIGH, now) {
                            self.behind.store(true, Ordering::Relaxed);
                        }
                        Accepted::Yes
                    }
                    PushOutcome::Rejected => {
                        // reject-publish-dlx: the refused message is dead-lettered too.
                        if let Some(m) = refused {
                            dead.push((st.backlog.direct_entry(m, now), Reason::MaxLen));
                        }
                        Accepted::Rejected
                    }
                }
            };
            self.account(&mut st);
            accepted
        };
        if has_expiry {
            self.start_housekeeping();
            self.housekeeping.notify_one();
        }
        self.dead_letter(dead);
        accepted
    }

    fn falls_behind(st: &State, mark: usize, now: u64) -> bool {
        st.backlog.len() > mark
            && !st.consumers.is_empty()
            && now.saturating_sub(st.last_hand_out_ms) < FLOW_STALL_MS
    }

    /// A publish found this queue's consumers behind its publishers (cheap: no lock).
    pub fn is_behind(&self) -> bool {
        self.behind.load(Ordering::Relaxed)
    }

    /// Whether a connection waiting on this queue (see [`FLOW_HIGH`]) should go on
    /// waiting: the backlog is still over the low mark and the consumers still taking.
    pub fn holds_back(&self) -> bool {
        let st = self.lock();
        let behind = !self.deleted.load(Ordering::Relaxed)
            && Self::falls_behind(&st, FLOW_LOW, clock::now_ms());
        if !behind {
            self.behind.store(false, Ordering::Relaxed);
        }
        behind
    }

    /// With nothing queued and a consumer ready, the message goes straight out without
    /// being queued, as RabbitMQ does: so TTL 0 and max-length 0 still reach a waiting
    /// consumer. False when it has to be queued.
    fn deliver_directly(self: &Arc<Self>, st: &mut State, message: &MessageRef, now: u64) -> bool {
        if st.consumers.is_empty() {
            return false;
        }
        let reject_mode = !matches!(st.settings.overflow, Overflow::DropHead);
        if reject_mode && st.backlog.would_overflow(message) {
            return false;
        }
        let Some(index) = self.pick_consumer(st) else {
            return false;
        };
        let entry = st.backlog.direct_entry(message.clone(), now);
        st.last_hand_out_ms = now;
        self.hand_out(st, index, entry);
        true
    }

    /// Sends one entry to consumer `index` (whose credit is already taken).
    fn hand_out(self: &Arc<Self>, st: &mut State, index: usize, entry: Entry) {
        let consumer = st.consumers[index].clone();
        consumer.handed_out(&entry);
        if entry.redelivered {
            st.counters.redeliver += 1;
        }
        if consumer.no_ack {
            st.counters.deliver_no_ack += 1;
        } else {
            st.counters.deliver += 1;
            st.unacked += 1;
        }
        let event = ConnectionEvent::Deliver {
            channel: consumer.channel,
            consumer: consumer.clone(),
            queue: self.clone(),
            entry,
        };
        if let Err(event) = consumer.mailbox.send(event) {
            // The connection is gone: take the message back, drop the consumer.
            if let ConnectionEvent::Deliver { entry, .. } = event {
                if !consumer.no_ack {
                    st.unacked -= 1;
                }
                // Its original place is the head; a requeue never overflows the limits
                // by more than this one message, and that is what it had taken.
                let _ = st.backlog.requeue([entry]);
            }
            st.consumers.retain(|c| !Arc::ptr_eq(c, &consumer));
        }
    }

    /// Hands out ready messages to consumers with credit (after acks, qos changes, flow).
    pub fn dispatch(self: &Arc<Self>) {
        let mut dead = Vec::new();
        {
            let mut st = self.lock();
            self.dispatch_locked(&mut st, clock::now_ms(), &mut dead);
            self.account(&mut st);
        }
        self.dead_letter(dead);
    }

    fn dispatch_locked(
        self: &Arc<Self>,
        st: &mut State,
        now: u64,
        dead: &mut Vec<(Entry, Reason)>,
    ) {
        while !st.backlog.is_empty() && !st.consumers.is_empty() {
            let Some(index) = self.pick_consumer(st) else {
                return;
            };
            let (entry, expired) = st.backlog.pop(now);
            dead.extend(expired.into_iter().map(|e| (e, Reason::Expired)));
            let Some(entry) = entry else {
                st.consumers[index].give_back_credit(1);
                return;
            };
            st.last_hand_out_ms = now;
            self.hand_out(st, index, entry);
        }
    }

    /// The next consumer (round robin) that has credit, having taken that credit.
    fn pick_consumer(&self, st: &mut State) -> Option<usize> {
        let n = st.consumers.len();
        if self.spec.args.single_active_consumer {
            // Only the first consumer is active; the others wait their turn.
            return st.consumers[0].try_take_credit().then_some(0);
        }
        // Consumers are kept in descending `x-priority` order. Higher levels get every
        // message they have credit for; round robin within a level (RabbitMQ's rule).
        let mut start = 0;
        while start < n {
            let level = st.consumers[start].priority;
            let end = start
                + st.consumers[start..]
                    .iter()
                    .take_while(|c| c.priority == level)
                    .count();
            let len = end - start;
            for i in 0..len {
                let index = start + (st.next_consumer + i) % len;
                if st.consumers[index].try_take_credit() {
                    st.next_consumer = index - start + 1;
                    return Some(index);
                }
            }
            start = end;
        }
        None
    }

    /// `basic.get`: the next ready message and how many remain.
    pub fn get(self: &Arc<Self>, no_ack: bool) -> Option<(Entry, u32)> {
        let now = clock::now_ms();
        let (entry, expired, remaining) = {
            let mut st = self.lock();
            st.last_used_ms = now;
            let (entry, expired) = st.backlog.pop(now);
            match &entry {
                None => st.counters.get_empty += 1,
                Some(_) if no_ack => st.counters.get_no_ack += 1,
                Some(e) => {
                    st.counters.get += 1;
                    st.unacked += 1;
                    if e.redelivered {
                        st.counters.redeliver += 1;
                    }
                }
            }
            let remaining = st.backlog.len() as u32;
            self.account(&mut st);
            (entry, expired, remaining)
        };
        self.dead_letter(expired.into_iter().map(|e| (e, Reason::Expired)).collect());
        entry.map(|e| (e, remaining))
    }

    /// Settles `n` deliveries that were acknowledged.
    pub fn acked(&self, n: usize) {
        let mut st = self.lock();
        st.unacked = st.unacked.saturating_sub(n);
        self.account(&mut st);
        st.counters.ack += n as u64;
    }

    /// Takes deliveries back: requeued at their original place (redelivered), or
    /// dead-lettered as rejected (dropped when there is no dead-letter exchange).
    pub fn returned(self: &Arc<Self>, entries: Vec<Entry>, requeue: bool) {
        self.take_back(entries, requeue, true);
    }

    /// A delivery that never reached its consumer (its channel or connection went on
    /// the way): back to its place. One to a no-ack consumer was never counted as
    /// unacknowledged.
    pub fn undelivered(self: &Arc<Self>, consumer: &Consumer, entry: Entry) {
        self.take_back(vec![entry], true, !consumer.no_ack);
    }

    fn take_back(self: &Arc<Self>, entries: Vec<Entry>, requeue: bool, counted: bool) {
        let n = if counted { entries.len() } else { 0 };
        let mut dead = Vec::new();
        {
            let mut st = self.lock();
            st.unacked = st.unacked.saturating_sub(n);
            if requeue && !self.is_deleted() {
                let dropped = st.backlog.requeue(entries);
                dead.extend(dropped.into_iter().map(|e| (e, Reason::MaxLen)));
                // What expired while it was out expires now, not at the next pop.
                let expired = st.backlog.expire(clock::now_ms());
                dead.extend(expired.into_iter().map(|e| (e, Reason::Expired)));
                self.dispatch_locked(&mut st, clock::now_ms(), &mut dead);
            } else {
                dead.extend(entries.into_iter().map(|e| (e, Reason::Rejected)));
            }
            self.account(&mut st);
        }
        self.dead_letter(dead);
    }

    /// Adds a consumer; exclusivity is checked as RabbitMQ does.
    pub fn add_consumer(self: &Arc<Self>, consumer: Arc<Consumer>) -> AmqpResult<()> {
        {
            let mut st = self.lock();
            if st.consumers.iter().any(|c| c.exclusive)
                || (consumer.exclusive && !st.consumers.is_empty())
            {
                return Err(AmqpError::access_refused(format!(
                    "queue '{}' in vhost '{}' in exclusive use",
                    self.spec.name,
                    self.vhost_name()
                )));
            }
            // Descending priority; a newcomer goes after its equals.
            let at = st
                .consumers
                .partition_point(|c| c.priority >= consumer.priority);
            st.consumers.insert(at, consumer);
            st.had_consumer = true;
            st.last_used_ms = clock::now_ms();
        }
        self.dispatch();
        Ok(())
    }

    /// Removes a consumer. True when the queue should now be auto-deleted.
    pub fn remove_consumer(&self, consumer: &Arc<Consumer>) -> bool {
        let mut st = self.lock();
        st.consumers.retain(|c| !Arc::ptr_eq(c, consumer));
        st.next_consumer = 0;
        st.last_used_ms = clock::now_ms();
        self.spec.auto_delete && st.had_consumer && st.consumers.is_empty()
    }

    /// Drops every ready message (not dead-lettered, as RabbitMQ); returns how many.
    pub fn purge(&self) -> u32 {
        let mut st = self.lock();
        let purged = st.backlog.purge();
        self.account(&mut st);
        drop(st);
        purged.len() as u32
    }

    /// Marks the queue deleted and empties it; its consumers are told (basic.cancel to
    /// a client). Returns the number of ready messages it held.
    pub fn delete(&self) -> u32 {
        self.deleted.store(true, Ordering::Release);
        self.housekeeping.notify_one();
        let (count, consumers) = {
            let mut st = self.lock();
            let count = st.backlog.purge().len() as u32;
            self.account(&mut st);
            (count, std::mem::take(&mut st.consumers))
        };
        for c in consumers {
            let _ = c.mailbox.send(ConnectionEvent::Cancelled {
                channel: c.channel,
                consumer_tag: c.tag.clone(),
            });
        }
        count
    }

    fn vhost_name(&self) -> String {
        self.vhost
            .upgrade()
            .map(|v| v.name().to_string())
            .unwrap_or_default()
    }

    /// Republishes dead letters to the dead-letter exchange, if the queue has one.
    fn dead_letter(&self, dead: Vec<(Entry, Reason)>) {
        if dead.is_empty() {
            return;
        }
        // Read now: a policy may change them at any time.
        let (dlx, routing_key) = {
            let st = self.lock();
            let s = &st.settings;
            (
                s.dead_letter_exchange.clone(),
                s.dead_letter_routing_key.clone(),
            )
        };
        let Some(dlx) = &dlx else {
            return;
        };
        let Some(vhost) = self.vhost.upgrade() else {
            return;
        };
        let now = clock::unix_secs();
        for (entry, reason) in dead {
            let message = dead_letter::dead_letter(
                &entry.message,
                &self.spec.name,
                reason,
                dlx,
                routing_key.as_ref(),
                now,
            );
            // A new message, charged as one.
            let message = message.charge_to(self.memory.gauge());
            vhost.publish_dead_letter(dlx, Arc::new(message));
        }
    }

    /// Starts the task that expires messages and the queue itself, once.
    fn start_housekeeping(self: &Arc<Self>) {
        if self.housekeeping_started.swap(true, Ordering::AcqRel) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let weak = Arc::downgrade(self);
        runtime.spawn(async move {
            loop {
                let Some(queue) = weak.upgrade() else { return };
                if queue.is_deleted() {
                    return;
                }
                let wake = queue.housekeep();
                let notify = queue.housekeeping.clone();
                drop(queue);
                let notified = notify.notified();
                match wake {
                    Some(at) => {
                        tokio::select! {
                            _ = tokio::time::sleep_until(clock::instant_at(at).into()) => {}
                            _ = notified => {}
                        }
                    }
                    None => notified.await,
                }
            }
        });
    }

    /// Expires what is due; returns when to look again.
    fn housekeep(self: &Arc<Self>) -> Option<u64> {
        let now = clock::now_ms();
        let mut dead = Vec::new();
        let (next, expire_queue) = {
            let mut st = self.lock();
            dead.extend(
                st.backlog
                    .expire(now)
                    .into_iter()
                    .map(|e| (e, Reason::Expired)),
            );
            self.account(&mut st);
            let mut next = st.backlog.next_expiry();
            let mut expire_queue = false;
            if let Some(expires) = st.settings.expires {
                if st.consumers.is_empty() {
                    let due = st.last_used_ms.saturating_add(expires);
                    if due <= now {
                        expire_queue = true;
                    } else {
                        next = Some(next.map_or(due, |n| n.min(due)));
                    }
                } else {
                    // Re-check after the period: consumers may leave without a wake-up.
                    let due = now.saturating_add(expires);
                    next = Some(next.map_or(due, |n| n.min(due)));
                }
            }
            (next, expire_queue)
        };
        self.dead_letter(dead);
        if expire_queue {
            if let Some(vhost) = self.vhost.upgrade() {
                vhost.expire_queue(self);
            }
            return None;
        }
        next
    }
}

impl crate::broker::exchange_hook::HoldsBack for Queue {
    fn holds_back(&self) -> bool {
        Queue::holds_back(self)
    }
}
