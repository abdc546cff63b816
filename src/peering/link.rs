//! One connection to the remote: the client handshake (`client::Connection::open`, driven
//! by the generated connection machine) over a transport, then the framed socket the
//! session runs on: the read half and its buffer for the session, the write half in a
//! writer task.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::config::PeeringConfig;
use crate::client::{self, ConnectOptions, Connection, Heartbeat};
use crate::protocol::FieldTable;
use crate::protocol::frame::FrameDecoder;
use crate::transport::tls::connect_tls;
use crate::transport::{self, Joined, Transport};

/// The writer joins queued buffers into one write up to this many bytes.
const WRITE_BATCH: usize = 1 << 20;

/// Channels we ask for: the peering uses one, reopened after a channel error.
pub(crate) const CHANNEL_MAX: u16 = 8;

/// The read half of whatever transport the link runs on.
pub(crate) type Reader = Box<dyn AsyncRead + Unpin + Send>;
type Writer = Box<dyn AsyncWrite + Unpin + Send>;

/// Why a connection attempt failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ConnectError {
    #[error("{0}")]
    Io(String),
    #[error("no connection within {0:?}")]
    Timeout(Duration),
    /// The remote closed the connection during the handshake (bad login: 403; vhost not
    /// allowed: 530; …).
    #[error("the remote refused the connection: {code} {text}")]
    Refused { code: u16, text: String },
    #[error("refusing to peer to ourselves: the remote's identifier {0:?} is this broker's own")]
    SelfPeering(String),
    #[error("protocol error from the remote: {0}")]
    Protocol(String),
    /// The TLS settings or handshake failed: a file, or a certificate refused (by us:
    /// expired, unknown issuer, wrong name; or by the remote).
    #[error("{0}")]
    Tls(String),
}

impl From<std::io::Error> for ConnectError {
    fn from(e: std::io::Error) -> Self {
        ConnectError::Io(e.to_string())
    }
}

impl From<client::Error> for ConnectError {
    fn from(e: client::Error) -> Self {
        match e {
            client::Error::Io(e) => ConnectError::Io(e.to_string()),
            client::Error::Closed { code: 0, text, .. } => ConnectError::Io(text),
            client::Error::Closed { code, text, .. } => ConnectError::Refused { code, text },
            client::Error::SelfConnection(id) => ConnectError::SelfPeering(id),
            client::Error::Decode(e) => ConnectError::Protocol(e.to_string()),
            client::Error::Protocol(text) => ConnectError::Protocol(text),
        }
    }
}

/// An open connection, ready for channels.
pub(crate) struct Link {
    pub reader: Reader,
    pub inbuf: BytesMut,
    pub frames: FrameDecoder,
    pub frame_max: u32,
    /// Zero: no heartbeats.
    pub heartbeat: Duration,
    /// The remote's `connection.start` server properties (its `cluster_name`, its
    /// `tunnels` capability).
    pub server_properties: FieldTable,
    writer: Option<Writer>,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link")
            .field("frame_max", &self.frame_max)
            .field("heartbeat", &self.heartbeat)
            .finish_non_exhaustive()
    }
}

/// Connects over TCP (and TLS for `amqps://`) and logs in; `Ok` once connection.open-ok has arrived.
pub(crate) async fn connect(config: &PeeringConfig) -> Result<Link, ConnectError> {
    let remote = &config.remote;
    let attempt = async {
        let stream = transport::connect_tcp(&remote.host, remote.port).await?;
        match &remote.tls {
            None => Link::open(stream, config).await,
            Some(tls) => {
                let stream = connect_tls(stream, &remote.host, tls)
                    .await
                    .map_err(|e| ConnectError::Tls(e.to_string()))?;
                Link::open(Joined(stream), config).await
            }
        }
    };
    tokio::time::timeout(config.connect_timeout, attempt)
        .await
        .unwrap_or(Err(ConnectError::Timeout(config.connect_timeout)))
}

/// The login and limits the peering's configuration asks for.
fn options(config: &PeeringConfig) -> ConnectOptions {
    let remote = &config.remote;
    ConnectOptions {
        client_properties: config.client_properties(),
        frame_max: config.frame_max,
        channel_max: CHANNEL_MAX,
        heartbeat: Heartbeat::Propose(config.heartbeat),
        refuse_identifier: config.local_identifier.clone(),
        ..ConnectOptions::new(&remote.user, &remote.password, &remote.vhost)
    }
}

impl Link {
    /// Logs in over `stream`, whatever the transport.
    pub(crate) async fn open<T: Transport>(
        stream: T,
        config: &PeeringConfig,
    ) -> Result<Link, ConnectError> {
        let Connection {
            stream,
            rbuf,
            frames,
            frame_max,
            heartbeat,
            server_properties,
            ..
        } = Connection::open(stream, &options(config)).await?;
        let (reader, writer) = stream.into_split();
        Ok(Link {
            reader: Box::new(reader),
            inbuf: rbuf,
            frames,
            frame_max,
            heartbeat,
            server_properties,
            writer: Some(Box::new(writer)),
        })
    }

    /// Hands the write half to a writer task, so the session never waits on the socket
    /// while it has input to read. Returns the sender and the task (aborted when the
    /// session ends, in case it is stuck writing to a stalled link).
    pub(crate) fn spawn_writer(&mut self) -> (mpsc::UnboundedSender<Bytes>, JoinHandle<()>) {
        let (tx, mut rx) = mpsc::unbounded_channel::<Bytes>();
        let writer = self.writer.take();
        let task = tokio::spawn(async move {
            let Some(mut writer) = writer else { return };
            let mut joined = BytesMut::new();
            while let Some(first) = rx.recv().await {
                // Whatever else is queued goes in the same write (one syscall).
                let ok = match rx.try_recv() {
                    Err(_) => writer.write_all(&first).await.is_ok(),
                    Ok(second) => {
                        joined.clear();
                        joined.extend_from_slice(&first);
                        joined.extend_from_slice(&second);
                        while joined.len() < WRITE_BATCH {
                            match rx.try_recv() {
                                Ok(more) => joined.extend_from_slice(&more),
                                Err(_) => break,
                            }
                        }
                        writer.write_all(&joined).await.is_ok()
                    }
                };
                if !ok {
                    return;
                }
            }
            let _ = writer.shutdown().await;
        });
        (tx, task)
    }
}
