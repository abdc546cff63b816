//! The broker's side of every method a client sends: the generated per-class handler
//! traits ([`ConnectionServer`], [`BasicServer`], …) implemented for a connection.
//!
//! Each handler checks permissions and arguments as RabbitMQ does, calls into the
//! vhost or a queue, and encodes its answer into the connection's output buffer.
//! Errors are returned, not sent: the caller closes the channel or the connection.

use std::sync::Arc;

use bytes::Bytes;
use rand::Rng;

use super::channel::{Channel, ChannelConsumer, ChannelState, Transaction};
use super::{Connection, Content};
use crate::auth::Permission;
use crate::broker::Broker;
use crate::broker::consumer::Consumer;
use crate::broker::credit::Credit;
use crate::broker::error::{AmqpError, AmqpResult};
use crate::broker::exchange::{Exchange, ExchangeSpec};
use crate::broker::message::MessageRef;
use crate::broker::queue::Queue;
use crate::broker::routing::Destination;
use crate::broker::routing::ExchangeKind;
use crate::broker::topology::{BindingSpec, Removal, TopologyChange};
use crate::broker::unacked::{self, Unacked};
use crate::broker::vhost::QueueDeclare as Declare;
use crate::protocol::content::encode_content;
use crate::protocol::frame::encode_frame_with;
use crate::protocol::generated::constants::FRAME_METHOD;
use crate::protocol::generated::dispatch::{
    AccessServer, BasicServer, ChannelServer, ConfirmServer, ConnectionServer, ExchangeServer,
    QueueServer, ServerHandler, TxServer,
};
use crate::protocol::generated::methods::*;
use crate::protocol::generated::properties::BasicProperties;
use crate::protocol::{ReplyCode, ShortString};

impl Connection {
    fn send(&mut self, channel: u16, method: impl Into<Method>) {
        let method = method.into();
        encode_frame_with(&mut self.out, FRAME_METHOD, channel, |b| method.encode(b));
    }

