//! The frame layer: cutting the byte stream into frames and writing frames back out.
//!
//! A frame is `type:u8 channel:u16 size:u32 payload[size] frame-end:u8(0xCE)`. Decoding
//! splits each payload off the read buffer as [`Bytes`], so method fields and message
//! bodies are never copied on the way in. The frame-max limit is enforced from the 7-octet
//! header alone, before the payload arrives, so a peer cannot make us buffer more than
//! one frame-max of data by announcing a huge frame. No I/O here: the connection feeds
//! whatever it read into a [`BytesMut`] and calls [`FrameDecoder::decode`] in a loop.

use std::fmt;

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::DecodeError;
use super::generated::constants::{
    FRAME_BODY, FRAME_END, FRAME_HEADER, FRAME_HEARTBEAT, FRAME_METHOD, FRAME_MIN_SIZE,
};

/// Type octet, channel and size: what precedes every payload.
pub const FRAME_HEADER_SIZE: usize = 7;

/// Octets a frame adds around its payload (header plus frame-end). The spec's frame-max
/// counts them, so the largest payload is frame-max less this.
pub const FRAME_OVERHEAD: u32 = 8;

/// The four frame types 0-9-1 defines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum FrameType {
    Method = FRAME_METHOD,
    Header = FRAME_HEADER,
    Body = FRAME_BODY,
    Heartbeat = FRAME_HEARTBEAT,
}

impl FrameType {
    pub const fn from_u8(b: u8) -> Option<Self> {
        match b {
            FRAME_METHOD => Some(Self::Method),
            FRAME_HEADER => Some(Self::Header),
            FRAME_BODY => Some(Self::Body),
            FRAME_HEARTBEAT => Some(Self::Heartbeat),
            _ => None,
        }
    }

    pub const fn as_u8(self) -> u8 {
        self as u8
    }

    /// What the frame is called in error texts ("expected content header frame, ...").
    pub const fn name(self) -> &'static str {
        match self {
            Self::Method => "method",
            Self::Header => "content header",
            Self::Body => "content body",
            Self::Heartbeat => "heartbeat",
        }
    }
}

impl TryFrom<u8> for FrameType {
    type Error = DecodeError;
    fn try_from(b: u8) -> Result<Self, DecodeError> {
        Self::from_u8(b).ok_or(DecodeError::UnknownFrameType(b))
    }
}

impl fmt::Display for FrameType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A frame's payload, still undecoded: method and header payloads are decoded by the
/// generated code, bodies are kept as they are.
#[derive(Debug, Clone, PartialEq)]
pub enum FramePayload {
    Method(Bytes),
    Header(Bytes),
    Body(Bytes),
    Heartbeat,
}

impl FramePayload {
    pub fn frame_type(&self) -> FrameType {
        match self {
            Self::Method(_) => FrameType::Method,
            Self::Header(_) => FrameType::Header,
            Self::Body(_) => FrameType::Body,
            Self::Heartbeat => FrameType::Heartbeat,
        }
    }

    /// The payload octets (empty for a heartbeat).
    pub fn bytes(&self) -> &[u8] {
        match self {
            Self::Method(b) | Self::Header(b) | Self::Body(b) => b,
            Self::Heartbeat => &[],
        }
    }
}

/// One decoded frame.
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    pub channel: u16,
    pub payload: FramePayload,
}

impl Frame {
    pub fn frame_type(&self) -> FrameType {
        self.payload.frame_type()
    }

    /// Writes the frame as [`FrameDecoder::decode`] would read it.
    pub fn encode(&self, buf: &mut BytesMut) {
        encode_frame(
            buf,
            self.frame_type().as_u8(),
            self.channel,
            self.payload.bytes(),
        );
    }
}

/// Cuts frames off the front of a read buffer, enforcing the negotiated frame-max.
#[derive(Debug, Clone)]
pub struct FrameDecoder {
    /// Whole-frame limit including the 8 octets of overhead, as the spec defines
    /// frame-max; 0 means no limit.
    max_frame_size: u32,
}

