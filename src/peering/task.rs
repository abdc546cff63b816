//! The peering task: one tokio task per peering, owning its connection, its declared
//! state and its outbox. The handle talks to it through [`Command`]s; it talks back
//! through [`PeeringEvent`]s, the status board, and the futures of requests and
//! publishes.
//!
//! Its life: idle until started; then connect, open channel 1 in confirm mode, replay the
//! declared state and the requests that waited, send the outbox; run until the link
//! fails or the owner stops it; back off and do it again. The channel's incoming methods
//! go through the generated channel machine, and what it hands to the owner arrives as a
//! [`Handed`] value (the generated [`PeerOwner`] trait, implemented by [`Inbox`]).

use std::collections::VecDeque;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::protocol::content::{ContentAssembler, encode_content};
use crate::protocol::frame::{FrameType, encode_frame_with, encode_heartbeat, take_payload};
use crate::protocol::generated::constants::FRAME_METHOD;
use crate::protocol::generated::methods::*;
use crate::protocol::generated::peer_agent::{
    Answer, ChannelState, ConnectionState, PeerOwner, channel_send, channel_transition,
    connection_transition, hand_content_to_owner, hand_to_owner,
};
use crate::protocol::generated::properties::{BasicProperties, EncodedBasicProperties};
use crate::protocol::{ReplyCode, ShortString};

use super::config::PeeringConfig;
use super::declared::{Declared, Waiter};
use super::error::PeeringError;
use super::link::{self, ConnectError, Link};
use super::outbox::{Outbox, Outgoing};
use super::status::{PeeringState, StatusBoard};
use super::{Acker, Delivery, PeeringEvent, Returned};

/// The peering's one channel.
const CHANNEL: u16 = 1;

/// What the handle asks of the task.
#[derive(Debug)]
pub(crate) enum Command {
    Start,
    Stop(oneshot::Sender<()>),
    Request(Method, Waiter),
    Publish(Outgoing),
    Settle {
        incarnation: u64,
        delivery_tag: u64,
        settle: Settle,
    },
}

/// What the owner does with a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Settle {
    Ack,
    Reject { requeue: bool },
}

/// Why a connection ended.
enum Ended {
    /// The owner stopped the peering.
    Stopped,
    /// Lost: retry (if reconnecting).
    Lost { code: Option<u16>, text: String },
    /// Retrying cannot help.
    Final { code: Option<u16>, text: String },
}

impl From<ConnectError> for Ended {
    fn from(e: ConnectError) -> Self {
        match e {
            ConnectError::SelfPeering(_) => Ended::Final {
                code: None,
                text: e.to_string(),
            },
            ConnectError::Refused { code, ref text } => Ended::Lost {
                code: Some(code),
                text: text.clone(),
            },
            other => Ended::Lost {
                code: None,
                text: other.to_string(),
            },
        }
    }
}

/// Everything that outlives a connection.
pub(crate) struct TaskState {
    config: PeeringConfig,
    status: StatusBoard,
    events: mpsc::UnboundedSender<PeeringEvent>,
    /// For the ackers handed out with deliveries.
    commands_tx: mpsc::WeakUnboundedSender<Command>,
    declared: Declared,
    outbox: Outbox,
    /// Requests that are not declarations, waiting for the channel.
    waiting: VecDeque<(Method, Waiter)>,
    /// Counts channel openings; delivery tags are only good on the one they came from.
    incarnation: u64,
    /// For names and tags the peering makes up.
    serial: u64,
    stop_waiters: Vec<oneshot::Sender<()>>,
}

