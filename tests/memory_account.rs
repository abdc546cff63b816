//! The memory account: a message is charged what it occupies (its structures and its
//! queue's entry for it), not only its body and properties, so a publisher of small or
//! empty messages is blocked at the watermark like any other; and what is charged is
//! released when it goes.

mod support;

use fedamq::broker::backlog::Entry;
use fedamq::broker::message::Message;
use fedamq::config::Config;
use fedamq::protocol::ShortString;
use fedamq::protocol::generated::methods::QueueDeclare;
use lapin::options::*;
use lapin::types::FieldTable;
use support::{broker, raw};

/// What one queued message with no properties, an empty body and the routing key
/// `queue` (default exchange) occupies at least: its own footprint and a queue entry.
fn least_per_message(queue: &str) -> u64 {
    Message::footprint_of(0, queue.len()) + size_of::<Entry>() as u64
}

async fn message_count(ch: &lapin::Channel, queue: &str) -> u32 {
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

#[tokio::test]
async fn a_publisher_of_empty_messages_is_blocked_at_the_watermark() {
    const WATERMARK: u64 = 1 << 20;
    // Enough that, counted at what they occupy, they pass the watermark many times over
    // (the broker stops reading the publisher long before it sends them all); counted
    // at their body and property bytes only, they stay far below it.
    const MESSAGES: u64 = 500_000;
    assert!(MESSAGES * least_per_message("empty") > 20 * WATERMARK);
    let config = Config {
        memory_high_watermark: WATERMARK,
        ..Default::default()
    };
    let b = broker::start_with(config).await;
    let mut publisher = raw::Client::with_channel(b.local_addr()).await;
    publisher
        .send(
            1,
            QueueDeclare {
                queue: ShortString::from_static("empty"),
                ..Default::default()
            },
        )
        .await;
    assert_eq!(publisher.expect_method().await.class_method(), (50, 11));

    let mut alarm = b.broker().alarm();
    // The publisher sends everything, then a synchronous method: its answer means the
    // broker read and queued every message, i.e. it never stopped reading.
    let publishing = tokio::spawn(async move {
        let mut batch = bytes::BytesMut::new();
        for i in 0..MESSAGES {
            raw::encode_publish(&mut batch, 1, "empty", b"");
            if i % 1000 == 999 {
                publisher.send_raw(&batch).await;
                batch.clear();
            }
        }
        publisher.send_raw(&batch).await;
        publisher
            .send(
                1,
                QueueDeclare {
                    queue: ShortString::from_static("empty"),
                    passive: true,
                    ..Default::default()
                },
            )
            .await;
        publisher.expect_method().await;
        publisher
    });
    tokio::select! {
        _ = alarm.wait_for(|on| *on) => {}
        done = publishing => {
            drop(done);
            panic!(
                "all {MESSAGES} empty messages were taken without the alarm: the gauge \
                 counts {} bytes for them, watermark {WATERMARK}",
                b.broker().memory().used()
            );
        }
    }
    assert!(b.broker().memory().used() > WATERMARK);
    let queued = b
        .broker()
        .vhost("/")
        .unwrap()
        .queue(&ShortString::from_static("empty"))
        .unwrap()
        .message_count();
    assert!(u64::from(queued) < MESSAGES, "{queued} queued");

    // Purging brings the gauge back under the watermark and the alarm clears.
    let (_c, ch) = broker::channel(&b).await;
    ch.queue_purge("empty", QueuePurgeOptions::default())
        .await
        .unwrap();
    let _ = alarm.wait_for(|on| !*on).await;
    b.shutdown().await;
}

#[tokio::test]
async fn each_queued_empty_message_is_charged_at_least_its_footprint_and_released() {
    const MESSAGES: u32 = 2000;
    let b = broker::start().await;
    let gauge = b.broker().memory().clone();
    let (_c, ch) = broker::channel(&b).await;
    let empty_vhost = gauge.used();
    ch.queue_declare("small", Default::default(), FieldTable::default())
        .await
        .unwrap();
    let with_queue = gauge.used();
    assert!(with_queue > empty_vhost, "a queue is charged");
    for _ in 0..MESSAGES {
        ch.basic_publish(
            "",
            "small",
            BasicPublishOptions::default(),
            b"",
            Default::default(),
        )
        .await
        .unwrap();
    }
    assert_eq!(message_count(&ch, "small").await, MESSAGES);
    let per_message = (gauge.used() - with_queue) / u64::from(MESSAGES);
    assert!(
        per_message >= least_per_message("small"),
        "{per_message} bytes charged per message, less than its footprint {}",
        least_per_message("small")
    );

    // A binding and an exchange are charged; all of it goes when they do.
    ch.exchange_declare(
        "ex",
        lapin::ExchangeKind::Fanout,
        Default::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    let with_exchange = gauge.used();
    ch.queue_bind("small", "ex", "", Default::default(), FieldTable::default())
        .await
        .unwrap();
    assert!(gauge.used() > with_exchange, "a binding is charged");
    ch.exchange_delete("ex", Default::default()).await.unwrap();
    ch.queue_delete("small", Default::default()).await.unwrap();
    assert_eq!(gauge.used(), empty_vhost);
    b.shutdown().await;
}
