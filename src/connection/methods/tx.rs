//! The `tx` class: transactional channels, whose publishes and settlements wait for
//! commit.

use crate::broker::error::AmqpError;
use crate::connection::Connection;
use crate::connection::channel::Transaction;
use crate::protocol::generated::dispatch::TxServer;
use crate::protocol::generated::methods::*;

impl TxServer for Connection {
    fn tx_select(&mut self, channel: u16, _: TxSelect) -> Self::Output {
        let ch = self.channel(channel)?;
        if ch.confirm {
            return Err(AmqpError::precondition_failed(
                "cannot switch from confirm to tx mode",
            ));
        }
        if ch.tx.is_none() {
            ch.tx = Some(Transaction::default());
        }
        self.send(channel, TxSelectOk {});
        Ok(())
    }

    fn tx_commit(&mut self, channel: u16, _: TxCommit) -> Self::Output {
        let ch = self.channel(channel)?;
        let Some(tx) = ch.tx.as_mut() else {
            return Err(AmqpError::precondition_failed(
                "channel is not transactional",
            ));
        };
        let tx = std::mem::take(tx);
        for (name, message, mandatory) in tx.publishes {
            let exchange = self.vhost.exchange_or_404(&name)?;
            self.publish_now(channel, &exchange, message, mandatory, None)?;
        }
        for (tag, multiple, ack, requeue_them) in tx.settlements {
            self.settle(channel, tag, multiple, ack, requeue_them)?;
        }
        self.send(channel, TxCommitOk {});
        Ok(())
    }

    fn tx_rollback(&mut self, channel: u16, _: TxRollback) -> Self::Output {
        let ch = self.channel(channel)?;
        let Some(tx) = ch.tx.as_mut() else {
            return Err(AmqpError::precondition_failed(
                "channel is not transactional",
            ));
        };
        *tx = Transaction::default();
        self.send(channel, TxRollbackOk {});
        Ok(())
    }
}
