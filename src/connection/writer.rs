//! The writing half of a connection: what the connection task writes itself, and a
//! task for what the socket does not take at once.
//!
//! The connection task encodes frames into a buffer and hands whole buffers over here.
//! It never waits on a slow client's socket while it still has input to read (which
//! could deadlock two peers that both wait to write): on a transport that can be written
//! without waiting ([`WriteSide::Direct`], TCP) it writes what the socket takes now and
//! queues the rest for the writer task; on any other, the writer task writes everything.
//! Bytes queued but not yet written are counted ([`PendingBytes`]) so that consumers
//! needing no acks pause while a client falls behind instead of queueing without bound.

use std::future::poll_fn;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::broker::credit::PendingBytes;
use crate::transport::{DirectWrite, WriteSide};

/// Sends encoded frames to the socket, directly or through the writer task.
#[derive(Clone)]
pub struct WriterHandle {
    tx: mpsc::UnboundedSender<Bytes>,
    pub pending: Arc<PendingBytes>,
    /// The write half, when this task may write it itself.
    direct: Option<Arc<dyn DirectWrite>>,
    /// Bytes queued for the writer task and not yet written: while there are any, new
    /// bytes go behind them, so frames keep their order.
    queued: Arc<AtomicUsize>,
}

impl std::fmt::Debug for WriterHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriterHandle")
            .field("direct", &self.direct.is_some())
            .field("queued", &self.queued.load(Ordering::Relaxed))
            .finish()
    }
}

impl WriterHandle {
    /// Writes or queues bytes; false if the socket is gone.
    pub fn send(&self, mut bytes: Bytes) -> bool {
        if bytes.is_empty() {
            return true;
        }
        if let Some(direct) = &self.direct {
            if self.queued.load(Ordering::Acquire) == 0 {
                match direct.try_write(&bytes) {
                    Ok(n) if n == bytes.len() => return true,
                    Ok(n) => bytes.advance(n),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(_) => return false,
                }
            }
        }
        self.queued.fetch_add(bytes.len(), Ordering::AcqRel);
        self.pending.add(bytes.len());
        self.tx.send(bytes).is_ok()
    }
}

/// The writer task's end of the write half.
enum Sink<W> {
    Task(W),
    Direct(Arc<dyn DirectWrite>),
}

impl<W: AsyncWrite + Unpin> Sink<W> {
    async fn write_all(&mut self, mut buf: &[u8]) -> io::Result<()> {
        match self {
            Sink::Task(w) => w.write_all(buf).await,
            Sink::Direct(d) => {
                while !buf.is_empty() {
                    match d.try_write(buf) {
                        Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                        Ok(n) => buf = &buf[n..],
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                            poll_fn(|cx| d.poll_write_ready(cx)).await?;
                        }
                        Err(e) => return Err(e),
                    }
                }
                Ok(())
            }
        }
    }

    /// Ends the write side (a direct half shuts down when its last reference goes).
    async fn shutdown(self) {
        if let Sink::Task(mut w) = self {
            let _ = w.shutdown().await;
        }
    }
}

/// Starts the writer; `drained` is called when pending bytes fall back under the mark.
pub fn spawn<W: AsyncWrite + Unpin + Send + 'static>(
    side: WriteSide<W>,
    drained: impl Fn() + Send + 'static,
) -> (WriterHandle, tokio::task::JoinHandle<()>) {
    let (tx, mut rx) = mpsc::unbounded_channel::<Bytes>();
    let pending = Arc::new(PendingBytes::default());
    let queued = Arc::new(AtomicUsize::new(0));
    let (mut sink, direct) = match side {
        WriteSide::Task(w) => (Sink::Task(w), None),
        WriteSide::Direct(d) => (Sink::Direct(d.clone()), Some(d)),
    };
    let shared = pending.clone();
    let unwritten = queued.clone();
    let task = tokio::spawn(async move {
        let mut joined = BytesMut::new();
        while let Some(first) = rx.recv().await {
            let mut written = first.len();
            // Coalesce whatever else is ready into one write.
            let result = match rx.try_recv() {
                Err(_) => sink.write_all(&first).await,
                Ok(second) => {
                    joined.clear();
                    joined.extend_from_slice(&first);
                    joined.extend_from_slice(&second);
                    written += second.len();
                    while joined.len() < 1 << 20 {
                        match rx.try_recv() {
                            Ok(b) => {
                                written += b.len();
                                joined.extend_from_slice(&b);
                            }
                            Err(_) => break,
                        }
                    }
                    sink.write_all(&joined).await
                }
            };
            if result.is_err() {
                return;
            }
            unwritten.fetch_sub(written, Ordering::AcqRel);
            if shared.sub(written) {
                drained();
            }
        }
        sink.shutdown().await;
    });
    (
        WriterHandle {
            tx,
            pending,
            direct,
            queued,
        },
        task,
    )
}
