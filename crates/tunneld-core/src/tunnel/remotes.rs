//! The remote forwards held on a session: requested, retried while refused, cancelled
//! when removed; and the goodbye that gives them back when the tunnel stops.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use tunneld_config::{RemoteForward, RemoteListen};

use super::{Tunnel, lock};
use crate::backoff::Schedule;
use crate::forward::remote;
use crate::session::Session;
use crate::status::{ForwardKind, ForwardState};

/// How long a stopping tunnel waits for the server to take its disconnect.
const GOODBYE_TIMEOUT: Duration = Duration::from_secs(1);

/// Requests on `session` every wanted remote forward not requested yet, and cancels
/// those no longer wanted.
pub(super) fn request_remotes(t: &Arc<Tunnel>, session: &Arc<Session>) {
    // The remote forwards in force: every new session requests these.
    let wanted = lock(&t.applied).remote.clone();
    let routes = Arc::clone(&lock(&t.routes));
    let mut tasks = lock(&t.remote_tasks);
    // Known by their parsed value, as the reload's changes are.
    tasks.retain(|(fwd, token)| {
        let keep = wanted.contains(fwd);
        if !keep {
            token.cancel();
        }
        keep
    });
    for fwd in wanted {
        if tasks.iter().any(|(f, _)| *f == fwd) {
            continue;
        }
        let token = session.shared.conn_cancel.child_token();
        tasks.push((fwd.clone(), token.clone()));
        let (t2, s2, routes) = (Arc::clone(t), Arc::clone(session), Arc::clone(&routes));
        t.tracker
            .spawn(async move { keep_remote(&t2, &s2, &routes, &fwd, &token).await });
    }
}

/// Requests one remote forward, retrying on its own backoff while the server refuses;
/// once active, holds it until `stop` (removed by a reload: cancelled on the server too).
async fn keep_remote(
    t: &Tunnel,
    session: &Session,
    routes: &Mutex<remote::Routes>,
    fwd: &RemoteForward,
    stop: &CancellationToken,
) {
    let kind = ForwardKind::Remote;
    let counters = t.counters(kind, &fwd.spec);
    let mut schedule = Schedule::new(t.cfg.backoff);
    let bound_port = loop {
        let attempt = tokio::select! {
            _ = stop.cancelled() => return,
            r = remote::request(session, routes, fwd, &counters) => r,
        };
        match attempt {
            Ok(bound) => {
                info!(tunnel = %t.name, forward = %fwd.spec, listen = %bound, "remote forward active");
                let port = bound_port(&bound);
                t.set_forward(
                    kind,
                    &fwd.spec,
                    ForwardState::Active,
                    None,
                    Some(vec![bound]),
                );
                break port;
            }
            Err(tunneld_ssh::RequestError::Refused) => {
                let delay = schedule.next_delay();
                let msg = format!("server refused to listen for {}", fwd.spec);
                warn!(tunnel = %t.name, forward = %fwd.spec, retry_in = ?delay, hint = remote::STALE_PORT_HINT, "{msg}");
                t.set_forward(kind, &fwd.spec, ForwardState::Refused, Some(msg), None);
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(delay) => {}
                }
            }
            Err(e) => {
                warn!(tunnel = %t.name, forward = %fwd.spec, error = %e, "remote forward request failed");
                t.set_forward(
                    kind,
                    &fwd.spec,
                    ForwardState::Error,
                    Some(e.to_string()),
                    None,
                );
                return;
            }
        }
    };
    stop.cancelled().await;
    // Removed while the session lives on: give the port back. (On session loss or
    // shutdown the token fires too; cancelling on a dead session costs at most a second.)
    if !t.cancel.is_cancelled() && !session.shared.closed.is_cancelled() {
        remote::cancel(session, fwd, bound_port).await;
        remote::forget(routes, fwd, bound_port);
        info!(tunnel = %t.name, forward = %fwd.spec, "remote forward removed");
    }
}

/// The port of a remote forward's bound address (`"localhost:2222"`); `None` for a socket path.
fn bound_port(bound: &str) -> Option<u32> {
    bound.rsplit(':').next()?.parse().ok()
}

/// On shutdown: cancel remote listeners and say goodbye, within [`GOODBYE_TIMEOUT`].
pub(super) async fn goodbye(t: &Tunnel, session: &Session) {
    let active: Vec<(RemoteForward, Option<u32>)> = {
        let s = t.status.borrow();
        lock(&t.applied)
            .remote
            .iter()
            .filter_map(|fwd| {
                let f = s
                    .forwards
                    .iter()
                    .find(|f| f.kind == ForwardKind::Remote && f.spec == fwd.spec)?;
                if f.state != ForwardState::Active {
                    return None;
                }
                let port = f.listen.as_ref()?.first().and_then(|a| bound_port(a));
                (port.is_some() || matches!(fwd.listen, RemoteListen::Unix(_)))
                    .then(|| (fwd.clone(), port))
            })
            .collect()
    };
    // One budget for all of it, so a server that does not answer costs GOODBYE_TIMEOUT
    // and no more. The cancels go out at once.
    let cancels = active
        .iter()
        .map(|(fwd, port)| remote::cancel(session, fwd, *port));
    let _ = tokio::time::timeout(GOODBYE_TIMEOUT, async {
        futures_util::future::join_all(cancels).await;
        // disconnect() only queues the message: wait until the session task has sent it
        // and ended, so the server logs a clean disconnect rather than a dropped one.
        session.ssh.disconnect("tunneld stopping");
        session.shared.closed.cancelled().await;
        // Then the jump hosts, the nearest to the server first.
        for hop in session.hops.iter().rev() {
            hop.disconnect("tunneld stopping");
            hop.closed().await;
        }
    })
    .await;
}