impl Default for FrameDecoder {
    /// Until connection.tune-ok settles frame-max, the spec only obliges peers to accept
    /// frames of frame-min-size.
    fn default() -> Self {
        Self::new(FRAME_MIN_SIZE)
    }
}

impl FrameDecoder {
    /// `max` is frame-max as negotiated (whole frame, overhead included); 0 means no limit.
    pub fn new(max: u32) -> Self {
        Self {
            max_frame_size: max,
        }
    }

    /// For after connection.tune-ok.
    pub fn set_max_frame_size(&mut self, max: u32) {
        self.max_frame_size = max;
    }

    pub fn max_frame_size(&self) -> u32 {
        self.max_frame_size
    }

    /// The largest acceptable payload, `None` when unlimited.
    fn max_payload(&self) -> Option<u32> {
        match self.max_frame_size {
            0 => None,
            max => Some(max.saturating_sub(FRAME_OVERHEAD)),
        }
    }

    /// Takes one whole frame off the front of `buf` if one is there; `Ok(None)` means
    /// "need more bytes". The checks are [`peek`](Self::peek)'s. The payload is split off
    /// as [`Bytes`], no copy.
    ///
    /// On `Err` the buffer is left as it was. Every error here means the stream can no
    /// longer be trusted to be in sync, so the connection must be closed
    /// ([`DecodeError::reply_code`] gives 501 frame-error for all of them).
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, DecodeError> {
        let Some(head) = self.peek(buf)? else {
            return Ok(None);
        };
        let (frame_type, channel, payload_len) =
            (head.frame_type, head.channel, head.payload.len());
        let payload = take_payload(buf, payload_len);
        let payload = match frame_type {
            FrameType::Method => FramePayload::Method(payload),
            FrameType::Header => FramePayload::Header(payload),
            FrameType::Body => FramePayload::Body(payload),
            FrameType::Heartbeat => FramePayload::Heartbeat,
        };
        Ok(Some(Frame { channel, payload }))
    }

    /// Finds the whole frame at the front of `buf`, if one is there, without taking it
    /// off: `Ok(None)` means "need more bytes". Oversize (checked from the header alone,
    /// before the payload arrives), bad frame-end octet, unknown type -> `Err`.
    ///
    /// This is for payloads decoded where they lie (method frames): no split, so no
    /// reference count to update. Afterwards the caller drops the frame with
    /// `buf.advance(frame.wire_len())`, or takes its payload with [`take_payload`].
    pub fn peek<'a>(&self, buf: &'a [u8]) -> Result<Option<FrameRef<'a>>, DecodeError> {
        let Some(&[type_octet, c0, c1, s0, s1, s2, s3]) = buf.get(..FRAME_HEADER_SIZE) else {
            return Ok(None);
        };
        let frame_type = FrameType::try_from(type_octet)?;
        let channel = u16::from_be_bytes([c0, c1]);
        let size = u32::from_be_bytes([s0, s1, s2, s3]);

        if frame_type == FrameType::Heartbeat && size != 0 {
            return Err(DecodeError::HeartbeatPayload(size));
        }
        if let Some(max) = self.max_payload() {
            if size > max {
                return Err(DecodeError::FrameTooLarge { size, max });
            }
        }
        // Only fails where usize is narrower than 36 bits, and there such a frame could
        // never be buffered anyway.
        let too_large = DecodeError::FrameTooLarge {
            size,
            max: u32::MAX - FRAME_OVERHEAD,
        };
        let payload_len = usize::try_from(size).map_err(|_| too_large.clone())?;
        let total = payload_len
            .checked_add(FRAME_HEADER_SIZE + 1)
            .ok_or(too_large)?;

        // `total >= 8`, so `total - 1` does not wrap; `get` is None until it has arrived.
        let Some(&end) = buf.get(total - 1) else {
            return Ok(None);
        };
        if end != FRAME_END {
            return Err(DecodeError::BadFrameEnd(end));
        }
        Ok(buf
            .get(FRAME_HEADER_SIZE..total - 1)
            .map(|payload| FrameRef {
                frame_type,
                channel,
                payload,
            }))
    }
}

