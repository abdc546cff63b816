//! Clients that stop reading their socket. Whatever would pile up for them (returns of
//! mandatory messages, deliveries to a consumer without a prefetch limit, publisher
//! confirms), the broker holds a bounded amount, counted in its memory gauge: past it,
//! it stops reading that client (its publishes wait in TCP) and its queues hand that
//! client's consumers nothing more (the messages stay queued). Other clients go on
//! meanwhile, and once the client reads again everything arrives.
//!
//! The figures asserted on are the broker's own: the bytes it holds for the connection
//! and its memory gauge, watched while the client does not read.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::BytesMut;
use fedamq::BrokerHandle;
use fedamq::broker::connections::ConnectionInfo;
use fedamq::broker::credit::PendingBytes;
use fedamq::protocol::ShortString;
use fedamq::protocol::frame::encode_frame_with;
use fedamq::protocol::generated::methods::{
    BasicAck, BasicConsume, BasicPublish, ConfirmSelect, Method, QueueDeclare,
};
use futures_lite::StreamExt;
use lapin::BasicProperties;
use lapin::options::*;
use lapin::types::FieldTable;
use support::broker;
use support::raw::{self, MethodFrame};
use tokio::io::AsyncWriteExt;
use tokio::task::JoinHandle;

/// What the broker may hold for a client that does not read: the mark at which it stops,
/// plus what one read of the client's input and one batch of deliveries can add.
const BOUND: usize = PendingBytes::HIGH_WATER + (1 << 20);

/// Bodies of the messages that pile up.
const BODY: usize = 64 * 1024;

/// The only open connection (the stuck client, connected first).
fn only_connection(b: &BrokerHandle) -> Arc<ConnectionInfo> {
    let all = b.broker().connections().list();
    assert_eq!(all.len(), 1);
    all[0].clone()
}

/// The highest figures seen while watching a connection.
struct Peaks {
    stop: Arc<AtomicBool>,
    task: JoinHandle<(usize, u64)>,
}

