//! The `channel` class: opening, flow control and closing of a connection's channels.

use crate::broker::error::AmqpError;
use crate::connection::Connection;
use crate::connection::channel::{Channel, ChannelState};
use crate::protocol::generated::dispatch::ChannelServer;
use crate::protocol::generated::methods::*;

impl ChannelServer for Connection {
    fn channel_open(&mut self, channel: u16, _: ChannelOpen) -> Self::Output {
        if self.channels.contains_key(&channel) {
            return Err(AmqpError::channel_error(format!(
                "second 'channel.open' seen on channel {channel}"
            )));
        }
        if self.channel_max != 0 && channel > self.channel_max {
            return Err(AmqpError::not_allowed(format!(
                "channel {channel} is above the negotiated channel_max {}",
                self.channel_max
            )));
        }
        self.channels.insert(
            channel,
            Channel::new(self.broker.config().max_message_size, self.broker.memory()),
        );
        self.channels_changed();
        self.send(channel, ChannelOpenOk {});
        Ok(())
    }

    fn channel_flow(&mut self, channel: u16, m: ChannelFlow) -> Self::Output {
        self.channel(channel)?
            .active
            .store(m.active, std::sync::atomic::Ordering::Release);
        self.send(channel, ChannelFlowOk { active: m.active });
        if m.active {
            self.dispatch_channel(channel);
        }
        Ok(())
    }

    fn channel_flow_ok(&mut self, _: u16, _: ChannelFlowOk) -> Self::Output {
        // We never ask clients to pause; an unsolicited flow-ok is harmless.
        Ok(())
    }

    fn channel_close(&mut self, channel: u16, _: ChannelClose) -> Self::Output {
        self.release_channel(channel);
        self.channels.remove(&channel);
        self.channels_changed();
        self.send(channel, ChannelCloseOk {});
        Ok(())
    }

    fn channel_close_ok(&mut self, channel: u16, _: ChannelCloseOk) -> Self::Output {
        if self
            .channels
            .get(&channel)
            .is_some_and(|c| c.state == ChannelState::Closing)
        {
            self.channels.remove(&channel);
            self.channels_changed();
        }
        Ok(())
    }
}
