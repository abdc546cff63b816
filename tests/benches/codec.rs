//! The codec's cost per message: a publish (basic.publish method frame + content header +
//! one 16-byte body frame) and a deliver, decoded from bytes and encoded back to bytes.
//!
//! Messages are decoded from a buffer holding a thousand of them, as a socket read
//! delivers them, and figures are per message. Decoding runs the connection's receive
//! path short of dispatch: frame checks, the method decoded where it lies in the buffer,
//! the content header decoded and its properties checked and indexed
//! ([`EncodedBasicProperties`], the form a message keeps), the body split off. Encoding
//! writes the three frames into a reused buffer, as a connection's writer does, with the
//! properties' bytes copied through as a delivery sends them.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use fedamq::protocol::ShortString;
use fedamq::protocol::content::ContentHeader;
use fedamq::protocol::frame::{
    FrameDecoder, FrameType, encode_frame, encode_frame_with, take_payload,
};
use fedamq::protocol::generated::constants::{FRAME_BODY, FRAME_HEADER, FRAME_METHOD};
use fedamq::protocol::generated::methods::{BasicDeliver, BasicPublish, Method};
use fedamq::protocol::generated::properties::{BasicProperties, EncodedBasicProperties};
use std::hint::black_box;

const BODY: &[u8; 16] = b"0123456789abcdef";

fn props() -> BasicProperties {
    BasicProperties {
        content_type: Some(ShortString::from_static("application/octet-stream")),
        delivery_mode: Some(2),
        ..Default::default()
    }
}

fn publish() -> Method {
    Method::BasicPublish(BasicPublish {
        exchange: ShortString::from_static("amq.direct"),
        routing_key: ShortString::from_static("bench.queue"),
        mandatory: false,
        immediate: false,
    })
}

fn deliver() -> Method {
    Method::BasicDeliver(BasicDeliver {
        consumer_tag: ShortString::from_static("amq.ctag-0123456789abcdef"),
        delivery_tag: 123_456,
        redelivered: false,
        exchange: ShortString::from_static("amq.direct"),
        routing_key: ShortString::from_static("bench.queue"),
    })
}

/// Writes the three frames of one message.
fn encode_message(
    buf: &mut BytesMut,
    method: &Method,
    props: &EncodedBasicProperties,
    body: &[u8],
) {
    encode_frame_with(buf, FRAME_METHOD, 1, |b| method.encode(b));
    encode_frame_with(buf, FRAME_HEADER, 1, |b| {
        ContentHeader::encode_prefix(b, BasicProperties::CLASS_ID, body.len() as u64);
        b.put_slice(props.as_bytes());
    });
    encode_frame(buf, FRAME_BODY, 1, body);
}

/// Reads the three frames of one message back into values, as a connection does
/// (`Connection::process_input`): each frame found with `peek`; the method decoded where
/// it lies in the read buffer; header and body split off as `Bytes` with `take_payload`
/// (the broker keeps both with the message).
fn decode_message(
    decoder: &mut FrameDecoder,
    buf: &mut BytesMut,
) -> (Method, EncodedBasicProperties, Bytes) {
    let frame = decoder.peek(buf).unwrap().expect("a whole frame");
    assert_eq!(frame.frame_type, FrameType::Method);
    let method = Method::decode(frame.payload).unwrap();
    let wire_len = frame.wire_len();
    buf.advance(wire_len);

    let frame = decoder.peek(buf).unwrap().expect("a whole frame");
    assert_eq!(frame.frame_type, FrameType::Header);
    let len = frame.payload.len();
    let header = ContentHeader::decode(take_payload(buf, len)).unwrap();
    let props = EncodedBasicProperties::decode(header.properties).unwrap();

    let frame = decoder.peek(buf).unwrap().expect("a whole frame");
    assert_eq!(frame.frame_type, FrameType::Body);
    let len = frame.payload.len();
    let body = take_payload(buf, len);
    (method, props, body)
}

/// Messages per batch: a socket read hands the decoder many frames at once, as here.
const BATCH: usize = 1000;

fn bench(c: &mut Criterion) {
    let props = EncodedBasicProperties::encode(&props());
    for (name, method) in [("publish", publish()), ("deliver", deliver())] {
        let mut wire = BytesMut::new();
        for _ in 0..BATCH {
            encode_message(&mut wire, &method, &props, BODY);
        }
        let wire = wire.freeze();

        let mut group = c.benchmark_group(name);
        // Reported per message.
        group.throughput(Throughput::Elements(BATCH as u64));

        group.bench_function("decode", |b| {
            let mut decoder = FrameDecoder::new(131_072);
            b.iter_batched_ref(
                || BytesMut::from(&wire[..]),
                |buf| {
                    for _ in 0..BATCH {
                        black_box(decode_message(&mut decoder, buf));
                    }
                },
                criterion::BatchSize::LargeInput,
            )
        });

        group.bench_function("encode", |b| {
            let mut out = BytesMut::with_capacity(wire.len());
            b.iter(|| {
                out.clear();
                for _ in 0..BATCH {
                    encode_message(
                        &mut out,
                        black_box(&method),
                        black_box(&props),
                        black_box(BODY),
                    );
                }
                black_box(out.len())
            })
        });

        // The per-message target: bytes in -> values -> bytes out.
        group.bench_function("decode+encode", |b| {
            let mut decoder = FrameDecoder::new(131_072);
            let mut out = BytesMut::with_capacity(wire.len());
            b.iter_batched_ref(
                || BytesMut::from(&wire[..]),
                |buf| {
                    out.clear();
                    for _ in 0..BATCH {
                        let (m, p, body) = decode_message(&mut decoder, buf);
                        encode_message(&mut out, &m, &p, &body);
                    }
                    black_box(out.len())
                },
                criterion::BatchSize::LargeInput,
            )
        });
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
