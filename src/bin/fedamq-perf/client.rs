//! A minimal AMQP 0-9-1 client on fedamq's protocol layer: the handshake (SASL PLAIN),
//! synchronous calls (channel.open, declarations, qos, consume, confirm.select) and
//! closing. The hot paths (publishing, consuming) live in `producer.rs` and
//! `consumer.rs` and use the same buffers directly.

use std::time::Duration;

use bytes::{Buf, BufMut, BytesMut};
use fedamq::protocol::frame::{FrameDecoder, FrameType, encode_frame_with};
use fedamq::protocol::generated::constants::FRAME_METHOD;
use fedamq::protocol::generated::methods::*;
use fedamq::protocol::header::PROTOCOL_HEADER;
use fedamq::protocol::{DecodeError, FieldTable, FieldValue, ShortString};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// What can end a connection.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("bad frame from the broker: {0}")]
    Decode(#[from] DecodeError),
    #[error("broker closed the {what}: {code} {text}")]
    Closed {
        what: &'static str,
        code: u16,
        text: String,
    },
    #[error("{0}")]
    Protocol(String),
}

pub type Result<T> = std::result::Result<T, Error>;

/// The frame-max we ask for (RabbitMQ's default); the broker's, if lower, wins.
const FRAME_MAX: u32 = 131_072;
/// How long a synchronous call may wait for its answer.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// `amqp://user:password@host:port/vhost`, percent-decoded: the library's parser.
pub use fedamq::peering::Remote as AmqpUri;

fn short(s: &str) -> Result<ShortString> {
    ShortString::try_from(s).map_err(|_| Error::Protocol(format!("name too long: {s:?}")))
}

/// One AMQP connection: its socket and buffers, after the handshake.
pub struct Conn {
    pub stream: TcpStream,
    /// Bytes read and not yet decoded.
    pub rbuf: BytesMut,
    /// Frames encoded and not yet written.
    pub wbuf: BytesMut,
    pub frames: FrameDecoder,
    /// Negotiated frame-max.
    pub frame_max: u32,
    /// The broker's product and version, from connection.start.
    pub server: String,
}

fn text_property(t: &FieldTable, key: &str) -> String {
    t.get(key)
        .and_then(|v| v.as_bytes())
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .unwrap_or_default()
}

impl Conn {
    /// Connects and runs the handshake up to connection.open-ok.
    pub async fn connect(uri: &AmqpUri) -> Result<Conn> {
        let stream = TcpStream::connect((uri.host.as_str(), uri.port)).await?;
        stream.set_nodelay(true)?;
        let mut conn = Conn {
            stream,
            rbuf: BytesMut::with_capacity(256 * 1024),
            wbuf: BytesMut::with_capacity(256 * 1024),
            frames: FrameDecoder::default(),
            frame_max: FRAME_MAX,
            server: String::new(),
        };
        tokio::time::timeout(CALL_TIMEOUT, conn.handshake(uri))
            .await
            .map_err(|_| Error::Protocol("handshake timed out".into()))??;
        Ok(conn)
    }

