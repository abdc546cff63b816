//! Ending a connection's socket without a reset.
//!
//! When a socket is closed while bytes the peer sent sit unread in its receive buffer,
//! the kernel answers with a reset instead of a FIN: the client's next write fails
//! (EPIPE), and a client library that gives up on that error never reads the
//! connection.close-ok or connection.close sent just before. A client may well still be
//! writing when the broker closes, for instance publishes queued behind its own
//! connection.close. So, as RabbitMQ does, the broker shuts down its write side once
//! the last frame is written (the client sees EOF after it) and reads and discards
//! until the client closes too, for at most [`LINGER`].

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;

/// How long a closed connection waits for its client to close the socket.
pub const LINGER: Duration = Duration::from_secs(3);

/// Reads and discards until EOF, an error, [`LINGER`] or the broker's shutdown. The
/// caller has already shut down the write side.
pub async fn drain(read: &mut (impl AsyncRead + Unpin), shutdown: &mut watch::Receiver<bool>) {
    let mut discard = vec![0u8; 16 * 1024];
    let until_eof = async {
        while let Ok(n) = read.read(&mut discard).await {
            if n == 0 {
                break;
            }
        }
    };
    tokio::select! {
        _ = tokio::time::timeout(LINGER, until_eof) => {}
        // The process is about to end; it does not wait for clients.
        _ = shutdown.wait_for(|s| *s) => {}
    }
}

/// Shuts down the write side of a socket not yet split (the handshake's), then
/// [`drain`]s it.
pub async fn close(
    mut stream: impl AsyncRead + AsyncWrite + Unpin,
    shutdown: &mut watch::Receiver<bool>,
) {
    let _ = stream.shutdown().await;
    drain(&mut stream, shutdown).await;
}
