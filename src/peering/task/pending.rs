//! Matching the remote's answers to our requests. The remote answers the synchronous
//! requests on a channel in the order they were sent, so the requests on the wire are a
//! queue: an answer is for the oldest, and must be one of its responses.

use std::collections::VecDeque;

use crate::protocol::generated::methods::Method;

use super::super::declared::{Declared, Waiter};
use super::super::error::PeeringError;

/// A request on the wire, waiting for its answer. Answers come in request order.
pub(super) enum Pending {
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

/// What an answer was for, once its waiters have it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Answered {
    ChannelOpen,
    ConfirmSelect,
    /// A declared-state entry; `replay`: sent by the replay after a (re)connect.
    Entry {
        replay: bool,
    },
    Request,
}

/// The requests on the wire, oldest first.
#[derive(Default)]
pub(super) struct InFlight(VecDeque<Pending>);

impl InFlight {
    pub(super) fn push(&mut self, p: Pending) {
        self.0.push_back(p);
    }

    /// Gives `m` to the oldest request's waiters (for a declaration, also to owners who
    /// asked again while it was on the wire). `Err`: the violation's text, when nothing
    /// was asked or `m` does not answer it.
    pub(super) fn answer(
        &mut self,
        m: Method,
        declared: &mut Declared,
    ) -> Result<Answered, String> {
        let Some(p) = self.0.pop_front() else {
            return Err(format!("{} answers nothing we asked", m.name()));
        };
        let id = (m.class_id(), m.method_id());
        match p {
            Pending::ChannelOpen if matches!(m, Method::ChannelOpenOk(_)) => {
                Ok(Answered::ChannelOpen)
            }
            Pending::ConfirmSelect if matches!(m, Method::ConfirmSelectOk(_)) => {
                Ok(Answered::ConfirmSelect)
            }
            Pending::Entry {
                id: entry,
                waiters,
                replay,
                responses,
            } if responses.contains(&id) => {
                let later = declared
                    .get_mut(entry)
                    .map(|e| std::mem::take(&mut e.waiters))
                    .unwrap_or_default();
                for w in waiters.into_iter().chain(later) {
                    let _ = w.send(Ok(m.clone()));
                }
                Ok(Answered::Entry { replay })
            }
            Pending::Request(w, responses) if responses.contains(&id) => {
                let _ = w.send(Ok(m));
                Ok(Answered::Request)
            }
            _ => Err(format!("{} does not answer what we asked", m.name())),
        }
    }

    /// The remote closed the channel over the oldest request: it fails with `err`, and a
    /// declaration the remote refused is no longer part of the declared state.
    pub(super) fn fail_oldest(&mut self, declared: &mut Declared, err: &PeeringError) {
        let Some(first) = self.0.pop_front() else {
            return;
        };
        match first {
            Pending::Entry { id, waiters, .. } => {
                declared.remove(id);
                for w in waiters {
                    let _ = w.send(Err(err.clone()));
                }
            }
            Pending::Request(w, _) => {
                let _ = w.send(Err(err.clone()));
            }
            other => self.0.push_front(other),
        }
    }

