//! The reply code each decoding fault closes with.
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

use crate::protocol::DecodeError;
use crate::protocol::ReplyCode;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::error::tests::all_variants;

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
                expected: "method",
                got: "content body"
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
}
