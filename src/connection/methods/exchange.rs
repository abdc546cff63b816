//! The `exchange` class: declaring, deleting and binding exchanges through the vhost's
//! topology path.

use crate::auth::Permission;
use crate::broker::error::AmqpError;
use crate::broker::exchange::ExchangeSpec;
use crate::broker::routing::{Destination, ExchangeKind};
use crate::broker::topology::{BindingSpec, TopologyChange, refuse_builtin_exchange_delete};
use crate::connection::Connection;
use crate::protocol::ShortString;
use crate::protocol::generated::dispatch::ExchangeServer;
use crate::protocol::generated::methods::*;

impl ExchangeServer for Connection {
    fn exchange_declare(&mut self, channel: u16, m: ExchangeDeclare) -> Self::Output {
        let kind = ExchangeKind::from_name(m.r#type.as_bytes());
        if !m.passive {
            if m.exchange.is_empty() {
                return Err(AmqpError::default_exchange());
            }
            // Redeclaring an existing amq.* exchange is fine; creating one is not.
            if self.vhost.exchange(&m.exchange).is_none() {
                Self::reserved_name("exchange", &m.exchange)?;
            }
        }
        self.check(Permission::Configure, "exchange", &m.exchange)?;
        let kind = match kind {
            Some(k) => k,
            None if m.passive => ExchangeKind::Direct,
            None => {
                return Err(AmqpError::command_invalid(format!(
                    "invalid exchange type '{}'",
                    m.r#type
                )));
            }
        };
        if let Some(crate::protocol::FieldValue::LongString(ae)) =
            m.arguments.get("alternate-exchange")
        {
            let ae = ShortString::new(ae.clone()).unwrap_or_default();
            self.check(Permission::Write, "exchange", &ae)?;
        }
        self.vhost.apply(TopologyChange::DeclareExchange {
            spec: ExchangeSpec {
                name: m.exchange,
                kind,
                durable: m.durable,
                auto_delete: m.auto_delete,
                internal: m.internal,
                arguments: m.arguments,
            },
            passive: m.passive,
        })?;
        if !m.no_wait {
            self.send(channel, ExchangeDeclareOk {});
        }
        Ok(())
    }

    fn exchange_delete(&mut self, channel: u16, m: ExchangeDelete) -> Self::Output {
        refuse_builtin_exchange_delete(&m.exchange)?;
        self.check(Permission::Configure, "exchange", &m.exchange)?;
        self.vhost.apply(TopologyChange::DeleteExchange {
            name: m.exchange,
            if_unused: m.if_unused,
        })?;
        if !m.no_wait {
            self.send(channel, ExchangeDeleteOk {});
        }
        Ok(())
    }

    fn exchange_bind(&mut self, channel: u16, m: ExchangeBind) -> Self::Output {
        self.check(Permission::Write, "exchange", &m.destination)?;
        self.check(Permission::Read, "exchange", &m.source)?;
        let binding = BindingSpec {
            source: m.source,
            destination: Destination::Exchange(m.destination),
            routing_key: m.routing_key,
            arguments: m.arguments,
        };
        let by = self.owner();
        self.vhost.apply(TopologyChange::Bind { binding, by })?;
        if !m.no_wait {
            self.send(channel, ExchangeBindOk {});
        }
        Ok(())
    }

    fn exchange_unbind(&mut self, channel: u16, m: ExchangeUnbind) -> Self::Output {
        self.check(Permission::Write, "exchange", &m.destination)?;
        self.check(Permission::Read, "exchange", &m.source)?;
        let binding = BindingSpec {
            source: m.source,
            destination: Destination::Exchange(m.destination),
            routing_key: m.routing_key,
            arguments: m.arguments,
        };
        let by = self.owner();
        self.vhost.apply(TopologyChange::Unbind { binding, by })?;
        if !m.no_wait {
            self.send(channel, ExchangeUnbindOk {});
        }
        Ok(())
    }
}
