//! One tunnel's supervisor: keeps its listeners bound, its session connected and its
//! remote forwards requested; publishes its state on a watch channel.

use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use tokio::sync::{Semaphore, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};
use tunneld_config::{RemoteForward, TunnelConfig};

use crate::backoff::Schedule;
use crate::forward::listen::Listener;
use crate::forward::{ForwardCtx, dynamic, local, remote};
use crate::heartbeat;
use crate::session::{self, Session, SessionShared};
use crate::status::{
    ForwardCounters, ForwardKind, ForwardState, ForwardStatus, TunnelState, TunnelStatus,
};

/// Why a tunnel with `proxy_jump` does not start (`tunneld check` refuses such files too).
pub const PROXY_JUMP_UNSUPPORTED: &str =
    "proxy_jump is not supported by this version of tunneld; the tunnel is not started";

/// Everything a tunnel's tasks share.
struct Tunnel {
    cfg: Arc<TunnelConfig>,
    name: Arc<str>,
    status: watch::Sender<TunnelStatus>,
    cancel: CancellationToken,
    tracker: TaskTracker,
    session: watch::Sender<Option<Arc<Session>>>,
}

/// The status a tunnel starts with.
pub(crate) fn initial_status(cfg: &TunnelConfig) -> TunnelStatus {
    let mut forwards = Vec::new();
    let mut add = |kind, spec: &str| {
        forwards.push(ForwardStatus {
            kind,
            spec: spec.to_string(),
            state: ForwardState::Pending,
            error: None,
            bound: None,
            counters: Arc::new(ForwardCounters::default()),
        })
    };
    cfg.local
        .iter()
        .for_each(|f| add(ForwardKind::Local, &f.spec));
    cfg.remote
        .iter()
        .for_each(|f| add(ForwardKind::Remote, &f.spec));
    cfg.dynamic
        .iter()
        .for_each(|f| add(ForwardKind::Dynamic, &f.spec));
    TunnelStatus {
        name: cfg.name.clone(),
        state: TunnelState::Connecting,
        host: cfg.hosts.first().map(|h| h.to_string()).unwrap_or_default(),
        since: SystemTime::now(),
        reconnects: 0,
        last_error: None,
        retry_in: None,
        forwards,
    }
}

impl Tunnel {
    fn set_state(&self, state: TunnelState) {
        self.status.send_if_modified(|s| {
            if s.state == state {
                return false;
            }
            s.state = state;
            s.since = SystemTime::now();
            true
        });
    }

    fn set_forward(
        &self,
        index: usize,
        state: ForwardState,
        error: Option<String>,
        bound: Option<String>,
    ) {
        self.status.send_modify(|s| {
            let f = &mut s.forwards[index];
            f.state = state;
            f.error = error;
            if bound.is_some() {
                f.bound = bound;
            }
            // While a session is up the tunnel is up or degraded by its forwards.
            if matches!(s.state, TunnelState::Up | TunnelState::Degraded) {
                let all = s.forwards.iter().all(|f| f.state == ForwardState::Active);
                let next = if all {
                    TunnelState::Up
                } else {
                    TunnelState::Degraded
                };
                if next != s.state {
                    s.state = next;
                    s.since = SystemTime::now();
                }
            }
        });
    }

    fn counters(&self, index: usize) -> Arc<ForwardCounters> {
        Arc::clone(&self.status.borrow().forwards[index].counters)
    }

    fn ctx(&self, index: usize, spec: &str) -> ForwardCtx {
        ForwardCtx {
            tunnel: Arc::clone(&self.name),
            spec: Arc::from(spec),
            counters: self.counters(index),
            session: self.session.subscribe(),
            cancel: self.cancel.clone(),
            tracker: self.tracker.clone(),
            wait_for_session: self.cfg.connect_timeout,
            stall: self.stall(),
        }
    }

    /// Heartbeats declare the session dead after this much silence.
    fn heartbeat_window(&self) -> std::time::Duration {
        self.cfg.server_alive_interval * self.cfg.server_alive_count_max.max(1)
    }

