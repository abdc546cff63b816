//! One member's view of the pair and the one place its state changes: events go in
//! ([`Node::fire`]), the generated machine (`spec/ha.xml`) says what follows, and the
//! node applies it: the new state, a raised epoch on activation, the reason, and the
//! slower follow-ups (hooks, closing clients) handed to the pair's task in order.
//!
//! Time is `tokio::time::Instant` only: a wall-clock jump changes nothing.

use std::sync::{Arc, Mutex, MutexGuard, RwLock, Weak};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::epoch::EpochFile;
use super::hooks::{Arbiter, HaHooks, NoHooks};
use super::status::{HaStatus, PeerStatus};
use crate::broker::Broker;
use crate::broker::error::AmqpError;
use crate::config::HaRole;
use crate::peering::Remote;
use crate::protocol::generated::ha_machine::{Action, Event, Guards, State, Step, transition};
use crate::protocol::generated::methods::HaState;
use crate::protocol::{ReplyCode, ShortString};

/// What the pair's task does after a change, outside the node's lock.
#[derive(Debug)]
pub(super) enum FollowUp {
    /// New hooks: tell them the state as it is then.
    Replay,
    Activated(u64),
    BecamePassive,
    StepDown {
        reason: String,
    },
}

/// The peer as its last message described it.
#[derive(Debug, Clone)]
struct PeerView {
    state: State,
    role: HaRole,
    epoch: u64,
    identifier: String,
}

struct Inner {
    state: State,
    epoch: EpochFile,
    peer: Option<PeerView>,
    /// When anything last came from the peer (None: never since start).
    last_heard: Option<Instant>,
    /// An active peer was seen since start: only then may a passive member take over.
    seen_active_peer: bool,
    /// The current silence was already turned into a timeout event.
    silence_reported: bool,
    reason: String,
    changed_at: Instant,
    serial: u64,
    transitions: u64,
    refused: u64,
    /// A misconfigured peer (same role, or ourselves) was logged already.
    misconfig_logged: bool,
    /// The newest state heard: the peer's identifier (new at each start) and serial.
    newest: Option<(String, u64)>,
}

/// One member of an HA pair.
pub struct Node {
    role: HaRole,
    timeout: Duration,
    peer: Remote,
    identifier: String,
    started: Instant,
    broker: Weak<Broker>,
    inner: Mutex<Inner>,
    hooks: RwLock<Arc<dyn HaHooks>>,
    arbiter: RwLock<Option<Arc<dyn Arbiter>>>,
    follow_ups: mpsc::UnboundedSender<FollowUp>,
}

/// The machine's questions, answered from the node as it is now.
struct View<'a> {
    node: &'a Node,
    inner: &'a Inner,
    now: Instant,
}

impl Guards for View<'_> {
    fn primary(&self) -> bool {
        self.node.role == HaRole::Primary
    }

    fn peer_expired(&self) -> bool {
        self.inner.seen_active_peer && self.node.silence(self.inner, self.now) > self.node.timeout
    }

    fn peer_wins(&self) -> bool {
        let ours = self.inner.epoch.get();
        self.inner
            .peer
            .as_ref()
            .is_some_and(|p| p.epoch > ours || (p.epoch == ours && p.role == HaRole::Primary))
    }

    fn may_activate(&self) -> bool {
        read(&self.node.arbiter)
            .as_ref()
            .is_none_or(|a| a.may_activate())
    }
}

fn read<T: Clone>(l: &RwLock<T>) -> T {
    l.read().unwrap_or_else(|e| e.into_inner()).clone()
}

