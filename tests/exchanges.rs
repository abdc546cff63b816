//! Exchanges through lapin: every type's routing, predeclared exchanges, declare
//! equivalence (406), reserved names (403), internal exchanges, exchange-to-exchange
//! bindings, alternate exchanges, delete if-unused.

mod support;

use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, ExchangeKind};
use support::broker;

async fn queue(ch: &Channel, name: &str) {
    ch.queue_declare(name, QueueDeclareOptions::default(), FieldTable::default())
        .await
        .unwrap();
}

async fn bind(ch: &Channel, q: &str, ex: &str, key: &str, args: FieldTable) {
    ch.queue_bind(q, ex, key, QueueBindOptions::default(), args)
        .await
        .unwrap();
}

async fn publish(ch: &Channel, ex: &str, key: &str, headers: Option<FieldTable>) {
    let mut props = BasicProperties::default();
    if let Some(h) = headers {
        props = props.with_headers(h);
    }
    ch.basic_publish(ex, key, BasicPublishOptions::default(), b"m", props)
        .await
        .unwrap()
        .await
        .unwrap();
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

fn table(entries: &[(&str, AMQPValue)]) -> FieldTable {
    let mut t = FieldTable::default();
    for (k, v) in entries {
        t.insert((*k).into(), v.clone());
    }
    t
}

fn s(v: &str) -> AMQPValue {
    AMQPValue::LongString(v.into())
}

#[tokio::test]
async fn topic_routing_with_star_hash_and_empty_words() {
    let b = broker::start().await;
    let (_c, ch) = broker::channel(&b).await;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    for (q, key) in [
        ("star", "a.*.c"),
        ("hash", "a.#"),
        ("all", "#"),
        ("exact", "a.b.c"),
        ("empty", "a..c"),
    ] {
        queue(&ch, q).await;
        bind(&ch, q, "amq.topic", key, FieldTable::default()).await;
    }
    publish(&ch, "amq.topic", "a.b.c", None).await; // star hash all exact
    publish(&ch, "amq.topic", "a", None).await; // hash all
    publish(&ch, "amq.topic", "a..c", None).await; // star (empty middle word) hash all empty
    publish(&ch, "amq.topic", "x.y", None).await; // all
    assert_eq!(count(&ch, "star").await, 2);
    assert_eq!(count(&ch, "hash").await, 3);
    assert_eq!(count(&ch, "all").await, 4);
    assert_eq!(count(&ch, "exact").await, 1);
    assert_eq!(count(&ch, "empty").await, 1);
    b.shutdown().await;
}

#[tokio::test]
async fn headers_routing_all_any_and_with_x() {
    let b = broker::start().await;
    let (_c, ch) = broker::channel(&b).await;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    queue(&ch, "h-all").await;
    queue(&ch, "h-any").await;
    queue(&ch, "h-allx").await;
    bind(
        &ch,
        "h-all",
        "amq.headers",
        "",
        table(&[("x-match", s("all")), ("a", s("1")), ("b", s("2"))]),
    )
    .await;
    bind(
        &ch,
        "h-any",
        "amq.match",
        "",
        table(&[("x-match", s("any")), ("a", s("1")), ("b", s("2"))]),
    )
    .await;
    bind(
        &ch,
        "h-allx",
        "amq.headers",
        "",
        table(&[("x-match", s("all-with-x")), ("x-k", s("v"))]),
    )
    .await;
    publish(
        &ch,
        "amq.headers",
        "",
        Some(table(&[("a", s("1")), ("b", s("2"))])),
    )
    .await;
    publish(&ch, "amq.headers", "", Some(table(&[("a", s("1"))]))).await;
    publish(&ch, "amq.headers", "", Some(table(&[("x-k", s("v"))]))).await;
    assert_eq!(count(&ch, "h-all").await, 1);
    assert_eq!(
        count(&ch, "h-any").await,
        0,
        "amq.match is bound, amq.headers is published to"
    );
    assert_eq!(count(&ch, "h-allx").await, 1);
    publish(&ch, "amq.match", "", Some(table(&[("b", s("2"))]))).await;
    assert_eq!(count(&ch, "h-any").await, 1);
    b.shutdown().await;
}

/// 25,000 three-letter keys with void values: the largest binding that fits in one
/// 128 KiB frame. It is legal, and routing stays right beside it.
#[tokio::test]
async fn headers_binding_with_25000_keys() {
    let b = broker::start().await;
    let (_c, ch) = broker::channel(&b).await;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let alphabet: Vec<char> = ('a'..='z').chain('A'..='Z').chain('0'..='9').collect();
    let keys: Vec<String> = alphabet
        .iter()
        .flat_map(|a| alphabet.iter().map(move |b| (a, b)))
        .flat_map(|(a, b)| alphabet.iter().map(move |c| format!("{a}{b}{c}")))
        .take(25_000)
        .collect();
    let big = |mode: &str| {
        let mut t = table(&[("x-match", s(mode))]);
        for k in &keys {
            t.insert(k.as_str().into(), AMQPValue::Void);
        }
        t
    };
    queue(&ch, "big-any").await;
    queue(&ch, "big-all").await;
    queue(&ch, "small").await;
    bind(&ch, "big-any", "amq.headers", "", big("any")).await;
    bind(&ch, "big-all", "amq.headers", "", big("all")).await;
    bind(
        &ch,
        "small",
        "amq.headers",
        "",
        table(&[("format", s("json"))]),
    )
    .await;
    publish(
        &ch,
        "amq.headers",
        "",
        Some(table(&[("format", s("json"))])),
    )
    .await;
    let last = keys.last().map(String::as_str).unwrap_or_default();
    publish(&ch, "amq.headers", "", Some(table(&[(last, s("v"))]))).await;
    assert_eq!(count(&ch, "small").await, 1);
    assert_eq!(count(&ch, "big-any").await, 1);
    assert_eq!(count(&ch, "big-all").await, 0);
    ch.queue_unbind("big-any", "amq.headers", "", big("any"))
        .await
        .unwrap();
    publish(&ch, "amq.headers", "", Some(table(&[(last, s("v"))]))).await;
    assert_eq!(count(&ch, "big-any").await, 1, "unbound");
    b.shutdown().await;
}

#[tokio::test]
async fn fanout_and_direct_and_default_exchange() {
    let b = broker::start().await;
    let (_c, ch) = broker::channel(&b).await;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    for q in ["f1", "f2", "d"] {
        queue(&ch, q).await;
    }
    bind(&ch, "f1", "amq.fanout", "ignored", FieldTable::default()).await;
    bind(&ch, "f2", "amq.fanout", "", FieldTable::default()).await;
    bind(&ch, "d", "amq.direct", "key", FieldTable::default()).await;
    publish(&ch, "amq.fanout", "whatever", None).await;
    publish(&ch, "amq.direct", "key", None).await;
    publish(&ch, "amq.direct", "other", None).await;
    publish(&ch, "", "d", None).await;
    assert_eq!(count(&ch, "f1").await, 1);
    assert_eq!(count(&ch, "f2").await, 1);
    assert_eq!(count(&ch, "d").await, 2);
    b.shutdown().await;
}

#[tokio::test]
async fn redeclare_with_another_type_is_406() {
    let b = broker::start().await;
    let (c, ch) = broker::channel(&b).await;
    ch.exchange_declare(
        "e",
        ExchangeKind::Direct,
        ExchangeDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    ch.exchange_declare(
        "e",
        ExchangeKind::Direct,
        ExchangeDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    let err = ch
        .exchange_declare(
            "e",
            ExchangeKind::Fanout,
            ExchangeDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(broker::reply_code(&err), Some(406), "{err}");
    // Soft error: the connection lives on.
    let ch2 = c.create_channel().await.unwrap();
    ch2.exchange_declare(
        "e",
        ExchangeKind::Direct,
        ExchangeDeclareOptions {
            passive: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .unwrap();
    b.shutdown().await;
}

#[tokio::test]
async fn passive_declare_of_a_missing_exchange_is_404() {
    let b = broker::start().await;
    let (_c, ch) = broker::channel(&b).await;
    let err = ch
        .exchange_declare(
            "nope",
            ExchangeKind::Direct,
            ExchangeDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(broker::reply_code(&err), Some(404), "{err}");
    b.shutdown().await;
}

#[tokio::test]
async fn amq_prefix_is_403() {
    let b = broker::start().await;
    let (_c, ch) = broker::channel(&b).await;
    let err = ch
        .exchange_declare(
            "amq.mine",
            ExchangeKind::Direct,
            ExchangeDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(broker::reply_code(&err), Some(403), "{err}");
    b.shutdown().await;
}

#[tokio::test]
async fn publishing_to_an_internal_exchange_is_403() {
    let b = broker::start().await;
    let (_c, ch) = broker::channel(&b).await;
    ch.exchange_declare(
        "inner",
        ExchangeKind::Fanout,
        ExchangeDeclareOptions {
            internal: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .unwrap();
    // In confirm mode the publish itself reports the channel error (no race with
    // the next command).
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let err = ch
        .basic_publish(
            "inner",
            "",
            BasicPublishOptions::default(),
            b"x",
            BasicProperties::default(),
        )
        .await
        .unwrap()
        .await
        .unwrap_err();
    assert_eq!(broker::reply_code(&err), Some(403), "{err}");
    b.shutdown().await;
}

#[tokio::test]
async fn publishing_to_a_missing_exchange_is_404() {
    let b = broker::start().await;
    let (_c, ch) = broker::channel(&b).await;
    // In confirm mode the publish itself reports the channel error (no race with
    // the next command).
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let err = ch
        .basic_publish(
            "missing",
            "",
            BasicPublishOptions::default(),
            b"x",
            BasicProperties::default(),
        )
        .await
        .unwrap()
        .await
        .unwrap_err();
    assert_eq!(broker::reply_code(&err), Some(404), "{err}");
    b.shutdown().await;
}

#[tokio::test]
async fn exchange_to_exchange_bindings_route_and_unbind() {
    let b = broker::start().await;
    let (_c, ch) = broker::channel(&b).await;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    ch.exchange_declare(
        "src",
        ExchangeKind::Topic,
        ExchangeDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    ch.exchange_declare(
        "dst",
        ExchangeKind::Fanout,
        ExchangeDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    ch.exchange_bind(
        "dst",
        "src",
        "a.*",
        ExchangeBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    // A cycle must not loop forever.
    ch.exchange_bind(
        "src",
        "dst",
        "#",
        ExchangeBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    queue(&ch, "e2e").await;
    bind(&ch, "e2e", "dst", "", FieldTable::default()).await;
    publish(&ch, "src", "a.b", None).await;
    publish(&ch, "src", "z", None).await;
    assert_eq!(count(&ch, "e2e").await, 1);
    ch.exchange_unbind(
        "dst",
        "src",
        "a.*",
        ExchangeUnbindOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    publish(&ch, "src", "a.b", None).await;
    assert_eq!(count(&ch, "e2e").await, 1);
    b.shutdown().await;
}

#[tokio::test]
async fn alternate_exchange_takes_unroutable_messages() {
    let b = broker::start().await;
    let (_c, ch) = broker::channel(&b).await;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    ch.exchange_declare(
        "ae",
        ExchangeKind::Fanout,
        ExchangeDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    ch.exchange_declare(
        "main",
        ExchangeKind::Direct,
        ExchangeDeclareOptions::default(),
        table(&[("alternate-exchange", s("ae"))]),
    )
    .await
    .unwrap();
    queue(&ch, "routed").await;
    queue(&ch, "unrouted").await;
    bind(&ch, "routed", "main", "k", FieldTable::default()).await;
    bind(&ch, "unrouted", "ae", "", FieldTable::default()).await;
    publish(&ch, "main", "k", None).await;
    publish(&ch, "main", "other", None).await;
    assert_eq!(count(&ch, "routed").await, 1);
    assert_eq!(count(&ch, "unrouted").await, 1);
    b.shutdown().await;
}

#[tokio::test]
async fn delete_if_unused_refuses_an_exchange_with_bindings() {
    let b = broker::start().await;
    let (c, ch) = broker::channel(&b).await;
    ch.exchange_declare(
        "busy",
        ExchangeKind::Direct,
        ExchangeDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    queue(&ch, "bq").await;
    bind(&ch, "bq", "busy", "k", FieldTable::default()).await;
    let err = ch
        .exchange_delete(
            "busy",
            ExchangeDeleteOptions {
                if_unused: true,
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(broker::reply_code(&err), Some(406), "{err}");
    let ch2 = c.create_channel().await.unwrap();
    ch2.exchange_delete("busy", ExchangeDeleteOptions::default())
        .await
        .unwrap();
    let err = ch2
        .exchange_declare(
            "busy",
            ExchangeKind::Direct,
            ExchangeDeclareOptions {
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
async fn unknown_exchange_type_closes_the_connection_with_503() {
    let b = broker::start().await;
    let (c, ch) = broker::channel(&b).await;
    let err = ch
        .exchange_declare(
            "weird",
            ExchangeKind::Custom("x-unknown".into()),
            ExchangeDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(broker::reply_code(&err), Some(503), "{err}");
    assert!(
        c.create_channel().await.is_err(),
        "a hard error closes the connection"
    );
    b.shutdown().await;
}
