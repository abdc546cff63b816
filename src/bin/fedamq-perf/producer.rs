//! A producer: one connection, one channel, one task that both writes publishes and
//! reads confirms. Messages are encoded straight into one write buffer, many per
//! `write` call; the method frame and properties are encoded once, the body is one
//! reused buffer whose first 8 octets are the send time.
//!
//! Batched writes spare the broker a read per message, which most client libraries do
//! not: pika, amqplib and amqprs write each publish (method, header and body frames) on
//! its own. [`Writes::PerPublish`] does the same, so a benchmark can show what the
//! broker costs under such clients.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use fedamq::protocol::content::encode_content;
use fedamq::protocol::frame::FrameDecoder;
use fedamq::protocol::frame::{FrameType, encode_frame_with};
use fedamq::protocol::generated::constants::FRAME_METHOD;
use fedamq::protocol::generated::methods::{BasicPublish, Method};
use fedamq::protocol::generated::properties::BasicProperties;
use fedamq::protocol::{FieldTable, ShortString};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::sync::watch;

use crate::client::{Conn, Error, Result, write_or_flush};
use crate::stats::{Counters, SharedLatencies, now_ns, record_batch};

/// Start refilling the write buffer below this many octets…
const LOW_WATER: usize = 64 * 1024;
/// …up to about this many.
const HIGH_WATER: usize = 256 * 1024;
/// An outstanding-confirm slot already settled (confirms can arrive out of order).
const SETTLED: u64 = u64::MAX;
const BASIC: u16 = 60;

/// How publishes are handed to the socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Writes {
    /// Many messages per `write` call, up to [`HIGH_WATER`] octets.
    Batched,
    /// One `write` call per message, with its own send time, as most client libraries
    /// do (the rest of a partial write goes in the next call).
    PerPublish,
}

pub struct ProducerConfig {
    pub channel: u16,
    pub exchange: String,
    pub routing_key: String,
    pub size: usize,
    pub persistent: bool,
    pub mandatory: bool,
    /// Max unconfirmed, when in confirm mode.
    pub confirm: Option<u64>,
    /// Messages per second; 0 = unlimited.
    pub rate: f64,
    /// Messages to publish; 0 = unlimited.
    pub count: u64,
    pub writes: Writes,
    /// Headers every message carries (for a headers exchange).
    pub headers: Option<FieldTable>,
    /// Never read the socket (`--no-read`): returns and confirms are left unread.
    pub no_read: bool,
}

pub struct ProducerOutcome {
    pub published: u64,
    /// When the broker had taken in everything this producer sent (its close-ok), or
    /// when it gave up.
    pub end: Instant,
    pub error: Option<String>,
}

/// Confirms not yet received: send times by sequence number, from `first_seq` on.
struct Outstanding {
    send_ns: VecDeque<u64>,
    first_seq: u64,
    unconfirmed: u64,
}

impl Outstanding {
    fn settle(&mut self, tag: u64, multiple: bool, now: u64, samples: &mut Vec<u64>) -> u64 {
        let mut settled = 0;
        if multiple {
            while self.first_seq <= tag {
                let Some(ts) = self.send_ns.pop_front() else {
                    break;
                };
                self.first_seq += 1;
                if ts != SETTLED {
                    samples.push(now.saturating_sub(ts));
                    settled += 1;
                }
            }
        } else if tag >= self.first_seq {
            let slot = usize::try_from(tag - self.first_seq)
                .ok()
                .and_then(|i| self.send_ns.get_mut(i));
            if let Some(slot) = slot {
                if *slot != SETTLED {
                    samples.push(now.saturating_sub(*slot));
                    *slot = SETTLED;
                    settled += 1;
                }
            }
        }
        while self.send_ns.front() == Some(&SETTLED) {
            self.send_ns.pop_front();
            self.first_seq += 1;
        }
        self.unconfirmed -= settled;
        settled
    }
}

