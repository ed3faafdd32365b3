//! tunneld's engine: each configured tunnel is one supervised SSH session (tunneld-ssh) to a
//! stock OpenSSH server, carrying `-L`, `-R` and `-D` forwards.
//!
//! Layout:
//! - [`Daemon`] (this file): starts one supervisor per tunnel, reads their state, stops them.
//! - `tunnel`: a tunnel's supervisor: connect, heartbeats, backoff (`tunnel/listeners`:
//!   the `-L` and `-D` listeners; `tunnel/remotes`: the remote forwards held on a session
//!   and the goodbye; `tunnel/hosts`: failover over a host list).
//! - `session`: the SSH connection: first hop, jump hosts, handshake, authentication.
//! - `proxy`, `proxy_command`: the first hop through an HTTP or SOCKS5 proxy, or a
//!   `ProxyCommand`'s standard input and output.
//! - `heartbeat`: keepalives and the verdict on a silent server.
//! - `netwatch`: the machine's addresses, routes and links (rtnetlink).
//! - `error`: [`TunnelError`], what a connection attempt's failure was.
//! - `host_check`: the decision on the server's host key (known_hosts, certificates).
//! - `auth`: identity files and ssh-agent.
//! - [`known_hosts`]: OpenSSH's known_hosts rules (hashed names, patterns, `@revoked`).
//! - `key_rotation`: `update_host_keys`, learning the server's rotated host keys.
//! - `forward`: one connection of each kind: `-L` (`local`), `-D` (`dynamic`), `-R`
//!   (`remote`: routing the server's channels to their forward), and binding (`listen`).
//! - `pump`: moving bytes between a socket and a channel.
//! - [`socks`]: SOCKS4/4a/5 server side.
//! - `hook`: `on_state_change`, the program run at each state change.
//! - [`backoff`]: the reconnect schedule.
//! - [`status`]: what tunnels publish about themselves.
//! - [`safe_fs`]: not following other users' symbolic links; binding Unix sockets safely.
//! - [`control_request`]: parsing of the control socket's JSON requests.
//! - `sync`: the one way to take a mutex.
//!
//! The crate reads no command line, installs no signal handlers and reads no config file:
//! it takes a resolved [`tunneld_config::Config`] and is stopped with [`Daemon::shutdown`].

mod auth;
pub mod backoff;
pub mod control_request;
mod error;
mod forward;
mod heartbeat;
mod hook;
mod host_check;
mod key_rotation;
pub mod known_hosts;
mod netwatch;
mod proxy;
mod proxy_command;
mod pump;
pub mod safe_fs;
mod session;
pub mod socks;
pub mod status;
mod sync;
mod tunnel;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Semaphore, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tunneld_config::{Config, Diff, TunnelConfig};

pub use error::TunnelError;
pub use hook::HOOK_TIMEOUT;
pub use proxy::handshake_for_fuzzing as proxy_handshake_for_fuzzing;
pub use status::{
    ForwardCounters, ForwardKind, ForwardState, ForwardStatus, TunnelState, TunnelStatus,
};

/// How long [`Daemon::shutdown`] waits for tunnels to close politely.
pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(4);
/// How long a reload waits for a removed or restarted tunnel to let go of its ports.
const STOP_TIMEOUT: Duration = Duration::from_secs(3);

struct TunnelHandle {
    status: watch::Receiver<TunnelStatus>,
    desired: watch::Sender<Arc<TunnelConfig>>,
    cancel: CancellationToken,
}

/// The running set of tunnels.
pub struct Daemon {
    config: Config,
    tunnels: BTreeMap<String, TunnelHandle>,
    cancel: CancellationToken,
    tracker: TaskTracker,
    handshakes: Arc<Semaphore>,
    handshake_slots: usize,
    /// Changes of the machine's network, for every tunnel.
    net: watch::Receiver<netwatch::NetChange>,
    /// One `on_state_change` run at a time per tunnel name, across restarts.
    hook_locks: BTreeMap<String, hook::RunLock>,
}

