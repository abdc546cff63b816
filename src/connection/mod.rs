//! One client connection: a task that reads frames, runs methods against the broker and
//! writes what follows, plus a writer task (see [`writer`]).
//!
//! The data path through here: socket bytes → [`FrameDecoder`] → [`Method::decode`] →
//! content assembly per channel → [`dispatch_to_server`] → the handlers in [`methods`]
//! (which call into `broker::vhost` and `broker::queue`) → frames encoded into `out` →
//! the writer. Deliveries from queues arrive through the connection's mailbox and are
//! encoded by the same task, which owns every channel's state without locks.

pub mod channel;
mod closing;
mod confirms;
pub mod handshake;
mod methods;
mod tunnel;
pub mod writer;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::watch;
use tokio::time::Instant;

use self::channel::{Channel, ChannelState};
use self::confirms::PendingConfirms;
use self::handshake::{Capabilities, HandshakeError};
use self::writer::WriterHandle;
use crate::broker::channels::{ChannelCount, ChannelReport};
use crate::broker::connections::ConnectionInfo;
use crate::broker::credit::PendingBytes;
use crate::broker::error::{AmqpError, AmqpResult};
use crate::broker::exchange_hook::HoldsBack;
use crate::broker::hash::HashMap;
use crate::broker::owner::Owner;
use crate::broker::publish::Publisher;
use crate::broker::queue::consumer::{ConnectionEvent, ConnectionId, Mailbox, MailboxReceiver};
use crate::broker::queue::mailbox;
use crate::broker::topology::Removal;
use crate::broker::unacked::{self, Unacked};
use crate::broker::vhost::VHost;
use crate::broker::{Broker, clock};
use crate::protocol::content::{ContentHeader, encode_content};
use crate::protocol::frame::{
    FrameDecoder, FrameType, encode_frame_with, encode_heartbeat, take_payload,
};
use crate::protocol::generated::constants::FRAME_METHOD;
use crate::protocol::generated::dispatch::dispatch_to_server;
use crate::protocol::generated::methods::{
    BasicDeliver, ConnectionBlocked, ConnectionUnblocked, Method,
};
use crate::protocol::generated::properties::{BasicProperties, EncodedBasicProperties};
use crate::protocol::{ReplyCode, ShortString};
use crate::transport::Transport;

/// A content-bearing method's content, as handed to the handlers.
#[derive(Debug, Clone)]
pub struct Content {
    /// Checked on arrival, decoded only where read.
    pub properties: EncodedBasicProperties,
    pub body: Bytes,
}

