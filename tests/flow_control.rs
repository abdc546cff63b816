//! Back-pressure and limits: above the memory high watermark publishers get
//! connection.blocked and are not read until memory falls (connection.unblocked); a
//! publisher faster than a queue's consumers is held to their pace (flow control), one
//! to a queue without consumers is not; the queue-count limit is a clear 406.

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

    // Another connection empties the queue; memory falls. The last publishes may still
    // wait unread in the blocked connection's socket, so this takes at least what
    // crossed the watermark (4 × 16 KiB), not necessarily all 8.
    let (_c, ch) = broker::channel(&b).await;
    let purge = || async {
        ch.queue_purge("fill", QueuePurgeOptions::default())
            .await
            .unwrap()
    };
    let mut purged = purge().await;
    assert!((4..=8).contains(&purged), "purged {purged}");
    let unblocked = publisher.expect_method().await;
    assert!(
        matches!(unblocked.1, Method::ConnectionUnblocked(_)),
        "got {}",
        unblocked.1.name()
    );
    // Unblocked, the connection is read again: what waited arrives, nothing is lost.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while purged < 8 && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        purged += purge().await;
    }
    assert_eq!(purged, 8, "every accepted publish reached the queue");
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

/// Publishes `n` messages to `queue` as one write: the broker takes them as fast as it
/// reads them (or, held back, does not read).
async fn blast(mut publisher: raw::Client, queue: &'static str, n: usize) -> raw::Client {
    use bytes::BytesMut;
    use fedamq::protocol::frame::encode_frame_with;
    use fedamq::protocol::generated::methods::BasicPublish;
    let m = Method::from(BasicPublish {
        routing_key: ShortString::from_static(queue),
        ..Default::default()
    });
    let mut out = BytesMut::new();
    for i in 0..n as u32 {
        encode_frame_with(&mut out, 1, 1, |b| m.encode(b));
        encode_frame_with(&mut out, 2, 1, |b| {
            fedamq::protocol::content::ContentHeader::encode_prefix(b, 60, 4);
            fedamq::protocol::generated::properties::BasicProperties::default().encode(b);
        });
        encode_frame_with(&mut out, 3, 1, |b| b.extend_from_slice(&i.to_be_bytes()));
    }
    publisher.send_raw(&out).await;
    publisher
}

async fn depth(ch: &lapin::Channel, queue: &str) -> u32 {
    ch.queue_declare(
        queue,
        QueueDeclareOptions {
            passive: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .unwrap()
    .message_count()
}

/// A publisher faster than the queue's consumer is held to the consumer's pace: the
/// backlog stays near the flow mark instead of growing with everything published, and
/// nothing is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publisher_faster_than_its_consumer_is_held_back() {
    use futures_lite::StreamExt;
    const N: usize = 120_000;
    let b = broker::start().await;
    let (_c, ch) = broker::channel(&b).await;
    ch.queue_declare(
        "slow",
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    ch.basic_qos(200, BasicQosOptions::default()).await.unwrap();
    let mut consumer = ch
        .basic_consume(
            "slow",
            "c",
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let consuming = tokio::spawn(async move {
        let mut seen = 0usize;
        while seen < N {
            let d = consumer.next().await.unwrap().unwrap();
            seen += 1;
            if seen % 50 == 0 {
                d.ack(BasicAckOptions { multiple: true }).await.unwrap();
            }
        }
        seen
    });

    let publisher = raw::Client::with_channel(b.local_addr()).await;
    let publishing = tokio::spawn(blast(publisher, "slow", N));
    let (_m, monitor) = broker::channel(&b).await;
    let mut deepest = 0;
    while !consuming.is_finished() {
        deepest = deepest.max(depth(&monitor, "slow").await);
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(consuming.await.unwrap(), N, "every message consumed");
    let _publisher = publishing.await.unwrap();
    let high = fedamq::broker::queue::FLOW_HIGH as u32;
    eprintln!("deepest backlog {deepest}");
    assert!(deepest > 0, "the queue did fill");
    // Held back, the backlog stays near FLOW_HIGH; not held back, it reaches nearly all
    // of N (about 94 % when flow control is switched off). The bound sits between, well
    // above FLOW_HIGH: beside other tests on 2 cores the consumer can stall longer than
    // FLOW_STALL_MS, and a stalled consumer lets its publishers go by design (the backlog
    // then reached up to 58 k on a loaded machine, before and after the mailbox change).
    let bound = (N as u32) * 2 / 3;
    assert!(
        deepest < bound,
        "backlog reached {deepest} of {N}: not held back near {high}"
    );
    b.shutdown().await;
}

/// A queue nobody consumes from holds back nobody: a backlog is what queues are for.
#[tokio::test]
async fn a_queue_without_consumers_takes_everything() {
    const N: usize = 60_000;
    let b = broker::start().await;
    let (_c, ch) = broker::channel(&b).await;
    ch.queue_declare(
        "backlog",
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    let publisher = raw::Client::with_channel(b.local_addr()).await;
    let _publisher = blast(publisher, "backlog", N).await;
    let mut n = 0;
    for _ in 0..500 {
        n = depth(&ch, "backlog").await;
        if n as usize == N {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(n as usize, N);
    b.shutdown().await;
}
