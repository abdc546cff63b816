//! Internal publishers and consumers, without a connection.

use std::sync::{Arc, Mutex};

use bytes::Bytes;

use super::*;
use crate::broker::Broker;
use crate::broker::publish::{Confirm, InternalPublisher};
use crate::broker::vhost::QueueDeclare;
use crate::config::Config;
use crate::protocol::generated::properties::BasicProperties;
use crate::protocol::{FieldTable, FieldValue, ReplyCode};

fn ss(s: &str) -> ShortString {
    ShortString::try_from(s).unwrap()
}

fn owner() -> Owner {
    Owner::object("test-object")
}

fn declare(vhost: &VHost, name: &str, arguments: FieldTable) {
    vhost
        .declare_queue(
            QueueDeclare {
                name: ss(name),
                passive: false,
                durable: false,
                exclusive: false,
                auto_delete: false,
                arguments,
            },
            owner(),
        )
        .unwrap();
}

fn options(prefetch: u32) -> ConsumeOptions {
    ConsumeOptions {
        tag: ss("internal"),
        prefetch,
        no_ack: false,
        exclusive: false,
        priority: 0,
    }
}

fn setup() -> (Arc<Broker>, Arc<VHost>, InternalPublisher) {
    let broker = Broker::new(Config::default());
    let vhost = broker.vhost("/").unwrap();
    let publisher = broker.internal_publisher("/").unwrap();
    (broker, vhost, publisher)
}

async fn publish(p: &mut InternalPublisher, exchange: &str, key: &str, body: &str) -> Confirm {
    p.publish(
        &ss(exchange),
        ss(key),
        &BasicProperties::default(),
        Bytes::copy_from_slice(body.as_bytes()),
        false,
    )
    .unwrap()
    .await
}

/// Receives one delivery, or fails the test if none is ready soon.
async fn next(c: &mut InternalConsumer) -> Delivery {
    tokio::time::timeout(std::time::Duration::from_secs(5), c.recv())
        .await
        .expect("a delivery comes")
        .expect("the queue is there")
}

/// Whether a delivery is ready now (after the queue had every chance to send one).
async fn nothing_ready(c: &mut InternalConsumer) -> bool {
    tokio::task::yield_now().await;
    tokio::time::timeout(std::time::Duration::from_millis(50), c.recv())
        .await
        .is_err()
}

#[tokio::test]
async fn prefetch_limits_what_is_outstanding_and_an_ack_frees_it() {
    let (_broker, vhost, mut p) = setup();
    declare(&vhost, "q", FieldTable::new());
    for i in 0..3 {
        assert_eq!(
            publish(&mut p, "", "q", &format!("m{i}")).await,
            Confirm::Ack
        );
    }
    let mut c = InternalConsumer::start(&vhost, &ss("q"), &owner(), options(2)).unwrap();
    let a = next(&mut c).await;
    let b = next(&mut c).await;
    assert_eq!(
        (a.message.body(), b.message.body()),
        (&b"m0"[..], &b"m1"[..])
    );
    assert!(nothing_ready(&mut c).await, "prefetch 2 lets only two out");
    assert_eq!(c.outstanding(), 2);
    c.ack(a.tag, false).unwrap();
    let third = next(&mut c).await;
    assert_eq!(third.message.body(), b"m2");
    // Multiple acks everything up to the tag.
    c.ack(third.tag, true).unwrap();
    assert_eq!(c.outstanding(), 0);
    assert_eq!(c.queue().unacked_count(), 0);
    // An unknown tag is 406, as on a channel.
    assert_eq!(
        c.ack(99, false).unwrap_err().code,
        ReplyCode::PreconditionFailed
    );
}

#[tokio::test]
async fn a_nack_requeues_or_dead_letters() {
    let (_broker, vhost, mut p) = setup();
    let mut args = FieldTable::new();
    args.insert(
        ss("x-dead-letter-exchange"),
        FieldValue::LongString(Bytes::from_static(b"")),
    );
    args.insert(
        ss("x-dead-letter-routing-key"),
        FieldValue::LongString(Bytes::from_static(b"dead")),
    );
    declare(&vhost, "q", args);
    declare(&vhost, "dead", FieldTable::new());
    publish(&mut p, "", "q", "m").await;
    let mut c = InternalConsumer::start(&vhost, &ss("q"), &owner(), options(10)).unwrap();
    let first = next(&mut c).await;
    assert!(!first.redelivered);
    c.nack(first.tag, false, true).unwrap();
    let again = next(&mut c).await;
    assert!(again.redelivered);
    c.nack(again.tag, false, false).unwrap();
    assert_eq!(vhost.queue(&ss("dead")).unwrap().message_count(), 1);
    assert_eq!(c.queue().message_count(), 0);
}

