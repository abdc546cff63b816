//! A consumer: one connection, one channel, one task. Frames are decoded where they lie
//! in the read buffer (no copy, no allocation per delivery); the only thing read from a
//! body is its first 8 octets, the send time. Acks for a whole read are written at once,
//! as one `multiple=true` ack every `-A` deliveries when asked.

use std::sync::Arc;
use std::time::Instant;

use bytes::{Buf, BytesMut};
use fedamq::protocol::frame::{FrameType, encode_frame_with};
use fedamq::protocol::generated::constants::FRAME_METHOD;
use fedamq::protocol::generated::methods::{BasicAck, BasicDeliver, Method};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

use crate::client::{Conn, Error, Result, write_or_flush};
use crate::stats::{Counters, SharedLatencies, now_ns, record_batch};

pub struct ConsumerConfig {
    pub channel: u16,
    pub no_ack: bool,
    /// Ack with multiple=true every this many deliveries; 0 = ack each.
    pub multi_ack: u64,
    /// Deliveries to take, then stop; 0 = unlimited.
    pub count: u64,
    /// Never read the socket after basic.consume-ok (`--no-read`).
    pub no_read: bool,
}

pub struct ConsumerOutcome {
    pub consumed: u64,
    /// When the last counted delivery arrived, if the consumer stopped at its count;
    /// otherwise when it was told to stop.
    pub end: Instant,
    pub error: Option<String>,
}

/// Where the consumer is within a delivery's frames.
enum Content {
    Idle,
    Header,
    Body { remaining: u64, first: bool },
}

struct Acks {
    channel: u16,
    no_ack: bool,
    multi_ack: u64,
    last_tag: u64,
    last_acked: u64,
}

impl Acks {
    fn ack(&self, out: &mut BytesMut, tag: u64, multiple: bool) {
        let m = BasicAck {
            delivery_tag: tag,
            multiple,
        };
        encode_frame_with(out, FRAME_METHOD, self.channel, |b| m.encode(b));
    }

    /// A delivery was fully received.
    fn delivered(&mut self, out: &mut BytesMut, tag: u64) {
        self.last_tag = tag;
        if self.no_ack {
            return;
        }
        if self.multi_ack == 0 {
            self.ack(out, tag, false);
            self.last_acked = tag;
        } else if tag - self.last_acked >= self.multi_ack {
            self.ack(out, tag, true);
            self.last_acked = tag;
        }
    }

    /// Acks whatever is left.
    fn finish(&mut self, out: &mut BytesMut) {
        if !self.no_ack && self.last_tag > self.last_acked {
            self.ack(out, self.last_tag, true);
            self.last_acked = self.last_tag;
        }
    }
}

pub async fn run(
    mut conn: Conn,
    cfg: Arc<ConsumerConfig>,
    counters: Arc<Counters>,
    latency: SharedLatencies,
    stop: watch::Receiver<bool>,
) -> ConsumerOutcome {
    let mut consumed = 0;
    let mut end = Instant::now();
    if cfg.no_read {
        // Deliveries pile up unread until the run ends; the connection is then dropped
        // without a close, which would first have to read them all.
        let mut stop = stop;
        while !*stop.borrow_and_update() {
            if stop.changed().await.is_err() {
                break;
            }
        }
        return ConsumerOutcome {
            consumed,
            end: Instant::now(),
            error: None,
        };
    }
    let res = consume_loop(
        &mut conn,
        &cfg,
        &counters,
        &latency,
        stop,
        &mut consumed,
        &mut end,
    )
    .await;
    // Unacked deliveries go back to the queue when the connection closes.
    let res = match res {
        Ok(()) => conn.close().await,
        Err(e) => Err(e),
    };
    ConsumerOutcome {
        consumed,
        end,
        error: res.err().map(|e| e.to_string()),
    }
}

