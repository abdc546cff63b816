//! Events for other connections, held while a connection handles one read's worth of
//! frames and then sent per mailbox in one go.
//!
//! A publish that reaches a waiting consumer sends a delivery to that consumer's
//! connection task. Sent one by one, each delivery can wake that task anew (it drains
//! its mailbox faster than the publisher fills it), and on a multi-threaded runtime every
//! wake-up is a trip through the kernel's scheduler: profiles of 1 publisher → 1 consumer
//! showed a quarter of the broker's time there. Held and sent as one
//! [`ConnectionEvent::Batch`] per mailbox, they cost one wake-up per read.
//!
//! Holding is per thread and only around synchronous code ([`hold`] returns a guard
//! that sends everything when dropped), so nothing held can be forgotten across an
//! `await` or seen by another task. Every event for a connection goes through [`send`],
//! so held events keep their order relative to each other.

use super::consumer::{ConnectionEvent, Mailbox};
use std::cell::RefCell;

thread_local! {
    static HELD: RefCell<Holder> = const {
        RefCell::new(Holder {
            holding: false,
            runs: Vec::new(),
            run_capacity: *RUN_CAPACITY.start(),
        })
    };
}

/// This thread's held events. The list of runs keeps its allocation from one hold to
/// the next; a run's events leave in the batch they make.
struct Holder {
    holding: bool,
    runs: Vec<Held>,
    /// The longest run of the last flush: a new run gets room for as many events, so
    /// a steady stream of reads seldom regrows its runs.
    run_capacity: usize,
}

/// Bounds of [`Holder::run_capacity`].
const RUN_CAPACITY: std::ops::RangeInclusive<usize> = 8..=1024;

/// A run of events for one mailbox, in the order they were sent.
struct Held {
    mailbox: Mailbox,
    events: Vec<ConnectionEvent>,
}

/// While alive, [`send`] on this thread holds events; dropping it sends them.
#[must_use = "events are held only while the guard lives"]
pub struct Holding {
    /// Whether this guard started the holding (nested guards leave it to the outer one).
    outer: bool,
}

pub fn hold() -> Holding {
    let outer = HELD.with(|h| !std::mem::replace(&mut h.borrow_mut().holding, true));
    Holding { outer }
}

impl Drop for Holding {
    fn drop(&mut self) {
        if !self.outer {
            return;
        }
        let mut runs = HELD.with(|h| {
            let mut h = h.borrow_mut();
            h.holding = false;
            std::mem::take(&mut h.runs)
        });
        if runs.is_empty() {
            return;
        }
        let longest = runs.iter().map(|r| r.events.len()).max().unwrap_or(0);
        // Sending may send more (a delivery taken back goes to another consumer); those
        // go straight out, as nothing is held any more.
        flush(&mut runs);
        HELD.with(|h| {
            let mut h = h.borrow_mut();
            h.run_capacity = longest.clamp(*RUN_CAPACITY.start(), *RUN_CAPACITY.end());
            if h.runs.capacity() == 0 {
                h.runs = runs;
            }
        });
    }
}

/// Sends `event` to `mailbox`, or holds it while this thread is holding. `Err` gives the
/// event back when the connection is gone (only known at once when not holding; a held
/// delivery to a gone connection is taken back by its queue at the flush).
pub fn send(mailbox: &Mailbox, event: ConnectionEvent) -> Result<(), ConnectionEvent> {
    let event = HELD.with(|h| {
        let mut h = h.borrow_mut();
        if !h.holding {
            return Some(event);
        }
        // Consecutive events for one mailbox join its run as they come, so the flush
        // moves each event once and clones each mailbox once per run.
        match h.runs.last_mut() {
            Some(run) if run.mailbox.same_channel(mailbox) => run.events.push(event),
            _ => {
                let mut events = Vec::with_capacity(h.run_capacity);
                events.push(event);
                h.runs.push(Held {
                    mailbox: mailbox.clone(),
                    events,
                });
            }
        }
        None
    });
    match event {
        None => Ok(()),
        Some(event) => mailbox.send(event).map_err(|e| e.0),
    }
}

