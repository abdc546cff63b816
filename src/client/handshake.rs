//! The client side of opening a connection, driven by the generated connection machine
//! (`spec/amq_peer.xml`): the machine says which of the server's methods are legal in
//! each state and what to answer; this module builds the answers (it knows the login and
//! the limits) and plays the owner's part at `connection.start` (the self-connection
//! check, the choice of SASL mechanism) and `connection.tune` (the negotiation).

use std::time::Duration;

use bytes::{BufMut, Bytes};
use tokio::io::{AsyncRead, AsyncWrite};

use super::connection::Connection;
use super::error::{Error, Result};
use super::sasl;
use crate::protocol::frame::FrameDecoder;
use crate::protocol::generated::methods::{
    ConnectionClose, ConnectionCloseOk, ConnectionOpen, ConnectionSecureOk, ConnectionStart,
    ConnectionStartOk, ConnectionTune, ConnectionTuneOk, Method,
};
use crate::protocol::generated::peer_agent::{Answer, ConnectionState, connection_transition};
use crate::protocol::header::PROTOCOL_HEADER;
use crate::protocol::{FieldTable, FieldValue, ShortString};

/// What the client proposes for heartbeats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Heartbeat {
    /// None, whatever the server proposes (a load generator, whose connections are
    /// never idle for long).
    Off,
    /// The lower of this and the server's, where both are non-zero; else whichever is.
    Propose(u16),
}

/// Who logs in where, and the limits to negotiate.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    pub user: String,
    pub password: String,
    pub vhost: String,
    /// Sent in `connection.start-ok` (product, version, capabilities, …).
    pub client_properties: FieldTable,
    /// Largest frame we take; the lower of this and the server's wins (0: the server's).
    pub frame_max: u32,
    /// Most channels; the lower of this and the server's wins (0: the server's).
    pub channel_max: u16,
    pub heartbeat: Heartbeat,
    /// Refuse a server whose `identifier` server property is this: a broker that would
    /// be connecting to itself.
    pub refuse_identifier: Option<String>,
    /// Initial size of each of the read and write buffers.
    pub buffer_size: usize,
}

impl ConnectOptions {
    /// A login with RabbitMQ clients' defaults: frame_max 131072, the server's
    /// channel_max, the server's heartbeat, no client properties.
    pub fn new(user: &str, password: &str, vhost: &str) -> ConnectOptions {
        ConnectOptions {
            user: user.into(),
            password: password.into(),
            vhost: vhost.into(),
            client_properties: FieldTable::new(),
            frame_max: 131_072,
            channel_max: 0,
            heartbeat: Heartbeat::Propose(0),
            refuse_identifier: None,
            buffer_size: 64 * 1024,
        }
    }
}

/// The lower of the two limits where both set one, else whichever is set.
pub fn lower_nonzero<T: Ord + Default + Copy>(a: T, b: T) -> T {
    let zero = T::default();
    match (a == zero, b == zero) {
        (true, _) => b,
        (_, true) => a,
        _ => a.min(b),
    }
}

fn negotiate(options: &ConnectOptions, t: &ConnectionTune) -> ConnectionTuneOk {
    ConnectionTuneOk {
        channel_max: lower_nonzero(t.channel_max, options.channel_max),
        frame_max: lower_nonzero(t.frame_max, options.frame_max),
        heartbeat: match options.heartbeat {
            Heartbeat::Off => 0,
            Heartbeat::Propose(h) => lower_nonzero(t.heartbeat, h),
        },
    }
}

