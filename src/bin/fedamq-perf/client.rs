//! fedamq-perf's connections: `fedamq::client` over TCP, or over TLS for `amqps://`
//! URIs, with the load generator's login (heartbeats off, larger buffers). Set-up and
//! tear-down use the client's synchronous calls; the hot paths (`producer.rs`,
//! `consumer.rs`) use the connection's stream and buffers directly, through [`split`].
//!
//! TCP and TLS are one stream type ([`Stream`], an `Either`) rather than a type
//! parameter through the whole program: the branch per read or write is nothing beside
//! the system call, and TCP keeps its lock-free split.

use std::time::Duration;

use fedamq::client::{ConnectOptions, Connection, Heartbeat};
use fedamq::protocol::{FieldTable, FieldValue, ShortString};
use fedamq::transport::tls::connect_tls;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp;
use tokio_rustls::client::TlsStream;
use tokio_util::either::Either;

pub use fedamq::client::{Error, Result};

/// `amqp://user:password@host:port/vhost`, percent-decoded, or `amqps://…` with
/// RabbitMQ's TLS query parameters (`cacertfile`, `certfile`, `keyfile`, `verify`,
/// `server_name_indication`): the peering's parser.
pub use fedamq::peering::Remote as AmqpUri;

/// A connection's byte stream: TCP, or TLS over TCP.
pub type Stream = Either<TcpStream, TlsStream<TcpStream>>;

/// One connection, after the handshake.
pub type Conn = Connection<Stream>;

/// The halves of a [`Stream`], borrowed for a loop that reads and writes in one task.
pub type ReadHalf<'a> =
    Either<tcp::ReadHalf<'a>, tokio::io::ReadHalf<&'a mut TlsStream<TcpStream>>>;
pub type WriteHalf<'a> =
    Either<tcp::WriteHalf<'a>, tokio::io::WriteHalf<&'a mut TlsStream<TcpStream>>>;

/// Splits a stream: TCP without a lock; TLS, which has no split of its own, through
/// `tokio::io::split` (its lock is never contended, as one task holds both halves).
///
/// A TLS write may leave encrypted bytes buffered when the socket is full, so a loop
/// writing through the half must flush it before it waits on reads alone.
pub fn split(stream: &mut Stream) -> (ReadHalf<'_>, WriteHalf<'_>) {
    match stream {
        Either::Left(tcp) => {
            let (r, w) = tcp.split();
            (Either::Left(r), Either::Left(w))
        }
        Either::Right(tls) => {
            let (r, w) = tokio::io::split(tls);
            (Either::Right(r), Either::Right(w))
        }
    }
}

/// Writes some of `out`, or flushes when it is empty (one future: a `select!` can borrow
/// the write half only once). `None` after a flush.
pub async fn write_or_flush<W: AsyncWrite + Unpin>(
    wr: &mut W,
    out: &[u8],
) -> std::io::Result<Option<usize>> {
    if out.is_empty() {
        wr.flush().await.map(|()| None)
    } else {
        wr.write(out).await.map(Some)
    }
}

/// The TLS version and cipher suite a connection negotiated (`None` over plain TCP).
pub fn tls_description(stream: &Stream) -> Option<String> {
    let Either::Right(tls) = stream else {
        return None;
    };
    let (_, session) = tls.get_ref();
    Some(format!(
        "{:?} {:?}",
        session.protocol_version()?,
        session.negotiated_cipher_suite()?.suite()
    ))
}

/// How long the TCP connect, the TLS handshake and the AMQP handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// Connects (with TLS for `amqps://`) and runs the handshake up to connection.open-ok.
pub async fn connect(uri: &AmqpUri) -> Result<Conn> {
    tokio::time::timeout(HANDSHAKE_TIMEOUT, open(uri))
        .await
        .map_err(|_| Error::Protocol("handshake timed out".into()))?
}

async fn open(uri: &AmqpUri) -> Result<Conn> {
    let tcp = fedamq::transport::connect_tcp(&uri.host, uri.port).await?;
    let stream = match &uri.tls {
        None => Either::Left(tcp),
        Some(settings) => Either::Right(
            connect_tls(tcp, &uri.host, settings)
                .await
                .map_err(|e| Error::Protocol(e.to_string()))?,
        ),
    };
    let mut capabilities = FieldTable::new();
    for cap in ["publisher_confirms", "consumer_cancel_notify", "basic.nack"] {
        capabilities.insert(ShortString::from_static(cap), FieldValue::Bool(true));
    }
    let mut props = FieldTable::new();
    props.insert(ShortString::from_static("product"), "fedamq-perf".into());
    props.insert(
        ShortString::from_static("version"),
        env!("CARGO_PKG_VERSION").into(),
    );
    props.insert(ShortString::from_static("platform"), "Rust".into());
    props.insert(
        ShortString::from_static("capabilities"),
        FieldValue::Table(capabilities),
    );
    let options = ConnectOptions {
        client_properties: props,
        // Off: a load generator's connections are never idle for long, and the
        // broker's own liveness checks are not what is being measured.
        heartbeat: Heartbeat::Off,
        buffer_size: 256 * 1024,
        ..ConnectOptions::new(&uri.user, &uri.password, &uri.vhost)
    };
    Conn::open(stream, &options).await
}
