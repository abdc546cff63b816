//! Connections: the handshake's refusals (403 wrong password, 530 unknown vhost, bad
//! protocol header), server properties, AMQPLAIN, heartbeats, handshake timeout, clean
//! shutdown with 320.

mod support;

use std::time::Duration;

use lapin::{Connection, ConnectionProperties};
use support::{broker, raw};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn wrong_password_is_403_access_refused() {
    let b = broker::start().await;
    let err = Connection::connect(&b.url("guest", "wrong"), ConnectionProperties::default())
        .await
        .unwrap_err();
    assert_eq!(broker::reply_code(&err), Some(403), "{err}");
    b.shutdown().await;
}

#[tokio::test]
async fn unknown_vhost_is_530_not_allowed() {
    let b = broker::start().await;
    let url = format!("amqp://guest:guest@{}/nowhere", b.local_addr());
    let err = Connection::connect(&url, ConnectionProperties::default())
        .await
        .unwrap_err();
    assert_eq!(broker::reply_code(&err), Some(530), "{err}");
    b.shutdown().await;
}

#[tokio::test]
async fn amqplain_login_works() {
    let b = broker::start().await;
    let url = format!(
        "amqp://guest:guest@{}/%2f?auth_mechanism=amqplain",
        b.local_addr()
    );
    let c = Connection::connect(&url, ConnectionProperties::default())
        .await
        .unwrap();
    c.create_channel().await.unwrap();
    b.shutdown().await;
}

#[tokio::test]
async fn server_properties_are_truthful() {
    use fedamq::protocol::FieldValue;
    use fedamq::protocol::generated::methods::Method;
    let b = broker::start().await;
    let mut c = raw::Client::connect(b.local_addr()).await;
    c.send_raw(b"AMQP\x00\x00\x09\x01").await;
    let Method::ConnectionStart(start) = c.expect_method().await.1 else {
        panic!("expected connection.start")
    };
    let props = &start.server_properties;
    let text = |k: &str| match props.get(k) {
        Some(FieldValue::LongString(v)) => String::from_utf8_lossy(v).into_owned(),
        other => panic!("{k}: {other:?}"),
    };
    assert_eq!(text("product"), "fedamq");
    assert_eq!(text("identifier"), b.identifier());
    assert!(!text("version").is_empty());
    assert!(!text("platform").is_empty());
    let Some(FieldValue::Table(caps)) = props.get("capabilities") else {
        panic!("no capabilities")
    };
    for cap in [
        "publisher_confirms",
        "exchange_exchange_bindings",
        "basic.nack",
        "consumer_cancel_notify",
        "connection.blocked",
        "authentication_failure_close",
        "per_consumer_qos",
        "consumer_priorities",
    ] {
        assert_eq!(caps.get(cap), Some(&FieldValue::Bool(true)), "{cap}");
    }
    assert_eq!(&start.mechanisms[..], b"PLAIN AMQPLAIN");
    b.shutdown().await;
}

#[tokio::test]
async fn a_wrong_protocol_header_is_answered_with_ours_and_closed() {
    let b = broker::start().await;
    let mut s = tokio::net::TcpStream::connect(b.local_addr())
        .await
        .unwrap();
    s.write_all(b"AMQP\x00\x00\x08\x00").await.unwrap();
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut got))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, b"AMQP\x00\x00\x09\x01");
    b.shutdown().await;
}

#[tokio::test]
async fn a_client_that_never_finishes_the_handshake_is_dropped() {
    let config = fedamq::config::Config {
        handshake_timeout: Duration::from_millis(300),
        ..Default::default()
    };
    let b = broker::start_with(config).await;
    let mut s = tokio::net::TcpStream::connect(b.local_addr())
        .await
        .unwrap();
    s.write_all(b"AMQP\x00\x00\x09\x01").await.unwrap();
    let mut got = Vec::new();
    // connection.start arrives, then nothing from us: the broker hangs up.
    let r = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut got)).await;
    assert!(r.is_ok(), "the broker did not drop the silent client");
    assert!(got.len() > 8, "connection.start was sent first");
    b.shutdown().await;
}

#[tokio::test]
async fn a_silent_peer_is_closed_after_two_heartbeat_intervals() {
    let b = broker::start().await;
    let mut c = raw::Client::open(b.local_addr(), 1).await;
    // Send nothing more; with heartbeat 1 s the broker gives up after ~2 s.
    let closed = tokio::time::timeout(Duration::from_secs(6), c.wait_closed()).await;
    assert!(closed.is_ok(), "the broker kept a silent connection open");
    b.shutdown().await;
}

#[tokio::test]
async fn the_broker_sends_heartbeats() {
    let b = broker::start().await;
    let mut c = raw::Client::open(b.local_addr(), 1).await;
    let frame = tokio::time::timeout(Duration::from_secs(3), c.next_frame())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(frame.0, 8, "a heartbeat frame");
    b.shutdown().await;
}

#[tokio::test]
async fn shutdown_closes_connections_with_320() {
    let b = broker::start().await;
    let mut c = raw::Client::open(b.local_addr(), 0).await;
    let stop = tokio::spawn(b.shutdown());
    let close = c.expect_method().await;
    assert_eq!(close.class_method(), (10, 50), "connection.close");
    assert_eq!(close.reply_code(), 320);
    c.send_close_ok().await;
    stop.await.unwrap();
}
