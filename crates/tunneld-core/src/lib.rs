//! tunneld's engine: each configured tunnel is one supervised SSH session (russh) to a
//! stock OpenSSH server, carrying `-L`, `-R` and `-D` forwards.
//!
//! Layout:
//! - [`Daemon`] (this file): starts one supervisor per tunnel, reads their state, stops them.
//! - `tunnel`: a tunnel's supervisor: listeners, connect, remote forwards, backoff.
//! - `session`: handshake, host key check, the russh handler routing `-R` channels.
//! - `auth`: identity files and ssh-agent.
//! - [`known_hosts`]: OpenSSH's known_hosts rules (hashed names, patterns, `@revoked`).
//! - `forward`: local listeners, `-L`, `-R` and `-D` connections.
//! - `pump`: moving bytes between a socket and a channel without stalling the session.
//! - [`socks`]: SOCKS4/4a/5 server side.
//! - [`backoff`]: the reconnect schedule.
//! - [`status`]: what tunnels publish about themselves.
//!
//! The crate reads no command line, installs no signal handlers and reads no config file:
//! it takes a resolved [`tunneld_config::Config`] and is stopped with [`Daemon::shutdown`].

mod auth;
pub mod backoff;
mod error;
mod forward;
mod heartbeat;
pub mod known_hosts;
mod pump;
mod session;
pub mod socks;
pub mod status;
mod tunnel;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Semaphore, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tunneld_config::Config;

pub use error::TunnelError;
pub use pump::STALLED_READER_TIMEOUT;
pub use status::{ForwardKind, ForwardState, ForwardStatus, TunnelState, TunnelStatus};
pub use tunnel::PROXY_JUMP_UNSUPPORTED;

/// How long [`Daemon::shutdown`] waits for tunnels to close politely.
pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(4);

struct TunnelHandle {
    status: watch::Receiver<TunnelStatus>,
}

/// The running set of tunnels.
pub struct Daemon {
    tunnels: BTreeMap<String, TunnelHandle>,
    cancel: CancellationToken,
    tracker: TaskTracker,
}

impl Daemon {
    /// Starts every tunnel of `config`. Must be called within a tokio runtime.
    ///
    /// Tunnels connect in the background: a server that is down is retried forever.
    pub fn start(config: &Config) -> Daemon {
        let cancel = CancellationToken::new();
        let tracker = TaskTracker::new();
        let handshakes = Arc::new(Semaphore::new(
            config.daemon.max_concurrent_handshakes.max(1),
        ));
        let mut tunnels = BTreeMap::new();
        for (name, cfg) in &config.tunnels {
            let (tx, rx) = watch::channel(tunnel::initial_status(cfg));
            tracker.spawn(guard(
                Arc::new(cfg.clone()),
                tx,
                cancel.child_token(),
                Arc::clone(&handshakes),
            ));
            tunnels.insert(name.clone(), TunnelHandle { status: rx });
        }
        Daemon {
            tunnels,
            cancel,
            tracker,
        }
    }

    /// A snapshot of every tunnel, by name.
    pub fn status(&self) -> Vec<TunnelStatus> {
        self.tunnels
            .values()
            .map(|t| t.status.borrow().clone())
            .collect()
    }

    /// The state channel of one tunnel (tests and status wait on it).
    pub fn watch(&self, name: &str) -> Option<watch::Receiver<TunnelStatus>> {
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

/// Pause before restarting a tunnel whose supervisor panicked.
const PANIC_RESTART_DELAY: Duration = Duration::from_secs(1);

/// Runs a tunnel's supervisor on a task of its own and restarts it if it panics: a bug
/// in one tunnel must not take it down for good, nor touch the others.
async fn guard(
    cfg: Arc<tunneld_config::TunnelConfig>,
    status: watch::Sender<TunnelStatus>,
    cancel: CancellationToken,
    handshakes: Arc<Semaphore>,
) {
    loop {
        let run = cancel.child_token();
        let task = tokio::spawn(tunnel::run(
            Arc::clone(&cfg),
            status.clone(),
            run.clone(),
            Arc::clone(&handshakes),
        ));
        let Err(e) = task.await else { return };
        // Stop whatever the failed run left behind (listeners, connections).
        run.cancel();
        let why = if e.is_panic() {
            "panicked"
        } else {
            "was aborted"
        };
        tracing::error!(tunnel = %cfg.name, "tunnel supervisor {why}; restarting it");
        status.send_modify(|s| s.last_error = Some(format!("internal error: supervisor {why}")));
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(PANIC_RESTART_DELAY) => {}
        }
    }
}
