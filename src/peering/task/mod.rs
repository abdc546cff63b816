//! The peering task: one tokio task per peering, owning its connection, its declared
//! state and its outbox. The handle talks to it through [`Command`]s; it talks back
//! through [`PeeringEvent`]s, the status board, and the futures of requests and
//! publishes.
//!
//! Its life, here: idle until started; then connect, run a [`session::Session`] until
//! the link fails or the owner stops it; back off and do it again. Its parts:
//!
//! - `session.rs`: one connection's worth: open channel 1 in confirm mode, replay the
//!   declared state and the requests that waited, send the outbox, and take the
//!   remote's frames through the generated machines;
//! - `inbox.rs`: what those machines hand to the owner (the generated `PeerOwner`
//!   trait, collected as `Handed` values);
//! - `pending.rs`: matching the remote's answers to the requests on the wire, in order;
//! - `requests.rs`: which requests an owner may make, completed so a replay repeats
//!   them exactly.

mod acks;
mod inbox;
mod pending;
mod requests;
mod session;
pub(crate) mod side;

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::protocol::generated::methods::Method;

use super::PeeringEvent;
use super::config::PeeringConfig;
use super::declared::{Declared, Waiter};
use super::error::PeeringError;
use super::link::{self, ConnectError};
use super::outbox::{Outbox, Outgoing};
use super::status::{PeeringState, StatusBoard};
use session::Session;
use side::Sides;

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
    /// A side channel's owner (see `side.rs`).
    AttachSide(u16, mpsc::UnboundedSender<side::SideEvent>),
    /// A method for a side channel, on connection number `.1`.
    SideSend(u16, u64, Method),
    /// An encoded method (a frame's payload) for a side channel, on connection `.1`.
    SidePayload(u16, u64, Bytes),
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
    /// `incarnation` while its channel is open; another value once it has ended (the
    /// ackers read it: `Acker::is_stale`).
    live: Arc<AtomicU64>,
    /// For names and tags the peering makes up.
    serial: u64,
    stop_waiters: Vec<oneshot::Sender<()>>,
    sides: Sides,
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
        live: Arc::new(AtomicU64::new(0)),
        serial: 0,
        stop_waiters: Vec::new(),
        sides: Sides::default(),
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
            Ok(link) => {
                t.status.server_properties(&link.server_properties);
                Session::new(link, &mut t).run(&mut t, &mut commands).await
            }
            Err(e) => (Ended::from(e), false),
        };
        // Deliveries of the connection that ended are stale from now on.
        t.incarnation += 1;
        t.live.store(t.incarnation, Ordering::Release);
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
            Command::AttachSide(channel, owner) => self.sides.attach(channel, owner),
            // Not connected: the owner re-sends after the next `Up`.
            Command::SideSend(..) | Command::SidePayload(..) => {}
        }
        false
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
                Command::Start
                | Command::Settle { .. }
                | Command::AttachSide(..)
                | Command::SideSend(..)
                | Command::SidePayload(..) => {}
            }
        }
        for w in self.stop_waiters.drain(..) {
            let _ = w.send(());
        }
    }
}