/// Serves one accepted stream (any [`Transport`]) from `peer` until it closes.
/// `certificate_user` is the user a verified TLS client certificate names: the EXTERNAL
/// mechanism is offered only with one.
pub async fn serve<T: Transport>(
    mut stream: T,
    peer: Option<SocketAddr>,
    certificate_user: Option<String>,
    broker: Arc<Broker>,
    id: ConnectionId,
    mut shutdown: watch::Receiver<bool>,
) {
    let opened = tokio::select! {
        r = tokio::time::timeout(broker.config().handshake_timeout, handshake::handshake(&mut stream, &broker, certificate_user.as_deref())) => r,
        _ = async { let _ = shutdown.wait_for(|s| *s).await; } => return,
    };
    let opened = match opened {
        Ok(Ok(o)) => o,
        Ok(Err(HandshakeError::Refused(e))) => {
            tracing::info!(connection = id, "handshake refused: {e}");
            closing::close(stream, &mut shutdown).await;
            return;
        }
        Ok(Err(HandshakeError::BadHeader { tls: true })) => {
            let from = peer.map(|p| format!(" from {p}")).unwrap_or_default();
            tracing::info!(
                connection = id,
                "TLS handshake{from} on a plain AMQP port: sent our protocol header and closed"
            );
            closing::close(stream, &mut shutdown).await;
            return;
        }
        Ok(Err(HandshakeError::BadHeader { tls: false })) => {
            tracing::debug!(connection = id, "not AMQP 0-9-1: sent our protocol header");
            closing::close(stream, &mut shutdown).await;
            return;
        }
        Ok(Err(e)) => {
            tracing::debug!(connection = id, "handshake ended: {e:?}");
            return;
        }
        Err(_) => {
            tracing::info!(connection = id, "handshake timed out");
            return;
        }
    };
    let (mut read, write) = stream.into_split();
    let (mailbox_tx, mailbox_rx) = mailbox::mailbox();
    let pending = Arc::new(PendingBytes::charging(broker.memory()));
    let channel_count = ChannelCount::default();
    let _registration = broker.connections().register(ConnectionInfo {
        id,
        peer,
        user: opened.user.clone(),
        vhost: opened.vhost.name.to_string(),
        client: opened.product.clone(),
        identifier: opened.identifier.clone(),
        connected_at: std::time::SystemTime::now(),
        mailbox: mailbox_tx.clone(),
        pending: pending.clone(),
        channel_count: channel_count.clone(),
    });
    let drained_tx = mailbox_tx.clone();
    let (writer, writer_task) = writer::spawn(write, pending, move || {
        let _ = drained_tx.send(ConnectionEvent::WriterDrained);
    });
    let vhost = opened.vhost.clone();
    let mut conn = Connection {
        id,
        broker: broker.clone(),
        vhost: opened.vhost,
        user: opened.user,
        frame_max: opened.frame_max,
        channel_max: opened.channel_max,
        heartbeat: opened.heartbeat,
        capabilities: opened.capabilities,
        channels: HashMap::default(),
        channel_count,
        confirms: PendingConfirms::default(),
        out: BytesMut::with_capacity(64 * 1024),
        writer,
        mailbox: mailbox_tx,
        publisher: Publisher::for_connection(
            vhost.clone(),
            broker.memory().clone(),
            broker.publish_totals().clone(),
            id,
        ),
        flow: None,
        closing: None,
        done: false,
        blocked_sent: false,
        has_published: false,
        last_received: Instant::now(),
        tunnels: None,
    };
    conn.run(&mut read, opened.leftover, mailbox_rx, shutdown.clone())
        .await;
    conn.release_all();
    vhost.owner_gone(&Owner::Connection(id));
    drop(conn);
    // Every frame written, then the write side shut down (the writer's last step). A
    // client that does not read its last frames does not keep the connection.
    let writer_abort = writer_task.abort_handle();
    if tokio::time::timeout(closing::LINGER, writer_task)
        .await
        .is_err()
    {
        writer_abort.abort();
        return;
    }
    closing::drain(&mut read, &mut shutdown).await;
}

/// The state of one open connection, owned by its task.
pub struct Connection {
    id: ConnectionId,
    broker: Arc<Broker>,
    vhost: Arc<VHost>,
    user: String,
    frame_max: u32,
    channel_max: u16,
    heartbeat: u16,
    capabilities: Capabilities,
    channels: HashMap<u16, Channel>,
    /// `channels.len()`, shared with the broker's connection registry.
    channel_count: ChannelCount,
    /// Publisher confirms held until the end of the read that caused them.
    confirms: PendingConfirms,
    /// Frames encoded but not yet handed to the writer.
    out: BytesMut,
    writer: WriterHandle,
    mailbox: Mailbox,
    /// Routing state and the cached publish target (see `broker::publish`).
    publisher: Publisher,
    /// A queue this connection published to whose consumers fall behind (or an
    /// exchange hook's full buffer): until it catches up the connection stops reading
    /// (flow control, see `queue::FLOW_HIGH`).
    flow: Option<Arc<dyn HoldsBack>>,
    /// Set once we sent connection.close: until when we wait for close-ok.
    closing: Option<Instant>,
    /// The connection is over; the loop exits.
    done: bool,
    blocked_sent: bool,
    /// Only connections that publish are blocked by the memory alarm: consumers must
    /// keep acking for memory to drain.
    has_published: bool,
    last_received: Instant,
    /// Tunnels accepted on this connection (a peering that announced `tunnels`).
    tunnels: Option<crate::tunnel::Acceptor>,
}

impl Connection {
    /// This connection as the owner of exclusive queues.
    fn owner(&self) -> Owner {
        Owner::Connection(self.id)
    }

    /// An open (or closing) channel of this connection, or 504.
    fn channel(&mut self, channel: u16) -> AmqpResult<&mut Channel> {
        self.channels
            .get_mut(&channel)
            .ok_or_else(|| not_open(channel))
    }

