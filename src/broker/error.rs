//! The error every broker operation returns: a reply code and RabbitMQ-style text.
//!
//! The connection turns it into `channel.close` (soft codes) or `connection.close`
//! (hard codes), naming the method that failed, so the client sees what RabbitMQ would
//! have told it.

use std::fmt;

use bytes::Bytes;

use crate::protocol::generated::methods::{ChannelClose, ConnectionClose};
use crate::protocol::{ReplyCode, ShortString};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AmqpError {
    pub code: ReplyCode,
    /// Without the `NAME - ` prefix; [`AmqpError::reply_text`] adds it.
    pub text: String,
}

impl AmqpError {
    pub fn new(code: ReplyCode, text: impl Into<String>) -> Self {
        AmqpError {
            code,
            text: text.into(),
        }
    }

    pub fn not_found(text: impl Into<String>) -> Self {
        Self::new(ReplyCode::NotFound, text)
    }

    pub fn access_refused(text: impl Into<String>) -> Self {
        Self::new(ReplyCode::AccessRefused, text)
    }

    pub fn precondition_failed(text: impl Into<String>) -> Self {
        Self::new(ReplyCode::PreconditionFailed, text)
    }

    /// 403 for declaring, deleting or binding the default exchange, as RabbitMQ words it.
    pub fn default_exchange() -> Self {
        Self::access_refused("operation not permitted on the default exchange")
    }

    /// 406 for a delivery tag that is not outstanding, as RabbitMQ words it.
    pub fn unknown_delivery_tag(tag: u64) -> Self {
        Self::precondition_failed(format!("unknown delivery tag {tag}"))
    }

    pub fn resource_locked(text: impl Into<String>) -> Self {
        Self::new(ReplyCode::ResourceLocked, text)
    }

    pub fn command_invalid(text: impl Into<String>) -> Self {
        Self::new(ReplyCode::CommandInvalid, text)
    }

    pub fn channel_error(text: impl Into<String>) -> Self {
        Self::new(ReplyCode::ChannelError, text)
    }

    pub fn not_allowed(text: impl Into<String>) -> Self {
        Self::new(ReplyCode::NotAllowed, text)
    }

    pub fn not_implemented(text: impl Into<String>) -> Self {
        Self::new(ReplyCode::NotImplemented, text)
    }

    pub fn resource_error(text: impl Into<String>) -> Self {
        Self::new(ReplyCode::ResourceError, text)
    }

    /// Hard errors close the connection, soft ones the channel.
    pub fn closes_connection(&self) -> bool {
        self.code.is_hard_error()
    }

    /// `NOT_FOUND - no queue 'q' in vhost '/'`, cut to fit a shortstr.
    pub fn reply_text(&self) -> String {
        let mut text = format!("{} - {}", self.code.name(), self.text);
        if text.len() > 255 {
            let mut end = 255;
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            text.truncate(end);
        }
        text
    }
}

impl AmqpError {
    /// The reply text as the shortstr a close method carries.
    fn reply_text_shortstr(&self) -> ShortString {
        // reply_text() is cut to 255 bytes, so this cannot fail.
        ShortString::new(Bytes::from(self.reply_text())).unwrap_or_default()
    }

    /// `connection.close` for this error, naming the method that caused it.
    pub fn connection_close(&self, class_id: u16, method_id: u16) -> ConnectionClose {
        ConnectionClose {
            reply_code: self.code.code(),
            reply_text: self.reply_text_shortstr(),
            class_id,
            method_id,
        }
    }

    /// `channel.close` for this error, naming the method that caused it.
    pub fn channel_close(&self, class_id: u16, method_id: u16) -> ChannelClose {
        ChannelClose {
            reply_code: self.code.code(),
            reply_text: self.reply_text_shortstr(),
            class_id,
            method_id,
        }
    }
}

impl fmt::Display for AmqpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reply_text())
    }
}

impl std::error::Error for AmqpError {}

impl From<crate::protocol::DecodeError> for AmqpError {
    fn from(e: crate::protocol::DecodeError) -> Self {
        AmqpError::new(e.reply_code(), e.to_string())
    }
}

pub type AmqpResult<T> = Result<T, AmqpError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_text_has_rabbitmq_prefix_and_fits_a_shortstr() {
        let e = AmqpError::not_found("no queue 'q' in vhost '/'");
        assert_eq!(e.reply_text(), "NOT_FOUND - no queue 'q' in vhost '/'");
        assert!(!e.closes_connection());
        let long = AmqpError::precondition_failed("é".repeat(300));
        assert!(long.reply_text().len() <= 255);
        assert!(AmqpError::command_invalid("x").closes_connection());
    }
}