pub async fn run(
    mut conn: Conn,
    cfg: Arc<ProducerConfig>,
    counters: Arc<Counters>,
    confirm_latency: SharedLatencies,
    stop: watch::Receiver<bool>,
) -> ProducerOutcome {
    let mut published = 0;
    let res = publish_loop(
        &mut conn,
        &cfg,
        &counters,
        &confirm_latency,
        stop,
        &mut published,
    )
    .await;
    // close-ok comes after the broker handled every publish sent before the close. A
    // producer that never reads would first have to read everything left unread.
    let res = match res {
        Ok(()) if cfg.no_read => Ok(()),
        Ok(()) => conn.close().await,
        Err(e) => Err(e),
    };
    ProducerOutcome {
        published,
        end: Instant::now(),
        error: res.err().map(|e| e.to_string()),
    }
}

async fn publish_loop(
    conn: &mut Conn,
    cfg: &ProducerConfig,
    counters: &Counters,
    confirm_latency: &SharedLatencies,
    stop: watch::Receiver<bool>,
    published: &mut u64,
) -> Result<()> {
    let Conn {
        stream,
        rbuf,
        wbuf,
        frames,
        frame_max,
        ..
    } = conn;
    let (rd, wr) = crate::client::split(stream);
    let mut socket = Socket {
        rd,
        wr,
        rbuf,
        out: std::mem::take(wbuf),
        frames,
        frame_max: *frame_max,
    };
    publish(&mut socket, cfg, counters, confirm_latency, stop, published).await
}

/// A connection's two halves and its buffers, as the publishing loop uses them.
struct Socket<'a, R, W> {
    rd: R,
    wr: W,
    rbuf: &'a mut BytesMut,
    /// Encoded publishes not yet written.
    out: BytesMut,
    frames: &'a mut FrameDecoder,
    frame_max: u32,
}