    async fn handshake(&mut self, uri: &AmqpUri) -> Result<()> {
        self.wbuf.put_slice(&PROTOCOL_HEADER);
        self.flush().await?;

        let start = match self.next_method().await? {
            (0, Method::ConnectionStart(s)) => s,
            (_, m) => {
                return Err(Error::Protocol(format!(
                    "expected connection.start, got {}",
                    m.info().name
                )));
            }
        };
        self.server = format!(
            "{} {}",
            text_property(&start.server_properties, "product"),
            text_property(&start.server_properties, "version")
        );
        let mechanisms = String::from_utf8_lossy(&start.mechanisms).into_owned();
        if !mechanisms.split_whitespace().any(|m| m == "PLAIN") {
            return Err(Error::Protocol(format!(
                "the broker does not offer PLAIN (offers {mechanisms:?})"
            )));
        }
        let mut capabilities = FieldTable::new();
        for cap in ["publisher_confirms", "consumer_cancel_notify", "basic.nack"] {
            capabilities.insert(short(cap)?, FieldValue::Bool(true));
        }
        let mut props = FieldTable::new();
        props.insert(short("product")?, "fedamq-perf".into());
        props.insert(short("version")?, env!("CARGO_PKG_VERSION").into());
        props.insert(short("platform")?, "Rust".into());
        props.insert(short("capabilities")?, FieldValue::Table(capabilities));
        let mut response = Vec::with_capacity(uri.user.len() + uri.password.len() + 2);
        response.push(0);
        response.extend_from_slice(uri.user.as_bytes());
        response.push(0);
        response.extend_from_slice(uri.password.as_bytes());
        self.send(
            0,
            &Method::ConnectionStartOk(ConnectionStartOk {
                client_properties: props,
                mechanism: short("PLAIN")?,
                response: response.into(),
                locale: short("en_US")?,
            }),
        );
        self.flush().await?;

        let tune = match self.next_method().await? {
            (0, Method::ConnectionTune(t)) => t,
            (_, m) => {
                return Err(Error::Protocol(format!(
                    "expected connection.tune, got {}",
                    m.info().name
                )));
            }
        };
        self.frame_max = match tune.frame_max {
            0 => FRAME_MAX,
            m => m.min(FRAME_MAX),
        };
        self.frames.set_max_frame_size(self.frame_max);
        // Heartbeats off: a load generator's connections are never idle for long, and
        // the broker's own liveness checks are not what is being measured.
        self.send(
            0,
            &Method::ConnectionTuneOk(ConnectionTuneOk {
                channel_max: tune.channel_max,
                frame_max: self.frame_max,
                heartbeat: 0,
            }),
        );
        self.call(
            0,
            &Method::ConnectionOpen(ConnectionOpen {
                virtual_host: short(&uri.vhost)?,
            }),
            ConnectionOpenOk::info(),
        )
        .await?;
        Ok(())
    }

    /// Encodes a method frame into the write buffer.
    pub fn send(&mut self, channel: u16, method: &Method) {
        encode_frame_with(&mut self.wbuf, FRAME_METHOD, channel, |b| method.encode(b));
    }

    /// Writes everything buffered.
    pub async fn flush(&mut self) -> Result<()> {
        if !self.wbuf.is_empty() {
            self.stream.write_all(&self.wbuf).await?;
            self.wbuf.clear();
        }
        Ok(())
    }

    /// The next method frame, on any channel; heartbeats and content frames (of a
    /// delivery or return this slow path is not interested in) are skipped.
    async fn next_method(&mut self) -> Result<(u16, Method)> {
        loop {
            if let Some(frame) = self.frames.peek(&self.rbuf)? {
                let (channel, len) = (frame.channel, frame.wire_len());
                let method = match frame.frame_type {
                    FrameType::Method => Some(Method::decode(frame.payload)?),
                    _ => None,
                };
                self.rbuf.advance(len);
                if let Some(m) = method {
                    return Ok((channel, m));
                }
                continue;
            }
            if self.stream.read_buf(&mut self.rbuf).await? == 0 {
                return Err(Error::Closed {
                    what: "connection",
                    code: 0,
                    text: "socket closed".into(),
                });
            }
        }
    }

    /// Sends `method` and waits for `want` on the same channel. A connection.close or
    /// channel.close from the broker is answered and returned as an error.
    pub async fn call(
        &mut self,
        channel: u16,
        method: &Method,
        want: &'static MethodInfo,
    ) -> Result<Method> {
        self.send(channel, method);
        self.flush().await?;
        let name = method.info().name;
        tokio::time::timeout(CALL_TIMEOUT, self.wait_for(channel, want))
            .await
            .map_err(|_| Error::Protocol(format!("no answer to {name}")))?
    }

    async fn wait_for(&mut self, channel: u16, want: &'static MethodInfo) -> Result<Method> {
        loop {
            let (ch, m) = self.next_method().await?;
            self.check_close(ch, &m).await?;
            let info = m.info();
            if ch == channel && info.class_id == want.class_id && info.method_id == want.method_id {
                return Ok(m);
            }
        }
    }

    /// Turns a close from the broker into an error, after answering it.
    pub async fn check_close(&mut self, channel: u16, m: &Method) -> Result<()> {
        match m {
            Method::ConnectionClose(c) => {
                self.send(0, &Method::ConnectionCloseOk(ConnectionCloseOk {}));
                let _ = self.flush().await;
                Err(Error::Closed {
                    what: "connection",
                    code: c.reply_code,
                    text: c.reply_text.to_string(),
                })
            }
            Method::ChannelClose(c) => {
                self.send(channel, &Method::ChannelCloseOk(ChannelCloseOk {}));
                let _ = self.flush().await;
                Err(Error::Closed {
                    what: "channel",
                    code: c.reply_code,
                    text: c.reply_text.to_string(),
                })
            }
            _ => Ok(()),
        }
    }