async fn consume_loop(
    conn: &mut Conn,
    cfg: &ConsumerConfig,
    counters: &Counters,
    latency: &SharedLatencies,
    mut stop: watch::Receiver<bool>,
    consumed: &mut u64,
    end: &mut Instant,
) -> Result<()> {
    let mut acks = Acks {
        channel: cfg.channel,
        no_ack: cfg.no_ack,
        multi_ack: cfg.multi_ack,
        last_tag: 0,
        last_acked: 0,
    };
    let mut out = std::mem::take(&mut conn.wbuf);
    let mut samples: Vec<u64> = Vec::with_capacity(4096);
    let mut content = Content::Idle;
    let mut tag = 0u64;
    let mut stopping = *stop.borrow();
    let mut done = false;

    let Conn {
        stream,
        rbuf,
        frames,
        ..
    } = conn;
    let (mut rd, mut wr) = crate::client::split(stream);
    // Acks written since the last flush: a TLS stream may still hold some of them.
    let mut unflushed = false;

    while !done && !stopping {
        tokio::select! {
            biased;
            r = rd.read_buf(rbuf) => {
                if r? == 0 {
                    return Err(Error::Closed { what: "connection", code: 0, text: "socket closed".into() });
                }
                let now = now_ns();
                let mut got = 0;
                while !done {
                    let Some(frame) = frames.peek(rbuf)? else { break };
                    let len = frame.wire_len();
                    match (frame.frame_type, &mut content) {
                        (FrameType::Method, Content::Idle) if is_deliver(frame.payload) => {
                            tag = delivery_tag(frame.payload)
                                .ok_or_else(|| Error::Protocol("short basic.deliver frame".into()))?;
                            content = Content::Header;
                        }
                        (FrameType::Method, Content::Idle) => match Method::decode(frame.payload)? {
                            Method::BasicDeliver(d) => {
                                tag = d.delivery_tag;
                                content = Content::Header;
                            }
                            Method::BasicCancel(_) => {
                                // The queue went away: this consumer is done.
                                done = true;
                            }
                            Method::ConnectionClose(c) => {
                                return Err(Error::Closed { what: "connection", code: c.reply_code, text: c.reply_text.to_string() });
                            }
                            Method::ChannelClose(c) => {
                                return Err(Error::Closed { what: "channel", code: c.reply_code, text: c.reply_text.to_string() });
                            }
                            _ => {}
                        },
                        (FrameType::Header, Content::Header) => {
                            let body_size = body_size(frame.payload)
                                .ok_or_else(|| Error::Protocol("short content header frame".into()))?;
                            if body_size == 0 {
                                content = Content::Idle;
                                got += 1;
                                acks.delivered(&mut out, tag);
                            } else {
                                content = Content::Body { remaining: body_size, first: true };
                            }
                            if cfg.count > 0 && *consumed + got >= cfg.count {
                                done = true;
                            }
                        }
                        (FrameType::Body, Content::Body { remaining, first }) => {
                            if *first {
                                if let Some(stamp) = frame.payload.get(..8) {
                                    let mut ts = [0u8; 8];
                                    ts.copy_from_slice(stamp);
                                    samples.push(now.saturating_sub(u64::from_be_bytes(ts)));
                                }
                                *first = false;
                            }
                            *remaining = remaining.saturating_sub(frame.payload.len() as u64);
                            if *remaining == 0 {
                                content = Content::Idle;
                                got += 1;
                                acks.delivered(&mut out, tag);
                                if cfg.count > 0 && *consumed + got >= cfg.count {
                                    done = true;
                                }
                            }
                        }
                        (FrameType::Heartbeat, _) => {}
                        (t, _) => {
                            return Err(Error::Protocol(format!("unexpected {t} frame")));
                        }
                    }
                    rbuf.advance(len);
                }
                if got > 0 {
                    *consumed += got;
                    *end = Instant::now();
                    Counters::add(&counters.consumed, got);
                }
                record_batch(latency, &mut samples);
            }
            r = write_or_flush(&mut wr, &out), if !out.is_empty() || unflushed => match r? {
                Some(n) => {
                    out.advance(n);
                    unflushed = true;
                }
                None => unflushed = false,
            },
            r = stop.changed(), if !stopping => {
                let _ = r;
                stopping = true;
                *end = Instant::now();
            }
        }
    }
    acks.finish(&mut out);
    if !out.is_empty() {
        wr.write_all(&out).await?;
        out.clear();
    }
    wr.flush().await?;
    Ok(())
}

// The consumer needs only the delivery tag of a basic.deliver and the body size of its
// content header; both are read where they lie. A full decode (three short strings, the
// header split off the buffer) was half of the load generator's own profile at 1.5 M
// deliveries/s, CPU taken from the broker under test on a shared machine.

