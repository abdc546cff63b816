//! The one path through which a vhost's exchanges, queues and bindings change.
//!
//! Every declare, delete, bind and unbind — from a client, a broker object, the
//! management API or a definitions import — and every removal the broker makes itself
//! (`x-expires`, auto-delete, an exclusive owner closing) is a [`TopologyChange`] given
//! to [`VHost::apply`]. That function takes the vhost's topology lock, applies the
//! change with RabbitMQ's checks and errors, and announces what happened, in order:
//!
//! - a [`TopologyEvent`] per exchange, queue or binding added or removed (cascades
//!   included: deleting a queue removes its bindings first), numbered by a per-vhost
//!   sequence, to topology subscribers ([`VHost::subscribe_topology`]);
//! - a [`BindingNotice`] when a distinct binding is created or destroyed, to
//!   binding-state subscribers ([`VHost::subscribe_bindings`]);
//! - a bump of [`VHost::topology`], which invalidates the routes connections cache.
//!
//! A subscriber gets a snapshot taken under the same lock, so the snapshot and the
//! notices after it have no gap and no duplicate. Publishing never takes this lock.
//!
//! Architecture Invariant: nothing else in the broker changes the exchange map, the
//! queue map or a routing table.

use std::sync::{Arc, MutexGuard, Weak};

use super::error::{AmqpError, AmqpResult};
use super::exchange::{Exchange, ExchangeSpec};
use super::exchange_hook::BindCheck;
use super::message::MessageRef;
use super::owner::Owner;
use super::policy::ObjectKind;
use super::queue::{Queue, QueueHost, QueueSpec};
use super::queue_args::QueueArgs;
use super::routing::{Binding, Destination, ExchangeKind};
use super::vhost::{BINDING_FOOTPRINT, EXCHANGE_FOOTPRINT, QueueDeclare, VHost};
use crate::protocol::arguments::same_arguments;
use crate::protocol::{FieldTable, FieldValue, ReplyCode, ShortString};

pub use super::events::{
    BindingNotice, BindingSpec, DEFAULT_CAPACITY, DistinctBinding, PolicyObject, TopologyEvent,
    TopologyEventKind, TopologyNotice,
};
use crate::broker::events::{Feed, TopologyState};

/// Why the broker removed a queue by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removal {
    /// `x-expires` ran out.
    Expired,
    /// The last consumer of an auto-delete queue left.
    AutoDelete,
    /// The owner of an exclusive queue went away.
    OwnerGone,
    /// Its vhost was deleted.
    VHostDeleted,
}

/// A change to a vhost's topology.
#[derive(Debug, Clone)]
pub enum TopologyChange {
    DeclareExchange {
        spec: ExchangeSpec,
        passive: bool,
    },
    DeleteExchange {
        name: ShortString,
        if_unused: bool,
    },
    /// `queue.declare`; `owner` owns the queue if it is exclusive, and is checked
    /// against an existing exclusive queue's owner.
    DeclareQueue {
        declare: QueueDeclare,
        owner: Owner,
    },
    /// `queue.delete`; a queue that does not exist is deleted already.
    DeleteQueue {
        name: ShortString,
        if_unused: bool,
        if_empty: bool,
        by: Owner,
    },
    /// The broker removes this queue (if it is still the vhost's).
    RemoveQueue {
        queue: Arc<Queue>,
        why: Removal,
    },
    /// `queue.bind` / `exchange.bind`; `by` must be allowed to use an exclusive queue.
    Bind {
        binding: BindingSpec,
        by: Owner,
    },
    /// `queue.unbind` / `exchange.unbind`; what is not bound is unbound already.
    Unbind {
        binding: BindingSpec,
        by: Owner,
    },
}

/// What [`VHost::apply`] gives back.
#[derive(Debug, Clone)]
pub enum Applied {
    Exchange(Arc<Exchange>),
    Queue {
        queue: Arc<Queue>,
        created: bool,
    },
    /// A queue deleted, with the number of ready messages it held.
    Deleted {
        messages: u32,
    },
    Done,
}

/// A binding-state subscription: see [`VHost::subscribe_bindings`].
#[derive(Debug)]
pub struct BindingSubscription {
    vhost: Weak<VHost>,
    exchange: Option<ShortString>,
    feed: Arc<Feed<BindingNotice>>,
}

