//! A consumer: one connection, one channel, one task. Frames are decoded where they lie
//! in the read buffer (no copy, no allocation per delivery); the only thing read from a
//! body is its first 8 octets, the send time. Acks for a whole read are written at once,
//! as one `multiple=true` ack every `-A` deliveries when asked.

use std::sync::Arc;
use std::time::Instant;

use bytes::{Buf, BytesMut};
use fedamq::protocol::content::ContentHeader;
use fedamq::protocol::frame::{FrameType, encode_frame_with, take_payload};
use fedamq::protocol::generated::constants::FRAME_METHOD;
use fedamq::protocol::generated::methods::{BasicAck, Method};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

use crate::client::{Conn, Error, Result};
use crate::stats::{Counters, SharedLatencies, now_ns, record_batch};

pub struct ConsumerConfig {
    pub channel: u16,
    pub no_ack: bool,
    /// Ack with multiple=true every this many deliveries; 0 = ack each.
    pub multi_ack: u64,
    /// Deliveries to take, then stop; 0 = unlimited.
    pub count: u64,
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
    let (mut rd, mut wr) = stream.split();

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
                            let header = ContentHeader::decode(take_payload(rbuf, len - 8))?;
                            if header.body_size == 0 {
                                content = Content::Idle;
                                got += 1;
                                acks.delivered(&mut out, tag);
                            } else {
                                content = Content::Body { remaining: header.body_size, first: true };
                            }
                            if cfg.count > 0 && *consumed + got >= cfg.count {
                                done = true;
                            }
                            continue;
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
            r = wr.write(&out), if !out.is_empty() => {
                out.advance(r?);
            }
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
    Ok(())
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
