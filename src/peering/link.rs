//! One connection to the remote: the TCP connect and the client side of the handshake,
//! driven by the generated connection machine (`spec/amq_peer.xml`), then the framed
//! socket the session runs on.
//!
//! The machine decides which incoming methods are legal in each state and what to
//! answer; this module builds the answers (it knows the credentials and the tuning) and
//! plays the owner's part at connection.start: the self-peering check and the choice of
//! SASL mechanism.

use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::protocol::frame::{FrameDecoder, encode_frame_with, take_payload};
use crate::protocol::generated::constants::FRAME_METHOD;
use crate::protocol::generated::methods::{
    ConnectionClose, ConnectionCloseOk, ConnectionOpen, ConnectionSecureOk, ConnectionStart,
    ConnectionStartOk, ConnectionTune, ConnectionTuneOk, Method,
};
use crate::protocol::generated::peer_agent::{Answer, ConnectionState, connection_transition};
use crate::protocol::wire::encode;
use crate::protocol::{FieldTable, FieldValue, ShortString};

use super::config::PeeringConfig;

/// Channels we ask for: the peering uses one, reopened after a channel error.
const CHANNEL_MAX: u16 = 8;

/// Why a connection attempt failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ConnectError {
    #[error("{0}")]
    Io(String),
    #[error("no connection within {0:?}")]
    Timeout(Duration),
    /// The remote closed the connection during the handshake (bad login: 403; vhost not
    /// allowed: 530; …).
    #[error("the remote refused the connection: {code} {text}")]
    Refused { code: u16, text: String },
    #[error("refusing to peer to ourselves: the remote's identifier {0:?} is this broker's own")]
    SelfPeering(String),
    #[error("protocol error from the remote: {0}")]
    Protocol(String),
}

impl From<std::io::Error> for ConnectError {
    fn from(e: std::io::Error) -> Self {
        ConnectError::Io(e.to_string())
    }
}

/// An open connection, ready for channels.
#[derive(Debug)]
pub(crate) struct Link {
    pub reader: OwnedReadHalf,
    pub inbuf: BytesMut,
    pub frames: FrameDecoder,
    pub frame_max: u32,
    /// Zero: no heartbeats.
    pub heartbeat: Duration,
    writer: Option<OwnedWriteHalf>,
    out: BytesMut,
}

/// Connects and logs in; `Ok` once connection.open-ok has arrived.
pub(crate) async fn connect(config: &PeeringConfig) -> Result<Link, ConnectError> {
    tokio::time::timeout(config.connect_timeout, handshake(config))
        .await
        .unwrap_or(Err(ConnectError::Timeout(config.connect_timeout)))
}

async fn handshake(config: &PeeringConfig) -> Result<Link, ConnectError> {
    let remote = &config.remote;
    let stream = TcpStream::connect((remote.host.as_str(), remote.port)).await?;
    stream.set_nodelay(true)?;
    let (reader, writer) = stream.into_split();
    let mut link = Link {
        reader,
        inbuf: BytesMut::with_capacity(64 * 1024),
        // Until tune, the spec's minimum.
        frames: FrameDecoder::default(),
        frame_max: 0,
        heartbeat: Duration::ZERO,
        writer: Some(writer),
        out: BytesMut::new(),
    };
    link.out.put_slice(b"AMQP\x00\x00\x09\x01");
    link.flush().await?;

    let mut state = ConnectionState::initial();
    let mut response = Bytes::new();
    let mut mechanism = ShortString::from_static("PLAIN");
    let mut tune = ConnectionTuneOk::default();
    loop {
        let (channel, method) = link.read_method().await?;
        if channel != 0 {
            return Err(ConnectError::Protocol(format!(
                "{} on channel {channel} during the handshake",
                method.name()
            )));
        }
        let transition = match connection_transition(state, &method) {
            Ok(Some(t)) => t,
            Ok(None) => continue,
            Err(refusal) => {
                link.send_method(
                    0,
                    &Method::ConnectionClose(ConnectionClose {
                        reply_code: refusal.code.code(),
                        reply_text: ShortString::from_static(refusal.text),
                        class_id: method.class_id(),
                        method_id: method.method_id(),
                    }),
                );
                let _ = link.flush().await;
                return Err(ConnectError::Protocol(refusal.text.into()));
            }
        };
        // The owner's part, for the methods handed to it.
        match &method {
            Method::ConnectionStart(start) => {
                check_not_self(config, start)?;
                (mechanism, response) = choose_mechanism(config, start)?;
            }
            Method::ConnectionTune(t) => {
                tune = negotiate(config, t);
                link.frame_max = tune.frame_max;
                link.frames = FrameDecoder::new(tune.frame_max);
                link.heartbeat = Duration::from_secs(tune.heartbeat.into());
            }
            _ => {}
        }
        for answer in transition.send {
            let m = match answer {
                Answer::ConnectionStartOk => Method::ConnectionStartOk(ConnectionStartOk {
                    client_properties: config.client_properties(),
                    mechanism: mechanism.clone(),
                    response: response.clone(),
                    locale: ShortString::from_static("en_US"),
                }),
                Answer::ConnectionSecureOk => Method::ConnectionSecureOk(ConnectionSecureOk {
                    response: response.clone(),
                }),
                Answer::ConnectionTuneOk => Method::ConnectionTuneOk(tune.clone()),
                Answer::ConnectionOpen => Method::ConnectionOpen(ConnectionOpen {
                    virtual_host: ShortString::new(remote.vhost.clone()).map_err(|_| {
                        ConnectError::Protocol("vhost name longer than 255 octets".into())
                    })?,
                }),
                Answer::ConnectionCloseOk => Method::ConnectionCloseOk(ConnectionCloseOk {}),
                Answer::ChannelFlowOk | Answer::ChannelCloseOk => continue,
            };
            link.send_method(0, &m);
        }
        link.flush().await?;
        state = transition.next;
        match (state, method) {
            (ConnectionState::Open, _) => return Ok(link),
            (ConnectionState::Closed, Method::ConnectionClose(c)) => {
                return Err(ConnectError::Refused {
                    code: c.reply_code,
                    text: c.reply_text.to_string(),
                });
            }
            _ => {}
        }
    }
}

