//! The `access` class: AMQP 0-8's access tickets, which old clients still ask for.

use crate::connection::Connection;
use crate::protocol::generated::dispatch::AccessServer;
use crate::protocol::generated::methods::*;

impl AccessServer for Connection {
    fn access_request(&mut self, channel: u16, _: AccessRequest) -> Self::Output {
        // AMQP 0-8's tickets: granted whatever is asked, with ticket 1, as RabbitMQ does;
        // permissions are checked on each operation instead.
        self.send(channel, AccessRequestOk { ticket: 1 });
        Ok(())
    }
}
