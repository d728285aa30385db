//! The socket seam. The client server and the Raft network take these traits instead of tokio's
//! types, so the same code runs over real TCP here and over turmoil's simulated network in
//! `simulation/`.

use std::future::Future;
use std::io;
use std::net::SocketAddr;

use tokio::io::{AsyncRead, AsyncWrite};

/// A source of incoming connections.
pub trait Listener: Send + 'static {
    /// The connection type.
    type Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    /// Waits for the next connection: the stream, the peer's and our own address.
    fn accept(
        &mut self,
    ) -> impl Future<Output = io::Result<(Self::Stream, SocketAddr, SocketAddr)>> + Send;
    /// The address it listens on (the port it bound, when it was asked for port 0).
    fn local_addr(&self) -> io::Result<SocketAddr>;
}

impl Listener for tokio::net::TcpListener {
    type Stream = tokio::net::TcpStream;

    async fn accept(&mut self) -> io::Result<(Self::Stream, SocketAddr, SocketAddr)> {
        let (stream, peer) = tokio::net::TcpListener::accept(self).await?;
        stream.set_nodelay(true)?;
        let local = stream.local_addr()?;
        Ok((stream, peer, local))
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        tokio::net::TcpListener::local_addr(self)
    }
}

/// Opens outgoing connections (`host:port`).
pub trait Dialer: Send + Sync + 'static {
    /// The connection type (`Sync` because openraft keeps peer connections in shared state).
    type Stream: AsyncRead + AsyncWrite + Unpin + Send + Sync + 'static;
    /// Connects to `addr`.
    fn connect(&self, addr: &str) -> impl Future<Output = io::Result<Self::Stream>> + Send;
}

/// Dials with tokio's TCP, Nagle off (Raft RPCs are small and latency-bound).
#[derive(Debug, Clone, Copy, Default)]
pub struct TcpDialer;

impl Dialer for TcpDialer {
    type Stream = tokio::net::TcpStream;

    async fn connect(&self, addr: &str) -> io::Result<Self::Stream> {
        let stream = tokio::net::TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(stream)
    }
}
