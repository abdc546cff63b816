//! Opening a connection: protocol header, start/start-ok (authentication), tune/tune-ok,
//! open/open-ok. Runs before the main loop, one method at a time, under a time limit.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::auth::sasl::{MECHANISMS, MECHANISMS_WITH_EXTERNAL};
use crate::broker::Broker;
use crate::broker::admission::Login;
use crate::broker::error::AmqpError;
use crate::broker::vhost::VHost;
use crate::protocol::frame::{FrameDecoder, FramePayload, encode_frame_with};
use crate::protocol::generated::constants::{FRAME_METHOD, FRAME_MIN_SIZE};
use crate::protocol::generated::methods::{
    ConnectionOpenOk, ConnectionStart, ConnectionTune, Method,
};
use crate::protocol::header::{HeaderCheck, PROTOCOL_HEADER, check_protocol_header};
use crate::protocol::{FieldTable, FieldValue, ShortString};

/// What the client agreed to, and who it is.
#[derive(Debug)]
pub struct Opened {
    pub user: String,
    pub vhost: Arc<VHost>,
    pub frame_max: u32,
    pub channel_max: u16,
    pub heartbeat: u16,
    pub capabilities: Capabilities,
    /// The client's `product` property, if any.
    pub product: Option<String>,
    /// The client's `identifier` property: the broker identifier a fedamq peering sends.
    pub identifier: Option<String>,
    /// Bytes read past the handshake (the client may pipeline its first methods).
    pub leftover: BytesMut,
}

/// Client capabilities that change what the server sends.
#[derive(Debug, Clone, Copy, Default)]
pub struct Capabilities {
    pub consumer_cancel_notify: bool,
    pub connection_blocked: bool,
    /// A fedamq peering that may open tunnels (`spec/tunnel.xml`).
    pub tunnels: bool,
}

/// Why the handshake ended without an open connection.
#[derive(Debug)]
pub enum HandshakeError {
    Io(std::io::Error),
    /// Not AMQP 0-9-1: our header was sent back and the socket is to be closed. `tls`:
    /// it was a TLS handshake (a TLS client on a plain port).
    BadHeader {
        tls: bool,
    },
    /// The client went away or timed out.
    Closed,
    /// Refused with connection.close (already sent).
    Refused(AmqpError),
}

impl From<std::io::Error> for HandshakeError {
    fn from(e: std::io::Error) -> Self {
        HandshakeError::Io(e)
    }
}

struct Reader<'a, S> {
    stream: &'a mut S,
    buf: BytesMut,
    frames: FrameDecoder,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Reader<'_, S> {
    async fn method(&mut self) -> Result<Method, HandshakeError> {
        loop {
            match self.frames.decode(&mut self.buf) {
                Ok(Some(frame)) => match frame.payload {
                    FramePayload::Method(p) if frame.channel == 0 => {
                        return Method::decode(&p).map_err(|e| HandshakeError::Refused(e.into()));
                    }
                    FramePayload::Heartbeat => continue,
                    _ => {
                        return Err(HandshakeError::Refused(AmqpError::command_invalid(
                            "expected a connection method on channel 0 during the handshake",
                        )));
                    }
                },
                Ok(None) => {}
                Err(e) => return Err(HandshakeError::Refused(e.into())),
            }
            if self.stream.read_buf(&mut self.buf).await? == 0 {
                return Err(HandshakeError::Closed);
            }
        }
    }
}

async fn send(
    stream: &mut (impl AsyncWrite + Unpin),
    write: impl FnOnce(&mut BytesMut),
) -> std::io::Result<()> {
    let mut out = BytesMut::new();
    encode_frame_with(&mut out, FRAME_METHOD, 0, write);
    stream.write_all(&out).await
}

