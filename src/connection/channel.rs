//! One channel's state inside a connection task: content being received, deliveries not
//! yet acknowledged, consumers, prefetch, confirms and transactions.
//!
//! Owned by the connection task alone, so none of it needs a lock.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::broker::channels::{ChannelCounters, ChannelReport};
use crate::broker::credit::Credit;
use crate::broker::hash::HashMap;
use crate::broker::memory::{Account, MemoryGauge, map_entry};
use crate::broker::message::MessageRef;
use crate::broker::queue::Queue;
use crate::broker::queue::consumer::Consumer;
use crate::broker::unacked::Outstanding;
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
    /// Deliveries awaiting ack, nack or reject, with the tag counter.
    pub unacked: Outstanding,
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
    /// What it did, for the management API (asked through the connection's mailbox).
    pub counters: ChannelCounters,
    /// The channel's footprint, charged to the broker's memory gauge while it is open.
    _memory: Account,
}

/// A channel's footprint: the channel and its place in the connection's map.
const CHANNEL_FOOTPRINT: u64 = map_entry::<u16, Channel>() as u64;

impl Channel {
    pub fn new(max_body: u64, memory: &MemoryGauge) -> Channel {
        let account = memory.account();
        account.charge(CHANNEL_FOOTPRINT);
        Channel {
            state: ChannelState::Open,
            content: ContentAssembler::with_max_body_size(max_body),
            unacked: Outstanding::default(),
            consumers: HashMap::default(),
            consumer_prefetch: 0,
            channel_credit: Arc::new(Credit::new(0)),
            last_queue: None,
            active: Arc::new(AtomicBool::new(true)),
            confirm: false,
            publish_seq: 0,
            tx: None,
            counters: ChannelCounters::default(),
            _memory: account,
        }
    }

    /// Its state as the management API shows it.
    pub fn report(&self, number: u16) -> ChannelReport {
        ChannelReport {
            number,
            prefetch_count: self.consumer_prefetch,
            global_prefetch_count: self.channel_credit.limit(),
            consumer_count: self.consumers.len(),
            messages_unacknowledged: self.unacked.len(),
            messages_uncommitted: self.tx.as_ref().map_or(0, |t| t.publishes.len()),
            acks_uncommitted: self.tx.as_ref().map_or(0, |t| t.settlements.len()),
            confirm: self.confirm,
            transactional: self.tx.is_some(),
            running: self.state == ChannelState::Open,
            flow_active: self.active.load(Ordering::Relaxed),
            counters: self.counters,
        }
    }
}
