//! Behaviour where RabbitMQ is the reference, found by driving fedamq with client test
//! suites that are not in this repository (aio-pika, amqplib). Each scenario that a
//! client library can drive runs against fedamq and against the private RabbitMQ of
//! `tests/rabbitmq/start.sh` (its URL in `FEDAMQ_TEST_RABBITMQ_URL`), so the expected
//! answers are RabbitMQ's, checked, not remembered.

mod support;

use lapin::options::*;
use lapin::types::FieldTable;
use lapin::{Channel, Connection, ConnectionProperties, ExchangeKind};
use support::{broker, rabbitmq};

async fn connect(url: &str) -> Connection {
    Connection::connect(url, ConnectionProperties::default())
        .await
        .unwrap_or_else(|e| panic!("lapin connects to {url}: {e}"))
}

/// The reply code of each step: 200 for its -ok. A failed step closes its channel, so
/// each step runs on a channel of its own.
async fn outcome<F, Fut, T>(conn: &Connection, step: F) -> u16
where
    F: FnOnce(Channel) -> Fut,
    Fut: std::future::Future<Output = lapin::Result<T>>,
{
    let ch = conn.create_channel().await.expect("channel opens");
    match step(ch).await {
        Ok(_) => 200,
        Err(e) => broker::reply_code(&e).unwrap_or_else(|| panic!("not a protocol error: {e}")),
    }
}

/// Deletes and unbinds of queues and exchanges that do not exist, as aio-pika's RPC
/// pattern does when it closes (it unbinds a reply queue that auto-delete already
/// removed). Names are unique per run: the RabbitMQ node is shared by the tests.
async fn delete_and_unbind_missing(url: &str) -> Vec<(&'static str, u16)> {
    let conn = connect(url).await;
    let tag = format!("{:x}", rand::random::<u32>());
    let (q, x) = (format!("conf-q-{tag}"), format!("conf-x-{tag}"));
    let (missing_q, missing_x) = (
        format!("conf-missing-q-{tag}"),
        format!("conf-missing-x-{tag}"),
    );
    let setup = conn.create_channel().await.unwrap();
    setup
        .queue_declare(
            &q,
            QueueDeclareOptions {
                auto_delete: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    setup
        .exchange_declare(
            &x,
            ExchangeKind::Direct,
            ExchangeDeclareOptions {
                auto_delete: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    let mut seen = Vec::new();
    let (mq, mx) = (missing_q.as_str(), missing_x.as_str());
    let (q, x) = (q.as_str(), x.as_str());
    seen.push((
        "queue.delete of a missing queue",
        outcome(&conn, |ch| async move {
            ch.queue_delete(mq, QueueDeleteOptions::default()).await
        })
        .await,
    ));
    seen.push((
        "exchange.delete of a missing exchange",
        outcome(&conn, |ch| async move {
            ch.exchange_delete(mx, ExchangeDeleteOptions::default())
                .await
        })
        .await,
    ));
    seen.push((
        "queue.unbind of a missing queue",
        outcome(&conn, |ch| async move {
            ch.queue_unbind(mq, x, "k", FieldTable::default()).await
        })
        .await,
    ));
    seen.push((
        "queue.unbind from a missing exchange",
        outcome(&conn, |ch| async move {
            ch.queue_unbind(q, mx, "k", FieldTable::default()).await
        })
        .await,
    ));
    seen.push((
        "queue.unbind of a binding that does not exist",
        outcome(&conn, |ch| async move {
            ch.queue_unbind(q, x, "k", FieldTable::default()).await
        })
        .await,
    ));
    seen.push((
        "queue.unbind from the default exchange",
        outcome(&conn, |ch| async move {
            ch.queue_unbind(q, "", q, FieldTable::default()).await
        })
        .await,
    ));
    seen.push((
        "queue.unbind of a missing queue from the default exchange",
        outcome(&conn, |ch| async move {
            ch.queue_unbind(mq, "", mq, FieldTable::default()).await
        })
        .await,
    ));
    seen.push((
        "exchange.unbind of a missing destination",
        outcome(&conn, |ch| async move {
            ch.exchange_unbind(
                mx,
                x,
                "k",
                ExchangeUnbindOptions::default(),
                FieldTable::default(),
            )
            .await
        })
        .await,
    ));
    seen.push((
        "exchange.unbind from a missing source",
        outcome(&conn, |ch| async move {
            ch.exchange_unbind(
                x,
                mx,
                "k",
                ExchangeUnbindOptions::default(),
                FieldTable::default(),
            )
            .await
        })
        .await,
    ));
    let _ = conn.close(200, "done").await;
    seen
}

/// What RabbitMQ 3.10 answers (checked by the test below against the private node).
const DELETE_AND_UNBIND_MISSING: &[(&str, u16)] = &[
    ("queue.delete of a missing queue", 200),
    ("exchange.delete of a missing exchange", 200),
    ("queue.unbind of a missing queue", 200),
    ("queue.unbind from a missing exchange", 200),
    ("queue.unbind of a binding that does not exist", 200),
    ("queue.unbind from the default exchange", 403),
    (
        "queue.unbind of a missing queue from the default exchange",
        403,
    ),
    ("exchange.unbind of a missing destination", 200),
    ("exchange.unbind from a missing source", 200),
];

#[tokio::test]
async fn delete_and_unbind_of_missing_things_is_ok() {
    let b = broker::start().await;
    let seen = delete_and_unbind_missing(&b.url("guest", "guest")).await;
    assert_eq!(seen, DELETE_AND_UNBIND_MISSING);
    b.shutdown().await;
}

#[tokio::test]
async fn rabbitmq_deletes_and_unbinds_missing_things_so() {
    let seen = delete_and_unbind_missing(&rabbitmq::url()).await;
    assert_eq!(seen, DELETE_AND_UNBIND_MISSING);
}