/// A whole frame at the front of a read buffer, found by [`FrameDecoder::peek`] and not
/// yet taken off it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameRef<'a> {
    pub frame_type: FrameType,
    pub channel: u16,
    pub payload: &'a [u8],
}

impl FrameRef<'_> {
    /// Octets the frame occupies in the buffer: header, payload, frame-end.
    pub fn wire_len(&self) -> usize {
        self.payload.len() + FRAME_HEADER_SIZE + 1
    }
}

/// Takes the frame [`FrameDecoder::peek`] found, of `payload_len` payload octets, off the
/// front of `buf` and returns its payload, without copying. One split per frame: each
/// split of a shared buffer costs an atomic reference-count update, so the header and
/// frame-end are skipped rather than split off.
///
/// # Panics
/// If `buf` does not hold `payload_len + 8` octets: call it only for a peeked frame.
pub fn take_payload(buf: &mut BytesMut, payload_len: usize) -> Bytes {
    buf.advance(FRAME_HEADER_SIZE);
    let payload = buf.split_to(payload_len).freeze();
    buf.advance(1);
    payload
}

/// Payloads are bounded by frame-max, a u32; a longer slice is a caller bug, and
/// saturating keeps encoding infallible rather than panicking.
fn size_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Writes one frame. Keeping `payload` within the peer's frame-max is the caller's job.
pub fn encode_frame(buf: &mut BytesMut, frame_type: u8, channel: u16, payload: &[u8]) {
    buf.reserve(payload.len() + FRAME_HEADER_SIZE + 1);
    buf.put_u8(frame_type);
    buf.put_u16(channel);
    buf.put_u32(size_u32(payload.len()));
    buf.put_slice(payload);
    buf.put_u8(FRAME_END);
}

/// Heartbeats are always on channel 0 with an empty payload.
pub fn encode_heartbeat(buf: &mut BytesMut) {
    encode_frame(buf, FRAME_HEARTBEAT, 0, &[]);
}

