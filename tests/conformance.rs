//! Behaviour where RabbitMQ is the reference, found by driving fedamq with client test
//! suites that are not in this repository (aio-pika, amqplib). Each scenario that a
//! client library can drive runs against fedamq and against the private RabbitMQ of
//! `tests/rabbitmq/start.sh` (its URL in `FEDAMQ_TEST_RABBITMQ_URL`), so the expected
//! answers are RabbitMQ's, checked, not remembered.

mod support;

use std::collections::{BTreeMap, BTreeSet};

use bytes::{Bytes, BytesMut};
use fedamq::protocol::generated::methods::{
    AccessRequest, AccessRequestOk, ChannelOpen, ConfirmSelect, ConnectionClose, ConnectionCloseOk,
    Method, QueueDeclare,
};
use fedamq::protocol::{FieldTable as FieldTableRaw, FieldValue, ShortString};
use lapin::options::*;
use lapin::types::FieldTable;
use lapin::{Channel, Connection, ConnectionProperties, ExchangeKind};
use support::{broker, rabbitmq, raw};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

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
                exclusive: true,
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
            ExchangeDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let (mq, mx) = (missing_q.as_str(), missing_x.as_str());
    let (q, x) = (q.as_str(), x.as_str());
    let c = &conn;
    let seen = vec![
        (
            "queue.delete of a missing queue",
            outcome(c, |ch| async move {
                ch.queue_delete(mq, QueueDeleteOptions::default()).await
            })
            .await,
        ),
        (
            "exchange.delete of a missing exchange",
            outcome(c, |ch| async move {
                ch.exchange_delete(mx, ExchangeDeleteOptions::default())
                    .await
            })
            .await,
        ),
        (
            "queue.unbind of a missing queue",
            queue_unbind(c, mq, x).await,
        ),
        (
            "queue.unbind from a missing exchange",
            queue_unbind(c, q, mx).await,
        ),
        (
            "queue.unbind of a binding that does not exist",
            queue_unbind(c, q, x).await,
        ),
        (
            "queue.unbind from the default exchange",
            queue_unbind(c, q, "").await,
        ),
        (
            "queue.unbind of a missing queue from the default exchange",
            queue_unbind(c, mq, "").await,
        ),
        (
            "exchange.unbind of a missing destination",
            exchange_unbind(c, mx, x).await,
        ),
        (
            "exchange.unbind from a missing source",
            exchange_unbind(c, x, mx).await,
        ),
    ];
    setup
        .exchange_delete(x, ExchangeDeleteOptions::default())
        .await
        .unwrap();
    let _ = conn.close(200, "done").await;
    seen
}

/// `queue.unbind` of `queue` from `exchange` with key "k" (the queue's name from the
/// default exchange, where that is the binding every queue has).
async fn queue_unbind(conn: &Connection, queue: &str, exchange: &str) -> u16 {
    let key = if exchange.is_empty() { queue } else { "k" };
    outcome(conn, |ch| async move {
        ch.queue_unbind(queue, exchange, key, FieldTable::default())
            .await
    })
    .await
}

