//! The writing half of a connection: a task that owns the socket's write side.
//!
//! The connection task encodes frames into a buffer and hands whole buffers over here,
//! so it never waits on a slow client's socket while it still has input to read (which
//! could deadlock two peers that both wait to write). Bytes handed over but not yet
//! written are counted ([`PendingBytes`]) so that consumers needing no acks pause while
//! a client falls behind instead of queueing without bound.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::broker::credit::PendingBytes;

/// Sends encoded frames to the writer task.
#[derive(Debug, Clone)]
pub struct WriterHandle {
    tx: mpsc::UnboundedSender<Bytes>,
    pub pending: Arc<PendingBytes>,
}

impl WriterHandle {
    /// Queues bytes for writing; false if the writer has stopped (socket gone).
    pub fn send(&self, bytes: Bytes) -> bool {
        if bytes.is_empty() {
            return true;
        }
        self.pending.add(bytes.len());
        self.tx.send(bytes).is_ok()
    }
}

/// Starts the writer; `drained` is called when pending bytes fall back under the mark.
pub fn spawn(
    mut socket: impl AsyncWrite + Unpin + Send + 'static,
    drained: impl Fn() + Send + 'static,
) -> (WriterHandle, tokio::task::JoinHandle<()>) {
    let (tx, mut rx) = mpsc::unbounded_channel::<Bytes>();
    let pending = Arc::new(PendingBytes::default());
    let shared = pending.clone();
    let task = tokio::spawn(async move {
        let mut joined = BytesMut::new();
        while let Some(first) = rx.recv().await {
            let mut written = first.len();
            // Coalesce whatever else is ready into one write.
            let result = match rx.try_recv() {
                Err(_) => socket.write_all(&first).await,
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
                    socket.write_all(&joined).await
                }
            };
            if result.is_err() {
                return;
            }
            if shared.sub(written) {
                drained();
            }
        }
        let _ = socket.shutdown().await;
    });
    (WriterHandle { tx, pending }, task)
}
