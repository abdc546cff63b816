//! One side of a tunnel: what makes its service methods arrive exactly once and in
//! order across reconnects, within a bounded window.
//!
//! Each direction numbers its service methods 1, 2, 3, … for the tunnel's life. The
//! numbers are implicit (a direction's methods arrive in order on one channel), so a
//! side only counts: `received`, the last number handed to its service, and, for what
//! it sends, `acked` (the last number the other side said it received) and the methods
//! after it (`unacked`), kept until acknowledged. The other side acknowledges with
//! `tunnel.flow` as it goes and states its `received` when the tunnel (re)opens; this
//! side then sends again everything after it, and nothing it already had. A sender
//! with a full window (`window` methods unacknowledged) waits.
//!
//! A service method is encoded once, when it is sent (its method frame's payload); the
//! endpoint keeps that payload until acknowledged, so a re-send writes the same bytes,
//! and a service the broker's spec does not define (a test overlay's) travels as well
//! as its own. Arriving payloads go to the service's generated wrapper, which decodes.
//!
//! The endpoint outlives connections: a *wire* (how to write on the connection of the
//! moment) is attached when the tunnel opens and detached when the connection goes.
//! Each attachment has a generation, so methods still arriving from a connection that
//! a newer one replaced are ignored.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::{Bytes, BytesMut};
use tokio::sync::Notify;

use crate::protocol::generated::methods::{Method, TunnelFlow, TunnelOpenOk};
use crate::protocol::generated::services::{ServiceHandler, ServiceInfo, ServiceMethod};

/// Writes one method frame, given its payload, on the connection of the moment.
pub(crate) type Wire = Box<dyn Fn(&Bytes) + Send + Sync>;

/// The payload of a method frame.
pub(crate) fn payload(method: &impl ServiceMethod) -> Bytes {
    let mut buf = BytesMut::new();
    method.encode_payload(&mut buf);
    buf.freeze()
}

/// The class id a method frame's payload starts with (0 if it is too short).
pub(crate) fn class_of(payload: &[u8]) -> u16 {
    match payload {
        [a, b, ..] => u16::from_be_bytes([*a, *b]),
        _ => 0,
    }
}

/// The default number of unacknowledged methods per direction.
pub const DEFAULT_WINDOW: u32 = 1024;

/// What a tunnel side has moved.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct TunnelCounters {
    /// Service methods sent (each counted once, however often re-sent).
    pub sent: u64,
    /// Service methods handed to the service.
    pub received: u64,
    /// Methods written again after a reconnect (a method that waited for the tunnel
    /// to open, never written before, is not counted).
    pub resent: u64,
}

/// Why a method could not be sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    #[error("the tunnel is closed")]
    Closed,
    #[error("{method} is not a method of the {service} service")]
    WrongService {
        method: &'static str,
        service: &'static str,
    },
}

struct State {
    /// The number the next method sent gets, minus one: the last number assigned.
    sent: u64,
    acked: u64,
    /// The payloads of numbers `acked + 1 ..= sent`.
    unacked: VecDeque<Bytes>,
    /// The last number written on any wire: what an attachment writes up to it is a
    /// re-send.
    written: u64,
    received: u64,
    /// The last `received` told to the other side.
    flow_told: u64,
    /// Acknowledge at least this often: half the other side's window.
    ack_every: u64,
    wire: Option<(u64, Wire)>,
    generation: u64,
    closed: bool,
    counters: TunnelCounters,
}

/// The part of an endpoint its service's sender shares (the service itself is not in
/// it, so a service holding a sender makes no cycle).
pub(crate) struct Core {
    pub(crate) service: &'static ServiceInfo,
    window: u64,
    state: Mutex<State>,
    room: Notify,
}

impl Core {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Sends service methods to the other side of a tunnel; cheap to clone.
#[derive(Clone)]
pub struct TunnelSender {
    core: Arc<Core>,
}

impl std::fmt::Debug for TunnelSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TunnelSender")
            .field("service", &self.core.service.name)
            .finish_non_exhaustive()
    }
}

impl TunnelSender {
    /// Sends `method`, waiting while the window is full. It reaches the other side's
    /// service exactly once, after everything sent before it, even across reconnects;
    /// while the tunnel is down it waits in the window.
    pub async fn send(&self, method: impl ServiceMethod) -> Result<(), SendError> {
        let method = self.check(&method)?;
        loop {
            let room = self.core.room.notified();
            {
                let mut st = self.core.lock();
                if st.closed {
                    return Err(SendError::Closed);
                }
                if st.sent - st.acked < self.core.window {
                    transmit(&mut st, method);
                    return Ok(());
                }
            }
            room.await;
        }
    }