async fn publish<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(
    socket: &mut Socket<'_, R, W>,
    cfg: &ProducerConfig,
    counters: &Counters,
    confirm_latency: &SharedLatencies,
    mut stop: watch::Receiver<bool>,
    published: &mut u64,
) -> Result<()> {
    let short = |s: &str| {
        ShortString::try_from(s).map_err(|_| Error::Protocol(format!("name too long: {s:?}")))
    };
    let publish = BasicPublish {
        exchange: short(&cfg.exchange)?,
        routing_key: short(&cfg.routing_key)?,
        mandatory: cfg.mandatory,
        immediate: false,
    };
    let method_frame: Bytes = {
        let mut b = BytesMut::new();
        encode_frame_with(&mut b, FRAME_METHOD, cfg.channel, |b| publish.encode(b));
        b.freeze()
    };
    let properties: Bytes = {
        let mut b = BytesMut::new();
        BasicProperties {
            delivery_mode: cfg.persistent.then_some(2),
            headers: cfg.headers.clone(),
            ..Default::default()
        }
        .encode(&mut b);
        b.freeze()
    };
    let mut body = vec![0u8; cfg.size];
    // Header and body frames, each with 8 octets of framing; a rough size is enough.
    let per_message = method_frame.len() + 8 + 12 + properties.len() + 8 + cfg.size;
    let frame_max = socket.frame_max;

    let mut message = BytesMut::with_capacity(per_message + 64);
    let Socket {
        rd,
        wr,
        rbuf,
        out,
        frames,
        ..
    } = socket;
    out.reserve(match cfg.writes {
        Writes::Batched => HIGH_WATER,
        Writes::PerPublish => per_message + 64,
    });
    let mut outstanding = Outstanding {
        send_ns: VecDeque::with_capacity(cfg.confirm.unwrap_or(0).min(1 << 20) as usize),
        first_seq: 1,
        unconfirmed: 0,
    };
    let mut samples: Vec<u64> = Vec::with_capacity(4096);
    let mut stopping = *stop.borrow();
    let started = Instant::now();
    // Written since the last flush: a TLS stream may still hold some of it.
    let mut unflushed = false;

    loop {
        // Looked at on every turn: when the socket always takes the next write (one
        // publish per write to a fast broker), the select below may never get to the
        // stop branch, and the producer ran on past its duration.
        stopping |= stop.has_changed().unwrap_or(true);
        let done_sending = stopping || (cfg.count > 0 && *published >= cfg.count);
        let mut rate_wait = None;
        // Per publish, the next message is encoded once the last one is written.
        let (room, most) = match cfg.writes {
            Writes::Batched => (
                out.len() < LOW_WATER,
                HIGH_WATER.saturating_sub(out.len()) / per_message,
            ),
            Writes::PerPublish => (out.is_empty(), 1),
        };
        if !done_sending && room {
            let mut n = most.max(1) as u64;
            if cfg.count > 0 {
                n = n.min(cfg.count - *published);
            }
            if let Some(window) = cfg.confirm {
                n = n.min(window.saturating_sub(outstanding.unconfirmed));
            }
            if cfg.rate > 0.0 {
                let due = (cfg.rate * started.elapsed().as_secs_f64()) as u64;
                let allowed = due.saturating_sub(*published);
                if allowed == 0 {
                    let next = (*published + 1) as f64 / cfg.rate;
                    rate_wait = Some(started + Duration::from_secs_f64(next));
                }
                n = n.min(allowed);
            }
            if n > 0 {
                let ts = now_ns();
                if let Some(stamp) = body.get_mut(..8) {
                    stamp.copy_from_slice(&ts.to_be_bytes());
                }
                // The messages of one batch are identical (one send time), so their
                // frames are encoded once and copied.
                message.clear();
                message.put_slice(&method_frame);
                encode_content(
                    &mut message,
                    cfg.channel,
                    BASIC,
                    &properties,
                    &body,
                    frame_max,
                );
                for _ in 0..n {
                    out.put_slice(&message);
                }
                if cfg.confirm.is_some() {
                    outstanding
                        .send_ns
                        .extend(std::iter::repeat_n(ts, n as usize));
                    outstanding.unconfirmed += n;
                }
                *published += n;
                Counters::add(&counters.published, n);
            }
        }
        let done_sending = stopping || (cfg.count > 0 && *published >= cfg.count);
        if done_sending && out.is_empty() && (outstanding.unconfirmed == 0 || stopping) {
            return Ok(());
        }
        // A client that never reads may be held back by a broker that stopped reading
        // it: what it could not write is dropped with the connection.
        if stopping && cfg.no_read {
            return Ok(());
        }

        tokio::select! {
            biased;
            r = rd.read_buf(*rbuf), if !cfg.no_read => {
                if r? == 0 {
                    return Err(Error::Closed { what: "connection", code: 0, text: "socket closed".into() });
                }
                let now = now_ns();
                let mut confirmed = 0;
                let mut nacked = 0;
                let mut returned = 0;
                while let Some(frame) = frames.peek(rbuf)? {
                    let len = frame.wire_len();
                    if frame.frame_type == FrameType::Method {
                        match Method::decode(frame.payload)? {
                            Method::BasicAck(a) => {
                                confirmed += outstanding.settle(a.delivery_tag, a.multiple, now, &mut samples);
                            }
                            Method::BasicNack(n) => {
                                nacked += outstanding.settle(n.delivery_tag, n.multiple, now, &mut samples);
                            }
                            Method::BasicReturn(_) => returned += 1,
                            Method::ConnectionClose(c) => {
                                return Err(Error::Closed { what: "connection", code: c.reply_code, text: c.reply_text.to_string() });
                            }
                            Method::ChannelClose(c) => {
                                return Err(Error::Closed { what: "channel", code: c.reply_code, text: c.reply_text.to_string() });
                            }
                            _ => {}
                        }
                    }
                    // Content frames of returned messages are not looked at.
                    rbuf.advance(len);
                }
                Counters::add(&counters.confirmed, confirmed);
                Counters::add(&counters.nacked, nacked);
                Counters::add(&counters.returned, returned);
                record_batch(confirm_latency, &mut samples);
            }
            r = write_or_flush(wr, out), if !out.is_empty() || unflushed => match r? {
                Some(n) => {
                    out.advance(n);
                    Counters::add(&counters.writes, 1);
                    unflushed = true;
                }
                None => unflushed = false,
            },
            _ = tokio::time::sleep_until(rate_wait.unwrap_or(started).into()), if rate_wait.is_some() && out.is_empty() => {}
            r = stop.changed(), if !stopping => {
                // A dropped sender means stop as well.
                let _ = r;
                stopping = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    /// A broker that never answers.
    struct Silent;

    impl AsyncRead for Silent {
        fn poll_read(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            _: &mut tokio::io::ReadBuf<'_>,
        ) -> Poll<std::io::Result<()>> {
            Poll::Pending
        }
    }

    /// Records the length of each `write` call and takes it all.
    #[derive(Default)]
    struct CountingWriter {
        writes: Vec<usize>,
        bytes: Vec<u8>,
    }

    impl AsyncWrite for CountingWriter {
        fn poll_write(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<std::io::Result<usize>> {
            self.writes.push(buf.len());
            self.bytes.extend_from_slice(buf);
            Poll::Ready(Ok(buf.len()))
        }

        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    /// Publishes `count` messages of 16 octets into a counting writer; the write lengths
    /// and the frames written.
    async fn publish_into(writes: Writes, count: u64) -> (Vec<usize>, Vec<u8>) {
        let cfg = ProducerConfig {
            channel: 1,
            exchange: "amq.direct".into(),
            routing_key: "q".into(),
            size: 16,
            persistent: false,
            mandatory: false,
            confirm: None,
            rate: 0.0,
            count,
            writes,
            headers: None,
            no_read: false,
        };
        let mut rbuf = BytesMut::new();
        let mut frames = FrameDecoder::default();
        let mut socket = Socket {
            rd: Silent,
            wr: CountingWriter::default(),
            rbuf: &mut rbuf,
            out: BytesMut::new(),
            frames: &mut frames,
            frame_max: 131_072,
        };
        let counters = Counters::default();
        let (_stop_tx, stop) = watch::channel(false);
        let mut published = 0;
        publish(
            &mut socket,
            &cfg,
            &counters,
            &SharedLatencies::default(),
            stop,
            &mut published,
        )
        .await
        .expect("publishes");
        assert_eq!(published, count);
        assert_eq!(
            Counters::get(&counters.writes),
            socket.wr.writes.len() as u64
        );
        (socket.wr.writes, socket.wr.bytes)
    }

    /// Method, header and body frames per message, in the order written.
    fn frame_types(bytes: &[u8]) -> Vec<FrameType> {
        let decoder = FrameDecoder::default();
        let mut buf = BytesMut::from(bytes);
        let mut types = Vec::new();
        while let Some(frame) = decoder.peek(&buf).expect("well-formed frames") {
            types.push(frame.frame_type);
            let len = frame.wire_len();
            buf.advance(len);
        }
        assert!(buf.is_empty());
        types
    }

    /// Takes every write at once and keeps nothing: a broker faster than the producer.
    /// Once `stopped` is set it allows a few more writes, then fails the producer with
    /// an error, so a producer that ignores the stop ends instead of spinning.
    struct Sink {
        stopped: std::sync::Arc<std::sync::atomic::AtomicBool>,
        after_stop: u64,
    }

    impl AsyncWrite for Sink {
        fn poll_write(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<std::io::Result<usize>> {
            if self.stopped.load(std::sync::atomic::Ordering::Acquire) {
                self.after_stop += 1;
                if self.after_stop > 10_000 {
                    return Poll::Ready(Err(std::io::Error::other(
                        "the producer went on writing after it was told to stop",
                    )));
                }
            }
            Poll::Ready(Ok(buf.len()))
        }

        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    /// With one publish per write and a socket that always takes it, the write branch is
    /// always ready; the producer still stops when told (it used to run on past its
    /// duration, and the broker piled up what nobody would consume).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn per_publish_stops_when_told_even_if_every_write_succeeds() {
        let cfg = ProducerConfig {
            channel: 1,
            exchange: "amq.direct".into(),
            routing_key: "q".into(),
            size: 16,
            persistent: false,
            mandatory: false,
            confirm: None,
            rate: 0.0,
            count: 0,
            writes: Writes::PerPublish,
            headers: None,
            no_read: false,
        };
        let counters = std::sync::Arc::new(Counters::default());
        let stopped = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (stop_tx, stop) = watch::channel(false);
        let running = {
            let (counters, stopped) = (counters.clone(), stopped.clone());
            tokio::spawn(async move {
                let mut rbuf = BytesMut::new();
                let mut frames = FrameDecoder::default();
                let mut socket = Socket {
                    rd: Silent,
                    wr: Sink {
                        stopped,
                        after_stop: 0,
                    },
                    rbuf: &mut rbuf,
                    out: BytesMut::new(),
                    frames: &mut frames,
                    frame_max: 131_072,
                };
                let mut published = 0;
                publish(
                    &mut socket,
                    &cfg,
                    &counters,
                    &SharedLatencies::default(),
                    stop,
                    &mut published,
                )
                .await
                .map(|()| published)
            })
        };
        while Counters::get(&counters.published) < 1_000 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        stop_tx.send(true).unwrap();
        stopped.store(true, std::sync::atomic::Ordering::Release);
        let published = running.await.unwrap().expect("stops when told");
        assert!(published >= 1_000);
    }

    #[tokio::test]
    async fn per_publish_writes_each_message_whole_in_its_own_call() {
        let (writes, bytes) = publish_into(Writes::PerPublish, 5).await;
        assert_eq!(writes.len(), 5, "{writes:?}");
        assert!(writes.iter().all(|&w| w == writes[0]), "{writes:?}");
        let per_message = [FrameType::Method, FrameType::Header, FrameType::Body];
        assert_eq!(frame_types(&bytes[..writes[0]]), per_message);
        assert_eq!(frame_types(&bytes), per_message.repeat(5));
    }

    #[tokio::test]
    async fn batched_writes_many_messages_per_call() {
        let (writes, bytes) = publish_into(Writes::Batched, 5).await;
        assert_eq!(writes.len(), 1, "{writes:?}");
        assert_eq!(frame_types(&bytes).len(), 15);
    }

    fn outstanding(n: u64) -> Outstanding {
        Outstanding {
            send_ns: (0..n).map(|i| i * 10).collect(),
            first_seq: 1,
            unconfirmed: n,
        }
    }

    #[test]
    fn multiple_settles_everything_up_to_the_tag() {
        let mut o = outstanding(5);
        let mut s = Vec::new();
        assert_eq!(o.settle(3, true, 100, &mut s), 3);
        assert_eq!(s, vec![100, 90, 80]);
        assert_eq!((o.first_seq, o.unconfirmed), (4, 2));
        assert_eq!(o.settle(5, true, 100, &mut s), 2);
        assert_eq!(o.unconfirmed, 0);
        assert!(o.send_ns.is_empty());
    }

    #[test]
    fn single_acks_out_of_order() {
        let mut o = outstanding(3);
        let mut s = Vec::new();
        assert_eq!(o.settle(2, false, 50, &mut s), 1);
        assert_eq!((o.first_seq, o.unconfirmed), (1, 2));
        assert_eq!(o.settle(2, false, 50, &mut s), 0, "already settled");
        assert_eq!(o.settle(1, false, 50, &mut s), 1);
        // 1 and 2 are gone from the front now.
        assert_eq!((o.first_seq, o.unconfirmed, o.send_ns.len()), (3, 1, 1));
        assert_eq!(o.settle(3, true, 50, &mut s), 1);
        assert_eq!(s, vec![40, 50, 30]);
        assert_eq!(o.settle(9, false, 50, &mut s), 0, "unknown tag");
    }
}
