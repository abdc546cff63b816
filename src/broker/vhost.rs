//! A virtual host: its exchanges and queues, looking them up, and routing a published
//! message to the queues it belongs in. Changing them is `topology`'s job: every
//! change goes through [`VHost::apply`] there.
//!
//! The exchange and queue maps each sit behind a read-write lock that publishing only
//! reads; routing then takes each exchange's own binding lock for reading and each
//! target queue's lock briefly. No lock is global to the broker.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard, Weak};

use super::error::{AmqpError, AmqpResult};
use super::events::TopologyState;
use super::exchange::{Exchange, ExchangeSpec};
use super::exchange_hook::ExchangeHook;
use super::hash::HashMap;
use super::memory::{Account, MemoryGauge, arc_allocated, map_entry};
use super::message::MessageRef;
use super::owner::Owner;
use super::policy::VHostPolicies;
use super::queue::{Accepted, Queue};
use super::routing::{Binding, Destination, ExchangeKind, upstream};
use crate::protocol::{FieldTable, ShortString};

/// Per-vhost limits on how many objects clients may create.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VHostLimits {
    pub max_queues: usize,
    pub max_exchanges: usize,
}

impl Default for VHostLimits {
    fn default() -> Self {
        VHostLimits {
            max_queues: usize::MAX,
            max_exchanges: usize::MAX,
        }
    }
}

/// What routing a message achieved.
#[derive(Debug, Clone, Default)]
pub struct Routed {
    /// Queues that took the message.
    pub queues: usize,
    /// Some queue refused it (`x-overflow: reject-publish`): the publisher gets a nack.
    pub rejected: bool,
    /// A queue whose consumers fall behind: the publisher should wait for it
    /// (flow control, see `queue::FLOW_HIGH`).
    pub behind: Option<Arc<Queue>>,
}

/// Reusable buffers for routing, kept by each connection so publishing allocates nothing.
///
/// They also keep the last route taken: a publisher usually sends many messages through
/// one exchange with one routing key, and while the vhost's topology (exchanges, queues,
/// bindings) is unchanged the same queues take them. Routing (two locked map lookups and
/// the binding index) was 10 % of the broker's profile for 1 publisher → 1 consumer.
#[derive(Debug, Default)]
pub struct RouteScratch {
    destinations: Vec<Destination>,
    queues: Vec<Arc<Queue>>,
    visited: Vec<ShortString>,
    /// What `queues` is the route of, when it may be reused.
    last: Option<LastRoute>,
}

#[derive(Debug)]
struct LastRoute {
    /// [`VHost::topology`] when it was routed.
    topology: u64,
    /// The exchange's address: an exchange deleted and another allocated in its place
    /// changes the topology first, so an equal address means the same exchange.
    exchange: usize,
    key: ShortString,
}

/// The arguments of `exchange.declare` / `queue.declare` that matter here.
#[derive(Debug, Clone)]
pub struct QueueDeclare {
    pub name: ShortString,
    pub passive: bool,
    pub durable: bool,
    pub exclusive: bool,
    pub auto_delete: bool,
    pub arguments: FieldTable,
}

#[derive(Debug)]
pub struct VHost {
    pub name: String,
    pub(super) limits: VHostLimits,
    exchanges: RwLock<HashMap<ShortString, Arc<Exchange>>>,
    queues: RwLock<HashMap<ShortString, Arc<Queue>>>,
    /// Orders every topology change (see `topology`); publishing never takes it.
    pub(super) topology_lock: Mutex<TopologyState>,
    /// Policies and runtime parameters; changed only under `topology_lock`.
    pub(super) policies: RwLock<VHostPolicies>,
    /// Bumped after every change that can change where a message is routed: an exchange
    /// or queue added or removed, a binding made or removed. Connections keep what they
    /// looked up (the exchange they publish to, their last route in `RouteScratch`) while
    /// it is unchanged.
    topology: AtomicU64,
    pub(super) this: Weak<VHost>,
    /// The broker's gauge, which this vhost's queues charge.
    pub(super) memory: MemoryGauge,
    /// What the exchanges and bindings occupy (see [`EXCHANGE_FOOTPRINT`]).
    pub(super) topology_memory: Account,
    /// Features' hooks on exchanges, by exchange name (see `exchange_hook`).
    hooks: RwLock<HashMap<ShortString, Arc<dyn ExchangeHook>>>,
    /// Whether `hooks` has any: publishing looks no further when not.
    hooked: AtomicBool,
}