/// A topology subscription: see [`VHost::subscribe_topology`].
#[derive(Debug)]
pub struct TopologySubscription {
    vhost: Weak<VHost>,
    feed: Arc<Feed<TopologyNotice>>,
}

fn yes_no(b: bool) -> &'static str {
    if b { "true" } else { "false" }
}

impl VHost {
    /// Applies one change to the topology and announces it (see the module doc).
    pub fn apply(&self, change: TopologyChange) -> AmqpResult<Applied> {
        self.change(|this, state| this.apply_locked(state, change))
    }

    /// `queue.declare` through [`VHost::apply`], typed: the queue and whether it is new.
    pub fn declare_queue(
        &self,
        declare: QueueDeclare,
        owner: Owner,
    ) -> AmqpResult<(Arc<Queue>, bool)> {
        self.change(|this, state| this.declare_queue_locked(state, declare, owner))
    }

    /// `queue.delete` through [`VHost::apply`], typed: the number of messages it held.
    pub fn delete_queue(
        &self,
        name: &ShortString,
        if_unused: bool,
        if_empty: bool,
        by: &Owner,
    ) -> AmqpResult<u32> {
        self.change(|this, state| this.delete_queue_locked(state, name, if_unused, if_empty, by))
    }

    /// The one path: takes the topology lock, makes the change, announces what it did.
    fn change<T>(
        &self,
        f: impl FnOnce(&Self, &mut TopologyState) -> AmqpResult<T>,
    ) -> AmqpResult<T> {
        let mut state = self.lock_topology();
        let result = f(self, &mut state);
        self.announce(&mut state);
        result
    }

    fn apply_locked(
        &self,
        state: &mut TopologyState,
        change: TopologyChange,
    ) -> AmqpResult<Applied> {
        let state = &mut *state;
        match change {
            TopologyChange::DeclareExchange { spec, passive } => self
                .declare_exchange_locked(state, spec, passive)
                .map(Applied::Exchange),
            TopologyChange::DeleteExchange { name, if_unused } => {
                refuse_builtin_exchange_delete(&name)?;
                self.delete_exchange_locked(state, &name, if_unused)
                    .map(|()| Applied::Done)
            }
            TopologyChange::DeclareQueue { declare, owner } => self
                .declare_queue_locked(state, declare, owner)
                .map(|(queue, created)| Applied::Queue { queue, created }),
            TopologyChange::DeleteQueue {
                name,
                if_unused,
                if_empty,
                by,
            } => self
                .delete_queue_locked(state, &name, if_unused, if_empty, &by)
                .map(|messages| Applied::Deleted { messages }),
            TopologyChange::RemoveQueue { queue, why } => {
                tracing::debug!(vhost = %self.name, queue = %queue.name(), "queue removed: {why:?}");
                let messages = self.remove_queue_locked(state, &queue);
                Ok(Applied::Deleted { messages })
            }
            TopologyChange::Bind { binding, by } => self
                .bind_locked(state, binding, &by)
                .map(|()| Applied::Done),
            TopologyChange::Unbind { binding, by } => self
                .unbind_locked(state, binding, &by)
                .map(|()| Applied::Done),
        }
    }

    /// Removes a queue the broker itself decided to remove.
    pub fn remove_queue(&self, queue: &Arc<Queue>, why: Removal) {
        let _ = self.apply(TopologyChange::RemoveQueue {
            queue: queue.clone(),
            why,
        });
    }

    /// Deletes the exclusive queues of an owner that went away.
    pub fn owner_gone(&self, owner: &Owner) {
        let owned: Vec<_> = self
            .queues_read()
            .values()
            .filter(|q| q.spec.exclusive_owner.as_ref() == Some(owner))
            .cloned()
            .collect();
        for q in owned {
            self.remove_queue(&q, Removal::OwnerGone);
        }
    }

    /// Subscribes to binding changes of one exchange (`Some(name)`, which need not
    /// exist yet) or of every exchange of this vhost. Returns the distinct bindings now
    /// and a subscription that receives every change after them.
    pub fn subscribe_bindings(
        &self,
        exchange: Option<ShortString>,
        capacity: usize,
    ) -> (Vec<DistinctBinding>, BindingSubscription) {
        let mut state = self.lock_topology();
        let snapshot = state.distinct_bindings(exchange.as_ref());
        let feed = state.add_binding_feed(exchange.clone(), capacity);
        let sub = BindingSubscription {
            vhost: self.this.clone(),
            exchange,
            feed,
        };
        (snapshot, sub)
    }