/// `exchange.unbind` of `destination` from `source` with key "k".
async fn exchange_unbind(conn: &Connection, destination: &str, source: &str) -> u16 {
    outcome(conn, |ch| async move {
        ch.exchange_unbind(
            destination,
            source,
            "k",
            ExchangeUnbindOptions::default(),
            FieldTable::default(),
        )
        .await
    })
    .await
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

/// Declares `queue` on channel 1 with `arguments`.
async fn declare(c: &mut raw::Client, queue: &str, arguments: FieldTableRaw) {
    c.send(
        1,
        QueueDeclare {
            queue: ShortString::try_from(queue).unwrap(),
            arguments,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(c.expect_method().await.class_method(), (50, 11));
}

/// A raw client on channel 1 in confirm mode.
async fn confirming(b: &fedamq::BrokerHandle) -> raw::Client {
    let mut c = raw::Client::with_channel(b.local_addr()).await;
    c.send(1, ConfirmSelect { nowait: false }).await;
    assert_eq!(c.expect_method().await.class_method(), (85, 11));
    c
}

/// Reads confirms until sequence numbers `1..=n` are all settled, as a client reads
/// them: `multiple` settles every outstanding number up to the tag. Returns each
/// number's outcome (true = ack) and how many confirm frames carried them. Panics if a
/// confirm names a number that is not outstanding (confirmed twice, or never published).
async fn read_confirms(c: &mut raw::Client, n: u64) -> (BTreeMap<u64, bool>, usize, usize) {
    let mut outstanding: BTreeSet<u64> = (1..=n).collect();
    let mut outcome = BTreeMap::new();
    let (mut frames, mut multiples) = (0, 0);
    while !outstanding.is_empty() {
        let frame = c.expect_method().await;
        let (tag, multiple, ack) = match frame.1 {
            Method::BasicAck(a) => (a.delivery_tag, a.multiple, true),
            Method::BasicNack(a) => (a.delivery_tag, a.multiple, false),
            other => panic!("expected a confirm, got {}", other.name()),
        };
        frames += 1;
        let settled: Vec<u64> = if multiple {
            multiples += 1;
            outstanding.range(..=tag).copied().collect()
        } else {
            vec![tag]
        };
        assert!(
            settled.contains(&tag) || multiple,
            "confirm of {tag} settles nothing"
        );
        for seq in settled {
            assert!(outstanding.remove(&seq), "{seq} confirmed twice");
            outcome.insert(seq, ack);
        }
    }
    (outcome, frames, multiples)
}

#[tokio::test]
async fn confirms_of_one_read_are_coalesced_into_multiple_acks() {
    const N: u64 = 200;
    let b = broker::start().await;
    let mut c = confirming(&b).await;
    declare(&mut c, "burst", FieldTableRaw::new()).await;
    let mut burst = BytesMut::new();
    for _ in 0..N {
        raw::encode_publish(&mut burst, 1, "burst", b"m");
    }
    c.send_raw(&burst).await;
    let (outcome, frames, multiples) = read_confirms(&mut c, N).await;
    assert!(outcome.values().all(|ack| *ack), "every message acked");
    assert!(
        frames < N as usize,
        "{frames} confirm frames for {N} messages"
    );
    assert!(multiples > 0);
    drop(c);
    b.shutdown().await;
}

#[tokio::test]
async fn a_refused_publish_breaks_the_run_of_acks() {
    let b = broker::start().await;
    let mut c = confirming(&b).await;
    let mut limited = FieldTableRaw::new();
    limited.insert(ShortString::from_static("x-max-length"), FieldValue::I64(2));
    limited.insert(
        ShortString::from_static("x-overflow"),
        FieldValue::LongString(Bytes::from_static(b"reject-publish")),
    );
    declare(&mut c, "limited", limited).await;
    declare(&mut c, "open", FieldTableRaw::new()).await;
    // 1 and 2 fit, 3 is refused, 4 and 5 go elsewhere; all in one write.
    let mut burst = BytesMut::new();
    for queue in ["limited", "limited", "limited", "open", "open"] {
        raw::encode_publish(&mut burst, 1, queue, b"m");
    }
    c.send_raw(&burst).await;
    let (outcome, frames, _) = read_confirms(&mut c, 5).await;
    let expected: BTreeMap<u64, bool> =
        [(1, true), (2, true), (3, false), (4, true), (5, true)].into();
    assert_eq!(outcome, expected);
    assert!(frames < 5, "{frames} confirm frames for 5 messages");
    drop(c);
    b.shutdown().await;
}

/// Publishes of 32 MiB in all, more than the socket buffers of both ends hold: a broker
/// that stops reading leaves most of it unread.
fn big_burst() -> BytesMut {
    let body = vec![b'x'; 32 * 1024];
    let mut burst = BytesMut::new();
    for _ in 0..1024 {
        raw::encode_publish(&mut burst, 1, "burst", &body);
    }
    burst
}

/// After the last frame the broker sends, the socket ends with EOF, not a reset.
async fn expect_clean_end(c: &mut raw::Client) {
    let mut rest = Vec::new();
    match c.stream.read_to_end(&mut rest).await {
        Ok(_) => assert!(rest.is_empty(), "{} bytes after the close", rest.len()),
        Err(e) => panic!("the broker reset the connection instead of closing it: {e}"),
    }
}

/// amqplib's 'find high watermark': the client writes connection.close while publishes
/// are still going out behind it. The broker answers close-ok and must keep reading
/// (and discarding) until the client closes: closing a socket with unread bytes makes
/// the kernel send a reset, the client's writes fail, and the close-ok can be lost.
#[tokio::test]
async fn close_ok_reaches_a_client_that_is_still_writing() {
    let b = broker::start().await;
    let mut c = raw::Client::with_channel(b.local_addr()).await;
    declare(&mut c, "burst", FieldTableRaw::new()).await;
    let mut out = BytesMut::new();
    raw::encode_method(&mut out, 0, ConnectionClose::default());
    out.extend_from_slice(&big_burst());
    if let Err(e) = c.stream.write_all(&out).await {
        panic!("the broker reset the connection while the client was writing: {e}");
    }
    assert_eq!(c.expect_method().await.class_method(), (10, 51));
    expect_clean_end(&mut c).await;
    drop(c);
    b.shutdown().await;
}

/// The broker closes the connection (a hard error), the client answers close-ok with
/// frames it had already queued behind it: the same graceful end.
#[tokio::test]
async fn a_broker_initiated_close_ends_cleanly_too() {
    let b = broker::start().await;
    let mut c = raw::Client::with_channel(b.local_addr()).await;
    // channel.open on channel 0: 503, closes the connection.
    c.send(0, ChannelOpen {}).await;
    let close = c.expect_method().await;
    assert_eq!(close.reply_code(), 503);
    let mut out = BytesMut::new();
    raw::encode_method(&mut out, 0, ConnectionCloseOk {});
    out.extend_from_slice(&big_burst());
    if let Err(e) = c.stream.write_all(&out).await {
        panic!("the broker reset the connection while the client was writing: {e}");
    }
    expect_clean_end(&mut c).await;
    drop(c);
    b.shutdown().await;
}

/// What an AMQP 0-8 era client sends before using a channel, with the values old clients
/// default to; the answer, then that the channel still works.
async fn access_request(mut c: raw::Client) -> Method {
    c.open_channel(1).await;
    c.send(
        1,
        AccessRequest {
            realm: ShortString::from_static("/data"),
            exclusive: false,
            passive: true,
            active: true,
            write: true,
            read: true,
        },
    )
    .await;
    let answer = c.expect_method().await;
    assert_eq!(answer.0, 1, "answered on the channel asked");
    c.send(
        1,
        QueueDeclare {
            exclusive: true,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(c.expect_method().await.class_method(), (50, 11));
    answer.1
}

#[tokio::test]
async fn access_request_gets_request_ok_with_ticket_1() {
    let b = broker::start().await;
    let c = raw::Client::open(b.local_addr(), 0).await;
    let answer = access_request(c).await;
    assert_eq!(answer, Method::from(AccessRequestOk { ticket: 1 }));
    b.shutdown().await;
}

#[tokio::test]
async fn rabbitmq_answers_access_request_so() {
    let p = rabbitmq::parts();
    let c = raw::Client::open_as(rabbitmq::addr(), &p.user, &p.password, &p.vhost, 0).await;
    let answer = access_request(c).await;
    assert_eq!(answer, Method::from(AccessRequestOk { ticket: 1 }));
}
