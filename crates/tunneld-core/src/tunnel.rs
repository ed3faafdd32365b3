//! One tunnel's supervisor: keeps its listeners bound, its session connected and its
//! remote forwards requested; publishes its state on a watch channel.
//!
//! The connection settings of a run are fixed (a reload that changes them restarts the
//! tunnel). The forward lists are not: a reload that changes only them sends the new
//! config on `desired`, and `reconcile` opens and closes forwards on the live session.
//!
//! Files: this one holds the supervisor, the listeners and the status; `remotes` the
//! remote forwards held on a session and the goodbye; `hosts` the failover over a host
//! list.

mod hosts;
mod listeners;
mod remotes;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use futures_util::future::FusedFuture;
use tokio::sync::{Semaphore, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};
use tunneld_config::{ForwardChanges, RemoteForward, TunnelConfig};

use crate::backoff::Schedule;
use crate::forward::{ForwardCtx, remote};
use crate::heartbeat;
use crate::netwatch::{self, NetChange};
use crate::session::{self, Session, SessionShared};
use crate::sync::lock;
use hosts::HostRotation;
use remotes::{goodbye, request_remotes};

use crate::status::{
    ForwardCounters, ForwardKind, ForwardState, ForwardStatus, TunnelState, TunnelStatus,
};

/// Everything a tunnel's tasks share.
struct Tunnel {
    /// Connection settings of this run, and the forward lists it started with.
    cfg: Arc<TunnelConfig>,
    name: Arc<str>,
    status: watch::Sender<TunnelStatus>,
    cancel: CancellationToken,
    tracker: TaskTracker,
    session: watch::Sender<Option<Arc<Session>>>,
    /// The config whose forward lists are in force (reloads are applied as changes to it).
    applied: Mutex<Arc<TunnelConfig>>,
    /// Running local and dynamic listeners.
    listeners: Mutex<Vec<listeners::Running>>,
    /// Where the current session's channels for our remote listeners go: a new table for
    /// each session, so that the tasks of one that ended never touch the next one's.
    routes: Mutex<Arc<Mutex<remote::Routes>>>,
    /// Remote forwards requested on the current session, each cancelled by its token.
    remote_tasks: Mutex<Vec<(RemoteForward, CancellationToken)>>,
    /// Changes of the machine's network.
    net: watch::Receiver<NetChange>,
}

/// `cfg` with no forwards: what a tunnel starts from before its first [`reconcile`].
fn without_forwards(cfg: &TunnelConfig) -> TunnelConfig {
    TunnelConfig {
        local: Vec::new(),
        remote: Vec::new(),
        dynamic: Vec::new(),
        ..cfg.clone()
    }
}

/// The status a tunnel starts with.
pub(crate) fn initial_status(cfg: &TunnelConfig) -> TunnelStatus {
    TunnelStatus {
        name: cfg.name.clone(),
        state: TunnelState::Connecting,
        host: cfg.hosts.first().map(|h| h.to_string()).unwrap_or_default(),
        since: SystemTime::now(),
        reconnects: 0,
        last_error: None,
        retry_in: None,
        last_connect: None,
        heartbeat_rtt_us: Arc::default(),
        forwards: forward_list(cfg, &[], &ForwardChanges::default()),
    }
}

/// The forwards of `cfg` in status order (local, remote, dynamic), keeping the entries
/// (state, counters) of those already in `old`.
fn forward_list(
    cfg: &TunnelConfig,
    old: &[ForwardStatus],
    changes: &ForwardChanges,
) -> Vec<ForwardStatus> {
    let keys = cfg
        .local
        .iter()
        .map(|f| (ForwardKind::Local, &f.spec))
        .chain(cfg.remote.iter().map(|f| (ForwardKind::Remote, &f.spec)))
        .chain(cfg.dynamic.iter().map(|f| (ForwardKind::Dynamic, &f.spec)));
    // A forward started anew starts from `pending`, even where one of the same spec ran
    // before (`gateway_ports` changed where it listens).
    let started = |kind: ForwardKind, spec: &String| match kind {
        ForwardKind::Local => changes.local_added.iter().any(|f| &f.spec == spec),
        ForwardKind::Remote => changes.remote_added.iter().any(|f| &f.spec == spec),
        ForwardKind::Dynamic => changes.dynamic_added.iter().any(|f| &f.spec == spec),
    };
    keys.map(|(kind, spec)| {
        old.iter()
            .find(|f| f.kind == kind && &f.spec == spec && !started(kind, spec))
            .cloned()
            .unwrap_or_else(|| ForwardStatus {
                kind,
                spec: spec.clone(),
                state: ForwardState::Pending,
                error: None,
                listen: None,
                counters: Arc::new(ForwardCounters::with_limit(cfg.max_connections)),
            })
    })
    .collect()
}