    /// Subscribes to every topology event of this vhost. Returns the topology now, as
    /// the events that would build it, and the sequence number it is as of.
    pub fn subscribe_topology(
        &self,
        capacity: usize,
    ) -> (u64, Vec<TopologyEventKind>, TopologySubscription) {
        let mut state = self.lock_topology();
        let snapshot = self.topology_snapshot();
        let feed = state.add_topology_feed(capacity);
        let sub = TopologySubscription {
            vhost: self.this.clone(),
            feed,
        };
        (state.seq(), snapshot, sub)
    }

    /// The sequence number of the last topology event.
    pub fn topology_seq(&self) -> u64 {
        self.lock_topology().seq()
    }

    /// Ends every subscription: the vhost is being deleted.
    pub(crate) fn close_subscriptions(&self) {
        self.lock_topology().close_feeds();
    }

    fn lock_topology(&self) -> MutexGuard<'_, TopologyState> {
        self.topology_lock.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The exchanges, queues and bindings now, as events (declarations first).
    fn topology_snapshot(&self) -> Vec<TopologyEventKind> {
        let exchanges = self.exchanges_read();
        let mut out: Vec<_> = exchanges
            .values()
            .map(|e| TopologyEventKind::ExchangeDeclared(e.spec.clone()))
            .collect();
        out.extend(self.queues_read().values().map(|q| queue_declared(&q.spec)));
        let policies = self.policies_read();
        for e in exchanges.values() {
            out.extend(policy_event(
                PolicyObject::Exchange(e.spec.name.clone()),
                &policies.effective(ObjectKind::Exchange, e.spec.name.as_bytes()),
            ));
        }
        for q in self.queues_read().values() {
            out.extend(policy_event(
                PolicyObject::Queue(q.name().clone()),
                &q.policy(),
            ));
        }
        for e in exchanges.values() {
            for b in e.table().bindings() {
                out.push(TopologyEventKind::BindingAdded(BindingSpec {
                    source: e.spec.name.clone(),
                    destination: b.destination.clone(),
                    routing_key: b.routing_key.clone(),
                    arguments: b.arguments.clone(),
                }));
            }
        }
        out
    }

    /// Announces what the change did, then marks the topology changed.
    fn announce(&self, state: &mut TopologyState) {
        if state.announce() {
            // After the change: a route computed from the old state never outlives it.
            self.topology_changed();
        }
    }

    fn binding_added(&self, state: &mut TopologyState, kind: ExchangeKind, b: BindingSpec) {
        let exclusive = match &b.destination {
            Destination::Queue(q) => self
                .queues_read()
                .get(q)
                .is_some_and(|q| q.spec.exclusive_owner.is_some()),
            Destination::Exchange(_) => false,
        };
        self.topology_memory.charge(BINDING_FOOTPRINT);
        state.binding_added(kind, b, exclusive);
    }

    fn binding_removed(&self, state: &mut TopologyState, kind: ExchangeKind, b: BindingSpec) {
        self.topology_memory.release(BINDING_FOOTPRINT);
        state.binding_removed(kind, b);
    }

