//! One connection's worth of the peering: channel 1 opened in confirm mode, the
//! declared state replayed, requests and publishes sent, the remote's frames taken
//! through the generated connection and channel machines, and a close.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::protocol::content::{ContentAssembler, encode_content};
use crate::protocol::frame::{FrameType, encode_frame_with, encode_heartbeat, take_payload};
use crate::protocol::generated::constants::FRAME_METHOD;
use crate::protocol::generated::methods::*;
use crate::protocol::generated::peer_agent::{
    Answer, ChannelState, ConnectionState, channel_send, channel_transition, connection_transition,
    hand_content_to_owner, hand_to_owner,
};
use crate::protocol::generated::properties::{BasicProperties, EncodedBasicProperties};
use crate::protocol::{ReplyCode, ShortString};

use super::super::declared::Waiter;
use super::super::error::PeeringError;
use super::super::link::Link;
use super::super::status::PeeringState;
use super::super::{Acker, Delivery, PeeringEvent, Returned};
use super::acks::{AckRun, Send as AckSend};
use super::inbox::{Content, Handed, Inbox, Violation};
use super::pending::{Answered, InFlight, Pending};
use super::{CHANNEL, Command, Ended, Settle, TaskState};

/// Commands handled at most per wake-up before the frames they made are flushed.
const COMMAND_BATCH: usize = 256;

/// One connection's worth of state.
pub(super) struct Session {
    link: Link,
    writer: mpsc::UnboundedSender<Bytes>,
    writer_task: tokio::task::JoinHandle<()>,
    out: BytesMut,
    connection: ConnectionState,
    channel: ChannelState,
    /// Confirm mode is on and the replay has been sent: publishes and requests go
    /// straight out.
    ready: bool,
    /// Replay answers still to come before the peering is `running`.
    replay_left: usize,
    running: bool,
    blocked: bool,
    pending: InFlight,
    next_seq: u64,
    content: ContentAssembler<Method>,
    last_read: Instant,
    last_channel_error: Option<Instant>,
    /// The owner's acks of this channel's deliveries, not yet sent.
    acks: AckRun,
}

impl Session {
    pub(super) fn new(mut link: Link, t: &mut TaskState) -> Session {
        let (writer, writer_task) = link.spawn_writer();
        let mut s = Session {
            link,
            writer,
            writer_task,
            out: BytesMut::new(),
            connection: ConnectionState::Open,
            channel: ChannelState::Closed,
            ready: false,
            replay_left: 0,
            running: false,
            blocked: false,
            pending: InFlight::default(),
            next_seq: 1,
            content: ContentAssembler::new(),
            last_read: Instant::now(),
            last_channel_error: None,
            acks: AckRun::default(),
        };
        s.open_channel(t);
        t.sides.up(&s.link.server_properties);
        s
    }

    /// Runs until the connection ends; also says whether it got to `running`.
    pub(super) async fn run(
        mut self,
        t: &mut TaskState,
        commands: &mut mpsc::UnboundedReceiver<Command>,
    ) -> (Ended, bool) {
        let ended = self.pump(t, commands).await;
        let ran = self.running;
        if ran {
            t.status.count(|c| c.disconnects += 1);
        }
        self.teardown(t);
        (ended, ran)
    }