#[tokio::test]
async fn returns_go_to_the_callback_and_a_full_queue_nacks() {
    let (_broker, vhost, mut p) = setup();
    let returned = Arc::new(Mutex::new(Vec::new()));
    let seen = returned.clone();
    p.on_return(move |r| {
        seen.lock()
            .unwrap()
            .push((r.reply_code, r.message.routing_key()))
    });
    let confirm = p
        .publish(
            &ss("amq.direct"),
            ss("nowhere"),
            &BasicProperties::default(),
            Bytes::new(),
            true,
        )
        .unwrap()
        .await;
    assert_eq!(confirm, Confirm::Ack);
    assert_eq!(
        *returned.lock().unwrap(),
        [(ReplyCode::NoRoute, ss("nowhere"))]
    );
    // Not mandatory: dropped, not returned.
    publish(&mut p, "amq.direct", "nowhere", "").await;
    assert_eq!(returned.lock().unwrap().len(), 1);

    let mut args = FieldTable::new();
    args.insert(ss("x-max-length"), FieldValue::I32(1));
    args.insert(
        ss("x-overflow"),
        FieldValue::LongString(Bytes::from_static(b"reject-publish")),
    );
    declare(&vhost, "small", args);
    assert_eq!(publish(&mut p, "", "small", "1").await, Confirm::Ack);
    assert_eq!(publish(&mut p, "", "small", "2").await, Confirm::Nack);
    // A missing exchange is 404 at once.
    let err = p
        .publish(
            &ss("missing"),
            ss(""),
            &BasicProperties::default(),
            Bytes::new(),
            false,
        )
        .err()
        .unwrap();
    assert_eq!(err.code, ReplyCode::NotFound);
}

#[tokio::test]
async fn cc_and_bcc_are_routed_and_bcc_is_not_delivered() {
    let (_broker, vhost, mut p) = setup();
    declare(&vhost, "a", FieldTable::new());
    declare(&vhost, "b", FieldTable::new());
    let mut headers = FieldTable::new();
    headers.insert(
        ss("BCC"),
        FieldValue::Array(vec![FieldValue::LongString(Bytes::from_static(b"b"))]),
    );
    let properties = BasicProperties {
        headers: Some(headers),
        ..Default::default()
    };
    p.publish(&ss(""), ss("a"), &properties, Bytes::new(), false)
        .unwrap()
        .await;
    let mut c = InternalConsumer::start(&vhost, &ss("b"), &owner(), options(0)).unwrap();
    let d = next(&mut c).await;
    let h = d.message.properties().headers().unwrap_or_default();
    assert!(h.get("BCC").is_none());
    assert_eq!(vhost.queue(&ss("a")).unwrap().message_count(), 1);
}

#[tokio::test]
async fn dropping_a_consumer_gives_back_what_it_held() {
    let (_broker, vhost, mut p) = setup();
    declare(&vhost, "q", FieldTable::new());
    for _ in 0..5 {
        publish(&mut p, "", "q", "m").await;
    }
    let mut c = InternalConsumer::start(&vhost, &ss("q"), &owner(), options(3)).unwrap();
    next(&mut c).await;
    drop(c);
    let q = vhost.queue(&ss("q")).unwrap();
    assert_eq!(q.message_count(), 5);
    assert_eq!(q.unacked_count(), 0);
    assert_eq!(q.consumer_count(), 0);
}

#[tokio::test]
async fn an_exclusive_queue_of_a_broker_object_is_its_own() {
    let (_broker, vhost, _) = setup();
    let mine = owner();
    vhost
        .declare_queue(
            QueueDeclare {
                name: ss("mine"),
                passive: false,
                durable: false,
                exclusive: true,
                auto_delete: false,
                arguments: FieldTable::new(),
            },
            mine.clone(),
        )
        .unwrap();
    let other = Owner::Connection(7);
    assert_eq!(
        InternalConsumer::start(&vhost, &ss("mine"), &other, options(1))
            .unwrap_err()
            .code,
        ReplyCode::ResourceLocked
    );
    let c = InternalConsumer::start(&vhost, &ss("mine"), &mine, options(1)).unwrap();
    drop(c);
    vhost.owner_gone(&mine);
    assert!(vhost.queue(&ss("mine")).is_none());
}

#[tokio::test]
async fn a_deleted_queue_ends_the_consumer() {
    let (_broker, vhost, _) = setup();
    declare(&vhost, "q", FieldTable::new());
    let mut c = InternalConsumer::start(&vhost, &ss("q"), &owner(), options(1)).unwrap();
    vhost
        .delete_queue(&ss("q"), false, false, &owner())
        .unwrap();
    let ended = tokio::time::timeout(std::time::Duration::from_secs(5), c.recv()).await;
    assert!(matches!(ended, Ok(None)));
}
