//! Servers to forward to: TCP and Unix echo, a minimal HTTP/1.1 server, a byte source.
//!
//! Each runs on spawned tokio tasks, serves any number of concurrent connections, counts
//! what it accepted, and stops on `Drop` (the accept loop and every open connection).

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, UnixListener};
use tokio::task::{JoinHandle, JoinSet};

/// Largest HTTP request head [`HttpServer`] reads before answering 431.
const HTTP_MAX_HEAD_BYTES: usize = 64 * 1024;
/// How long [`HttpServer`] waits for a complete request head.
const HTTP_HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// Write size of [`SourceServer`].
pub const SOURCE_CHUNK_BYTES: usize = 16 * 1024;

/// Runs the accept loop; aborting it drops the `JoinSet`, which aborts every connection.
struct Running(JoinHandle<()>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Spawns an accept loop calling `serve` for each accepted connection.
fn spawn_accept_loop<A, S, F, Fut>(accept: A, count: Arc<AtomicUsize>, serve: F) -> Running
where
    A: AcceptOne<Stream = S> + Send + 'static,
    S: Send + 'static,
    F: Fn(S) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    Running(tokio::spawn(async move {
        let mut connections = JoinSet::new();
        loop {
            tokio::select! {
                accepted = accept.accept_one() => match accepted {
                    Ok(stream) => {
                        count.fetch_add(1, Ordering::SeqCst);
                        connections.spawn(serve(stream));
                    }
                    // EMFILE and friends: keep serving the connections we have.
                    Err(_) => tokio::task::yield_now().await,
                },
                // Reap finished connections so the set does not grow without bound.
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
            }
        }
    }))
}

/// A listener the accept loop can drive.
trait AcceptOne {
    type Stream;
    fn accept_one(&self) -> impl Future<Output = io::Result<Self::Stream>> + Send;
}

impl AcceptOne for TcpListener {
    type Stream = tokio::net::TcpStream;
    async fn accept_one(&self) -> io::Result<Self::Stream> {
        let (s, _) = self.accept().await?;
        s.set_nodelay(true)?;
        Ok(s)
    }
}

impl AcceptOne for UnixListener {
    type Stream = tokio::net::UnixStream;
    async fn accept_one(&self) -> io::Result<Self::Stream> {
        Ok(self.accept().await?.0)
    }
}

/// Echoes until EOF, then shuts down its write side (so half-close round-trips).
async fn echo<S: AsyncRead + AsyncWrite>(stream: S) {
    let (mut rd, mut wr) = tokio::io::split(stream);
    if tokio::io::copy(&mut rd, &mut wr).await.is_ok() {
        let _ = wr.shutdown().await;
    }
}

/// TCP echo server: sends back every byte, closes its side after the client's EOF.
pub struct EchoServer {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    _running: Running,
}

impl EchoServer {
    /// Starts on `127.0.0.1:0`.
    ///
    /// # Errors
    /// The bind fails.
    pub async fn start() -> io::Result<Self> {
        Self::start_on(IpAddr::V4(Ipv4Addr::LOCALHOST)).await
    }

