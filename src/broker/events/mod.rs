//! What the topology path announces, and to whom: topology events, distinct-binding
//! notices, and the subscribers' bounded feeds.
//!
//! This is the part of a vhost's topology lock that is not the maps themselves: the
//! sequence number, the distinct-binding counts, the feeds, and the notices of the
//! change being applied. `topology` (the path) fills it while it changes the vhost;
//! [`TopologyState::announce`] numbers and sends what the change did when it is done.
//! It sits below `vhost` (which holds it behind the lock) and knows nothing of it.

mod bindings;
mod feed;

use std::sync::{Arc, Weak};

use super::exchange::ExchangeSpec;
use super::routing::{Destination, ExchangeKind};
use crate::protocol::{FieldTable, ShortString};

use bindings::DistinctBindings;
pub use bindings::{BindingNotice, DistinctBinding};
pub use feed::DEFAULT_CAPACITY;
pub(crate) use feed::Feed;

/// A binding as a change names it: source exchange, destination, key and arguments.
#[derive(Debug, Clone, PartialEq)]
pub struct BindingSpec {
    pub source: ShortString,
    pub destination: Destination,
    pub routing_key: ShortString,
    pub arguments: FieldTable,
}

impl BindingSpec {
    /// The destination's name if it is an exchange.
    pub fn destination_exchange(&self) -> Option<&ShortString> {
        match &self.destination {
            Destination::Exchange(name) => Some(name),
            Destination::Queue(_) => None,
        }
    }
}

/// What changed, as topology subscribers see it.
#[derive(Debug, Clone, PartialEq)]
pub enum TopologyEventKind {
    ExchangeDeclared(ExchangeSpec),
    ExchangeDeleted(ShortString),
    QueueDeclared {
        name: ShortString,
        durable: bool,
        exclusive: bool,
        auto_delete: bool,
        arguments: FieldTable,
    },
    QueueDeleted(ShortString),
    BindingAdded(BindingSpec),
    BindingRemoved(BindingSpec),
    /// The policies in force for a queue or an exchange changed (set, replaced or
    /// cleared): the names now in force, `None` for none. A snapshot lists one for each
    /// object with a policy.
    PolicyChanged {
        object: PolicyObject,
        policy: Option<String>,
        operator_policy: Option<String>,
    },
    /// A policy was set (`set: true`, new or replaced) or cleared (`operator`: an
    /// operator policy), whether or not it applies to anything.
    PolicyDefined {
        operator: bool,
        name: String,
        set: bool,
    },
    /// A runtime parameter was set (`set: true`, new or replaced) or cleared: features
    /// that read their settings from one (federation upstreams) look it up again.
    ParameterChanged {
        component: String,
        name: String,
        set: bool,
    },
}

/// The object a [`TopologyEventKind::PolicyChanged`] is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyObject {
    Queue(ShortString),
    Exchange(ShortString),
}

#[derive(Debug, Clone, PartialEq)]
pub struct TopologyEvent {
    /// Per vhost, from 1, without gaps.
    pub seq: u64,
    pub kind: TopologyEventKind,
}

/// What a topology subscriber receives.
#[derive(Debug, Clone, PartialEq)]
pub enum TopologyNotice {
    Event(TopologyEvent),
    /// Notices were lost (the subscriber fell behind): the whole topology as events, as
    /// of event `seq`; the events after it follow.
    Resync {
        seq: u64,
        state: Vec<TopologyEventKind>,
    },
}

/// Everything the topology lock guards besides the maps it orders changes to.
#[derive(Debug, Default)]
pub struct TopologyState {
    seq: u64,
    distinct: DistinctBindings,
    binding_feeds: Vec<(Option<ShortString>, Weak<Feed<BindingNotice>>)>,
    topology_feeds: Vec<Weak<Feed<TopologyNotice>>>,
    /// Events of the change being applied, announced when it is done.
    pending: Vec<TopologyEventKind>,
    /// Binding notices of the change being applied, with the index of the event that
    /// caused each (their seq is set when announced).
    pending_bindings: Vec<(usize, bool, DistinctBinding)>,
}

