//! The management API over HTTPS: axum serves the TLS streams that
//! [`TlsListener`] hands over (the handshakes run there, each in a task of its own).

use std::net::SocketAddr;

use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

use crate::transport::tls::TlsListener;

/// A [`TlsListener`] as axum's listener.
pub(super) struct Https(pub(super) TlsListener);

impl axum::serve::Listener for Https {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.0.accept().await {
            Some(accepted) => accepted,
            // The listener stopped at shutdown; axum's graceful shutdown ends the
            // server, so there is nothing more to hand over.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.0.local_addr())
    }
}