    /// The exchange a publish goes to: it exists, is not internal, and the user may
    /// write to it. Remembered by the publisher for the next publish.
    fn publish_target(&mut self, name: &ShortString) -> AmqpResult<Arc<Exchange>> {
        let Connection {
            publisher,
            broker,
            user,
            vhost,
            ..
        } = self;
        let vhost = &vhost.name;
        // Read before the check: a change to the user table meanwhile moves it on.
        let permissions = broker.users().generation();
        publisher.target(name, permissions, |exchange| {
            if exchange.spec.internal {
                return Err(AmqpError::access_refused(format!(
                    "cannot publish to internal exchange '{name}' in vhost '{vhost}'"
                )));
            }
            permission(broker, user, vhost, Permission::Write, "exchange", name)
        })
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
        exchange: &Exchange,
        message: MessageRef,
        mandatory: bool,
        confirm_seq: Option<u64>,
    ) -> AmqpResult<()> {
        let mut routed = self.publisher.route(exchange, message, mandatory);
        if let Some(q) = routed.behind.take() {
            self.flow = Some(q);
        }
        if let Some(message) = &routed.returned {
            let ret = BasicReturn {
                reply_code: ReplyCode::NoRoute.code(),
                reply_text: ShortString::from_static("NO_ROUTE"),
                exchange: message.exchange.clone(),
                routing_key: message.routing_key.clone(),
            };
            encode_frame_with(&mut self.out, FRAME_METHOD, channel, |b| ret.encode(b));
            encode_content(
                &mut self.out,
                channel,
                BasicProperties::CLASS_ID,
                message.properties.as_bytes(),
                &message.body,
                self.frame_max,
            );
        }
        if let Some(seq) = confirm_seq {
            if routed.rejected {
                self.confirms.nack(channel, seq, &mut self.out);
            } else {
                self.confirms.ack(channel, seq);
            }
        }
        Ok(())
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
            return Err(AmqpError::precondition_failed(format!(
                "unknown delivery tag {tag}"
            )));
        };
        if ack {
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
                return Err(AmqpError::precondition_failed(format!(
                    "unknown delivery tag {tag}"
                )));
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

/// Bindings never involve the default exchange: 403, checked before whether the other
/// side exists, as RabbitMQ does.
fn refuse_default_exchange(name: &ShortString) -> AmqpResult<()> {
    if name.is_empty() {
        return Err(AmqpError::access_refused(
            "operation not permitted on the default exchange",
        ));
    }
    Ok(())
}

fn random_tag(prefix: &str) -> ShortString {
    let mut rng = rand::rng();
    let n: u128 = rng.random();
    ShortString::new(Bytes::from(format!("{prefix}{n:032x}"))).unwrap_or_default()
}

impl ServerHandler for Connection {
    type Output = AmqpResult<()>;
    type Content = Content;
}

impl ConnectionServer for Connection {
    fn connection_start_ok(&mut self, _: u16, _: ConnectionStartOk) -> Self::Output {
        Err(AmqpError::command_invalid(
            "connection.start-ok after the handshake",
        ))
    }

    fn connection_secure_ok(&mut self, _: u16, _: ConnectionSecureOk) -> Self::Output {
        Err(AmqpError::command_invalid(
            "connection.secure-ok after the handshake",
        ))
    }

    fn connection_tune_ok(&mut self, _: u16, _: ConnectionTuneOk) -> Self::Output {
        Err(AmqpError::command_invalid(
            "connection.tune-ok after the handshake",
        ))
    }

    fn connection_open(&mut self, _: u16, _: ConnectionOpen) -> Self::Output {
        Err(AmqpError::command_invalid(
            "connection.open after the handshake",
        ))
    }

    fn connection_close(&mut self, _: u16, m: ConnectionClose) -> Self::Output {
        tracing::debug!(
            connection = self.id,
            "client closed: {} {}",
            m.reply_code,
            m.reply_text
        );
        self.release_all();
        self.send(0, ConnectionCloseOk {});
        self.done = true;
        Ok(())
    }

    fn connection_close_ok(&mut self, _: u16, _: ConnectionCloseOk) -> Self::Output {
        // Only meaningful while we are closing, which the caller handles.
        Err(AmqpError::command_invalid(
            "connection.close-ok without connection.close",
        ))
    }

    fn connection_update_secret(&mut self, _: u16, _: ConnectionUpdateSecret) -> Self::Output {
        // Passwords do not expire; accept the refresh as RabbitMQ does for PLAIN.
        self.send(0, ConnectionUpdateSecretOk {});
        Ok(())
    }
}

impl ChannelServer for Connection {
    fn channel_open(&mut self, channel: u16, _: ChannelOpen) -> Self::Output {
        if self.channels.contains_key(&channel) {
            return Err(AmqpError::channel_error(format!(
                "second 'channel.open' seen on channel {channel}"
            )));
        }
        if self.channel_max != 0 && channel > self.channel_max {
            return Err(AmqpError::not_allowed(format!(
                "channel {channel} is above the negotiated channel_max {}",
                self.channel_max
            )));
        }
        self.channels
            .insert(channel, Channel::new(self.broker.config().max_message_size));
        self.send(channel, ChannelOpenOk {});
        Ok(())
    }

    fn channel_flow(&mut self, channel: u16, m: ChannelFlow) -> Self::Output {
        self.channel(channel)?
            .active
            .store(m.active, std::sync::atomic::Ordering::Release);
        self.send(channel, ChannelFlowOk { active: m.active });
        if m.active {
            self.dispatch_channel(channel);
        }
        Ok(())
    }

    fn channel_flow_ok(&mut self, _: u16, _: ChannelFlowOk) -> Self::Output {
        // We never ask clients to pause; an unsolicited flow-ok is harmless.
        Ok(())
    }

    fn channel_close(&mut self, channel: u16, _: ChannelClose) -> Self::Output {
        self.release_channel(channel);
        self.channels.remove(&channel);
        self.send(channel, ChannelCloseOk {});
        Ok(())
    }

    fn channel_close_ok(&mut self, channel: u16, _: ChannelCloseOk) -> Self::Output {
        if self
            .channels
            .get(&channel)
            .is_some_and(|c| c.state == ChannelState::Closing)
        {
            self.channels.remove(&channel);
        }
        Ok(())
    }
}

impl AccessServer for Connection {
    fn access_request(&mut self, channel: u16, _: AccessRequest) -> Self::Output {
        // AMQP 0-8's tickets: granted whatever is asked, with ticket 1, as RabbitMQ does;
        // permissions are checked on each operation instead.
        self.send(channel, AccessRequestOk { ticket: 1 });
        Ok(())
    }
}

impl ExchangeServer for Connection {
    fn exchange_declare(&mut self, channel: u16, m: ExchangeDeclare) -> Self::Output {
        let kind = ExchangeKind::from_name(m.r#type.as_bytes());
        if !m.passive {
            if m.exchange.is_empty() {
                return Err(AmqpError::access_refused(
                    "operation not permitted on the default exchange",
                ));
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
        refuse_default_exchange(&m.exchange)?;
        Self::reserved_name("exchange", &m.exchange)?;
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

impl BasicServer for Connection {
    fn basic_qos(&mut self, channel: u16, m: BasicQos) -> Self::Output {
        if m.prefetch_size != 0 {
            return Err(AmqpError::not_implemented(format!(
                "prefetch_size!=0 ({})",
                m.prefetch_size
            )));
        }
        let ch = self.channel(channel)?;
        if m.global {
            ch.channel_credit.set_limit(u32::from(m.prefetch_count));
        } else {
            ch.consumer_prefetch = u32::from(m.prefetch_count);
        }
        self.send(channel, BasicQosOk {});
        self.dispatch_channel(channel);
        Ok(())
    }

    fn basic_consume(&mut self, channel: u16, m: BasicConsume) -> Self::Output {
        let name = self.queue_name(channel, m.queue)?;
        self.check(Permission::Read, "queue", &name)?;
        let q = self.vhost.queue_for(&name, &self.owner())?;
        let priority = match m.arguments.get("x-priority") {
            None => 0,
            Some(v) => v.as_i64().ok_or_else(|| {
                AmqpError::precondition_failed(format!(
                    "invalid arg 'x-priority' for consumer on queue '{name}': expected an integer"
                ))
            })?,
        };
        let tag = if m.consumer_tag.is_empty() {
            random_tag("amq.ctag-")
        } else {
            m.consumer_tag
        };
        let pending = self.writer.pending.clone();
        let mailbox = self.mailbox.clone();
        let ch = self.channel(channel)?;
        if ch.consumers.contains_key(&tag) {
            return Err(AmqpError::not_allowed(format!(
                "attempt to reuse consumer tag '{tag}'"
            )));
        }
        let consumer = Arc::new(Consumer {
            tag: tag.clone(),
            channel,
            no_ack: m.no_ack,
            exclusive: m.exclusive,
            priority,
            credit: (ch.consumer_prefetch > 0).then(|| Arc::new(Credit::new(ch.consumer_prefetch))),
            channel_credit: Some(ch.channel_credit.clone()),
            channel_active: ch.active.clone(),
            pending,
            mailbox,
        });
        ch.consumers.insert(
            tag.clone(),
            ChannelConsumer {
                consumer: consumer.clone(),
                queue: q.clone(),
            },
        );
        if let Err(e) = q.add_consumer(consumer) {
            if let Ok(ch) = self.channel(channel) {
                ch.consumers.remove(&tag);
            }
            return Err(e);
        }
        // consume-ok still goes out before any delivery: deliveries reach this task
        // through its mailbox, which is read only after this handler returns.
        if !m.no_wait {
            self.send(channel, BasicConsumeOk { consumer_tag: tag });
        }
        Ok(())
    }

    fn basic_cancel(&mut self, channel: u16, m: BasicCancel) -> Self::Output {
        let removed = self.channel(channel)?.consumers.remove(&m.consumer_tag);
        if let Some(cc) = removed {
            if cc.queue.remove_consumer(&cc.consumer) {
                self.vhost.remove_queue(&cc.queue, Removal::AutoDelete);
            }
        }
        if !m.no_wait {
            self.send(
                channel,
                BasicCancelOk {
                    consumer_tag: m.consumer_tag,
                },
            );
        }
        Ok(())
    }

    fn basic_publish(&mut self, channel: u16, m: BasicPublish, content: Content) -> Self::Output {
        let exchange = self.publish_target(&m.exchange)?;
        if let Some(uid) = &content.properties.user_id() {
            if uid.as_bytes() != self.user.as_bytes() {
                return Err(AmqpError::precondition_failed(format!(
                    "user_id property set to '{uid}' but authenticated user was '{}'",
                    self.user
                )));
            }
        }
        if let Some(exp) = &content.properties.expiration() {
            let text = String::from_utf8_lossy(exp.as_bytes());
            match text.parse::<i64>() {
                Ok(n) if n >= 0 => {}
                Ok(_) => {
                    return Err(AmqpError::precondition_failed(format!(
                        "invalid expiration '{text}': value_negative"
                    )));
                }
                Err(_) => {
                    return Err(AmqpError::precondition_failed(format!(
                        "invalid expiration '{text}': no_integer"
                    )));
                }
            }
        }
        if m.immediate {
            return Err(AmqpError::not_implemented("immediate=true"));
        }
        let message = self.publisher.message(
            m.exchange.clone(),
            m.routing_key,
            content.properties,
            content.body,
        );
        self.has_published = true;
        let ch = self.channel(channel)?;
        let seq = if ch.confirm {
            ch.publish_seq += 1;
            Some(ch.publish_seq)
        } else {
            None
        };
        if let Some(tx) = &mut ch.tx {
            tx.publishes.push((m.exchange, message, m.mandatory));
            return Ok(());
        }
        self.publish_now(channel, &exchange, message, m.mandatory, seq)
    }

    fn basic_get(&mut self, channel: u16, m: BasicGet) -> Self::Output {
        let name = self.queue_name(channel, m.queue)?;
        self.check(Permission::Read, "queue", &name)?;
        let q = self.vhost.queue_for(&name, &self.owner())?;
        match q.get(m.no_ack) {
            None => self.send(channel, BasicGetEmpty {}),
            Some((entry, remaining)) => {
                let frame_max = self.frame_max;
                let ch = self.channel(channel)?;
                let tag = ch.unacked.next_tag();
                let ok = BasicGetOk {
                    delivery_tag: tag,
                    redelivered: entry.redelivered,
                    exchange: entry.message.exchange.clone(),
                    routing_key: entry.message.routing_key.clone(),
                    message_count: remaining,
                };
                let message = entry.message.clone();
                if !m.no_ack {
                    ch.unacked.push(Unacked {
                        tag,
                        queue: q,
                        entry,
                        consumer: None,
                    });
                }
                encode_frame_with(&mut self.out, FRAME_METHOD, channel, |b| ok.encode(b));
                encode_content(
                    &mut self.out,
                    channel,
                    BasicProperties::CLASS_ID,
                    message.properties.as_bytes(),
                    &message.body,
                    frame_max,
                );
            }
        }
        Ok(())
    }

    fn basic_ack(&mut self, channel: u16, m: BasicAck) -> Self::Output {
        self.settle_or_buffer(channel, m.delivery_tag, m.multiple, true, false)
    }

    fn basic_reject(&mut self, channel: u16, m: BasicReject) -> Self::Output {
        self.settle_or_buffer(channel, m.delivery_tag, false, false, m.requeue)
    }

    fn basic_nack(&mut self, channel: u16, m: BasicNack) -> Self::Output {
        self.settle_or_buffer(channel, m.delivery_tag, m.multiple, false, m.requeue)
    }

    fn basic_recover_async(&mut self, channel: u16, _: BasicRecoverAsync) -> Self::Output {
        let outstanding = self.channel(channel)?.unacked.take_all();
        unacked::give_back(outstanding, true);
        Ok(())
    }

    fn basic_recover(&mut self, channel: u16, _: BasicRecover) -> Self::Output {
        let outstanding = self.channel(channel)?.unacked.take_all();
        unacked::give_back(outstanding, true);
        self.send(channel, BasicRecoverOk {});
        Ok(())
    }
}

impl ConfirmServer for Connection {
    fn confirm_select(&mut self, channel: u16, m: ConfirmSelect) -> Self::Output {
        let ch = self.channel(channel)?;
        if ch.tx.is_some() {
            return Err(AmqpError::precondition_failed(
                "cannot switch from tx to confirm mode",
            ));
        }
        ch.confirm = true;
        if !m.nowait {
            self.send(channel, ConfirmSelectOk {});
        }
        Ok(())
    }
}

impl TxServer for Connection {
    fn tx_select(&mut self, channel: u16, _: TxSelect) -> Self::Output {
        let ch = self.channel(channel)?;
        if ch.confirm {
            return Err(AmqpError::precondition_failed(
                "cannot switch from confirm to tx mode",
            ));
        }
        if ch.tx.is_none() {
            ch.tx = Some(Transaction::default());
        }
        self.send(channel, TxSelectOk {});
        Ok(())
    }

    fn tx_commit(&mut self, channel: u16, _: TxCommit) -> Self::Output {
        let ch = self.channel(channel)?;
        let Some(tx) = ch.tx.as_mut() else {
            return Err(AmqpError::precondition_failed(
                "channel is not transactional",
            ));
        };
        let tx = std::mem::take(tx);
        for (name, message, mandatory) in tx.publishes {
            let exchange = self.vhost.exchange_or_404(&name)?;
            self.publish_now(channel, &exchange, message, mandatory, None)?;
        }
        for (tag, multiple, ack, requeue_them) in tx.settlements {
            self.settle(channel, tag, multiple, ack, requeue_them)?;
        }
        self.send(channel, TxCommitOk {});
        Ok(())
    }

    fn tx_rollback(&mut self, channel: u16, _: TxRollback) -> Self::Output {
        let ch = self.channel(channel)?;
        let Some(tx) = ch.tx.as_mut() else {
            return Err(AmqpError::precondition_failed(
                "channel is not transactional",
            ));
        };
        *tx = Transaction::default();
        self.send(channel, TxRollbackOk {});
        Ok(())
    }
}
