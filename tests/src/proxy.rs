//! A fault-injecting TCP proxy: put it between a client and a server (e.g. between tunneld
//! and `sshd`) to black-hole traffic like a NAT that dropped its mapping, refuse new
//! connections, or reset every live connection.
//!
//! The proxy listens on `127.0.0.1:0`, runs on spawned tokio tasks and stops on `Drop`
//! (the accept loop and every open pipe; their sockets are closed).

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{ReadHalf, WriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

/// Read buffer of each direction of a pipe.
const PIPE_BUF_BYTES: usize = 16 * 1024;
/// How long a new pipe waits for its upstream connect before resetting the client.
const UPSTREAM_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// What the proxy does to traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Fault {
    /// Forward bytes both ways (normal).
    #[default]
    None,
    /// Bytes vanish silently in both directions while every socket stays open: a NAT drop
    /// (no FIN, no RST). Live pipes keep reading and discard what they read (so the peers'
    /// writes succeed); an EOF read meanwhile is passed on only once the fault lifts. New
    /// connections are accepted and held without connecting upstream: they never forward,
    /// even after the fault lifts, and close when the client closes.
    BlackHole,
    /// New connections are accepted and closed at once (EOF, or a reset if the client
    /// already sent data). Live pipes keep forwarding.
    Refuse,
}

/// State shared by the handle, the accept loop and the pipes.
struct Shared {
    upstream: SocketAddr,
    fault: watch::Sender<Fault>,
    /// Bumped by [`FaultProxy::reset_all`]; each pipe resets when it changes.
    reset: watch::Sender<u64>,
    connections: AtomicUsize,
    live: AtomicUsize,
}

/// A TCP proxy from `127.0.0.1:EPHEMERAL` to an upstream address, with switchable faults.
pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    /// The accept loop; it owns the `JoinSet` of pipes, so aborting it aborts them all.
    accept: JoinHandle<()>,
}

impl FaultProxy {
    /// Listens on `127.0.0.1:0` and forwards to `upstream` (one upstream connection per
    /// accepted client, made when the client is accepted).
    ///
    /// # Errors
    /// The bind fails.
    pub async fn start(upstream: SocketAddr) -> io::Result<FaultProxy> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            upstream,
            fault: watch::Sender::new(Fault::None),
            reset: watch::Sender::new(0),
            connections: AtomicUsize::new(0),
            live: AtomicUsize::new(0),
        });
        let accept = tokio::spawn(accept_loop(listener, shared.clone()));
        Ok(FaultProxy {
            addr,
            shared,
            accept,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Switches the fault, for new connections and at once for live pipes (see [`Fault`]).
    pub fn set_fault(&self, fault: Fault) {
        self.shared.fault.send_replace(fault);
    }

    /// The current fault.
    pub fn fault(&self) -> Fault {
        *self.shared.fault.borrow()
    }

    /// Cuts every connection accepted so far with a TCP RST on both sides (`SO_LINGER` 0,
    /// then close). Later connections are served normally (per the current [`Fault`]).
    ///
    /// Returns at once; wait for [`live`](Self::live) to drop if you need the pipes gone.
    pub fn reset_all(&self) {
        self.shared.reset.send_modify(|generation| *generation += 1);
    }

    /// Connections accepted so far (refused and held ones included).
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// Connections currently open (pipes and held black-hole connections).
    pub fn live(&self) -> usize {
        self.shared.live.load(Ordering::SeqCst)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// Accepts until aborted; each connection is refused, held or piped per the fault then.
async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut pipes = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((client, _)) => {
                    shared.connections.fetch_add(1, Ordering::SeqCst);
                    // Subscribe before anything else so a later reset_all reaches this pipe.
                    let reset = shared.reset.subscribe();
                    let fault = *shared.fault.borrow();
                    if fault == Fault::Refuse {
                        drop(client);
                        continue;
                    }
                    let live = LiveGuard::new(shared.clone());
                    pipes.spawn(serve(client, shared.clone(), reset, fault, live));
                }
                // EMFILE and friends: keep serving the pipes we have.
                Err(_) => tokio::task::yield_now().await,
            },
            // Reap finished pipes so the set does not grow without bound.
            Some(_) = pipes.join_next(), if !pipes.is_empty() => {}
        }
    }
}

/// Counts a connection in [`FaultProxy::live`] until dropped (also when its task is aborted).
struct LiveGuard(Arc<Shared>);

impl LiveGuard {
    fn new(shared: Arc<Shared>) -> Self {
        shared.live.fetch_add(1, Ordering::SeqCst);
        Self(shared)
    }
}