    /// Sends `method` if the window has room now; gives it back otherwise. For a
    /// service's handlers, which must not wait.
    pub fn try_send<M: ServiceMethod>(&self, method: M) -> Result<(), TrySendError<M>> {
        let encoded = self.check(&method).map_err(TrySendError::Refused)?;
        let mut st = self.core.lock();
        if st.closed {
            return Err(TrySendError::Refused(SendError::Closed));
        }
        if st.sent - st.acked >= self.core.window {
            return Err(TrySendError::Full(Box::new(method)));
        }
        transmit(&mut st, encoded);
        Ok(())
    }

    /// The method's payload, if it is one of this service's.
    fn check(&self, method: &impl ServiceMethod) -> Result<Bytes, SendError> {
        if method.class_id() != self.core.service.class_id {
            return Err(SendError::WrongService {
                method: method.name(),
                service: self.core.service.name,
            });
        }
        Ok(payload(method))
    }

    /// The service this sender speaks.
    pub fn service(&self) -> &'static ServiceInfo {
        self.core.service
    }
}

/// Why [`TunnelSender::try_send`] did not send.
#[derive(Debug)]
pub enum TrySendError<M = Method> {
    /// The window is full: the method is given back.
    Full(Box<M>),
    Refused(SendError),
}

fn transmit(st: &mut State, payload: Bytes) {
    st.sent += 1;
    st.counters.sent += 1;
    if let Some((_, wire)) = &st.wire {
        wire(&payload);
        st.written = st.sent;
    }
    st.unacked.push_back(payload);
}

/// One side of a tunnel: the shared core and the service's implementation.
pub(crate) struct Endpoint {
    pub(crate) core: Arc<Core>,
    handler: Mutex<Option<Box<dyn ServiceHandler>>>,
}

/// A method of another class (this class id) arrived for this service.
#[derive(Debug)]
pub(crate) struct NotThisService(pub u16);

impl Endpoint {
    /// An endpoint for `service`; `make` builds the service's implementation from the
    /// sender it answers with.
    pub(crate) fn new(
        service: &'static ServiceInfo,
        window: u32,
        make: impl FnOnce(TunnelSender) -> Box<dyn ServiceHandler>,
    ) -> Arc<Endpoint> {
        let core = Arc::new(Core {
            service,
            window: u64::from(window.max(1)),
            state: Mutex::new(State {
                sent: 0,
                acked: 0,
                unacked: VecDeque::new(),
                written: 0,
                received: 0,
                flow_told: 0,
                ack_every: 1,
                wire: None,
                generation: 0,
                closed: false,
                counters: TunnelCounters::default(),
            }),
            room: Notify::new(),
        });
        let handler = make(TunnelSender { core: core.clone() });
        Arc::new(Endpoint {
            core,
            handler: Mutex::new(Some(handler)),
        })
    }

    pub(crate) fn sender(&self) -> TunnelSender {
        TunnelSender {
            core: self.core.clone(),
        }
    }

    /// The last number handed to the service: what `open`/`open-ok` state.
    pub(crate) fn received(&self) -> u64 {
        self.core.lock().received
    }

    pub(crate) fn counters(&self) -> TunnelCounters {
        self.core.lock().counters
    }

    /// Whether a connection carries the tunnel now.
    pub(crate) fn attached(&self) -> bool {
        self.core.lock().wire.is_some()
    }

    /// This side's window, stated in open / open-ok.
    pub(crate) fn window(&self) -> u32 {
        u32::try_from(self.core.window).unwrap_or(u32::MAX)
    }

    /// The tunnel (re)opened on a new connection: `wire` writes on it, and the other
    /// side has received up to `theirs` and sends `their_window` unacknowledged. Sends
    /// again what it did not get. Returns the attachment's generation.
    pub(crate) fn attach(&self, wire: Wire, theirs: u64, their_window: u32) -> u64 {
        self.attach_answering(wire, theirs, their_window, None)
    }

