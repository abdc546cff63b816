//! The `queue` class: declaring, binding, purging and deleting queues through the vhost.

use crate::auth::Permission;
use crate::broker::routing::Destination;
use crate::broker::topology::{BindingSpec, TopologyChange};
use crate::broker::vhost::QueueDeclare as Declare;
use crate::connection::Connection;
use crate::protocol::generated::dispatch::QueueServer;
use crate::protocol::generated::methods::*;

impl QueueServer for Connection {
    fn queue_declare(&mut self, channel: u16, m: QueueDeclare) -> Self::Output {
        self.channel(channel)?;
        if !m.passive && !m.queue.is_empty() {
            Self::reserved_name("queue", &m.queue)?;
        }
        if !m.queue.is_empty() {
            self.check(Permission::Configure, "queue", &m.queue)?;
        }
        let (q, _) = self.vhost.declare_queue(
            Declare {
                name: m.queue,
                passive: m.passive,
                durable: m.durable,
                exclusive: m.exclusive,
                auto_delete: m.auto_delete,
                arguments: m.arguments,
            },
            self.owner(),
        )?;
        let name = q.name().clone();
        self.channel(channel)?.last_queue = Some(name.clone());
        if !m.no_wait {
            let ok = QueueDeclareOk {
                queue: name,
                message_count: q.message_count(),
                consumer_count: q.consumer_count(),
            };
            self.send(channel, ok);
        }
        Ok(())
    }

    fn queue_bind(&mut self, channel: u16, m: QueueBind) -> Self::Output {
        let name = self.queue_name(channel, m.queue)?;
        let key = if m.routing_key.is_empty() && m.exchange.is_empty() {
            name.clone()
        } else {
            m.routing_key
        };
        self.check(Permission::Write, "queue", &name)?;
        self.check(Permission::Read, "exchange", &m.exchange)?;
        let binding = BindingSpec {
            source: m.exchange,
            destination: Destination::Queue(name),
            routing_key: key,
            arguments: m.arguments,
        };
        let by = self.owner();
        self.vhost.apply(TopologyChange::Bind { binding, by })?;
        if !m.no_wait {
            self.send(channel, QueueBindOk {});
        }
        Ok(())
    }

    fn queue_purge(&mut self, channel: u16, m: QueuePurge) -> Self::Output {
        let name = self.queue_name(channel, m.queue)?;
        self.check(Permission::Read, "queue", &name)?;
        let q = self.vhost.queue_for(&name, &self.owner())?;
        let count = q.purge();
        if !m.no_wait {
            self.send(
                channel,
                QueuePurgeOk {
                    message_count: count,
                },
            );
        }
        Ok(())
    }

    fn queue_delete(&mut self, channel: u16, m: QueueDelete) -> Self::Output {
        let name = self.queue_name(channel, m.queue)?;
        self.check(Permission::Configure, "queue", &name)?;
        let count = self
            .vhost
            .delete_queue(&name, m.if_unused, m.if_empty, &self.owner())?;
        if !m.no_wait {
            self.send(
                channel,
                QueueDeleteOk {
                    message_count: count,
                },
            );
        }
        Ok(())
    }

    fn queue_unbind(&mut self, channel: u16, m: QueueUnbind) -> Self::Output {
        let name = self.queue_name(channel, m.queue)?;
        self.check(Permission::Write, "queue", &name)?;
        self.check(Permission::Read, "exchange", &m.exchange)?;
        let binding = BindingSpec {
            source: m.exchange,
            destination: Destination::Queue(name),
            routing_key: m.routing_key,
            arguments: m.arguments,
        };
        let by = self.owner();
        self.vhost.apply(TopologyChange::Unbind { binding, by })?;
        self.send(channel, QueueUnbindOk {});
        Ok(())
    }
}
