//! Which requests an owner may make of the remote, and how they are completed so that a
//! replay after a reconnect sends exactly the same thing.

use crate::protocol::ShortString;
use crate::protocol::generated::methods::Method;

use super::super::declared::Waiter;
use super::super::error::PeeringError;
use super::TaskState;

impl TaskState {
    /// Checks and completes a request; `None` when refused (the waiter has been answered).
    pub(super) fn admit(&mut self, method: Method, reply: Waiter) -> Option<(Method, Waiter)> {
        let info = method.info();
        // Only synchronous requests without content: connection and channel methods are
        // the peering's own, publishes go through the outbox, acks through an Acker, and
        // basic.get, confirm.select and tx.select would change what the channel means.
        let refusal = if info.has_content {
            Some(PeeringError::NotARequest(
                "a method with content (use publish)",
            ))
        } else if !info.received_by_server
            || !info.synchronous
            || info.class_id == 10
            || info.class_id == 20
            || matches!(
                method,
                Method::BasicGet(_) | Method::ConfirmSelect(_) | Method::TxSelect(_)
            )
        {
            Some(PeeringError::NotARequest(info.name))
        } else {
            None
        };
        if let Some(e) = refusal {
            let _ = reply.send(Err(e));
            return None;
        }
        Some((self.complete(method), reply))
    }

    /// Server-named queues and consumer tags would change on every replay, breaking
    /// the bindings and consumers that name them: the peering names them itself.
    /// no-wait is off: every request is answered.
    fn complete(&mut self, method: Method) -> Method {
        match method {
            Method::QueueDeclare(mut m) => {
                if m.queue.is_empty() && !m.passive {
                    m.queue = self.made_up_name("fedamq.peering.q");
                }
                m.no_wait = false;
                Method::QueueDeclare(m)
            }
            Method::BasicConsume(mut m) => {
                if m.consumer_tag.is_empty() {
                    m.consumer_tag = self.made_up_name("fedamq.peering.ctag");
                }
                m.no_wait = false;
                Method::BasicConsume(m)
            }
            Method::ExchangeDeclare(mut m) => {
                m.no_wait = false;
                Method::ExchangeDeclare(m)
            }
            Method::QueueBind(mut m) => {
                m.no_wait = false;
                Method::QueueBind(m)
            }
            Method::ExchangeBind(mut m) => {
                m.no_wait = false;
                Method::ExchangeBind(m)
            }
            Method::ExchangeUnbind(mut m) => {
                m.no_wait = false;
                Method::ExchangeUnbind(m)
            }
            Method::BasicCancel(mut m) => {
                m.no_wait = false;
                Method::BasicCancel(m)
            }
            Method::QueueDelete(mut m) => {
                m.no_wait = false;
                Method::QueueDelete(m)
            }
            Method::ExchangeDelete(mut m) => {
                m.no_wait = false;
                Method::ExchangeDelete(m)
            }
            Method::QueuePurge(mut m) => {
                m.no_wait = false;
                Method::QueuePurge(m)
            }
            other => other,
        }
    }

    fn made_up_name(&mut self, prefix: &str) -> ShortString {
        let n = self.next_serial();
        let name = format!("{prefix}-{:08x}-{n}", rand::random::<u32>());
        ShortString::new(name).unwrap_or_default()
    }
}