pub(crate) async fn run(
    config: PeeringConfig,
    mut commands: mpsc::UnboundedReceiver<Command>,
    commands_tx: mpsc::WeakUnboundedSender<Command>,
    events: mpsc::UnboundedSender<PeeringEvent>,
    status: StatusBoard,
) {
    let mut t = TaskState {
        config,
        status,
        events,
        commands_tx,
        declared: Declared::default(),
        outbox: Outbox::default(),
        waiting: VecDeque::new(),
        incarnation: 0,
        serial: 0,
        stop_waiters: Vec::new(),
    };
    // Nothing connects before start().
    loop {
        match commands.recv().await {
            None => return t.finish_stopped(),
            Some(Command::Start) => break,
            Some(other) => {
                if t.hold(other) {
                    return t.finish_stopped();
                }
            }
        }
    }
    let mut attempt = 0u32;
    loop {
        let reason = match attempt {
            0 => "started".to_owned(),
            n => format!("reconnect attempt {n}"),
        };
        t.status.set(PeeringState::Connecting, reason);
        let config = t.config.clone();
        let connecting = link::connect(&config);
        tokio::pin!(connecting);
        let connected = loop {
            tokio::select! {
                r = &mut connecting => break r,
                c = commands.recv() => match c {
                    None => return t.finish_stopped(),
                    Some(c) => if t.hold(c) { return t.finish_stopped() },
                },
            }
        };
        let (ended, ran) = match connected {
            Ok(link) => Session::new(link, &mut t).run(&mut t, &mut commands).await,
            Err(e) => (Ended::from(e), false),
        };
        if ran {
            attempt = 0;
        }
        match ended {
            Ended::Stopped => return t.finish_stopped(),
            Ended::Final { code, text } => {
                t.status.error(code, text.clone());
                return t.finish_failed(code, text, &mut commands).await;
            }
            Ended::Lost { code, text } => {
                t.status.error(code, text.clone());
                let Some(backoff) = t.config.reconnect else {
                    return t.finish_failed(code, text, &mut commands).await;
                };
                attempt = attempt.saturating_add(1);
                let until = Instant::now() + backoff.delay(attempt);
                t.status
                    .set(PeeringState::BackingOff { until, attempt }, text);
                let wait = tokio::time::sleep_until(until);
                tokio::pin!(wait);
                loop {
                    tokio::select! {
                        _ = &mut wait => break,
                        c = commands.recv() => match c {
                            None => return t.finish_stopped(),
                            Some(c) => if t.hold(c) { return t.finish_stopped() },
                        },
                    }
                }
            }
        }
    }
}

impl TaskState {
    fn next_serial(&mut self) -> u64 {
        self.serial += 1;
        self.serial
    }

    /// Takes a command while there is no open channel. True: stop.
    fn hold(&mut self, c: Command) -> bool {
        match c {
            Command::Start => {}
            Command::Stop(done) => {
                self.stop_waiters.push(done);
                return true;
            }
            Command::Publish(out) => {
                self.outbox.push(out);
                self.count_outbox();
            }
            Command::Request(method, reply) => {
                if let Some((method, reply)) = self.admit(method, reply) {
                    match self.declared.record(method.clone()) {
                        Some((id, _)) => {
                            if let Some(e) = self.declared.get_mut(id) {
                                e.waiters.push(reply);
                            }
                        }
                        None => {
                            self.declared.forget_undone(&method);
                            self.waiting.push_back((method, reply));
                        }
                    }
                }
            }
            // Tags from a closed channel mean nothing now: the remote has requeued those
            // deliveries and will deliver them again.
            Command::Settle { .. } => {}
        }
        false
    }

    /// Checks and completes a request; `None` when refused (the waiter has been answered).
    fn admit(&mut self, method: Method, reply: Waiter) -> Option<(Method, Waiter)> {
        let info = method.info();
        // Only synchronous requests without content: connection and channel methods are
        // the peering's own, publishes go through the outbox, acks through an Acker, and
        // basic.get, confirm.select and tx.select would change what the channel means.
        let refusal = if info.has_content {
            Some(PeeringError::NotARequest(
                "a method with content (use publish)",
            ))
        } else if !info.received_by_server
            || !info.synchronous
            || info.class_id == 10
            || info.class_id == 20
            || matches!(
                method,
                Method::BasicGet(_) | Method::ConfirmSelect(_) | Method::TxSelect(_)
            )
        {
            Some(PeeringError::NotARequest(info.name))
        } else {
            None
        };
        if let Some(e) = refusal {
            let _ = reply.send(Err(e));
            return None;
        }
        Some((self.complete(method), reply))
    }