    async fn run(
        &mut self,
        read: &mut (impl AsyncRead + Unpin),
        mut inbuf: BytesMut,
        mut mailbox: MailboxReceiver,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut frames = FrameDecoder::new(self.frame_max);
        let mut alarm = self.broker.alarm();
        let mut alarm_open = true;
        let beat = if self.heartbeat == 0 {
            Duration::from_secs(3600)
        } else {
            Duration::from_secs(u64::from(self.heartbeat))
        };
        let mut ticker = tokio::time::interval(beat / 2);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_sent = Instant::now();
        // Frames already read with the handshake.
        self.process_input(&mut frames, &mut inbuf);
        while !self.done {
            if !self.out.is_empty() {
                last_sent = Instant::now();
                if !self.writer.send(self.out.split().freeze()) {
                    return;
                }
            }
            let blocked = *alarm.borrow() && self.has_published && self.closing.is_none();
            if blocked != self.blocked_sent {
                self.set_blocked(blocked);
                continue;
            }
            let flow = self.flow.as_ref().is_some_and(|q| q.holds_back());
            if !flow && self.flow.take().is_some() {
                // The client's heartbeats waited unread meanwhile.
                self.last_received = Instant::now();
            }
            // The client does not read what it is sent: stop reading it too, so that its
            // publishes (whose returns and confirms would add to the pile) wait in TCP.
            // The writer draining (`WriterDrained`) wakes the loop.
            let unread = !self.writer.pending.has_room();
            if unread {
                // The client's heartbeats wait unread meanwhile.
                self.last_received = Instant::now();
            }
            make_read_room(&mut inbuf);
            tokio::select! {
                biased;
                _ = async { let _ = shutdown.wait_for(|s| *s).await; }, if self.closing.is_none() => {
                    self.close_connection(AmqpError::new(ReplyCode::ConnectionForced, "broker forced connection closure with reason 'shutdown'"), 0, 0);
                }
                event = mailbox.recv() => {
                    let Some(event) = event else { return };
                    self.handle_event(event);
                    // Drain what else is ready so frames go out in one write.
                    for _ in 0..256 {
                        match mailbox.try_recv() {
                            Some(ev) => self.handle_event(ev),
                            None => break,
                        }
                    }
                }
                // Held back by a slow queue: look again shortly.
                _ = tokio::time::sleep(Duration::from_millis(1)), if flow && !blocked => {}
                n = read.read_buf(&mut inbuf), if !blocked && !flow && !unread => {
                    match n {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {
                            self.last_received = Instant::now();
                            self.process_input(&mut frames, &mut inbuf);
                        }
                    }
                }
                r = alarm.changed(), if alarm_open => {
                    // The sender goes away only at shutdown; stop polling it then.
                    alarm_open = r.is_ok();
                }
                // No close-ok in time.
                _ = tokio::time::sleep_until(self.closing.unwrap_or_else(Instant::now)), if self.closing.is_some() => return,
                _ = ticker.tick() => {
                    if self.heartbeat != 0 {
                        // Not reading (memory alarm, flow control) is not the client's silence.
                        if blocked || flow || unread {
                            self.last_received = Instant::now();
                        }
                        if self.last_received.elapsed() > beat * 2 {
                            tracing::info!(connection = self.id, "missed heartbeats from client, closing");
                            return;
                        }
                        if last_sent.elapsed() >= beat / 2 {
                            encode_heartbeat(&mut self.out);
                        }
                    }
                }
            }
        }
        if !self.out.is_empty() {
            self.writer.send(self.out.split().freeze());
        }
    }

    fn set_blocked(&mut self, blocked: bool) {
        self.blocked_sent = blocked;
        if !self.capabilities.connection_blocked {
            return;
        }
        if blocked {
            let m = ConnectionBlocked {
                reason: ShortString::from_static("low on memory"),
            };
            encode_frame_with(&mut self.out, FRAME_METHOD, 0, |b| m.encode(b));
        } else {
            encode_frame_with(&mut self.out, FRAME_METHOD, 0, |b| {
                ConnectionUnblocked {}.encode(b)
            });
        }
    }

    /// Decodes and handles every whole frame in `inbuf`.
    fn process_input(&mut self, frames: &mut FrameDecoder, inbuf: &mut BytesMut) {
        // The connections this read sends deliveries to are woken at its end, once each.
        let _holding = mailbox::hold();
        let _now = clock::pin();
        while !self.done {
            let frame = match frames.peek(inbuf) {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(e) => {
                    self.close_connection(e.into(), 0, 0);
                    // Nothing after a framing error can be trusted.
                    inbuf.clear();
                    break;
                }
            };
            let (channel, payload_len) = (frame.channel, frame.payload.len());
            let result = match frame.frame_type {
                FrameType::Heartbeat => {
                    inbuf.advance(frame.wire_len());
                    if channel != 0 {
                        Err(AmqpError::new(
                            ReplyCode::UnexpectedFrame,
                            "heartbeat frame on a non-zero channel",
                        ))
                    } else {
                        Ok(())
                    }
                }
                // Decoded where it lies: methods keep nothing of the frame.
                FrameType::Method => {
                    let wire_len = frame.wire_len();
                    let result = self.method_frame(channel, frame.payload);
                    inbuf.advance(wire_len);
                    result
                }
                // Properties and bodies are kept with the message, so taken as `Bytes`.
                FrameType::Header => {
                    let payload = take_payload(inbuf, payload_len);
                    self.header_frame(channel, payload)
                }
                FrameType::Body => {
                    let payload = take_payload(inbuf, payload_len);
                    self.body_frame(channel, payload)
                }
            };
            if let Err(e) = result {
                self.fail(channel, e, 0, 0);
            }
        }
        self.confirms.flush(&mut self.out);
        self.publisher.flush();
    }

