//! The owner's acks for one channel incarnation, sent as few `basic.ack multiple`
//! as they allow: the remote settles a run of deliveries with one frame instead of one
//! frame each. The owner settles in any order; only a run that follows every earlier
//! tag settled is folded into a multiple ack, whose own tag is always one not yet sent,
//! so the remote never sees a tag twice.

use std::collections::BTreeSet;

/// Settlement state of the channel's delivery tags (1, 2, 3, … per channel).
#[derive(Debug, Default)]
pub(super) struct AckRun {
    /// Every tag up to this one is settled (sent, or folded into `pending`).
    settled_through: u64,
    /// Tags above `settled_through` already settled on their own.
    ahead: BTreeSet<u64>,
    /// The tag of the multiple ack not yet sent, which settles every unsettled tag up
    /// to it.
    pending: Option<u64>,
}

/// What to send now.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Send {
    /// Nothing: the ack waits in the run.
    Nothing,
    /// `basic.ack` for this tag, not multiple (out of order).
    Single(u64),
}

impl AckRun {
    /// The owner acked `tag`.
    pub(super) fn ack(&mut self, tag: u64) -> Send {
        if tag == self.settled_through + 1 {
            self.pending = Some(tag);
            self.advance(tag);
            Send::Nothing
        } else if tag > self.settled_through && self.ahead.insert(tag) {
            Send::Single(tag)
        } else {
            // Settled already, or a tag before the run: nothing the remote would accept.
            Send::Nothing
        }
    }

    /// The owner rejected `tag`, which the caller sends as it is. Returns the multiple
    /// ack to send first, if any (the remote must not take the reject into a later
    /// multiple ack, and a run is cut by it anyway).
    pub(super) fn reject(&mut self, tag: u64) -> Option<u64> {
        let before = self.take();
        if tag == self.settled_through + 1 {
            self.advance(tag);
        } else if tag > self.settled_through {
            self.ahead.insert(tag);
        }
        before
    }

    /// The multiple ack to send now, if any.
    pub(super) fn take(&mut self) -> Option<u64> {
        self.pending.take()
    }

    fn advance(&mut self, tag: u64) {
        self.settled_through = tag;
        while self.ahead.remove(&(self.settled_through + 1)) {
            self.settled_through += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_order_acks_fold_into_one() {
        let mut r = AckRun::default();
        for tag in 1..=5 {
            assert_eq!(r.ack(tag), Send::Nothing);
        }
        assert_eq!(r.take(), Some(5));
        assert_eq!(r.take(), None);
        assert_eq!(r.ack(6), Send::Nothing);
        assert_eq!(r.take(), Some(6));
    }

    #[test]
    fn out_of_order_acks_go_alone_and_never_end_a_run() {
        let mut r = AckRun::default();
        assert_eq!(r.ack(2), Send::Single(2));
        assert_eq!(r.ack(3), Send::Single(3));
        assert_eq!(r.take(), None);
        // 1 fills the hole: the run's tag is 1, the one not yet sent.
        assert_eq!(r.ack(1), Send::Nothing);
        assert_eq!(r.ack(4), Send::Nothing);
        assert_eq!(r.take(), Some(4));
        // A tag settled twice is not sent twice.
        assert_eq!(r.ack(3), Send::Nothing);
        assert_eq!(r.take(), None);
    }

    #[test]
    fn a_reject_sends_the_run_before_it() {
        let mut r = AckRun::default();
        r.ack(1);
        r.ack(2);
        assert_eq!(r.reject(3), Some(2));
        assert_eq!(r.ack(4), Send::Nothing);
        assert_eq!(r.take(), Some(4));
        assert_eq!(r.reject(6), None);
        assert_eq!(r.ack(5), Send::Nothing);
        assert_eq!(r.take(), Some(5));
        assert_eq!(r.ack(7), Send::Nothing);
        assert_eq!(r.take(), Some(7));
    }
}
