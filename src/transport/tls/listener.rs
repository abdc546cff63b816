//! A TLS listener for protocols other than AMQP (the management API's HTTPS): it
//! accepts TCP connections and hands over those whose handshake completed.
//!
//! Each handshake runs in a task of its own, under the handshake timeout, so that a
//! client that stalls holds up no other (an HTTP server calls `accept` one connection
//! at a time). A failed handshake is logged and its socket closed, as on the `amqps`
//! listener.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio_rustls::server::TlsStream;

use super::server::TlsServer;

/// Connections whose handshake completed, waiting for the server to take them.
const READY: usize = 64;

/// Accepts on a TCP listener and yields TLS streams, until shutdown.
#[derive(Debug)]
pub struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    addr: SocketAddr,
}

impl TlsListener {
    /// Starts accepting on `listener` with `server`'s configuration (the one current at
    /// each handshake, so a reload applies to the next client). `what` names the
    /// listener in log lines. It stops at `shutdown`, or when the listener is dropped.
    pub fn start(
        listener: TcpListener,
        server: Arc<TlsServer>,
        what: &'static str,
        shutdown: watch::Receiver<bool>,
    ) -> std::io::Result<TlsListener> {
        let addr = listener.local_addr()?;
        let (tx, ready) = mpsc::channel(READY);
        tokio::spawn(accept_loop(listener, server, what, tx, shutdown));
        Ok(TlsListener { ready, addr })
    }

    /// The next connection whose handshake completed; `None` once the listener stopped.
    pub async fn accept(&mut self) -> Option<(TlsStream<TcpStream>, SocketAddr)> {
        self.ready.recv().await
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

async fn accept_loop(
    listener: TcpListener,
    server: Arc<TlsServer>,
    what: &'static str,
    ready: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut handshakes = JoinSet::new();
    loop {
        tokio::select! {
            _ = async { let _ = shutdown.wait_for(|s| *s).await; } => break,
            _ = ready.closed() => break,
            Some(_) = handshakes.join_next(), if !handshakes.is_empty() => {}
            accepted = listener.accept() => {
                let (tcp, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of file descriptors and the like: back off, keep serving.
                        tracing::warn!("{what}: accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let (server, ready) = (server.clone(), ready.clone());
                handshakes.spawn(async move {
                    match server.accept(tcp).await {
                        // A send fails only when the listener is gone: the stream drops.
                        Ok(stream) => drop(ready.send((stream, peer)).await),
                        Err(e) => tracing::info!("{what}: TLS connection from {peer} closed: {e}"),
                    }
                });
            }
        }
    }
    // Handshakes under way end with the listener.
    handshakes.abort_all();
}