    fn stall(&self) -> std::time::Duration {
        crate::pump::stall_timeout(self.heartbeat_window())
    }
}

/// Runs a tunnel until `cancel` fires, then stops it politely.
pub(crate) async fn run(
    cfg: Arc<TunnelConfig>,
    status: watch::Sender<TunnelStatus>,
    cancel: CancellationToken,
    handshakes: Arc<Semaphore>,
) {
    let (session_tx, _) = watch::channel(None);
    let t = Arc::new(Tunnel {
        name: Arc::from(cfg.name.as_str()),
        cfg,
        status,
        cancel,
        tracker: TaskTracker::new(),
        session: session_tx,
    });
    if t.cfg.proxy_jump.is_empty() {
        start_listeners(&t);
        supervise(&t, &handshakes).await;
    } else {
        // Never connect directly when a jump host was asked for.
        warn!(tunnel = %t.name, "{PROXY_JUMP_UNSUPPORTED}");
        t.status
            .send_modify(|s| s.last_error = Some(PROXY_JUMP_UNSUPPORTED.into()));
        t.set_state(TunnelState::Backoff);
        t.cancel.cancelled().await;
    }
    t.tracker.close();
    t.tracker.wait().await;
    t.set_state(TunnelState::Stopped);
}

fn start_listeners(t: &Arc<Tunnel>) {
    let n_local = t.cfg.local.len();
    let n_remote = t.cfg.remote.len();
    for (i, fwd) in t.cfg.local.iter().enumerate() {
        let (t2, listen, target) = (Arc::clone(t), fwd.listen.clone(), fwd.target.clone());
        let ctx = t.ctx(i, &fwd.spec);
        t.tracker.spawn(async move {
            let Some(listener) = bind_until_done(&t2, i, &listen).await else {
                return;
            };
            local::accept_loop(listener, ctx, move |s, peer, ctx| {
                local::serve(s, peer, target.clone(), ctx)
            })
            .await;
        });
    }
    for (j, fwd) in t.cfg.dynamic.iter().enumerate() {
        let i = n_local + n_remote + j;
        let listen = tunneld_config::Listen::Tcp {
            bind: fwd.bind.clone(),
            port: fwd.port,
        };
        let (t2, ctx) = (Arc::clone(t), t.ctx(i, &fwd.spec));
        t.tracker.spawn(async move {
            let Some(listener) = bind_until_done(&t2, i, &listen).await else {
                return;
            };
            local::accept_loop(listener, ctx, dynamic::serve).await;
        });
    }
}

/// Binds a listener, retrying on the tunnel's backoff while the address is busy.
async fn bind_until_done(
    t: &Tunnel,
    index: usize,
    listen: &tunneld_config::Listen,
) -> Option<Listener> {
    let mut schedule = Schedule::new(t.cfg.backoff);
    loop {
        match Listener::bind(listen).await {
            Ok(l) => {
                let at = l.describe();
                info!(tunnel = %t.name, forward = %t.status.borrow().forwards[index].spec, listen = %at, "listening");
                t.set_forward(index, ForwardState::Active, None, Some(at));
                return Some(l);
            }
            Err(e) => {
                warn!(tunnel = %t.name, error = %e, "cannot bind local forward; will retry");
                t.set_forward(index, ForwardState::Error, Some(e), None);
            }
        }
        tokio::select! {
            _ = t.cancel.cancelled() => return None,
            _ = tokio::time::sleep(schedule.next_delay()) => {}
        }
    }
}