/// Refuses the connection with connection.close and waits briefly for close-ok.
async fn refuse(
    reader: &mut Reader<'_, impl AsyncRead + AsyncWrite + Unpin>,
    err: AmqpError,
    class_id: u16,
    method_id: u16,
) -> HandshakeError {
    let close = err.connection_close(class_id, method_id);
    if send(reader.stream, |b| close.encode(b)).await.is_ok() {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(1), async {
            while let Ok(m) = reader.method().await {
                if matches!(m, Method::ConnectionCloseOk(_)) {
                    break;
                }
            }
        })
        .await;
    }
    HandshakeError::Refused(err)
}

fn server_properties(broker: &Broker) -> FieldTable {
    let mut caps = FieldTable::new();
    for name in [
        "publisher_confirms",
        "exchange_exchange_bindings",
        "basic.nack",
        "consumer_cancel_notify",
        "connection.blocked",
        "authentication_failure_close",
        "per_consumer_qos",
        "consumer_priorities",
        "tunnels",
    ] {
        caps.insert(ShortString::from_static(name), FieldValue::Bool(true));
    }
    let mut props = FieldTable::new();
    let s = |v: &str| FieldValue::LongString(Bytes::copy_from_slice(v.as_bytes()));
    props.insert(ShortString::from_static("product"), s("fedamq"));
    props.insert(
        ShortString::from_static("version"),
        s(env!("CARGO_PKG_VERSION")),
    );
    props.insert(
        ShortString::from_static("platform"),
        s(&format!(
            "Rust / {} {}",
            std::env::consts::OS,
            std::env::consts::ARCH
        )),
    );
    props.insert(
        ShortString::from_static("information"),
        s("An AMQP 0-9-1 broker generated from spec XML"),
    );
    props.insert(
        ShortString::from_static("identifier"),
        s(broker.identifier()),
    );
    // RabbitMQ's federation links read the upstream's name from it (loop detection).
    props.insert(
        ShortString::from_static("cluster_name"),
        s(&broker.cluster_name()),
    );
    props.insert(
        ShortString::from_static("capabilities"),
        FieldValue::Table(caps),
    );
    props
}

fn capabilities(client_properties: &FieldTable) -> Capabilities {
    let Some(FieldValue::Table(caps)) = client_properties.get("capabilities") else {
        return Capabilities::default();
    };
    let on = |k: &str| matches!(caps.get(k), Some(FieldValue::Bool(true)));
    Capabilities {
        consumer_cancel_notify: on("consumer_cancel_notify"),
        connection_blocked: on("connection.blocked"),
        tunnels: on("tunnels"),
    }
}