impl Peaks {
    /// Samples the bytes held for `conn` and the broker's memory gauge until stopped.
    fn watch(b: &BrokerHandle, conn: Arc<ConnectionInfo>) -> Peaks {
        let stop = Arc::new(AtomicBool::new(false));
        let broker = b.broker().clone();
        let stopped = stop.clone();
        let task = tokio::spawn(async move {
            let (mut held, mut memory) = (0, 0);
            while !stopped.load(Ordering::Relaxed) {
                held = held.max(conn.pending_bytes());
                memory = memory.max(broker.memory().used());
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            (held, memory)
        });
        Peaks { stop, task }
    }

    /// The peak bytes held for the connection, and the peak of the gauge.
    async fn stop(self) -> (usize, u64) {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap()
    }
}

/// Waits until the broker holds as much as it will for `conn` (it stopped taking more,
/// or, without back-pressure, goes on past it), or everything is `sent`, then watches a
/// little longer while other clients work.
async fn let_it_pile_up(b: &BrokerHandle, conn: &ConnectionInfo, sent: impl Fn() -> bool) {
    while conn.pending_bytes() < PendingBytes::HIGH_WATER && !sent() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    others_go_on(b).await;
    // How long to watch, not something asserted: with back-pressure the figures stay
    // bounded however long this is; without, they pass the bound (which ends it early).
    let watched = tokio::time::Instant::now();
    while watched.elapsed() < Duration::from_secs(1) && conn.pending_bytes() <= BOUND && !sent() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Another client publishes with confirms and consumes, unaffected by the stuck one.
async fn others_go_on(b: &BrokerHandle) {
    const N: usize = 200;
    let (_conn, ch) = broker::channel(b).await;
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
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let mut consumer = ch
        .basic_consume(
            q.name().as_str(),
            "other",
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    for i in 0..N {
        let confirm = ch
            .basic_publish(
                "",
                q.name().as_str(),
                BasicPublishOptions::default(),
                format!("m{i}").as_bytes(),
                BasicProperties::default(),
            )
            .await
            .unwrap()
            .await
            .unwrap();
        assert!(confirm.is_ack());
        let d = consumer.next().await.unwrap().unwrap();
        assert_eq!(d.data, format!("m{i}").as_bytes());
        d.ack(BasicAckOptions::default()).await.unwrap();
    }
}

/// Reads method frames (the client reading again) until `done` says so.
async fn read_until(reader: &mut raw::Reader, mut done: impl FnMut(MethodFrame) -> bool) {
    tokio::time::timeout(Duration::from_secs(120), async {
        loop {
            let m = reader
                .next_method()
                .await
                .expect("the broker keeps the connection");
            if done(m) {
                return;
            }
        }
    })
    .await
    .expect("everything arrives once the client reads");
}

/// Waits until the broker holds nothing for `conn`.
async fn drained(conn: &ConnectionInfo) {
    tokio::time::timeout(Duration::from_secs(30), async {
        while conn.pending_bytes() != 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("held bytes go once written");
}

fn assert_bounded(what: &str, (held, memory): (usize, u64)) {
    eprintln!("{what}: held at most {held} bytes, gauge at most {memory}");
    assert!(
        held <= BOUND,
        "{what}: the broker held {held} bytes for a client that does not read (bound {BOUND})"
    );
    assert!(
        memory >= PendingBytes::HIGH_WATER as u64,
        "{what}: the bytes held ({held}) are counted in the memory gauge (peak {memory})"
    );
}

/// Mandatory messages that route nowhere come back as basic.return; a client that
/// publishes them without reading is stopped being read, instead of its returns piling
/// up in the broker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn returns_to_a_client_that_does_not_read_stop_its_reading() {
    const N: usize = 1024;
    let b = broker::start().await;
    let mut stuck = raw::Client::open_small_window(b.local_addr()).await;
    stuck.open_channel(1).await;
    let conn = only_connection(&b);
    let (mut reader, mut write) = stuck.split();
    let publishing = tokio::spawn(async move {
        let body = vec![1u8; BODY];
        for _ in 0..N {
            let mut out = BytesMut::new();
            let m = BasicPublish {
                routing_key: ShortString::from_static("nowhere"),
                mandatory: true,
                ..Default::default()
            };
            raw::encode_publish_with(&mut out, 1, m, &body);
            write.write_all(&out).await.unwrap();
        }
        write
    });

    let peaks = Peaks::watch(&b, conn.clone());
    let_it_pile_up(&b, &conn, || publishing.is_finished()).await;
    assert_bounded("returns", peaks.stop().await);

    let mut returned = 0;
    read_until(&mut reader, |m| {
        if let Method::BasicReturn(r) = m.1 {
            assert_eq!(r.reply_code, 312);
            returned += 1;
        }
        returned == N
    })
    .await;
    let _write = publishing.await.unwrap();
    drained(&conn).await;
    b.shutdown().await;
}

/// A consumer that acks but set no prefetch limit (the AMQP default) and stops reading:
/// its queue stops handing it deliveries, which stay queued, instead of copying them
/// all into its connection's outgoing buffer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_to_a_consumer_without_prefetch_that_does_not_read_stay_queued() {
    const N: usize = 1024;
    let b = broker::start().await;
    let mut stuck = raw::Client::open_small_window(b.local_addr()).await;
    stuck.open_channel(1).await;
    let queue = ShortString::from_static("held");
    stuck
        .send(
            1,
            QueueDeclare {
                queue: queue.clone(),
                ..Default::default()
            },
        )
        .await;
    assert_eq!(stuck.expect_method().await.class_method(), (50, 11));
    stuck
        .send(
            1,
            BasicConsume {
                queue: queue.clone(),
                consumer_tag: ShortString::from_static("stuck"),
                ..Default::default()
            },
        )
        .await;
    assert_eq!(stuck.expect_method().await.class_method(), (60, 21));
    let conn = only_connection(&b);
    let (mut reader, mut write) = stuck.split();

    let peaks = Peaks::watch(&b, conn.clone());
    let publishing = tokio::spawn({
        let (publisher, ch) = broker::channel(&b).await;
        async move {
            ch.confirm_select(ConfirmSelectOptions::default())
                .await
                .unwrap();
            let body = vec![2u8; BODY];
            let mut confirms = Vec::new();
            for _ in 0..N {
                let confirm = ch
                    .basic_publish(
                        "",
                        "held",
                        BasicPublishOptions::default(),
                        &body,
                        BasicProperties::default(),
                    )
                    .await
                    .unwrap();
                confirms.push(confirm);
            }
            for c in confirms {
                assert!(c.await.unwrap().is_ack());
            }
            (publisher, ch)
        }
    });
    // Every message is in the broker (confirmed) before watching ends.
    while !publishing.is_finished() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let (_publisher, ch) = publishing.await.unwrap();
    let_it_pile_up(&b, &conn, || true).await;
    assert_bounded("deliveries", peaks.stop().await);
    let queued = ch
        .queue_declare(
            "held",
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap()
        .message_count() as usize;
    // What the broker held, and what the kernel's socket buffers took, left the queue.
    assert!(
        queued >= N - 2 * BOUND / BODY,
        "only {queued} of {N} messages stayed queued"
    );

    let mut delivered = 0;
    let mut last_tag = 0;
    read_until(&mut reader, |m| {
        if let Method::BasicDeliver(d) = m.1 {
            assert!(!d.redelivered);
            delivered += 1;
            last_tag = d.delivery_tag;
        }
        delivered == N
    })
    .await;
    let mut out = BytesMut::new();
    let ack = Method::from(BasicAck {
        delivery_tag: last_tag,
        multiple: true,
    });
    encode_frame_with(&mut out, 1, 1, |b| ack.encode(b));
    write.write_all(&out).await.unwrap();
    drained(&conn).await;
    b.shutdown().await;
}

/// Publisher confirms for a client that publishes without reading: with many channels,
/// each read of its publishes makes an ack per channel. The client stops being read
/// instead of the acks piling up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confirms_to_a_client_that_does_not_read_stop_its_reading() {
    const CHANNELS: u16 = 1000;
    const ROUNDS: u64 = 1000;
    let b = broker::start().await;
    let mut stuck = raw::Client::open_small_window(b.local_addr()).await;
    for ch in 1..=CHANNELS {
        stuck.open_channel(ch).await;
        stuck.send(ch, ConfirmSelect { nowait: false }).await;
        assert_eq!(stuck.expect_method().await.class_method(), (85, 11));
    }
    let conn = only_connection(&b);
    let (mut reader, mut write) = stuck.split();
    let publishing = tokio::spawn(async move {
        // One publish of an empty message on each channel per write; unroutable (and
        // not mandatory), so dropped, and acked.
        let m = Method::from(BasicPublish {
            routing_key: ShortString::from_static("x"),
            ..Default::default()
        });
        for _ in 0..ROUNDS {
            let mut out = BytesMut::new();
            for ch in 1..=CHANNELS {
                encode_frame_with(&mut out, 1, ch, |b| m.encode(b));
                encode_frame_with(&mut out, 2, ch, |b| {
                    fedamq::protocol::content::ContentHeader::encode_prefix(b, 60, 0);
                    fedamq::protocol::generated::properties::BasicProperties::default().encode(b);
                });
            }
            write.write_all(&out).await.unwrap();
        }
        write
    });

    let peaks = Peaks::watch(&b, conn.clone());
    let_it_pile_up(&b, &conn, || publishing.is_finished()).await;
    assert_bounded("confirms", peaks.stop().await);

    let mut acked = vec![0u64; usize::from(CHANNELS) + 1];
    let mut complete = 0;
    read_until(&mut reader, |MethodFrame(ch, m)| {
        if let Method::BasicAck(a) = m {
            let last = &mut acked[usize::from(ch)];
            assert!(a.delivery_tag > *last);
            *last = a.delivery_tag;
            if a.delivery_tag == ROUNDS {
                complete += 1;
            }
        }
        complete == CHANNELS
    })
    .await;
    let _write = publishing.await.unwrap();
    drained(&conn).await;
    b.shutdown().await;
}