async fn supervise(t: &Arc<Tunnel>, handshakes: &Semaphore) {
    let mut schedule = Schedule::new(t.cfg.backoff);
    let mut connected_before = false;
    loop {
        t.status.send_modify(|s| s.retry_in = None);
        t.set_state(TunnelState::Connecting);
        let host = &t.cfg.hosts[0];
        let shared = Arc::new(SessionShared {
            tunnel: Arc::clone(&t.name),
            routes: Mutex::default(),
            closed: CancellationToken::new(),
            conn_cancel: t.cancel.child_token(),
            conn_tracker: t.tracker.clone(),
            connect_timeout: t.cfg.connect_timeout,
            stall: t.stall(),
            kill: CancellationToken::new(),
        });
        info!(tunnel = %t.name, host = %host, "connecting");
        let attempt = async {
            let _permit = handshakes.acquire().await;
            let session = session::connect(&t.cfg, host, Arc::clone(&shared)).await?;
            // sshd counts a connection against MaxStartups until its listener hears that
            // authentication is done, a moment after we do: one round trip on the new
            // session lets it catch up before the next handshake starts.
            let _ =
                tokio::time::timeout(t.cfg.connect_timeout, heartbeat::Probe::ping(&session)).await;
            Ok::<_, crate::TunnelError>(session)
        };
        let result = tokio::select! {
            _ = t.cancel.cancelled() => return,
            r = attempt => r,
        };
        let needs_operator = match result {
            Ok(session) => {
                if connected_before {
                    t.status.send_modify(|s| s.reconnects += 1);
                }
                connected_before = true;
                let up_at = Instant::now();
                let session = Arc::new(session);
                let end = serve_session(t, &session).await;
                t.session.send_replace(None);
                shared.conn_cancel.cancel();
                let Some(why) = end else {
                    goodbye(t, &session).await;
                    shared.kill.cancel();
                    return;
                };
                // Whatever ended it, make sure russh lets go of the socket.
                shared.kill.cancel();
                if up_at.elapsed() >= t.cfg.stable_after {
                    schedule.reset();
                }
                warn!(tunnel = %t.name, reason = %why, "session lost");
                t.status.send_modify(|s| s.last_error = Some(why));
                false
            }
            Err(e) => {
                warn!(tunnel = %t.name, error = %e, "connection failed");
                t.status.send_modify(|s| s.last_error = Some(e.to_string()));
                e.needs_operator()
            }
        };
        // Wrong keys and host keys need a person: retry at the ceiling, not in a hurry.
        let delay = if needs_operator {
            schedule.ceiling_delay()
        } else {
            schedule.next_delay()
        };
        info!(tunnel = %t.name, delay = ?delay, "retrying after backoff");
        t.status.send_modify(|s| s.retry_in = Some(delay));
        t.set_state(TunnelState::Backoff);
        tokio::select! {
            _ = t.cancel.cancelled() => return,
            _ = tokio::time::sleep(delay) => {}
        }
    }
}

fn remote_index(t: &Tunnel, j: usize) -> usize {
    t.cfg.local.len() + j
}

/// Serves an established session until it is lost (returns why) or the tunnel stops
/// (returns `None`).
async fn serve_session(t: &Arc<Tunnel>, session: &Arc<Session>) -> Option<String> {
    info!(tunnel = %t.name, host = %t.cfg.hosts[0], host_key = %session.host_key, "connected");
    t.status.send_modify(|s| {
        s.last_error = None;
        for f in s
            .forwards
            .iter_mut()
            .filter(|f| f.kind == ForwardKind::Remote)
        {
            f.state = ForwardState::Pending;
            f.error = None;
        }
    });
    t.set_state(TunnelState::Degraded);
    t.session.send_replace(Some(Arc::clone(session)));
    let session_done = session.shared.closed.clone();
    let requests = TaskTracker::new();
    for (j, fwd) in t.cfg.remote.iter().enumerate() {
        let (t2, s2, fwd) = (Arc::clone(t), Arc::clone(session), fwd.clone());
        let stop = session_done.clone();
        requests.spawn(async move {
            tokio::select! {
                _ = stop.cancelled() => {}
                _ = t2.cancel.cancelled() => {}
                _ = keep_remote(&t2, &s2, j, &fwd) => {}
            }
        });
    }
    // With no remote forwards the state follows the listeners alone.
    t.set_forward_state_refresh();
    requests.close();
    let interval = t.cfg.server_alive_interval;
    let count = t.cfg.server_alive_count_max;
    let closed = || "connection closed by the server or the network".to_string();
    let end = tokio::select! {
        _ = t.cancel.cancelled() => None,
        _ = session_done.cancelled() => Some(closed()),
        verdict = heartbeat::watch(&**session, interval, count) => Some(match verdict {
            heartbeat::Verdict::Silent { unanswered } => format!(
                "server stopped answering: {unanswered} heartbeat(s) unanswered in {:?} \
                 (server_alive_interval {interval:?} x server_alive_count_max {count})",
                t.heartbeat_window()
            ),
            heartbeat::Verdict::Closed => closed(),
        }),
    };
    if end.is_some() {
        // Cut it now: on a silent path russh would wait for TCP to give up.
        session.shared.kill.cancel();
    }
    requests.wait().await;
    end
}

