//! Content: the header-and-body that follows a content-bearing method (`basic.publish`,
//! `basic.deliver`, ...), spread over one header frame and any number of body frames.
//!
//! [`ContentAssembler`] is the per-channel state machine that puts a message back together
//! on the way in and rejects frames that arrive out of order; [`encode_content`] cuts one
//! into frames on the way out. Properties stay raw [`Bytes`] here: their layout is
//! per-class and decoded by generated code.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::DecodeError;
use super::frame::{FRAME_OVERHEAD, FrameType, encode_frame, encode_frame_with};
use super::generated::constants::{FRAME_BODY, FRAME_HEADER, FRAME_MIN_SIZE};
use super::wire::Decoder;

/// The fixed part of a content header payload: class-id, weight, body-size.
pub const CONTENT_HEADER_PREFIX_LEN: usize = 12;

/// A decoded content header payload: class-id u16, weight u16 (must be 0), body-size u64,
/// then property flags and properties, kept raw for the generated code to decode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContentHeader {
    pub class_id: u16,
    pub body_size: u64,
    /// Raw property flags and property values: a slice of the frame, not a copy.
    pub properties: Bytes,
}

impl ContentHeader {
    pub fn decode(mut payload: Bytes) -> Result<Self, DecodeError> {
        let mut d = Decoder::from_slice(&payload);
        let class_id = d.short()?;
        let weight = d.short()?;
        if weight != 0 {
            return Err(DecodeError::NonZeroWeight(weight));
        }
        let body_size = d.longlong()?;
        // The prefix has been read, so it is there to skip; advancing (rather than
        // slicing) keeps the one reference the frame already holds.
        payload.advance(CONTENT_HEADER_PREFIX_LEN);
        Ok(Self {
            class_id,
            body_size,
            properties: payload,
        })
    }

    /// Writes class-id, weight 0 and body-size; the properties go right after.
    pub fn encode_prefix(buf: &mut BytesMut, class_id: u16, body_size: u64) {
        buf.put_u16(class_id);
        buf.put_u16(0);
        buf.put_u64(body_size);
    }

    /// The whole header payload: prefix, then the raw properties.
    pub fn encode(&self, buf: &mut BytesMut) {
        Self::encode_prefix(buf, self.class_id, self.body_size);
        buf.put_slice(&self.properties);
    }
}

/// A fully received content, with the method that announced it.
#[derive(Debug, Clone, PartialEq)]
pub struct Complete<M = Bytes> {
    pub method: M,
    pub header: ContentHeader,
    pub body: Bytes,
}

#[derive(Debug)]
enum State<M> {
    /// Between contents: only method frames belong here.
    Idle,
    /// After a content-bearing method, waiting for its header.
    Header { class_id: u16, method: M },
    /// Collecting body frames; `remaining > 0` always.
    Body {
        method: M,
        header: ContentHeader,
        remaining: u64,
        received: Received,
    },
}

/// The body octets received so far.
#[derive(Debug)]
enum Received {
    Nothing,
    /// Kept as the frame's own slice: a body that completes in one frame is never copied.
    One(Bytes),
    /// From the second frame on, frames are copied in as they arrive and dropped, so the
    /// frames' read buffers are freed and many tiny frames cost no per-frame bookkeeping.
    Many(BytesMut),
}

impl Received {
    /// Adds a frame's octets. `body_size` only caps the first allocation; it is sized from
    /// what has actually arrived, so a peer announcing a large body and then stalling
    /// cannot make us allocate much more than it sent.
    fn push(self, payload: Bytes, body_size: u64) -> Self {
        if payload.is_empty() {
            return self;
        }
        match self {
            Self::Nothing => Self::One(payload),
            Self::One(first) => {
                let so_far = first.len().saturating_add(payload.len());
                // Bodies up to four times their first two frames need no reallocation;
                // larger ones grow geometrically.
                let cap = usize::try_from(body_size)
                    .unwrap_or(usize::MAX)
                    .min(so_far.saturating_mul(4))
                    .max(so_far);
                let mut acc = BytesMut::with_capacity(cap);
                acc.put_slice(&first);
                acc.put_slice(&payload);
                Self::Many(acc)
            }
            Self::Many(mut acc) => {
                acc.put_slice(&payload);
                Self::Many(acc)
            }
        }
    }

