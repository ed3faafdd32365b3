//! `ssh -R`: ask the server to listen, and connect each channel it opens for us to the
//! local target (or, with no target, speak SOCKS on it: a reverse dynamic forward).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tracing::{debug, warn};
use tunneld_config::{Endpoint, RemoteForward, RemoteListen};
use tunneld_ssh::{Channel, Forwarded, Incoming, IncomingChannel, RequestError, open_failure};

use super::listen;
use crate::pump::{copy_streams, pump};
use crate::session::{Session, SessionShared};
use crate::socks::{self, SOCKS_HANDSHAKE_TIMEOUT};
use crate::status::ForwardCounters;
use crate::sync::lock;

/// Where a channel the server opens for one of our remote listeners goes.
#[derive(Clone)]
pub(crate) struct Route {
    /// The local target; `None` makes the listener a reverse SOCKS proxy.
    pub target: Option<Endpoint>,
    /// The forward's counters.
    pub counters: Arc<ForwardCounters>,
    /// The forward's spec, for logs.
    pub spec: Arc<str>,
}

/// Remote listeners the server holds for us, keyed as the server reports them back.
#[derive(Default)]
pub(crate) struct Routes {
    /// `(bind address as sent, port as bound)`.
    pub tcp: HashMap<(String, u32), Route>,
    /// Server-side socket path.
    pub unix: HashMap<String, Route>,
}

impl Routes {
    /// The route of a `forwarded-tcpip` channel. Servers may report the address
    /// differently from how we asked ("localhost" vs "127.0.0.1"): a unique port match
    /// stands in then.
    pub(crate) fn tcp(&self, address: &str, port: u32) -> Option<Route> {
        self.tcp
            .get(&(address.to_string(), port))
            .or_else(|| {
                let mut by_port = self.tcp.iter().filter(|((_, p), _)| *p == port);
                match (by_port.next(), by_port.next()) {
                    (Some((_, r)), None) => Some(r),
                    _ => None,
                }
            })
            .cloned()
    }
}

/// Hint logged with a refused remote forward.
pub const STALE_PORT_HINT: &str = "the port may still be held by an earlier session of ours that the server has not \
     noticed is dead; ClientAliveInterval (with ClientAliveCountMax) in the server's sshd_config makes it free such ports";

/// Asks the server to listen for `fwd`; returns what it bound (the allocated port for port 0).
///
/// # Errors
/// The server's refusal ([`RequestError::Refused`]) or the session's end; a server that
/// does not answer within [`super::CHANNEL_OPEN_TIMEOUT`] is reported as the session's
/// end too.
pub(crate) async fn request(
    session: &Session,
    routes: &Mutex<Routes>,
    fwd: &RemoteForward,
    counters: &Arc<ForwardCounters>,
) -> Result<String, RequestError> {
    let route = Route {
        target: fwd.target.clone(),
        counters: Arc::clone(counters),
        spec: Arc::from(fwd.spec.as_str()),
    };
    let request = async {
        match &fwd.listen {
            RemoteListen::Tcp { bind, port } => {
                // Routed before asking, so a connection that arrives at once finds its way.
                if *port != 0 {
                    lock(routes)
                        .tcp
                        .insert((bind.clone(), u32::from(*port)), route.clone());
                }
                let got = session
                    .ssh
                    .tcpip_forward(bind.as_str(), u32::from(*port))
                    .await;
                match got {
                    Ok(allocated) => {
                        let actual = if *port == 0 {
                            allocated
                        } else {
                            u32::from(*port)
                        };
                        lock(routes).tcp.insert((bind.clone(), actual), route);
                        Ok(listen_address(bind, actual))
                    }
                    Err(e) => {
                        lock(routes).tcp.remove(&(bind.clone(), u32::from(*port)));
                        Err(e)
                    }
                }
            }
            RemoteListen::Unix(path) => {
                lock(routes).unix.insert(path.clone(), route);
                match session.ssh.streamlocal_forward(path.as_str()).await {
                    Ok(()) => Ok(path.clone()),
                    Err(e) => {
                        lock(routes).unix.remove(path);
                        Err(e)
                    }
                }
            }
        }
    };
    match tokio::time::timeout(super::CHANNEL_OPEN_TIMEOUT, request).await {
        Ok(r) => r,
        Err(_) => Err(RequestError::SessionClosed(std::sync::Arc::from(format!(
            "the server did not answer the request within {:?}",
            super::CHANNEL_OPEN_TIMEOUT
        )))),
    }
}

/// What the server bound, as `tunneld status` shows it: the address as asked (`*` for
/// every address, brackets around IPv6) and the port bound (the one the server chose
/// when 0 was asked).
fn listen_address(bind: &str, port: u32) -> String {
    match bind {
        "" => format!("*:{port}"),
        b if b.contains(':') => format!("[{b}]:{port}"),
        b => format!("{b}:{port}"),
    }
}

/// Asks the server to stop listening for `fwd` (on shutdown or removal), bounded in time.
pub(crate) async fn cancel(session: &Session, fwd: &RemoteForward, bound_port: Option<u32>) {
    let cancel = async {
        match &fwd.listen {
            RemoteListen::Tcp { bind, port } => {
                let port = bound_port.unwrap_or(u32::from(*port));
                let _ = session.ssh.cancel_tcpip_forward(bind.as_str(), port).await;
            }
            RemoteListen::Unix(path) => {
                let _ = session.ssh.cancel_streamlocal_forward(path.as_str()).await;
            }
        }
    };
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), cancel).await;
}

