//! A connection's mailbox: the events that queues and the broker send to one connection
//! task (or broker object), received in the order they were sent.
//!
//! A publish that reaches a waiting consumer sends a delivery to that consumer's
//! connection task. Woken once per delivery, that task drains its mailbox faster than
//! the publisher fills it, and on a multi-threaded runtime every wake-up is a trip
//! through the kernel's scheduler: profiles of 1 publisher → 1 consumer showed a quarter
//! of the broker's time there. So while a connection handles one read's worth of frames
//! ([`hold`]), the wake-ups it causes wait, and each mailbox is woken once at the end.
//!
//! Architecture Invariant: only the wake-up waits, never the event. An event joins its
//! mailbox at once, under the sender's locks: a queue hands out deliveries under its own
//! lock, so they arrive in the queue's order whichever thread sent them. (Holding the
//! events themselves per thread let a delivery held by the publisher's thread be
//! overtaken by a later one that the consumer's thread handed out after an ack.)
//!
//! When the receiver closes or goes, what is still in the mailbox is handed to
//! [`Undelivered::undelivered`]: deliveries go back to their queues, so a connection that
//! ends never takes messages with it. (Generic over the event so that this module needs
//! nothing from the consumer whose events it carries.)

use std::cell::RefCell;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::Notify;

/// What becomes of an event that will never be received.
pub trait Undelivered {
    fn undelivered(self);
}

/// The sending side; cheap to clone.
pub struct Mailbox<E> {
    shared: Arc<Shared<E>>,
}

/// The receiving side, owned by the connection task or broker object.
pub struct MailboxReceiver<E: Undelivered> {
    shared: Arc<Shared<E>>,
    /// Events taken from the inbox and not yet received, in order.
    ready: VecDeque<E>,
}

struct Shared<E> {
    inbox: Mutex<Inbox<E>>,
    wake: Notify,
}

struct Inbox<E> {
    events: Vec<E>,
    closed: bool,
}

impl<E> Clone for Mailbox<E> {
    fn clone(&self) -> Self {
        Mailbox {
            shared: self.shared.clone(),
        }
    }
}

impl<E> std::fmt::Debug for Mailbox<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailbox")
            .field("closed", &self.is_closed())
            .finish()
    }
}

impl<E: Undelivered> std::fmt::Debug for MailboxReceiver<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MailboxReceiver")
            .field("ready", &self.ready.len())
            .finish()
    }
}

/// A new, open mailbox.
pub fn mailbox<E: Undelivered>() -> (Mailbox<E>, MailboxReceiver<E>) {
    let shared = Arc::new(Shared {
        inbox: Mutex::new(Inbox {
            events: Vec::new(),
            closed: false,
        }),
        wake: Notify::new(),
    });
    (
        Mailbox {
            shared: shared.clone(),
        },
        MailboxReceiver {
            shared,
            ready: VecDeque::new(),
        },
    )
}

impl<E> Shared<E> {
    fn inbox(&self) -> MutexGuard<'_, Inbox<E>> {
        // Nothing a panic can interrupt leaves the inbox inconsistent.
        self.inbox.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl<E: Send + 'static> Mailbox<E> {
    /// Puts `event` in the mailbox; `Err` gives it back when the receiver is gone.
    pub fn send(&self, event: E) -> Result<(), E> {
        {
            let mut inbox = self.shared.inbox();
            if inbox.closed {
                return Err(event);
            }
            inbox.events.push(event);
        }
        // Every send wakes (or notes the wake-up for the end of this thread's hold):
        // leaving it to an earlier sender's held wake-up would make this event wait on
        // another thread's progress.
        wake(&self.shared);
        Ok(())
    }
}

impl<E> Mailbox<E> {
    /// Whether the receiver is gone.
    pub fn is_closed(&self) -> bool {
        self.shared.inbox().closed
    }

    /// Whether both send to the same receiver.
    pub fn same_mailbox(&self, other: &Mailbox<E>) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }
}

impl<E: Undelivered> MailboxReceiver<E> {
    /// The next event, waiting for one. `None` once closed. Cancel-safe: nothing is
    /// taken from the inbox across the wait.
    pub async fn recv(&mut self) -> Option<E> {
        loop {
            if let Some(event) = self.try_recv() {
                return Some(event);
            }
            if self.shared.inbox().closed {
                return None;
            }
            self.shared.wake.notified().await;
        }
    }

    /// The next event if one is there.
    pub fn try_recv(&mut self) -> Option<E> {
        if self.ready.is_empty() {
            let mut inbox = self.shared.inbox();
            // Drained, not swapped: the inbox keeps its allocation for the next events.
            self.ready.extend(inbox.events.drain(..));
        }
        self.ready.pop_front()
    }

    /// Refuses further events; those not yet received are [`Undelivered`].
    pub fn close(&mut self) {
        let left = {
            let mut inbox = self.shared.inbox();
            inbox.closed = true;
            std::mem::take(&mut inbox.events)
        };
        self.ready.extend(left);
        self.ready.drain(..).for_each(E::undelivered);
    }
}

impl<E: Undelivered> Drop for MailboxReceiver<E> {
    fn drop(&mut self) {
        self.close();
    }
}