fn is_deliver(payload: &[u8]) -> bool {
    let [c0, c1, m0, m1, ..] = *payload else {
        return false;
    };
    u16::from_be_bytes([c0, c1]) == BasicDeliver::CLASS_ID
        && u16::from_be_bytes([m0, m1]) == BasicDeliver::METHOD_ID
}

/// basic.deliver arguments: consumer-tag (shortstr), then delivery-tag (longlong).
fn delivery_tag(payload: &[u8]) -> Option<u64> {
    let tag_len = usize::from(*payload.get(4)?);
    let at = 5 + tag_len;
    Some(u64::from_be_bytes(
        payload.get(at..at + 8)?.try_into().ok()?,
    ))
}

/// A content header: class-id, weight (both short), then body-size (longlong).
fn body_size(payload: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(payload.get(4..12)?.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use fedamq::protocol::frame::FrameDecoder;

    fn acks_sent(out: &mut BytesMut) -> Vec<(u64, bool)> {
        let d = FrameDecoder::new(0);
        let mut v = Vec::new();
        while let Some(f) = d.peek(out).unwrap() {
            let len = f.wire_len();
            match Method::decode(f.payload).unwrap() {
                Method::BasicAck(a) => v.push((a.delivery_tag, a.multiple)),
                m => panic!("unexpected {}", m.info().name),
            }
            out.advance(len);
        }
        v
    }

    #[test]
    fn deliver_tag_and_body_size_read_in_place_match_the_decoder() {
        use fedamq::protocol::ShortString;
        use fedamq::protocol::content::ContentHeader;
        use fedamq::protocol::generated::methods::BasicConsumeOk;
        for consumer_tag in ["", "amq.ctag-1", &"c".repeat(255)] {
            let deliver = BasicDeliver {
                consumer_tag: ShortString::try_from(consumer_tag).unwrap(),
                delivery_tag: 0x0102_0304_0506_0708,
                redelivered: true,
                exchange: ShortString::try_from("x").unwrap(),
                routing_key: ShortString::try_from("rk").unwrap(),
            };
            let mut b = BytesMut::new();
            deliver.encode(&mut b);
            assert!(is_deliver(&b));
            assert_eq!(delivery_tag(&b), Some(deliver.delivery_tag));
            // A payload cut short anywhere is refused, not read past.
            for cut in 0..13 + consumer_tag.len() {
                assert_eq!(delivery_tag(&b[..cut]), None, "cut at {cut}");
            }
        }
        let mut b = BytesMut::new();
        BasicConsumeOk {
            consumer_tag: ShortString::try_from("t").unwrap(),
        }
        .encode(&mut b);
        assert!(!is_deliver(&b));
        assert!(!is_deliver(&b[..3]));

        let mut h = BytesMut::new();
        ContentHeader::encode_prefix(&mut h, 60, 1234);
        h.extend_from_slice(&[0, 0]); // no properties
        let header = ContentHeader::decode(h.clone().freeze()).unwrap();
        assert_eq!(body_size(&h), Some(header.body_size));
        assert_eq!(body_size(&h[..11]), None);
    }

    fn acks(no_ack: bool, multi_ack: u64) -> Acks {
        Acks {
            channel: 1,
            no_ack,
            multi_ack,
            last_tag: 0,
            last_acked: 0,
        }
    }

    #[test]
    fn multi_ack_every_n() {
        let mut a = acks(false, 3);
        let mut out = BytesMut::new();
        for tag in 1..=7 {
            a.delivered(&mut out, tag);
        }
        a.finish(&mut out);
        assert_eq!(acks_sent(&mut out), vec![(3, true), (6, true), (7, true)]);
        a.finish(&mut out);
        assert!(out.is_empty(), "nothing left to ack");
    }

    #[test]
    fn ack_each_or_none() {
        let mut a = acks(false, 0);
        let mut out = BytesMut::new();
        for tag in 1..=3 {
            a.delivered(&mut out, tag);
        }
        a.finish(&mut out);
        assert_eq!(
            acks_sent(&mut out),
            vec![(1, false), (2, false), (3, false)]
        );

        let mut a = acks(true, 0);
        a.delivered(&mut out, 1);
        a.finish(&mut out);
        assert!(out.is_empty(), "auto-ack sends no acks");
    }
}
