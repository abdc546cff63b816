//! Publisher confirms held back and coalesced, as RabbitMQ sends them: the acks a
//! connection produces while it handles one read of frames go out at the end of that read
//! as one `basic.ack multiple=true` per channel, for the highest sequence number of the run.
//!
//! A publish is confirmed as soon as it is routed, in sequence order, so every message of
//! a channel below the run is already settled and `multiple` covers exactly the run. A
//! nack breaks the run: the acks before it go out first, then the nack, so no ack covers a
//! message that was refused. Whatever closes a channel or the connection sends that
//! channel's pending acks first ([`PendingConfirms::flush_channel`]): a client must hear
//! about its confirmed messages before the close.

use bytes::BytesMut;

use crate::protocol::frame::encode_frame_with;
use crate::protocol::generated::constants::FRAME_METHOD;
use crate::protocol::generated::methods::{BasicAck, BasicNack};

/// A channel's acks not yet sent: sequence numbers `first..=last`.
#[derive(Debug, Clone, Copy)]
struct Run {
    channel: u16,
    first: u64,
    last: u64,
}

/// The connection's pending acks, one run per channel that has any (usually one channel,
/// so a vector searched from the end).
#[derive(Debug, Default)]
pub struct PendingConfirms {
    runs: Vec<Run>,
}

impl PendingConfirms {
    /// `seq` on `channel` was routed: held until the end of the read.
    pub fn ack(&mut self, channel: u16, seq: u64) {
        match self.runs.iter_mut().rev().find(|r| r.channel == channel) {
            Some(run) => run.last = seq,
            None => self.runs.push(Run {
                channel,
                first: seq,
                last: seq,
            }),
        }
    }

    /// `seq` on `channel` was refused (a queue rejected it): the pending acks before it,
    /// then the nack, go out now.
    pub fn nack(&mut self, channel: u16, seq: u64, out: &mut BytesMut) {
        self.flush_channel(channel, out);
        let nack = BasicNack {
            delivery_tag: seq,
            multiple: false,
            requeue: false,
        };
        encode_frame_with(out, FRAME_METHOD, channel, |b| nack.encode(b));
    }

    /// Sends `channel`'s pending acks.
    pub fn flush_channel(&mut self, channel: u16, out: &mut BytesMut) {
        if let Some(i) = self.runs.iter().position(|r| r.channel == channel) {
            encode_ack(self.runs.swap_remove(i), out);
        }
    }

    /// Sends every channel's pending acks: the end of a read, or the connection closing.
    pub fn flush(&mut self, out: &mut BytesMut) {
        for run in self.runs.drain(..) {
            encode_ack(run, out);
        }
    }
}

fn encode_ack(run: Run, out: &mut BytesMut) {
    let ack = BasicAck {
        delivery_tag: run.last,
        multiple: run.first != run.last,
    };
    encode_frame_with(out, FRAME_METHOD, run.channel, |b| ack.encode(b));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::frame::FrameDecoder;
    use crate::protocol::generated::methods::Method;

    /// The (channel, method) frames in `out`.
    fn frames(out: &mut BytesMut) -> Vec<(u16, Method)> {
        let mut decoder = FrameDecoder::new(131_072);
        let mut seen = Vec::new();
        while let Some(f) = decoder.decode(out).unwrap() {
            let crate::protocol::frame::FramePayload::Method(p) = f.payload else {
                panic!("not a method frame")
            };
            seen.push((f.channel, Method::decode(&p).unwrap()));
        }
        seen
    }

    fn ack(tag: u64, multiple: bool) -> Method {
        Method::BasicAck(BasicAck {
            delivery_tag: tag,
            multiple,
        })
    }

    fn nack(tag: u64) -> Method {
        Method::BasicNack(BasicNack {
            delivery_tag: tag,
            multiple: false,
            requeue: false,
        })
    }

    #[test]
    fn a_run_of_acks_is_one_multiple_ack_per_channel() {
        let mut p = PendingConfirms::default();
        let mut out = BytesMut::new();
        for seq in 1..=5 {
            p.ack(1, seq);
        }
        p.ack(2, 7);
        assert!(out.is_empty(), "nothing is sent before the flush");
        p.flush(&mut out);
        assert_eq!(frames(&mut out), [(1, ack(5, true)), (2, ack(7, false))]);
        p.flush(&mut out);
        assert!(out.is_empty(), "a flush sends each ack once");
    }

    #[test]
    fn a_nack_sends_the_acks_before_it_then_itself() {
        let mut p = PendingConfirms::default();
        let mut out = BytesMut::new();
        p.ack(1, 1);
        p.ack(1, 2);
        p.ack(2, 1);
        p.nack(1, 3, &mut out);
        p.ack(1, 4);
        p.ack(1, 5);
        p.nack(1, 6, &mut out);
        p.nack(1, 7, &mut out);
        p.ack(1, 8);
        p.flush(&mut out);
        assert_eq!(
            frames(&mut out),
            [
                (1, ack(2, true)),
                (1, nack(3)),
                (1, ack(5, true)),
                (1, nack(6)),
                (1, nack(7)),
                (2, ack(1, false)),
                (1, ack(8, false)),
            ]
        );
    }

    #[test]
    fn flushing_one_channel_leaves_the_others() {
        let mut p = PendingConfirms::default();
        let mut out = BytesMut::new();
        p.ack(1, 1);
        p.ack(2, 1);
        p.ack(2, 2);
        p.flush_channel(2, &mut out);
        assert_eq!(frames(&mut out), [(2, ack(2, true))]);
        p.flush(&mut out);
        assert_eq!(frames(&mut out), [(1, ack(1, false))]);
    }
}