    async fn pump(
        &mut self,
        t: &mut TaskState,
        commands: &mut mpsc::UnboundedReceiver<Command>,
    ) -> Ended {
        let beat = self.link.heartbeat;
        let mut send_beat = tokio::time::interval(if beat.is_zero() {
            Duration::from_secs(3600)
        } else {
            beat / 2
        });
        loop {
            if let Err(e) = self.flush() {
                return e;
            }
            // Two intervals without a frame from the remote: the link is dead.
            let dead_at = self.last_read + beat * 2;
            tokio::select! {
                read = tokio::io::AsyncReadExt::read_buf(&mut self.link.reader, &mut self.link.inbuf) => {
                    match read {
                        Ok(0) => return Ended::Lost { code: None, text: "the remote closed the socket".into() },
                        Err(e) => return Ended::Lost { code: None, text: format!("socket error: {e}") },
                        Ok(_) => {
                            self.last_read = Instant::now();
                            if let Some(end) = self.process_input(t) {
                                return end;
                            }
                        }
                    }
                }
                c = commands.recv() => match c {
                    None => return self.close(t, commands).await,
                    Some(Command::Stop(done)) => {
                        t.stop_waiters.push(done);
                        return self.close(t, commands).await;
                    }
                    Some(c) => {
                        self.command(t, c);
                        // What else is queued is encoded too, so one flush (and one
                        // write) carries many commands' frames (acks in one multiple ack).
                        for _ in 0..COMMAND_BATCH {
                            match commands.try_recv() {
                                Ok(Command::Stop(done)) => {
                                    t.stop_waiters.push(done);
                                    return self.close(t, commands).await;
                                }
                                Ok(c) => self.command(t, c),
                                Err(_) => break,
                            }
                        }
                    }
                },
                _ = send_beat.tick(), if !beat.is_zero() => encode_heartbeat(&mut self.out),
                _ = tokio::time::sleep_until(dead_at), if !beat.is_zero() => {
                    return Ended::Lost {
                        code: None,
                        text: format!("no heartbeat from the remote for {} s (two intervals)", (beat * 2).as_secs()),
                    };
                }
            }
        }
    }

    fn send_ack(&mut self, delivery_tag: u64, multiple: bool) {
        let ack = Method::BasicAck(BasicAck {
            delivery_tag,
            multiple,
        });
        self.send(CHANNEL, &ack);
    }

    fn flush(&mut self) -> Result<(), Ended> {
        if let Some(run) = self.acks.take() {
            if self.channel == ChannelState::Open {
                self.send_ack(run, true);
            }
        }
        if self.out.is_empty() {
            return Ok(());
        }
        if self.writer.send(self.out.split().freeze()).is_err() {
            return Err(Ended::Lost {
                code: None,
                text: "socket write failed".into(),
            });
        }
        Ok(())
    }

    fn send(&mut self, channel: u16, method: &Method) {
        encode_frame_with(&mut self.out, FRAME_METHOD, channel, |b| method.encode(b));
    }

    fn open_channel(&mut self, t: &mut TaskState) {
        let open = Method::ChannelOpen(ChannelOpen {});
        if let Some(next) = channel_send(self.channel, &open) {
            self.channel = next;
            self.send(CHANNEL, &open);
            self.pending.push(Pending::ChannelOpen);
            t.incarnation += 1;
            t.live
                .store(t.incarnation, std::sync::atomic::Ordering::Release);
            self.acks = AckRun::default();
            self.next_seq = 1;
            self.ready = false;
            self.content = ContentAssembler::new();
        }
    }

    /// The channel is open and in confirm mode: replay, then what waited.
    fn replay(&mut self, t: &mut TaskState) {
        let mut sends = Vec::new();
        for e in t.declared.entries_mut() {
            sends.push((e.id, e.method.clone(), std::mem::take(&mut e.waiters)));
        }
        self.replay_left = sends.len();
        for (id, method, waiters) in sends {
            self.send(CHANNEL, &method);
            self.pending.push(Pending::Entry {
                id,
                waiters,
                replay: true,
                responses: method.info().responses,
            });
        }
        while let Some((method, reply)) = t.waiting.pop_front() {
            self.send_request(method, reply);
        }
        self.ready = true;
        self.send_outbox(t);
        if self.replay_left == 0 {
            self.now_running(t);
        }
    }

    fn now_running(&mut self, t: &mut TaskState) {
        if !self.running {
            self.running = true;
            t.status.count(|c| c.connects += 1);
        }
        let (state, why) = if self.blocked {
            (
                PeeringState::Blocked,
                "connected; the remote blocks publishing",
            )
        } else {
            (PeeringState::Running, "connected and replayed")
        };
        t.status.set(state, why);
    }

    fn send_request(&mut self, method: Method, reply: Waiter) {
        let responses = method.info().responses;
        self.send(CHANNEL, &method);
        self.pending.push(Pending::Request(reply, responses));
    }

