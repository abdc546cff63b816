//! The `connection` class after the handshake: close and secret refresh; the handshake
//! methods themselves are refused here because the handshake has its own code path.

use crate::broker::error::AmqpError;
use crate::connection::Connection;
use crate::protocol::generated::dispatch::ConnectionServer;
use crate::protocol::generated::methods::*;

impl ConnectionServer for Connection {
    fn connection_start_ok(&mut self, _: u16, _: ConnectionStartOk) -> Self::Output {
        Err(AmqpError::command_invalid(
            "connection.start-ok after the handshake",
        ))
    }

    fn connection_secure_ok(&mut self, _: u16, _: ConnectionSecureOk) -> Self::Output {
        Err(AmqpError::command_invalid(
            "connection.secure-ok after the handshake",
        ))
    }

    fn connection_tune_ok(&mut self, _: u16, _: ConnectionTuneOk) -> Self::Output {
        Err(AmqpError::command_invalid(
            "connection.tune-ok after the handshake",
        ))
    }

    fn connection_open(&mut self, _: u16, _: ConnectionOpen) -> Self::Output {
        Err(AmqpError::command_invalid(
            "connection.open after the handshake",
        ))
    }

    fn connection_close(&mut self, _: u16, m: ConnectionClose) -> Self::Output {
        tracing::debug!(
            connection = self.id,
            "client closed: {} {}",
            m.reply_code,
            m.reply_text
        );
        self.release_all();
        self.send(0, ConnectionCloseOk {});
        self.done = true;
        Ok(())
    }

    fn connection_close_ok(&mut self, _: u16, _: ConnectionCloseOk) -> Self::Output {
        // Only meaningful while we are closing, which the caller handles.
        Err(AmqpError::command_invalid(
            "connection.close-ok without connection.close",
        ))
    }

    fn connection_update_secret(&mut self, _: u16, _: ConnectionUpdateSecret) -> Self::Output {
        // Passwords do not expire; accept the refresh as RabbitMQ does for PLAIN.
        self.send(0, ConnectionUpdateSecretOk {});
        Ok(())
    }
}