/// Remote forwards back to `pending`, with nothing bound: they live and die with a session.
fn forget_remotes(s: &mut TunnelStatus) {
    for f in s
        .forwards
        .iter_mut()
        .filter(|f| f.kind == ForwardKind::Remote)
    {
        f.state = ForwardState::Pending;
        f.error = None;
        f.listen = None;
    }
}

/// While a session is up: `up` when every forward is active, `degraded` when one is not;
/// a fresh session stays `connecting` until each forward has had its first answer, so
/// `up` means ready. `since` is left alone: it marks when the session came up.
fn settle(s: &mut TunnelStatus, session_up: bool) {
    if !session_up {
        return;
    }
    let pending = s.forwards.iter().any(|f| f.state == ForwardState::Pending);
    let all_active = s.forwards.iter().all(|f| f.state == ForwardState::Active);
    s.state = match s.state {
        TunnelState::Connecting if pending => TunnelState::Connecting,
        _ if all_active => TunnelState::Up,
        _ => TunnelState::Degraded,
    };
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
        kind: ForwardKind,
        spec: &str,
        state: ForwardState,
        error: Option<String>,
        listen: Option<Vec<String>>,
    ) {
        let up = self.session.borrow().is_some();
        self.status.send_modify(|s| {
            if let Some(f) = s
                .forwards
                .iter_mut()
                .find(|f| f.kind == kind && f.spec == spec)
            {
                f.state = state;
                f.error = error;
                f.listen = listen;
            }
            settle(s, up);
        });
    }

    fn counters(&self, kind: ForwardKind, spec: &str) -> Arc<ForwardCounters> {
        self.status
            .borrow()
            .forwards
            .iter()
            .find(|f| f.kind == kind && f.spec == spec)
            .map(|f| Arc::clone(&f.counters))
            .unwrap_or_else(|| Arc::new(ForwardCounters::with_limit(self.cfg.max_connections)))
    }

    fn ctx(&self, kind: ForwardKind, spec: &str, cancel: CancellationToken) -> ForwardCtx {
        ForwardCtx {
            tunnel: Arc::clone(&self.name),
            spec: Arc::from(spec),
            counters: self.counters(kind, spec),
            session: self.session.subscribe(),
            cancel,
            tracker: self.tracker.clone(),
            wait_for_session: self.cfg.connect_timeout,
        }
    }

    /// How long a session has to answer a probe after a network change: short, but
    /// longer than a link flap's retransmission wait, and never past the heartbeats'.
    fn probe_deadline(&self) -> Duration {
        let window = self.heartbeat_window();
        if window.is_zero() {
            PROBE_DEADLINE
        } else {
            PROBE_DEADLINE.min(window)
        }
    }

    /// Heartbeats declare the session dead after this much silence.
    fn heartbeat_window(&self) -> Duration {
        self.cfg.server_alive_interval * self.cfg.server_alive_count_max.max(1)
    }
}