impl Node {
    pub(super) fn new(
        role: HaRole,
        timeout: Duration,
        peer: Remote,
        epoch: EpochFile,
        broker: &Arc<Broker>,
        follow_ups: mpsc::UnboundedSender<FollowUp>,
    ) -> Node {
        let now = Instant::now();
        Node {
            role,
            timeout,
            peer,
            identifier: broker.identifier().to_owned(),
            started: now,
            broker: Arc::downgrade(broker),
            inner: Mutex::new(Inner {
                state: State::INITIAL,
                epoch,
                peer: None,
                last_heard: None,
                seen_active_peer: false,
                silence_reported: false,
                reason: "started".into(),
                changed_at: now,
                serial: 0,
                transitions: 0,
                refused: 0,
                misconfig_logged: false,
                newest: None,
            }),
            hooks: RwLock::new(Arc::new(NoHooks)),
            arbiter: RwLock::new(None),
            follow_ups,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn silence(&self, inner: &Inner, now: Instant) -> Duration {
        now.saturating_duration_since(inner.last_heard.unwrap_or(self.started))
    }

    pub fn role(&self) -> HaRole {
        self.role
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    pub fn peer(&self) -> &Remote {
        &self.peer
    }

    pub fn state(&self) -> State {
        self.lock().state
    }

    pub(super) fn hooks(&self) -> Arc<dyn HaHooks> {
        read(&self.hooks)
    }

    pub(super) fn set_hooks(&self, hooks: Arc<dyn HaHooks>) {
        *self.hooks.write().unwrap_or_else(|e| e.into_inner()) = hooks;
        let _ = self.follow_ups.send(FollowUp::Replay);
    }

    /// The activation epoch now.
    pub fn epoch(&self) -> u64 {
        self.lock().epoch.get()
    }

    pub(super) fn set_arbiter(&self, arbiter: Option<Arc<dyn Arbiter>>) {
        *self.arbiter.write().unwrap_or_else(|e| e.into_inner()) = arbiter;
    }

    pub(super) fn broker(&self) -> Option<Arc<Broker>> {
        self.broker.upgrade()
    }

    /// Feeds `event` to the machine; `why` becomes the reason if the state changes.
    /// Returns the step taken (None: the event changed nothing).
    pub fn fire(&self, event: Event, why: &str) -> Option<Step> {
        let mut inner = self.lock();
        self.fire_locked(&mut inner, event, why)
    }

    fn fire_locked(&self, inner: &mut Inner, event: Event, why: &str) -> Option<Step> {
        let now = Instant::now();
        let step = transition(
            inner.state,
            event,
            &View {
                node: self,
                inner,
                now,
            },
        )?;
        let from = inner.state;
        let mut activated = None;
        for action in step.actions {
            match action {
                Action::Activate => {
                    let seen = inner.peer.as_ref().map_or(0, |p| p.epoch);
                    match inner.epoch.raise(seen) {
                        Ok(epoch) => activated = Some(epoch),
                        Err(e) => {
                            // Activating without a durable epoch could later let a stale
                            // member win a heal: stay where we are.
                            tracing::error!(
                                "HA: cannot activate ({why}): epoch file {}: {e}",
                                inner.epoch.path().display()
                            );
                            return None;
                        }
                    }
                }
                Action::StepDown => tracing::error!(
                    "HA alert: stepping down from active ({why}); closing client connections"
                ),
                Action::Alert => tracing::warn!("HA: {why}"),
                Action::AcceptClient | Action::RefuseClient => {}
            }
        }
        if step.next != from {
            inner.state = step.next;
            inner.reason = why.to_string();
            inner.changed_at = now;
            inner.transitions += 1;
            tracing::warn!(
                "HA: {} {from} -> {} ({why}), epoch {}",
                self.role.name(),
                step.next,
                inner.epoch.get()
            );
            let follow = if let Some(epoch) = activated {
                FollowUp::Activated(epoch)
            } else if step.actions.contains(&Action::StepDown) {
                FollowUp::StepDown {
                    reason: why.to_string(),
                }
            } else {
                FollowUp::BecamePassive
            };
            let _ = self.follow_ups.send(follow);
        }
        Some(step)
    }

    /// A state message from the peer (either tunnel).
    pub fn on_peer_state(&self, m: &HaState) {
        let state = m.state.as_str().and_then(State::from_name);
        let role = m.role.as_str().and_then(|r| HaRole::parse(r).ok());
        let identifier = String::from_utf8_lossy(m.identifier.as_bytes()).into_owned();
        let mut inner = self.lock();
        // A pending member (just started) believes only answers to its own states:
        // anything else may have waited in the peer's tunnel since before the peer's
        // last change, and would decide the start-up on a state that is gone.
        if inner.state == State::Pending && !m.answer {
            return;
        }
        let (Some(state), Some(role)) = (state, role) else {
            if !inner.misconfig_logged {
                inner.misconfig_logged = true;
                tracing::error!("HA: the peer sent a state this broker does not know: {m:?}");
            }
            return;
        };
        if role == self.role || identifier == self.identifier {
            if !inner.misconfig_logged {
                inner.misconfig_logged = true;
                tracing::error!(
                    "HA: the peer {} is also {} (or is this broker): check [ha] on both; its state is ignored",
                    self.peer.display(),
                    role.name()
                );
            }
            return;
        }
        // The two tunnels (ours and the peer's) each re-send after a reconnect what was
        // not acknowledged: a state older than one already heard says what is no longer
        // so (a "passive" from before a takeover would make a stepped-down primary
        // activate again). The peer numbers every state it sends, on either tunnel.
        if let Some((id, serial)) = &inner.newest
            && *id == identifier
            && m.serial <= *serial
        {
            return;
        }
        inner.newest = Some((identifier.clone(), m.serial));
        let now = Instant::now();
        inner.last_heard = Some(now);
        inner.silence_reported = false;
        if state == State::Active {
            inner.seen_active_peer = true;
        }
        inner.peer = Some(PeerView {
            state,
            role,
            epoch: m.epoch,
            identifier,
        });
        let event = match state {
            State::Pending => Event::PeerPending,
            State::Active => Event::PeerActive,
            State::Passive => Event::PeerPassive,
        };
        let why = format!("peer is {state} (epoch {})", m.epoch);
        self.fire_locked(&mut inner, event, &why);
    }

    /// Called every tick: turns a silence longer than the timeout into one `timeout`
    /// (every tick while still pending: an arbiter that said no may say yes later).
    pub(super) fn check_silence(&self) {
        let mut inner = self.lock();
        let silence = self.silence(&inner, Instant::now());
        let reported = inner.silence_reported && inner.state != State::Pending;
        if reported || silence <= self.timeout {
            return;
        }
        inner.silence_reported = true;
        let why = if inner.last_heard.is_none() {
            format!("no peer seen within the timeout ({:?})", self.timeout)
        } else {
            format!(
                "peer silent for longer than the timeout ({:?})",
                self.timeout
            )
        };
        self.fire_locked(&mut inner, Event::Timeout, &why);
    }

    /// An ordinary client asks to connect: admitted, or refused with a close naming the
    /// peer.
    pub fn client_request(&self) -> Result<(), AmqpError> {
        let mut inner = self.lock();
        let step = self.fire_locked(&mut inner, Event::ClientRequest, "a client connected");
        if step.is_some_and(|s| s.actions.contains(&Action::AcceptClient)) {
            return Ok(());
        }
        inner.refused += 1;
        let what = match inner.state {
            State::Pending => "is starting as a member of an HA pair and is not active yet",
            _ => "is the passive member of an HA pair",
        };
        Err(AmqpError::new(
            ReplyCode::ConnectionForced,
            format!(
                "fedamq: this broker {what}; connect to {}:{}",
                self.peer.host, self.peer.port
            ),
        ))
    }

    /// Our state as the message the peer receives.
    pub(super) fn state_message(&self, answer: bool) -> HaState {
        let mut inner = self.lock();
        inner.serial += 1;
        let s = |v: &str| ShortString::try_from(v).unwrap_or_default();
        HaState {
            state: s(inner.state.name()),
            role: s(self.role.name()),
            epoch: inner.epoch.get(),
            identifier: s(&self.identifier),
            serial: inner.serial,
            answer,
        }
    }

    pub fn status(&self) -> HaStatus {
        let inner = self.lock();
        let now = Instant::now();
        HaStatus {
            state: inner.state.name(),
            role: self.role.name(),
            epoch: inner.epoch.get(),
            peer_address: format!("{}:{}", self.peer.host, self.peer.port),
            peer: inner.peer.as_ref().map(|p| PeerStatus {
                state: p.state.name(),
                role: p.role.name(),
                epoch: p.epoch,
                identifier: p.identifier.clone(),
            }),
            last_peer_heartbeat_ms: inner.last_heard.map(|t| {
                u64::try_from(now.saturating_duration_since(t).as_millis()).unwrap_or(u64::MAX)
            }),
            reason: inner.reason.clone(),
            since_change_ms: u64::try_from(
                now.saturating_duration_since(inner.changed_at).as_millis(),
            )
            .unwrap_or(u64::MAX),
            timeout_ms: u64::try_from(self.timeout.as_millis()).unwrap_or(u64::MAX),
            transitions: inner.transitions,
            refused_clients: inner.refused,
            fencing_token: read(&self.arbiter).and_then(|a| a.fencing_token()),
        }
    }
}

#[cfg(test)]
mod tests {
    //! Binary Star's rules as the generated machine has them (spec/ha.xml).
    use super::*;

    struct G {
        primary: bool,
        expired: bool,
        peer_wins: bool,
        may: bool,
    }

    impl Guards for G {
        fn primary(&self) -> bool {
            self.primary
        }
        fn peer_expired(&self) -> bool {
            self.expired
        }
        fn peer_wins(&self) -> bool {
            self.peer_wins
        }
        fn may_activate(&self) -> bool {
            self.may
        }
    }

    fn g(primary: bool) -> G {
        G {
            primary,
            expired: false,
            peer_wins: false,
            may: true,
        }
    }

    fn next(state: State, event: Event, guards: &G) -> Option<State> {
        transition(state, event, guards).map(|s| s.next)
    }

    #[test]
    fn start_up() {
        use Event::*;
        use State::*;
        assert_eq!(next(Pending, Timeout, &g(true)), Some(Active));
        assert_eq!(next(Pending, Timeout, &g(false)), Some(Passive));
        assert_eq!(next(Pending, PeerPending, &g(true)), Some(Active));
        assert_eq!(next(Pending, PeerPending, &g(false)), None);
        assert_eq!(next(Pending, PeerActive, &g(true)), Some(Passive));
        // The arbiter, when it says no, keeps the primary from activating.
        let no = G {
            may: false,
            ..g(true)
        };
        assert_eq!(next(Pending, Timeout, &no), None);
    }

    #[test]
    fn takeover_only_on_a_client_after_silence() {
        use Event::*;
        use State::*;
        let backup = g(false);
        assert_eq!(next(Passive, Timeout, &backup), Some(Passive));
        let refused = transition(Passive, ClientRequest, &backup).unwrap();
        assert_eq!(refused.next, Passive);
        assert_eq!(refused.actions, &[Action::RefuseClient]);
        let expired = G {
            expired: true,
            ..g(false)
        };
        let taken = transition(Passive, ClientRequest, &expired).unwrap();
        assert_eq!(taken.next, Active);
        assert_eq!(taken.actions, &[Action::Activate, Action::AcceptClient]);
    }

    #[test]
    fn heal_and_failback() {
        use Event::*;
        use State::*;
        let loses = G {
            peer_wins: true,
            ..g(true)
        };
        let step = transition(Active, PeerActive, &loses).unwrap();
        assert_eq!(
            (step.next, step.actions),
            (Passive, &[Action::StepDown][..])
        );
        assert_eq!(next(Active, PeerActive, &g(true)), None);
        assert_eq!(next(Active, Failback, &g(false)), Some(Passive));
        assert_eq!(next(Active, Failback, &g(true)), None);
        assert_eq!(next(Passive, Failback, &g(true)), Some(Active));
        assert_eq!(next(Passive, PeerPassive, &g(true)), Some(Active));
        assert_eq!(next(Passive, PeerPassive, &g(false)), None);
        assert_eq!(next(Active, LostLease, &g(true)), Some(Passive));
    }
}
