//! An open client connection: the byte stream, its read and write buffers and the frame
//! decoder, with synchronous calls for set-up and tear-down.

use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::error::{Error, Result};
use crate::protocol::frame::{FrameDecoder, FrameType, encode_frame_with};
use crate::protocol::generated::constants::FRAME_METHOD;
use crate::protocol::generated::methods::*;
use crate::protocol::{FieldTable, ShortString};

/// How long a synchronous call may wait for its answer.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// One AMQP connection after the handshake. The fields are public so that a hot path
/// can read frames where they lie in `rbuf` and write `wbuf` in batches of its own.
pub struct Connection<S> {
    pub stream: S,
    /// Bytes read and not yet decoded.
    pub rbuf: BytesMut,
    /// Frames encoded and not yet written.
    pub wbuf: BytesMut,
    pub frames: FrameDecoder,
    /// Negotiated in `connection.tune`.
    pub frame_max: u32,
    pub channel_max: u16,
    /// Zero: no heartbeats.
    pub heartbeat: Duration,
    /// From `connection.start`.
    pub server_properties: FieldTable,
}

fn short(s: &str) -> Result<ShortString> {
    ShortString::try_from(s).map_err(|_| Error::Protocol(format!("name too long: {s:?}")))
}

impl<S> Connection<S> {
    pub(super) fn new(stream: S, buffer_size: usize) -> Connection<S> {
        Connection {
            stream,
            rbuf: BytesMut::with_capacity(buffer_size),
            wbuf: BytesMut::with_capacity(buffer_size),
            // Until tune, the spec's minimum.
            frames: FrameDecoder::default(),
            frame_max: 0,
            channel_max: 0,
            heartbeat: Duration::ZERO,
            server_properties: FieldTable::new(),
        }
    }

    /// The server's product and version, from `connection.start`.
    pub fn server(&self) -> String {
        let text = |key: &str| {
            self.server_properties
                .get(key)
                .and_then(|v| v.as_bytes())
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default()
        };
        format!("{} {}", text("product"), text("version"))
    }

    /// Encodes a method frame into the write buffer.
    pub fn send(&mut self, channel: u16, method: &Method) {
        encode_frame_with(&mut self.wbuf, FRAME_METHOD, channel, |b| method.encode(b));
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Connection<S> {
    /// Writes everything buffered, through the stream's own buffer too (a TLS stream
    /// may keep encrypted bytes when the socket is full).
    pub async fn flush(&mut self) -> Result<()> {
        if !self.wbuf.is_empty() {
            self.stream.write_all(&self.wbuf).await?;
            self.wbuf.clear();
            self.stream.flush().await?;
        }
        Ok(())
    }

    async fn read_more(&mut self, when: &str) -> Result<()> {
        if self.stream.read_buf(&mut self.rbuf).await? == 0 {
            return Err(Error::socket_closed(when));
        }
        Ok(())
    }

    /// The next method during the handshake: heartbeats skipped; content, or a protocol
    /// header (the server wants another protocol), is an error.
    pub(super) async fn handshake_method(&mut self) -> Result<(u16, Method)> {
        loop {
            if self.rbuf.starts_with(b"AMQP") && self.rbuf.len() >= 8 {
                return Err(Error::Protocol(format!(
                    "the server wants protocol {:?} instead of AMQP 0-9-1",
                    &self.rbuf[4..8]
                )));
            }
            if let Some(frame) = self.frames.peek(&self.rbuf)? {
                let (channel, len, frame_type) =
                    (frame.channel, frame.wire_len(), frame.frame_type);
                let method = match frame_type {
                    FrameType::Method => Some(Method::decode(frame.payload)?),
                    FrameType::Heartbeat => None,
                    FrameType::Header | FrameType::Body => {
                        return Err(Error::Protocol("content frame during the handshake".into()));
                    }
                };
                self.rbuf.advance(len);
                match method {
                    Some(m) => return Ok((channel, m)),
                    None => continue,
                }
            }
            // A server without authentication_failure_close closes the socket on a bad
            // login, so that is the likely reason.
            self.read_more("during the handshake (a bad login, if the server does not send connection.close for one)")
                .await?;
        }
    }

    /// The next method frame, on any channel; heartbeats and content frames (of a
    /// delivery or return a synchronous call is not waiting for) are skipped.
    pub async fn next_method(&mut self) -> Result<(u16, Method)> {
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
            self.read_more("by the server").await?;
        }
    }

    /// Sends `method` and waits for `want` on the same channel. A connection.close or
    /// channel.close from the server is answered and returned as an error.
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

    /// Turns a close from the server into an error, after answering it.
    pub async fn check_close(&mut self, channel: u16, m: &Method) -> Result<()> {
        let (what, code, text) = match m {
            Method::ConnectionClose(c) => {
                self.send(0, &Method::ConnectionCloseOk(ConnectionCloseOk {}));
                ("connection", c.reply_code, &c.reply_text)
            }
            Method::ChannelClose(c) => {
                self.send(channel, &Method::ChannelCloseOk(ChannelCloseOk {}));
                ("channel", c.reply_code, &c.reply_text)
            }
            _ => return Ok(()),
        };
        let err = Error::Closed {
            what,
            code,
            text: text.to_string(),
        };
        let _ = self.flush().await;
        Err(err)
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
        arguments: FieldTable,
    ) -> Result<()> {
        let m = Method::QueueBind(QueueBind {
            queue: short(queue)?,
            exchange: short(exchange)?,
            routing_key: short(key)?,
            arguments,
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

    /// connection.close, then waits (at most 10 s) for close-ok. Because a server
    /// handles a connection's frames in order, close-ok also means every frame sent
    /// before it was taken in. Deliveries still arriving meanwhile are read and dropped.
    pub async fn close(&mut self) -> Result<()> {
        let m = Method::ConnectionClose(ConnectionClose {
            reply_code: 200,
            reply_text: ShortString::from_static("closed by the client"),
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
