//! Publishing and consuming through a real broker with lapin (an independent client):
//! consume/ack, prefetch, get, nack/reject/requeue, mandatory returns, confirms,
//! transactions, consumer cancel notification.

mod support;

use std::time::Duration;

use futures_lite::StreamExt;
use lapin::options::*;
use lapin::publisher_confirm::Confirmation;
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel};
use support::broker;

async fn declare(ch: &Channel, name: &str) {
    ch.queue_declare(name, QueueDeclareOptions::default(), FieldTable::default())
        .await
        .unwrap();
}

async fn publish(ch: &Channel, queue: &str, body: &[u8]) {
    ch.basic_publish(
        "",
        queue,
        BasicPublishOptions::default(),
        body,
        BasicProperties::default(),
    )
    .await
    .unwrap();
}

async fn next(consumer: &mut lapin::Consumer) -> lapin::message::Delivery {
    tokio::time::timeout(Duration::from_secs(5), consumer.next())
        .await
        .expect("a delivery within 5 s")
        .expect("consumer open")
        .expect("delivery ok")
}

#[tokio::test]
async fn publish_consume_ack_in_order() {
    let b = broker::start().await;
    let (_c, ch) = broker::channel(&b).await;
    declare(&ch, "q").await;
    for i in 0..100u32 {
        publish(&ch, "q", &i.to_be_bytes()).await;
    }
    let mut consumer = ch
        .basic_consume(
            "q",
            "",
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    for i in 0..100u32 {
        let d = next(&mut consumer).await;
        assert_eq!(d.data, i.to_be_bytes());
        assert!(!d.redelivered);
        d.ack(BasicAckOptions::default()).await.unwrap();
    }
    let q = ch
        .queue_declare(
            "q",
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    assert_eq!(q.message_count(), 0);
    b.shutdown().await;
}

#[tokio::test]
async fn properties_and_headers_arrive_as_published() {
    let b = broker::start().await;
    let (_c, ch) = broker::channel(&b).await;
    declare(&ch, "props").await;
    let mut headers = FieldTable::default();
    headers.insert("x-n".into(), lapin::types::AMQPValue::LongInt(7));
    headers.insert("s".into(), lapin::types::AMQPValue::LongString("v".into()));
    let props = BasicProperties::default()
        .with_content_type("application/json".into())
        .with_correlation_id("c-1".into())
        .with_priority(3)
        .with_delivery_mode(2)
        .with_timestamp(1_700_000_000)
        .with_headers(headers);
    ch.basic_publish(
        "",
        "props",
        BasicPublishOptions::default(),
        b"{}",
        props.clone(),
    )
    .await
    .unwrap();
    let got = ch
        .basic_get("props", BasicGetOptions { no_ack: true })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.delivery.properties, props);
    assert_eq!(got.delivery.data, b"{}");
    b.shutdown().await;
}

#[tokio::test]
async fn prefetch_limits_unacked_deliveries() {
    let b = broker::start().await;
    let (_c, ch) = broker::channel(&b).await;
    declare(&ch, "pf").await;
    for i in 0..10u8 {
        publish(&ch, "pf", &[i]).await;
    }
    ch.basic_qos(3, BasicQosOptions::default()).await.unwrap();
    let mut consumer = ch
        .basic_consume(
            "pf",
            "c",
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(next(&mut consumer).await);
    }
    // A fourth must not arrive while three are unacked.
    assert!(
        tokio::time::timeout(Duration::from_millis(300), consumer.next())
            .await
            .is_err()
    );
    held.remove(0)
        .ack(BasicAckOptions::default())
        .await
        .unwrap();
    let d = next(&mut consumer).await;
    assert_eq!(d.data, [3]);
    b.shutdown().await;
}

#[tokio::test]
async fn get_and_get_empty_with_message_count() {
    let b = broker::start().await;
    let (_c, ch) = broker::channel(&b).await;
    declare(&ch, "g").await;
    assert!(
        ch.basic_get("g", BasicGetOptions::default())
            .await
            .unwrap()
            .is_none()
    );
    publish(&ch, "g", b"1").await;
    publish(&ch, "g", b"2").await;
    let m = ch
        .basic_get("g", BasicGetOptions::default())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(m.delivery.data, b"1");
    assert_eq!(m.message_count, 1);
    m.delivery.ack(BasicAckOptions::default()).await.unwrap();
    b.shutdown().await;
}

#[tokio::test]
async fn nack_requeue_redelivers_at_the_head_and_reject_drops() {
    let b = broker::start().await;
    let (_c, ch) = broker::channel(&b).await;
    declare(&ch, "n").await;
    publish(&ch, "n", b"a").await;
    publish(&ch, "n", b"b").await;
    let a = ch
        .basic_get("n", BasicGetOptions::default())
        .await
        .unwrap()
        .unwrap();
    a.delivery
        .nack(BasicNackOptions {
            requeue: true,
            multiple: false,
        })
        .await
        .unwrap();
    let again = ch
        .basic_get("n", BasicGetOptions::default())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        again.delivery.data, b"a",
        "requeued message keeps its place at the head"
    );
    assert!(again.delivery.redelivered);
    again
        .delivery
        .reject(BasicRejectOptions { requeue: false })
        .await
        .unwrap();
    let bm = ch
        .basic_get("n", BasicGetOptions::default())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(bm.delivery.data, b"b");
    assert_eq!(bm.message_count, 0);
    b.shutdown().await;
}