    fn into_body(self) -> Bytes {
        match self {
            Self::Nothing => Bytes::new(),
            Self::One(b) => b,
            Self::Many(acc) => acc.freeze(),
        }
    }
}

/// Reassembles content on one channel: method (with content) → header → body*.
///
/// The assembler does not know which methods carry content (the generated code does), so
/// the connection drives it like this for each frame on the channel:
///
/// * method frame: call [`method_frame`](Self::method_frame) first (it fails if a content
///   is half-received), decode the method, and if it carries content call
///   [`start`](Self::start) with the method, which is held until the content completes;
/// * header frame: [`header`](Self::header);
/// * body frame: [`body`](Self::body).
///
/// `header` and `body` return `Ok(Some(Complete))` when the last octet has arrived (a
/// zero-size body completes at the header). A body that came in one frame is that frame's
/// [`Bytes`], uncopied; a multi-frame body is joined into one [`Bytes`], each octet copied
/// in once as it arrives. Nothing is allocated from the declared size alone, so a peer
/// announcing a large body and sending little costs little, and the size limit is checked
/// at the header, before any body arrives.
///
/// Any error resets the assembler to idle and drops the partial content: the caller is
/// about to close the channel or connection. `M` is whatever the caller wants back with
/// the content, typically the decoded method; [`start_raw`](Self::start_raw) covers the
/// case where it is just the method frame's payload.
#[derive(Debug)]
pub struct ContentAssembler<M = Bytes> {
    max_body_size: u64,
    state: State<M>,
}

impl<M> Default for ContentAssembler<M> {
    fn default() -> Self {
        Self::new()
    }
}

impl<M> ContentAssembler<M> {
    /// 128 MiB, RabbitMQ's long-standing default `max_message_size`.
    pub const DEFAULT_MAX_BODY_SIZE: u64 = 128 * 1024 * 1024;

    pub fn new() -> Self {
        Self::with_max_body_size(Self::DEFAULT_MAX_BODY_SIZE)
    }

    pub fn with_max_body_size(max: u64) -> Self {
        Self {
            max_body_size: max,
            state: State::Idle,
        }
    }

    /// Applies from the next header on.
    pub fn set_max_body_size(&mut self, max: u64) {
        self.max_body_size = max;
    }

    pub fn max_body_size(&self) -> u64 {
        self.max_body_size
    }

    /// True between contents.
    pub fn is_idle(&self) -> bool {
        matches!(self.state, State::Idle)
    }

    /// The kind of frame the channel should receive next.
    pub fn expecting(&self) -> FrameType {
        match self.state {
            State::Idle => FrameType::Method,
            State::Header { .. } => FrameType::Header,
            State::Body { .. } => FrameType::Body,
        }
    }

    /// Forgets any partial content (e.g. when the channel closes).
    pub fn reset(&mut self) {
        self.state = State::Idle;
    }

    fn unexpected(&mut self, got: FrameType) -> DecodeError {
        let expected = self.expecting();
        self.reset();
        DecodeError::UnexpectedFrame {
            expected: expected.name(),
            got: got.name(),
        }
    }

    /// A method frame arrived on the channel: fine between contents, an error in the
    /// middle of one.
    pub fn method_frame(&mut self) -> Result<(), DecodeError> {
        if self.is_idle() {
            Ok(())
        } else {
            Err(self.unexpected(FrameType::Method))
        }
    }

    /// A content-bearing method of class `class_id` arrived; its header must come next.
    pub fn start(&mut self, class_id: u16, method: M) -> Result<(), DecodeError> {
        self.method_frame()?;
        self.state = State::Header { class_id, method };
        Ok(())
    }

    /// A header frame arrived.
    pub fn header(&mut self, payload: Bytes) -> Result<Option<Complete<M>>, DecodeError> {
        let class_id = match &self.state {
            State::Header { class_id, .. } => *class_id,
            _ => return Err(self.unexpected(FrameType::Header)),
        };
        let header = match ContentHeader::decode(payload) {
            Ok(h) => h,
            Err(e) => {
                self.reset();
                return Err(e);
            }
        };
        // Checked in RabbitMQ's order: the class, then the size.
        if header.class_id != class_id {
            self.reset();
            return Err(DecodeError::ContentClassMismatch {
                expected: class_id,
                got: header.class_id,
            });
        }
        // Before any body arrives, so an oversized message is never buffered.
        if header.body_size > self.max_body_size {
            self.reset();
            return Err(DecodeError::BodyTooLarge {
                size: header.body_size,
                max: self.max_body_size,
            });
        }
        let State::Header { method, .. } = std::mem::replace(&mut self.state, State::Idle) else {
            // Matched above; kept total rather than asserting.
            return Ok(None);
        };
        if header.body_size == 0 {
            return Ok(Some(Complete {
                method,
                header,
                body: Bytes::new(),
            }));
        }
        self.state = State::Body {
            method,
            remaining: header.body_size,
            header,
            received: Received::Nothing,
        };
        Ok(None)
    }

