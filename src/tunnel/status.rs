//! A tunnel's status as its owner, the management API and the tests see it: the state
//! (modelled on IBM MQ's channel states and Qpid Dispatch's auto-link states), why it
//! is in it, the counters, and every transition in order.
//!
//! The states and the moves between them are the `tunnel` machine of
//! `spec/amq_peer.xml` (generated as `tunnel_machine`): the board changes state only by
//! feeding that machine an event, so a move the spec does not allow is refused and
//! logged instead of shown.

use std::sync::Mutex;

use serde::Serialize;
use tokio::sync::watch;

use super::endpoint::TunnelCounters;
use crate::protocol::generated::tunnel_machine::{self, Event, State};

/// Where a tunnel is in its life.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase", tag = "state", content = "reason")]
pub enum TunnelState {
    /// Created, not started.
    Inactive,
    /// Connected; opening the tunnel.
    Opening,
    Open,
    /// The connection went; the peering reconnects (short, then long waits).
    Retrying,
    /// The reason says why. `unsupported` (the remote lacks the capability) is final;
    /// a refusal (of the user, the service or its version) is asked again slowly.
    Failed(String),
    /// Closed by either side.
    Closed,
}

impl TunnelState {
    /// Its state in the generated machine (without the reason).
    pub fn machine_state(&self) -> State {
        match self {
            TunnelState::Inactive => State::Inactive,
            TunnelState::Opening => State::Opening,
            TunnelState::Open => State::Open,
            TunnelState::Retrying => State::Retrying,
            TunnelState::Failed(_) => State::Failed,
            TunnelState::Closed => State::Closed,
        }
    }

    /// The status of machine state `state`; `reason` is the reason of `failed`.
    fn from_machine(state: State, reason: String) -> TunnelState {
        match state {
            State::Inactive => TunnelState::Inactive,
            State::Opening => TunnelState::Opening,
            State::Open => TunnelState::Open,
            State::Retrying => TunnelState::Retrying,
            State::Failed => TunnelState::Failed(reason),
            State::Closed => TunnelState::Closed,
        }
    }
}

/// The tunnel machine asks no questions.
struct NoGuards;

impl tunnel_machine::Guards for NoGuards {}

/// A tunnel's status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TunnelStatus {
    pub service: &'static str,
    /// The remote, as `host:port/vhost`.
    pub remote: String,
    #[serde(flatten)]
    pub state: TunnelState,
    /// Why it entered its state.
    pub why: String,
    pub counters: TunnelCounters,
    pub last_error: Option<String>,
}

/// The one place a tunnel's status changes.
pub(crate) struct StatusBoard {
    tx: watch::Sender<TunnelStatus>,
    transitions: Mutex<Vec<(TunnelState, String)>>,
}

/// Transitions kept per tunnel (the oldest go first).
const KEPT: usize = 256;

impl StatusBoard {
    pub(crate) fn new(service: &'static str, remote: String) -> StatusBoard {
        let status = TunnelStatus {
            service,
            remote,
            state: TunnelState::Inactive,
            why: "created".into(),
            counters: TunnelCounters::default(),
            last_error: None,
        };
        StatusBoard {
            tx: watch::channel(status).0,
            transitions: Mutex::new(vec![(TunnelState::Inactive, "created".into())]),
        }
    }

    /// Feeds `event` to the tunnel machine and shows the state it gives, entered
    /// because of `why`. `reason` is the reason of a `failed` state (default: `why`).
    /// Returns false, changing nothing, when the machine has no transition for `event`
    /// in the current state: a bug in the caller, logged (and a panic in debug builds).
    pub(crate) fn on(&self, event: Event, reason: Option<&str>, why: impl Into<String>) -> bool {
        let why = why.into();
        let mut taken = None;
        self.tx.send_if_modified(|s| {
            let from = s.state.machine_state();
            let Some(step) = tunnel_machine::transition(from, event, &NoGuards) else {
                return false;
            };
            let state =
                TunnelState::from_machine(step.next, reason.unwrap_or(why.as_str()).to_string());
            if matches!(state, TunnelState::Failed(_) | TunnelState::Retrying) {
                s.last_error = Some(why.clone());
            }
            s.state = state.clone();
            s.why = why.clone();
            taken = Some(state);
            true
        });
        let Some(state) = taken else {
            let (service, remote, from) = {
                let s = self.tx.borrow();
                (s.service, s.remote.clone(), s.state.machine_state())
            };
            tracing::warn!(
                service,
                remote,
                "tunnel: no transition from {from} on {event} ({why}); the state stays"
            );
            if cfg!(debug_assertions) {
                panic!("tunnel machine: no transition from {from} on {event}");
            }
            return false;
        };
        let mut t = self.transitions.lock().unwrap_or_else(|e| e.into_inner());
        if t.len() == KEPT {
            t.remove(0);
        }
        t.push((state, why));
        true
    }

    pub(crate) fn get(&self, counters: TunnelCounters) -> TunnelStatus {
        let mut s = self.tx.borrow().clone();
        s.counters = counters;
        s
    }

    pub(crate) fn watch(&self) -> watch::Receiver<TunnelStatus> {
        self.tx.subscribe()
    }

    pub(crate) fn transitions(&self) -> Vec<(TunnelState, String)> {
        self.transitions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(board: &StatusBoard) -> TunnelState {
        board.get(TunnelCounters::default()).state
    }

    #[test]
    fn moves_only_as_the_machine_allows() {
        let board = StatusBoard::new("greeting", "remote".into());
        assert!(board.on(Event::Connected, None, "connected"));
        assert_eq!(state(&board), TunnelState::Opening);
        assert!(board.on(Event::Refused, Some("403 no"), "refused; again later"));
        assert_eq!(state(&board), TunnelState::Failed("403 no".into()));
        let status = board.get(TunnelCounters::default());
        assert_eq!(status.why, "refused; again later");
        assert_eq!(status.last_error.as_deref(), Some("refused; again later"));
        assert!(board.on(Event::RetryDue, None, "again"));
        assert!(board.on(Event::OpenOk, None, "open"));
        assert_eq!(state(&board), TunnelState::Open);
        assert!(board.on(Event::Close, None, "closed"));
        let states: Vec<State> = board
            .transitions()
            .iter()
            .map(|(s, _)| s.machine_state())
            .collect();
        assert_eq!(
            states,
            [
                State::Inactive,
                State::Opening,
                State::Failed,
                State::Opening,
                State::Open,
                State::Closed
            ]
        );
    }

    /// Release builds only: in debug builds a refused move panics.
    #[cfg(not(debug_assertions))]
    #[test]
    fn refuses_a_move_the_machine_does_not_allow() {
        let board = StatusBoard::new("greeting", "remote".into());
        assert!(!board.on(Event::OpenOk, None, "open too early"));
        assert_eq!(state(&board), TunnelState::Inactive);
        assert_eq!(board.transitions().len(), 1);
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "no transition from inactive on open-ok")]
    fn a_move_the_machine_does_not_allow_panics_in_debug_builds() {
        let board = StatusBoard::new("greeting", "remote".into());
        board.on(Event::OpenOk, None, "open too early");
    }

    #[test]
    fn every_machine_state_is_a_tunnel_state() {
        for &s in State::ALL {
            assert_eq!(
                TunnelState::from_machine(s, String::new()).machine_state(),
                s
            );
        }
        assert_eq!(State::INITIAL, TunnelState::Inactive.machine_state());
    }
}