/// Drops the routing entry of a cancelled remote forward.
pub(crate) fn forget(routes: &Mutex<Routes>, fwd: &RemoteForward, bound_port: Option<u32>) {
    match &fwd.listen {
        RemoteListen::Tcp { bind, port } => {
            let port = bound_port.unwrap_or(u32::from(*port));
            lock(routes).tcp.remove(&(bind.clone(), port));
        }
        RemoteListen::Unix(path) => {
            lock(routes).unix.remove(path);
        }
    }
}

/// Hands each channel the server opens to its remote forward, refusing those for
/// listeners we did not request.
pub(crate) async fn route_incoming(
    shared: Arc<SessionShared>,
    routes: Arc<Mutex<Routes>>,
    mut incoming: Incoming,
) {
    loop {
        let offer = tokio::select! {
            _ = shared.conn_cancel.cancelled() => return,
            offer = incoming.recv() => match offer {
                Some(o) => o,
                None => return,
            },
        };
        let (route, origin) = match &offer.kind {
            Forwarded::Tcpip {
                address,
                port,
                originator,
                originator_port,
            } => (
                lock(&routes).tcp(address, *port),
                format!("{originator}:{originator_port}"),
            ),
            Forwarded::Streamlocal { path } => {
                (lock(&routes).unix.get(path).cloned(), path.clone())
            }
        };
        match route {
            Some(route) => spawn_incoming(&shared, route, offer, origin),
            None => {
                warn!(tunnel = %shared.tunnel, listener = ?offer.kind,
                      "server opened a channel for a listener we did not request; refused");
                offer.refuse(tunneld_ssh::open_failure::ADMINISTRATIVELY_PROHIBITED);
            }
        }
    }
}

/// Handles a channel the server opened for one of our listeners, on a task of its own so
/// the session loop never waits for a local connect.
pub(crate) fn spawn_incoming(
    shared: &Arc<SessionShared>,
    route: Route,
    offer: IncomingChannel,
    origin: String,
) {
    let shared = Arc::clone(shared);
    let tracker = shared.conn_tracker.clone();
    let Some(guard) = super::admit(&route.counters, &shared.tunnel, &route.spec) else {
        // Over the forward's limit: the server closes the connection it accepted.
        offer.refuse(open_failure::RESOURCE_SHORTAGE);
        return;
    };
    tracker.spawn(async move {
        let cancel = shared.conn_cancel.clone();
        let Some(target) = route.target.clone() else {
            reverse_socks(&shared, &route, offer.accept(), &guard).await;
            return;
        };
        let Some(connected) = connect_target(&shared, &target).await else {
            return;
        };
        match connected {
            Ok(Ok(stream)) => {
                if let Err(e) = pump(stream, offer.accept(), &guard, &cancel).await {
                    debug!(tunnel = %shared.tunnel, forward = %route.spec, error = %e, "connection ended");
                }
            }
            Ok(Err(e)) => {
                warn!(tunnel = %shared.tunnel, forward = %route.spec, from = %origin,
                      target = %super::show(&target), error = %e, "cannot reach the local target");
                offer.refuse(open_failure::CONNECT_FAILED);
            }
            Err(_) => {
                warn!(tunnel = %shared.tunnel, forward = %route.spec, from = %origin,
                      target = %super::show(&target), "local target did not accept in time");
                offer.refuse(open_failure::CONNECT_FAILED);
            }
        }
    });
}

/// Connects to a local target within the connect timeout (`Err` when it runs out); `None`
/// when the session ends first: a stopping tunnel never waits on a target.
async fn connect_target(
    shared: &SessionShared,
    target: &Endpoint,
) -> Option<Result<std::io::Result<listen::Stream>, tokio::time::error::Elapsed>> {
    let connect = tokio::time::timeout(shared.connect_timeout, listen::connect(target));
    shared.conn_cancel.run_until_cancelled(connect).await
}

async fn reverse_socks(
    shared: &SessionShared,
    route: &Route,
    mut stream: Channel,
    guard: &crate::status::ConnectionGuard,
) {
    let cancel = &shared.conn_cancel;
    let handshake = tokio::time::timeout(SOCKS_HANDSHAKE_TIMEOUT, socks::read_request(&mut stream));
    let Some(Ok(Ok(request))) = cancel.run_until_cancelled(handshake).await else {
        return;
    };
    let target = Endpoint::Tcp {
        host: request.host.clone(),
        port: request.port,
    };
    if !shared
        .permit_remote_open
        .allows(&request.host, request.port)
    {
        warn!(tunnel = %shared.tunnel, forward = %route.spec, target = %super::show(&target),
              permitted = %shared.permit_remote_open, "reverse SOCKS: target not in permit_remote_open");
        let _ = socks::reply_not_allowed(&mut stream, request.version).await;
        return;
    }
    let Some(connected) = connect_target(shared, &target).await else {
        return;
    };
    match connected {
        Ok(Ok(mut local)) => {
            if socks::reply_success(&mut stream, request.version)
                .await
                .is_ok()
            {
                let _ = copy_streams(&mut stream, &mut local, guard, &shared.conn_cancel).await;
            }
        }
        _ => {
            warn!(tunnel = %shared.tunnel, forward = %route.spec, target = %super::show(&target),
                  "reverse SOCKS: cannot reach the target");
            let _ = socks::reply_failure(&mut stream, request.version).await;
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn listen_addresses_read_as_host_port() {
        assert_eq!(super::listen_address("localhost", 2222), "localhost:2222");
        assert_eq!(super::listen_address("", 40123), "*:40123");
        assert_eq!(super::listen_address("::1", 2222), "[::1]:2222");
        assert_eq!(super::listen_address("10.0.0.1", 80), "10.0.0.1:80");
    }
}
