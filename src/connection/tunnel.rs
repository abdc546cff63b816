//! Tunnel methods on a connection: handed to the connection's tunnel acceptor
//! (`crate::tunnel::Acceptor`), made on the first one. The caller has checked that the
//! client announced the `tunnels` capability (and, for the tunnel class's methods,
//! that the channel is open). A service's methods come undecoded: the service may be
//! one the broker's spec does not define.

use std::sync::Arc;

use crate::broker::error::AmqpResult;
use crate::protocol::generated::methods::Method;
use crate::tunnel::{Acceptor, Tunnels};

use super::channel::ChannelState;
use super::{Connection, not_open};

impl Connection {
    /// The connection's acceptor, made on first use (the fields it borrows are
    /// given separately, so the caller may use the connection's others meanwhile).
    fn acceptor<'a>(
        tunnels: &'a mut Option<Acceptor>,
        broker: &Arc<crate::broker::node::Broker>,
        writer: &super::writer::WriterHandle,
    ) -> &'a mut Acceptor {
        tunnels.get_or_insert_with(|| {
            let writer = writer.clone();
            Acceptor::new(
                Tunnels::of(broker),
                Arc::new(move |bytes| {
                    writer.send(bytes);
                }),
            )
        })
    }

    pub(super) fn tunnel_method(&mut self, channel: u16, method: Method) -> AmqpResult<()> {
        let tags = self.broker.users().user_tags(&self.user);
        let acceptor = Self::acceptor(&mut self.tunnels, &self.broker, &self.writer);
        if let Some(attach) = acceptor.method(channel, &tags, &self.user, method, &mut self.out)? {
            // What is encoded so far (channel.open-ok among it) goes before the
            // endpoint's open-ok and re-sends, which it writes to the writer itself.
            self.writer.send(self.out.split().freeze());
            acceptor.attach(attach);
        }
        Ok(())
    }

    /// A service method's frame payload on `channel`.
    pub(super) fn tunnel_service_method(&mut self, channel: u16, payload: &[u8]) -> AmqpResult<()> {
        match self.channels.get_mut(&channel) {
            None => return Err(not_open(channel)),
            // Discarded until the client confirms the close, as every method is.
            Some(ch) if ch.state == ChannelState::Closing => return Ok(()),
            Some(ch) => ch.content.method_frame()?,
        }
        Self::acceptor(&mut self.tunnels, &self.broker, &self.writer)
            .service_method(channel, payload)
    }
}