/// The remote announcing our own identifier is this broker: OpenAMQ panicked here and
/// shut down; we refuse the peering and say why.
fn check_not_self(config: &PeeringConfig, start: &ConnectionStart) -> Result<(), ConnectError> {
    let theirs = start
        .server_properties
        .get("identifier")
        .and_then(FieldValue::as_bytes);
    match (&config.local_identifier, theirs) {
        (Some(ours), Some(theirs)) if ours.as_bytes() == theirs => {
            Err(ConnectError::SelfPeering(ours.clone()))
        }
        _ => Ok(()),
    }
}

/// PLAIN when offered (every current server), else AMQPLAIN.
fn choose_mechanism(
    config: &PeeringConfig,
    start: &ConnectionStart,
) -> Result<(ShortString, Bytes), ConnectError> {
    let offered = |name: &[u8]| start.mechanisms.split(|b| *b == b' ').any(|m| m == name);
    let (user, pass) = (&config.remote.user, &config.remote.password);
    if offered(b"PLAIN") {
        let mut r = BytesMut::new();
        r.put_u8(0);
        r.put_slice(user.as_bytes());
        r.put_u8(0);
        r.put_slice(pass.as_bytes());
        return Ok((ShortString::from_static("PLAIN"), r.freeze()));
    }
    if offered(b"AMQPLAIN") {
        // A field table without its length prefix.
        let table: FieldTable = [
            (
                ShortString::from_static("LOGIN"),
                FieldValue::from(user.as_str()),
            ),
            (
                ShortString::from_static("PASSWORD"),
                FieldValue::from(pass.as_str()),
            ),
        ]
        .into_iter()
        .collect();
        let mut r = BytesMut::new();
        encode::table(&mut r, &table);
        return Ok((ShortString::from_static("AMQPLAIN"), r.freeze().slice(4..)));
    }
    Err(ConnectError::Protocol(format!(
        "the remote offers neither PLAIN nor AMQPLAIN (it offers {:?})",
        String::from_utf8_lossy(&start.mechanisms)
    )))
}

/// The lower of the two limits where both set one, else whichever is set.
fn lower_nonzero<T: Ord + Default + Copy>(a: T, b: T) -> T {
    let zero = T::default();
    match (a == zero, b == zero) {
        (true, _) => b,
        (_, true) => a,
        _ => a.min(b),
    }
}

fn negotiate(config: &PeeringConfig, t: &ConnectionTune) -> ConnectionTuneOk {
    ConnectionTuneOk {
        channel_max: lower_nonzero(t.channel_max, CHANNEL_MAX),
        frame_max: lower_nonzero(t.frame_max, config.frame_max),
        heartbeat: lower_nonzero(t.heartbeat, config.heartbeat),
    }
}

