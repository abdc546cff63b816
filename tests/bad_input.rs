//! Bad input gets the spec's reply code on that connection or channel and harms nobody
//! else: malformed frames, wrong-channel and wrong-side methods, out-of-order content
//! frames, hostile sizes. Driven by a raw client, since no real client sends these.

mod support;

use bytes::{BufMut, BytesMut};
use fedamq::BrokerHandle;
use fedamq::protocol::ShortString;
use fedamq::protocol::generated::methods::*;
use support::{broker, raw};

/// Expects connection.close with `code` on channel 0.
async fn expect_connection_close(c: &mut raw::Client, code: u16) {
    let m = c.expect_method().await;
    assert_eq!(
        m.class_method(),
        (10, 50),
        "expected connection.close, got {}",
        m.1.name()
    );
    assert_eq!(m.reply_code(), code, "{:?}", m.1);
    c.send_close_ok().await;
}

/// Expects channel.close with `code`.
async fn expect_channel_close(c: &mut raw::Client, channel: u16, code: u16) {
    let m = c.expect_method().await;
    assert_eq!(m.0, channel);
    assert_eq!(
        m.class_method(),
        (20, 40),
        "expected channel.close, got {}",
        m.1.name()
    );
    assert_eq!(m.reply_code(), code, "{:?}", m.1);
}

fn frame(t: u8, channel: u16, payload: &[u8], end: u8) -> Vec<u8> {
    let mut b = BytesMut::new();
    b.put_u8(t);
    b.put_u16(channel);
    b.put_u32(payload.len() as u32);
    b.put_slice(payload);
    b.put_u8(end);
    b.to_vec()
}

/// A basic content header announcing `body_size` bytes, with no properties.
fn content_header(body_size: u64) -> Vec<u8> {
    let mut h = BytesMut::new();
    h.put_slice(&[0, 60, 0, 0]);
    h.put_u64(body_size);
    h.put_u16(0);
    h.to_vec()
}

fn method_payload(m: impl Into<Method>) -> Vec<u8> {
    let mut b = BytesMut::new();
    m.into().encode(&mut b);
    b.to_vec()
}

/// Another client keeps working: nothing leaked across connections.
async fn others_unharmed(b: &BrokerHandle) {
    let (_c, ch) = broker::channel(b).await;
    ch.queue_declare(
        "",
        lapin::options::QueueDeclareOptions::default(),
        lapin::types::FieldTable::default(),
    )
    .await
    .expect("another connection still works");
}

#[tokio::test]
async fn bad_frame_end_is_501() {
    let b = broker::start().await;
    let mut c = raw::Client::open(b.local_addr(), 0).await;
    c.send_raw(&frame(1, 0, &method_payload(ChannelOpen {}), 0x00))
        .await;
    expect_connection_close(&mut c, 501).await;
    others_unharmed(&b).await;
    b.shutdown().await;
}

#[tokio::test]
async fn unknown_frame_type_is_501() {
    let b = broker::start().await;
    let mut c = raw::Client::open(b.local_addr(), 0).await;
    c.send_raw(&frame(42, 0, b"", 0xCE)).await;
    expect_connection_close(&mut c, 501).await;
    b.shutdown().await;
}

#[tokio::test]
async fn oversize_frame_is_refused_from_its_header_with_501() {
    let b = broker::start().await;
    let mut c = raw::Client::open(b.local_addr(), 0).await;
    // Only the 7-byte header, announcing 2 GiB: the broker must not wait for (or
    // allocate) the payload.
    c.send_raw(&[1, 0, 1, 0x80, 0, 0, 0]).await;
    expect_connection_close(&mut c, 501).await;
    others_unharmed(&b).await;
    b.shutdown().await;
}

#[tokio::test]
async fn truncated_method_arguments_are_501() {
    let b = broker::start().await;
    let mut c = raw::Client::with_channel(b.local_addr()).await;
    // queue.declare with its arguments cut short.
    c.send_raw(&frame(1, 1, &[0, 50, 0, 10, 0, 0, 200], 0xCE))
        .await;
    expect_connection_close(&mut c, 501).await;
    b.shutdown().await;
}

#[tokio::test]
async fn hostile_table_length_is_501_not_an_allocation() {
    let b = broker::start().await;
    let mut c = raw::Client::with_channel(b.local_addr()).await;
    let mut p = BytesMut::new();
    p.put_slice(&[0, 50, 0, 10]); // queue.declare
    p.put_u16(0); // reserved
    p.put_u8(1);
    p.put_u8(b'q');
    p.put_u8(0); // bits
    p.put_u32(0xFFFF_FFF0); // arguments table "length"
    c.send_raw(&frame(1, 1, &p, 0xCE)).await;
    expect_connection_close(&mut c, 501).await;
    b.shutdown().await;
}