#[tokio::test]
async fn unknown_delivery_tag_is_406() {
    use fedamq::protocol::generated::methods::{BasicAck, Method};
    let b = broker::start().await;
    // A raw client: the close must be seen in answer to the ack itself, which lapin
    // would race with whatever it sends next.
    let mut c = support::raw::Client::with_channel(b.local_addr()).await;
    c.send(
        1,
        BasicAck {
            delivery_tag: 99,
            multiple: false,
        },
    )
    .await;
    let close = c.expect_method().await;
    assert!(
        matches!(close.1, Method::ChannelClose(_)),
        "got {}",
        close.1.name()
    );
    assert_eq!(close.reply_code(), 406);
    b.shutdown().await;
}

#[tokio::test]
async fn unacked_messages_of_a_closed_channel_are_requeued_redelivered() {
    let b = broker::start().await;
    let conn = broker::connect(&b).await;
    let ch1 = conn.create_channel().await.unwrap();
    declare(&ch1, "r").await;
    publish(&ch1, "r", b"m").await;
    let m = ch1
        .basic_get("r", BasicGetOptions::default())
        .await
        .unwrap()
        .unwrap();
    assert!(!m.delivery.redelivered);
    ch1.close(200, "bye").await.unwrap();
    let ch2 = conn.create_channel().await.unwrap();
    let m = ch2
        .basic_get("r", BasicGetOptions::default())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(m.delivery.data, b"m");
    assert!(m.delivery.redelivered);
    b.shutdown().await;
}