    /// Sends channel.close for a soft error, connection.close for a hard one.
    fn fail(&mut self, channel: u16, e: AmqpError, class_id: u16, method_id: u16) {
        if e.closes_connection() || channel == 0 {
            self.close_connection(e, class_id, method_id);
        } else {
            self.close_channel(channel, e, class_id, method_id);
        }
    }

    fn method_frame(&mut self, channel: u16, payload: &[u8]) -> AmqpResult<()> {
        // A tunnel service's method goes to its tunnel undecoded: the service may be one
        // this broker's spec does not define (see tunnel.rs).
        if self.capabilities.tunnels && self.closing.is_none() {
            if let Some((class_id, method_id)) =
                crate::protocol::generated::services::service_method_ids(payload)
            {
                if let Err(e) = self.tunnel_service_method(channel, payload) {
                    self.fail(channel, e, class_id, method_id);
                }
                return Ok(());
            }
        }
        let method = Method::decode(payload)?;
        let (class_id, method_id) = (method.class_id(), method.method_id());
        // To a client that did not announce tunnels, their classes do not exist.
        if method.info().tunnel && !self.capabilities.tunnels {
            return Err(crate::protocol::DecodeError::UnknownMethod {
                class_id,
                method_id,
            }
            .into());
        }
        if self.closing.is_some() {
            // After connection.close only close and close-ok count.
            match method {
                Method::ConnectionCloseOk(_) => self.done = true,
                Method::ConnectionClose(_) => {
                    encode_frame_with(&mut self.out, FRAME_METHOD, 0, |b| {
                        crate::protocol::generated::methods::ConnectionCloseOk {}.encode(b)
                    });
                    self.done = true;
                }
                _ => {}
            }
            return Ok(());
        }
        let result = self.route_method(channel, method);
        if let Err(e) = result {
            self.fail(channel, e, class_id, method_id);
        }
        Ok(())
    }

    fn route_method(&mut self, channel: u16, method: Method) -> AmqpResult<()> {
        let info = method.info();
        if info.class_id == 10 {
            if channel != 0 {
                return Err(AmqpError::command_invalid(format!(
                    "{} is only allowed on channel 0",
                    info.name
                )));
            }
        } else {
            if channel == 0 {
                return Err(AmqpError::command_invalid(format!(
                    "{} is not allowed on channel 0",
                    info.name
                )));
            }
            match self.channels.get_mut(&channel) {
                None if matches!(method, Method::ChannelOpen(_)) => {}
                None => return Err(not_open(channel)),
                Some(ch) if ch.state == ChannelState::Closing => {
                    // Discard all but close/close-ok until the client confirms.
                    if !matches!(method, Method::ChannelCloseOk(_) | Method::ChannelClose(_)) {
                        return Ok(());
                    }
                }
                Some(ch) => {
                    ch.content.method_frame()?;
                    if info.has_content {
                        if let Method::BasicPublish(p) = method {
                            ch.content.start(info.class_id, p)?;
                            return Ok(());
                        }
                    }
                }
            }
        }
        if info.tunnel {
            return self.tunnel_method(channel, method);
        }
        dispatch_to_server(self, channel, method, None)
            .map_err(|e| AmqpError::new(e.reply_code(), e.to_string()))?
    }

    fn header_frame(&mut self, channel: u16, payload: Bytes) -> AmqpResult<()> {
        let ch = self.channel(channel)?;
        if ch.state == ChannelState::Closing {
            return Ok(());
        }
        match ch.content.header(payload) {
            Ok(Some(done)) => self.publish_complete(channel, done.method, done.header, done.body),
            Ok(None) => Ok(()),
            Err(e) => {
                let e: AmqpError = e.into();
                self.fail(channel, e, 60, 40);
                Ok(())
            }
        }
    }

