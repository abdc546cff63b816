//! One channel's state inside a connection task: content being received, deliveries not
//! yet acknowledged, consumers, prefetch, confirms and transactions.
//!
//! Owned by the connection task alone, so none of it needs a lock.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use crate::broker::backlog::Entry;
use crate::broker::consumer::Consumer;
use crate::broker::credit::Credit;
use crate::broker::hash::HashMap;
use crate::broker::message::MessageRef;
use crate::broker::queue::Queue;
use crate::protocol::ShortString;
use crate::protocol::content::ContentAssembler;
use crate::protocol::generated::methods::BasicPublish;

/// Where a channel is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelState {
    Open,
    /// We sent channel.close; everything but close/close-ok is discarded until close-ok.
    Closing,
}

/// A delivery awaiting ack, nack or reject.
#[derive(Debug)]
pub struct Unacked {
    pub tag: u64,
    pub queue: Arc<Queue>,
    pub entry: Entry,
    /// None for basic.get deliveries, which use no consumer credit.
    pub consumer: Option<Arc<Consumer>>,
}

/// A consumer as its channel knows it.
#[derive(Debug)]
pub struct ChannelConsumer {
    pub consumer: Arc<Consumer>,
    pub queue: Arc<Queue>,
}

/// What a transaction holds until commit.
#[derive(Debug, Default)]
pub struct Transaction {
    pub publishes: Vec<(ShortString, MessageRef, bool)>,
    /// (delivery tag, multiple, ack?, requeue)
    pub settlements: Vec<(u64, bool, bool, bool)>,
}

#[derive(Debug)]
pub struct Channel {
    pub state: ChannelState,
    pub content: ContentAssembler<BasicPublish>,
    pub next_delivery_tag: u64,
    pub unacked: VecDeque<Unacked>,
    pub consumers: HashMap<ShortString, ChannelConsumer>,
    /// Prefetch for consumers started from now on (basic.qos global=false).
    pub consumer_prefetch: u32,
    /// Shared prefetch of the whole channel (basic.qos global=true); 0 = unlimited.
    pub channel_credit: Arc<Credit>,
    /// The queue most recently declared here: what an empty queue name means.
    pub last_queue: Option<ShortString>,
    /// False while the client has paused deliveries with channel.flow.
    pub active: Arc<AtomicBool>,
    pub confirm: bool,
    /// Sequence number of the last message published in confirm mode.
    pub publish_seq: u64,
    pub tx: Option<Transaction>,
}

impl Channel {
    pub fn new(max_body: u64) -> Channel {
        Channel {
            state: ChannelState::Open,
            content: ContentAssembler::with_max_body_size(max_body),
            next_delivery_tag: 1,
            unacked: VecDeque::new(),
            consumers: HashMap::default(),
            consumer_prefetch: 0,
            channel_credit: Arc::new(Credit::new(0)),
            last_queue: None,
            active: Arc::new(AtomicBool::new(true)),
            confirm: false,
            publish_seq: 0,
            tx: None,
        }
    }

    pub fn next_tag(&mut self) -> u64 {
        let tag = self.next_delivery_tag;
        self.next_delivery_tag += 1;
        tag
    }

    /// Takes the unacked deliveries `tag` names (all up to it when `multiple`; tag 0 with
    /// multiple means every one). None if a single tag is unknown.
    pub fn take_unacked(&mut self, tag: u64, multiple: bool) -> Option<Vec<Unacked>> {
        if multiple {
            let upto = if tag == 0 { u64::MAX } else { tag };
            let n = self.unacked.partition_point(|u| u.tag <= upto);
            if n == 0 && tag != 0 {
                // RabbitMQ treats an unknown tag with multiple as an error too.
                return self.unacked.iter().any(|u| u.tag == tag).then(Vec::new);
            }
            return Some(self.unacked.drain(..n).collect());
        }
        let i = self.unacked.binary_search_by_key(&tag, |u| u.tag).ok()?;
        self.unacked.remove(i).map(|u| vec![u])
    }
}
