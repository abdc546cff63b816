//! Back-pressure and limits: above the memory high watermark publishers get
//! connection.blocked and are not read until memory falls (connection.unblocked);
//! the queue-count limit is a clear 406.

mod support;

use fedamq::config::Config;
use fedamq::protocol::ShortString;
use fedamq::protocol::generated::methods::{Method, QueueDeclare};
use lapin::options::*;
use lapin::types::FieldTable;
use support::{broker, raw};

#[tokio::test]
async fn publishers_are_blocked_above_the_watermark_and_unblocked_below() {
    let config = Config {
        memory_high_watermark: 64 * 1024,
        ..Default::default()
    };
    let b = broker::start_with(config).await;
    let mut publisher = raw::Client::with_channel(b.local_addr()).await;
    publisher
        .send(
            1,
            QueueDeclare {
                queue: ShortString::from_static("fill"),
                ..Default::default()
            },
        )
        .await;
    assert_eq!(publisher.expect_method().await.class_method(), (50, 11));
    let body = vec![7u8; 16 * 1024];
    for _ in 0..8 {
        publisher.publish(1, "fill", &body).await;
    }
    let blocked = publisher.expect_method().await;
    assert!(
        matches!(blocked.1, Method::ConnectionBlocked(_)),
        "got {}",
        blocked.1.name()
    );

    // A consumer on another connection drains the queue; memory falls.
    let (_c, ch) = broker::channel(&b).await;
    assert_eq!(
        ch.queue_purge("fill", QueuePurgeOptions::default())
            .await
            .unwrap(),
        8
    );
    let unblocked = publisher.expect_method().await;
    assert!(
        matches!(unblocked.1, Method::ConnectionUnblocked(_)),
        "got {}",
        unblocked.1.name()
    );
    b.shutdown().await;
}

#[tokio::test]
async fn queue_limit_is_a_406() {
    let mut config = Config::default();
    config.limits.max_queues = 2;
    let b = broker::start_with(config).await;
    let (_c, ch) = broker::channel(&b).await;
    ch.queue_declare("a", QueueDeclareOptions::default(), FieldTable::default())
        .await
        .unwrap();
    ch.queue_declare("b", QueueDeclareOptions::default(), FieldTable::default())
        .await
        .unwrap();
    let err = ch
        .queue_declare("c", QueueDeclareOptions::default(), FieldTable::default())
        .await
        .unwrap_err();
    assert_eq!(broker::reply_code(&err), Some(406), "{err}");
    b.shutdown().await;
}

#[tokio::test]
async fn connection_limit_refuses_the_next_connection() {
    let mut config = Config::default();
    config.limits.max_connections = 1;
    let b = broker::start_with(config).await;
    let first = broker::connect(&b).await;
    let url = b.url("guest", "guest");
    let second = lapin::Connection::connect(&url, lapin::ConnectionProperties::default()).await;
    assert!(
        second.is_err(),
        "a second connection over the limit was accepted"
    );
    // The first is unaffected.
    first.create_channel().await.unwrap();
    b.shutdown().await;
}

#[tokio::test]
async fn prefetch_size_is_540_not_implemented() {
    use fedamq::protocol::generated::methods::BasicQos;
    let b = broker::start().await;
    let mut c = raw::Client::with_channel(b.local_addr()).await;
    c.send(
        1,
        BasicQos {
            prefetch_size: 1024,
            prefetch_count: 1,
            global: false,
        },
    )
    .await;
    let close = c.expect_method().await;
    assert_eq!(close.class_method(), (10, 50), "540 is a hard error");
    assert_eq!(close.reply_code(), 540);
    b.shutdown().await;
}

#[tokio::test]
async fn exchange_limit_is_a_406() {
    let mut config = Config::default();
    // The six predeclared exchanges count.
    config.limits.max_exchanges = 7;
    let b = broker::start_with(config).await;
    let (_c, ch) = broker::channel(&b).await;
    ch.exchange_declare(
        "one",
        lapin::ExchangeKind::Fanout,
        ExchangeDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    let err = ch
        .exchange_declare(
            "two",
            lapin::ExchangeKind::Fanout,
            ExchangeDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(broker::reply_code(&err), Some(406), "{err}");
    b.shutdown().await;
}