    /// A body frame arrived.
    pub fn body(&mut self, payload: Bytes) -> Result<Option<Complete<M>>, DecodeError> {
        let State::Body {
            header,
            remaining,
            received,
            ..
        } = &mut self.state
        else {
            return Err(self.unexpected(FrameType::Body));
        };
        let got = u64::try_from(payload.len()).unwrap_or(u64::MAX);
        if got > *remaining {
            let remaining = *remaining;
            self.reset();
            return Err(DecodeError::BodyOvershoot { remaining, got });
        }
        *remaining -= got;
        let done = *remaining == 0;
        *received = std::mem::replace(received, Received::Nothing).push(payload, header.body_size);
        if !done {
            return Ok(None);
        }
        let State::Body {
            method,
            header,
            received,
            ..
        } = std::mem::replace(&mut self.state, State::Idle)
        else {
            // Matched above; kept total rather than asserting.
            return Ok(None);
        };
        Ok(Some(Complete {
            method,
            header,
            body: received.into_body(),
        }))
    }
}

impl ContentAssembler<Bytes> {
    /// [`start`](Self::start) for a raw method payload (class-id, method-id, fields): the
    /// class is read from its first two octets and the payload is what comes back in
    /// [`Complete::method`].
    pub fn start_raw(&mut self, method_payload: Bytes) -> Result<(), DecodeError> {
        let class_id = Decoder::from_slice(&method_payload).short()?;
        self.start(class_id, method_payload)
    }
}

/// Writes a content header frame and as many body frames as `body` needs under
/// `frame_max` (which counts the 8 octets of frame overhead; 0 means no limit). An empty
/// body gets no body frames.
///
/// A non-zero `frame_max` below the spec's frame-min-size (4096) cannot have been
/// negotiated legitimately; it is treated as 4096, which every peer must accept, rather
/// than producing absurdly small frames. The header frame is not split (the protocol
/// cannot): keeping `properties` within frame-max is the caller's concern.
pub fn encode_content(
    buf: &mut BytesMut,
    channel: u16,
    class_id: u16,
    properties: &[u8],
    body: &[u8],
    frame_max: u32,
) {
    let chunk = body_chunk_size(frame_max);
    // One reservation for the whole output; saturating only matters for sizes that
    // could not be allocated anyway, where `reserve` reports the failure itself.
    let overhead = FRAME_OVERHEAD as usize;
    let frames = body.len().div_ceil(chunk).saturating_add(1);
    let total = frames
        .saturating_mul(overhead)
        .saturating_add(CONTENT_HEADER_PREFIX_LEN)
        .saturating_add(properties.len())
        .saturating_add(body.len());
    buf.reserve(total);

    let body_size = u64::try_from(body.len()).unwrap_or(u64::MAX);
    encode_frame_with(buf, FRAME_HEADER, channel, |buf| {
        ContentHeader::encode_prefix(buf, class_id, body_size);
        buf.put_slice(properties);
    });
    for piece in body.chunks(chunk) {
        encode_frame(buf, FRAME_BODY, channel, piece);
    }
}