    fn send_outbox(&mut self, t: &mut TaskState) {
        let (mut sent, mut resent) = (0, 0);
        while let Some(mut out) = t.outbox.next_to_send() {
            if out.resent {
                resent += 1;
                if let Some(mark) = t.config.mark_resent {
                    out.properties = mark(&out.properties);
                }
            }
            self.send(CHANNEL, &Method::BasicPublish(out.method.clone()));
            encode_content(
                &mut self.out,
                CHANNEL,
                BasicProperties::CLASS_ID,
                out.properties.as_bytes(),
                &out.body,
                self.link.frame_max,
            );
            t.outbox.sent(self.next_seq, out);
            self.next_seq += 1;
            sent += 1;
        }
        if sent > 0 {
            t.status.count(|c| {
                c.sent += sent;
                c.resent += resent;
            });
        }
    }

    /// A command while connected.
    fn command(&mut self, t: &mut TaskState, c: Command) {
        match c {
            Command::Publish(out) => {
                t.outbox.push(out);
                if self.ready {
                    self.send_outbox(t);
                }
                t.count_outbox();
            }
            Command::Request(method, reply) => {
                if !self.ready {
                    t.hold(Command::Request(method, reply));
                    return;
                }
                let Some((method, reply)) = t.admit(method, reply) else {
                    return;
                };
                match t.declared.record(method.clone()) {
                    Some((id, true)) => {
                        self.send(CHANNEL, &method);
                        self.pending.push(Pending::Entry {
                            id,
                            waiters: vec![reply],
                            replay: false,
                            responses: method.info().responses,
                        });
                    }
                    // The same binding again: answered as the remote would.
                    Some((_, false)) => {
                        let ok = match method {
                            Method::ExchangeBind(_) => Method::ExchangeBindOk(ExchangeBindOk {}),
                            _ => Method::QueueBindOk(QueueBindOk {}),
                        };
                        let _ = reply.send(Ok(ok));
                    }
                    None => {
                        t.declared.forget_undone(&method);
                        self.send_request(method, reply);
                    }
                }
            }
            Command::Settle {
                incarnation,
                delivery_tag,
                settle,
            } => {
                if incarnation != t.incarnation || self.channel != ChannelState::Open {
                    return;
                }
                match settle {
                    Settle::Ack => {
                        if let AckSend::Single(tag) = self.acks.ack(delivery_tag) {
                            self.send_ack(tag, false);
                        }
                    }
                    Settle::Reject { requeue } => {
                        if let Some(run) = self.acks.reject(delivery_tag) {
                            self.send_ack(run, true);
                        }
                        let m = Method::BasicReject(BasicReject {
                            delivery_tag,
                            requeue,
                        });
                        self.send(CHANNEL, &m);
                    }
                }
            }
            Command::AttachSide(channel, owner) => t.sides.attach(channel, owner),
            Command::SideSend(channel, session, method) => {
                if t.sides.writable(channel, session) {
                    self.send(channel, &method);
                }
            }
            Command::SidePayload(channel, session, payload) => {
                if t.sides.writable(channel, session) {
                    encode_frame_with(&mut self.out, FRAME_METHOD, channel, |b| {
                        b.extend_from_slice(&payload)
                    });
                }
            }
            Command::Start | Command::Stop(_) => {}
        }
    }

    /// Every whole frame in the read buffer; `Some` ends the connection.
    fn process_input(&mut self, t: &mut TaskState) -> Option<Ended> {
        loop {
            let frame = match self.link.frames.peek(&self.link.inbuf) {
                Ok(Some(f)) => f,
                Ok(None) => return None,
                Err(e) => {
                    return Some(self.violation(Violation {
                        code: ReplyCode::FrameError,
                        text: e.to_string(),
                    }));
                }
            };
            let (channel, frame_type, len) = (frame.channel, frame.frame_type, frame.payload.len());
            let payload = take_payload(&mut self.link.inbuf, len);
            let mut inbox = Inbox::default();
            let step = match frame_type {
                FrameType::Heartbeat => Ok(()),
                // A tunnel service's method goes to its side channel undecoded.
                FrameType::Method
                    if channel > CHANNEL
                        && t.sides.owns(channel)
                        && crate::protocol::generated::services::service_method_ids(&payload)
                            .is_some() =>
                {
                    t.sides.deliver_service(channel, payload);
                    Ok(())
                }
                FrameType::Method => match Method::decode(&payload) {
                    // A side channel's methods go to its owner (`side.rs`).
                    Ok(m) if channel > CHANNEL && t.sides.owns(channel) => {
                        t.sides.deliver(channel, m);
                        Ok(())
                    }
                    Ok(m) => self.incoming(channel, m, &mut inbox),
                    Err(e) => Err(Violation {
                        code: ReplyCode::SyntaxError,
                        text: e.to_string(),
                    }),
                },
                FrameType::Header | FrameType::Body if channel == CHANNEL => {
                    self.content_frame(frame_type, payload, &mut inbox)
                }
                FrameType::Header | FrameType::Body => Err(Violation {
                    code: ReplyCode::ChannelError,
                    text: format!("content on channel {channel}, which we never opened"),
                }),
            };
            if let Err(v) = step {
                return Some(self.violation(v));
            }
            for handed in inbox.0 {
                if let Some(end) = self.handle(t, handed) {
                    return Some(end);
                }
            }
        }
    }

