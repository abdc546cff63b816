//! The byte streams connections and peerings run on.
//!
//! A [`Transport`] is a stream that can be split into a read half and a write half
//! owned by different tasks (a connection reads in its own task and writes in a writer
//! task). The broker's connections (`connection::serve`), the client
//! (`client::Connection`) and the peering (`peering::link`) take any `Transport`, so
//! TLS can be added as one more implementation without touching them. TCP is the only
//! one used today; [`Joined`] makes any other stream one, through `tokio::io::split`.
//!
//! A transport whose write half can be written from any task without waiting (TCP)
//! says so with [`Transport::write_side`]: a connection then writes its frames itself
//! while the socket takes them, and hands them to its writer task only when it does not.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

/// A byte stream that splits into halves owned by different tasks.
pub trait Transport: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    type Read: AsyncRead + Unpin + Send + 'static;
    type Write: AsyncWrite + Unpin + Send + 'static;
    fn into_split(self) -> (Self::Read, Self::Write);
    /// How the write half is written: by one task through `AsyncWrite` unless the
    /// transport can be written without waiting.
    fn write_side(write: Self::Write) -> WriteSide<Self::Write> {
        WriteSide::Task(write)
    }
}

/// The write half of a stream, as the connection's writer takes it.
pub enum WriteSide<W> {
    /// Written by the writer task alone, through `AsyncWrite`.
    Task(W),
    /// Written by whichever task has bytes, without waiting (see [`DirectWrite`]).
    Direct(Arc<dyn DirectWrite>),
}

/// A write half any task may write to while the stream takes bytes, and wait on when
/// it does not. Dropping the last reference shuts the write side down.
pub trait DirectWrite: Send + Sync + 'static {
    /// Writes what the stream takes now; `WouldBlock` when it takes nothing.
    fn try_write(&self, buf: &[u8]) -> io::Result<usize>;
    /// Ready once a write may take bytes again.
    fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
}

/// TCP splits without a lock, and its write half is written without waiting.
impl Transport for TcpStream {
    type Read = OwnedReadHalf;
    type Write = OwnedWriteHalf;
    fn into_split(self) -> (OwnedReadHalf, OwnedWriteHalf) {
        TcpStream::into_split(self)
    }
    fn write_side(write: OwnedWriteHalf) -> WriteSide<OwnedWriteHalf> {
        WriteSide::Direct(Arc::new(write))
    }
}

impl DirectWrite for OwnedWriteHalf {
    fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
        OwnedWriteHalf::try_write(self, buf)
    }
    fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.as_ref().poll_write_ready(cx)
    }
}

/// Any stream as a [`Transport`]: its halves share it through `tokio::io::split`
/// (a lock taken on each read and write), for streams with no split of their own,
/// such as TLS streams or the in-memory `tokio::io::duplex` the tests use.
#[derive(Debug)]
pub struct Joined<S>(pub S);

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> Transport for Joined<S> {
    type Read = tokio::io::ReadHalf<S>;
    type Write = tokio::io::WriteHalf<S>;
    fn into_split(self) -> (Self::Read, Self::Write) {
        tokio::io::split(self.0)
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Joined<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Joined<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }
}

/// Connects over TCP with Nagle off (AMQP frames are small and latency matters).
pub async fn connect_tcp(host: &str, port: u16) -> io::Result<TcpStream> {
    let stream = TcpStream::connect((host, port)).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}