impl Daemon {
    /// Starts every tunnel of `config`. Must be called within a tokio runtime.
    ///
    /// Tunnels connect in the background: a server that is down is retried forever.
    pub fn start(config: &Config) -> Daemon {
        let slots = config.daemon.max_concurrent_handshakes.max(1);
        let cancel = CancellationToken::new();
        let mut daemon = Daemon {
            config: config.clone(),
            tunnels: BTreeMap::new(),
            net: netwatch::spawn(cancel.child_token()),
            cancel,
            tracker: TaskTracker::new(),
            handshakes: Arc::new(Semaphore::new(slots)),
            handshake_slots: slots,
            hook_locks: BTreeMap::new(),
        };
        for cfg in config.tunnels.values() {
            daemon.start_tunnel(cfg, None);
        }
        daemon
    }

    /// Starts `cfg`'s supervisor; with `predecessor` (the status of the run it replaces),
    /// only once that one has stopped and let go of its listeners (bounded by
    /// [`STOP_TIMEOUT`]).
    fn start_tunnel(
        &mut self,
        cfg: &TunnelConfig,
        predecessor: Option<watch::Receiver<TunnelStatus>>,
    ) {
        let (tx, rx) = watch::channel(tunnel::initial_status(cfg));
        let (desired, desired_rx) = watch::channel(Arc::new(cfg.clone()));
        let cancel = self.cancel.child_token();
        // Names no tunnel uses any more let go of their lock.
        self.hook_locks
            .retain(|name, lock| Arc::strong_count(lock) > 1 || self.tunnels.contains_key(name));
        let lock = Arc::clone(self.hook_locks.entry(cfg.name.clone()).or_default());
        // Not tracked: a hook never holds up a stop; one still running when the runtime
        // ends is killed with it.
        tokio::spawn(hook::follow(rx.clone(), desired_rx.clone(), lock));
        let run = restart_on_panic(
            desired_rx,
            tx,
            cancel.clone(),
            Arc::clone(&self.handshakes),
            self.net.clone(),
        );
        let stop = cancel.clone();
        self.tracker.spawn(async move {
            if let Some(mut before) = predecessor {
                // Waited for even when this run is stopped meanwhile (the predecessor is
                // stopping too, within STOP_TIMEOUT): a run that started after this one
                // waits on this one, and must not start while the predecessor still
                // holds the listeners.
                let stopped = before.wait_for(|s| s.state == TunnelState::Stopped);
                let _ = tokio::time::timeout(STOP_TIMEOUT, stopped).await;
                if stop.is_cancelled() {
                    return;
                }
            }
            run.await;
        });
        self.tunnels.insert(
            cfg.name.clone(),
            TunnelHandle {
                status: rx,
                desired,
                cancel,
            },
        );
    }