/// Runs a tunnel until `cancel` fires, then stops it politely. Forward-list changes
/// arrive on `desired`.
pub(crate) async fn run(
    mut desired: watch::Receiver<Arc<TunnelConfig>>,
    status: watch::Sender<TunnelStatus>,
    cancel: CancellationToken,
    handshakes: Arc<Semaphore>,
    net: watch::Receiver<NetChange>,
) {
    let cfg = desired.borrow_and_update().clone();
    let (session_tx, _) = watch::channel(None);
    let t = Arc::new(Tunnel {
        name: Arc::from(cfg.name.as_str()),
        cfg: Arc::clone(&cfg),
        status,
        cancel,
        tracker: TaskTracker::new(),
        session: session_tx,
        applied: Mutex::new(Arc::new(without_forwards(&cfg))),
        listeners: Mutex::default(),
        routes: Mutex::default(),
        remote_tasks: Mutex::default(),
        net,
    });
    reconcile(&t, &cfg);
    let t2 = Arc::clone(&t);
    t.tracker.spawn(async move {
        loop {
            tokio::select! {
                _ = t2.cancel.cancelled() => return,
                r = desired.changed() => {
                    if r.is_err() {
                        return;
                    }
                    let cfg = desired.borrow_and_update().clone();
                    reconcile(&t2, &cfg);
                }
            }
        }
    });
    supervise(&t, &handshakes).await;
    t.tracker.close();
    t.tracker.wait().await;
    t.set_state(TunnelState::Stopped);
}

/// Applies a new config's forward lists to the running tunnel: exactly the changes
/// [`tunneld_config::forward_changes`] finds between the lists in force and the new ones
/// (what a reload reports), so a forward whose spec reads the same but whose value
/// changed (`gateway_ports` moves a listener) is stopped and started again.
fn reconcile(t: &Arc<Tunnel>, cfg: &Arc<TunnelConfig>) {
    let changes = {
        let mut applied = lock(&t.applied);
        let changes = tunneld_config::forward_changes(&applied, cfg);
        *applied = Arc::clone(cfg);
        changes
    };
    let up = t.session.borrow().is_some();
    t.status.send_modify(|s| {
        s.forwards = forward_list(cfg, &s.forwards, &changes);
        settle(s, up);
    });
    listeners::apply(t, &changes);
    let session = t.session.borrow().clone();
    if let Some(session) = session {
        request_remotes(t, &session);
    }
}

