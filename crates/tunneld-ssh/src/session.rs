//! Connecting (handshake and authentication over any byte stream) and the [`Session`]
//! handle that forwards use: channel opens, remote listeners, heartbeats, goodbye.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot, watch};

use crate::auth::{self, AuthError, Credential, PacketLink};
use crate::channel::{Channel, SessionShared};
use crate::connection::{
    ChannelConfig, Connection, GlobalReply, IncomingChannel, OpenError, OpenKind,
};
use crate::driver::{self, Command};
use crate::error::LinkError;
use crate::hostkey::HostKey;
use crate::negotiate::Chosen;
use crate::transport::{HostKeyCheck, Transport, TransportConfig, TransportError};
use crate::wire::{Reader, Writer};

/// Everything a session needs besides the stream, the user and the keys.
#[derive(Clone, Debug, Default)]
pub struct Config {
    /// Algorithms and re-keying.
    pub transport: TransportConfig,
    /// Windows and limits of channels.
    pub channels: ChannelConfig,
}

/// Why connecting failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// Version exchange, key exchange, host key, or the connection itself.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// Authentication.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// The socket failed.
    #[error("connection lost: {0}")]
    Io(#[from] std::io::Error),
}

/// What was agreed with the server, for logs and status.
#[derive(Clone, Debug)]
pub struct SessionInfo {
    /// The server's identification line.
    pub server_version: String,
    /// The server's host key.
    pub host_key: HostKey,
    /// The algorithms in force after the first key exchange.
    pub algorithms: Chosen,
    /// The credential that was accepted.
    pub authenticated_with: String,
    /// The session identifier (the first key exchange's hash), which host key proofs sign.
    pub session_id: Arc<[u8]>,
}

/// A session to a server: cheap to clone; when the last clone is dropped the session says
/// goodbye and ends.
#[derive(Clone)]
pub struct Session {
    commands: mpsc::UnboundedSender<Command>,
    end: watch::Receiver<Option<Arc<str>>>,
    info: Arc<SessionInfo>,
    kex_count: Arc<AtomicU64>,
    heard: Arc<driver::Heard>,
    announced: watch::Receiver<Option<Vec<Vec<u8>>>>,
}

/// Channels the server opens for our remote listeners, in arrival order.
pub struct Incoming {
    rx: mpsc::Receiver<IncomingChannel>,
}

impl Incoming {
    /// The next one; `None` once the session ended.
    pub async fn recv(&mut self) -> Option<IncomingChannel> {
        self.rx.recv().await
    }
}

/// A global request that did not succeed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RequestError {
    /// The server said no (REQUEST_FAILURE).
    #[error("the server refused the request")]
    Refused,
    /// The session ended first.
    #[error("the session ended: {0}")]
    SessionClosed(Arc<str>),
    /// The server's success reply did not parse.
    #[error("malformed reply from the server")]
    Malformed,
}

/// Handshake, host key check, authentication; then the session runs in its own task.
///
/// `check` decides on the server's host key (the known_hosts policy); a refusal ends the
/// handshake before anything is authenticated or forwarded.
///
/// # Errors
/// See [`ConnectError`]. The caller bounds the time (a silent server never answers).
///
/// # Cancellation
/// Dropping the future drops the stream: the connection is gone.
pub async fn connect<S>(
    mut stream: S,
    config: Config,
    user: &str,
    credentials: &[Credential],
    check: HostKeyCheck,
) -> Result<(Session, Incoming), ConnectError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut transport = Transport::new(config.transport.clone(), check);
    let mut link = Link {
        stream: &mut stream,
        transport: &mut transport,
        pending: VecDeque::new(),
    };
    link.handshake().await?;
    let authenticated = auth::authenticate(&mut link, user, credentials).await?;
    let pending = std::mem::take(&mut link.pending);
    let info = Arc::new(SessionInfo {
        server_version: transport.server_version().unwrap_or_default().to_string(),
        host_key: transport
            .host_key()
            .cloned()
            .ok_or_else(|| TransportError::Protocol("no host key after key exchange".into()))?,
        algorithms: transport
            .algorithms()
            .cloned()
            .ok_or_else(|| TransportError::Protocol("no algorithms after key exchange".into()))?,
        authenticated_with: authenticated.credential,
        session_id: Arc::from(transport.session_id().unwrap_or_default()),
    });
    let shared = SessionShared::new();
    let (incoming_tx, incoming_rx) = mpsc::channel(config.channels.max_offered.max(1));
    let connection = Connection::new(config.channels, Arc::clone(&shared), incoming_tx);
    let announced = connection.announced_host_keys.subscribe();
    let (commands, commands_rx) = mpsc::unbounded_channel();
    let (end_tx, end) = watch::channel(None);
    let kex_count = Arc::new(AtomicU64::new(0));
    let heard = Arc::new(driver::Heard::new());
    tokio::spawn(driver::run(driver::Start {
        stream,
        transport,
        connection,
        session: shared,
        commands: commands_rx,
        pending,
        end: end_tx,
        kex_count: Arc::clone(&kex_count),
        heard: Arc::clone(&heard),
    }));
    Ok((
        Session {
            commands,
            end,
            info,
            kex_count,
            heard,
            announced,
        },
        Incoming { rx: incoming_rx },
    ))
}