/// Runs the handshake on a fresh socket. `certificate_user`: the user a verified TLS
/// client certificate names, who may log in with EXTERNAL.
pub async fn handshake(
    stream: &mut (impl AsyncRead + AsyncWrite + Unpin),
    broker: &Broker,
    certificate_user: Option<&str>,
) -> Result<Opened, HandshakeError> {
    let mut header = [0u8; 8];
    let mut seen = 0;
    while seen < 8 {
        let n = stream.read(&mut header[seen..]).await?;
        if n == 0 {
            return Err(HandshakeError::Closed);
        }
        seen += n;
        match check_protocol_header(&header[..seen]) {
            HeaderCheck::Ok => break,
            HeaderCheck::NeedMore => {}
            HeaderCheck::Mismatch => {
                stream.write_all(&PROTOCOL_HEADER).await?;
                // A TLS connection opens with a handshake record: content type 22.
                return Err(HandshakeError::BadHeader {
                    tls: header[0] == 0x16,
                });
            }
        }
    }

    let start = ConnectionStart {
        version_major: 0,
        version_minor: 9,
        server_properties: server_properties(broker),
        mechanisms: Bytes::from_static(match certificate_user {
            Some(_) => MECHANISMS_WITH_EXTERNAL.as_bytes(),
            None => MECHANISMS.as_bytes(),
        }),
        locales: Bytes::from_static(b"en_US"),
    };
    send(stream, |b| start.encode(b)).await?;

    let config = broker.config();
    let mut reader = Reader {
        stream,
        buf: BytesMut::with_capacity(4096),
        frames: FrameDecoder::new(FRAME_MIN_SIZE),
    };
    let start_ok = match reader.method().await? {
        Method::ConnectionStartOk(m) => m,
        _ => {
            let e = AmqpError::command_invalid("expected connection.start-ok");
            return Err(refuse(&mut reader, e, 10, 11).await);
        }
    };
    let login = match (start_ok.mechanism.as_bytes(), certificate_user) {
        (b"EXTERNAL", Some(user)) => broker.users().authenticate_external(user),
        (mechanism, _) => broker.users().authenticate(mechanism, &start_ok.response),
    };
    let user = match login {
        Ok(user) => user,
        Err(e) => {
            tracing::info!("{e}");
            let mech = String::from_utf8_lossy(start_ok.mechanism.as_bytes()).into_owned();
            let e = AmqpError::access_refused(format!(
                "Login was refused using authentication mechanism {mech}. For details see the broker logfile."
            ));
            return Err(refuse(&mut reader, e, 10, 11).await);
        }
    };
    let capabilities = capabilities(&start_ok.client_properties);
    let property = |key: &str| {
        start_ok
            .client_properties
            .get(key)
            .and_then(|v| v.as_bytes())
            .map(|b| String::from_utf8_lossy(b).into_owned())
    };
    let product = property("product");
    let identifier = property("identifier");

    let tune = ConnectionTune {
        channel_max: config.channel_max,
        frame_max: config.frame_max,
        heartbeat: config.heartbeat,
    };
    send(reader.stream, |b| tune.encode(b)).await?;
    let tune_ok = match reader.method().await? {
        Method::ConnectionTuneOk(m) => m,
        _ => {
            let e = AmqpError::command_invalid("expected connection.tune-ok");
            return Err(refuse(&mut reader, e, 10, 31).await);
        }
    };
    let frame_max = if tune_ok.frame_max == 0 {
        config.frame_max
    } else {
        tune_ok.frame_max
    };
    if frame_max < FRAME_MIN_SIZE {
        let e =
            AmqpError::not_allowed(format!("frame_max={frame_max} < {FRAME_MIN_SIZE} min size"));
        return Err(refuse(&mut reader, e, 10, 31).await);
    }
    if config.frame_max != 0 && frame_max > config.frame_max {
        let e = AmqpError::not_allowed(format!(
            "frame_max={frame_max} > {} max size",
            config.frame_max
        ));
        return Err(refuse(&mut reader, e, 10, 31).await);
    }
    let channel_max = match (tune_ok.channel_max, config.channel_max) {
        (0, s) => s,
        (c, 0) => c,
        (c, s) => c.min(s),
    };
    reader.frames.set_max_frame_size(frame_max);

    let open = match reader.method().await? {
        Method::ConnectionOpen(m) => m,
        _ => {
            let e = AmqpError::command_invalid("expected connection.open");
            return Err(refuse(&mut reader, e, 10, 40).await);
        }
    };
    let vhost_name = String::from_utf8_lossy(open.virtual_host.as_bytes()).into_owned();
    let Some(vhost) = broker.vhost(&vhost_name) else {
        let e = AmqpError::not_allowed(format!("vhost {vhost_name} not found"));
        return Err(refuse(&mut reader, e, 10, 40).await);
    };
    if !broker.users().may_access_vhost(&user, &vhost_name) {
        let e = AmqpError::not_allowed(format!(
            "access to vhost '{vhost_name}' refused for user '{user}'"
        ));
        return Err(refuse(&mut reader, e, 10, 40).await);
    }
    if broker.admission().installed() {
        let tags = broker.users().user_tags(&user);
        let login = Login {
            user: &user,
            tags: &tags,
            vhost: &vhost_name,
        };
        if let Err(e) = broker.admission().admit(login) {
            return Err(refuse(&mut reader, e, 10, 40).await);
        }
    }
    send(reader.stream, |b| ConnectionOpenOk {}.encode(b)).await?;
    Ok(Opened {
        user,
        vhost,
        frame_max,
        channel_max,
        heartbeat: tune_ok.heartbeat,
        capabilities,
        product,
        identifier,
        leftover: reader.buf,
    })
}
