//! The `confirm` class: switching a channel to publisher confirms.

use crate::broker::error::AmqpError;
use crate::connection::Connection;
use crate::protocol::generated::dispatch::ConfirmServer;
use crate::protocol::generated::methods::*;

impl ConfirmServer for Connection {
    fn confirm_select(&mut self, channel: u16, m: ConfirmSelect) -> Self::Output {
        let ch = self.channel(channel)?;
        if ch.tx.is_some() {
            return Err(AmqpError::precondition_failed(
                "cannot switch from tx to confirm mode",
            ));
        }
        ch.confirm = true;
        if !m.nowait {
            self.send(channel, ConfirmSelectOk {});
        }
        Ok(())
    }
}