/// Writes a frame whose payload `write_payload` appends to `buf` directly: the 7-octet
/// header goes in first with a zero size, the payload is written after it, then the size
/// is patched and frame-end appended. Saves encoding methods into a scratch buffer and
/// copying. `write_payload` must only append.
pub fn encode_frame_with(
    buf: &mut BytesMut,
    frame_type: u8,
    channel: u16,
    write_payload: impl FnOnce(&mut BytesMut),
) {
    let start = buf.len();
    buf.put_u8(frame_type);
    buf.put_u16(channel);
    buf.put_u32(0);
    let payload_start = buf.len();
    write_payload(buf);
    let size = size_u32(buf.len().saturating_sub(payload_start));
    if let Some(slot) = buf.get_mut(start + 3..payload_start) {
        slot.copy_from_slice(&size.to_be_bytes());
    }
    buf.put_u8(FRAME_END);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn frame_bytes(t: u8, channel: u16, payload: &[u8]) -> BytesMut {
        let mut b = BytesMut::new();
        encode_frame(&mut b, t, channel, payload);
        b
    }

    #[test]
    fn frame_type_octets() {
        assert_eq!(FrameType::Method.as_u8(), 1);
        assert_eq!(FrameType::Header.as_u8(), 2);
        assert_eq!(FrameType::Body.as_u8(), 3);
        assert_eq!(FrameType::Heartbeat.as_u8(), 8);
        for t in [
            FrameType::Method,
            FrameType::Header,
            FrameType::Body,
            FrameType::Heartbeat,
        ] {
            assert_eq!(FrameType::from_u8(t.as_u8()), Some(t));
            assert_eq!(FrameType::try_from(t.as_u8()), Ok(t));
        }
        for b in [0u8, 4, 5, 6, 7, 9, b'A', 0xce, 0xff] {
            assert_eq!(FrameType::from_u8(b), None);
            assert_eq!(
                FrameType::try_from(b),
                Err(DecodeError::UnknownFrameType(b))
            );
        }
        assert_eq!(FrameType::Header.to_string(), "content header");
    }

    #[test]
    fn encode_known_bytes() {
        let b = frame_bytes(FRAME_METHOD, 0x0102, b"\x00\x0a\x00\x0b");
        assert_eq!(&b[..], b"\x01\x01\x02\x00\x00\x00\x04\x00\x0a\x00\x0b\xce");
        let mut h = BytesMut::new();
        encode_heartbeat(&mut h);
        assert_eq!(&h[..], b"\x08\x00\x00\x00\x00\x00\x00\xce");
    }

    #[test]
    fn decodes_each_type() {
        let mut d = FrameDecoder::new(4096);
        for (t, expect) in [
            (FRAME_METHOD, FramePayload::Method(Bytes::from_static(b"m"))),
            (FRAME_HEADER, FramePayload::Header(Bytes::from_static(b"h"))),
            (FRAME_BODY, FramePayload::Body(Bytes::from_static(b"b"))),
        ] {
            let mut buf = frame_bytes(t, 7, expect.bytes());
            let f = d.decode(&mut buf).unwrap().unwrap();
            assert_eq!(f.channel, 7);
            assert_eq!(f.payload, expect);
            assert_eq!(f.frame_type().as_u8(), t);
            assert!(buf.is_empty());
        }
        let mut buf = BytesMut::new();
        encode_heartbeat(&mut buf);
        let f = d.decode(&mut buf).unwrap().unwrap();
        assert_eq!(
            f,
            Frame {
                channel: 0,
                payload: FramePayload::Heartbeat
            }
        );
        assert_eq!(f.payload.bytes(), b"");
    }

    #[test]
    fn empty_payloads() {
        let mut d = FrameDecoder::default();
        let mut buf = frame_bytes(FRAME_BODY, 1, b"");
        assert_eq!(
            d.decode(&mut buf),
            Ok(Some(Frame {
                channel: 1,
                payload: FramePayload::Body(Bytes::new())
            }))
        );
    }

    #[test]
    fn split_across_reads() {
        let whole = frame_bytes(FRAME_METHOD, 3, b"hello world");
        let mut d = FrameDecoder::new(4096);
        let mut buf = BytesMut::new();
        for (i, byte) in whole.iter().enumerate() {
            assert_eq!(d.decode(&mut buf), Ok(None), "after {i} octets");
            assert_eq!(buf.len(), i, "nothing consumed while incomplete");
            buf.put_u8(*byte);
        }
        let f = d.decode(&mut buf).unwrap().unwrap();
        assert_eq!(
            f.payload,
            FramePayload::Method(Bytes::from_static(b"hello world"))
        );
        assert!(buf.is_empty());
        assert_eq!(d.decode(&mut buf), Ok(None));
    }

    #[test]
    fn several_frames_in_one_read() {
        let mut buf = frame_bytes(FRAME_METHOD, 1, b"a");
        buf.extend_from_slice(&frame_bytes(FRAME_HEADER, 1, b"bb"));
        buf.extend_from_slice(&frame_bytes(FRAME_BODY, 1, b"ccc"));
        buf.extend_from_slice(&frame_bytes(FRAME_BODY, 1, b"dddd")[..5]);
        let mut d = FrameDecoder::new(0);
        let mut got = vec![];
        while let Some(f) = d.decode(&mut buf).unwrap() {
            got.push(f.payload);
        }
        assert_eq!(
            got,
            [
                FramePayload::Method(Bytes::from_static(b"a")),
                FramePayload::Header(Bytes::from_static(b"bb")),
                FramePayload::Body(Bytes::from_static(b"ccc")),
            ]
        );
        assert_eq!(buf.len(), 5, "the partial fourth frame stays buffered");
    }

    #[test]
    fn payload_is_not_copied() {
        let mut buf = frame_bytes(FRAME_BODY, 1, b"zero copy body");
        let payload_addr = buf[FRAME_HEADER_SIZE..].as_ptr();
        let f = FrameDecoder::new(0).decode(&mut buf).unwrap().unwrap();
        let FramePayload::Body(b) = f.payload else {
            panic!("not a body")
        };
        assert_eq!(b.as_ptr(), payload_addr);
    }

    #[test]
    fn oversize_rejected_from_header_alone() {
        let mut d = FrameDecoder::new(4096);
        // Only the 7 header octets have arrived: a payload of 4089 is one over.
        let mut buf = BytesMut::from(&b"\x03\x00\x01\x00\x00\x0f\xf9"[..]);
        assert_eq!(
            d.decode(&mut buf),
            Err(DecodeError::FrameTooLarge {
                size: 4089,
                max: 4088
            })
        );
        assert_eq!(buf.len(), 7, "left untouched");
        // A hostile 4 GiB announcement is refused just the same.
        let mut buf = BytesMut::from(&b"\x03\x00\x01\xff\xff\xff\xff"[..]);
        assert_eq!(
            d.decode(&mut buf),
            Err(DecodeError::FrameTooLarge {
                size: u32::MAX,
                max: 4088
            })
        );
    }

    #[test]
    fn frame_of_exactly_frame_max_is_accepted() {
        let mut d = FrameDecoder::new(4096);
        let payload = vec![7u8; 4088];
        let mut buf = frame_bytes(FRAME_BODY, 1, &payload);
        assert_eq!(buf.len(), 4096);
        let f = d.decode(&mut buf).unwrap().unwrap();
        assert_eq!(f.payload.bytes(), &payload[..]);
    }

    #[test]
    fn set_max_frame_size_applies() {
        let mut d = FrameDecoder::default();
        assert_eq!(d.max_frame_size(), FRAME_MIN_SIZE);
        let mut big = frame_bytes(FRAME_BODY, 1, &[0; 10_000]);
        assert!(matches!(
            d.decode(&mut big.clone()),
            Err(DecodeError::FrameTooLarge { .. })
        ));
        d.set_max_frame_size(131_072);
        assert!(d.decode(&mut big).unwrap().is_some());
        // 0 means unlimited.
        d.set_max_frame_size(0);
        let mut huge = BytesMut::from(&b"\x03\x00\x01\xff\xff\xff\xff"[..]);
        assert_eq!(d.decode(&mut huge), Ok(None));
        // A frame-max below the overhead leaves room for empty payloads only.
        d.set_max_frame_size(4);
        assert!(
            d.decode(&mut frame_bytes(FRAME_BODY, 1, b""))
                .unwrap()
                .is_some()
        );
        assert!(d.decode(&mut frame_bytes(FRAME_BODY, 1, b"x")).is_err());
    }

    #[test]
    fn bad_frame_end() {
        let mut buf = frame_bytes(FRAME_METHOD, 1, b"abc");
        let last = buf.len() - 1;
        buf[last] = 0x00;
        let mut d = FrameDecoder::new(4096);
        assert_eq!(d.decode(&mut buf), Err(DecodeError::BadFrameEnd(0x00)));
        // A payload one octet shorter than declared puts the next frame's type octet
        // where frame-end should be.
        let mut buf = BytesMut::from(&b"\x01\x00\x01\x00\x00\x00\x04abc\xce\x01"[..]);
        assert_eq!(d.decode(&mut buf), Err(DecodeError::BadFrameEnd(0x01)));
    }

    #[test]
    fn unknown_type_is_refused_from_the_first_octets() {
        let mut d = FrameDecoder::new(4096);
        let mut buf = BytesMut::from(&b"\x04\x00\x00\x00\x00\x00\x00"[..]);
        assert_eq!(d.decode(&mut buf), Err(DecodeError::UnknownFrameType(4)));
        // A client that repeats its protocol header after the handshake.
        let mut buf = BytesMut::from(&b"AMQP\x00\x00\x09\x01"[..]);
        assert_eq!(d.decode(&mut buf), Err(DecodeError::UnknownFrameType(b'A')));
    }

    #[test]
    fn heartbeat_with_payload() {
        let mut buf = frame_bytes(FRAME_HEARTBEAT, 0, b"x");
        assert_eq!(
            FrameDecoder::new(4096).decode(&mut buf),
            Err(DecodeError::HeartbeatPayload(1))
        );
    }

    #[test]
    fn heartbeat_channel_is_reported_not_judged() {
        // Heartbeats belong on channel 0; whether another channel is an error is for the
        // connection to decide (RabbitMQ: 505), so the codec just reports it.
        let mut buf = frame_bytes(FRAME_HEARTBEAT, 5, b"");
        let f = FrameDecoder::new(4096).decode(&mut buf).unwrap().unwrap();
        assert_eq!(f.channel, 5);
        assert_eq!(f.payload, FramePayload::Heartbeat);
    }

    #[test]
    fn encode_frame_with_matches_encode_frame() {
        let mut a = BytesMut::from(&b"prefix"[..]);
        encode_frame_with(&mut a, FRAME_METHOD, 9, |b| {
            b.put_u16(60);
            b.put_u16(40);
            b.put_slice(b"fields");
        });
        let mut b = BytesMut::from(&b"prefix"[..]);
        encode_frame(&mut b, FRAME_METHOD, 9, b"\x00\x3c\x00\x28fields");
        assert_eq!(a, b);

        let mut empty = BytesMut::new();
        encode_frame_with(&mut empty, FRAME_HEARTBEAT, 0, |_| {});
        let mut hb = BytesMut::new();
        encode_heartbeat(&mut hb);
        assert_eq!(empty, hb);
    }

    #[test]
    fn frame_encode_roundtrip() {
        let f = Frame {
            channel: 65535,
            payload: FramePayload::Header(Bytes::from_static(b"\x00\x3c\x00\x00")),
        };
        let mut buf = BytesMut::new();
        f.encode(&mut buf);
        assert_eq!(FrameDecoder::new(0).decode(&mut buf), Ok(Some(f)));
    }

    fn arb_frame() -> impl Strategy<Value = Frame> {
        let payload = proptest::collection::vec(any::<u8>(), 0..300).prop_map(Bytes::from);
        (
            any::<u16>(),
            prop_oneof![
                payload.clone().prop_map(FramePayload::Method),
                payload.clone().prop_map(FramePayload::Header),
                payload.prop_map(FramePayload::Body),
                Just(FramePayload::Heartbeat),
            ],
        )
            .prop_map(|(channel, payload)| Frame { channel, payload })
    }

    proptest! {
        #[test]
        fn frames_survive_any_read_boundaries(
            frames in proptest::collection::vec(arb_frame(), 0..8),
            chunk in 1usize..64,
        ) {
            let mut wire = BytesMut::new();
            for f in &frames {
                f.encode(&mut wire);
            }
            let mut d = FrameDecoder::new(4096);
            let mut buf = BytesMut::new();
            let mut got = vec![];
            for piece in wire.chunks(chunk) {
                buf.extend_from_slice(piece);
                while let Some(f) = d.decode(&mut buf).unwrap() {
                    got.push(f);
                }
            }
            prop_assert!(buf.is_empty());
            prop_assert_eq!(got, frames);
        }

        #[test]
        fn arbitrary_bytes_never_panic(
            raw in proptest::collection::vec(any::<u8>(), 0..600),
            max in prop_oneof![Just(0u32), Just(4096), 0u32..64],
        ) {
            let mut d = FrameDecoder::new(max);
            let mut buf = BytesMut::from(&raw[..]);
            loop {
                let before = buf.len();
                match d.decode(&mut buf) {
                    Ok(Some(f)) => {
                        prop_assert!(buf.len() < before, "progress");
                        if max != 0 {
                            let len = u32::try_from(f.payload.bytes().len()).unwrap();
                            prop_assert!(len + FRAME_OVERHEAD <= max.max(FRAME_OVERHEAD));
                        }
                    }
                    Ok(None) | Err(_) => break,
                }
            }
        }

        #[test]
        fn frame_shaped_noise_never_panics(
            t in prop_oneof![Just(1u8), Just(2), Just(3), Just(8), any::<u8>()],
            channel in any::<u16>(),
            size in prop_oneof![0u32..40, any::<u32>()],
            rest in proptest::collection::vec(any::<u8>(), 0..48),
        ) {
            let mut buf = BytesMut::new();
            buf.put_u8(t);
            buf.put_u16(channel);
            buf.put_u32(size);
            buf.put_slice(&rest);
            let _ = FrameDecoder::new(0).decode(&mut buf);
            let _ = FrameDecoder::new(4096).decode(&mut buf);
        }
    }
}
