//! Starting an in-process broker on an ephemeral port for a test, and connecting to it
//! with lapin (an independent client).

use fedamq::config::Config;
use fedamq::{BrokerHandle, Server};
use lapin::{Channel, Connection, ConnectionProperties};

/// A broker on 127.0.0.1:0 with the default configuration (guest/guest on `/`).
pub async fn start() -> BrokerHandle {
    start_with(Config::default()).await
}

/// A broker with a test's own configuration (port forced to 0).
pub async fn start_with(mut config: Config) -> BrokerHandle {
    config.bind = "127.0.0.1".parse().unwrap();
    config.port = 0;
    // On unless the test turned it off, on a free port like the AMQP listener.
    if config.management.port.is_some() {
        config.management.port = Some(0);
    }
    if config.prometheus.port.is_some() {
        config.prometheus.port = Some(0);
    }
    // The management API's HTTPS runs only with a certificate; a free port when it does.
    config.management_ssl.port = 0;
    Server::start(config).await.expect("broker starts")
}

/// A lapin connection as guest.
pub async fn connect(broker: &BrokerHandle) -> Connection {
    Connection::connect(
        &broker.url("guest", "guest"),
        ConnectionProperties::default(),
    )
    .await
    .expect("lapin connects")
}

/// A connection and one channel on it.
pub async fn channel(broker: &BrokerHandle) -> (Connection, Channel) {
    let conn = connect(broker).await;
    let ch = conn.create_channel().await.expect("channel opens");
    (conn, ch)
}

/// The reply code of a lapin protocol error, if it is one.
pub fn reply_code(err: &lapin::Error) -> Option<u16> {
    match err.kind() {
        lapin::ErrorKind::ProtocolError(e) => Some(e.get_id()),
        _ => None,
    }
}

/// Waits (up to 10 s) for the broker to close a connection, given the connection's
/// `events_listener()` taken before the close, and returns the error lapin reports.
pub async fn closed_by_broker(
    events: &mut (impl futures_lite::Stream<Item = lapin::Event> + Unpin),
) -> lapin::Error {
    tokio::time::timeout(std::time::Duration::from_secs(10), async {
        loop {
            match futures_lite::StreamExt::next(events).await {
                Some(lapin::Event::Error(e)) => return e,
                Some(_) => continue,
                None => panic!("events ended without an error"),
            }
        }
    })
    .await
    .expect("the broker closes the connection")
}