    fn declare_exchange_locked(
        &self,
        state: &mut TopologyState,
        spec: ExchangeSpec,
        passive: bool,
    ) -> AmqpResult<Arc<Exchange>> {
        if passive {
            return self.exchange_or_404(&spec.name);
        }
        let mut map = self.exchanges_write();
        if let Some(existing) = map.get(&spec.name) {
            let e = &existing.spec;
            let mismatch = if e.kind != spec.kind {
                Some((
                    "type",
                    spec.kind.name().to_string(),
                    e.kind.name().to_string(),
                ))
            } else if e.durable != spec.durable {
                Some((
                    "durable",
                    yes_no(spec.durable).into(),
                    yes_no(e.durable).into(),
                ))
            } else if e.auto_delete != spec.auto_delete {
                Some((
                    "auto_delete",
                    yes_no(spec.auto_delete).into(),
                    yes_no(e.auto_delete).into(),
                ))
            } else if e.internal != spec.internal {
                Some((
                    "internal",
                    yes_no(spec.internal).into(),
                    yes_no(e.internal).into(),
                ))
            } else if !same_arguments(&e.arguments, &spec.arguments) {
                Some((
                    "arguments",
                    format!("{:?}", spec.arguments),
                    format!("{:?}", e.arguments),
                ))
            } else {
                None
            };
            if let Some((arg, got, have)) = mismatch {
                return Err(AmqpError::precondition_failed(format!(
                    "inequivalent arg '{arg}' for exchange '{}' in vhost '{}': received '{got}' but current is '{have}'",
                    spec.name, self.name
                )));
            }
            return Ok(existing.clone());
        }
        if map.len() >= self.limits.max_exchanges {
            return Err(AmqpError::precondition_failed(format!(
                "cannot declare exchange '{}': exchange limit in vhost '{}' ({}) is reached",
                spec.name, self.name, self.limits.max_exchanges
            )));
        }
        let ex = Arc::new(Exchange::new(spec));
        map.insert(ex.spec.name.clone(), ex.clone());
        self.topology_memory.charge(EXCHANGE_FOOTPRINT);
        state.record(TopologyEventKind::ExchangeDeclared(ex.spec.clone()));
        Ok(ex)
    }

    fn delete_exchange_locked(
        &self,
        state: &mut TopologyState,
        name: &ShortString,
        if_unused: bool,
    ) -> AmqpResult<()> {
        let ex = {
            let mut map = self.exchanges_write();
            let Some(ex) = map.get(name).cloned() else {
                // Deleting an exchange that does not exist succeeds, as in RabbitMQ.
                return Ok(());
            };
            if if_unused && !ex.table().is_empty() {
                return Err(AmqpError::precondition_failed(format!(
                    "exchange '{name}' in vhost '{}' in use",
                    self.name
                )));
            }
            map.remove(name);
            self.topology_memory.release(EXCHANGE_FOOTPRINT);
            ex
        };
        // Its own bindings go with it...
        let own: Vec<Binding> = ex.table().bindings().cloned().collect();
        for b in own {
            self.binding_removed(state, ex.spec.kind, spec_of(name, b));
        }
        // ...and so do the bindings that had it as destination.
        let dest = Destination::Exchange(name.clone());
        self.remove_destination(state, &dest);
        state.record(TopologyEventKind::ExchangeDeleted(name.clone()));
        Ok(())
    }

    /// Removes every binding to `dest`; auto-delete exchanges left without bindings go.
    fn remove_destination(&self, state: &mut TopologyState, dest: &Destination) {
        let mut emptied = Vec::new();
        let exchanges: Vec<Arc<Exchange>> = self.exchanges_read().values().cloned().collect();
        for ex in exchanges {
            let (removed, now_empty) = {
                let mut table = ex.table_mut();
                let removed = table.remove_destination(dest);
                let empty = table.is_empty();
                (removed, empty)
            };
            if !removed.is_empty() && now_empty && ex.spec.auto_delete {
                emptied.push(ex.spec.name.clone());
            }
            for b in removed {
                self.binding_removed(state, ex.spec.kind, spec_of(&ex.spec.name, b));
            }
        }
        for name in emptied {
            let _ = self.delete_exchange_locked(state, &name, true);
        }
    }