    /// Server-named queues and consumer tags would change on every replay, breaking
    /// the bindings and consumers that name them: the peering names them itself.
    /// no-wait is off: every request is answered.
    fn complete(&mut self, method: Method) -> Method {
        match method {
            Method::QueueDeclare(mut m) => {
                if m.queue.is_empty() && !m.passive {
                    m.queue = self.made_up_name("fedamq.peering.q");
                }
                m.no_wait = false;
                Method::QueueDeclare(m)
            }
            Method::BasicConsume(mut m) => {
                if m.consumer_tag.is_empty() {
                    m.consumer_tag = self.made_up_name("fedamq.peering.ctag");
                }
                m.no_wait = false;
                Method::BasicConsume(m)
            }
            Method::ExchangeDeclare(mut m) => {
                m.no_wait = false;
                Method::ExchangeDeclare(m)
            }
            Method::QueueBind(mut m) => {
                m.no_wait = false;
                Method::QueueBind(m)
            }
            Method::ExchangeBind(mut m) => {
                m.no_wait = false;
                Method::ExchangeBind(m)
            }
            Method::ExchangeUnbind(mut m) => {
                m.no_wait = false;
                Method::ExchangeUnbind(m)
            }
            Method::BasicCancel(mut m) => {
                m.no_wait = false;
                Method::BasicCancel(m)
            }
            Method::QueueDelete(mut m) => {
                m.no_wait = false;
                Method::QueueDelete(m)
            }
            Method::ExchangeDelete(mut m) => {
                m.no_wait = false;
                Method::ExchangeDelete(m)
            }
            Method::QueuePurge(mut m) => {
                m.no_wait = false;
                Method::QueuePurge(m)
            }
            other => other,
        }
    }

    fn made_up_name(&mut self, prefix: &str) -> ShortString {
        let n = self.next_serial();
        let name = format!("{prefix}-{:08x}-{n}", rand::random::<u32>());
        ShortString::new(name).unwrap_or_default()
    }

    fn count_outbox(&self) {
        let depth = self.outbox.depth() as u64;
        self.status.count(|c| c.outbox_depth = depth);
    }

    /// Every waiter learns the peering is over.
    fn fail_everything(&mut self, err: &PeeringError) {
        self.outbox.fail_all(err);
        self.count_outbox();
        for e in self.declared.entries_mut() {
            for w in e.waiters.drain(..) {
                let _ = w.send(Err(err.clone()));
            }
        }
        for (_, w) in self.waiting.drain(..) {
            let _ = w.send(Err(err.clone()));
        }
    }

    fn finish_stopped(mut self) {
        self.fail_everything(&PeeringError::Stopped);
        self.status
            .set(PeeringState::Stopped, "stopped by its owner");
        for w in self.stop_waiters.drain(..) {
            let _ = w.send(());
        }
    }

    /// Failed for good: says so, then answers every command with an error until stopped.
    async fn finish_failed(
        mut self,
        code: Option<u16>,
        text: String,
        commands: &mut mpsc::UnboundedReceiver<Command>,
    ) {
        self.fail_everything(&PeeringError::Stopped);
        self.status.set(
            PeeringState::Failed {
                code,
                text: text.clone(),
            },
            text,
        );
        while let Some(c) = commands.recv().await {
            match c {
                Command::Stop(done) => {
                    self.stop_waiters.push(done);
                    break;
                }
                Command::Publish(out) => {
                    let _ = out.done.send(Err(PeeringError::Stopped));
                }
                Command::Request(_, w) => {
                    let _ = w.send(Err(PeeringError::Stopped));
                }
                Command::Start | Command::Settle { .. } => {}
            }
        }
        for w in self.stop_waiters.drain(..) {
            let _ = w.send(());
        }
    }
}