impl TopologyState {
    /// The sequence number of the last event announced.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Notes an event of the change being applied.
    pub fn record(&mut self, kind: TopologyEventKind) {
        self.pending.push(kind);
    }

    /// Notes a binding made (`exclusive`: its queue is exclusive).
    pub fn binding_added(&mut self, kind: ExchangeKind, b: BindingSpec, exclusive: bool) {
        if let Some(d) =
            self.distinct
                .added(kind, &b.source, &b.routing_key, &b.arguments, exclusive)
        {
            self.pending_bindings.push((self.pending.len(), true, d));
        }
        self.pending.push(TopologyEventKind::BindingAdded(b));
    }

    /// Notes a binding removed.
    pub fn binding_removed(&mut self, kind: ExchangeKind, b: BindingSpec) {
        if let Some(d) = self
            .distinct
            .removed(kind, &b.source, &b.routing_key, &b.arguments)
        {
            self.pending_bindings.push((self.pending.len(), false, d));
        }
        self.pending.push(TopologyEventKind::BindingRemoved(b));
    }

    /// The distinct bindings of one exchange, or of all.
    pub fn distinct_bindings(&self, exchange: Option<&ShortString>) -> Vec<DistinctBinding> {
        self.distinct.snapshot(exchange)
    }

    pub(crate) fn add_binding_feed(
        &mut self,
        exchange: Option<ShortString>,
        capacity: usize,
    ) -> Arc<Feed<BindingNotice>> {
        let feed = Arc::new(Feed::new(capacity));
        self.binding_feeds.push((exchange, Arc::downgrade(&feed)));
        feed
    }

    pub(crate) fn add_topology_feed(&mut self, capacity: usize) -> Arc<Feed<TopologyNotice>> {
        let feed = Arc::new(Feed::new(capacity));
        self.topology_feeds.push(Arc::downgrade(&feed));
        feed
    }

    /// Subscriptions still open.
    pub fn subscribers(&self) -> usize {
        self.binding_feeds.len() + self.topology_feeds.len()
    }

    /// Ends every subscription (the vhost is going).
    pub fn close_feeds(&mut self) {
        for (_, f) in self.binding_feeds.drain(..) {
            if let Some(f) = f.upgrade() {
                f.close();
            }
        }
        for f in self.topology_feeds.drain(..) {
            if let Some(f) = f.upgrade() {
                f.close();
            }
        }
    }

    /// Numbers and sends what the change did; false if it did nothing.
    pub fn announce(&mut self) -> bool {
        if self.pending.is_empty() {
            return false;
        }
        let events = std::mem::take(&mut self.pending);
        let notices = std::mem::take(&mut self.pending_bindings);
        self.topology_feeds.retain(|f| f.strong_count() > 0);
        self.binding_feeds.retain(|(_, f)| f.strong_count() > 0);
        let first = self.seq + 1;
        for (i, kind) in events.into_iter().enumerate() {
            let event = TopologyEvent {
                seq: first + i as u64,
                kind,
            };
            for f in self.topology_feeds.iter().filter_map(Weak::upgrade) {
                f.push(TopologyNotice::Event(event.clone()));
            }
            self.seq = event.seq;
        }
        for (index, created, binding) in notices {
            let seq = first + index as u64;
            for (filter, f) in &self.binding_feeds {
                if filter
                    .as_ref()
                    .is_some_and(|name| *name != binding.exchange)
                {
                    continue;
                }
                if let Some(f) = f.upgrade() {
                    let binding = binding.clone();
                    f.push(if created {
                        BindingNotice::Created { seq, binding }
                    } else {
                        BindingNotice::Destroyed { seq, binding }
                    });
                }
            }
        }
        true
    }
}
