//! The byte streams connections and peerings run on.
//!
//! A [`Transport`] is a stream that can be split into a read half and a write half
//! owned by different tasks (a connection reads in its own task and writes in a writer
//! task). The broker's connections (`connection::serve`), the client
//! (`client::Connection`) and the peering (`peering::link`) take any `Transport`, so
//! TLS can be added as one more implementation without touching them. TCP is the only
//! one used today; [`Joined`] makes any other stream one, through `tokio::io::split`.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

pub mod tls;

/// A byte stream that splits into halves owned by different tasks.
pub trait Transport: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    type Read: AsyncRead + Unpin + Send + 'static;
    type Write: AsyncWrite + Unpin + Send + 'static;
    fn into_split(self) -> (Self::Read, Self::Write);
}

/// TCP splits without a lock.
impl Transport for TcpStream {
    type Read = OwnedReadHalf;
    type Write = OwnedWriteHalf;
    fn into_split(self) -> (OwnedReadHalf, OwnedWriteHalf) {
        TcpStream::into_split(self)
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