/// A request on the wire, waiting for its answer. Answers come in request order.
enum Pending {
    ChannelOpen,
    ConfirmSelect,
    /// A declared-state entry (first asked for, or replayed).
    Entry {
        id: u64,
        waiters: Vec<Waiter>,
        replay: bool,
        responses: &'static [(u16, u16)],
    },
    /// Any other request.
    Request(Waiter, &'static [(u16, u16)]),
}

/// One connection's worth of state.
struct Session {
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
    pending: VecDeque<Pending>,
    next_seq: u64,
    content: ContentAssembler<Method>,
    last_read: Instant,
    last_channel_error: Option<Instant>,
}

/// What the generated channel machine hands to the owner.
#[derive(Debug)]
enum Handed {
    Response(Method),
    Deliver(BasicDeliver, EncodedBasicProperties, Bytes),
    Return(BasicReturn, EncodedBasicProperties, Bytes),
    Confirm { tag: u64, multiple: bool, ok: bool },
    Cancelled(ShortString),
    ChannelClose(ChannelClose),
    Flow(bool),
    ConnectionClose(ConnectionClose),
    Blocked(ShortString),
    Unblocked,
}

/// The generated [`PeerOwner`] trait, collecting what it is handed.
#[derive(Default)]
struct Inbox(Vec<Handed>);

/// A content as the peering keeps it.
struct Content {
    properties: EncodedBasicProperties,
    body: Bytes,
}

macro_rules! responses {
    ($($name:ident: $ty:ident),* $(,)?) => {
        $(fn $name(&mut self, _channel: u16, m: $ty) {
            self.0.push(Handed::Response(Method::$ty(m)));
        })*
    };
}

impl PeerOwner for Inbox {
    type Content = Content;
    responses! {
        connection_start: ConnectionStart,
        connection_open_ok: ConnectionOpenOk,
        connection_close_ok: ConnectionCloseOk,
        connection_update_secret_ok: ConnectionUpdateSecretOk,
        channel_open_ok: ChannelOpenOk,
        channel_flow_ok: ChannelFlowOk,
        channel_close_ok: ChannelCloseOk,
        exchange_declare_ok: ExchangeDeclareOk,
        exchange_delete_ok: ExchangeDeleteOk,
        exchange_bind_ok: ExchangeBindOk,
        exchange_unbind_ok: ExchangeUnbindOk,
        queue_declare_ok: QueueDeclareOk,
        queue_bind_ok: QueueBindOk,
        queue_purge_ok: QueuePurgeOk,
        queue_delete_ok: QueueDeleteOk,
        queue_unbind_ok: QueueUnbindOk,
        basic_qos_ok: BasicQosOk,
        basic_consume_ok: BasicConsumeOk,
        basic_cancel_ok: BasicCancelOk,
        basic_get_empty: BasicGetEmpty,
        basic_recover_ok: BasicRecoverOk,
        confirm_select_ok: ConfirmSelectOk,
        tx_select_ok: TxSelectOk,
        tx_commit_ok: TxCommitOk,
        tx_rollback_ok: TxRollbackOk,
    }
    fn connection_close(&mut self, _channel: u16, m: ConnectionClose) {
        self.0.push(Handed::ConnectionClose(m));
    }
    fn connection_blocked(&mut self, _channel: u16, m: ConnectionBlocked) {
        self.0.push(Handed::Blocked(m.reason));
    }
    fn connection_unblocked(&mut self, _channel: u16, _m: ConnectionUnblocked) {
        self.0.push(Handed::Unblocked);
    }
    fn channel_flow(&mut self, _channel: u16, m: ChannelFlow) {
        self.0.push(Handed::Flow(m.active));
    }
    fn channel_close(&mut self, _channel: u16, m: ChannelClose) {
        self.0.push(Handed::ChannelClose(m));
    }
    fn basic_cancel(&mut self, _channel: u16, m: BasicCancel) {
        self.0.push(Handed::Cancelled(m.consumer_tag));
    }
    fn basic_return(&mut self, _channel: u16, m: BasicReturn, c: Content) {
        self.0.push(Handed::Return(m, c.properties, c.body));
    }
    fn basic_deliver(&mut self, _channel: u16, m: BasicDeliver, c: Content) {
        self.0.push(Handed::Deliver(m, c.properties, c.body));
    }
    fn basic_get_ok(&mut self, _channel: u16, m: BasicGetOk, _c: Content) {
        // basic.get is not offered as a request, so this answers nothing we asked.
        self.0.push(Handed::Response(Method::BasicGetOk(m)));
    }
    fn basic_ack(&mut self, _channel: u16, m: BasicAck) {
        self.0.push(Handed::Confirm {
            tag: m.delivery_tag,
            multiple: m.multiple,
            ok: true,
        });
    }
    fn basic_nack(&mut self, _channel: u16, m: BasicNack) {
        self.0.push(Handed::Confirm {
            tag: m.delivery_tag,
            multiple: m.multiple,
            ok: false,
        });
    }
}

/// A protocol violation by the remote: we close the connection with this code.
struct Violation {
    code: ReplyCode,
    text: String,
}

impl Session {
    fn new(mut link: Link, t: &mut TaskState) -> Session {
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
            pending: VecDeque::new(),
            next_seq: 1,
            content: ContentAssembler::new(),
            last_read: Instant::now(),
            last_channel_error: None,
        };
        s.open_channel(t);
        s
    }

