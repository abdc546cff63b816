//! The `greeting` service (spec/tunnel-greeting.xml): the smallest tunnel service, and
//! the example of adding one. Every broker accepts it: a hello is answered with a
//! hello-ok carrying the same serial and text and the answering broker's identifier.

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::protocol::ShortString;
use crate::protocol::generated::methods::{GreetingHello, GreetingHelloOk, Method};
use crate::protocol::generated::services::{GREETING, Greeting, GreetingService};

use super::{TunnelSender, Tunnels};

/// Answers hellos. Answers go out in order through one task, which waits when the
/// window is full (a handler itself must not wait).
pub struct Responder {
    answers: mpsc::UnboundedSender<Method>,
    from: ShortString,
}

impl Responder {
    pub fn new(sender: TunnelSender, from: &str) -> Responder {
        let (answers, mut rx) = mpsc::unbounded_channel::<Method>();
        tokio::spawn(async move {
            while let Some(m) = rx.recv().await {
                if sender.send(m).await.is_err() {
                    return;
                }
            }
        });
        Responder {
            answers,
            from: ShortString::try_from(from).unwrap_or_default(),
        }
    }
}

impl GreetingService for Responder {
    fn hello(&mut self, method: GreetingHello) {
        let _ = self.answers.send(Method::GreetingHelloOk(GreetingHelloOk {
            serial: method.serial,
            text: method.text,
            from: self.from.clone(),
        }));
    }

    fn hello_ok(&mut self, _: GreetingHelloOk) {}
}

/// Hands every greeting method that arrives to a channel: for an opener that wants to
/// see the answers.
pub struct Forward(pub mpsc::UnboundedSender<Method>);

impl GreetingService for Forward {
    fn hello(&mut self, method: GreetingHello) {
        let _ = self.0.send(Method::GreetingHello(method));
    }

    fn hello_ok(&mut self, method: GreetingHelloOk) {
        let _ = self.0.send(Method::GreetingHelloOk(method));
    }
}

/// A hello with `serial` and `text`.
pub fn hello(serial: u64, text: &str) -> GreetingHello {
    GreetingHello {
        serial,
        text: Bytes::copy_from_slice(text.as_bytes()),
    }
}

/// Registers the greeting service on a broker's tunnels.
pub(super) fn register(tunnels: &Tunnels, identifier: &str) {
    let from = identifier.to_owned();
    tunnels.register(&GREETING, move |sender| {
        Box::new(Greeting(Responder::new(sender, &from)))
    });
}