    fn declare_queue_locked(
        &self,
        state: &mut TopologyState,
        d: QueueDeclare,
        owner: Owner,
    ) -> AmqpResult<(Arc<Queue>, bool)> {
        let name = if d.name.is_empty() && !d.passive {
            server_named()
        } else {
            d.name.clone()
        };
        if d.passive {
            let q = self.queue_for(&name, &owner)?;
            q.touch();
            return Ok((q, false));
        }
        let args = QueueArgs::parse(&d.arguments).map_err(|e| {
            AmqpError::precondition_failed(e.text_for(&name.to_string(), &self.name))
        })?;
        let mut map = self.queues_write();
        if let Some(existing) = map.get(&name).cloned() {
            drop(map);
            self.check_exclusive(&existing, &owner)?;
            let s = &existing.spec;
            let mismatch = if s.durable != d.durable {
                Some(("durable", yes_no(d.durable), yes_no(s.durable)))
            } else if s.exclusive_owner.is_some() != d.exclusive {
                Some((
                    "exclusive",
                    yes_no(d.exclusive),
                    yes_no(s.exclusive_owner.is_some()),
                ))
            } else if s.auto_delete != d.auto_delete {
                Some(("auto_delete", yes_no(d.auto_delete), yes_no(s.auto_delete)))
            } else {
                None
            };
            if let Some((arg, got, have)) = mismatch {
                return Err(AmqpError::precondition_failed(format!(
                    "inequivalent arg '{arg}' for queue '{name}' in vhost '{}': received '{got}' but current is '{have}'",
                    self.name
                )));
            }
            if let Some(arg) = first_inequivalent_x_arg(&s.arguments, &d.arguments) {
                return Err(AmqpError::precondition_failed(format!(
                    "inequivalent arg '{arg}' for queue '{name}' in vhost '{}': received {} but current is {}",
                    self.name,
                    describe(d.arguments.get(&arg)),
                    describe(s.arguments.get(&arg)),
                )));
            }
            existing.touch();
            return Ok((existing, false));
        }
        if map.len() >= self.limits.max_queues {
            return Err(AmqpError::precondition_failed(format!(
                "cannot declare queue '{name}': queue limit in vhost '{}' ({}) is reached",
                self.name, self.limits.max_queues
            )));
        }
        let q = Queue::new(
            QueueSpec {
                name: name.clone(),
                durable: d.durable,
                exclusive_owner: d.exclusive.then_some(owner),
                auto_delete: d.auto_delete,
                arguments: d.arguments,
                args,
            },
            self.this.clone(),
            &self.memory,
        );
        map.insert(name, q.clone());
        state.record(queue_declared(&q.spec));
        drop(map);
        self.apply_queue_policy(state, &q, &self.policies_read());
        Ok((q, true))
    }

    fn delete_queue_locked(
        &self,
        state: &mut TopologyState,
        name: &ShortString,
        if_unused: bool,
        if_empty: bool,
        by: &Owner,
    ) -> AmqpResult<u32> {
        let Some(q) = self.queue(name) else {
            return Ok(0);
        };
        self.check_exclusive(&q, by)?;
        if if_unused && q.consumer_count() > 0 {
            return Err(AmqpError::precondition_failed(format!(
                "queue '{name}' in vhost '{}' in use",
                self.name
            )));
        }
        if if_empty && q.message_count() > 0 {
            return Err(AmqpError::precondition_failed(format!(
                "queue '{name}' in vhost '{}' is not empty",
                self.name
            )));
        }
        Ok(self.remove_queue_locked(state, &q))
    }

    /// Removes a queue with its bindings, cancelling its consumers.
    fn remove_queue_locked(&self, state: &mut TopologyState, q: &Arc<Queue>) -> u32 {
        {
            let mut map = self.queues_write();
            match map.get(q.name()) {
                Some(current) if Arc::ptr_eq(current, q) => {
                    map.remove(q.name());
                }
                _ => return 0,
            }
        }
        self.remove_destination(state, &Destination::Queue(q.name().clone()));
        state.record(TopologyEventKind::QueueDeleted(q.name().clone()));
        q.delete()
    }

    fn bind_locked(&self, state: &mut TopologyState, b: BindingSpec, by: &Owner) -> AmqpResult<()> {
        let ex = self.check_binding(&b, by)?;
        self.check_bind_hook(&ex, &b)?;
        let added = ex
            .table_mut()
            .bind(Binding {
                destination: b.destination.clone(),
                routing_key: b.routing_key.clone(),
                arguments: b.arguments.clone(),
            })
            .map_err(AmqpError::precondition_failed)?;
        if added {
            self.binding_added(state, ex.spec.kind, b);
        }
        Ok(())
    }

