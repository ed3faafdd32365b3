//! The three kinds of forwards, and what they share: local listeners, target sockets,
//! opening channels on the current session.

pub(crate) mod dynamic;
pub(crate) mod listen;
pub(crate) mod local;
pub(crate) mod remote;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};
use tunneld_config::Endpoint;
use tunneld_ssh::{Channel, OpenKind};

use crate::session::Session;
use crate::status::{ConnectionGuard, ForwardCounters, LimitEvent};

/// A frozen server never answers a channel open: wait this long at most.
pub const CHANNEL_OPEN_TIMEOUT: Duration = Duration::from_secs(15);

/// The current session of a tunnel, if it has one; forwards wait on it.
pub(crate) type SessionWatch = watch::Receiver<Option<Arc<Session>>>;

/// What a forward's tasks need from their tunnel.
#[derive(Clone)]
pub(crate) struct ForwardCtx {
    pub tunnel: Arc<str>,
    pub spec: Arc<str>,
    pub counters: Arc<ForwardCounters>,
    pub session: SessionWatch,
    pub cancel: CancellationToken,
    pub tracker: TaskTracker,
    /// How long an accepted connection waits for a session when the tunnel is down.
    pub wait_for_session: Duration,
}

impl ForwardCtx {
    /// The current session, waiting up to `wait_for_session` for one.
    pub(crate) async fn session(&self) -> Option<Arc<Session>> {
        let mut rx = self.session.clone();
        let wait = rx.wait_for(|s| s.is_some());
        match tokio::time::timeout(self.wait_for_session, wait).await {
            Ok(Ok(s)) => s.clone(),
            _ => None,
        }
    }
}

/// Why a connection got no channel.
pub(crate) enum NoChannel {
    /// No session came within `wait_for_session`.
    Down,
    /// The server refused the channel, or did not answer; the reason.
    Refused(String),
}

/// A channel to `target` on the tunnel's session, with the token its connection lives by
/// (the session's); waits for a session (up to `wait_for_session`) and for the server's
/// answer. `None` when the forward stops meanwhile: a stopping tunnel never waits on a
/// client.
pub(crate) async fn channel_for(
    ctx: &ForwardCtx,
    target: &Endpoint,
    peer: Option<SocketAddr>,
) -> Option<Result<(Channel, CancellationToken), NoChannel>> {
    let Some(session) = ctx.cancel.run_until_cancelled(ctx.session()).await? else {
        return Some(Err(NoChannel::Down));
    };
    let opened = ctx
        .cancel
        .run_until_cancelled(open_channel(&session, target, peer))
        .await?;
    Some(match opened {
        Ok(channel) => Ok((channel, session.shared.conn_cancel.clone())),
        Err(why) => Err(NoChannel::Refused(why)),
    })
}

/// Opens a `direct-tcpip` or `direct-streamlocal` channel to `target`, bounded in time.
async fn open_channel(
    session: &Session,
    host: &Endpoint,
    origin: Option<SocketAddr>,
) -> Result<Channel, String> {
    let (ip, port) = origin
        .map(|a| (a.ip().to_string(), u32::from(a.port())))
        .unwrap_or_else(|| ("127.0.0.1".to_string(), 0));
    let kind = match host {
        Endpoint::Tcp { host, port: p } => OpenKind::DirectTcpip {
            host: host.clone(),
            port: u32::from(*p),
            originator: ip,
            originator_port: port,
        },
        Endpoint::Unix(path) => OpenKind::DirectStreamlocal {
            path: path.to_string_lossy().into_owned(),
        },
    };
    let open = session.ssh.open(kind);
    match tokio::time::timeout(CHANNEL_OPEN_TIMEOUT, open).await {
        Ok(Ok(ch)) => Ok(ch),
        Ok(Err(e)) => Err(format!("server could not open {}: {e}", show(host))),
        Err(_) => Err(format!(
            "server did not answer the channel open for {} within {CHANNEL_OPEN_TIMEOUT:?}",
            show(host)
        )),
    }
}

/// A place for a new connection under the forward's `max_connections`, or `None` when it
/// is at the limit; logs the limit being reached, or left again.
pub(crate) fn admit(
    counters: &Arc<ForwardCounters>,
    tunnel: &str,
    spec: &str,
) -> Option<ConnectionGuard> {
    let (guard, event) = match counters.try_open() {
        Ok((guard, event)) => (Some(guard), event),
        Err(event) => (None, event),
    };
    let limit = counters.limit();
    match event {
        LimitEvent::None => {}
        LimitEvent::Reached => warn!(
            tunnel,
            forward = spec,
            max_connections = limit,
            "connection limit reached: new connections are closed until one ends"
        ),
        LimitEvent::Recovered(refused) => info!(
            tunnel,
            forward = spec,
            refused,
            "below the connection limit again"
        ),
    }
    guard
}

/// `host:port` (IPv6 in brackets) or the socket path.
pub(crate) fn show(e: &Endpoint) -> String {
    match e {
        Endpoint::Tcp { host, port } if host.contains(':') => format!("[{host}]:{port}"),
        Endpoint::Tcp { host, port } => format!("{host}:{port}"),
        Endpoint::Unix(p) => p.display().to_string(),
    }
}