impl Drop for LiveGuard {
    fn drop(&mut self) {
        self.0.live.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Runs one accepted connection until both directions end, an error, or a reset.
///
/// On a reset or an I/O error both sockets are closed with a RST (so a reset on one side
/// reaches the other); after a clean end they are closed normally.
async fn serve(
    mut client: TcpStream,
    shared: Arc<Shared>,
    mut reset: watch::Receiver<u64>,
    fault_at_accept: Fault,
    _live: LiveGuard,
) {
    let mut upstream = None;
    let clean = tokio::select! {
        r = pipe(&mut client, &mut upstream, &shared, fault_at_accept) => r.is_ok(),
        // Err only if the sender is gone, which cannot happen while `shared` lives.
        _ = reset.changed() => false,
    };
    if !clean {
        let _ = client.set_zero_linger();
        if let Some(upstream) = &upstream {
            let _ = upstream.set_zero_linger();
        }
    }
}

/// Holds (black hole at accept) or connects upstream and forwards both ways.
async fn pipe(
    client: &mut TcpStream,
    upstream: &mut Option<TcpStream>,
    shared: &Shared,
    fault_at_accept: Fault,
) -> io::Result<()> {
    client.set_nodelay(true)?;
    if fault_at_accept == Fault::BlackHole {
        let mut buf = vec![0; PIPE_BUF_BYTES];
        while client.read(&mut buf).await? != 0 {}
        return Ok(());
    }
    let connected = tokio::time::timeout(
        UPSTREAM_CONNECT_TIMEOUT,
        TcpStream::connect(shared.upstream),
    )
    .await
    .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "upstream connect timed out"))??;
    connected.set_nodelay(true)?;
    let up = upstream.insert(connected);
    let (client_rd, client_wr) = client.split();
    let (up_rd, up_wr) = up.split();
    tokio::try_join!(
        forward(client_rd, up_wr, shared.fault.subscribe()),
        forward(up_rd, client_wr, shared.fault.subscribe()),
    )?;
    Ok(())
}