#[tokio::test]
async fn unknown_method_is_503() {
    let b = broker::start().await;
    let mut c = raw::Client::with_channel(b.local_addr()).await;
    c.send_raw(&frame(1, 1, &[0, 60, 0x0F, 0xFF], 0xCE)).await;
    expect_connection_close(&mut c, 503).await;
    b.shutdown().await;
}

#[tokio::test]
async fn a_method_only_servers_send_is_503() {
    let b = broker::start().await;
    let mut c = raw::Client::with_channel(b.local_addr()).await;
    c.send(
        1,
        BasicDeliver {
            consumer_tag: ShortString::from_static("x"),
            ..Default::default()
        },
    )
    .await;
    expect_connection_close(&mut c, 503).await;
    b.shutdown().await;
}

#[tokio::test]
async fn connection_method_on_a_channel_is_503() {
    let b = broker::start().await;
    let mut c = raw::Client::with_channel(b.local_addr()).await;
    c.send(
        1,
        ConnectionOpen {
            virtual_host: ShortString::from_static("/"),
        },
    )
    .await;
    expect_connection_close(&mut c, 503).await;
    b.shutdown().await;
}

#[tokio::test]
async fn method_on_an_unopened_channel_is_504() {
    let b = broker::start().await;
    let mut c = raw::Client::open(b.local_addr(), 0).await;
    c.send(
        7,
        QueueDeclare {
            queue: ShortString::from_static("q"),
            ..Default::default()
        },
    )
    .await;
    expect_connection_close(&mut c, 504).await;
    b.shutdown().await;
}

#[tokio::test]
async fn second_channel_open_is_504() {
    let b = broker::start().await;
    let mut c = raw::Client::with_channel(b.local_addr()).await;
    c.send(1, ChannelOpen {}).await;
    expect_connection_close(&mut c, 504).await;
    b.shutdown().await;
}

#[tokio::test]
async fn header_frame_without_a_method_is_505() {
    let b = broker::start().await;
    let mut c = raw::Client::with_channel(b.local_addr()).await;
    c.send_raw(&frame(2, 1, &content_header(3), 0xCE)).await;
    expect_connection_close(&mut c, 505).await;
    b.shutdown().await;
}

#[tokio::test]
async fn body_frame_past_the_declared_size_is_501() {
    let b = broker::start().await;
    let mut c = raw::Client::with_channel(b.local_addr()).await;
    c.send(
        1,
        BasicPublish {
            routing_key: ShortString::from_static("q"),
            ..Default::default()
        },
    )
    .await;
    c.send_raw(&frame(2, 1, &content_header(3), 0xCE)).await;
    c.send_raw(&frame(3, 1, b"too long", 0xCE)).await;
    expect_connection_close(&mut c, 501).await;
    b.shutdown().await;
}

#[tokio::test]
async fn a_method_in_the_middle_of_content_is_505() {
    let b = broker::start().await;
    let mut c = raw::Client::with_channel(b.local_addr()).await;
    c.send(
        1,
        BasicPublish {
            routing_key: ShortString::from_static("q"),
            ..Default::default()
        },
    )
    .await;
    c.send(
        1,
        QueueDeclare {
            queue: ShortString::from_static("q"),
            ..Default::default()
        },
    )
    .await;
    expect_connection_close(&mut c, 505).await;
    b.shutdown().await;
}

#[tokio::test]
async fn a_body_over_the_configured_maximum_closes_only_the_channel_with_406() {
    let config = fedamq::config::Config {
        max_message_size: 1024,
        ..Default::default()
    };
    let b = broker::start_with(config).await;
    let mut c = raw::Client::with_channel(b.local_addr()).await;
    c.send(
        1,
        BasicPublish {
            routing_key: ShortString::from_static("q"),
            ..Default::default()
        },
    )
    .await;
    c.send_raw(&frame(2, 1, &content_header(1 << 30), 0xCE))
        .await;
    expect_channel_close(&mut c, 1, 406).await;
    c.send(1, ChannelCloseOk {}).await;
    // The connection is still usable.
    c.send(2, ChannelOpen {}).await;
    assert_eq!(c.expect_method().await.class_method(), (20, 11));
    b.shutdown().await;
}

#[tokio::test]
async fn channel_above_channel_max_is_refused() {
    let b = broker::start().await;
    let mut c = raw::Client::open(b.local_addr(), 0).await;
    c.send(u16::MAX, ChannelOpen {}).await;
    expect_connection_close(&mut c, 530).await;
    b.shutdown().await;
}

#[tokio::test]
async fn garbage_after_the_handshake_never_hurts_others() {
    let b = broker::start().await;
    for seed in 0u8..20 {
        let mut c = raw::Client::open(b.local_addr(), 0).await;
        let junk: Vec<u8> = (0..512u32)
            .map(|i| (i as u8).wrapping_mul(seed).wrapping_add(seed))
            .collect();
        c.send_raw(&junk).await;
        drop(c);
    }
    others_unharmed(&b).await;
    b.shutdown().await;
}
