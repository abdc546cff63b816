//! A minimal raw AMQP client over TCP for tests that must send what no real client
//! would: malformed frames, wrong-channel methods, hostile sizes. The handshake is
//! fedamq's client (`fedamq::client`); after it, fedamq's codec for the happy path and
//! raw bytes for everything else.

use std::net::SocketAddr;

use bytes::{Bytes, BytesMut};
use fedamq::client::{ConnectOptions, Connection, Heartbeat};
use fedamq::protocol::frame::{FrameDecoder, FramePayload, encode_frame_with};
use fedamq::protocol::generated::methods::*;
use fedamq::protocol::{FieldTable, FieldValue, ShortString};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub struct Client {
    pub stream: TcpStream,
    buf: BytesMut,
    frames: FrameDecoder,
}

/// A decoded method frame: (channel, method).
pub struct MethodFrame(pub u16, pub Method);

impl MethodFrame {
    pub fn class_method(&self) -> (u16, u16) {
        (self.1.class_id(), self.1.method_id())
    }

    pub fn reply_code(&self) -> u16 {
        match &self.1 {
            Method::ConnectionClose(c) => c.reply_code,
            Method::ChannelClose(c) => c.reply_code,
            other => panic!("not a close: {}", other.name()),
        }
    }
}

impl Client {
    /// Connects without sending anything.
    pub async fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).await.unwrap();
        Client {
            stream,
            buf: BytesMut::new(),
            frames: FrameDecoder::new(131_072),
        }
    }

    /// Connects and completes the handshake (fedamq's client) as guest with the given
    /// heartbeat (0: none), announcing the `connection.blocked` capability.
    pub async fn open(addr: SocketAddr, heartbeat: u16) -> Client {
        Client::open_as(addr, "guest", "guest", "/", heartbeat).await
    }

    /// Connects and completes the handshake as `user` on `vhost`.
    pub async fn open_as(
        addr: SocketAddr,
        user: &str,
        password: &str,
        vhost: &str,
        heartbeat: u16,
    ) -> Client {
        let stream = TcpStream::connect(addr).await.unwrap();
        Client::handshake(stream, user, password, vhost, heartbeat).await
    }

    /// Connects with a small socket receive buffer, so that what the broker sends piles
    /// up in the broker rather than in the kernel once the test stops reading, and
    /// completes the handshake as guest without heartbeats.
    pub async fn open_small_window(addr: SocketAddr) -> Client {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let stream = socket.connect(addr).await.unwrap();
        Client::handshake(stream, "guest", "guest", "/", 0).await
    }

    async fn handshake(
        stream: TcpStream,
        user: &str,
        password: &str,
        vhost: &str,
        heartbeat: u16,
    ) -> Client {
        let mut caps = FieldTable::new();
        caps.insert(
            ShortString::from_static("connection.blocked"),
            FieldValue::Bool(true),
        );
        let mut client_properties = FieldTable::new();
        client_properties.insert(
            ShortString::from_static("capabilities"),
            FieldValue::Table(caps),
        );
        let options = ConnectOptions {
            client_properties,
            frame_max: 0,
            heartbeat: match heartbeat {
                0 => Heartbeat::Off,
                n => Heartbeat::Propose(n),
            },
            ..ConnectOptions::new(user, password, vhost)
        };
        let conn = Connection::open(stream, &options).await.unwrap();
        Client {
            stream: conn.stream,
            buf: conn.rbuf,
            frames: conn.frames,
        }
    }

    /// Connects, handshakes, and opens channel 1.
    pub async fn with_channel(addr: SocketAddr) -> Client {
        let mut c = Client::open(addr, 0).await;
        c.open_channel(1).await;
        c
    }

    /// Opens `channel`.
    pub async fn open_channel(&mut self, channel: u16) {
        self.send(channel, ChannelOpen {}).await;
        assert_eq!(self.expect_method().await.class_method(), (20, 11));
    }

    pub async fn send(&mut self, channel: u16, m: impl Into<Method>) {
        let mut out = BytesMut::new();
        encode_method(&mut out, channel, m);
        self.stream.write_all(&out).await.unwrap();
    }

    /// Publishes `body` to the default exchange with routing key `queue`.
    pub async fn publish(&mut self, channel: u16, queue: &str, body: &[u8]) {
        let mut out = BytesMut::new();
        encode_publish(&mut out, channel, queue, body);
        self.stream.write_all(&out).await.unwrap();
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }

    pub async fn send_close_ok(&mut self) {
        self.send(0, ConnectionCloseOk {}).await;
    }

    /// The next frame as (type, channel, payload); None when the socket closed.
    pub async fn next_frame(&mut self) -> Option<(u8, u16, Bytes)> {
        loop {
            if let Some(f) = self.frames.decode(&mut self.buf).unwrap() {
                let t = f.frame_type() as u8;
                let payload = match f.payload {
                    FramePayload::Method(p) | FramePayload::Header(p) | FramePayload::Body(p) => p,
                    FramePayload::Heartbeat => Bytes::new(),
                };
                return Some((t, f.channel, payload));
            }
            match self.stream.read_buf(&mut self.buf).await {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    }

    /// The next method frame, skipping heartbeats.
    pub async fn expect_method(&mut self) -> MethodFrame {
        loop {
            let (t, ch, payload) =
                tokio::time::timeout(std::time::Duration::from_secs(5), self.next_frame())
                    .await
                    .expect("a frame within 5 s")
                    .expect("socket open");
            if t == 1 {
                return MethodFrame(ch, Method::decode(&payload).unwrap());
            }
        }
    }

    /// Reads until the broker closes the socket.
    pub async fn wait_closed(&mut self) {
        while self.next_frame().await.is_some() {}
    }

    /// Splits the client into a reader of method frames and the socket's write half, to
    /// write from one task while reading (or not) from another.
    pub fn split(self) -> (Reader, tokio::net::tcp::OwnedWriteHalf) {
        let (read, write) = self.stream.into_split();
        let reader = Reader {
            read,
            buf: self.buf,
            frames: self.frames,
        };
        (reader, write)
    }
}

/// The read half of a split [`Client`].
pub struct Reader {
    read: tokio::net::tcp::OwnedReadHalf,
    buf: BytesMut,
    frames: FrameDecoder,
}

impl Reader {
    /// The next method frame, skipping content and heartbeats; None when the socket
    /// closed.
    pub async fn next_method(&mut self) -> Option<MethodFrame> {
        loop {
            if let Some(f) = self.frames.decode(&mut self.buf).unwrap() {
                if let FramePayload::Method(p) = f.payload {
                    return Some(MethodFrame(f.channel, Method::decode(&p).unwrap()));
                }
                continue;
            }
            match self.read.read_buf(&mut self.buf).await {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    }
}

/// Appends a method frame to `out`.
pub fn encode_method(out: &mut BytesMut, channel: u16, m: impl Into<Method>) {
    let m = m.into();
    encode_frame_with(out, 1, channel, |b| m.encode(b));
}

/// Appends a publish of `body` to the default exchange with routing key `queue` (method,
/// header and body frames; no body frame for an empty body, as the spec says) to `out`,
/// for tests that send many frames in one write.
pub fn encode_publish(out: &mut BytesMut, channel: u16, queue: &str, body: &[u8]) {
    let m = BasicPublish {
        routing_key: ShortString::try_from(queue).unwrap(),
        ..Default::default()
    };
    encode_publish_with(out, channel, m, body);
}

/// Appends publish `m` of `body` (method, header and body frames) to `out`.
pub fn encode_publish_with(out: &mut BytesMut, channel: u16, m: BasicPublish, body: &[u8]) {
    encode_method(out, channel, m);
    encode_frame_with(out, 2, channel, |b| {
        fedamq::protocol::content::ContentHeader::encode_prefix(b, 60, body.len() as u64);
        fedamq::protocol::generated::properties::BasicProperties::default().encode(b);
    });
    if !body.is_empty() {
        encode_frame_with(out, 3, channel, |b| b.extend_from_slice(body));
    }
}