/// Copies `from` to `to` until EOF, discarding what it reads while the fault is
/// [`Fault::BlackHole`]; a write in progress when the black hole starts is abandoned.
async fn forward(
    mut from: ReadHalf<'_>,
    mut to: WriteHalf<'_>,
    mut fault: watch::Receiver<Fault>,
) -> io::Result<()> {
    let mut buf = vec![0; PIPE_BUF_BYTES];
    loop {
        let n = from.read(&mut buf).await?;
        if n == 0 {
            // A FIN does not cross a NAT drop either: pass it on once the fault lifts.
            if fault.wait_for(|f| *f != Fault::BlackHole).await.is_ok() {
                to.shutdown().await?;
            }
            return Ok(());
        }
        if *fault.borrow_and_update() == Fault::BlackHole {
            continue;
        }
        tokio::select! {
            written = to.write_all(&buf[..n]) => written?,
            _ = fault.wait_for(|f| *f == Fault::BlackHole) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::{echo_roundtrip, transfer_both_ways, wait_until};
    use crate::servers::EchoServer;
    use tokio::time::timeout;

    /// How long a black-holed echo is given to (not) come back.
    const SILENCE: Duration = Duration::from_millis(300);
    /// Budget for things that should happen promptly.
    const PROMPT: Duration = Duration::from_secs(5);

    async fn echo_and_proxy() -> (EchoServer, FaultProxy) {
        let echo = EchoServer::start().await.unwrap();
        let proxy = FaultProxy::start(echo.addr()).await.unwrap();
        assert!(proxy.addr().ip().is_loopback());
        assert_eq!(proxy.port(), proxy.addr().port());
        (echo, proxy)
    }

    /// Reads once with a deadline: `Ok(n)` bytes, or the read error.
    async fn read_promptly(stream: &mut TcpStream) -> io::Result<usize> {
        let mut buf = [0; 64];
        timeout(PROMPT, stream.read(&mut buf))
            .await
            .expect("read did not return promptly")
    }

    #[tokio::test]
    async fn forwards_both_ways() {
        let (echo, proxy) = echo_and_proxy().await;
        assert_eq!(proxy.fault(), Fault::None);
        let mut s = TcpStream::connect(proxy.addr()).await.unwrap();
        echo_roundtrip(&mut s, b"ping").await.unwrap();
        echo_roundtrip(&mut s, b"pong").await.unwrap();
        let s2 = TcpStream::connect(proxy.addr()).await.unwrap();
        transfer_both_ways(s2, 1 << 20).await.unwrap();
        assert_eq!(proxy.connections(), 2);
        assert_eq!(echo.connections(), 2);
        drop(s);
        wait_until(PROMPT, "both pipes to close", || proxy.live() == 0)
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn black_hole_swallows_bytes_and_keeps_sockets_open() {
        let (echo, proxy) = echo_and_proxy().await;
        let mut live = TcpStream::connect(proxy.addr()).await.unwrap();
        echo_roundtrip(&mut live, b"before").await.unwrap();

        proxy.set_fault(Fault::BlackHole);
        assert_eq!(proxy.fault(), Fault::BlackHole);
        live.write_all(b"into the void").await.unwrap();
        let mut buf = [0; 64];
        assert!(
            timeout(SILENCE, live.read(&mut buf)).await.is_err(),
            "an echo came back through a black hole"
        );
        live.write_all(b"still open").await.unwrap();

        // A new connection is accepted and held, without reaching upstream.
        let mut held = TcpStream::connect(proxy.addr()).await.unwrap();
        held.write_all(b"hello?").await.unwrap();
        assert!(timeout(SILENCE, held.read(&mut buf)).await.is_err());
        assert_eq!(proxy.connections(), 2);
        assert_eq!(echo.connections(), 1);
        assert_eq!(proxy.live(), 2);

        // After the fault lifts, nothing swallowed comes back, and new connections echo.
        proxy.set_fault(Fault::None);
        let mut fresh = TcpStream::connect(proxy.addr()).await.unwrap();
        echo_roundtrip(&mut fresh, b"after").await.unwrap();
        echo_roundtrip(&mut live, b"resumed").await.unwrap();
        assert_eq!(echo.connections(), 2);
    }

    #[tokio::test]
    async fn refuse_closes_new_connections_only() {
        let (_echo, proxy) = echo_and_proxy().await;
        let mut live = TcpStream::connect(proxy.addr()).await.unwrap();
        echo_roundtrip(&mut live, b"before").await.unwrap();

        proxy.set_fault(Fault::Refuse);
        let mut refused = TcpStream::connect(proxy.addr()).await.unwrap();
        assert_eq!(read_promptly(&mut refused).await.unwrap(), 0);
        echo_roundtrip(&mut live, b"still piped").await.unwrap();
        assert_eq!(proxy.connections(), 2);
        assert_eq!(proxy.live(), 1);

        proxy.set_fault(Fault::None);
        let mut fresh = TcpStream::connect(proxy.addr()).await.unwrap();
        echo_roundtrip(&mut fresh, b"after").await.unwrap();
    }

    #[tokio::test]
    async fn reset_all_cuts_live_connections_with_a_reset() {
        let (_echo, proxy) = echo_and_proxy().await;
        let mut a = TcpStream::connect(proxy.addr()).await.unwrap();
        let mut b = TcpStream::connect(proxy.addr()).await.unwrap();
        echo_roundtrip(&mut a, b"a").await.unwrap();
        echo_roundtrip(&mut b, b"b").await.unwrap();
        assert_eq!(proxy.live(), 2);

        proxy.reset_all();
        for s in [&mut a, &mut b] {
            match read_promptly(s).await {
                Ok(0) => {}
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {}
                other => panic!("expected a reset or EOF, got {other:?}"),
            }
        }
        wait_until(PROMPT, "the reset pipes to close", || proxy.live() == 0)
            .await
            .unwrap();

        let mut fresh = TcpStream::connect(proxy.addr()).await.unwrap();
        echo_roundtrip(&mut fresh, b"after").await.unwrap();
        assert_eq!(proxy.live(), 1);
    }

    #[tokio::test]
    async fn reset_all_also_cuts_held_black_hole_connections() {
        let (echo, proxy) = echo_and_proxy().await;
        proxy.set_fault(Fault::BlackHole);
        let mut held = TcpStream::connect(proxy.addr()).await.unwrap();
        wait_until(PROMPT, "the held connection", || proxy.live() == 1)
            .await
            .unwrap();
        proxy.reset_all();
        match read_promptly(&mut held).await {
            Ok(0) => {}
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {}
            other => panic!("expected a reset or EOF, got {other:?}"),
        }
        assert_eq!(echo.connections(), 0);
    }

    #[tokio::test]
    async fn drop_closes_the_listener_and_live_pipes() {
        let (_echo, proxy) = echo_and_proxy().await;
        let addr = proxy.addr();
        let mut live = TcpStream::connect(addr).await.unwrap();
        echo_roundtrip(&mut live, b"x").await.unwrap();
        drop(proxy);
        match read_promptly(&mut live).await {
            Ok(0) => {}
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {}
            other => panic!("expected EOF after drop, got {other:?}"),
        }
        crate::net::wait_port_closed(addr, PROMPT).await.unwrap();
    }
}
