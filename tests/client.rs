//! fedamq's own client (`fedamq::client`) against a real broker: the handshake, a
//! synchronous call, a refused login, a close.

mod support;

use fedamq::client::{ConnectOptions, Connection, Error};
use support::broker;
use tokio::net::TcpStream;

#[tokio::test]
async fn open_call_and_close() {
    let b = broker::start().await;
    let stream = TcpStream::connect(b.local_addr()).await.unwrap();
    let mut c = Connection::open(stream, &ConnectOptions::new("guest", "guest", "/"))
        .await
        .unwrap();
    assert!(c.server().starts_with("fedamq "), "{}", c.server());
    assert_eq!(c.frame_max, 131_072);
    c.open_channel(1).await.unwrap();
    c.declare_queue(1, "client-test", false).await.unwrap();
    c.delete_queue(1, "client-test").await.unwrap();
    // A channel error comes back as an error, answered.
    let e = c
        .bind_queue(1, "nosuch", "amq.direct", "k", Default::default())
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            Error::Closed {
                what: "channel",
                code: 404,
                ..
            }
        ),
        "{e}"
    );
    c.close().await.unwrap();
    b.shutdown().await;
}

/// The error a login gets.
async fn refusal(addr: std::net::SocketAddr, password: &str, vhost: &str) -> Error {
    let stream = TcpStream::connect(addr).await.unwrap();
    Connection::open(stream, &ConnectOptions::new("guest", password, vhost))
        .await
        .err()
        .unwrap()
}

#[tokio::test]
async fn refused_login_is_the_servers_close() {
    let b = broker::start().await;
    let e = refusal(b.local_addr(), "wrong", "/").await;
    assert!(
        matches!(
            e,
            Error::Closed {
                what: "connection",
                code: 403,
                ..
            }
        ),
        "{e}"
    );
    let e = refusal(b.local_addr(), "guest", "nosuch").await;
    assert!(
        matches!(
            e,
            Error::Closed {
                what: "connection",
                code: 530,
                ..
            }
        ),
        "{e}"
    );
    b.shutdown().await;
}

/// The broker's connections and the client run on any byte stream: here an in-memory
/// one, with no socket at all.
#[tokio::test]
async fn over_an_in_memory_stream() {
    let b = broker::start().await;
    let (client_end, server_end) = tokio::io::duplex(64 * 1024);
    let served = b.serve(fedamq::transport::Joined(server_end));
    let mut c = Connection::open(client_end, &ConnectOptions::new("guest", "guest", "/"))
        .await
        .unwrap();
    c.open_channel(1).await.unwrap();
    c.declare_queue(1, "in-memory", true).await.unwrap();
    c.close().await.unwrap();
    drop(c);
    served.await.unwrap();
    b.shutdown().await;
}
