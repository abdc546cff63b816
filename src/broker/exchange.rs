//! An exchange: how it was declared and its bindings, indexed for routing.

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