    pub async fn open_channel(&mut self, channel: u16) -> Result<()> {
        self.call(
            channel,
            &Method::ChannelOpen(ChannelOpen {}),
            ChannelOpenOk::info(),
        )
        .await
        .map(drop)
    }

    pub async fn declare_exchange(&mut self, channel: u16, name: &str, kind: &str) -> Result<()> {
        let m = Method::ExchangeDeclare(ExchangeDeclare {
            exchange: short(name)?,
            r#type: short(kind)?,
            ..Default::default()
        });
        self.call(channel, &m, ExchangeDeclareOk::info())
            .await
            .map(drop)
    }

    pub async fn declare_queue(
        &mut self,
        channel: u16,
        name: &str,
        auto_delete: bool,
    ) -> Result<()> {
        let m = Method::QueueDeclare(QueueDeclare {
            queue: short(name)?,
            auto_delete,
            ..Default::default()
        });
        self.call(channel, &m, QueueDeclareOk::info())
            .await
            .map(drop)
    }

    pub async fn bind_queue(
        &mut self,
        channel: u16,
        queue: &str,
        exchange: &str,
        key: &str,
    ) -> Result<()> {
        let m = Method::QueueBind(QueueBind {
            queue: short(queue)?,
            exchange: short(exchange)?,
            routing_key: short(key)?,
            ..Default::default()
        });
        self.call(channel, &m, QueueBindOk::info()).await.map(drop)
    }

    pub async fn delete_queue(&mut self, channel: u16, queue: &str) -> Result<()> {
        let m = Method::QueueDelete(QueueDelete {
            queue: short(queue)?,
            ..Default::default()
        });
        self.call(channel, &m, QueueDeleteOk::info())
            .await
            .map(drop)
    }

    pub async fn delete_exchange(&mut self, channel: u16, exchange: &str) -> Result<()> {
        let m = Method::ExchangeDelete(ExchangeDelete {
            exchange: short(exchange)?,
            ..Default::default()
        });
        self.call(channel, &m, ExchangeDeleteOk::info())
            .await
            .map(drop)
    }

    pub async fn qos(&mut self, channel: u16, prefetch_count: u16) -> Result<()> {
        let m = Method::BasicQos(BasicQos {
            prefetch_count,
            ..Default::default()
        });
        self.call(channel, &m, BasicQosOk::info()).await.map(drop)
    }

    pub async fn consume(
        &mut self,
        channel: u16,
        queue: &str,
        tag: &str,
        no_ack: bool,
    ) -> Result<()> {
        let m = Method::BasicConsume(BasicConsume {
            queue: short(queue)?,
            consumer_tag: short(tag)?,
            no_ack,
            ..Default::default()
        });
        self.call(channel, &m, BasicConsumeOk::info())
            .await
            .map(drop)
    }

    pub async fn confirm_select(&mut self, channel: u16) -> Result<()> {
        let m = Method::ConfirmSelect(ConfirmSelect { nowait: false });
        self.call(channel, &m, ConfirmSelectOk::info())
            .await
            .map(drop)
    }

    /// connection.close, then waits (briefly) for close-ok. Because the broker handles a
    /// connection's frames in order, close-ok also means every frame sent before it was
    /// taken in. Deliveries still arriving meanwhile are read and dropped.
    pub async fn close(&mut self) -> Result<()> {
        let m = Method::ConnectionClose(ConnectionClose {
            reply_code: 200,
            reply_text: short("fedamq-perf done")?,
            class_id: 0,
            method_id: 0,
        });
        let res = tokio::time::timeout(Duration::from_secs(10), async {
            self.send(0, &m);
            self.flush().await?;
            loop {
                match self.next_method().await? {
                    (0, Method::ConnectionCloseOk(_)) => return Ok(()),
                    (0, Method::ConnectionClose(_)) => {
                        // Both sides closing at once: answer and stop.
                        self.send(0, &Method::ConnectionCloseOk(ConnectionCloseOk {}));
                        let _ = self.flush().await;
                        return Ok(());
                    }
                    _ => {}
                }
            }
        })
        .await;
        match res {
            Ok(r) => r,
            Err(_) => Err(Error::Protocol("no connection.close-ok".into())),
        }
    }
}
