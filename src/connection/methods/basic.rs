//! The `basic` class: publishing, consuming, getting and settling messages.

use std::sync::Arc;

use bytes::Bytes;
use rand::Rng;

use super::permission;
use crate::auth::Permission;
use crate::broker::credit::Credit;
use crate::broker::error::{AmqpError, AmqpResult};
use crate::broker::exchange::Exchange;
use crate::broker::queue::consumer::Consumer;
use crate::broker::topology::Removal;
use crate::broker::unacked::{self, Unacked};
use crate::connection::channel::ChannelConsumer;
use crate::connection::{Connection, Content};
use crate::protocol::ShortString;
use crate::protocol::content::encode_content;
use crate::protocol::frame::encode_frame_with;
use crate::protocol::generated::constants::FRAME_METHOD;
use crate::protocol::generated::dispatch::BasicServer;
use crate::protocol::generated::methods::*;
use crate::protocol::generated::properties::BasicProperties;

impl Connection {
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
        if seq.is_some() {
            self.publisher.count_confirm_requested();
        }
        self.publish_now(channel, &exchange, message, m.mandatory, seq)
    }

    fn basic_get(&mut self, channel: u16, m: BasicGet) -> Self::Output {
        let name = self.queue_name(channel, m.queue)?;
        self.check(Permission::Read, "queue", &name)?;
        let q = self.vhost.queue_for(&name, &self.owner())?;
        match q.get(m.no_ack) {
            None => {
                self.channel(channel)?.counters.get_empty += 1;
                self.send(channel, BasicGetEmpty {});
            }
            Some((entry, remaining)) => {
                let frame_max = self.frame_max;
                let ch = self.channel(channel)?;
                ch.counters.count_get(m.no_ack, entry.redelivered);
                let tag = ch.unacked.next_tag();
                let ok = BasicGetOk {
                    delivery_tag: tag,
                    redelivered: entry.redelivered,
                    exchange: entry.message.exchange(),
                    routing_key: entry.message.routing_key(),
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
                    message.properties().as_bytes(),
                    message.body(),
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

fn random_tag(prefix: &str) -> ShortString {
    let mut rng = rand::rng();
    let n: u128 = rng.random();
    ShortString::new(Bytes::from(format!("{prefix}{n:032x}"))).unwrap_or_default()
}
