//! Knowing when a client has hung up while its request waits, and cutting a stream.
//!
//! hyper reads nothing from a connection while its request is being handled, so a
//! request waiting in a model's admission queue would keep its place after the client
//! closed the socket. The acceptor here records each connection's socket by the
//! client's address; a waiting request peeks at it (without consuming anything) to
//! see whether the client is still there.
//!
//! A streamed response that fails after its status was sent must not look complete:
//! the server ends a chunked body cleanly even when the body stream fails, so
//! [`Connections::abort`] shuts the socket down first and the client sees the
//! response end without its final chunk.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use poem::http::uri::Scheme;
use poem::listener::{Acceptor, TcpAcceptor};
use poem::web::{LocalAddr, RemoteAddr};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// Open connections by client address.
#[derive(Clone, Default)]
pub struct Connections {
    #[cfg(unix)]
    open: Arc<Mutex<HashMap<SocketAddr, std::os::fd::RawFd>>>,
    #[cfg(not(unix))]
    open: Arc<Mutex<HashMap<SocketAddr, ()>>>,
}

impl Connections {
    /// Whether the client at `peer` has closed its connection, or it is gone.
    pub fn closed(&self, peer: SocketAddr) -> bool {
        // The lock is held while peeking: a connection leaves the map before its
        // socket is closed, so the descriptor cannot be another socket's meanwhile.
        let open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        match open.get(&peer) {
            None => true,
            #[cfg(unix)]
            Some(&fd) => peer_closed(fd),
            #[cfg(not(unix))]
            Some(_) => false,
        }
    }

    /// Ends the connection of `peer` at once (both directions), so the response in
    /// progress reaches the client incomplete rather than ended.
    pub fn abort(&self, peer: SocketAddr) {
        let open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        #[cfg(unix)]
        if let Some(&fd) = open.get(&peer) {
            // SAFETY: `fd` is an open socket while it is in the map (the lock is held,
            // see `closed`); shutting it down leaves the descriptor itself to its owner.
            unsafe {
                libc::shutdown(fd, libc::SHUT_RDWR);
            }
        }
        #[cfg(not(unix))]
        let _ = (open, peer);
    }

    fn track(&self, peer: SocketAddr, stream: &TcpStream) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        #[cfg(unix)]
        open.insert(peer, std::os::fd::AsRawFd::as_raw_fd(stream));
        #[cfg(not(unix))]
        {
            let _ = stream;
            open.insert(peer, ());
        }
    }

    fn forget(&self, peer: SocketAddr) {
        self.open
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&peer);
    }
}

/// An orderly shutdown (a read of 0 bytes) or a reset, seen without consuming data.
#[cfg(unix)]
fn peer_closed(fd: std::os::fd::RawFd) -> bool {
    let mut byte = 0u8;
    // SAFETY: `fd` is an open socket (see `Connections::closed`); one byte is peeked
    // into a valid buffer, without blocking.
    let n = unsafe {
        libc::recv(
            fd,
            (&mut byte as *mut u8).cast(),
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    if n == 0 {
        return true;
    }
    if n < 0 {
        let err = std::io::Error::last_os_error();
        return !matches!(
            err.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted
        );
    }
    false
}

/// A TCP acceptor that tracks its connections in [`Connections`].
pub struct TrackedAcceptor {
    inner: TcpAcceptor,
    connections: Connections,
}

impl TrackedAcceptor {
    pub fn new(
        listener: tokio::net::TcpListener,
        connections: Connections,
    ) -> std::io::Result<Self> {
        Ok(Self {
            inner: TcpAcceptor::from_tokio(listener)?,
            connections,
        })
    }
}

impl Acceptor for TrackedAcceptor {
    type Io = TrackedStream;

    fn local_addr(&self) -> Vec<LocalAddr> {
        self.inner.local_addr()
    }

    async fn accept(&mut self) -> std::io::Result<(Self::Io, LocalAddr, RemoteAddr, Scheme)> {
        let (stream, local, remote, scheme) = self.inner.accept().await?;
        let peer = stream.peer_addr()?;
        self.connections.track(peer, &stream);
        let io = TrackedStream {
            stream,
            peer,
            connections: self.connections.clone(),
        };
        Ok((io, local, remote, scheme))
    }
}

/// A connection that leaves [`Connections`] when dropped (before its socket closes).
pub struct TrackedStream {
    stream: TcpStream,
    peer: SocketAddr,
    connections: Connections,
}

impl Drop for TrackedStream {
    fn drop(&mut self) {
        self.connections.forget(self.peer);
    }
}

impl AsyncRead for TrackedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for TrackedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

/// The client's socket address of `req`, when it came over TCP.
pub fn peer_of(req: &poem::Request) -> Option<SocketAddr> {
    req.remote_addr().as_socket_addr().copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_closed_client_is_seen_and_an_open_one_is_not() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Connections::default();
        let mut acceptor = TrackedAcceptor::new(listener, connections.clone()).unwrap();
        let mut client = TcpStream::connect(addr).await.unwrap();
        let (io, _, remote, _) = acceptor.accept().await.unwrap();
        let peer = *remote.as_socket_addr().unwrap();
        assert!(!connections.closed(peer));
        // Unread data is not a hang-up, and peeking leaves it there.
        tokio::io::AsyncWriteExt::write_all(&mut client, b"GET")
            .await
            .unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert!(!connections.closed(peer));
        let mut io = io;
        let mut buf = [0u8; 8];
        let n = tokio::io::AsyncReadExt::read(&mut io, &mut buf)
            .await
            .unwrap();
        assert_eq!(&buf[..n], b"GET");
        // Once what was sent has been read (as the server has read a request), the
        // client closing its socket is seen.
        drop(client);
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert!(connections.closed(peer));
        drop(io);
        assert!(
            connections.closed(peer),
            "a forgotten connection counts as closed"
        );
    }
}