/// An exchange's footprint: the `Arc`ed exchange (its empty routing table included) and
/// its entry in the vhost's map.
pub(super) const EXCHANGE_FOOTPRINT: u64 =
    (arc_allocated::<Exchange>() + map_entry::<ShortString, Arc<Exchange>>()) as u64;

/// A binding's footprint: the exchange's record of it and its routing index's, and the
/// vhost's record of distinct bindings, each a `Binding` and its place in a map.
pub(super) const BINDING_FOOTPRINT: u64 = (3 * map_entry::<Binding, ()>()) as u64;

fn read<T>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|p| p.into_inner())
}

fn write<T>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|p| p.into_inner())
}

impl VHost {
    /// A vhost with the predeclared exchanges: the default exchange and `amq.*`.
    pub fn new(name: &str, limits: VHostLimits) -> Arc<VHost> {
        VHost::with_memory(name, limits, &MemoryGauge::default())
    }

    /// A vhost whose topology and queues are charged to `memory`.
    pub fn with_memory(name: &str, limits: VHostLimits, memory: &MemoryGauge) -> Arc<VHost> {
        let vhost = Arc::new_cyclic(|this| VHost {
            name: name.to_string(),
            limits,
            exchanges: RwLock::new(HashMap::default()),
            queues: RwLock::new(HashMap::default()),
            topology_lock: Mutex::new(TopologyState::default()),
            policies: RwLock::new(VHostPolicies::default()),
            topology: AtomicU64::new(0),
            this: this.clone(),
            memory: memory.clone(),
            topology_memory: memory.account(),
            hooks: RwLock::new(HashMap::default()),
            hooked: AtomicBool::new(false),
        });
        for (n, kind) in [
            ("", ExchangeKind::Direct),
            ("amq.direct", ExchangeKind::Direct),
            ("amq.fanout", ExchangeKind::Fanout),
            ("amq.topic", ExchangeKind::Topic),
            ("amq.headers", ExchangeKind::Headers),
            ("amq.match", ExchangeKind::Headers),
        ] {
            let name = ShortString::from_static(n);
            let ex = Exchange::new(ExchangeSpec {
                name: name.clone(),
                kind,
                durable: true,
                auto_delete: false,
                internal: false,
                arguments: FieldTable::new(),
            });
            // Present from the start, as in RabbitMQ: not announced as declared.
            write(&vhost.exchanges).insert(name, Arc::new(ex));
            vhost.topology_memory.charge(EXCHANGE_FOOTPRINT);
        }
        vhost
    }

    /// Gives `hook` its say over what is published to and bound on the exchange `name`
    /// (replacing any hook it had), whether the exchange exists yet or not.
    pub fn set_exchange_hook(&self, name: ShortString, hook: Arc<dyn ExchangeHook>) {
        let mut hooks = write(&self.hooks);
        hooks.insert(name, hook);
        self.hooked.store(true, Ordering::Release);
    }

    /// Removes `hook` from the exchange `name`, if it is still the one there.
    pub fn clear_exchange_hook(&self, name: &ShortString, hook: &Arc<dyn ExchangeHook>) {
        let mut hooks = write(&self.hooks);
        if hooks.get(name).is_some_and(|h| Arc::ptr_eq(h, hook)) {
            hooks.remove(name);
        }
        self.hooked.store(!hooks.is_empty(), Ordering::Release);
    }

    /// The hook on the exchange `name`, if any.
    pub fn exchange_hook(&self, name: &ShortString) -> Option<Arc<dyn ExchangeHook>> {
        if !self.hooked.load(Ordering::Acquire) {
            return None;
        }
        read(&self.hooks).get(name).cloned()
    }

    pub fn exchange(&self, name: &ShortString) -> Option<Arc<Exchange>> {
        read(&self.exchanges).get(name).cloned()
    }

    pub fn queue(&self, name: &ShortString) -> Option<Arc<Queue>> {
        read(&self.queues).get(name).cloned()
    }

    /// Every queue, in no particular order.
    pub fn queues(&self) -> Vec<Arc<Queue>> {
        read(&self.queues).values().cloned().collect()
    }

    /// Every exchange, in no particular order.
    pub fn exchanges(&self) -> Vec<Arc<Exchange>> {
        read(&self.exchanges).values().cloned().collect()
    }

    pub fn queue_count(&self) -> usize {
        read(&self.queues).len()
    }

    pub fn exchange_count(&self) -> usize {
        read(&self.exchanges).len()
    }

