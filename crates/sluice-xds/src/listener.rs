//! The xDS listening socket, with an accept queue sized for reconnect
//! storms.
//!
//! When sluice restarts, every proxy reconnects within a few hundred
//! milliseconds. `TcpListener::bind` asks the kernel for an accept queue
//! of 1,024 connections; while the freshly started process is busy, the
//! rest overflow it: the kernel drops their handshakes, and a client that
//! already sent its HTTP/2 preface on a connection the server never
//! accepted sees the stream fail ("transport error") and starts over with
//! a backoff. B3 (2,000 proxies) lost 450 streams that way, with ~5,900
//! listen-queue overflows counted by the kernel (docs/benchmarks.md). The
//! queue asked for here is the largest Linux grants by default
//! (`net.core.somaxconn`, 4,096; a larger request is cut to it), so a
//! storm of a few thousand proxies waits in the queue instead.

use std::io;
use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpSocket};

/// Accept-queue length asked of the kernel.
pub const BACKLOG: u32 = 4096;

/// Binds `addr` (as `TcpListener::bind` does, `SO_REUSEADDR` included)
/// with an accept queue of [`BACKLOG`]. Must run inside a tokio runtime.
pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lets this process hold the test's ~1,100 sockets where the soft
    /// limit is 1,024 (the usual default; the hard limit is higher).
    fn raise_nofile_soft_limit() {
        use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
        let cur = getrlimit(Resource::Nofile);
        let _ = setrlimit(
            Resource::Nofile,
            Rlimit {
                current: cur.maximum,
                maximum: cur.maximum,
            },
        );
    }

    #[tokio::test]
    async fn queues_more_connections_than_the_default_backlog_before_accepting() {
        raise_nofile_soft_limit();
        let listener = bind("127.0.0.1:0".parse().expect("address")).expect("bind");
        let addr = listener.local_addr().expect("local address");
        // Nothing is accepted until every connect is done: with the
        // default queue (1,024) the kernel drops the handshakes past it,
        // and those connects never complete (they retry SYNs for minutes,
        // hence the generous bound); within the queue each completes
        // without an accept.
        let n = 1_100;
        let connect_all = async {
            let mut clients = Vec::with_capacity(n);
            for _ in 0..n {
                clients.push(tokio::net::TcpStream::connect(addr).await.expect("connect"));
            }
            clients
        };
        let _clients = tokio::time::timeout(std::time::Duration::from_secs(30), connect_all)
            .await
            .expect(
                "connects past 1,024 must complete before any accept (accept queue too short?)",
            );
        for _ in 0..n {
            let (_conn, peer) = listener.accept().await.expect("accept");
            assert!(peer.ip().is_loopback());
        }
    }
}