#[tokio::test]
async fn mandatory_unroutable_is_returned_with_312_then_confirmed() {
    let b = broker::start().await;
    let (_c, ch) = broker::channel(&b).await;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let confirm = ch
        .basic_publish(
            "amq.direct",
            "nowhere",
            BasicPublishOptions {
                mandatory: true,
                ..Default::default()
            },
            b"lost?",
            BasicProperties::default(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    match confirm {
        Confirmation::Ack(Some(ret)) => {
            assert_eq!(ret.reply_code, 312);
            assert_eq!(ret.reply_text.as_str(), "NO_ROUTE");
            assert_eq!(ret.delivery.data, b"lost?");
        }
        other => panic!("expected an ack carrying the return, got {other:?}"),
    }
    b.shutdown().await;
}

#[tokio::test]
async fn confirms_ack_every_publish() {
    let b = broker::start().await;
    let (_c, ch) = broker::channel(&b).await;
    declare(&ch, "c").await;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let mut pending = Vec::new();
    for i in 0..500u32 {
        pending.push(
            ch.basic_publish(
                "",
                "c",
                BasicPublishOptions::default(),
                &i.to_be_bytes(),
                BasicProperties::default(),
            )
            .await
            .unwrap(),
        );
    }
    for p in pending {
        assert!(matches!(p.await.unwrap(), Confirmation::Ack(None)));
    }
    b.shutdown().await;
}

#[tokio::test]
async fn reject_publish_overflow_nacks_the_publisher() {
    let b = broker::start().await;
    let (_c, ch) = broker::channel(&b).await;
    let mut args = FieldTable::default();
    args.insert("x-max-length".into(), lapin::types::AMQPValue::LongInt(1));
    args.insert(
        "x-overflow".into(),
        lapin::types::AMQPValue::LongString("reject-publish".into()),
    );
    ch.queue_declare("full", QueueDeclareOptions::default(), args)
        .await
        .unwrap();
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let first = ch
        .basic_publish(
            "",
            "full",
            BasicPublishOptions::default(),
            b"1",
            BasicProperties::default(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    let second = ch
        .basic_publish(
            "",
            "full",
            BasicPublishOptions::default(),
            b"2",
            BasicProperties::default(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    assert!(first.is_ack());
    assert!(second.is_nack());
    b.shutdown().await;
}

#[tokio::test]
async fn transactions_commit_and_rollback() {
    let b = broker::start().await;
    let (_c, ch) = broker::channel(&b).await;
    declare(&ch, "t").await;
    ch.tx_select().await.unwrap();
    publish(&ch, "t", b"rolled back").await;
    ch.tx_rollback().await.unwrap();
    publish(&ch, "t", b"committed").await;
    let probe = broker::channel(&b).await.1;
    assert!(
        probe
            .basic_get("t", BasicGetOptions::default())
            .await
            .unwrap()
            .is_none(),
        "not visible before commit"
    );
    ch.tx_commit().await.unwrap();
    let m = probe
        .basic_get("t", BasicGetOptions { no_ack: true })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(m.delivery.data, b"committed");
    assert!(
        probe
            .basic_get("t", BasicGetOptions::default())
            .await
            .unwrap()
            .is_none()
    );
    b.shutdown().await;
}

#[tokio::test]
async fn deleting_a_consumed_queue_cancels_the_consumer() {
    let b = broker::start().await;
    let (_c, ch) = broker::channel(&b).await;
    declare(&ch, "gone").await;
    let mut consumer = ch
        .basic_consume(
            "gone",
            "watcher",
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let (_c2, other) = broker::channel(&b).await;
    other
        .queue_delete("gone", QueueDeleteOptions::default())
        .await
        .unwrap();
    // lapin ends the consumer stream when the server cancels it.
    let end = tokio::time::timeout(Duration::from_secs(5), consumer.next())
        .await
        .expect("cancel arrives");
    assert!(end.is_none(), "stream ended by basic.cancel, got {end:?}");
    b.shutdown().await;
}

#[tokio::test]
async fn round_robin_between_two_consumers() {
    let b = broker::start().await;
    let (_c, ch) = broker::channel(&b).await;
    declare(&ch, "rr").await;
    let mut c1 = ch
        .basic_consume(
            "rr",
            "one",
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    let mut c2 = ch
        .basic_consume(
            "rr",
            "two",
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    for i in 0..10u8 {
        publish(&ch, "rr", &[i]).await;
    }
    let mut one = Vec::new();
    let mut two = Vec::new();
    for _ in 0..5 {
        one.push(next(&mut c1).await.data[0]);
        two.push(next(&mut c2).await.data[0]);
    }
    assert_eq!(one, [0, 2, 4, 6, 8]);
    assert_eq!(two, [1, 3, 5, 7, 9]);
    b.shutdown().await;
}

#[tokio::test]
async fn large_messages_span_many_frames() {
    let b = broker::start().await;
    let (_c, ch) = broker::channel(&b).await;
    declare(&ch, "big").await;
    let body: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    publish(&ch, "big", &body).await;
    let m = ch
        .basic_get("big", BasicGetOptions { no_ack: true })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(m.delivery.data.len(), body.len());
    assert!(m.delivery.data == body);
    b.shutdown().await;
}

#[tokio::test]
async fn channel_flow_pauses_and_resumes_deliveries() {
    use fedamq::protocol::ShortString;
    use fedamq::protocol::generated::methods::{BasicConsume, ChannelFlow, Method, QueueDeclare};
    let b = broker::start().await;
    let mut c = support::raw::Client::with_channel(b.local_addr()).await;
    c.send(
        1,
        QueueDeclare {
            queue: ShortString::from_static("fl"),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(c.expect_method().await.class_method(), (50, 11));
    c.send(1, ChannelFlow { active: false }).await;
    let ok = c.expect_method().await;
    assert!(
        matches!(ok.1, Method::ChannelFlowOk(ref f) if !f.active),
        "got {}",
        ok.1.name()
    );
    c.send(
        1,
        BasicConsume {
            queue: ShortString::from_static("fl"),
            no_ack: true,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(c.expect_method().await.class_method(), (60, 21));
    c.publish(1, "fl", b"paused").await;
    // Paused: nothing may arrive.
    let early = tokio::time::timeout(Duration::from_millis(300), c.expect_method()).await;
    assert!(
        early.is_err(),
        "a delivery arrived while the channel was paused"
    );
    c.send(1, ChannelFlow { active: true }).await;
    let ok = c.expect_method().await;
    assert!(
        matches!(ok.1, Method::ChannelFlowOk(ref f) if f.active),
        "got {}",
        ok.1.name()
    );
    let deliver = c.expect_method().await;
    assert_eq!(
        deliver.class_method(),
        (60, 60),
        "basic.deliver after resuming"
    );
    b.shutdown().await;
}