    /// The channel or connection is gone: a declaration's waiters go back to its entry,
    /// to be answered by the replay; other requests fail.
    pub(super) fn forget(&mut self, declared: &mut Declared) {
        for p in self.0.drain(..) {
            match p {
                Pending::Entry { id, waiters, .. } => {
                    if let Some(e) = declared.get_mut(id) {
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::ShortString;
    use crate::protocol::generated::methods::{
        ChannelOpenOk, ExchangeDeleteOk, QueueDeclare, QueueDeclareOk,
    };
    use tokio::sync::oneshot;

    type Answer = oneshot::Receiver<Result<Method, PeeringError>>;

    fn waiter() -> (Waiter, Answer) {
        oneshot::channel()
    }

    fn declare(name: &'static str) -> Method {
        Method::QueueDeclare(QueueDeclare {
            queue: ShortString::from_static(name),
            ..Default::default()
        })
    }

    fn declare_ok(name: &'static str) -> Method {
        Method::QueueDeclareOk(QueueDeclareOk {
            queue: ShortString::from_static(name),
            message_count: 0,
            consumer_count: 0,
        })
    }

    /// A declaration recorded in `declared` and put on the wire.
    fn entry(declared: &mut Declared, name: &'static str, replay: bool) -> (Pending, Answer) {
        let method = declare(name);
        let (id, _) = declared.record(method.clone()).unwrap();
        let (w, rx) = waiter();
        let pending = Pending::Entry {
            id,
            waiters: vec![w],
            replay,
            responses: method.info().responses,
        };
        (pending, rx)
    }

    #[test]
    fn answers_go_to_the_oldest_request_in_order() {
        let mut declared = Declared::default();
        let mut wire = InFlight::default();
        wire.push(Pending::ChannelOpen);
        let (e, mut first) = entry(&mut declared, "q1", true);
        wire.push(e);
        let (w, mut second) = waiter();
        wire.push(Pending::Request(w, declare("q2").info().responses));

        let open = Method::ChannelOpenOk(ChannelOpenOk {});
        assert_eq!(wire.answer(open, &mut declared), Ok(Answered::ChannelOpen));
        assert_eq!(
            wire.answer(declare_ok("q1"), &mut declared),
            Ok(Answered::Entry { replay: true })
        );
        assert!(matches!(
            first.try_recv(),
            Ok(Ok(Method::QueueDeclareOk(_)))
        ));
        assert!(second.try_recv().is_err(), "answered out of turn");
        assert_eq!(
            wire.answer(declare_ok("q2"), &mut declared),
            Ok(Answered::Request)
        );
        assert!(matches!(
            second.try_recv(),
            Ok(Ok(Method::QueueDeclareOk(_)))
        ));
    }

    #[test]
    fn an_owner_who_asked_again_is_answered_too() {
        let mut declared = Declared::default();
        let mut wire = InFlight::default();
        let (e, mut first) = entry(&mut declared, "q", false);
        wire.push(e);
        let (again, mut second) = waiter();
        let (id, _) = declared.record(declare("q")).unwrap();
        declared.get_mut(id).unwrap().waiters.push(again);
        assert_eq!(
            wire.answer(declare_ok("q"), &mut declared),
            Ok(Answered::Entry { replay: false })
        );
        assert!(matches!(first.try_recv(), Ok(Ok(_))));
        assert!(matches!(second.try_recv(), Ok(Ok(_))));
    }

    #[test]
    fn an_answer_to_nothing_or_to_something_else_is_an_error() {
        let mut declared = Declared::default();
        let mut wire = InFlight::default();
        let other = Method::ExchangeDeleteOk(ExchangeDeleteOk {});
        let e = wire.answer(other.clone(), &mut declared).unwrap_err();
        assert!(e.contains("answers nothing we asked"), "{e}");
        let (w, _rx) = waiter();
        wire.push(Pending::Request(w, declare("q").info().responses));
        let e = wire.answer(other, &mut declared).unwrap_err();
        assert!(e.contains("does not answer what we asked"), "{e}");
    }

    #[test]
    fn a_refused_declaration_is_forgotten_and_fails() {
        let mut declared = Declared::default();
        let mut wire = InFlight::default();
        let (e, mut rx) = entry(&mut declared, "q", false);
        wire.push(e);
        let err = PeeringError::Refused {
            code: 406,
            text: "PRECONDITION_FAILED".into(),
        };
        wire.fail_oldest(&mut declared, &err);
        assert_eq!(rx.try_recv().unwrap(), Err(err));
        assert_eq!(declared.len(), 0);
        // The channel-open in flight is not what failed: it stays.
        wire.push(Pending::ChannelOpen);
        wire.fail_oldest(&mut declared, &PeeringError::Disconnected);
        let open = Method::ChannelOpenOk(ChannelOpenOk {});
        assert_eq!(wire.answer(open, &mut declared), Ok(Answered::ChannelOpen));
    }

    #[test]
    fn on_disconnect_declarations_wait_for_the_replay_and_requests_fail() {
        let mut declared = Declared::default();
        let mut wire = InFlight::default();
        let (e, mut declaration) = entry(&mut declared, "q", false);
        wire.push(e);
        let (w, mut request) = waiter();
        wire.push(Pending::Request(w, declare("q2").info().responses));
        wire.forget(&mut declared);
        assert_eq!(request.try_recv().unwrap(), Err(PeeringError::Disconnected));
        assert!(declaration.try_recv().is_err(), "not answered yet");
        let e = declared.entries_mut().next().unwrap();
        assert_eq!(e.waiters.len(), 1);
        let _ = e.waiters.pop().unwrap().send(Ok(declare_ok("q")));
        assert!(matches!(declaration.try_recv(), Ok(Ok(_))));
        // Nothing is left on the wire.
        let other = Method::ExchangeDeleteOk(ExchangeDeleteOk {});
        assert!(wire.answer(other, &mut declared).is_err());
    }
}