impl Link {
    pub(crate) fn send_method(&mut self, channel: u16, method: &Method) {
        encode_frame_with(&mut self.out, FRAME_METHOD, channel, |b| method.encode(b));
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        if let Some(w) = &mut self.writer {
            w.write_all(&self.out).await?;
        }
        self.out.clear();
        Ok(())
    }

    /// The next method during the handshake (heartbeats skipped; content is an error).
    async fn read_method(&mut self) -> Result<(u16, Method), ConnectError> {
        loop {
            if self.inbuf.starts_with(b"AMQP") && self.inbuf.len() >= 8 {
                return Err(ConnectError::Protocol(format!(
                    "the remote wants protocol {:?} instead of AMQP 0-9-1",
                    &self.inbuf[4..8]
                )));
            }
            match self.frames.peek(&self.inbuf) {
                Err(e) => return Err(ConnectError::Protocol(e.to_string())),
                Ok(Some(frame)) => {
                    let (channel, len) = (frame.channel, frame.payload.len());
                    let is_method = frame.frame_type == crate::protocol::frame::FrameType::Method;
                    let is_heartbeat =
                        frame.frame_type == crate::protocol::frame::FrameType::Heartbeat;
                    let payload = take_payload(&mut self.inbuf, len);
                    if is_heartbeat {
                        continue;
                    }
                    if !is_method {
                        return Err(ConnectError::Protocol(
                            "content frame during the handshake".into(),
                        ));
                    }
                    let method = Method::decode(&payload)
                        .map_err(|e| ConnectError::Protocol(e.to_string()))?;
                    return Ok((channel, method));
                }
                Ok(None) => {
                    if self.reader.read_buf(&mut self.inbuf).await? == 0 {
                        return Err(ConnectError::Io(
                            "the remote closed the socket during the handshake (a server \
                             without authentication_failure_close does this on a bad login)"
                                .into(),
                        ));
                    }
                }
            }
        }
    }

    /// Hands the write half to a writer task, so the session never waits on the socket
    /// while it has input to read. Returns the sender and the task (aborted when the
    /// session ends, in case it is stuck writing to a stalled link).
    pub(crate) fn spawn_writer(&mut self) -> (mpsc::UnboundedSender<Bytes>, JoinHandle<()>) {
        let (tx, mut rx) = mpsc::unbounded_channel::<Bytes>();
        let writer = self.writer.take();
        let task = tokio::spawn(async move {
            let Some(mut writer) = writer else { return };
            while let Some(first) = rx.recv().await {
                let mut ok = writer.write_all(&first).await.is_ok();
                // Whatever else is queued goes in the same breath.
                while ok {
                    match rx.try_recv() {
                        Ok(more) => ok = writer.write_all(&more).await.is_ok(),
                        Err(_) => break,
                    }
                }
                if !ok {
                    return;
                }
            }
            let _ = writer.shutdown().await;
        });
        (tx, task)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn start_offering(mechanisms: &'static [u8]) -> ConnectionStart {
        ConnectionStart {
            version_major: 0,
            version_minor: 9,
            mechanisms: Bytes::from_static(mechanisms),
            ..Default::default()
        }
    }

    /// Both responses are what the broker's own (independently written) SASL parser
    /// accepts.
    #[test]
    fn plain_when_offered_else_amqplain() {
        let config =
            PeeringConfig::new(super::super::Remote::from_uri("amqp://guest:guest@h/").unwrap());
        let users = crate::config::Config::default().user_table();
        let (m, r) = choose_mechanism(&config, &start_offering(b"AMQPLAIN PLAIN")).unwrap();
        assert_eq!(m, "PLAIN");
        assert_eq!(users.authenticate(b"PLAIN", &r).unwrap(), "guest");
        let (m, r) = choose_mechanism(&config, &start_offering(b"AMQPLAIN")).unwrap();
        assert_eq!(m, "AMQPLAIN");
        assert_eq!(users.authenticate(b"AMQPLAIN", &r).unwrap(), "guest");
        assert!(choose_mechanism(&config, &start_offering(b"EXTERNAL")).is_err());
    }

    #[test]
    fn limits_take_the_lower_nonzero() {
        assert_eq!(lower_nonzero(0u16, 10), 10);
        assert_eq!(lower_nonzero(60u16, 0), 60);
        assert_eq!(lower_nonzero(60u16, 10), 10);
        assert_eq!(lower_nonzero(0u32, 0), 0);
    }
}
