//! The writing half of a connection: what the connection task has encoded goes to the
//! socket, written at once when the socket takes it, else by a writer task.
//!
//! The connection task never waits on a slow client's socket while it still has input
//! to read (which could deadlock two peers that both wait to write): it only tries a
//! write that cannot block, and whatever the socket does not take at once goes to the
//! writer task, which waits for the socket. While that task holds bytes, everything
//! after them goes through it too, so bytes keep their order.
//!
//! The direct write spares a hand-off per write (a channel send, a wake-up and a poll
//! of the writer task) and lets the connection reuse one buffer: with clients that send
//! one publish per write, a consumer's connection writes after almost every read.
//!
//! Bytes handed to the task but not yet written are counted ([`PendingBytes`]) so that
//! consumers needing no acks pause while a client falls behind instead of queueing
//! without bound.

use std::io::ErrorKind;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::mpsc;

use crate::broker::credit::PendingBytes;

/// Sends encoded frames to the socket, directly or through the writer task.
#[derive(Debug, Clone)]
pub struct WriterHandle {
    tx: mpsc::UnboundedSender<Bytes>,
    socket: Arc<OwnedWriteHalf>,
    /// Bytes handed to the writer task and not yet written: while not zero, new bytes
    /// must queue behind them.
    queued: Arc<AtomicUsize>,
    pub pending: Arc<PendingBytes>,
}

impl WriterHandle {
    /// Writes `out` (left empty): what the socket takes now directly, the rest through
    /// the writer task. False if the socket is gone.
    pub fn send(&self, out: &mut BytesMut) -> bool {
        if out.is_empty() {
            return true;
        }
        if self.queued.load(Ordering::Acquire) == 0 {
            match self.socket.try_write(out) {
                Ok(n) if n == out.len() => {
                    out.clear();
                    return true;
                }
                Ok(n) => out.advance(n),
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(_) => {
                    out.clear();
                    return false;
                }
            }
        }
        let rest = out.split().freeze();
        self.pending.add(rest.len());
        self.queued.fetch_add(rest.len(), Ordering::AcqRel);
        self.tx.send(rest).is_ok()
    }
}

/// Starts the writer; `drained` is called when pending bytes fall back under the mark.
pub fn spawn(
    socket: OwnedWriteHalf,
    drained: impl Fn() + Send + 'static,
) -> (WriterHandle, tokio::task::JoinHandle<()>) {
    let (tx, mut rx) = mpsc::unbounded_channel::<Bytes>();
    let socket = Arc::new(socket);
    let queued = Arc::new(AtomicUsize::new(0));
    let pending = Arc::new(PendingBytes::default());
    let handle = WriterHandle {
        tx,
        socket: socket.clone(),
        queued: queued.clone(),
        pending: pending.clone(),
    };
    let task = tokio::spawn(async move {
        let mut joined = BytesMut::new();
        while let Some(first) = rx.recv().await {
            let mut written = first.len();
            // Coalesce whatever else is ready into one write.
            let result = match rx.try_recv() {
                Err(_) => write_all(&socket, &first).await,
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
                    write_all(&socket, &joined).await
                }
            };
            if result.is_err() {
                return;
            }
            queued.fetch_sub(written, Ordering::AcqRel);
            if pending.sub(written) {
                drained();
            }
        }
        // Every handle is gone, so this is the last reference to the write half.
        if let Ok(mut socket) = Arc::try_unwrap(socket) {
            let _ = socket.shutdown().await;
        }
    });
    (handle, task)
}

/// Writes all of `bytes`, waiting for the socket to take them.
async fn write_all(socket: &OwnedWriteHalf, mut bytes: &[u8]) -> std::io::Result<()> {
    while !bytes.is_empty() {
        socket.writable().await?;
        match socket.try_write(bytes) {
            Ok(0) => return Err(ErrorKind::WriteZero.into()),
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;
    use tokio::net::{TcpListener, TcpStream};

    async fn pair() -> (OwnedWriteHalf, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let (_read, write) = server.into_split();
        // The read half may go: the socket lives on in the write half.
        (write, client)
    }

    #[tokio::test]
    async fn an_idle_writer_writes_directly_and_a_busy_one_keeps_the_order() {
        let (write, mut client) = pair().await;
        let (handle, task) = spawn(write, || {});

        // Nothing queued: written at once, the task never sees it.
        let mut out = BytesMut::from(&b"hello"[..]);
        assert!(handle.send(&mut out));
        assert!(out.is_empty());
        assert_eq!(handle.queued.load(Ordering::Acquire), 0);
        assert_eq!(handle.pending.get(), 0);
        let mut got = [0u8; 5];
        client.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"hello");

        // The client does not read: the socket fills, the rest queues, and everything
        // sent after it queues behind it.
        let mut expected = Vec::new();
        let mut i = 0u32;
        while handle.queued.load(Ordering::Acquire) == 0 {
            let chunk: Vec<u8> = (0..64 * 1024).map(|j| (i + j) as u8).collect();
            expected.extend_from_slice(&chunk);
            let mut out = BytesMut::from(&chunk[..]);
            assert!(handle.send(&mut out));
            assert!(out.is_empty());
            i += 1;
        }
        for k in 0..10u8 {
            expected.push(k);
            assert!(handle.send(&mut BytesMut::from(&[k][..])));
            assert!(handle.pending.get() > 0, "queued behind the held bytes");
        }
        drop(handle);
        let mut received = Vec::new();
        client.read_to_end(&mut received).await.unwrap();
        assert_eq!(received.len(), expected.len());
        assert!(received == expected, "bytes out of order");
        task.await.unwrap();
    }
}