    /// [`Endpoint::attach`] for the accepting side: first writes `tunnel.open-ok` at
    /// `version` on the wire, stating `received` as it is at that instant (under the
    /// same lock as the attachment, so a method still arriving on a connection this one
    /// replaces cannot fall between the number stated and the re-send).
    pub(crate) fn attach_answering(
        &self,
        wire: Wire,
        theirs: u64,
        their_window: u32,
        open_ok: Option<u16>,
    ) -> u64 {
        let mut st = self.core.lock();
        if let Some(version) = open_ok {
            wire(&payload(&Method::TunnelOpenOk(TunnelOpenOk {
                version,
                received: st.received,
                window: u32::try_from(self.core.window).unwrap_or(u32::MAX),
            })));
        }
        st.ack_every = (u64::from(their_window) / 2).max(1);
        ack(&self.core, &mut st, theirs);
        st.generation += 1;
        let generation = st.generation;
        for m in &st.unacked {
            wire(m);
        }
        st.counters.resent += st.written.saturating_sub(st.acked);
        st.written = st.sent;
        st.flow_told = st.received;
        st.wire = Some((generation, wire));
        generation
    }

    /// The other side is a new process (it restarted) with no state for this tunnel:
    /// what it acknowledged went with it, and it has received nothing from us nor sent
    /// us anything. Numbering starts again from 1 in both directions; what it had not
    /// acknowledged is sent again first. A service that must not lose what the old
    /// process acknowledged re-sends it (the replica sink asks for a snapshot).
    pub(crate) fn reset_peer(&self) {
        let mut st = self.core.lock();
        st.sent -= st.acked;
        st.written = st.written.saturating_sub(st.acked);
        st.acked = 0;
        st.received = 0;
        st.flow_told = 0;
    }

    /// The connection of attachment `generation` is gone.
    pub(crate) fn detach(&self, generation: u64) {
        let mut st = self.core.lock();
        if st.wire.as_ref().is_some_and(|(g, _)| *g == generation) {
            st.wire = None;
        }
    }

    /// `tunnel.flow` (or a re-open) from the other side.
    pub(crate) fn acknowledged(&self, theirs: u64) {
        let mut st = self.core.lock();
        ack(&self.core, &mut st, theirs);
    }

    /// A service method (its frame's payload) from the other side on attachment
    /// `generation`: handed to the service, unless a newer attachment replaced that
    /// one.
    pub(crate) fn receive(&self, generation: u64, method: &[u8]) -> Result<(), NotThisService> {
        let class_id = class_of(method);
        if class_id != self.core.service.class_id {
            return Err(NotThisService(class_id));
        }
        {
            let mut st = self.core.lock();
            if st.closed || st.wire.as_ref().is_none_or(|(g, _)| *g != generation) {
                return Ok(());
            }
            st.received += 1;
            st.counters.received += 1;
            // Acknowledge every half window, so the sender never stalls on a full one.
            if st.received - st.flow_told >= st.ack_every {
                st.flow_told = st.received;
                let flow = payload(&Method::TunnelFlow(TunnelFlow {
                    received: st.received,
                }));
                if let Some((_, wire)) = &st.wire {
                    wire(&flow);
                }
            }
        }
        // The service runs outside the state's lock: it may send from its handlers.
        let mut handler = self.handler.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(h) = handler.as_mut() {
            if let Err(what) = h.handle(method) {
                tracing::warn!(
                    service = self.core.service.name,
                    "tunnel: the service refused {what}; dropped"
                );
            }
        }
        Ok(())
    }

    /// Closed for good: senders get `Closed`, the service is dropped.
    pub(crate) fn close(&self) {
        {
            let mut st = self.core.lock();
            st.closed = true;
            st.wire = None;
        }
        self.core.room.notify_waiters();
        self.handler
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
    }
}

