//! The one error type for everything that turns peer bytes into protocol values.
//!
//! Every decoding layer (primitives, field tables, frames, content assembly) returns
//! [`DecodeError`], so the connection has a single place to turn "the peer sent something
//! we cannot accept" into the `connection.close` / `channel.close` it must answer with.
//! [`DecodeError::reply_code`] is that mapping; the `Display` text becomes the reply-text.
//!
//! # Reply codes
//!
//! Where RabbitMQ answers a given fault, we answer with the same code, so clients written
//! against RabbitMQ see what they expect:
//!
//! | fault | code | RabbitMQ |
//! |---|---|---|
//! | bad frame-end, unknown frame type, oversize frame, heartbeat with a payload | 501 frame-error | `rabbit_reader`: `fatal_frame_error` / `frame_error(unknown_frame, ..)` |
//! | truncated or over-long method payload, bad field type, nesting too deep, unknown property flags | 501 frame-error | `rabbit_misc:frame_error/2`: "cannot decode", raised by the generated `decode_method_fields` fall-through clause |
//! | body frame larger than what the header left to send | 501 frame-error | `rabbit_command_assembler`: "content body frame exceeds remaining content size" |
//! | method/header/body frame out of order, header of another class, non-zero weight | 505 unexpected-frame | `rabbit_command_assembler:unexpected_frame/3` |
//! | unknown class or method id | 503 command-invalid | RabbitMQ drops the connection without a close; 503 is what it sends for a method it does not handle ("unimplemented method") |
//! | body size over the configured maximum | 406 precondition-failed (channel) | `rabbit_channel:check_msg_size/3`: "message size .. is larger than configured max size .." |
//!
//! The spec itself agrees on the decode faults: 501 is "a malformed frame that the
//! recipient could not decode", while 502 syntax-error is for values that decode but are
//! illegal, which is the business of the code that interprets methods, not of decoding.

use crate::protocol::ReplyCode;
use crate::protocol::frame::FrameType;

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
    #[error("expected {expected} frame, got {got} frame")]
    UnexpectedFrame { expected: FrameType, got: FrameType },

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

impl DecodeError {
    /// The reply code to close with; see the module docs for where each choice comes from.
    /// [`ReplyCode::is_hard_error`] tells whether it closes the connection or only the
    /// channel.
    pub fn reply_code(&self) -> ReplyCode {
        match self {
            Self::Truncated { .. }
            | Self::TrailingBytes(_)
            | Self::BadFieldType(_)
            | Self::TooDeep
            | Self::BadPropertyFlags(_)
            | Self::BadFrameEnd(_)
            | Self::UnknownFrameType(_)
            | Self::FrameTooLarge { .. }
            | Self::BadProtocolHeader
            | Self::HeartbeatPayload(_)
            | Self::BodyOvershoot { .. } => ReplyCode::FrameError,
            Self::UnknownMethod { .. } => ReplyCode::CommandInvalid,
            Self::UnknownClass(_)
            | Self::UnexpectedFrame { .. }
            | Self::ContentClassMismatch { .. }
            | Self::NonZeroWeight(_) => ReplyCode::UnexpectedFrame,
            Self::BodyTooLarge { .. } => ReplyCode::PreconditionFailed,
        }
    }
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
mod tests {
    use super::*;

    fn all_variants() -> Vec<DecodeError> {
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
                expected: FrameType::Header,
                got: FrameType::Method,
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
    fn reply_codes_follow_rabbitmq() {
        use DecodeError as E;
        let code = |e: E| e.reply_code();
        assert_eq!(code(E::BadFrameEnd(1)), ReplyCode::FrameError);
        assert_eq!(code(E::UnknownFrameType(9)), ReplyCode::FrameError);
        assert_eq!(
            code(E::FrameTooLarge { size: 1, max: 0 }),
            ReplyCode::FrameError
        );
        assert_eq!(code(E::HeartbeatPayload(1)), ReplyCode::FrameError);
        assert_eq!(
            code(E::Truncated {
                needed: 1,
                available: 0
            }),
            ReplyCode::FrameError
        );
        assert_eq!(code(E::TrailingBytes(1)), ReplyCode::FrameError);
        assert_eq!(code(E::BadFieldType(b'?')), ReplyCode::FrameError);
        assert_eq!(code(E::TooDeep), ReplyCode::FrameError);
        assert_eq!(code(E::BadPropertyFlags(1)), ReplyCode::FrameError);
        assert_eq!(
            code(E::BodyOvershoot {
                remaining: 0,
                got: 1
            }),
            ReplyCode::FrameError
        );
        assert_eq!(
            code(E::UnknownMethod {
                class_id: 1,
                method_id: 1
            }),
            ReplyCode::CommandInvalid
        );
        assert_eq!(code(E::UnknownClass(1)), ReplyCode::UnexpectedFrame);
        assert_eq!(
            code(E::UnexpectedFrame {
                expected: FrameType::Method,
                got: FrameType::Body
            }),
            ReplyCode::UnexpectedFrame
        );
        assert_eq!(
            code(E::ContentClassMismatch {
                expected: 60,
                got: 61
            }),
            ReplyCode::UnexpectedFrame
        );
        assert_eq!(code(E::NonZeroWeight(2)), ReplyCode::UnexpectedFrame);
        assert_eq!(
            code(E::BodyTooLarge { size: 2, max: 1 }),
            ReplyCode::PreconditionFailed
        );
    }

    #[test]
    fn only_oversize_content_is_a_channel_error() {
        for e in all_variants() {
            let hard = e.reply_code().is_hard_error();
            let expect_hard = !matches!(e, DecodeError::BodyTooLarge { .. });
            assert_eq!(hard, expect_hard, "{e:?}");
        }
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
                expected: FrameType::Header,
                got: FrameType::Body
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
