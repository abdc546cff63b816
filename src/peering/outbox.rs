//! Publishes on their way to the remote: queued while the link is down (or before the
//! replay is done), then in flight until the remote confirms them.
//!
//! Room is taken at the handle, before a publish reaches the peering task: a semaphore of
//! messages and one of bytes, whose permits travel with the publish and are given back
//! when it completes. So the outbox is bounded, and a publisher finding it full waits
//! (back-pressure) rather than a publish being dropped. A publish completes once: with
//! the remote's basic.ack, its basic.nack, or a final error (stopped, refused).

use std::collections::VecDeque;

use bytes::Bytes;
use tokio::sync::{OwnedSemaphorePermit, oneshot};

use crate::protocol::generated::methods::BasicPublish;
use crate::protocol::generated::properties::EncodedBasicProperties;

use super::error::PeeringError;

/// One publish and whoever waits for its confirmation.
#[derive(Debug)]
pub(crate) struct Outgoing {
    pub method: BasicPublish,
    pub properties: EncodedBasicProperties,
    pub body: Bytes,
    pub done: oneshot::Sender<Result<(), PeeringError>>,
    /// It was in flight when a connection or channel was lost: it is sent again, and may
    /// reach the remote twice.
    pub resent: bool,
    /// Outbox room (a message, and its bytes), held only to be given back when this is
    /// dropped.
    pub _room: (OwnedSemaphorePermit, Option<OwnedSemaphorePermit>),
}

impl Outgoing {
    fn complete(self, result: Result<(), PeeringError>) {
        // The publisher may have stopped waiting; the room is freed either way.
        let _ = self.done.send(result);
    }
}

#[derive(Debug, Default)]
pub(crate) struct Outbox {
    /// Not yet written on the current connection, oldest first.
    queued: VecDeque<Outgoing>,
    /// Written, unconfirmed: (publish sequence number on the current channel, publish),
    /// sequence numbers ascending.
    in_flight: VecDeque<(u64, Outgoing)>,
}

impl Outbox {
    pub(crate) fn push(&mut self, out: Outgoing) {
        self.queued.push_back(out);
    }

    pub(crate) fn next_to_send(&mut self) -> Option<Outgoing> {
        self.queued.pop_front()
    }

    pub(crate) fn sent(&mut self, seq: u64, out: Outgoing) {
        self.in_flight.push_back((seq, out));
    }

    /// The remote confirmed (`ok`) or refused delivery tag `tag` (and all before it when
    /// `multiple`). Returns how many publishes completed.
    pub(crate) fn settle(&mut self, tag: u64, multiple: bool, ok: bool) -> u64 {
        let result = || {
            if ok {
                Ok(())
            } else {
                Err(PeeringError::Nacked)
            }
        };
        let mut n = 0;
        if multiple {
            while self.in_flight.front().is_some_and(|(seq, _)| *seq <= tag) {
                if let Some((_, out)) = self.in_flight.pop_front() {
                    out.complete(result());
                    n += 1;
                }
            }
        } else if let Some(at) = self.in_flight.iter().position(|(seq, _)| *seq == tag) {
            if let Some((_, out)) = self.in_flight.remove(at) {
                out.complete(result());
                n += 1;
            }
        }
        n
    }

    /// The oldest unconfirmed publish, taken out: the one a channel error caused by a
    /// publish refers to (the remote handles publishes in order, and confirms all before
    /// it first).
    pub(crate) fn take_oldest_in_flight(&mut self) -> Option<Outgoing> {
        self.in_flight.pop_front().map(|(_, out)| out)
    }

    /// The channel or link is gone: what was in flight was maybe not received, so it is
    /// sent again, first, in its order, marked as resent. (A publish the remote took but
    /// could not confirm arrives twice: at-least-once, never lost.)
    pub(crate) fn requeue_in_flight(&mut self) {
        while let Some((_, mut out)) = self.in_flight.pop_back() {
            out.resent = true;
            self.queued.push_front(out);
        }
    }

    /// Fails everything (the peering stopped or failed for good).
    pub(crate) fn fail_all(&mut self, err: &PeeringError) {
        self.requeue_in_flight();
        while let Some(out) = self.queued.pop_front() {
            out.complete(Err(err.clone()));
        }
    }

    pub(crate) fn depth(&self) -> usize {
        self.queued.len() + self.in_flight.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use tokio::sync::Semaphore;

    fn outgoing(sem: &Arc<Semaphore>) -> (Outgoing, oneshot::Receiver<Result<(), PeeringError>>) {
        let (done, rx) = oneshot::channel();
        let permit = sem.clone().try_acquire_owned().unwrap();
        (
            Outgoing {
                method: BasicPublish::default(),
                properties: EncodedBasicProperties::default(),
                body: Bytes::from_static(b"x"),
                done,
                resent: false,
                _room: (permit, None),
            },
            rx,
        )
    }

    #[test]
    fn confirms_complete_in_order_and_free_room() {
        let sem = Arc::new(Semaphore::new(3));
        let mut ob = Outbox::default();
        let mut rxs = Vec::new();
        for _ in 0..3 {
            let (o, rx) = outgoing(&sem);
            ob.push(o);
            rxs.push(rx);
        }
        assert_eq!(sem.available_permits(), 0);
        for seq in 1..=3 {
            let o = ob.next_to_send().unwrap();
            ob.sent(seq, o);
        }
        assert_eq!(ob.settle(2, true, true), 2);
        assert_eq!(sem.available_permits(), 2);
        assert_eq!(rxs[0].try_recv(), Ok(Ok(())));
        assert_eq!(rxs[1].try_recv(), Ok(Ok(())));
        assert!(rxs[2].try_recv().is_err(), "not yet");
        assert_eq!(ob.settle(3, false, false), 1);
        assert_eq!(rxs[2].try_recv(), Ok(Err(PeeringError::Nacked)));
        assert_eq!(ob.depth(), 0);
    }

    #[test]
    fn a_lost_link_sends_in_flight_again_first_in_order() {
        let sem = Arc::new(Semaphore::new(3));
        let mut ob = Outbox::default();
        let mut bodies = Vec::new();
        for i in 0..3u8 {
            let (mut o, rx) = outgoing(&sem);
            o.body = Bytes::from(vec![i]);
            ob.push(o);
            bodies.push(rx);
        }
        for seq in 1..=2 {
            let o = ob.next_to_send().unwrap();
            ob.sent(seq, o);
        }
        ob.requeue_in_flight();
        let order: Vec<(u8, bool)> = std::iter::from_fn(|| ob.next_to_send())
            .map(|o| (o.body[0], o.resent))
            .collect();
        // Only what was in flight is marked as sent again.
        assert_eq!(order, [(0, true), (1, true), (2, false)]);
    }
}
