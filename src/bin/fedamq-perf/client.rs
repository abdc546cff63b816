//! fedamq-perf's connections: `fedamq::client` over TCP, with the load generator's
//! login (heartbeats off, larger buffers). Set-up and tear-down use the client's
//! synchronous calls; the hot paths (`producer.rs`, `consumer.rs`) use the connection's
//! stream and buffers directly.

use std::time::Duration;

use fedamq::client::{ConnectOptions, Connection, Heartbeat};
use fedamq::protocol::{FieldTable, FieldValue, ShortString};
use tokio::net::TcpStream;

pub use fedamq::client::{Error, Result};

/// `amqp://user:password@host:port/vhost`, percent-decoded: the library's parser.
pub use fedamq::peering::Remote as AmqpUri;

/// One connection, after the handshake.
pub type Conn = Connection<TcpStream>;

/// How long the handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// Connects and runs the handshake up to connection.open-ok.
pub async fn connect(uri: &AmqpUri) -> Result<Conn> {
    let stream = fedamq::transport::connect_tcp(&uri.host, uri.port).await?;
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
    tokio::time::timeout(HANDSHAKE_TIMEOUT, Conn::open(stream, &options))
        .await
        .map_err(|_| Error::Protocol("handshake timed out".into()))?
}