impl Session {
    /// What was agreed with the server.
    pub fn info(&self) -> &SessionInfo {
        &self.info
    }

    fn send(&self, command: Command) -> Result<(), Arc<str>> {
        self.commands.send(command).map_err(|_| self.end_reason())
    }

    fn end_reason(&self) -> Arc<str> {
        self.end
            .borrow()
            .clone()
            .unwrap_or_else(|| Arc::from("the session ended"))
    }

    /// Opens a channel.
    ///
    /// # Errors
    /// The server's refusal, or the session's end.
    pub async fn open(&self, kind: OpenKind) -> Result<Channel, OpenError> {
        let (tx, rx) = oneshot::channel();
        self.send(Command::Open { kind, reply: tx })
            .map_err(OpenError::SessionClosed)?;
        rx.await
            .unwrap_or_else(|_| Err(OpenError::SessionClosed(self.end_reason())))
    }

    /// Sends a global request and waits for its answer.
    async fn request(
        &self,
        name: &'static str,
        body: Vec<u8>,
    ) -> Result<GlobalReply, RequestError> {
        let (tx, rx) = oneshot::channel();
        self.send(Command::Global {
            name,
            body,
            reply: Some(tx),
        })
        .map_err(RequestError::SessionClosed)?;
        match rx.await {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(why)) => Err(RequestError::SessionClosed(why)),
            Err(_) => Err(RequestError::SessionClosed(self.end_reason())),
        }
    }

    /// `tcpip-forward` (RFC 4254 §7.1): the server listens on `address:port` for us.
    /// Returns the port bound (the one the server chose when `port` is 0).
    ///
    /// # Errors
    /// Refused (the port is taken or not permitted), or the session ended.
    pub async fn tcpip_forward(&self, address: &str, port: u32) -> Result<u32, RequestError> {
        let mut w = Writer::new();
        w.string(address.as_bytes()).u32(port);
        match self.request("tcpip-forward", w.into_vec()).await? {
            GlobalReply::Failure => Err(RequestError::Refused),
            GlobalReply::Success(body) if port == 0 => Reader::new(&body)
                .u32()
                .map_err(|_| RequestError::Malformed),
            GlobalReply::Success(_) => Ok(port),
        }
    }

    /// `cancel-tcpip-forward`.
    ///
    /// # Errors
    /// As [`Session::tcpip_forward`].
    pub async fn cancel_tcpip_forward(&self, address: &str, port: u32) -> Result<(), RequestError> {
        let mut w = Writer::new();
        w.string(address.as_bytes()).u32(port);
        expect_success(self.request("cancel-tcpip-forward", w.into_vec()).await?)
    }

    /// `streamlocal-forward@openssh.com`: the server listens on a Unix socket for us.
    ///
    /// # Errors
    /// As [`Session::tcpip_forward`].
    pub async fn streamlocal_forward(&self, path: &str) -> Result<(), RequestError> {
        let mut w = Writer::new();
        w.string(path.as_bytes());
        expect_success(
            self.request("streamlocal-forward@openssh.com", w.into_vec())
                .await?,
        )
    }

    /// `cancel-streamlocal-forward@openssh.com`.
    ///
    /// # Errors
    /// As [`Session::tcpip_forward`].
    pub async fn cancel_streamlocal_forward(&self, path: &str) -> Result<(), RequestError> {
        let mut w = Writer::new();
        w.string(path.as_bytes());
        expect_success(
            self.request("cancel-streamlocal-forward@openssh.com", w.into_vec())
                .await?,
        )
    }

    /// A heartbeat: `keepalive@openssh.com`, answered (with failure, as OpenSSH does)
    /// by any live server. Returns the round trip. The caller bounds the wait.
    ///
    /// # Errors
    /// The session ended.
    pub async fn ping(&self) -> Result<Duration, RequestError> {
        let started = Instant::now();
        self.request("keepalive@openssh.com", Vec::new()).await?;
        Ok(started.elapsed())
    }

    /// The server's host key announcement (OpenSSH's `UpdateHostKeys`) and the means to
    /// ask it for proofs; see [`crate::hostkeys`].
    pub fn host_key_announcement(&self) -> crate::hostkeys::Announcement {
        crate::hostkeys::Announcement {
            announced: self.announced.clone(),
            commands: self.commands.downgrade(),
            session_id: Arc::clone(&self.info.session_id),
            host_key_algorithm: self.info.algorithms.host_key.clone(),
        }
    }

    /// Key exchanges completed so far, the first included.
    pub fn kex_count(&self) -> u64 {
        self.kex_count.load(Ordering::Relaxed)
    }

    /// When the server's socket last gave us bytes (the session's start before that):
    /// anything arriving shows that the path from the server works, as OpenSSH's client
    /// counts any packet as a sign of life.
    pub fn last_heard(&self) -> Instant {
        self.heard.get()
    }

    /// Starts a key re-exchange now.
    pub fn rekey(&self) {
        let _ = self.send(Command::Rekey);
    }

    /// Says goodbye (DISCONNECT with `description`) and ends the session.
    pub fn disconnect(&self, description: &str) {
        let _ = self.send(Command::Disconnect {
            description: description.to_string(),
        });
    }

    /// Ends the session at once, without a goodbye (for a peer that stopped answering).
    pub fn kill(&self) {
        let _ = self.send(Command::Kill);
    }

    /// Whether the session has ended.
    pub fn is_closed(&self) -> bool {
        self.end.borrow().is_some()
    }

    /// Waits for the session's end; returns why it ended.
    pub async fn closed(&self) -> Arc<str> {
        let mut end = self.end.clone();
        match end.wait_for(Option::is_some).await {
            Ok(why) => why.clone().unwrap_or_else(|| Arc::from("ended")),
            Err(_) => Arc::from("the session ended"),
        }
    }
}