    /// One incoming method, through the generated machines.
    fn incoming(&mut self, channel: u16, m: Method, inbox: &mut Inbox) -> Result<(), Violation> {
        let refused = |r: crate::protocol::generated::peer_agent::Refusal| Violation {
            code: r.code,
            text: format!("{}: {}", m.name(), r.text),
        };
        if channel == 0 {
            let Some(t) = connection_transition(self.connection, &m).map_err(refused)? else {
                return Ok(());
            };
            for a in t.send {
                if *a == Answer::ConnectionCloseOk {
                    self.send(0, &Method::ConnectionCloseOk(ConnectionCloseOk {}));
                }
            }
            self.connection = t.next;
            if t.to_owner {
                let _ = hand_to_owner(inbox, 0, m);
            }
            return Ok(());
        }
        if channel != CHANNEL {
            return Err(Violation {
                code: ReplyCode::ChannelError,
                text: format!("{} on channel {channel}, which we never opened", m.name()),
            });
        }
        let Some(t) = channel_transition(self.channel, &m).map_err(refused)? else {
            return Ok(());
        };
        for a in t.send {
            match a {
                Answer::ChannelCloseOk => {
                    self.send(CHANNEL, &Method::ChannelCloseOk(ChannelCloseOk {}))
                }
                Answer::ChannelFlowOk => {
                    let active = matches!(&m, Method::ChannelFlow(f) if f.active);
                    self.send(CHANNEL, &Method::ChannelFlowOk(ChannelFlowOk { active }));
                }
                _ => {}
            }
        }
        self.channel = t.next;
        if t.to_owner {
            if m.info().has_content {
                let class_id = m.class_id();
                self.content.start(class_id, m).map_err(|e| Violation {
                    code: ReplyCode::UnexpectedFrame,
                    text: e.to_string(),
                })?;
            } else {
                self.content.method_frame().map_err(|e| Violation {
                    code: ReplyCode::UnexpectedFrame,
                    text: e.to_string(),
                })?;
                let _ = hand_to_owner(inbox, CHANNEL, m);
            }
        }
        Ok(())
    }

    fn content_frame(
        &mut self,
        frame_type: FrameType,
        payload: Bytes,
        inbox: &mut Inbox,
    ) -> Result<(), Violation> {
        let done = if frame_type == FrameType::Header {
            self.content.header(payload)
        } else {
            self.content.body(payload)
        };
        let violation = |e: crate::protocol::DecodeError| Violation {
            code: ReplyCode::UnexpectedFrame,
            text: e.to_string(),
        };
        if let Some(done) = done.map_err(violation)? {
            let properties =
                EncodedBasicProperties::decode(done.header.properties).map_err(violation)?;
            let content = Content {
                properties,
                body: done.body,
            };
            let _ = hand_content_to_owner(inbox, CHANNEL, done.method, content);
        }
        Ok(())
    }

