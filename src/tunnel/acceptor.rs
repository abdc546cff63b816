//! The accepting side of tunnels, on one client connection of this broker.
//!
//! The connection hands every tunnel method to its [`Acceptor`] once it knows the
//! client announced the `tunnels` capability (to any other client a tunnel method is
//! an unknown class, as it was before tunnels existed). `tunnel.open` needs a user
//! with the `peering` tag (else 403), a registered service (else 404) at the same
//! version (else 406); it finds the tunnel's endpoint by (opener, service), made on
//! the first open and kept across the opener's reconnects, answers `open-ok` with
//! what it received, and attaches the endpoint to this connection, which sends again
//! what the opener missed.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::BytesMut;

use crate::broker::error::AmqpError;
use crate::protocol::ReplyCode;
use crate::protocol::frame::encode_frame_with;
use crate::protocol::generated::constants::FRAME_METHOD;
use crate::protocol::generated::methods::{Method, TunnelCloseOk, TunnelOpen};

use super::endpoint::{Endpoint, Wire};
use super::{PEERING_TAG, Tunnels};

/// Writes encoded frames on the connection (its writer task), from any thread.
pub type FrameWriter = Arc<dyn Fn(bytes::Bytes) + Send + Sync>;

/// The tunnels accepted on one connection, by channel.
pub struct Acceptor {
    tunnels: Arc<Tunnels>,
    writer: FrameWriter,
    open: HashMap<u16, Accepted>,
}

/// A tunnel open on one channel: its endpoint, the attachment, and its registry key.
struct Accepted {
    endpoint: Arc<Endpoint>,
    generation: u64,
    key: (String, &'static str),
}

impl Acceptor {
    pub fn new(tunnels: Arc<Tunnels>, writer: FrameWriter) -> Acceptor {
        Acceptor {
            tunnels,
            writer,
            open: HashMap::new(),
        }
    }

    /// A tunnel method on `channel` (open on the connection) from `user` with
    /// `tags`. An answer for the connection to send is encoded into `out`. An open
    /// returns the tunnel to [`Acceptor::attach`] once the caller has handed `out` to
    /// the writer: the endpoint then writes `open-ok` and what the opener missed.
    pub fn method(
        &mut self,
        channel: u16,
        tags: &[String],
        user: &str,
        method: Method,
        out: &mut BytesMut,
    ) -> Result<Option<Attach>, AmqpError> {
        match method {
            Method::TunnelOpen(open) => self.open(channel, tags, user, open),
            Method::TunnelFlow(f) => {
                self.on(channel, "tunnel.flow")?.0.acknowledged(f.received);
                Ok(None)
            }
            Method::TunnelClose(_) => {
                let a = self
                    .open
                    .remove(&channel)
                    .ok_or_else(|| not_open(channel, "tunnel.close"))?;
                a.endpoint.close();
                self.tunnels.forget_accepted(&a.key, &a.endpoint);
                encode(out, channel, &Method::TunnelCloseOk(TunnelCloseOk {}));
                Ok(None)
            }
            Method::TunnelCloseOk(_) => Ok(None),
            Method::TunnelOpenOk(_) => Err(AmqpError::command_invalid(
                "tunnel.open-ok is sent by the acceptor, not to it".to_string(),
            )),
            m => Err(AmqpError::command_invalid(format!(
                "{} is not a tunnel method",
                m.name()
            ))),
        }
    }

    /// A service method on `channel`, as its frame's payload (the connection does not
    /// decode it: the service may be one the broker's spec does not define).
    pub fn service_method(&mut self, channel: u16, payload: &[u8]) -> Result<(), AmqpError> {
        let (endpoint, generation) = self.on(channel, "a service method")?;
        endpoint.receive(*generation, payload).map_err(|e| {
            AmqpError::command_invalid(format!(
                "class {} is not the tunnel's service {} (class {})",
                e.0, endpoint.core.service.name, endpoint.core.service.class_id
            ))
        })
    }

    fn on(&self, channel: u16, name: &str) -> Result<(&Arc<Endpoint>, &u64), AmqpError> {
        self.open
            .get(&channel)
            .map(|a| (&a.endpoint, &a.generation))
            .ok_or_else(|| not_open(channel, name))
    }

    fn open(
        &mut self,
        channel: u16,
        tags: &[String],
        user: &str,
        open: TunnelOpen,
    ) -> Result<Option<Attach>, AmqpError> {
        if !tags.iter().any(|t| t == PEERING_TAG) {
            return Err(AmqpError::new(
                ReplyCode::AccessRefused,
                format!(
                    "ACCESS_REFUSED - user '{user}' may not open tunnels (it needs the '{PEERING_TAG}' tag)"
                ),
            ));
        }
        if self.open.contains_key(&channel) {
            return Err(AmqpError::command_invalid(format!(
                "a tunnel is already open on channel {channel}"
            )));
        }
        let service = std::str::from_utf8(open.service.as_bytes()).unwrap_or("");
        let Some((info, endpoint)) = self.tunnels.accepted(open.opener.as_bytes(), service) else {
            return Err(AmqpError::new(
                ReplyCode::NotFound,
                format!("NOT_FOUND - no tunnel service '{service}'"),
            ));
        };
        if info.version != open.version {
            return Err(AmqpError::new(
                ReplyCode::PreconditionFailed,
                format!(
                    "PRECONDITION_FAILED - service '{service}' is at version {}, not {}",
                    info.version, open.version
                ),
            ));
        }
        let key = (
            String::from_utf8_lossy(open.opener.as_bytes()).into_owned(),
            info.name,
        );
        Ok(Some(Attach {
            channel,
            endpoint,
            theirs: open.received,
            their_window: open.window,
            version: info.version,
            key,
        }))
    }

    /// After the connection handed `out` to the writer: attaches the endpoint, which
    /// writes `open-ok` (with what it received at that instant), then sends again what
    /// the opener missed.
    pub fn attach(&mut self, a: Attach) {
        let writer = self.writer.clone();
        let channel = a.channel;
        let wire: Wire = Box::new(move |payload: &bytes::Bytes| {
            let mut buf = BytesMut::with_capacity(payload.len() + 8);
            encode_frame_with(&mut buf, FRAME_METHOD, channel, |b| {
                b.extend_from_slice(payload)
            });
            writer(buf.freeze());
        });
        let generation =
            a.endpoint
                .attach_answering(wire, a.theirs, a.their_window, Some(a.version));
        self.open.insert(
            a.channel,
            Accepted {
                endpoint: a.endpoint,
                generation,
                key: a.key,
            },
        );
    }

    /// The channel closed: its tunnel waits for the opener to come back.
    pub fn channel_closed(&mut self, channel: u16) {
        if let Some(a) = self.open.remove(&channel) {
            a.endpoint.detach(a.generation);
        }
    }
}

impl Drop for Acceptor {
    fn drop(&mut self) {
        for a in self.open.values() {
            a.endpoint.detach(a.generation);
        }
    }
}

/// A tunnel to attach once `open-ok` is on its way.
pub struct Attach {
    channel: u16,
    endpoint: Arc<Endpoint>,
    theirs: u64,
    their_window: u32,
    version: u16,
    key: (String, &'static str),
}

fn encode(out: &mut BytesMut, channel: u16, m: &Method) {
    encode_frame_with(out, FRAME_METHOD, channel, |b| m.encode(b));
}

fn not_open(channel: u16, name: &str) -> AmqpError {
    AmqpError::command_invalid(format!(
        "{name} on channel {channel}, where no tunnel is open"
    ))
}
