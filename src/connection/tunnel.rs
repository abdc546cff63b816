//! Tunnel methods on a connection: handed to the connection's tunnel acceptor
//! (`crate::tunnel::Acceptor`), made on the first one. The caller has checked that the
//! client announced the `tunnels` capability and that the channel is open.

use std::sync::Arc;

use crate::broker::error::AmqpResult;
use crate::protocol::generated::methods::Method;
use crate::tunnel::{Acceptor, Tunnels};

use super::Connection;

impl Connection {
    pub(super) fn tunnel_method(&mut self, channel: u16, method: Method) -> AmqpResult<()> {
        let tags = self.broker.users().user_tags(&self.user);
        let acceptor = self.tunnels.get_or_insert_with(|| {
            let writer = self.writer.clone();
            Acceptor::new(
                Tunnels::of(&self.broker),
                Arc::new(move |bytes| {
                    writer.send(bytes);
                }),
            )
        });
        if let Some(attach) = acceptor.method(channel, &tags, &self.user, method, &mut self.out)? {
            // What is encoded so far (channel.open-ok among it) goes before the
            // endpoint's open-ok and re-sends, which it writes to the writer itself.
            self.writer.send(self.out.split().freeze());
            acceptor.attach(attach);
        }
        Ok(())
    }
}