    /// What the machines handed over.
    fn handle(&mut self, t: &mut TaskState, h: Handed) -> Option<Ended> {
        match h {
            Handed::Response(m) => return self.response(t, m),
            Handed::Deliver(m, properties, body) => {
                t.status.count(|c| c.delivered += 1);
                let no_ack = t.declared.consumer_no_ack(&m.consumer_tag);
                let delivery = Delivery {
                    consumer_tag: m.consumer_tag,
                    exchange: m.exchange,
                    routing_key: m.routing_key,
                    redelivered: m.redelivered,
                    properties,
                    body,
                    acker: Acker {
                        commands: t.commands_tx.clone(),
                        incarnation: t.incarnation,
                        live: t.live.clone(),
                        delivery_tag: m.delivery_tag,
                        no_ack,
                    },
                };
                let _ = t.events.send(PeeringEvent::Delivery(delivery));
            }
            Handed::Return(m, properties, body) => {
                let _ = t.events.send(PeeringEvent::Returned(Returned {
                    reply_code: m.reply_code,
                    reply_text: m.reply_text,
                    exchange: m.exchange,
                    routing_key: m.routing_key,
                    properties,
                    body,
                }));
            }
            Handed::Confirm { tag, multiple, ok } => {
                let n = t.outbox.settle(tag, multiple, ok);
                if ok {
                    t.status.count(|c| c.confirmed += n);
                }
                t.count_outbox();
            }
            Handed::Cancelled(tag) => {
                t.declared.forget_consumer(&tag);
                let _ = t.events.send(PeeringEvent::Cancelled(tag));
            }
            Handed::Flow(active) => {
                let _ = t.events.send(PeeringEvent::Flow(active));
            }
            Handed::Blocked(reason) => {
                self.blocked = true;
                t.status.set(
                    PeeringState::Blocked,
                    format!("the remote blocks publishing: {reason}"),
                );
            }
            Handed::Unblocked => {
                self.blocked = false;
                if self.running {
                    t.status
                        .set(PeeringState::Running, "the remote unblocked publishing");
                }
            }
            Handed::ChannelClose(c) => return self.channel_closed(t, c),
            Handed::ConnectionClose(c) => {
                let text = c.reply_text.to_string();
                let _ = t.events.send(PeeringEvent::ConnectionClosed {
                    code: c.reply_code,
                    text: text.clone(),
                });
                let _ = self.flush();
                return Some(Ended::Lost {
                    code: Some(c.reply_code),
                    text: format!("the remote closed the connection: {} {text}", c.reply_code),
                });
            }
        }
        None
    }

    fn response(&mut self, t: &mut TaskState, m: Method) -> Option<Ended> {
        match self.pending.answer(m, &mut t.declared) {
            Ok(Answered::ChannelOpen) => {
                let select = Method::ConfirmSelect(ConfirmSelect { nowait: false });
                self.send(CHANNEL, &select);
                self.pending.push(Pending::ConfirmSelect);
            }
            Ok(Answered::ConfirmSelect) => self.replay(t),
            Ok(Answered::Entry { replay: true }) => {
                self.replay_left = self.replay_left.saturating_sub(1);
                if self.replay_left == 0 {
                    self.now_running(t);
                }
            }
            Ok(Answered::Entry { replay: false } | Answered::Request) => {}
            Err(text) => {
                return Some(self.violation(Violation {
                    code: ReplyCode::CommandInvalid,
                    text,
                }));
            }
        }
        None
    }

    /// The remote closed channel 1 (a soft error, answering the oldest request or a
    /// publish). That request fails, the rest is sent again on a new channel.
    fn channel_closed(&mut self, t: &mut TaskState, c: ChannelClose) -> Option<Ended> {
        let text = c.reply_text.to_string();
        let err = PeeringError::Refused {
            code: c.reply_code,
            text: text.clone(),
        };
        t.status.error(
            Some(c.reply_code),
            format!(
                "the remote closed the channel: {} {text} (class {}, method {})",
                c.reply_code, c.class_id, c.method_id
            ),
        );
        let _ = t.events.send(PeeringEvent::ChannelClosed {
            code: c.reply_code,
            text,
        });
        if (c.class_id, c.method_id) == (BasicPublish::CLASS_ID, BasicPublish::METHOD_ID) {
            if let Some(out) = t.outbox.take_oldest_in_flight() {
                let _ = out.done.send(Err(err.clone()));
            }
        } else {
            self.pending.fail_oldest(&mut t.declared, &err);
        }
        self.forget_pending(t);
        t.outbox.requeue_in_flight();
        // A channel that fails again at once (say, a replayed declaration the remote now
        // refuses every time) is given the back-off of a lost connection.
        let now = Instant::now();
        let again = self
            .last_channel_error
            .is_some_and(|at| now.duration_since(at) < Duration::from_secs(1));
        self.last_channel_error = Some(now);
        if again {
            return Some(Ended::Lost {
                code: Some(c.reply_code),
                text: "the remote keeps closing the channel".into(),
            });
        }
        self.channel = ChannelState::Closed;
        self.open_channel(t);
        None
    }