    /// Runs until the connection ends; also says whether it got to `running`.
    async fn run(
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
                    Some(c) => self.command(t, c),
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

    fn flush(&mut self) -> Result<(), Ended> {
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
            self.pending.push_back(Pending::ChannelOpen);
            t.incarnation += 1;
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
            self.pending.push_back(Pending::Entry {
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
        self.pending.push_back(Pending::Request(reply, responses));
    }

    fn send_outbox(&mut self, t: &mut TaskState) {
        let mut sent = 0;
        while let Some(out) = t.outbox.next_to_send() {
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
            t.status.count(|c| c.sent += sent);
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
                        self.pending.push_back(Pending::Entry {
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
                let m = match settle {
                    Settle::Ack => Method::BasicAck(BasicAck {
                        delivery_tag,
                        multiple: false,
                    }),
                    Settle::Reject { requeue } => Method::BasicReject(BasicReject {
                        delivery_tag,
                        requeue,
                    }),
                };
                self.send(CHANNEL, &m);
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
                FrameType::Method => match Method::decode(&payload) {
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
                let no_ack = t.declared.entries_mut().any(|e| {
                    matches!(&e.method, Method::BasicConsume(c)
                        if c.consumer_tag == m.consumer_tag && c.no_ack)
                });
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
        let Some(p) = self.pending.pop_front() else {
            return Some(self.violation(Violation {
                code: ReplyCode::CommandInvalid,
                text: format!("{} answers nothing we asked", m.name()),
            }));
        };
        let id = (m.class_id(), m.method_id());
        match p {
            Pending::ChannelOpen if matches!(m, Method::ChannelOpenOk(_)) => {
                let select = Method::ConfirmSelect(ConfirmSelect { nowait: false });
                self.send(CHANNEL, &select);
                self.pending.push_back(Pending::ConfirmSelect);
            }
            Pending::ConfirmSelect if matches!(m, Method::ConfirmSelectOk(_)) => self.replay(t),
            Pending::Entry {
                id: entry,
                waiters,
                replay,
                responses,
            } if responses.contains(&id) => {
                // Owners who asked again while it was on the wire are answered too.
                let later = t
                    .declared
                    .get_mut(entry)
                    .map(|e| std::mem::take(&mut e.waiters))
                    .unwrap_or_default();
                for w in waiters.into_iter().chain(later) {
                    let _ = w.send(Ok(m.clone()));
                }
                if replay {
                    self.replay_left = self.replay_left.saturating_sub(1);
                    if self.replay_left == 0 {
                        self.now_running(t);
                    }
                }
            }
            Pending::Request(w, responses) if responses.contains(&id) => {
                let _ = w.send(Ok(m));
            }
            _ => {
                return Some(self.violation(Violation {
                    code: ReplyCode::CommandInvalid,
                    text: format!("{} does not answer what we asked", m.name()),
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
        } else if let Some(first) = self.pending.pop_front() {
            match first {
                Pending::Entry { id, waiters, .. } => {
                    t.declared.remove(id);
                    for w in waiters {
                        let _ = w.send(Err(err.clone()));
                    }
                }
                Pending::Request(w, _) => {
                    let _ = w.send(Err(err.clone()));
                }
                other => self.pending.push_front(other),
            }
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
        for p in self.pending.drain(..) {
            match p {
                Pending::Entry { id, waiters, .. } => {
                    if let Some(e) = t.declared.get_mut(id) {
                        e.waiters.extend(waiters);
                    }
                }
                Pending::Request(w, _) => {
                    let _ = w.send(Err(PeeringError::Disconnected));
                }
                Pending::ChannelOpen | Pending::ConfirmSelect => {}
            }
        }
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
