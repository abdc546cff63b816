//! Consuming from a queue without a connection: the delivery sink of a broker object.
//!
//! A queue hands deliveries to a [`Consumer`] through its mailbox, whoever is behind it.
//! For a client that is the connection task, which writes basic.deliver; for a broker
//! object (a federation link, the HA pair moving messages) it is an
//! [`InternalConsumer`], which the object reads with [`InternalConsumer::recv`] and
//! settles with ack and nack. Both keep outstanding deliveries in
//! [`super::unacked::Outstanding`] and settle through [`super::unacked`], so prefetch,
//! requeueing and dead-lettering behave the same for both.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use super::credit::{Credit, PendingBytes};
use super::error::{AmqpError, AmqpResult};
use super::message::MessageRef;
use super::owner::Owner;
use super::queue::Queue;
use super::queue::consumer::{ConnectionEvent, Consumer, MailboxReceiver, mailbox};
use super::topology::Removal;
use super::unacked::{self, Outstanding, Unacked};
use super::vhost::VHost;
use crate::protocol::ShortString;

/// How a broker object consumes.
#[derive(Debug, Clone)]
pub struct ConsumeOptions {
    pub tag: ShortString,
    /// Deliveries outstanding at most (0: no limit).
    pub prefetch: u32,
    /// Deliveries count as settled when handed out.
    pub no_ack: bool,
    /// No other consumer may share the queue.
    pub exclusive: bool,
    /// `x-priority`.
    pub priority: i64,
}

/// One delivery to a broker object.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub tag: u64,
    pub redelivered: bool,
    pub message: MessageRef,
}

#[derive(Debug)]
pub struct InternalConsumer {
    vhost: Arc<VHost>,
    queue: Arc<Queue>,
    consumer: Arc<Consumer>,
    mailbox: MailboxReceiver,
    outstanding: Outstanding,
    /// The queue went away: nothing more will come.
    cancelled: bool,
}

impl InternalConsumer {
    /// Starts consuming from `queue` as `owner` (an exclusive queue must be its own).
    pub fn start(
        vhost: &Arc<VHost>,
        queue: &ShortString,
        owner: &Owner,
        options: ConsumeOptions,
    ) -> AmqpResult<InternalConsumer> {
        let q = vhost.queue_for(queue, owner)?;
        let (tx, rx) = mailbox();
        let consumer = Arc::new(Consumer {
            tag: options.tag,
            channel: 0,
            no_ack: options.no_ack,
            exclusive: options.exclusive,
            priority: options.priority,
            credit: (options.prefetch > 0).then(|| Arc::new(Credit::new(options.prefetch))),
            channel_credit: None,
            channel_active: Arc::new(AtomicBool::new(true)),
            pending: Arc::new(PendingBytes::default()),
            mailbox: tx,
        });
        q.add_consumer(consumer.clone())?;
        Ok(InternalConsumer {
            vhost: vhost.clone(),
            queue: q,
            consumer,
            mailbox: rx,
            outstanding: Outstanding::default(),
            cancelled: false,
        })
    }

    pub fn queue(&self) -> &Arc<Queue> {
        &self.queue
    }

    /// Deliveries handed out and not yet settled.
    pub fn outstanding(&self) -> usize {
        self.outstanding.len()
    }

    /// The next delivery; `None` once the queue is gone (the consumer was cancelled).
    pub async fn recv(&mut self) -> Option<Delivery> {
        loop {
            if self.cancelled {
                return None;
            }
            let event = self.mailbox.recv().await?;
            if let Some(d) = self.take(event) {
                return Some(d);
            }
        }
    }

    /// Handles one mailbox event.
    fn take(&mut self, event: ConnectionEvent) -> Option<Delivery> {
        match event {
            ConnectionEvent::Deliver {
                consumer,
                queue,
                entry,
                ..
            } => {
                if consumer.arrived(&entry) {
                    queue.dispatch();
                }
                let tag = self.outstanding.next_tag();
                let delivery = Delivery {
                    tag,
                    redelivered: entry.redelivered,
                    message: entry.message.clone(),
                };
                if !consumer.no_ack {
                    self.outstanding.push(Unacked {
                        tag,
                        queue,
                        entry,
                        consumer: Some(consumer),
                    });
                }
                Some(delivery)
            }
            ConnectionEvent::Cancelled { .. } => {
                self.cancelled = true;
                None
            }
            ConnectionEvent::WriterDrained
            | ConnectionEvent::Close { .. }
            | ConnectionEvent::Report(_)
            | ConnectionEvent::Returned { .. } => None,
        }
    }

    /// Acknowledges `tag` (and every earlier one with `multiple`); an unknown tag is
    /// 406, as on a channel.
    pub fn ack(&mut self, tag: u64, multiple: bool) -> AmqpResult<()> {
        let settled = self.settled(tag, multiple)?;
        unacked::ack(settled);
        Ok(())
    }

    /// Rejects `tag` (and every earlier one with `multiple`): requeued, or
    /// dead-lettered or dropped.
    pub fn nack(&mut self, tag: u64, multiple: bool, requeue: bool) -> AmqpResult<()> {
        let settled = self.settled(tag, multiple)?;
        unacked::give_back(settled, requeue);
        Ok(())
    }

    fn settled(&mut self, tag: u64, multiple: bool) -> AmqpResult<Vec<Unacked>> {
        self.outstanding
            .take(tag, multiple)
            .ok_or_else(|| AmqpError::unknown_delivery_tag(tag))
    }
}

impl Drop for InternalConsumer {
    /// Cancels: outstanding deliveries go back to the queue, which auto-deletes if
    /// this was its last consumer.
    fn drop(&mut self) {
        let last = self.queue.remove_consumer(&self.consumer);
        // Deliveries still in the mailbox go back, then those handed out.
        self.mailbox.close();
        unacked::give_back(self.outstanding.take_all(), true);
        if last {
            self.vhost.remove_queue(&self.queue, Removal::AutoDelete);
        }
    }
}

#[cfg(test)]
mod tests;