    pub(super) fn exchanges_read(
        &self,
    ) -> RwLockReadGuard<'_, HashMap<ShortString, Arc<Exchange>>> {
        read(&self.exchanges)
    }

    pub(super) fn exchanges_write(
        &self,
    ) -> RwLockWriteGuard<'_, HashMap<ShortString, Arc<Exchange>>> {
        write(&self.exchanges)
    }

    pub(super) fn policies_read(&self) -> RwLockReadGuard<'_, VHostPolicies> {
        read(&self.policies)
    }

    pub(super) fn policies_write(&self) -> RwLockWriteGuard<'_, VHostPolicies> {
        write(&self.policies)
    }

    pub(super) fn queues_read(&self) -> RwLockReadGuard<'_, HashMap<ShortString, Arc<Queue>>> {
        read(&self.queues)
    }

    pub(super) fn queues_write(&self) -> RwLockWriteGuard<'_, HashMap<ShortString, Arc<Queue>>> {
        write(&self.queues)
    }

    /// Changes after every exchange, queue or binding change: an `Arc<Exchange>` looked
    /// up while it had some value is still the vhost's while it has it.
    pub fn topology(&self) -> u64 {
        self.topology.load(Ordering::Acquire)
    }

    /// Marks a routing-relevant change as done: called after the change, so that a route
    /// computed from the old state never outlives the old value.
    pub(super) fn topology_changed(&self) {
        self.topology.fetch_add(1, Ordering::Release);
    }

    /// The exchange, or 404 as RabbitMQ words it.
    pub fn exchange_or_404(&self, name: &ShortString) -> AmqpResult<Arc<Exchange>> {
        self.exchange(name).ok_or_else(|| {
            AmqpError::not_found(format!("no exchange '{name}' in vhost '{}'", self.name))
        })
    }

    /// The queue, or 404; an exclusive queue of another owner is 405.
    pub fn queue_for(&self, name: &ShortString, by: &Owner) -> AmqpResult<Arc<Queue>> {
        let q = self.queue(name).ok_or_else(|| {
            AmqpError::not_found(format!("no queue '{name}' in vhost '{}'", self.name))
        })?;
        self.check_exclusive(&q, by)?;
        Ok(q)
    }

    pub(super) fn check_exclusive(&self, q: &Queue, by: &Owner) -> AmqpResult<()> {
        match &q.spec.exclusive_owner {
            Some(owner) if owner != by => Err(AmqpError::resource_locked(format!(
                "cannot obtain exclusive access to locked queue '{}' in vhost '{}'. It could be \
                 originally declared on another connection or the exclusive property value does \
                 not match that of the original declaration.",
                q.name(),
                self.name
            ))),
            _ => Ok(()),
        }
    }

    /// Routes `message` from `exchange` and enqueues it in every matching queue.
    /// `headers` are the message's, decoded once by the caller (headers exchanges match
    /// on them); `extra_keys` are the sender-selected `CC`/`BCC` routing keys, routed as
    /// well.
    pub fn publish(
        &self,
        exchange: &Exchange,
        message: &MessageRef,
        headers: Option<&FieldTable>,
        extra_keys: &[ShortString],
        scratch: &mut RouteScratch,
    ) -> Routed {
        // Read before routing: a change made meanwhile bumps it past this value.
        let topology = self.topology();
        let address = exchange as *const Exchange as usize;
        // Without headers (so no CC/BCC either) the route depends on nothing else.
        let reusable = headers.is_none() && extra_keys.is_empty();
        let same = reusable
            && scratch.last.as_ref().is_some_and(|last| {
                last.topology == topology
                    && last.exchange == address
                    && last.key.as_bytes() == message.routing_key_bytes()
            });
        if !same {
            scratch.queues.clear();
            scratch.visited.clear();
            let routing_key = message.routing_key();
            self.route(exchange, &routing_key, headers, scratch);
            for key in extra_keys {
                scratch.visited.clear();
                self.route(exchange, key, headers, scratch);
            }
            scratch.last = reusable.then_some(LastRoute {
                topology,
                exchange: address,
                key: routing_key,
            });
        }
        let mut routed = Routed::default();
        for q in &scratch.queues {
            match q.publish(message.clone()) {
                Accepted::Yes => {
                    routed.queues += 1;
                    if q.is_behind() {
                        routed.behind = Some(q.clone());
                    }
                }
                Accepted::Rejected => routed.rejected = true,
            }
        }
        routed
    }

    /// Publishes a dead-lettered message to its dead-letter exchange, skipping queues it
    /// would cycle back into (RabbitMQ's cycle rule, see `dead_letter::is_cycle`).
    pub fn publish_dead_letter(&self, dlx: &ShortString, message: MessageRef) {
        let Some(ex) = self.exchange(dlx) else { return };
        let mut s = RouteScratch::default();
        let headers = message.properties().headers();
        self.route(&ex, &message.routing_key(), headers.as_ref(), &mut s);
        for q in s.queues.drain(..) {
            if !crate::broker::dead_letter::is_cycle(&message, q.name()) {
                q.publish(message.clone());
            }
        }
    }

    fn route(
        &self,
        exchange: &Exchange,
        key: &ShortString,
        headers: Option<&FieldTable>,
        s: &mut RouteScratch,
    ) {
        let before = s.queues.len();
        s.visited.push(exchange.spec.name.clone());
        if exchange.is_default() {
            if let Some(q) = self.queue(key) {
                push_unique(&mut s.queues, q);
            }
        } else if exchange.spec.kind != ExchangeKind::FederationUpstream
            || upstream::forwards(&exchange.spec.arguments, headers)
        {
            s.destinations.clear();
            exchange
                .table()
                .route(key.as_bytes(), headers, &mut s.destinations);
            let destinations = std::mem::take(&mut s.destinations);
            let mut next = Vec::new();
            {
                let queues = read(&self.queues);
                for d in &destinations {
                    match d {
                        Destination::Queue(name) => {
                            if let Some(q) = queues.get(name) {
                                push_unique(&mut s.queues, q.clone());
                            }
                        }
                        Destination::Exchange(name) => {
                            if !s.visited.contains(name) {
                                next.push(name.clone());
                            }
                        }
                    }
                }
            }
            s.destinations = destinations;
            for name in next {
                if let Some(ex) = self.exchange(&name) {
                    if !s.visited.contains(&name) {
                        self.route(&ex, key, headers, s);
                    }
                }
            }
        }
        // The alternate exchange takes what this exchange routed nowhere.
        if s.queues.len() == before {
            if let Some(ae) = &exchange.alternate {
                if !s.visited.contains(ae) {
                    if let Some(ex) = self.exchange(ae) {
                        self.route(&ex, key, headers, s);
                    }
                }
            }
        }
    }
}