fn expect_success(reply: GlobalReply) -> Result<(), RequestError> {
    match reply {
        GlobalReply::Success(_) => Ok(()),
        GlobalReply::Failure => Err(RequestError::Refused),
    }
}

/// The stream and transport during handshake and authentication, before the driver runs.
struct Link<'a, S> {
    stream: &'a mut S,
    transport: &'a mut Transport,
    /// Messages for the layers above that arrived and were not asked for yet.
    pending: VecDeque<Vec<u8>>,
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Link<'_, S> {
    async fn flush(&mut self) -> Result<(), std::io::Error> {
        while self.transport.output_len() > 0 {
            let n = self.stream.write(self.transport.output()).await?;
            if n == 0 {
                return Err(std::io::ErrorKind::WriteZero.into());
            }
            self.transport.written(n);
        }
        self.stream.flush().await
    }

    /// Reads once and queues whatever whole messages arrived.
    async fn fill(&mut self) -> Result<(), ConnectError> {
        let before_banner = self.transport.server_version().is_none();
        let reset = |e: std::io::Error| -> ConnectError {
            let refused = matches!(
                e.kind(),
                std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe
            );
            if before_banner && refused {
                TransportError::ClosedBeforeBanner.into()
            } else {
                e.into()
            }
        };
        self.flush().await.map_err(reset)?;
        let n = self
            .stream
            .read(self.transport.read_buf())
            .await
            .map_err(reset)?;
        if n == 0 {
            return Err(if self.transport.server_version().is_none() {
                TransportError::ClosedBeforeBanner
            } else {
                TransportError::Protocol(
                    "connection closed by the server during the handshake".into(),
                )
            }
            .into());
        }
        self.transport.filled(n);
        while let Some(range) = self.transport.poll()? {
            self.pending
                .push_back(self.transport.message(range).to_vec());
            self.transport.done();
        }
        Ok(())
    }

    async fn handshake(&mut self) -> Result<(), ConnectError> {
        while !self.transport.is_established() {
            self.fill().await?;
        }
        self.flush().await?;
        Ok(())
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> PacketLink for Link<'_, S> {
    async fn send(&mut self, payload: Vec<u8>) -> Result<(), LinkError> {
        self.transport
            .send(&payload)
            .map_err(|e| LinkError(e.to_string()))?;
        self.flush().await.map_err(|e| LinkError(e.to_string()))
    }

    async fn recv(&mut self) -> Result<Vec<u8>, LinkError> {
        loop {
            if let Some(p) = self.pending.pop_front() {
                return Ok(p);
            }
            self.fill().await.map_err(|e| LinkError(e.to_string()))?;
        }
    }

    fn session_id(&self) -> &[u8] {
        self.transport.session_id().unwrap_or_default()
    }

    fn server_sig_algs(&self) -> Option<Vec<String>> {
        self.transport.server_sig_algs().map(<[String]>::to_vec)
    }
}
