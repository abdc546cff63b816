//! The one error type for everything that turns peer bytes into protocol values.
//!
//! Every decoding layer (primitives, field tables, frames, content assembly) returns
//! [`DecodeError`], so the connection has a single place to turn "the peer sent something
//! we cannot accept" into the `connection.close` / `channel.close` it must answer with.
//! `protocol::decode_reply` maps each error to the reply code to close with; the
//! `Display` text becomes the reply-text. This module names nothing else of the protocol
//! layer, so that every codec can return it without an import cycle.

/// Why bytes from the peer could not be turned into protocol values.
///
/// The texts are short on purpose: they become the reply-text of a close method, a
/// shortstr of at most 255 bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// A field ran past the end of its frame (or of its enclosing table/array).
    #[error("truncated: needed {needed} octets, {available} available")]
    Truncated { needed: usize, available: usize },

    /// A method payload was longer than its fields.
    #[error("{0} unexpected trailing octets after method fields")]
    TrailingBytes(usize),

    /// A field-table or array value had a type letter we do not know.
    #[error("unknown field table value type {}", type_letter(*.0))]
    BadFieldType(u8),

    /// Tables/arrays nested deeper than [`crate::protocol::wire::MAX_NESTING`].
    #[error("field tables or arrays nested too deeply")]
    TooDeep,

    #[error("unknown method: class {class_id}, method {method_id}")]
    UnknownMethod { class_id: u16, method_id: u16 },

    /// A content header for a class that has no content properties.
    #[error("content header for class {0}, which has no content")]
    UnknownClass(u16),

    /// Content property flags with bits set for properties the class does not have, or a
    /// continuation word the class does not need (raised by the generated property
    /// decoders). The flags say where each property is, so the rest cannot be decoded.
    #[error("unknown content property flags {0:#06x}")]
    BadPropertyFlags(u16),

    #[error("frame end octet was {0:#04x}, expected 0xce")]
    BadFrameEnd(u8),

    #[error("unknown frame type {0}")]
    UnknownFrameType(u8),

    /// `size` is the declared payload size, `max` the largest payload the negotiated
    /// frame-max allows (frame-max less the 8 octets of frame header and frame-end).
    #[error("frame payload of {size} octets exceeds the maximum of {max}")]
    FrameTooLarge { size: u32, max: u32 },

    /// The 8 octets a connection opens with were not `AMQP 0 0 9 1`. Never sent as a
    /// close: the server answers with its own protocol header and hangs up.
    #[error("bad protocol header")]
    BadProtocolHeader,

    /// Heartbeat frames carry no payload.
    #[error("heartbeat frame with a payload of {0} octets")]
    HeartbeatPayload(u32),

    /// A frame arrived that does not fit where the channel is in the
    /// method → header → body sequence.
    /// The fields are frame type names (`FrameType::name`).
    #[error("expected {expected} frame, got {got} frame")]
    UnexpectedFrame {
        expected: &'static str,
        got: &'static str,
    },

    /// The content header's class is not the class of the method it follows.
    #[error("expected content header for class {expected}, got one for class {got}")]
    ContentClassMismatch { expected: u16, got: u16 },

    /// The content header's weight field, which 0-9-1 requires to be zero.
    #[error("content header weight is {0}, must be 0")]
    NonZeroWeight(u16),

    /// A body frame carried more octets than the header said were left.
    #[error("content body frame of {got} octets exceeds the {remaining} remaining")]
    BodyOvershoot { remaining: u64, got: u64 },

    /// The header announced a body larger than the configured maximum. Only the channel
    /// is closed; as after any channel close, the connection must drop the frames that
    /// still arrive on it (here, the body) until `channel.close-ok`.
    #[error("message size {size} is larger than configured max size {max}")]
    BodyTooLarge { size: u64, max: u64 },
}

/// Shows a type octet as its letter when it is printable, so "unknown type 'L'" reads
/// better than "unknown type 76".
fn type_letter(b: u8) -> String {
    if b.is_ascii_graphic() {
        format!("'{}'", char::from(b))
    } else {
        format!("{b:#04x}")
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn all_variants() -> Vec<DecodeError> {
        vec![
            DecodeError::Truncated {
                needed: 4,
                available: 1,
            },
            DecodeError::TrailingBytes(3),
            DecodeError::BadFieldType(b'L'),
            DecodeError::BadFieldType(0),
            DecodeError::TooDeep,
            DecodeError::BadPropertyFlags(0x0002),
            DecodeError::UnknownMethod {
                class_id: 99,
                method_id: 1,
            },
            DecodeError::UnknownClass(10),
            DecodeError::BadFrameEnd(0),
            DecodeError::UnknownFrameType(4),
            DecodeError::FrameTooLarge {
                size: u32::MAX,
                max: 131_064,
            },
            DecodeError::BadProtocolHeader,
            DecodeError::HeartbeatPayload(1),
            DecodeError::UnexpectedFrame {
                expected: "content header",
                got: "method",
            },
            DecodeError::ContentClassMismatch {
                expected: 60,
                got: 10,
            },
            DecodeError::NonZeroWeight(1),
            DecodeError::BodyOvershoot {
                remaining: 1,
                got: 2,
            },
            DecodeError::BodyTooLarge {
                size: u64::MAX,
                max: 134_217_728,
            },
        ]
    }

    #[test]
    fn messages_fit_in_a_reply_text_shortstr() {
        for e in all_variants() {
            let text = e.to_string();
            assert!(!text.is_empty());
            // Leaves room for a "FRAME_ERROR - " style prefix.
            assert!(text.len() < 200, "{text}");
        }
    }

    #[test]
    fn messages_read_well() {
        assert_eq!(
            DecodeError::BadFieldType(b'L').to_string(),
            "unknown field table value type 'L'"
        );
        assert_eq!(
            DecodeError::BadFieldType(0x01).to_string(),
            "unknown field table value type 0x01"
        );
        assert_eq!(
            DecodeError::BadFrameEnd(0).to_string(),
            "frame end octet was 0x00, expected 0xce"
        );
        assert_eq!(
            DecodeError::UnexpectedFrame {
                expected: "content header",
                got: "content body"
            }
            .to_string(),
            "expected content header frame, got content body frame"
        );
        assert_eq!(
            DecodeError::BodyTooLarge {
                size: 200,
                max: 100
            }
            .to_string(),
            "message size 200 is larger than configured max size 100"
        );
    }
}
