//! Queues through lapin: declare variants and their errors (404, 405, 406, 403),
//! purge, delete if-unused/if-empty, auto-delete, TTL (queue and per message),
//! length limits, dead-lettering with x-death, x-expires, single active consumer, priority.

mod support;

use std::time::Duration;

use futures_lite::StreamExt;
use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel};
use support::broker;

fn args(entries: &[(&str, AMQPValue)]) -> FieldTable {
    let mut t = FieldTable::default();
    for (k, v) in entries {
        t.insert((*k).into(), v.clone());
    }
    t
}

fn s(v: &str) -> AMQPValue {
    AMQPValue::LongString(v.into())
}

async fn count(ch: &Channel, q: &str) -> u32 {
    ch.queue_declare(
        q,
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

async fn publish(ch: &Channel, q: &str, body: &[u8], props: BasicProperties) {
    ch.basic_publish("", q, BasicPublishOptions::default(), body, props)
        .await
        .unwrap()
        .await
        .unwrap();
}

#[tokio::test]
async fn server_named_queue_and_passive_404() {
    let b = broker::start().await;
    let (_c, ch) = broker::channel(&b).await;
    let q = ch
        .queue_declare(
            "",
            QueueDeclareOptions {
                exclusive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    assert!(q.name().as_str().starts_with("amq.gen-"), "{}", q.name());
    let err = ch
        .queue_declare(
            "absent",
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(broker::reply_code(&err), Some(404));
    b.shutdown().await;
}

#[tokio::test]
async fn exclusive_queue_of_another_connection_is_405() {
    let b = broker::start().await;
    let (_c1, ch1) = broker::channel(&b).await;
    ch1.queue_declare(
        "mine",
        QueueDeclareOptions {
            exclusive: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .unwrap();
    let (_c2, ch2) = broker::channel(&b).await;
    let err = ch2
        .basic_consume(
            "mine",
            "",
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(broker::reply_code(&err), Some(405), "{err}");
    b.shutdown().await;
}

#[tokio::test]
async fn exclusive_queue_goes_with_its_connection() {
    let b = broker::start().await;
    let (c1, ch1) = broker::channel(&b).await;
    ch1.queue_declare(
        "temp",
        QueueDeclareOptions {
            exclusive: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .unwrap();
    c1.close(200, "bye").await.unwrap();
    let (_c2, ch2) = broker::channel(&b).await;
    let mut gone = false;
    for _ in 0..50 {
        let probe = ch2.clone();
        match probe
            .queue_declare(
                "temp",
                QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
        {
            Err(e) => {
                assert_eq!(broker::reply_code(&e), Some(404));
                gone = true;
                break;
            }
            Ok(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    assert!(gone, "exclusive queue outlived its connection");
    b.shutdown().await;
}

#[tokio::test]
async fn redeclare_with_other_arguments_is_406() {
    let b = broker::start().await;
    let (_c, ch) = broker::channel(&b).await;
    ch.queue_declare(
        "q",
        QueueDeclareOptions::default(),
        args(&[("x-max-length", AMQPValue::LongInt(5))]),
    )
    .await
    .unwrap();
    let err = ch
        .queue_declare(
            "q",
            QueueDeclareOptions::default(),
            args(&[("x-max-length", AMQPValue::LongInt(6))]),
        )
        .await
        .unwrap_err();
    assert_eq!(broker::reply_code(&err), Some(406), "{err}");
    b.shutdown().await;
}

#[tokio::test]
async fn invalid_argument_is_406() {
    let b = broker::start().await;
    let (_c, ch) = broker::channel(&b).await;
    let err = ch
        .queue_declare(
            "bad",
            QueueDeclareOptions::default(),
            args(&[("x-message-ttl", AMQPValue::LongInt(-1))]),
        )
        .await
        .unwrap_err();
    assert_eq!(broker::reply_code(&err), Some(406), "{err}");
    b.shutdown().await;
}

#[tokio::test]
async fn amq_prefixed_queue_name_is_403() {
    let b = broker::start().await;
    let (_c, ch) = broker::channel(&b).await;
    let err = ch
        .queue_declare(
            "amq.q",
            QueueDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(broker::reply_code(&err), Some(403), "{err}");
    b.shutdown().await;
}

#[tokio::test]
async fn purge_and_delete_if_empty_if_unused() {
    let b = broker::start().await;
    let (c, ch) = broker::channel(&b).await;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    ch.queue_declare("p", QueueDeclareOptions::default(), FieldTable::default())
        .await
        .unwrap();
    for _ in 0..3 {
        publish(&ch, "p", b"x", BasicProperties::default()).await;
    }
    let err = ch
        .queue_delete(
            "p",
            QueueDeleteOptions {
                if_empty: true,
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(broker::reply_code(&err), Some(406));
    let ch = c.create_channel().await.unwrap();
    assert_eq!(
        ch.queue_purge("p", QueuePurgeOptions::default())
            .await
            .unwrap(),
        3
    );
    let _consumer = ch
        .basic_consume(
            "p",
            "",
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let (_c2, other) = broker::channel(&b).await;
    let err = other
        .queue_delete(
            "p",
            QueueDeleteOptions {
                if_unused: true,
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(broker::reply_code(&err), Some(406));
    assert_eq!(
        ch.queue_delete("p", QueueDeleteOptions::default())
            .await
            .unwrap(),
        0
    );
    b.shutdown().await;
}

#[tokio::test]
async fn auto_delete_queue_goes_when_its_last_consumer_cancels() {
    let b = broker::start().await;
    let (_c, ch) = broker::channel(&b).await;
    ch.queue_declare(
        "ad",
        QueueDeclareOptions {
            auto_delete: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .unwrap();
    ch.basic_consume(
        "ad",
        "only",
        BasicConsumeOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    ch.basic_cancel("only", BasicCancelOptions::default())
        .await
        .unwrap();
    let err = ch
        .queue_declare(
            "ad",
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(broker::reply_code(&err), Some(404));
    b.shutdown().await;
}

#[tokio::test]
async fn expired_messages_are_dead_lettered_with_x_death() {
    let b = broker::start().await;
    let (_c, ch) = broker::channel(&b).await;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    ch.queue_declare(
        "dead",
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    ch.queue_declare(
        "short-lived",
        QueueDeclareOptions::default(),
        args(&[
            ("x-message-ttl", AMQPValue::LongInt(50)),
            ("x-dead-letter-exchange", s("")),
            ("x-dead-letter-routing-key", s("dead")),
        ]),
    )
    .await
    .unwrap();
    publish(&ch, "short-lived", b"bye", BasicProperties::default()).await;
    let mut got = None;
    for _ in 0..100 {
        if let Some(m) = ch
            .basic_get("dead", BasicGetOptions { no_ack: true })
            .await
            .unwrap()
        {
            got = Some(m);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let m = got.expect("the expired message reaches the dead-letter queue");
    assert_eq!(m.delivery.data, b"bye");
    assert_eq!(count(&ch, "short-lived").await, 0);
    let headers = m
        .delivery
        .properties
        .headers()
        .clone()
        .expect("x-death header");
    let Some(AMQPValue::FieldArray(deaths)) = headers.inner().get("x-death") else {
        panic!("no x-death array: {headers:?}")
    };
    let Some(AMQPValue::FieldTable(first)) = deaths.as_slice().first() else {
        panic!()
    };
    let first = first.inner();
    assert_eq!(first.get("reason"), Some(&s("expired")));
    assert_eq!(first.get("queue"), Some(&s("short-lived")));
    assert_eq!(first.get("count"), Some(&AMQPValue::LongLongInt(1)));
    b.shutdown().await;
}

#[tokio::test]
async fn per_message_expiration() {
    let b = broker::start().await;
    let (_c, ch) = broker::channel(&b).await;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    ch.queue_declare("pm", QueueDeclareOptions::default(), FieldTable::default())
        .await
        .unwrap();
    publish(
        &ch,
        "pm",
        b"soon",
        BasicProperties::default().with_expiration("30".into()),
    )
    .await;
    publish(&ch, "pm", b"later", BasicProperties::default()).await;
    tokio::time::sleep(Duration::from_millis(150)).await;
    let m = ch
        .basic_get("pm", BasicGetOptions { no_ack: true })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(m.delivery.data, b"later");
    b.shutdown().await;
}

#[tokio::test]
async fn rejected_messages_are_dead_lettered() {
    let b = broker::start().await;
    let (_c, ch) = broker::channel(&b).await;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    ch.exchange_declare(
        "dlx",
        lapin::ExchangeKind::Fanout,
        ExchangeDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    ch.queue_declare("dlq", QueueDeclareOptions::default(), FieldTable::default())
        .await
        .unwrap();
    ch.queue_bind(
        "dlq",
        "dlx",
        "",
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    ch.queue_declare(
        "work",
        QueueDeclareOptions::default(),
        args(&[("x-dead-letter-exchange", s("dlx"))]),
    )
    .await
    .unwrap();
    publish(&ch, "work", b"poison", BasicProperties::default()).await;
    let m = ch
        .basic_get("work", BasicGetOptions::default())
        .await
        .unwrap()
        .unwrap();
    m.delivery
        .reject(BasicRejectOptions { requeue: false })
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let d = ch
        .basic_get("dlq", BasicGetOptions { no_ack: true })
        .await
        .unwrap()
        .expect("dead-lettered");
    assert_eq!(d.delivery.data, b"poison");
    assert_eq!(
        d.delivery.routing_key.as_str(),
        "work",
        "the original routing key is kept"
    );
    b.shutdown().await;
}

#[tokio::test]
async fn max_length_drops_from_the_head() {
    let b = broker::start().await;
    let (_c, ch) = broker::channel(&b).await;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    ch.queue_declare(
        "ml",
        QueueDeclareOptions::default(),
        args(&[("x-max-length", AMQPValue::LongInt(2))]),
    )
    .await
    .unwrap();
    for body in [b"1", b"2", b"3"] {
        publish(&ch, "ml", body, BasicProperties::default()).await;
    }
    assert_eq!(count(&ch, "ml").await, 2);
    let m = ch
        .basic_get("ml", BasicGetOptions { no_ack: true })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(m.delivery.data, b"2");
    b.shutdown().await;
}

#[tokio::test]
async fn unused_queue_expires() {
    let b = broker::start().await;
    let (_c, ch) = broker::channel(&b).await;
    ch.queue_declare(
        "exp",
        QueueDeclareOptions::default(),
        args(&[("x-expires", AMQPValue::LongInt(100))]),
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    let err = ch
        .queue_declare(
            "exp",
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(broker::reply_code(&err), Some(404));
    b.shutdown().await;
}

#[tokio::test]
async fn priority_queue_delivers_highest_first() {
    let b = broker::start().await;
    let (_c, ch) = broker::channel(&b).await;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    ch.queue_declare(
        "prio",
        QueueDeclareOptions::default(),
        args(&[("x-max-priority", AMQPValue::ShortShortUInt(5))]),
    )
    .await
    .unwrap();
    for p in [1u8, 5, 3] {
        publish(
            &ch,
            "prio",
            &[p],
            BasicProperties::default().with_priority(p),
        )
        .await;
    }
    let mut order = Vec::new();
    while let Some(m) = ch
        .basic_get("prio", BasicGetOptions { no_ack: true })
        .await
        .unwrap()
    {
        order.push(m.delivery.data[0]);
    }
    assert_eq!(order, [5, 3, 1]);
    b.shutdown().await;
}

#[tokio::test]
async fn single_active_consumer_gets_everything() {
    let b = broker::start().await;
    let (_c, ch) = broker::channel(&b).await;
    ch.queue_declare(
        "sac",
        QueueDeclareOptions::default(),
        args(&[("x-single-active-consumer", AMQPValue::Boolean(true))]),
    )
    .await
    .unwrap();
    let mut first = ch
        .basic_consume(
            "sac",
            "a",
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    let mut second = ch
        .basic_consume(
            "sac",
            "b",
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    for i in 0..4u8 {
        publish(&ch, "sac", &[i], BasicProperties::default()).await;
    }
    for i in 0..4u8 {
        let d = tokio::time::timeout(Duration::from_secs(5), first.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(d.data, [i]);
    }
    assert!(
        tokio::time::timeout(Duration::from_millis(200), second.next())
            .await
            .is_err()
    );
    b.shutdown().await;
}