    fn body_frame(&mut self, channel: u16, payload: Bytes) -> AmqpResult<()> {
        let ch = self.channel(channel)?;
        if ch.state == ChannelState::Closing {
            return Ok(());
        }
        match ch.content.body(payload) {
            Ok(Some(done)) => self.publish_complete(channel, done.method, done.header, done.body),
            Ok(None) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    fn publish_complete(
        &mut self,
        channel: u16,
        method: crate::protocol::generated::methods::BasicPublish,
        header: ContentHeader,
        body: Bytes,
    ) -> AmqpResult<()> {
        let content = Content {
            properties: EncodedBasicProperties::decode(header.properties)?,
            body,
        };
        if let Err(e) =
            dispatch_to_server(self, channel, Method::BasicPublish(method), Some(content))
                .map_err(|e| AmqpError::new(e.reply_code(), e.to_string()))
                .and_then(|r| r)
        {
            self.fail(channel, e, 60, 40);
        }
        Ok(())
    }

    fn handle_event(&mut self, event: ConnectionEvent) {
        match event {
            ConnectionEvent::Deliver {
                channel,
                consumer,
                queue,
                entry,
            } => {
                if consumer.arrived(&entry) {
                    self.resume_consumers();
                }
                let open = self.channels.get(&channel).is_some_and(|c| {
                    // The same consumer, not just the same tag: a channel may have been
                    // closed and reopened with a new consumer of that tag meanwhile.
                    c.state == ChannelState::Open
                        && c.consumers
                            .get(&consumer.tag)
                            .is_some_and(|cc| Arc::ptr_eq(&cc.consumer, &consumer))
                });
                if !open || self.closing.is_some() {
                    // Cancelled or closing meanwhile: the message goes back.
                    consumer.give_back_credit(1);
                    queue.undelivered(&consumer, entry);
                    return;
                }
                let Some(ch) = self.channels.get_mut(&channel) else {
                    return;
                };
                let tag = ch.unacked.next_tag();
                ch.counters
                    .count_delivery(consumer.no_ack, entry.redelivered);
                let deliver = BasicDeliver {
                    consumer_tag: consumer.tag.clone(),
                    delivery_tag: tag,
                    redelivered: entry.redelivered,
                    exchange: entry.message.exchange(),
                    routing_key: entry.message.routing_key(),
                };
                encode_frame_with(&mut self.out, FRAME_METHOD, channel, |b| deliver.encode(b));
                encode_content(
                    &mut self.out,
                    channel,
                    BasicProperties::CLASS_ID,
                    entry.message.properties().as_bytes(),
                    entry.message.body(),
                    self.frame_max,
                );
                if !consumer.no_ack {
                    ch.unacked.push(Unacked {
                        tag,
                        queue,
                        entry,
                        consumer: Some(consumer),
                    });
                }
            }
            ConnectionEvent::Cancelled {
                channel,
                consumer_tag,
            } => {
                if let Some(ch) = self.channels.get_mut(&channel) {
                    if ch.consumers.remove(&consumer_tag).is_some()
                        && self.capabilities.consumer_cancel_notify
                        && ch.state == ChannelState::Open
                    {
                        let m = crate::protocol::generated::methods::BasicCancel {
                            consumer_tag,
                            no_wait: true,
                        };
                        encode_frame_with(&mut self.out, FRAME_METHOD, channel, |b| m.encode(b));
                    }
                }
            }
            ConnectionEvent::Close { code, text } => {
                self.close_connection(AmqpError::new(code, text), 0, 0);
            }
            ConnectionEvent::WriterDrained => self.resume_consumers(),
            ConnectionEvent::Report(reply) => {
                let _ = reply.send(self.channel_reports());
            }
            ConnectionEvent::Returned {
                channel,
                reply_code,
                reply_text,
                message,
            } => {
                let open = self
                    .channels
                    .get(&channel)
                    .is_some_and(|c| c.state == ChannelState::Open);
                if open && self.closing.is_none() {
                    self.send_return(channel, reply_code, reply_text, &message);
                }
            }
        }
    }

    /// Every open channel's state and counters, by number.
    fn channel_reports(&self) -> Vec<ChannelReport> {
        let mut reports: Vec<_> = self
            .channels
            .iter()
            .map(|(&number, ch)| ch.report(number))
            .collect();
        reports.sort_by_key(|r| r.number);
        reports
    }

    /// Keeps the registry's channel count equal to `channels.len()`; called wherever a
    /// channel is added or removed.
    fn channels_changed(&self) {
        self.channel_count.set(self.channels.len());
    }

    /// Consumers paused on a full socket or mailbox may go on.
    fn resume_consumers(&mut self) {
        let queues: Vec<_> = self
            .channels
            .values()
            .flat_map(|c| c.consumers.values().map(|cc| cc.queue.clone()))
            .collect();
        for q in queues {
            q.dispatch();
        }
    }

    /// Closes a channel with a soft error: its deliveries are requeued, its consumers
    /// cancelled, and further frames on it are discarded until close-ok.
    fn close_channel(&mut self, channel: u16, e: AmqpError, class_id: u16, method_id: u16) {
        tracing::debug!(connection = self.id, channel, "closing channel: {e}");
        self.release_channel(channel);
        if let Some(ch) = self.channels.get_mut(&channel) {
            ch.state = ChannelState::Closing;
            ch.content.reset();
        }
        let close = e.channel_close(class_id, method_id);
        encode_frame_with(&mut self.out, FRAME_METHOD, channel, |b| close.encode(b));
    }

    /// Sends connection.close; the connection ends at close-ok or after a timeout.
    fn close_connection(&mut self, e: AmqpError, class_id: u16, method_id: u16) {
        if self.closing.is_some() {
            return;
        }
        tracing::info!(connection = self.id, "closing connection: {e}");
        self.release_all();
        let close = e.connection_close(class_id, method_id);
        encode_frame_with(&mut self.out, FRAME_METHOD, 0, |b| close.encode(b));
        self.closing = Some(Instant::now() + Duration::from_secs(3));
    }

    /// Cancels a channel's consumers and requeues its unacknowledged deliveries; its
    /// pending publisher confirms go out (before the close that follows).
    fn release_channel(&mut self, channel: u16) {
        if let Some(tunnels) = &mut self.tunnels {
            tunnels.channel_closed(channel);
        }
        self.confirms.flush_channel(channel, &mut self.out);
        let Some(ch) = self.channels.get_mut(&channel) else {
            return;
        };
        let consumers: Vec<_> = ch.consumers.drain().collect();
        let unacked = ch.unacked.take_all();
        ch.tx = None;
        for (_, cc) in consumers {
            if cc.queue.remove_consumer(&cc.consumer) {
                self.vhost.remove_queue(&cc.queue, Removal::AutoDelete);
            }
        }
        unacked::give_back(unacked, true);
    }

    fn release_all(&mut self) {
        let ids: Vec<u16> = self.channels.keys().copied().collect();
        for id in ids {
            self.release_channel(id);
        }
    }
}

/// Below this much free room in the input buffer, a read gets [`READ_ROOM`] more.
const READ_ROOM_LOW: usize = 2 * 1024;
/// How much a read may take at least: a client writing fast has many frames waiting,
/// and every read costs a syscall, an ACK and the per-read work of `process_input`.
const READ_ROOM: usize = 16 * 1024;

/// Frames are split off the input buffer as messages keep them, so its free room
/// shrinks with every read; without this a read would take only what was left of the
/// first allocation, down to a few bytes. An idle connection keeps its small buffer.
fn make_read_room(inbuf: &mut BytesMut) {
    if inbuf.capacity() - inbuf.len() < READ_ROOM_LOW {
        inbuf.reserve(READ_ROOM);
    }
}

/// The error for a method or content frame on a channel that was never opened.
fn not_open(channel: u16) -> AmqpError {
    AmqpError::channel_error(format!("expected 'channel.open' on channel {channel}"))
}

static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// A fresh connection id.
pub fn next_connection_id() -> ConnectionId {
    NEXT_ID.fetch_add(1, Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_gets_room_only_when_the_buffer_is_nearly_full() {
        let mut idle = BytesMut::with_capacity(4096);
        make_read_room(&mut idle);
        assert_eq!(idle.capacity(), 4096, "an idle connection keeps its buffer");

        // Frames split off as messages leave the rest of the allocation behind.
        let mut inbuf = BytesMut::with_capacity(4096);
        inbuf.extend_from_slice(&[0; 4000]);
        let kept = inbuf.split_to(3990).freeze();
        make_read_room(&mut inbuf);
        assert_eq!(&inbuf[..], &[0; 10], "unread bytes stay");
        assert!(inbuf.capacity() - inbuf.len() >= READ_ROOM);
        assert_eq!(kept.len(), 3990);
    }
}