async fn supervise(t: &Arc<Tunnel>, handshakes: &Semaphore) {
    let mut schedule = Schedule::new(t.cfg.backoff);
    let mut connected_before = false;
    let mut hosts = HostRotation::new(t.cfg.hosts.len(), t.cfg.failover_after);
    loop {
        let host = &t.cfg.hosts[hosts.current()];
        t.status.send_modify(|s| {
            s.retry_in = None;
            s.host = host.to_string();
        });
        t.set_state(TunnelState::Connecting);
        let shared = Arc::new(SessionShared {
            tunnel: Arc::clone(&t.name),
            closed: CancellationToken::new(),
            conn_cancel: t.cancel.child_token(),
            conn_tracker: t.tracker.clone(),
            connect_timeout: t.cfg.connect_timeout,
            kill: CancellationToken::new(),
            server_version: Mutex::default(),
            end_reason: Mutex::default(),
            permit_remote_open: t.cfg.permit_remote_open.clone(),
        });
        info!(tunnel = %t.name, host = %host, "connecting");
        let attempt = async {
            let _permit = handshakes.acquire().await;
            let (session, incoming) = session::connect(&t.cfg, host, Arc::clone(&shared)).await?;
            let routes = Arc::new(Mutex::default());
            *lock(&t.routes) = Arc::clone(&routes);
            tokio::spawn(remote::route_incoming(
                Arc::clone(&shared),
                routes,
                incoming,
            ));
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
                hosts.connected();
                if connected_before {
                    t.status.send_modify(|s| s.reconnects += 1);
                }
                connected_before = true;
                let up_at = Instant::now();
                let session = Arc::new(session);
                let end = serve_session(t, &session).await;
                t.session.send_replace(None);
                lock(&t.remote_tasks).clear();
                shared.conn_cancel.cancel();
                let Some(why) = end else {
                    goodbye(t, &session).await;
                    shared.kill.cancel();
                    return;
                };
                // Whatever ended it, make sure the session lets go of the socket.
                shared.kill.cancel();
                // The server's listeners went with the session.
                t.status.send_modify(forget_remotes);
                if up_at.elapsed() >= t.cfg.stable_after {
                    schedule.reset();
                }
                warn!(tunnel = %t.name, reason = %why, "session lost");
                t.status.send_modify(|s| s.last_error = Some(why));
                false
            }
            Err(e) => {
                warn!(tunnel = %t.name, host = %host, error = %e, "connection failed");
                t.status.send_modify(|s| s.last_error = Some(e.to_string()));
                if hosts.failed() {
                    let next = &t.cfg.hosts[hosts.current()];
                    warn!(tunnel = %t.name, from = %host, to = %next, attempts = t.cfg.failover_after,
                          "failing over to the next host");
                }
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

/// Serves an established session until it is lost (returns why) or the tunnel stops
/// (returns `None`).
async fn serve_session(t: &Arc<Tunnel>, session: &Arc<Session>) -> Option<String> {
    let server = lock(&session.shared.server_version)
        .clone()
        .unwrap_or_default();
    let host = t.status.borrow().host.clone();
    info!(tunnel = %t.name, host = %host, server = %server, host_key = %session.host_key, "connected");
    let rtt = Arc::clone(&t.status.borrow().heartbeat_rtt_us);
    rtt.store(0, std::sync::atomic::Ordering::Relaxed);
    t.status.send_modify(|s| {
        s.last_error = None;
        s.last_connect = Some(SystemTime::now());
        forget_remotes(s);
        s.state = TunnelState::Connecting;
        s.since = SystemTime::now();
        settle(s, true);
    });
    t.session.send_replace(Some(Arc::clone(session)));
    request_remotes(t, session);
    let interval = t.cfg.server_alive_interval;
    let count = t.cfg.server_alive_count_max;
    let closed = || {
        let reason = lock(&session.shared.end_reason).clone();
        reason.unwrap_or_else(|| "connection closed by the server or the network".to_string())
    };
    let mut net = t.net.clone();
    net.mark_unchanged();
    let heartbeats = heartbeat::monitor(&**session, interval, count, &t.name, &rtt);
    let mut heartbeats = std::pin::pin!(heartbeats);
    // A probe after a network change, with a short deadline; at most one at a time.
    let mut probe = std::pin::pin!(futures_util::future::Fuse::terminated());
    let mut change: Arc<str> = Arc::from("");
    let end = loop {
        tokio::select! {
            _ = t.cancel.cancelled() => break None,
            _ = session.shared.closed.cancelled() => break Some(closed()),
            verdict = &mut heartbeats => break Some(match verdict {
                heartbeat::Verdict::Silent { unanswered } => format!(
                    "server stopped answering: {unanswered} heartbeat(s) unanswered in {:?} \
                     (server_alive_interval {interval:?} x server_alive_count_max {count})",
                    t.heartbeat_window()
                ),
                heartbeat::Verdict::Closed => closed(),
            }),
            Ok(()) = net.changed() => {
                let now = net.borrow_and_update().clone();
                change = Arc::clone(&now.what);
                if let Some(local) = session.local_addr
                    && !netwatch::is_local(local)
                {
                    info!(tunnel = %t.name, address = %local, "the session's local address is gone; reconnecting now");
                    break Some(format!("network changed ({}): local address {local} is gone", now.what));
                }
                if now.gained && probe.is_terminated() {
                    info!(tunnel = %t.name, "network changed; probing the session now");
                    probe.set(futures_util::FutureExt::fuse(probe_now(session, t.probe_deadline())));
                }
            }
            alive = &mut probe => {
                if !alive {
                    break Some(format!(
                        "network changed ({change}); the server did not answer within {:?}",
                        t.probe_deadline()
                    ));
                }
            }
        }
    };
    if end.is_some() {
        // Cut it now: on a silent path the socket would wait for TCP to give up.
        session.shared.kill.cancel();
    }
    end
}

/// Deadline of the probe after a network change; see [`Tunnel::probe_deadline`].
const PROBE_DEADLINE: Duration = Duration::from_secs(5);

/// One heartbeat now: true when the server answers within `deadline`, or at least sends
/// something meanwhile.
async fn probe_now(session: &Session, deadline: Duration) -> bool {
    let sent = tokio::time::Instant::now();
    match tokio::time::timeout(deadline, heartbeat::Probe::ping(session)).await {
        Ok(answered) => answered,
        Err(_) => heartbeat::Probe::last_heard(session) > sent,
    }
}
