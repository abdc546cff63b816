//! Feeds arbitrary bytes through the receive path: frame split, method decode, content
//! assembly, content header and properties (checked and indexed, and fully decoded, and
//! the two must agree). Any panic is a bug.

#![no_main]

use bytes::BytesMut;
use fedamq::protocol::content::{ContentAssembler, ContentHeader};
use fedamq::protocol::frame::{FrameDecoder, FramePayload};
use fedamq::protocol::generated::methods::Method;
use fedamq::protocol::generated::properties::{BasicProperties, EncodedBasicProperties};
use libfuzzer_sys::fuzz_target;

/// Both property decoders accept the same input, and agree on what it says.
fn properties(raw: bytes::Bytes) {
    let full = BasicProperties::decode_bytes(&raw);
    let checked = EncodedBasicProperties::decode(raw);
    assert_eq!(full.is_ok(), checked.is_ok());
    if let (Ok(full), Ok(checked)) = (full, checked) {
        // Compared as bytes: a NaN in the headers is not equal to itself.
        let (mut a, mut b) = (bytes::BytesMut::new(), bytes::BytesMut::new());
        checked.to_properties().encode(&mut a);
        full.encode(&mut b);
        assert_eq!(a, b);
    }
}

fuzz_target!(|data: &[u8]| {
    // As a stream of frames, with a small frame_max so oversize paths run too.
    let mut buf = BytesMut::from(data);
    let mut frames = FrameDecoder::new(4096);
    let mut content: ContentAssembler<Method> = ContentAssembler::with_max_body_size(1 << 16);
    while let Ok(Some(frame)) = frames.decode(&mut buf) {
        match frame.payload {
            FramePayload::Method(p) => {
                if let Ok(m) = Method::decode(&p) {
                    if m.info().has_content {
                        let _ = content.start(m.class_id(), m);
                    } else {
                        let _ = content.method_frame();
                    }
                }
            }
            FramePayload::Header(p) => {
                if let Ok(Some(done)) = content.header(p.clone()) {
                    properties(done.header.properties);
                }
                if let Ok(h) = ContentHeader::decode(p) {
                    properties(h.properties);
                }
            }
            FramePayload::Body(p) => {
                let _ = content.body(p);
            }
            FramePayload::Heartbeat => {}
        }
    }
    // And the whole input as one method payload and as one properties block.
    let bytes = bytes::Bytes::copy_from_slice(data);
    let _ = Method::decode(data);
    properties(bytes);
});
