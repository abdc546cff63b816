//! The opening side of a tunnel: a peering to the remote with a side channel of the
//! tunnel's own, and a task that (re)opens the tunnel on every connection the peering
//! makes.
//!
//! On each connection: check the remote's `tunnels` capability (none: `failed` with
//! `unsupported`, and the peering stops: a RabbitMQ remote never sees a tunnel
//! method), open the channel, `tunnel.open` stating what we received, and on
//! `tunnel.open-ok` attach the endpoint, which sends again what the remote missed. A
//! remote whose `identifier` changed is a new process with no tunnel state: the
//! endpoint's numbering starts again (`Endpoint::reset_peer`).
//!
//! Two kinds of retry. A lost connection is the peering's to retry (its back-off,
//! short waits growing to long ones); the tunnel is `retrying` meanwhile and re-opens
//! on the next connection. A refusal (the remote closes the channel: 403 the user may
//! not, 404 no such service, 406 another version) leaves the connection up; the
//! tunnel is `failed` with the reason, and opens the channel again after a slow
//! back-off of its own ([`super::TunnelConfig::refused_retry`]), since the remote's
//! configuration may change.
//!
//! The status follows the `tunnel` machine of `spec/amq_peer.xml`: the opener feeds
//! the board ([`StatusBoard::on`]) the machine's events, and the board moves.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::peering::{Backoff, Peering, PeeringEvent, SideChannel, SideEvent};
use crate::protocol::generated::methods::{
    ChannelCloseOk, ChannelOpen, Method, TunnelClose, TunnelCloseOk, TunnelOpen,
};
use crate::protocol::{FieldTable, FieldValue, ShortString};

use super::endpoint::Endpoint;
use super::status::StatusBoard;
use crate::protocol::generated::tunnel_machine::Event;

/// How long closing waits for the remote's `tunnel.close-ok`.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// Where the tunnel is on the current connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Down,
    ChannelOpening,
    TunnelOpening,
    /// Open on this attachment generation.
    Open(u64),
    /// Connected, the remote refused the tunnel: waiting for the slow retry.
    Refused,
}

pub(crate) struct Opener {
    pub peering: Peering,
    pub side: SideChannel,
    pub endpoint: Arc<Endpoint>,
    pub board: Arc<StatusBoard>,
    /// This broker's identifier, which names the tunnel to the acceptor.
    pub identifier: String,
    /// The wait after a refusal before asking again.
    pub refused_retry: Backoff,
}

/// Refusals in a row, and when to ask again.
#[derive(Default)]
struct Refusals {
    count: u32,
    retry_at: Option<Instant>,
}

/// Whether the remote's server properties announce tunnels.
pub(crate) fn has_tunnels(server_properties: &FieldTable) -> bool {
    matches!(
        server_properties.get("capabilities"),
        Some(FieldValue::Table(caps)) if matches!(caps.get("tunnels"), Some(FieldValue::Bool(true)))
    )
}

/// How the task ended.
enum End {
    /// Final: the endpoint is closed, the peering stopped.
    Done,
}

impl Opener {
    pub(crate) async fn run(
        mut self,
        mut close: mpsc::UnboundedReceiver<oneshot::Sender<()>>,
        mut peering_events: mpsc::UnboundedReceiver<PeeringEvent>,
    ) {
        let mut phase = Phase::Down;
        let mut session = 0;
        // The remote process's identifier (server property) on the last connection.
        let mut remote: Option<Vec<u8>> = None;
        let mut refusals = Refusals::default();
        let End::Done = loop {
            let retry_at = refusals.retry_at;
            tokio::select! {
                ev = self.side.events.recv() => match ev {
                    None => {
                        self.finish(Event::PeeringEnded, Some("the peering ended"), "the peering ended").await;
                        break End::Done;
                    }
                    Some(SideEvent::Up { session: s, server_properties }) => {
                        session = s;
                        if !has_tunnels(&server_properties) {
                            self.finish(
                                Event::Unsupported,
                                Some("unsupported"),
                                "unsupported: the remote does not announce the tunnels capability",
                            )
                            .await;
                            break End::Done;
                        }
                        let identifier = server_properties
                            .get("identifier")
                            .and_then(FieldValue::as_bytes)
                            .map(<[u8]>::to_vec);
                        if remote.is_some() && identifier.is_some() && identifier != remote {
                            // A restarted remote has a fresh endpoint: stating what the
                            // old one sent us would make it drop what it sends now.
                            self.endpoint.reset_peer();
                            tracing::info!(
                                service = self.endpoint.core.service.name,
                                "tunnel: the remote is a new process; numbering starts again"
                            );
                        }
                        remote = identifier.or(remote);
                        if refusals.retry_at.is_some() {
                            // Refused before: asked again when the slow retry is due.
                            phase = Phase::Refused;
                        } else {
                            self.open_channel(session, &mut phase, Event::Connected, "connected; opening the tunnel");
                        }
                    }
                    Some(SideEvent::Down) => {
                        if let Phase::Open(g) = phase {
                            self.endpoint.detach(g);
                        }
                        phase = Phase::Down;
                        // A refused tunnel stays `failed` with its reason until asked again.
                        if refusals.retry_at.is_none() {
                            self.board.on(
                                Event::ConnectionLost,
                                None,
                                "the connection was lost; the peering reconnects",
                            );
                        }
                    }
                    Some(SideEvent::Method(m)) => {
                        if let Some(end) = self.method(session, &mut phase, &mut refusals, m).await {
                            break end;
                        }
                    }
                    Some(SideEvent::Service(payload)) => self.service_method(phase, &payload),
                },
                _ = sleep_until(retry_at), if retry_at.is_some() => {
                    refusals.retry_at = None;
                    if phase == Phase::Refused {
                        self.open_channel(session, &mut phase, Event::RetryDue, "asking the remote again after its refusal");
                    }
                }
                // The peering's own channel is idle; its events are not ours.
                Some(_) = peering_events.recv() => {}
                done = close.recv() => {
                    if let Phase::Open(_) = phase {
                        self.close_remote(session).await;
                    }
                    self.finish(Event::Close, None, "closed by its owner").await;
                    if let Some(done) = done {
                        let _ = done.send(());
                    }
                    break End::Done;
                }
            }
        };
    }