impl Tunnel {
    fn set_forward_state_refresh(&self) {
        self.status.send_modify(|s| {
            if matches!(s.state, TunnelState::Up | TunnelState::Degraded) {
                let all = s.forwards.iter().all(|f| f.state == ForwardState::Active);
                s.state = if all {
                    TunnelState::Up
                } else {
                    TunnelState::Degraded
                };
            }
        });
    }
}

/// Requests one remote forward, retrying on its own backoff while the server refuses.
async fn keep_remote(t: &Tunnel, session: &Session, j: usize, fwd: &RemoteForward) {
    let index = remote_index(t, j);
    let counters = t.counters(index);
    let mut schedule = Schedule::new(t.cfg.backoff);
    loop {
        match remote::request(session, fwd, &counters).await {
            Ok(bound) => {
                info!(tunnel = %t.name, forward = %fwd.spec, listen = %bound, "remote forward active");
                t.set_forward(index, ForwardState::Active, None, Some(bound));
                return;
            }
            Err(russh::Error::RequestDenied) => {
                let delay = schedule.next_delay();
                let msg = format!("server refused to listen for {}", fwd.spec);
                warn!(tunnel = %t.name, forward = %fwd.spec, retry_in = ?delay, hint = remote::STALE_PORT_HINT, "{msg}");
                t.set_forward(index, ForwardState::Refused, Some(msg), None);
                tokio::time::sleep(delay).await;
            }
            Err(e) => {
                warn!(tunnel = %t.name, forward = %fwd.spec, error = %e, "remote forward request failed");
                t.set_forward(index, ForwardState::Error, Some(e.to_string()), None);
                return;
            }
        }
    }
}

/// On shutdown: cancel remote listeners and say goodbye, each bounded in time.
async fn goodbye(t: &Tunnel, session: &Session) {
    let bound: Vec<Option<u32>> = {
        let s = t.status.borrow();
        (0..t.cfg.remote.len())
            .map(|j| {
                let f = &s.forwards[remote_index(t, j)];
                if f.state != ForwardState::Active {
                    return None;
                }
                f.bound
                    .as_deref()
                    .and_then(|b| b.rsplit(':').next())
                    .and_then(|p| p.parse().ok())
            })
            .collect()
    };
    // All at once: each waits up to a second for a server that may not answer.
    let cancels = t
        .cfg
        .remote
        .iter()
        .zip(bound)
        .filter(|(fwd, port)| {
            port.is_some() || matches!(fwd.listen, tunneld_config::RemoteListen::Unix(_))
        })
        .map(|(fwd, port)| remote::cancel(session, fwd, port));
    futures_util::future::join_all(cancels).await;
    // disconnect() only queues the message: wait until the session task has sent it and
    // ended, so the server logs a clean disconnect rather than a dropped connection.
    let _ = tokio::time::timeout(GOODBYE_TIMEOUT, async {
        let _ = session
            .handle
            .disconnect(russh::Disconnect::ByApplication, "tunneld stopping", "")
            .await;
        session.shared.closed.cancelled().await;
    })
    .await;
}

/// How long a stopping tunnel waits for the server to take its disconnect.
const GOODBYE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);