    /// Starts on `ip:0`.
    ///
    /// # Errors
    /// The bind fails (e.g. `::1` without IPv6).
    pub async fn start_on(ip: IpAddr) -> io::Result<Self> {
        let listener = TcpListener::bind((ip, 0)).await?;
        let addr = listener.local_addr()?;
        let connections = Arc::new(AtomicUsize::new(0));
        let running = spawn_accept_loop(listener, connections.clone(), echo);
        Ok(Self {
            addr,
            connections,
            _running: running,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

/// Unix-socket echo server; the socket file is removed on `Drop`.
pub struct UnixEchoServer {
    path: PathBuf,
    connections: Arc<AtomicUsize>,
    _running: Running,
}

impl UnixEchoServer {
    /// Listens on `path` (typically inside a tempdir; it must not exist yet).
    ///
    /// # Errors
    /// The bind fails (path exists, too long: 107 bytes at most on Linux, ...).
    pub async fn start(path: &Path) -> io::Result<Self> {
        let listener = UnixListener::bind(path)?;
        let connections = Arc::new(AtomicUsize::new(0));
        let running = spawn_accept_loop(listener, connections.clone(), echo);
        Ok(Self {
            path: path.to_path_buf(),
            connections,
            _running: running,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

impl Drop for UnixEchoServer {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Minimal HTTP/1.1 server: `GET /` answers 200 with `hello from NAME\n`; other paths 404,
/// other methods 405. One request per connection (`Connection: close`).
pub struct HttpServer {
    addr: SocketAddr,
    requests: Arc<AtomicUsize>,
    connections: Arc<AtomicUsize>,
    _running: Running,
}

impl HttpServer {
    /// Starts on `127.0.0.1:0`.
    ///
    /// # Errors
    /// The bind fails.
    pub async fn start(name: &str) -> io::Result<Self> {
        Self::start_on(IpAddr::V4(Ipv4Addr::LOCALHOST), name).await
    }

    /// Starts on `ip:0`.
    ///
    /// # Errors
    /// The bind fails.
    pub async fn start_on(ip: IpAddr, name: &str) -> io::Result<Self> {
        let listener = TcpListener::bind((ip, 0)).await?;
        let addr = listener.local_addr()?;
        let requests = Arc::new(AtomicUsize::new(0));
        let connections = Arc::new(AtomicUsize::new(0));
        let body: Arc<str> = format!("hello from {name}\n").into();
        let counter = requests.clone();
        let running = spawn_accept_loop(listener, connections.clone(), move |stream| {
            serve_http(stream, body.clone(), counter.clone())
        });
        Ok(Self {
            addr,
            requests,
            connections,
            _running: running,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Complete request heads received so far (whatever the answer was).
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// The body `GET /` answers for a server started with `name`.
    pub fn body_for(name: &str) -> String {
        format!("hello from {name}\n")
    }
}

async fn serve_http(mut stream: tokio::net::TcpStream, body: Arc<str>, requests: Arc<AtomicUsize>) {
    let head = tokio::time::timeout(HTTP_HEAD_TIMEOUT, read_head(&mut stream)).await;
    let (status, body): (&str, &str) = match head {
        Ok(Ok(Some(head))) => {
            requests.fetch_add(1, Ordering::SeqCst);
            let mut parts = head.lines().next().unwrap_or("").split_whitespace();
            match (parts.next(), parts.next()) {
                (Some("GET" | "HEAD"), Some("/")) => ("200 OK", &body),
                (Some("GET" | "HEAD"), Some(_)) => ("404 Not Found", "not found\n"),
                _ => ("405 Method Not Allowed", "method not allowed\n"),
            }
        }
        Ok(Ok(None)) => (
            "431 Request Header Fields Too Large",
            "request head too large\n",
        ),
        // Timeout, EOF or I/O error: nothing sensible to answer.
        _ => return,
    };
    let reply = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: \
         close\r\n\r\n{body}",
        body.len()
    );
    if stream.write_all(reply.as_bytes()).await.is_ok() {
        let _ = stream.shutdown().await;
    }
}

/// Reads up to the blank line; `Ok(None)` when the head exceeds [`HTTP_MAX_HEAD_BYTES`].
async fn read_head(stream: &mut tokio::net::TcpStream) -> io::Result<Option<String>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            return Ok(Some(String::from_utf8_lossy(&buf[..end]).into_owned()));
        }
        if buf.len() > HTTP_MAX_HEAD_BYTES {
            return Ok(None);
        }
    }
}

/// Sends pseudo-random bytes to every client, as fast as it reads, until it closes.
/// For tests of slow or stalled readers through a forward.
pub struct SourceServer {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    bytes_sent: Arc<AtomicU64>,
    _running: Running,
}

impl SourceServer {
    /// Starts on `127.0.0.1:0`.
    ///
    /// # Errors
    /// The bind fails.
    pub async fn start() -> io::Result<Self> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        let connections = Arc::new(AtomicUsize::new(0));
        let bytes_sent = Arc::new(AtomicU64::new(0));
        let sent = bytes_sent.clone();
        let running = spawn_accept_loop(listener, connections.clone(), move |mut stream| {
            let sent = sent.clone();
            async move {
                let chunk = crate::net::random_bytes(SOURCE_CHUNK_BYTES, 1);
                while stream.write_all(&chunk).await.is_ok() {
                    sent.fetch_add(chunk.len() as u64, Ordering::SeqCst);
                }
            }
        });
        Ok(Self {
            addr,
            connections,
            bytes_sent,
            _running: running,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// Bytes written so far, over all connections.
    pub fn bytes_sent(&self) -> u64 {
        self.bytes_sent.load(Ordering::SeqCst)
    }
}

/// Serves the same `len` pseudo-random bytes (seed `seed`, see
/// [`crate::net::random_bytes`]) to every client, then closes its side: a download that
/// ends, for tests that check every byte arrives.
pub struct DownloadServer {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    data: Arc<Vec<u8>>,
    _running: Running,
}

impl DownloadServer {
    /// Starts on `127.0.0.1:0`.
    ///
    /// # Errors
    /// The bind fails.
    pub async fn start(len: usize, seed: u64) -> io::Result<Self> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        let connections = Arc::new(AtomicUsize::new(0));
        let data = Arc::new(crate::net::random_bytes(len, seed));
        let served = Arc::clone(&data);
        let running = spawn_accept_loop(listener, connections.clone(), move |mut stream| {
            let data = Arc::clone(&served);
            async move {
                if stream.write_all(&data).await.is_ok() {
                    let _ = stream.shutdown().await;
                }
            }
        });
        Ok(Self {
            addr,
            connections,
            data,
            _running: running,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// What every client gets.
    pub fn data(&self) -> &[u8] {
        &self.data
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::{echo_roundtrip, transfer_both_ways, wait_port_closed};
    use tokio::net::{TcpStream, UnixStream};

    #[tokio::test]
    async fn echo_serves_concurrent_connections_and_stops_on_drop() {
        let echo = EchoServer::start().await.unwrap();
        let mut a = TcpStream::connect(echo.addr()).await.unwrap();
        let mut b = TcpStream::connect(echo.addr()).await.unwrap();
        echo_roundtrip(&mut b, b"second").await.unwrap();
        echo_roundtrip(&mut a, b"first").await.unwrap();
        assert_eq!(echo.connections(), 2);
        let addr = echo.addr();
        drop(echo);
        wait_port_closed(addr, Duration::from_secs(5))
            .await
            .unwrap();
        // Open connections end too.
        let mut buf = [0u8; 1];
        let n = tokio::time::timeout(Duration::from_secs(5), a.read(&mut buf))
            .await
            .unwrap();
        assert!(matches!(n, Ok(0) | Err(_)), "{n:?}");
    }

    #[tokio::test]
    async fn unix_echo_round_trips_and_removes_its_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("echo.sock");
        let echo = UnixEchoServer::start(&path).await.unwrap();
        let stream = UnixStream::connect(echo.path()).await.unwrap();
        transfer_both_ways(stream, 256 * 1024).await.unwrap();
        assert_eq!(echo.connections(), 1);
        drop(echo);
        assert!(!path.exists());
    }

    #[tokio::test]
    async fn http_answers_get_and_counts_requests() {
        let http = HttpServer::start("alpha").await.unwrap();
        let mut s = TcpStream::connect(http.addr()).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut reply = String::new();
        s.read_to_string(&mut reply).await.unwrap();
        assert!(reply.starts_with("HTTP/1.1 200 OK\r\n"), "{reply}");
        assert!(reply.contains("Content-Length: 17\r\n"), "{reply}");
        assert!(reply.ends_with("\r\n\r\nhello from alpha\n"), "{reply}");
        assert_eq!(HttpServer::body_for("alpha"), "hello from alpha\n");

        let mut s = TcpStream::connect(http.addr()).await.unwrap();
        s.write_all(b"GET /nope HTTP/1.1\r\n\r\n").await.unwrap();
        let mut reply = String::new();
        s.read_to_string(&mut reply).await.unwrap();
        assert!(reply.starts_with("HTTP/1.1 404"), "{reply}");
        assert_eq!(http.requests(), 2);
    }

    #[tokio::test]
    async fn http_works_with_curl() {
        if !crate::net::curl_available() {
            eprintln!("curl not installed: skipping");
            return;
        }
        let http = HttpServer::start("curl-test").await.unwrap();
        let body = crate::net::curl(&[&format!("http://{}/", http.addr())])
            .await
            .unwrap();
        assert_eq!(body, "hello from curl-test\n");
        assert_eq!(http.requests(), 1);
    }

    #[tokio::test]
    async fn source_keeps_sending() {
        let source = SourceServer::start().await.unwrap();
        let mut s = TcpStream::connect(source.addr()).await.unwrap();
        let mut buf = vec![0u8; 100_000];
        s.read_exact(&mut buf).await.unwrap();
        assert!(source.bytes_sent() >= 100_000 - SOURCE_CHUNK_BYTES as u64);
        assert_eq!(source.connections(), 1);
    }
}
