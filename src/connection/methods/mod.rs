//! The broker's side of every method a client sends: the generated per-class handler
//! traits ([`ServerHandler`] and one trait per class, such as
//! [`BasicServer`](crate::protocol::generated::dispatch::BasicServer)) implemented for a
//! connection, one file per class. This file holds what several classes share: sending,
//! permission checks, the channel's last queue, routing a publish and settling deliveries.
//!
//! Each handler checks permissions and arguments as RabbitMQ does, calls into the
//! vhost or a queue, and encodes its answer into the connection's output buffer.
//! Errors are returned, not sent: the caller closes the channel or the connection.

mod access;
mod basic;
mod channel;
mod confirm;
mod connection;
mod exchange;
mod queue;
mod tx;

use std::sync::Arc;

use super::{Connection, Content};
use crate::auth::Permission;
use crate::broker::Broker;
use crate::broker::error::{AmqpError, AmqpResult};
use crate::broker::exchange::Exchange;
use crate::broker::message::MessageRef;
use crate::broker::queue::Queue;
use crate::broker::unacked;
use crate::protocol::content::encode_content;
use crate::protocol::frame::encode_frame_with;
use crate::protocol::generated::constants::FRAME_METHOD;
use crate::protocol::generated::dispatch::ServerHandler;
use crate::protocol::generated::methods::*;
use crate::protocol::generated::properties::BasicProperties;
use crate::protocol::{ReplyCode, ShortString};

impl ServerHandler for Connection {
    type Output = AmqpResult<()>;
    type Content = Content;
}

impl Connection {
    fn send(&mut self, channel: u16, method: impl Into<Method>) {
        let method = method.into();
        encode_frame_with(&mut self.out, FRAME_METHOD, channel, |b| method.encode(b));
    }

    fn check(&self, op: Permission, kind: &str, name: &ShortString) -> AmqpResult<()> {
        permission(&self.broker, &self.user, &self.vhost.name, op, kind, name)
    }

    /// An empty queue name means the channel's last declared queue.
    fn queue_name(&mut self, channel: u16, name: ShortString) -> AmqpResult<ShortString> {
        if !name.is_empty() {
            return Ok(name);
        }
        self.channel(channel)?
            .last_queue
            .clone()
            .ok_or_else(|| AmqpError::not_found("no previously declared queue"))
    }

    fn reserved_name(kind: &str, name: &ShortString) -> AmqpResult<()> {
        if name.as_bytes().starts_with(b"amq.") {
            return Err(AmqpError::access_refused(format!(
                "{kind} name '{name}' contains reserved prefix 'amq.*'"
            )));
        }
        Ok(())
    }

    /// Queues of this channel's consumers, to hand out messages after credit freed up.
    fn dispatch_channel(&mut self, channel: u16) {
        let queues: Vec<Arc<Queue>> = match self.channels.get(&channel) {
            Some(ch) => ch.consumers.values().map(|c| c.queue.clone()).collect(),
            None => return,
        };
        for q in queues {
            q.dispatch();
        }
    }

    /// Routes one message and tells the publisher what became of it.
    fn publish_now(
        &mut self,
        channel: u16,
        exchange: &Arc<Exchange>,
        message: MessageRef,
        mandatory: bool,
        confirm_seq: Option<u64>,
    ) -> AmqpResult<()> {
        let mut routed = self
            .publisher
            .route_on(channel, exchange, message, mandatory);
        if let Some(ch) = self.channels.get_mut(&channel) {
            let c = &mut ch.counters;
            c.publish += 1;
            if routed.queues == 0 && !routed.rejected {
                if routed.returned.is_some() {
                    c.return_unroutable += 1;
                } else {
                    c.drop_unroutable += 1;
                }
            }
            if confirm_seq.is_some() && !routed.rejected {
                c.confirm += 1;
            }
        }
        if let Some(q) = routed.behind.take() {
            self.flow = Some(q);
        }
        if let Some(message) = &routed.returned {
            let text = ShortString::from_static("NO_ROUTE");
            self.send_return(channel, ReplyCode::NoRoute.code(), text, message);
        }
        if let Some(seq) = confirm_seq {
            if routed.rejected {
                self.confirms.nack(channel, seq, &mut self.out);
            } else {
                self.confirms.ack(channel, seq);
                self.publisher.count_confirmed(1);
            }
        }
        Ok(())
    }

    /// basic.return of `message` on `channel`.
    pub(crate) fn send_return(
        &mut self,
        channel: u16,
        reply_code: u16,
        reply_text: ShortString,
        message: &MessageRef,
    ) {
        let ret = BasicReturn {
            reply_code,
            reply_text,
            exchange: message.exchange(),
            routing_key: message.routing_key(),
        };
        encode_frame_with(&mut self.out, FRAME_METHOD, channel, |b| ret.encode(b));
        encode_content(
            &mut self.out,
            channel,
            BasicProperties::CLASS_ID,
            message.properties().as_bytes(),
            message.body(),
            self.frame_max,
        );
    }

    /// Acks (or rejects) deliveries by tag.
    fn settle(
        &mut self,
        channel: u16,
        tag: u64,
        multiple: bool,
        ack: bool,
        requeue_them: bool,
    ) -> AmqpResult<()> {
        let ch = self.channel(channel)?;
        let Some(settled) = ch.unacked.take(tag, multiple) else {
            return Err(AmqpError::unknown_delivery_tag(tag));
        };
        if ack {
            ch.counters.ack += settled.len() as u64;
            unacked::ack(settled);
        } else {
            unacked::give_back(settled, requeue_them);
        }
        // A channel-wide prefetch (qos global) freed by this ack may be what another
        // of the channel's consumers, on another queue, is waiting for.
        if self.channel(channel)?.channel_credit.limit() > 0 {
            self.dispatch_channel(channel);
        }
        Ok(())
    }

    fn settle_or_buffer(
        &mut self,
        channel: u16,
        tag: u64,
        multiple: bool,
        ack: bool,
        requeue_them: bool,
    ) -> AmqpResult<()> {
        let ch = self.channel(channel)?;
        if let Some(tx) = &mut ch.tx {
            // Checked now, applied at commit, as RabbitMQ does.
            if !ch.unacked.knows(tag, multiple) {
                return Err(AmqpError::unknown_delivery_tag(tag));
            }
            tx.settlements.push((tag, multiple, ack, requeue_them));
            return Ok(());
        }
        self.settle(channel, tag, multiple, ack, requeue_them)
    }
}

/// Whether `user` may do `op` on the `kind` named `name`: 403 as RabbitMQ words it if not.
fn permission(
    broker: &Broker,
    user: &str,
    vhost: &str,
    op: Permission,
    kind: &str,
    name: &ShortString,
) -> AmqpResult<()> {
    if broker.users().check(user, vhost, op, name.as_bytes()) {
        return Ok(());
    }
    let op = match op {
        Permission::Configure => "configure",
        Permission::Write => "write",
        Permission::Read => "read",
    };
    let shown = if name.is_empty() && kind == "exchange" {
        "amq.default".to_string()
    } else {
        name.to_string()
    };
    Err(AmqpError::access_refused(format!(
        "{op} access to {kind} '{shown}' in vhost '{vhost}' refused for user '{user}'"
    )))
}
