//! Local listeners bound as `ssh` binds them: loopback (127.0.0.1 and ::1) by default,
//! every interface for `*`/empty or `gateway_ports`, or the given address; Unix sockets
//! with a stale socket file from an earlier run removed first.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use socket2::{Domain, Socket, Type};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use tunneld_config::{Listen, LocalBind};

/// Pending connections the kernel queues per listening socket.
const LISTEN_BACKLOG: i32 = 1024;

/// A bound local listener (one or two TCP sockets, or a Unix socket).
pub(crate) enum Listener {
    Tcp(Vec<TcpListener>),
    Unix {
        listener: UnixListener,
        path: PathBuf,
    },
}

/// An accepted local connection.
pub(crate) enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Listener {
    /// Binds `listen` as OpenSSH's client would.
    ///
    /// # Errors
    /// The bind error, naming the address.
    /// On success, also what could not be bound when only some of the addresses could
    /// (`localhost` is two: 127.0.0.1 and ::1).
    pub(crate) async fn bind(
        listen: &Listen,
        unix: UnixOptions,
    ) -> Result<(Listener, Option<String>), String> {
        match listen {
            Listen::Tcp { bind, port } => bind_tcp(bind, *port).await,
            Listen::Unix(path) => bind_unix(path, unix).map(|l| (l, None)),
        }
    }

    /// Where it listens, one entry per socket, for status and logs.
    pub(crate) fn addresses(&self) -> Vec<String> {
        match self {
            Listener::Tcp(ls) => ls
                .iter()
                .filter_map(|l| l.local_addr().ok())
                .map(|a| a.to_string())
                .collect(),
            Listener::Unix { path, .. } => vec![path.display().to_string()],
        }
    }

    /// Accepts the next connection on any of its sockets.
    pub(crate) async fn accept(&self) -> std::io::Result<(Stream, Option<SocketAddr>)> {
        match self {
            Listener::Unix { listener, .. } => {
                let (s, _) = listener.accept().await?;
                Ok((Stream::Unix(s), None))
            }
            Listener::Tcp(ls) => {
                let accepts = ls.iter().map(|l| Box::pin(l.accept()));
                let (r, _, _) = futures_util::future::select_all(accepts).await;
                let (s, peer) = r?;
                s.set_nodelay(true).ok();
                Ok((Stream::Tcp(s), Some(peer)))
            }
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Listener::Unix { path, .. } = self {
            let _ = std::fs::remove_file(path);
        }
    }
}

fn listen_socket(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    if addr.is_ipv6() {
        // Separate v4 and v6 sockets, as OpenSSH binds them.
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    TcpListener::from_std(socket.into())
}

async fn bind_tcp(bind: &LocalBind, port: u16) -> Result<(Listener, Option<String>), String> {
    let candidates: Vec<SocketAddr> = match bind {
        LocalBind::Loopback => vec![
            (IpAddr::V4(Ipv4Addr::LOCALHOST), port).into(),
            (IpAddr::V6(Ipv6Addr::LOCALHOST), port).into(),
        ],
        LocalBind::Any => vec![
            (IpAddr::V4(Ipv4Addr::UNSPECIFIED), port).into(),
            (IpAddr::V6(Ipv6Addr::UNSPECIFIED), port).into(),
        ],
        LocalBind::Addr(host) => match host.parse::<IpAddr>() {
            Ok(ip) => vec![(ip, port).into()],
            Err(_) => tokio::net::lookup_host((host.as_str(), port))
                .await
                .map_err(|e| format!("cannot resolve bind address {host}: {e}"))?
                .collect(),
        },
    };
    let mut listeners = Vec::new();
    let mut errors = Vec::new();
    let mut port = port;
    for mut addr in candidates {
        // With port 0, the second address family gets the port the first one drew.
        addr.set_port(port);
        match listen_socket(addr) {
            Ok(l) => {
                if port == 0 {
                    port = l.local_addr().map(|a| a.port()).unwrap_or(0);
                }
                listeners.push(l);
            }
            Err(e) => errors.push(format!("cannot listen on {addr}: {e}")),
        }
    }
    // Like ssh: success when at least one address could be bound, the others reported.
    if listeners.is_empty() {
        return Err(errors
            .into_iter()
            .next()
            .unwrap_or_else(|| "no address to listen on".into()));
    }
    let skipped = (!errors.is_empty()).then(|| errors.join("; "));
    Ok((Listener::Tcp(listeners), skipped))
}

/// How local Unix socket forwards are bound (`StreamLocalBindUnlink`, `StreamLocalBindMask`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct UnixOptions {
    /// Remove a stale socket file first.
    pub unlink: bool,
    /// Permission bits taken away from the socket file.
    pub mask: u32,
}

fn bind_unix(path: &Path, opts: UnixOptions) -> Result<Listener, String> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() && opts.unlink => {
            // A socket left by an earlier run (StreamLocalBindUnlink=yes).
            std::fs::remove_file(path)
                .map_err(|e| format!("cannot remove stale socket {}: {e}", path.display()))?;
        }
        Ok(meta) if meta.file_type().is_socket() => {
            return Err(format!(
                "{} exists (stream_local_bind_unlink = false); not removing it",
                path.display()
            ));
        }
        Ok(_) => {
            return Err(format!(
                "{} exists and is not a socket; not removing it",
                path.display()
            ));
        }
        Err(_) => {}
    }
    let mode = 0o777 & !opts.mask;
    let listener = crate::safe_fs::bind_unix(path, mode, None)
        .and_then(|l| {
            l.set_nonblocking(true)?;
            UnixListener::from_std(l)
        })
        .map_err(|e| format!("cannot listen on {}: {e}", path.display()))?;
    Ok(Listener::Unix {
        listener,
        path: path.to_path_buf(),
    })
}

impl AsyncRead for Stream {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => std::pin::Pin::new(s).poll_read(cx, buf),
            Stream::Unix(s) => std::pin::Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(s) => std::pin::Pin::new(s).poll_write(cx, buf),
            Stream::Unix(s) => std::pin::Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => std::pin::Pin::new(s).poll_flush(cx),
            Stream::Unix(s) => std::pin::Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => std::pin::Pin::new(s).poll_shutdown(cx),
            Stream::Unix(s) => std::pin::Pin::new(s).poll_shutdown(cx),
        }
    }
}

/// Connects to a local target of a remote forward.
pub(crate) async fn connect(target: &tunneld_config::Endpoint) -> std::io::Result<Stream> {
    match target {
        tunneld_config::Endpoint::Tcp { host, port } => {
            let s = TcpStream::connect((host.as_str(), *port)).await?;
            s.set_nodelay(true).ok();
            Ok(Stream::Tcp(s))
        }
        tunneld_config::Endpoint::Unix(path) => Ok(Stream::Unix(UnixStream::connect(path).await?)),
    }
}