    /// A queue bound to an exchange with a hook (`exchange_hook`): the hook may refuse it,
    /// given the exclusivity of the queues already bound with the same key.
    fn check_bind_hook(&self, ex: &Exchange, b: &BindingSpec) -> AmqpResult<()> {
        let Destination::Queue(name) = &b.destination else {
            return Ok(());
        };
        let Some(hook) = self.exchange_hook(&ex.spec.name) else {
            return Ok(());
        };
        let exclusive = |q: &ShortString| {
            self.queue(q)
                .is_some_and(|q| q.spec.exclusive_owner.is_some())
        };
        let bound: Vec<bool> = ex
            .table()
            .bindings()
            .filter(|x| {
                x.routing_key == b.routing_key && same_arguments(&x.arguments, &b.arguments)
            })
            .filter_map(|x| match &x.destination {
                Destination::Queue(q) if q != name => Some(exclusive(q)),
                _ => None,
            })
            .collect();
        hook.check_bind(&BindCheck {
            routing_key: &b.routing_key,
            arguments: &b.arguments,
            exclusive: exclusive(name),
            bound: &bound,
        })
    }

    /// Unbinding from or to something that does not exist succeeds, as in RabbitMQ:
    /// what is gone has no bindings left (aio-pika's RPC pattern unbinds, as it closes,
    /// a reply queue that auto-delete already removed). The default exchange is still
    /// refused first, and another owner's exclusive queue is still 405.
    fn unbind_locked(
        &self,
        state: &mut TopologyState,
        b: BindingSpec,
        by: &Owner,
    ) -> AmqpResult<()> {
        for name in [Some(&b.source), b.destination_exchange()]
            .into_iter()
            .flatten()
        {
            if name.is_empty() {
                return Err(AmqpError::default_exchange());
            }
        }
        let ex = match self.check_binding(&b, by) {
            Err(e) if e.code == ReplyCode::NotFound => return Ok(()),
            other => other?,
        };
        let (removed, now_empty) = {
            let mut table = ex.table_mut();
            let removed = table.unbind(&Binding {
                destination: b.destination.clone(),
                routing_key: b.routing_key.clone(),
                arguments: b.arguments.clone(),
            });
            (removed, table.is_empty())
        };
        if removed {
            self.binding_removed(state, ex.spec.kind, b);
            if now_empty && ex.spec.auto_delete {
                let name = ex.spec.name.clone();
                let _ = self.delete_exchange_locked(state, &name, true);
            }
        }
        Ok(())
    }

    /// The source exchange of a binding, with RabbitMQ's checks: source and destination
    /// exist, neither is the default exchange, an exclusive queue is `by`'s.
    fn check_binding(&self, b: &BindingSpec, by: &Owner) -> AmqpResult<Arc<Exchange>> {
        match &b.destination {
            Destination::Queue(name) => {
                self.queue_for(name, by)?;
                self.bindable(&b.source)
            }
            Destination::Exchange(name) => {
                let source = self.bindable(&b.source)?;
                self.bindable(name)?;
                Ok(source)
            }
        }
    }

    /// An exchange that bindings may use: it exists and is not the default exchange.
    fn bindable(&self, name: &ShortString) -> AmqpResult<Arc<Exchange>> {
        let ex = self.exchange_or_404(name)?;
        if ex.is_default() {
            return Err(AmqpError::default_exchange());
        }
        Ok(ex)
    }
}

impl QueueHost for VHost {
    fn name(&self) -> &str {
        &self.name
    }
    fn publish_dead_letter(&self, dlx: &ShortString, message: MessageRef) {
        VHost::publish_dead_letter(self, dlx, message);
    }
    fn expire_queue(&self, queue: &Arc<Queue>) {
        self.remove_queue(queue, Removal::Expired);
    }
}

impl BindingSubscription {
    /// The next notice, waiting for one; `None` once the vhost is gone.
    pub async fn recv(&mut self) -> Option<BindingNotice> {
        loop {
            if let Some(n) = self.try_recv() {
                return n;
            }
            self.feed.changed().await;
        }
    }

    /// The next notice if there is one: `Some(None)` once the vhost is gone, `None` when
    /// nothing is waiting.
    pub fn try_recv(&mut self) -> Option<Option<BindingNotice>> {
        let exchange = self.exchange.as_ref();
        next_notice(&self.feed, &self.vhost, |_, state| BindingNotice::Resync {
            seq: state.seq(),
            bindings: state.distinct_bindings(exchange),
        })
    }
}

impl TopologySubscription {
    /// The next notice, waiting for one; `None` once the vhost is gone.
    pub async fn recv(&mut self) -> Option<TopologyNotice> {
        loop {
            if let Some(n) = self.try_recv() {
                return n;
            }
            self.feed.changed().await;
        }
    }