thread_local! {
    static HELD: RefCell<HeldWakes> = const {
        RefCell::new(HeldWakes {
            holding: false,
            mailboxes: Vec::new(),
        })
    };
}

/// This thread's held wake-ups: the mailboxes' notifiers, whatever their events.
struct HeldWakes {
    holding: bool,
    mailboxes: Vec<Arc<dyn Wake>>,
}

/// A mailbox's notifier, without its event type.
trait Wake: Send + Sync {
    fn notify(&self);
}

impl<E: Send + 'static> Wake for Shared<E> {
    fn notify(&self) {
        self.wake.notify_one();
    }
}

/// While alive, wake-ups of mailboxes on this thread wait; dropping it wakes each once.
#[must_use = "wake-ups are held only while the guard lives"]
pub struct Holding {
    /// Whether this guard started the holding (nested guards leave it to the outer one).
    outer: bool,
}

/// Holds this thread's mailbox wake-ups until the guard drops. Only around synchronous
/// code, so that nothing held waits across an `await`.
pub fn hold() -> Holding {
    let outer = HELD.with(|h| !std::mem::replace(&mut h.borrow_mut().holding, true));
    Holding { outer }
}

impl Drop for Holding {
    fn drop(&mut self) {
        if !self.outer {
            return;
        }
        let mut mailboxes = HELD.with(|h| {
            let mut h = h.borrow_mut();
            h.holding = false;
            std::mem::take(&mut h.mailboxes)
        });
        for m in mailboxes.drain(..) {
            m.notify();
        }
        // Keep the list's allocation for the next hold.
        HELD.with(|h| {
            let mut h = h.borrow_mut();
            if h.mailboxes.capacity() == 0 {
                h.mailboxes = mailboxes;
            }
        });
    }
}

/// Wakes the receiver of `shared` now, or at the end of this thread's hold.
fn wake<E: Send + 'static>(shared: &Arc<Shared<E>>) {
    let now = HELD.with(|h| {
        let mut h = h.borrow_mut();
        if !h.holding {
            return true;
        }
        // Compared by address alone: the same mailbox whatever vtable it was seen with.
        let held = h
            .mailboxes
            .iter()
            .any(|m| std::ptr::addr_eq(Arc::as_ptr(m), Arc::as_ptr(shared)));
        if !held {
            h.mailboxes.push(shared.clone());
        }
        false
    });
    if now {
        shared.wake.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    /// A numbered event; counts those that were never received.
    #[derive(Debug)]
    struct Event(u16);

    static UNDELIVERED: AtomicUsize = AtomicUsize::new(0);

    impl Undelivered for Event {
        fn undelivered(self) {
            UNDELIVERED.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn cancelled(n: u16) -> Event {
        Event(n)
    }

    fn channel(e: Event) -> u16 {
        e.0
    }

    fn woken(rx: &mut MailboxReceiver<Event>) -> bool {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        rt.block_on(async {
            tokio::time::timeout(Duration::from_millis(20), rx.shared.wake.notified())
                .await
                .is_ok()
        })
    }

    #[test]
    fn events_from_two_threads_arrive_in_the_order_they_were_sent() {
        // The order a queue's lock gives them: the holding thread's event first.
        let (a, mut rx) = mailbox();
        let holding = hold();
        a.send(cancelled(1)).unwrap();
        let b = a.clone();
        std::thread::spawn(move || b.send(cancelled(2)).unwrap())
            .join()
            .unwrap();
        // Both are there before the holder lets its wake-up go.
        assert_eq!(rx.try_recv().map(channel), Some(1));
        assert_eq!(rx.try_recv().map(channel), Some(2));
        drop(holding);
        assert!(rx.try_recv().is_none());
    }

    #[test]
    fn a_hold_wakes_each_mailbox_once_when_it_ends() {
        let (a, mut a_rx) = mailbox();
        let (b, mut b_rx) = mailbox();
        {
            let _outer = hold();
            {
                // A nested guard leaves the waking to the outer one.
                let _inner = hold();
                a.send(cancelled(1)).unwrap();
            }
            a.send(cancelled(2)).unwrap();
            b.send(cancelled(3)).unwrap();
            assert!(!woken(&mut a_rx), "held");
        }
        assert!(woken(&mut a_rx));
        assert!(!woken(&mut a_rx), "one wake-up for both events");
        assert!(woken(&mut b_rx));
        assert_eq!(a_rx.try_recv().map(channel), Some(1));
        assert_eq!(a_rx.try_recv().map(channel), Some(2));
        assert_eq!(b_rx.try_recv().map(channel), Some(3));
        // Not holding: woken at once.
        b.send(cancelled(4)).unwrap();
        assert!(woken(&mut b_rx));
    }

    #[test]
    fn a_closed_mailbox_gives_events_back_and_recv_ends() {
        let (a, mut rx) = mailbox();
        a.send(cancelled(1)).unwrap();
        let before = UNDELIVERED.load(Ordering::Relaxed);
        rx.close();
        assert_eq!(UNDELIVERED.load(Ordering::Relaxed), before + 1);
        assert!(a.is_closed());
        assert!(a.send(cancelled(2)).is_err());
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        assert!(rt.block_on(rx.recv()).is_none());
    }
}