    /// A service method (its frame's payload) from the remote.
    fn service_method(&self, phase: Phase, payload: &[u8]) {
        let Phase::Open(g) = phase else {
            tracing::warn!(
                service = self.endpoint.core.service.name,
                "tunnel: a service method before the tunnel is open; ignored"
            );
            return;
        };
        if let Err(e) = self.endpoint.receive(g, payload) {
            tracing::warn!(
                service = self.endpoint.core.service.name,
                "tunnel: a method of class {} from the remote; ignored",
                e.0
            );
        }
    }

    /// `channel.open` on connection `session`: the tunnel is `opening` (`event`:
    /// connected, or the retry after a refusal is due).
    fn open_channel(&mut self, session: u64, phase: &mut Phase, event: Event, why: &str) {
        self.board.on(event, None, why);
        self.side.send(session, Method::ChannelOpen(ChannelOpen {}));
        *phase = Phase::ChannelOpening;
    }

    /// One method from the remote on the tunnel's channel; `Some` ends the task.
    async fn method(
        &mut self,
        session: u64,
        phase: &mut Phase,
        refusals: &mut Refusals,
        m: Method,
    ) -> Option<End> {
        let service = self.endpoint.core.service;
        match (*phase, m) {
            (Phase::ChannelOpening, Method::ChannelOpenOk(_)) => {
                let open = TunnelOpen {
                    service: ShortString::from_static(service.name),
                    version: service.version,
                    received: self.endpoint.received(),
                    window: self.endpoint.window(),
                    opener: ShortString::try_from(self.identifier.as_str()).unwrap_or_default(),
                };
                self.side.send(session, Method::TunnelOpen(open));
                *phase = Phase::TunnelOpening;
            }
            (Phase::TunnelOpening, Method::TunnelOpenOk(ok)) => {
                let side = self.side.sender();
                let wire = Box::new(move |payload: &bytes::Bytes| {
                    side.send_payload(session, payload.clone());
                });
                let g = self.endpoint.attach(wire, ok.received, ok.window);
                *phase = Phase::Open(g);
                *refusals = Refusals::default();
                self.board.on(
                    Event::OpenOk,
                    None,
                    format!("open at version {}", ok.version),
                );
            }
            (_, Method::TunnelFlow(f)) => self.endpoint.acknowledged(f.received),
            (_, Method::ChannelClose(c)) => {
                self.side
                    .send(session, Method::ChannelCloseOk(ChannelCloseOk {}));
                if let Phase::Open(g) = *phase {
                    self.endpoint.detach(g);
                }
                *phase = Phase::Refused;
                refusals.count += 1;
                let wait = self.refused_retry.delay(refusals.count);
                refusals.retry_at = Some(Instant::now() + wait);
                let reason = format!(
                    "the remote refused the tunnel: {} {}",
                    c.reply_code, c.reply_text
                );
                let why = format!(
                    "{reason}; asking again in {} ms (refusal {} in a row)",
                    wait.as_millis(),
                    refusals.count
                );
                self.board.on(Event::Refused, Some(&reason), why);
            }
            (_, Method::TunnelClose(c)) => {
                self.side
                    .send(session, Method::TunnelCloseOk(TunnelCloseOk {}));
                let why = format!("closed by the remote: {} {}", c.reply_code, c.reply_text);
                self.finish(Event::Close, None, &why).await;
                return Some(End::Done);
            }
            (_, other) => {
                tracing::warn!(
                    service = service.name,
                    "tunnel: unexpected {} from the remote; ignored",
                    other.name()
                );
            }
        }
        None
    }

    /// `tunnel.close`, then its close-ok (or the time limit).
    async fn close_remote(&mut self, session: u64) {
        self.side.send(
            session,
            Method::TunnelClose(TunnelClose {
                reply_code: 200,
                reply_text: ShortString::from_static("closed by its owner"),
            }),
        );
        let wait = async {
            while let Some(ev) = self.side.events.recv().await {
                if matches!(
                    ev,
                    SideEvent::Method(Method::TunnelCloseOk(_)) | SideEvent::Down
                ) {
                    return;
                }
            }
        };
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, wait).await;
    }

    /// The end: `event` is final in the machine (closed, or failed for good).
    async fn finish(&mut self, event: Event, reason: Option<&str>, why: &str) {
        self.endpoint.close();
        self.board.on(event, reason, why);
        self.peering.stop().await;
    }
}

/// Sleeps until `at`; never wakes without one (the select's guard keeps it unpolled).
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