/// The server announcing our own identifier: OpenAMQ panicked here and shut down; we
/// refuse and say why.
fn check_not_self(options: &ConnectOptions, start: &ConnectionStart) -> Result<()> {
    let theirs = start
        .server_properties
        .get("identifier")
        .and_then(FieldValue::as_bytes);
    match (&options.refuse_identifier, theirs) {
        (Some(ours), Some(theirs)) if ours.as_bytes() == theirs => {
            Err(Error::SelfConnection(ours.clone()))
        }
        _ => Ok(()),
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Connection<S> {
    /// Runs the handshake on `stream`; `Ok` once `connection.open-ok` has arrived. A
    /// `connection.close` from the server (bad login: 403; vhost refused: 530) is
    /// [`Error::Closed`]. Bound the time it may take with `tokio::time::timeout`.
    pub async fn open(stream: S, options: &ConnectOptions) -> Result<Connection<S>> {
        let mut conn = Connection::new(stream, options.buffer_size);
        conn.wbuf.put_slice(&PROTOCOL_HEADER);
        conn.flush().await?;

        let mut state = ConnectionState::initial();
        let mut response = Bytes::new();
        let mut mechanism = ShortString::from_static("PLAIN");
        let mut tune = ConnectionTuneOk::default();
        loop {
            let (channel, method) = conn.handshake_method().await?;
            if channel != 0 {
                return Err(Error::Protocol(format!(
                    "{} on channel {channel} during the handshake",
                    method.name()
                )));
            }
            let transition = match connection_transition(state, &method) {
                Ok(Some(t)) => t,
                Ok(None) => continue,
                Err(refusal) => {
                    conn.send(
                        0,
                        &Method::ConnectionClose(ConnectionClose {
                            reply_code: refusal.code.code(),
                            reply_text: ShortString::from_static(refusal.text),
                            class_id: method.class_id(),
                            method_id: method.method_id(),
                        }),
                    );
                    let _ = conn.flush().await;
                    return Err(Error::Protocol(refusal.text.into()));
                }
            };
            // The owner's part, for the methods handed to it.
            match &method {
                Method::ConnectionStart(start) => {
                    check_not_self(options, start)?;
                    (mechanism, response) =
                        sasl::respond(&start.mechanisms, &options.user, &options.password)?;
                    conn.server_properties = start.server_properties.clone();
                }
                Method::ConnectionTune(t) => {
                    tune = negotiate(options, t);
                    conn.frame_max = tune.frame_max;
                    conn.channel_max = tune.channel_max;
                    conn.frames = FrameDecoder::new(tune.frame_max);
                    conn.heartbeat = Duration::from_secs(tune.heartbeat.into());
                }
                _ => {}
            }
            for answer in transition.send {
                let m = match answer {
                    Answer::ConnectionStartOk => Method::ConnectionStartOk(ConnectionStartOk {
                        client_properties: options.client_properties.clone(),
                        mechanism: mechanism.clone(),
                        response: response.clone(),
                        locale: ShortString::from_static("en_US"),
                    }),
                    Answer::ConnectionSecureOk => Method::ConnectionSecureOk(ConnectionSecureOk {
                        response: response.clone(),
                    }),
                    Answer::ConnectionTuneOk => Method::ConnectionTuneOk(tune.clone()),
                    Answer::ConnectionOpen => Method::ConnectionOpen(ConnectionOpen {
                        virtual_host: ShortString::new(options.vhost.clone()).map_err(|_| {
                            Error::Protocol("vhost name longer than 255 octets".into())
                        })?,
                    }),
                    Answer::ConnectionCloseOk => Method::ConnectionCloseOk(ConnectionCloseOk {}),
                    Answer::ChannelFlowOk | Answer::ChannelCloseOk => continue,
                };
                conn.send(0, &m);
            }
            conn.flush().await?;
            state = transition.next;
            match (state, method) {
                (ConnectionState::Open, _) => return Ok(conn),
                (ConnectionState::Closed, Method::ConnectionClose(c)) => {
                    return Err(Error::Closed {
                        what: "connection",
                        code: c.reply_code,
                        text: c.reply_text.to_string(),
                    });
                }
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_take_the_lower_nonzero() {
        assert_eq!(lower_nonzero(0u16, 10), 10);
        assert_eq!(lower_nonzero(60u16, 0), 60);
        assert_eq!(lower_nonzero(60u16, 10), 10);
        assert_eq!(lower_nonzero(0u32, 0), 0);
    }

    #[test]
    fn heartbeat_off_is_off_whatever_the_server_says() {
        let tune = ConnectionTune {
            channel_max: 2047,
            frame_max: 131_072,
            heartbeat: 60,
        };
        let mut o = ConnectOptions::new("u", "p", "/");
        o.heartbeat = Heartbeat::Off;
        o.frame_max = 0;
        assert_eq!(
            negotiate(&o, &tune),
            ConnectionTuneOk {
                channel_max: 2047,
                frame_max: 131_072,
                heartbeat: 0
            }
        );
        o.heartbeat = Heartbeat::Propose(10);
        o.channel_max = 8;
        o.frame_max = 4096;
        assert_eq!(
            negotiate(&o, &tune),
            ConnectionTuneOk {
                channel_max: 8,
                frame_max: 4096,
                heartbeat: 10
            }
        );
    }
}
