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

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::AtomicBool;
    use std::task::{Context, Poll};

    use tokio::io::AsyncReadExt;
    use tokio::net::{TcpListener, TcpStream};

    use super::*;
    use crate::transport::Transport;

    /// A write half that takes everything, or nothing while `full`.
    #[derive(Default)]
    struct Recorder {
        full: AtomicBool,
        written: Mutex<Vec<u8>>,
    }

    impl DirectWrite for Recorder {
        fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
            if self.full.load(Ordering::Acquire) {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            self.written.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn poll_write_ready(&self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn bytes_go_behind_queued_ones_even_when_the_socket_has_room_again() {
        let sink = Arc::new(Recorder::default());
        let side = WriteSide::<tokio::io::Sink>::Direct(sink.clone());
        let (handle, task) = spawn(side, || {});
        assert!(handle.send(Bytes::from_static(b"1")));
        assert_eq!(*sink.written.lock().unwrap(), b"1", "written directly");
        sink.full.store(true, Ordering::Release);
        assert!(handle.send(Bytes::from_static(b"2")));
        sink.full.store(false, Ordering::Release);
        // The writer task has not run yet: "2" is still queued.
        assert!(handle.send(Bytes::from_static(b"3")));
        drop(handle);
        task.await.unwrap();
        assert_eq!(*sink.written.lock().unwrap(), b"123");
    }

    #[tokio::test]
    async fn bytes_written_directly_and_queued_arrive_in_order() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let (_read, write) = Transport::into_split(server);
        let (handle, task) = spawn(<TcpStream as Transport>::write_side(write), || {});
        // More than the socket buffers hold while the client reads nothing: the first
        // buffers are written directly, the rest queue behind them.
        let mut expected = Vec::new();
        for i in 0..2000u32 {
            let chunk: Vec<u8> = (0..4099u32).map(|j| (i * 31 + j) as u8).collect();
            expected.extend_from_slice(&chunk);
            assert!(handle.send(Bytes::from(chunk)));
        }
        assert!(
            handle.queued.load(Ordering::Acquire) > 0,
            "the socket should have filled up"
        );
        drop(handle);
        let mut received = Vec::new();
        client.read_to_end(&mut received).await.unwrap();
        task.await.unwrap();
        assert_eq!(received.len(), expected.len());
        assert!(received == expected, "bytes out of order");
    }
}
