//! An exchange: how it was declared and its bindings, indexed for routing.

use std::sync::atomic::AtomicU64;
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::routing::{ExchangeKind, RoutingTable};
use crate::protocol::{FieldTable, FieldValue, ShortString};

#[derive(Debug, Clone, PartialEq)]
pub struct ExchangeSpec {
    pub name: ShortString,
    pub kind: ExchangeKind,
    pub durable: bool,
    pub auto_delete: bool,
    pub internal: bool,
    pub arguments: FieldTable,
}

#[derive(Debug)]
pub struct Exchange {
    pub spec: ExchangeSpec,
    /// `alternate-exchange`: where messages go that this exchange routes nowhere.
    pub alternate: Option<ShortString>,
    table: RwLock<RoutingTable>,
    /// Messages published into this exchange and copies routed out of it (the
    /// management API's `publish_in` / `publish_out`). Publishers add to them once per
    /// batch (`broker::publish::Publisher::flush`), not per message.
    pub counters: ExchangeCounters,
}

/// What an exchange counts, as RabbitMQ's `message_stats` for an exchange: `publish_in`
/// is every message published to it; `publish_out` is one per queue a message reached
/// from it (through exchange-to-exchange bindings too, which count for the exchange
/// published to, not for the ones in between).
#[derive(Debug, Default)]
pub struct ExchangeCounters {
    pub publish_in: AtomicU64,
    pub publish_out: AtomicU64,
}

impl Exchange {
    pub fn new(spec: ExchangeSpec) -> Exchange {
        let alternate = match spec.arguments.get("alternate-exchange") {
            Some(FieldValue::LongString(b)) => ShortString::new(b.clone()).ok(),
            _ => None,
        };
        Exchange {
            table: RwLock::new(RoutingTable::new(spec.kind)),
            alternate,
            counters: ExchangeCounters::default(),
            spec,
        }
    }

    pub fn name(&self) -> &ShortString {
        &self.spec.name
    }

    /// The default exchange routes by queue name and has no bindings of its own.
    pub fn is_default(&self) -> bool {
        self.spec.name.is_empty()
    }

    pub fn table(&self) -> RwLockReadGuard<'_, RoutingTable> {
        self.table.read().unwrap_or_else(|p| p.into_inner())
    }

    pub fn table_mut(&self) -> RwLockWriteGuard<'_, RoutingTable> {
        self.table.write().unwrap_or_else(|p| p.into_inner())
    }
}