    /// Requests on a channel or connection that is gone: declarations go back to be
    /// replayed, other requests fail.
    fn forget_pending(&mut self, t: &mut TaskState) {
        self.ready = false;
        self.replay_left = 0;
        self.pending.forget(&mut t.declared);
    }

    /// The remote broke the protocol: close the connection with the code and go.
    fn violation(&mut self, v: Violation) -> Ended {
        self.send(
            0,
            &Method::ConnectionClose(ConnectionClose {
                reply_code: v.code.code(),
                reply_text: ShortString::new(v.text.clone()).unwrap_or_default(),
                class_id: 0,
                method_id: 0,
            }),
        );
        let _ = self.flush();
        Ended::Lost {
            code: Some(v.code.code()),
            text: format!("protocol error from the remote: {}", v.text),
        }
    }

    /// Active close: connection.close, then wait (bounded) for close-ok.
    async fn close(
        &mut self,
        t: &mut TaskState,
        commands: &mut mpsc::UnboundedReceiver<Command>,
    ) -> Ended {
        // Acks the owner gave go out before the close.
        if let Some(run) = self.acks.take() {
            if self.channel == ChannelState::Open {
                self.send_ack(run, true);
            }
        }
        let close = Method::ConnectionClose(ConnectionClose {
            reply_code: ReplyCode::ReplySuccess.code(),
            reply_text: ShortString::from_static("peering stopped"),
            class_id: 0,
            method_id: 0,
        });
        self.send(0, &close);
        self.connection = ConnectionState::Closing;
        if self.flush().is_err() {
            return Ended::Stopped;
        }
        let deadline = Instant::now() + t.config.close_timeout;
        let mut handle_alive = true;
        loop {
            tokio::select! {
                read = tokio::io::AsyncReadExt::read_buf(&mut self.link.reader, &mut self.link.inbuf) => {
                    if !matches!(read, Ok(n) if n > 0) {
                        return Ended::Stopped;
                    }
                    while let Ok(Some(f)) = self.link.frames.peek(&self.link.inbuf) {
                        let (ft, len) = (f.frame_type, f.payload.len());
                        let payload = take_payload(&mut self.link.inbuf, len);
                        if ft != FrameType::Method {
                            continue;
                        }
                        match Method::decode(&payload) {
                            Ok(Method::ConnectionCloseOk(_)) => return Ended::Stopped,
                            Ok(Method::ConnectionClose(_)) => {
                                self.send(0, &Method::ConnectionCloseOk(ConnectionCloseOk {}));
                                let _ = self.flush();
                                return Ended::Stopped;
                            }
                            _ => {}
                        }
                    }
                }
                c = commands.recv(), if handle_alive => match c {
                    Some(Command::Stop(done)) => t.stop_waiters.push(done),
                    Some(other) => { t.hold(other); }
                    None => handle_alive = false,
                },
                _ = tokio::time::sleep_until(deadline) => return Ended::Stopped,
            }
        }
    }

    fn teardown(mut self, t: &mut TaskState) {
        t.sides.down();
        self.forget_pending(t);
        t.outbox.requeue_in_flight();
        t.count_outbox();
        // Let the writer finish what it has, but not forever (a stalled socket).
        let writer_task = self.writer_task;
        drop(self.writer);
        tokio::spawn(async move {
            let abort = writer_task.abort_handle();
            if tokio::time::timeout(Duration::from_secs(1), writer_task)
                .await
                .is_err()
            {
                abort.abort();
            }
        });
    }
}