/// One batch per run of events for the same mailbox, in order; `runs` is left empty.
fn flush(runs: &mut Vec<Held>) {
    for Held {
        mailbox,
        mut events,
    } in runs.drain(..)
    {
        let event = if events.len() == 1 {
            events.pop().expect("a run holds at least one event")
        } else {
            ConnectionEvent::Batch(events)
        };
        if let Err(gone) = mailbox.send(event) {
            take_back(gone.0);
        }
    }
}

/// The connection went away before its deliveries reached it: each goes back to its
/// queue, and the consumer is dropped.
pub(crate) fn take_back(event: ConnectionEvent) {
    match event {
        ConnectionEvent::Batch(events) => events.into_iter().for_each(take_back),
        ConnectionEvent::Deliver {
            consumer,
            queue,
            entry,
            ..
        } => {
            queue.remove_consumer(&consumer);
            queue.undelivered(&consumer, entry);
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::ShortString;
    use tokio::sync::mpsc;

    fn cancelled(n: u16) -> ConnectionEvent {
        ConnectionEvent::Cancelled {
            channel: n,
            consumer_tag: ShortString::from_static("t"),
        }
    }

    fn channels(e: ConnectionEvent) -> Vec<u16> {
        match e {
            ConnectionEvent::Cancelled { channel, .. } => vec![channel],
            ConnectionEvent::Batch(b) => b.into_iter().flat_map(channels).collect(),
            _ => vec![],
        }
    }

    #[test]
    fn held_events_go_out_per_mailbox_in_order_when_the_guard_drops() {
        let (a, mut a_rx) = mpsc::unbounded_channel();
        let (b, mut b_rx) = mpsc::unbounded_channel();
        {
            let _outer = hold();
            {
                // A nested guard leaves the sending to the outer one.
                let _inner = hold();
                send(&a, cancelled(1)).unwrap();
            }
            send(&a, cancelled(2)).unwrap();
            send(&b, cancelled(3)).unwrap();
            send(&a, cancelled(4)).unwrap();
            assert!(a_rx.try_recv().is_err(), "held");
        }
        assert_eq!(channels(a_rx.try_recv().unwrap()), [1, 2]);
        assert_eq!(channels(b_rx.try_recv().unwrap()), [3]);
        assert_eq!(channels(a_rx.try_recv().unwrap()), [4]);
        assert!(a_rx.try_recv().is_err());
        // Not holding: straight out, and a gone connection gives the event back.
        send(&b, cancelled(5)).unwrap();
        assert_eq!(channels(b_rx.try_recv().unwrap()), [5]);
        drop(b_rx);
        assert!(send(&b, cancelled(6)).is_err());
    }

    #[test]
    fn a_run_starts_with_room_for_the_longest_run_of_the_last_flush() {
        let (a, mut a_rx) = mpsc::unbounded_channel();
        let capacity = |e: ConnectionEvent| match e {
            ConnectionEvent::Batch(events) => events.capacity(),
            _ => 0,
        };
        {
            let _h = hold();
            for n in 0..100 {
                send(&a, cancelled(n)).unwrap();
            }
        }
        assert_eq!(channels(a_rx.try_recv().unwrap()).len(), 100);
        {
            let _h = hold();
            send(&a, cancelled(0)).unwrap();
            send(&a, cancelled(1)).unwrap();
        }
        assert!(capacity(a_rx.try_recv().unwrap()) >= 100);
        {
            let _h = hold();
            send(&a, cancelled(0)).unwrap();
            send(&a, cancelled(1)).unwrap();
        }
        assert!(
            capacity(a_rx.try_recv().unwrap()) < 100,
            "follows the last flush"
        );
    }
}