fn ack(core: &Core, st: &mut State, theirs: u64) {
    // Never beyond what was sent, never backwards.
    let theirs = theirs.min(st.sent);
    if theirs <= st.acked {
        return;
    }
    let n = (theirs - st.acked) as usize;
    st.unacked.drain(..n.min(st.unacked.len()));
    st.acked = theirs;
    core.room.notify_waiters();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::generated::methods::GreetingHello;
    use crate::protocol::generated::services::{GREETING, Greeting, GreetingService};
    use std::sync::mpsc;

    struct Collect(mpsc::Sender<u64>);
    impl GreetingService for Collect {
        fn hello(&mut self, m: GreetingHello) {
            let _ = self.0.send(m.serial);
        }
        fn hello_ok(&mut self, _: crate::protocol::generated::methods::GreetingHelloOk) {}
    }

    fn hello(serial: u64) -> GreetingHello {
        GreetingHello {
            serial,
            text: bytes::Bytes::new(),
        }
    }

    fn pair() -> (Arc<Endpoint>, Arc<Endpoint>, mpsc::Receiver<u64>) {
        let (tx, rx) = mpsc::channel();
        let a = Endpoint::new(&GREETING, 4, |_| {
            Box::new(Greeting(Collect(mpsc::channel().0)))
        });
        let b = Endpoint::new(&GREETING, 4, |_| Box::new(Greeting(Collect(tx))));
        (a, b, rx)
    }

    /// A wire that records what it carried.
    fn recorder() -> (Wire, Arc<Mutex<Vec<Bytes>>>) {
        let log = Arc::new(Mutex::new(Vec::new()));
        let l = log.clone();
        (
            Box::new(move |m: &Bytes| l.lock().unwrap().push(m.clone())),
            log,
        )
    }

    #[test]
    fn a_cut_resends_only_what_the_other_side_missed_and_nothing_twice() {
        let (a, b, got) = pair();
        let (wire_a, carried) = recorder();
        let (wire_b, _) = recorder();
        let ga = a.attach(wire_a, 0, 4);
        let gb = b.attach(wire_b, 0, 4);
        let s = a.sender();
        for i in 1..=3 {
            s.try_send(hello(i)).unwrap();
        }
        // Only the first two arrive before the cut.
        let sent: Vec<Bytes> = carried.lock().unwrap().drain(..).collect();
        for m in sent.into_iter().take(2) {
            b.receive(gb, &m).unwrap();
        }
        a.detach(ga);
        b.detach(gb);
        // A method sent while down waits in the window.
        s.try_send(hello(4)).unwrap();
        assert!(carried.lock().unwrap().is_empty());
        // Re-open: b says it received 2; a sends 3 and 4 again.
        let (wire_a, carried) = recorder();
        a.attach(wire_a, b.received(), 4);
        let (wire_b, _) = recorder();
        let gb = b.attach(wire_b, a.received(), 4);
        for m in carried.lock().unwrap().drain(..) {
            b.receive(gb, &m).unwrap();
        }
        assert_eq!(got.try_iter().collect::<Vec<_>>(), [1, 2, 3, 4]);
        // 3 is written again; 4 waited and is written for the first time.
        assert_eq!(a.counters().resent, 1);
        assert_eq!(a.counters().sent, 4);
    }

    #[test]
    fn after_a_reset_a_fresh_peer_gets_what_was_unacknowledged_and_acknowledges_it() {
        let (a, b, _) = pair();
        let (wire_a, carried) = recorder();
        let (wire_b, _) = recorder();
        a.attach(wire_a, 0, 4);
        let gb = b.attach(wire_b, 0, 4);
        let s = a.sender();
        for i in 1..=3 {
            s.try_send(hello(i)).unwrap();
        }
        let sent: Vec<Bytes> = carried.lock().unwrap().drain(..).collect();
        for m in sent.into_iter().take(2) {
            b.receive(gb, &m).unwrap();
        }
        a.acknowledged(b.received());
        // b restarts: a new endpoint that has received nothing.
        let (tx, got) = mpsc::channel();
        let fresh = Endpoint::new(&GREETING, 4, |_| Box::new(Greeting(Collect(tx))));
        a.reset_peer();
        let (wire_a, carried) = recorder();
        a.attach(wire_a, fresh.received(), 4);
        let (wire_f, _) = recorder();
        let gf = fresh.attach(wire_f, a.received(), 4);
        for m in carried.lock().unwrap().drain(..) {
            fresh.receive(gf, &m).unwrap();
        }
        assert_eq!(got.try_iter().collect::<Vec<_>>(), [3]);
        // Its acknowledgements count: the window opens again.
        a.acknowledged(fresh.received());
        for i in 4..=7 {
            s.try_send(hello(i)).unwrap();
        }
    }

    #[test]
    fn a_full_window_refuses_until_acknowledged_and_a_stale_wire_is_ignored() {
        let (a, b, got) = pair();
        let (wire, _) = recorder();
        a.attach(wire, 0, 4);
        let s = a.sender();
        for i in 1..=4 {
            s.try_send(hello(i)).unwrap();
        }
        assert!(matches!(s.try_send(hello(5)), Err(TrySendError::Full(_))));
        a.acknowledged(2);
        s.try_send(hello(5)).unwrap();
        // b: a method from a replaced attachment does not count.
        let (w1, _) = recorder();
        let old = b.attach(w1, 0, 4);
        let (w2, _) = recorder();
        let new = b.attach(w2, 0, 4);
        b.receive(old, &payload(&hello(1))).unwrap();
        b.receive(new, &payload(&hello(1))).unwrap();
        assert_eq!(got.try_iter().collect::<Vec<_>>(), [1]);
        let flow = Method::TunnelFlow(TunnelFlow { received: 1 });
        assert!(b.receive(new, &payload(&flow)).is_err());
    }
}