    /// Tells a tunnel to stop; returns its status channel, which says `stopped` once it
    /// has. Never waits: a reload stops any number of tunnels at once, in the background.
    fn stop_tunnel(&mut self, name: &str) -> Option<watch::Receiver<TunnelStatus>> {
        let t = self.tunnels.remove(name)?;
        t.cancel.cancel();
        Some(t.status)
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Applies a new, already validated configuration by difference: removed tunnels
    /// stop, added ones start, those whose connection settings changed reconnect, those
    /// whose forward lists alone changed keep their session and open or close forwards,
    /// and the rest are not touched. Returns what changed at once: the stops go on in
    /// the background, all together, and a restarted tunnel starts once its old run has
    /// let go of its listeners.
    pub fn apply(&mut self, new: &Config) -> Diff {
        let diff = tunneld_config::diff(&self.config, new);
        for name in &diff.removed {
            self.stop_tunnel(name);
        }
        for name in &diff.added {
            if let Some(cfg) = new.tunnels.get(name) {
                self.start_tunnel(cfg, None);
            }
        }
        for name in &diff.restarted {
            let before = self.stop_tunnel(name);
            if let Some(cfg) = new.tunnels.get(name) {
                self.start_tunnel(cfg, before);
            }
        }
        for change in &diff.updated {
            if let (Some(t), Some(cfg)) = (
                self.tunnels.get(&change.name),
                new.tunnels.get(&change.name),
            ) {
                // The tunnel applies `tunneld_config::forward_changes` between the lists
                // in force and these, the same changes `diff` reports.
                t.desired.send_replace(Arc::new(cfg.clone()));
            }
        }
        self.resize_handshakes(new.daemon.max_concurrent_handshakes.max(1));
        // [daemon] settings that need a restart stay as they are.
        let mut applied = new.clone();
        applied.daemon.socket = self.config.daemon.socket.clone();
        applied.daemon.socket_group = self.config.daemon.socket_group.clone();
        applied.daemon.metrics = self.config.daemon.metrics.clone();
        self.config = applied;
        diff
    }

    fn resize_handshakes(&mut self, slots: usize) {
        if slots > self.handshake_slots {
            self.handshakes.add_permits(slots - self.handshake_slots);
        } else if slots < self.handshake_slots {
            // Take the surplus slots out of circulation as they come free.
            let (sem, surplus) = (
                Arc::clone(&self.handshakes),
                (self.handshake_slots - slots) as u32,
            );
            self.tracker.spawn(async move {
                if let Ok(p) = sem.acquire_many(surplus).await {
                    p.forget();
                }
            });
        }
        self.handshake_slots = slots;
    }

    /// A snapshot of every tunnel, by name.
    pub fn status(&self) -> Vec<TunnelStatus> {
        self.tunnels
            .values()
            .map(|t| t.status.borrow().clone())
            .collect()
    }

    /// The state channel of one tunnel (tests and status wait on it).
    pub fn subscribe(&self, name: &str) -> Option<watch::Receiver<TunnelStatus>> {
        self.tunnels.get(name).map(|t| t.status.clone())
    }

    /// Stops every tunnel: listeners close, remote forwards are cancelled, sessions
    /// disconnect. Returns within [`SHUTDOWN_TIMEOUT`] even if a server does not answer.
    pub async fn shutdown(self) {
        self.cancel.cancel();
        self.tracker.close();
        let _ = tokio::time::timeout(SHUTDOWN_TIMEOUT, self.tracker.wait()).await;
    }
}

/// Dropping the daemon stops every tunnel, as [`Daemon::shutdown`] does without waiting
/// (a test that panics, or a caller that forgets, leaves nothing running).
impl Drop for Daemon {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// Pause before restarting a tunnel whose supervisor panicked.
const PANIC_RESTART_DELAY: Duration = Duration::from_secs(1);

/// Runs a tunnel's supervisor on a task of its own and restarts it if it panics: a bug
/// in one tunnel must not take it down for good, nor touch the others.
async fn restart_on_panic(
    desired: watch::Receiver<Arc<TunnelConfig>>,
    status: watch::Sender<TunnelStatus>,
    cancel: CancellationToken,
    handshakes: Arc<Semaphore>,
    net: watch::Receiver<netwatch::NetChange>,
) {
    let name = desired.borrow().name.clone();
    loop {
        let run = cancel.child_token();
        let task = tokio::spawn(tunnel::run(
            desired.clone(),
            status.clone(),
            run.clone(),
            Arc::clone(&handshakes),
            net.clone(),
        ));
        let Err(e) = task.await else { return };
        // Stop whatever the failed run left behind (listeners, connections).
        run.cancel();
        let why = if e.is_panic() {
            "panicked"
        } else {
            "was aborted"
        };
        tracing::error!(tunnel = %name, "tunnel supervisor {why}; restarting it");
        status.send_modify(|s| s.last_error = Some(format!("internal error: supervisor {why}")));
        tokio::select! {
            _ = cancel.cancelled() => {
                status.send_modify(|s| s.state = TunnelState::Stopped);
                return;
            }
            _ = tokio::time::sleep(PANIC_RESTART_DELAY) => {}
        }
    }
}