fn push_unique(queues: &mut Vec<Arc<Queue>>, q: Arc<Queue>) {
    if !queues.iter().any(|x| Arc::ptr_eq(x, &q)) {
        queues.push(q);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::message::Message;
    use crate::broker::topology::{BindingSpec, TopologyChange};
    use crate::protocol::FieldValue;
    use crate::protocol::generated::properties::BasicProperties;
    use bytes::Bytes;

    fn ss(s: &'static str) -> ShortString {
        ShortString::from_static(s)
    }

    fn queue(vhost: &VHost, name: &'static str) -> Arc<Queue> {
        let d = QueueDeclare {
            name: ss(name),
            passive: false,
            durable: false,
            exclusive: false,
            auto_delete: false,
            arguments: FieldTable::new(),
        };
        vhost.declare_queue(d, Owner::Connection(1)).unwrap().0
    }

    fn exchange(vhost: &VHost, name: &'static str, kind: ExchangeKind) -> Arc<Exchange> {
        let spec = ExchangeSpec {
            name: ss(name),
            kind,
            durable: false,
            auto_delete: false,
            internal: false,
            arguments: FieldTable::new(),
        };
        declare_exchange(vhost, spec)
    }

    fn declare_exchange(vhost: &VHost, spec: ExchangeSpec) -> Arc<Exchange> {
        match vhost.apply(TopologyChange::DeclareExchange {
            spec,
            passive: false,
        }) {
            Ok(crate::broker::topology::Applied::Exchange(e)) => e,
            other => panic!("declare failed: {other:?}"),
        }
    }

    fn bind(vhost: &VHost, dest: Destination, source: &'static str, key: &'static str) {
        let binding = BindingSpec {
            source: ss(source),
            destination: dest,
            routing_key: ss(key),
            arguments: FieldTable::new(),
        };
        let by = Owner::Connection(1);
        vhost.apply(TopologyChange::Bind { binding, by }).unwrap();
    }

    fn unbind(vhost: &VHost, dest: Destination, source: &'static str, key: &'static str) {
        let binding = BindingSpec {
            source: ss(source),
            destination: dest,
            routing_key: ss(key),
            arguments: FieldTable::new(),
        };
        let by = Owner::Connection(1);
        vhost.apply(TopologyChange::Unbind { binding, by }).unwrap();
    }

    /// Publishes one message with routing key `key` from `ex` and says which of `queues`
    /// it reached (by their message counts going up).
    fn reached(
        vhost: &VHost,
        scratch: &mut RouteScratch,
        ex: &Exchange,
        key: &'static str,
        queues: &[&Arc<Queue>],
    ) -> Vec<String> {
        let before: Vec<u32> = queues.iter().map(|q| q.message_count()).collect();
        let m = Arc::new(Message::new(
            ex.spec.name.clone(),
            ss(key),
            BasicProperties::default(),
            Bytes::from_static(b"m"),
        ));
        let routed = vhost.publish(ex, &m, None, &[], scratch);
        let got: Vec<String> = queues
            .iter()
            .zip(before)
            .filter(|(q, n)| q.message_count() > *n)
            .map(|(q, _)| q.name().to_string())
            .collect();
        assert_eq!(routed.queues, got.len());
        got
    }

    #[test]
    fn a_reused_route_follows_every_topology_change() {
        let vhost = VHost::new("/", VHostLimits::default());
        let mut s = RouteScratch::default();
        let direct = exchange(&vhost, "d", ExchangeKind::Direct);
        let (a, b) = (queue(&vhost, "a"), queue(&vhost, "b"));
        let none: Vec<String> = Vec::new();

        bind(&vhost, Destination::Queue(ss("a")), "d", "k");
        assert_eq!(reached(&vhost, &mut s, &direct, "k", &[&a, &b]), ["a"]);
        assert_eq!(reached(&vhost, &mut s, &direct, "k", &[&a, &b]), ["a"]);
        // Another key on the same exchange is routed afresh.
        assert_eq!(reached(&vhost, &mut s, &direct, "other", &[&a, &b]), none);

        // A binding added.
        bind(&vhost, Destination::Queue(ss("b")), "d", "k");
        assert_eq!(reached(&vhost, &mut s, &direct, "k", &[&a, &b]), ["a", "b"]);
        // A binding removed.
        unbind(&vhost, Destination::Queue(ss("a")), "d", "k");
        assert_eq!(reached(&vhost, &mut s, &direct, "k", &[&a, &b]), ["b"]);
        // A queue deleted.
        vhost
            .delete_queue(&ss("b"), false, false, &Owner::Connection(1))
            .unwrap();
        assert_eq!(reached(&vhost, &mut s, &direct, "k", &[&a, &b]), none);

        // The default exchange: a queue declared after a miss is found.
        let default = vhost.exchange(&ss("")).unwrap();
        assert_eq!(reached(&vhost, &mut s, &default, "c", &[&a]), none);
        let c = queue(&vhost, "c");
        assert_eq!(reached(&vhost, &mut s, &default, "c", &[&c]), ["c"]);

        // An exchange-to-exchange binding, then the destination exchange deleted.
        let fan = exchange(&vhost, "f", ExchangeKind::Fanout);
        bind(&vhost, Destination::Queue(ss("a")), "f", "");
        bind(&vhost, Destination::Exchange(ss("f")), "d", "e2e");
        assert_eq!(reached(&vhost, &mut s, &direct, "e2e", &[&a, &c]), ["a"]);
        drop(fan);
        vhost
            .apply(TopologyChange::DeleteExchange {
                name: ss("f"),
                if_unused: false,
            })
            .unwrap();
        assert_eq!(reached(&vhost, &mut s, &direct, "e2e", &[&a, &c]), none);

        // An alternate exchange declared after the route was first taken.
        let mut args = FieldTable::new();
        args.insert(
            ss("alternate-exchange"),
            FieldValue::LongString(Bytes::from_static(b"ae")),
        );
        let with_ae = declare_exchange(
            &vhost,
            ExchangeSpec {
                name: ss("w"),
                kind: ExchangeKind::Direct,
                durable: false,
                auto_delete: false,
                internal: false,
                arguments: args,
            },
        );
        assert_eq!(
            reached(&vhost, &mut s, &with_ae, "nowhere", &[&a, &c]),
            none
        );
        exchange(&vhost, "ae", ExchangeKind::Fanout);
        bind(&vhost, Destination::Queue(ss("c")), "ae", "");
        assert_eq!(
            reached(&vhost, &mut s, &with_ae, "nowhere", &[&a, &c]),
            ["c"]
        );
    }
}