    /// As [`BindingSubscription::try_recv`].
    pub fn try_recv(&mut self) -> Option<Option<TopologyNotice>> {
        next_notice(&self.feed, &self.vhost, |vhost, state| {
            TopologyNotice::Resync {
                seq: state.seq(),
                state: vhost.topology_snapshot(),
            }
        })
    }
}

/// The next notice of a feed: `Some(None)` once the vhost is gone, `None` when nothing
/// is waiting. A feed that overflowed gets `resync`, a fresh snapshot taken under the
/// topology lock so that nothing slips between it and the notices after it.
fn next_notice<N>(
    feed: &Feed<N>,
    vhost: &Weak<VHost>,
    resync: impl FnOnce(&VHost, &TopologyState) -> N,
) -> Option<Option<N>> {
    {
        let mut inner = feed.lock();
        if let Some(n) = inner.items.pop_front() {
            return Some(Some(n));
        }
        if inner.closed {
            return Some(None);
        }
        if !inner.overflowed {
            return None;
        }
    }
    let Some(vhost) = vhost.upgrade() else {
        return Some(None);
    };
    let state = vhost.lock_topology();
    let mut inner = feed.lock();
    inner.items.clear();
    inner.overflowed = false;
    Some(Some(resync(&vhost, &state)))
}

fn spec_of(source: &ShortString, b: Binding) -> BindingSpec {
    BindingSpec {
        source: source.clone(),
        destination: b.destination,
        routing_key: b.routing_key,
        arguments: b.arguments,
    }
}

fn queue_declared(s: &QueueSpec) -> TopologyEventKind {
    TopologyEventKind::QueueDeclared {
        name: s.name.clone(),
        durable: s.durable,
        exclusive: s.exclusive_owner.is_some(),
        auto_delete: s.auto_delete,
        arguments: s.arguments.clone(),
    }
}

/// The default exchange and the `amq.*` ones are the broker's: nobody deletes them,
/// whichever path asks (a client, the management API, a definitions import, a broker
/// object). 403 with RabbitMQ's texts. Checked before the exchange is looked up, as
/// RabbitMQ does, so a missing `amq.*` exchange is refused too. The AMQP handler calls
/// it before its permission check, to answer in RabbitMQ's order.
pub fn refuse_builtin_exchange_delete(name: &ShortString) -> AmqpResult<()> {
    if name.is_empty() {
        return Err(AmqpError::default_exchange());
    }
    if name.as_bytes().starts_with(b"amq.") {
        return Err(AmqpError::access_refused(format!(
            "exchange name '{name}' contains reserved prefix 'amq.*'"
        )));
    }
    Ok(())
}

/// `amq.gen-` and 22 random URL-safe characters, as RabbitMQ names server-named queues.
fn server_named() -> ShortString {
    use rand::Rng;
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut rng = rand::rng();
    let mut name = String::from("amq.gen-");
    for _ in 0..22 {
        name.push(ALPHABET[rng.random_range(0..ALPHABET.len())] as char);
    }
    ShortString::new(bytes::Bytes::from(name)).unwrap_or_default()
}

/// RabbitMQ compares only the `x-` arguments it knows; we compare every `x-` argument.
fn first_inequivalent_x_arg(have: &FieldTable, got: &FieldTable) -> Option<String> {
    let keys = have
        .iter()
        .chain(got.iter())
        .map(|(k, _)| k)
        .filter(|k| k.as_bytes().starts_with(b"x-"));
    for k in keys {
        let (a, b) = (have.get_bytes(k.as_bytes()), got.get_bytes(k.as_bytes()));
        let equal = match (a, b) {
            (Some(a), Some(b)) => {
                a == b || matches!((a.as_i64(), b.as_i64()), (Some(x), Some(y)) if x == y)
            }
            (None, None) => true,
            _ => false,
        };
        if !equal {
            return Some(k.to_string());
        }
    }
    None
}

fn describe(v: Option<&FieldValue>) -> String {
    match v {
        None => "none".into(),
        Some(FieldValue::LongString(b)) => format!("the value '{}'", String::from_utf8_lossy(b)),
        Some(v) => match v.as_i64() {
            Some(n) => format!("the value '{n}'"),
            None => format!("the value {v:?}"),
        },
    }
}

mod policy;
use policy::policy_event;
#[cfg(test)]
mod tests;