/// The largest body-frame payload for a frame-max; always at least 1.
fn body_chunk_size(frame_max: u32) -> usize {
    let payload = match frame_max {
        0 => u32::MAX,
        max => max.max(FRAME_MIN_SIZE).saturating_sub(FRAME_OVERHEAD),
    };
    usize::try_from(payload).unwrap_or(usize::MAX).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::ReplyCode;
    use crate::protocol::frame::{Frame, FrameDecoder, FramePayload};
    use proptest::prelude::*;

    const BASIC: u16 = 60;

    fn header_payload(class_id: u16, body_size: u64, props: &[u8]) -> Bytes {
        let mut b = BytesMut::new();
        ContentHeader::encode_prefix(&mut b, class_id, body_size);
        b.put_slice(props);
        b.freeze()
    }

    fn started(max: u64) -> ContentAssembler<&'static str> {
        let mut a = ContentAssembler::with_max_body_size(max);
        a.start(BASIC, "basic.publish").unwrap();
        a
    }

    #[test]
    fn header_known_bytes() {
        let p = header_payload(BASIC, 0x0102_0304_0506_0708, b"\x80\x00\x0atext/plain");
        assert_eq!(
            &p[..12],
            b"\x00\x3c\x00\x00\x01\x02\x03\x04\x05\x06\x07\x08"
        );
        let h = ContentHeader::decode(p.clone()).unwrap();
        assert_eq!(h.class_id, BASIC);
        assert_eq!(h.body_size, 0x0102_0304_0506_0708);
        assert_eq!(&h.properties[..], b"\x80\x00\x0atext/plain");
        assert_eq!(h.properties.as_ptr(), p[12..].as_ptr(), "no copy");
        let mut again = BytesMut::new();
        h.encode(&mut again);
        assert_eq!(again.freeze(), p);
    }

    #[test]
    fn header_errors() {
        assert_eq!(
            ContentHeader::decode(Bytes::from_static(b"\x00\x3c\x00\x01\0\0\0\0\0\0\0\0")),
            Err(DecodeError::NonZeroWeight(1))
        );
        assert_eq!(
            ContentHeader::decode(Bytes::from_static(b"\x00\x3c\x00\x00\0\0\0")),
            Err(DecodeError::Truncated {
                needed: 8,
                available: 3
            })
        );
        assert!(ContentHeader::decode(Bytes::new()).is_err());
    }

    #[test]
    fn single_frame_body_is_not_copied() {
        let mut a = started(1024);
        assert_eq!(a.expecting(), FrameType::Header);
        assert_eq!(a.header(header_payload(BASIC, 5, b"\x00\x00")), Ok(None));
        assert_eq!(a.expecting(), FrameType::Body);
        let body = Bytes::from_static(b"hello");
        let c = a.body(body.clone()).unwrap().unwrap();
        assert_eq!(c.method, "basic.publish");
        assert_eq!(c.header.body_size, 5);
        assert_eq!(&c.header.properties[..], b"\x00\x00");
        assert_eq!(c.body.as_ptr(), body.as_ptr());
        assert!(a.is_idle());
        assert_eq!(a.expecting(), FrameType::Method);
    }

    #[test]
    fn multi_frame_body_is_joined() {
        let mut a = started(1024);
        assert_eq!(a.header(header_payload(BASIC, 11, b"")), Ok(None));
        assert_eq!(a.body(Bytes::from_static(b"hel")), Ok(None));
        assert_eq!(
            a.body(Bytes::new()),
            Ok(None),
            "empty body frames are harmless"
        );
        assert_eq!(a.body(Bytes::from_static(b"lo wo")), Ok(None));
        let c = a.body(Bytes::from_static(b"rld")).unwrap().unwrap();
        assert_eq!(&c.body[..], b"hello world");
        assert!(a.is_idle());
    }

    #[test]
    fn stalled_large_body_allocates_by_what_arrived() {
        let mut a = started(u64::MAX);
        a.header(header_payload(BASIC, 1 << 40, b"")).unwrap();
        a.body(Bytes::from(vec![1u8; 10])).unwrap();
        a.body(Bytes::from(vec![2u8; 10])).unwrap();
        let State::Body {
            received: Received::Many(acc),
            ..
        } = &a.state
        else {
            panic!("collecting")
        };
        assert_eq!(acc.len(), 20);
        assert!(acc.capacity() <= 80, "capacity {}", acc.capacity());
    }

    #[test]
    fn many_frames_join_in_order() {
        let mut a = started(1 << 20);
        let body: Vec<u8> = (0..5000u32).map(|i| (i % 253) as u8).collect();
        a.header(header_payload(BASIC, 5000, b"")).unwrap();
        let mut done = None;
        for piece in body.chunks(7) {
            done = a.body(Bytes::copy_from_slice(piece)).unwrap();
        }
        assert_eq!(&done.unwrap().body[..], &body[..]);
    }

    #[test]
    fn zero_body_completes_at_header() {
        let mut a = started(1024);
        let c = a.header(header_payload(BASIC, 0, b"")).unwrap().unwrap();
        assert!(c.body.is_empty());
        assert!(a.is_idle());
        // And the next frame must be a method, not a body.
        assert!(matches!(
            a.body(Bytes::new()),
            Err(DecodeError::UnexpectedFrame {
                expected: "method",
                got: "content body"
            })
        ));
    }

    #[test]
    fn overshoot() {
        let mut a = started(1024);
        a.header(header_payload(BASIC, 4, b"")).unwrap();
        let e = a.body(Bytes::from_static(b"12345")).unwrap_err();
        assert_eq!(
            e,
            DecodeError::BodyOvershoot {
                remaining: 4,
                got: 5
            }
        );
        assert_eq!(e.reply_code(), ReplyCode::FrameError);
        assert!(a.is_idle());

        let mut a = started(1024);
        a.header(header_payload(BASIC, 4, b"")).unwrap();
        a.body(Bytes::from_static(b"12")).unwrap();
        assert_eq!(
            a.body(Bytes::from_static(b"345")),
            Err(DecodeError::BodyOvershoot {
                remaining: 2,
                got: 3
            })
        );
    }

    #[test]
    fn interleaved_wrong_frames() {
        use FrameType::*;
        let unexpected = |expected: FrameType, got: FrameType| DecodeError::UnexpectedFrame {
            expected: expected.name(),
            got: got.name(),
        };

        // Header or body with no content method before it.
        let mut a: ContentAssembler<()> = ContentAssembler::new();
        assert_eq!(
            a.header(header_payload(BASIC, 0, b"")),
            Err(unexpected(Method, Header))
        );
        assert_eq!(a.body(Bytes::new()), Err(unexpected(Method, Body)));
        assert_eq!(a.method_frame(), Ok(()));

        // Body instead of the header.
        let mut a = started(1024);
        assert_eq!(
            a.body(Bytes::from_static(b"x")),
            Err(unexpected(Header, Body))
        );
        assert!(a.is_idle());

        // A method instead of the header.
        let mut a = started(1024);
        assert_eq!(a.method_frame(), Err(unexpected(Header, Method)));
        let mut a = started(1024);
        assert_eq!(a.start(BASIC, "again"), Err(unexpected(Header, Method)));

        // A method or a second header in the middle of the body.
        let mut a = started(1024);
        a.header(header_payload(BASIC, 10, b"")).unwrap();
        a.body(Bytes::from_static(b"abc")).unwrap();
        assert_eq!(a.method_frame(), Err(unexpected(Body, Method)));
        assert!(a.is_idle(), "partial content dropped");

        let mut a = started(1024);
        a.header(header_payload(BASIC, 10, b"")).unwrap();
        assert_eq!(
            a.header(header_payload(BASIC, 10, b"")),
            Err(unexpected(Body, Header))
        );

        for e in [unexpected(Header, Body), unexpected(Body, Method)] {
            assert_eq!(e.reply_code(), ReplyCode::UnexpectedFrame);
        }
    }

    #[test]
    fn header_of_another_class() {
        let mut a = started(1024);
        let e = a.header(header_payload(10, 0, b"")).unwrap_err();
        assert_eq!(
            e,
            DecodeError::ContentClassMismatch {
                expected: BASIC,
                got: 10
            }
        );
        assert_eq!(e.reply_code(), ReplyCode::UnexpectedFrame);
        assert!(a.is_idle());
    }

    #[test]
    fn bad_header_payload_resets() {
        let mut a = started(1024);
        assert!(matches!(
            a.header(Bytes::from_static(b"\x00\x3c")),
            Err(DecodeError::Truncated { .. })
        ));
        assert!(a.is_idle());
        let mut a = started(1024);
        assert_eq!(
            a.header(Bytes::from_static(b"\x00\x3c\x00\x07\0\0\0\0\0\0\0\0")),
            Err(DecodeError::NonZeroWeight(7))
        );
        assert!(a.is_idle());
    }

    #[test]
    fn over_max_is_refused_at_the_header() {
        let mut a = started(100);
        assert_eq!(
            a.header(header_payload(BASIC, 100, b"")),
            Ok(None),
            "at max is fine"
        );
        let mut a = started(100);
        let e = a.header(header_payload(BASIC, 101, b"")).unwrap_err();
        assert_eq!(
            e,
            DecodeError::BodyTooLarge {
                size: 101,
                max: 100
            }
        );
        assert_eq!(e.reply_code(), ReplyCode::PreconditionFailed);
        assert!(a.is_idle());
        // A hostile u64::MAX size is refused just the same.
        let mut a = started(100);
        assert!(matches!(
            a.header(header_payload(BASIC, u64::MAX, b"")),
            Err(DecodeError::BodyTooLarge { .. })
        ));
    }

    #[test]
    fn max_body_size_settings() {
        let mut a: ContentAssembler = ContentAssembler::default();
        assert_eq!(a.max_body_size(), 128 * 1024 * 1024);
        a.set_max_body_size(1);
        assert_eq!(a.max_body_size(), 1);
        a.start_raw(Bytes::from_static(b"\x00\x3c\x00\x28rest"))
            .unwrap();
        assert!(a.header(header_payload(BASIC, 2, b"")).is_err());
    }

    #[test]
    fn start_raw_keeps_payload_and_reads_class() {
        let mut a: ContentAssembler = ContentAssembler::new();
        let method = Bytes::from_static(b"\x00\x3c\x00\x28fields");
        a.start_raw(method.clone()).unwrap();
        assert_eq!(
            a.header(header_payload(10, 0, b"")),
            Err(DecodeError::ContentClassMismatch {
                expected: BASIC,
                got: 10
            })
        );
        a.start_raw(method.clone()).unwrap();
        let c = a.header(header_payload(BASIC, 0, b"")).unwrap().unwrap();
        assert_eq!(c.method, method);
        assert!(matches!(
            a.start_raw(Bytes::from_static(b"\x00")),
            Err(DecodeError::Truncated { .. })
        ));
    }

    #[test]
    fn reusable_after_completion_and_reset() {
        let mut a = started(1024);
        a.header(header_payload(BASIC, 3, b"")).unwrap();
        a.body(Bytes::from_static(b"a")).unwrap();
        a.reset();
        assert!(a.is_idle());
        a.start(BASIC, "second").unwrap();
        a.header(header_payload(BASIC, 1, b"")).unwrap();
        let c = a.body(Bytes::from_static(b"z")).unwrap().unwrap();
        assert_eq!((c.method, &c.body[..]), ("second", &b"z"[..]));
    }

    /// Decodes everything `encode_content` wrote, checking each frame against frame_max.
    fn decode_all(wire: BytesMut, frame_max: u32) -> Vec<Frame> {
        let mut buf = wire;
        let mut d = FrameDecoder::new(frame_max);
        let mut frames = vec![];
        while let Some(f) = d.decode(&mut buf).unwrap() {
            frames.push(f);
        }
        assert!(buf.is_empty());
        frames
    }

    #[test]
    fn encode_content_splits_at_frame_max() {
        let body: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        let mut wire = BytesMut::new();
        encode_content(&mut wire, 3, BASIC, b"\x10\x00\x01", &body, 4096);
        let frames = decode_all(wire, 4096);
        let sizes: Vec<usize> = frames.iter().map(|f| f.payload.bytes().len()).collect();
        assert_eq!(sizes, [15, 4088, 4088, 1824]);
        assert!(frames.iter().all(|f| f.channel == 3));
        let FramePayload::Header(h) = &frames[0].payload else {
            panic!("header first")
        };
        let h = ContentHeader::decode(h.clone()).unwrap();
        assert_eq!(h.body_size, 10_000);
        assert_eq!(&h.properties[..], b"\x10\x00\x01");

        let mut a = ContentAssembler::new();
        a.start(BASIC, ()).unwrap();
        let mut done = None;
        for f in frames {
            done = match f.payload {
                FramePayload::Header(p) => a.header(p).unwrap(),
                FramePayload::Body(p) => a.body(p).unwrap(),
                other => panic!("unexpected {other:?}"),
            };
        }
        assert_eq!(&done.unwrap().body[..], &body[..]);
    }

    #[test]
    fn encode_content_exact_multiple_and_edges() {
        let body = vec![1u8; 4088 * 2];
        let mut wire = BytesMut::new();
        encode_content(&mut wire, 1, BASIC, b"", &body, 4096);
        assert_eq!(
            decode_all(wire, 4096).len(),
            3,
            "header + exactly two bodies"
        );

        // Empty body: the header alone.
        let mut wire = BytesMut::new();
        encode_content(&mut wire, 1, BASIC, b"\x00\x00", b"", 4096);
        assert_eq!(
            &wire[..],
            b"\x02\x00\x01\x00\x00\x00\x0e\x00\x3c\x00\x00\0\0\0\0\0\0\0\0\x00\x00\xce"
        );

        // frame_max 0: no limit, one body frame.
        let mut wire = BytesMut::new();
        encode_content(&mut wire, 1, BASIC, b"", &[9u8; 100_000], 0);
        assert_eq!(decode_all(wire, 0).len(), 2);

        // Too small to be legal: treated as frame-min-size.
        let mut wire = BytesMut::new();
        encode_content(&mut wire, 1, BASIC, b"", &[9u8; 5000], 1);
        let sizes: Vec<usize> = decode_all(wire, 4096)
            .iter()
            .map(|f| f.payload.bytes().len())
            .collect();
        assert_eq!(sizes, [12, 4088, 912]);
    }

    #[derive(Debug, Clone)]
    enum Step {
        Method,
        Start(u16),
        Header(Bytes),
        Body(Bytes),
    }

    fn arb_step() -> impl Strategy<Value = Step> {
        let small = proptest::collection::vec(any::<u8>(), 0..24).prop_map(Bytes::from);
        let header = (
            prop_oneof![Just(BASIC), any::<u16>()],
            prop_oneof![Just(0u16), any::<u16>()],
            prop_oneof![0u64..40, any::<u64>()],
            small.clone(),
        )
            .prop_map(|(class, weight, size, props)| {
                let mut b = BytesMut::new();
                b.put_u16(class);
                b.put_u16(weight);
                b.put_u64(size);
                b.put_slice(&props);
                b.freeze()
            });
        prop_oneof![
            Just(Step::Method),
            prop_oneof![Just(BASIC), any::<u16>()].prop_map(Step::Start),
            header.prop_map(Step::Header),
            small.clone().prop_map(Step::Header),
            small.prop_map(Step::Body),
        ]
    }

    proptest! {
        #[test]
        fn header_decode_never_panics(raw in proptest::collection::vec(any::<u8>(), 0..64)) {
            let raw = Bytes::from(raw);
            if let Ok(h) = ContentHeader::decode(raw.clone()) {
                let mut again = BytesMut::new();
                h.encode(&mut again);
                prop_assert_eq!(again.freeze(), raw);
            }
        }

        #[test]
        fn assembler_never_panics_and_bodies_match_headers(
            steps in proptest::collection::vec(arb_step(), 0..40),
        ) {
            let mut a = ContentAssembler::with_max_body_size(64);
            for step in steps {
                let r = match step {
                    Step::Method => a.method_frame().map(|()| None),
                    Step::Start(class) => a.start(class, class).map(|()| None),
                    Step::Header(p) => a.header(p),
                    Step::Body(p) => a.body(p),
                };
                match r {
                    Ok(Some(c)) => {
                        prop_assert_eq!(u64::try_from(c.body.len()).unwrap(), c.header.body_size);
                        prop_assert_eq!(c.method, c.header.class_id);
                        prop_assert!(c.header.body_size <= 64);
                        prop_assert!(a.is_idle());
                    }
                    Ok(None) => {}
                    Err(_) => prop_assert!(a.is_idle()),
                }
            }
        }

        #[test]
        fn encode_content_roundtrip(
            body in proptest::collection::vec(any::<u8>(), 0..20_000),
            props in proptest::collection::vec(any::<u8>(), 0..64),
            frame_max in prop_oneof![Just(0u32), 4096u32..9000],
            channel in any::<u16>(),
        ) {
            let mut wire = BytesMut::new();
            encode_content(&mut wire, channel, BASIC, &props, &body, frame_max);
            let frames = decode_all(wire, frame_max);
            let mut a = ContentAssembler::new();
            a.start(BASIC, ()).unwrap();
            let mut done = None;
            for (i, f) in frames.into_iter().enumerate() {
                prop_assert_eq!(f.channel, channel);
                prop_assert!(done.is_none(), "frame {} after completion", i);
                done = match f.payload {
                    FramePayload::Header(p) => a.header(p).unwrap(),
                    FramePayload::Body(p) => {
                        prop_assert!(!p.is_empty(), "no empty body frames");
                        a.body(p).unwrap()
                    }
                    other => panic!("unexpected {other:?}"),
                };
            }
            let c = done.unwrap();
            prop_assert_eq!(&c.body[..], &body[..]);
            prop_assert_eq!(&c.header.properties[..], &props[..]);
        }
    }
}
