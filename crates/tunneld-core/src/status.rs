//! What a tunnel publishes about itself on its watch channel.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::SystemTime;

/// Life-cycle state of a tunnel (see SPEC "Behaviour of a tunnel").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TunnelState {
    /// Connecting, exchanging keys or authenticating.
    Connecting,
    /// Session established and every forward active.
    Up,
    /// Session established but some forward is not active.
    Degraded,
    /// Waiting before the next connection attempt.
    Backoff,
    /// Stopped by removal or shutdown.
    Stopped,
}

impl TunnelState {
    /// The lower-case word used in status output.
    pub fn as_str(self) -> &'static str {
        match self {
            TunnelState::Connecting => "connecting",
            TunnelState::Up => "up",
            TunnelState::Degraded => "degraded",
            TunnelState::Backoff => "backoff",
            TunnelState::Stopped => "stopped",
        }
    }
}

/// Which kind of forward (`ssh -L`, `-R`, `-D`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ForwardKind {
    /// `ssh -L`
    Local,
    /// `ssh -R`
    Remote,
    /// `ssh -D`
    Dynamic,
}

impl ForwardKind {
    /// The lower-case word used in status output.
    pub fn as_str(self) -> &'static str {
        match self {
            ForwardKind::Local => "local",
            ForwardKind::Remote => "remote",
            ForwardKind::Dynamic => "dynamic",
        }
    }
}

/// State of one forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForwardState {
    /// Not active yet (listener not bound, or session not up).
    Pending,
    /// Listening and carrying traffic.
    Active,
    /// The server refused the remote listener.
    Refused,
    /// The local listener could not be bound.
    Error,
}

impl ForwardState {
    /// The lower-case word used in status output.
    pub fn as_str(self) -> &'static str {
        match self {
            ForwardState::Pending => "pending",
            ForwardState::Active => "active",
            ForwardState::Refused => "refused",
            ForwardState::Error => "error",
        }
    }
}

/// Traffic counters of one forward, shared by its connections, and its connection limit.
#[derive(Debug)]
pub struct ForwardCounters {
    /// Connections open right now.
    pub active: AtomicU64,
    /// Connections carried since the tunnel started.
    pub total: AtomicU64,
    /// Bytes from the SSH channel towards the local side.
    pub bytes_in: AtomicU64,
    /// Bytes from the local side into the SSH channel.
    pub bytes_out: AtomicU64,
    /// Connections turned away because `limit` were open.
    pub refused: AtomicU64,
    /// Most connections open at once (`max_connections`).
    limit: u64,
    /// Set by the first refusal of a run of them, cleared by the next connection let in:
    /// the limit is logged once per episode, not once per connection.
    full: AtomicBool,
    /// `refused` before the current episode began.
    episode_start: AtomicU64,
}

/// What [`ForwardCounters::try_open`] has to say besides the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitEvent {
    /// Nothing worth a log line.
    None,
    /// The first connection refused since the forward was last below its limit.
    Reached,
    /// Let in again after refusing this many (since the start of the episode).
    Recovered(u64),
}

impl ForwardCounters {
    /// Counters for a forward that carries at most `limit` connections at once.
    pub fn with_limit(limit: u32) -> Self {
        ForwardCounters {
            active: AtomicU64::new(0),
            total: AtomicU64::new(0),
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            limit: u64::from(limit.max(1)),
            full: AtomicBool::new(false),
            episode_start: AtomicU64::new(0),
        }
    }

    /// The limit of connections open at once.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Counts a connection as open until the returned guard is dropped, unless `limit`
    /// are open already (then counts it as refused).
    ///
    /// # Errors
    /// At the limit; also says whether this refusal starts an episode.
    pub fn try_open(self: &Arc<Self>) -> Result<(ConnectionGuard, LimitEvent), LimitEvent> {
        let admitted = self
            .active
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.limit).then_some(n + 1)
            });
        if admitted.is_err() {
            let before = self.refused.fetch_add(1, Ordering::Relaxed);
            let first = !self.full.swap(true, Ordering::AcqRel);
            return Err(if first {
                self.episode_start.store(before, Ordering::Relaxed);
                LimitEvent::Reached
            } else {
                LimitEvent::None
            });
        }
        self.total.fetch_add(1, Ordering::Relaxed);
        let event = if self.full.swap(false, Ordering::AcqRel) {
            let refused = self.refused.load(Ordering::Relaxed);
            LimitEvent::Recovered(refused - self.episode_start.load(Ordering::Relaxed))
        } else {
            LimitEvent::None
        };
        Ok((ConnectionGuard(Arc::clone(self)), event))
    }
}

/// Decrements the active-connection count on drop.
#[derive(Debug)]
pub struct ConnectionGuard(Arc<ForwardCounters>);

impl ConnectionGuard {
    /// The counters this connection adds its bytes to.
    pub fn counters(&self) -> &ForwardCounters {
        &self.0
    }
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One forward as seen from outside.
#[derive(Debug, Clone)]
pub struct ForwardStatus {
    /// `-L`, `-R` or `-D`.
    pub kind: ForwardKind,
    /// The forward string as written in the config.
    pub spec: String,
    /// Its state.
    pub state: ForwardState,
    /// Why it is not active, when it is not.
    pub error: Option<String>,
    /// What is really bound while it is active (`None` otherwise): the local addresses
    /// of a local or dynamic forward (`127.0.0.1:8080`, `[::1]:8080`, a socket path), or
    /// what the server bound for a remote one (`localhost:2222`; with port 0 asked, the
    /// port the server chose).
    pub listen: Option<Vec<String>>,
    /// Live traffic counters.
    pub counters: Arc<ForwardCounters>,
}

/// One tunnel as seen from outside; published on a `watch` channel.
#[derive(Debug, Clone)]
pub struct TunnelStatus {
    /// The tunnel's name (its `[tunnels.NAME]` key).
    pub name: String,
    /// Current state.
    pub state: TunnelState,
    /// The server in use (`host:port`).
    pub host: String,
    /// When the current state was entered; for `up` and `degraded`, when the session
    /// came up (a forward coming and going does not reset it).
    pub since: SystemTime,
    /// Sessions lost and re-established since start.
    pub reconnects: u64,
    /// The last failure, kept until the next successful connect.
    pub last_error: Option<String>,
    /// In `backoff`: how long the tunnel waits before its next attempt.
    pub retry_in: Option<std::time::Duration>,
    /// When a session last came up (connected and authenticated).
    pub last_connect: Option<SystemTime>,
    /// Round trip of the last answered heartbeat, in microseconds; 0 until one is.
    /// Updated in place, without waking the watchers of the status.
    pub heartbeat_rtt_us: Arc<AtomicU64>,
    /// Its forwards, local first, then remote, then dynamic.
    pub forwards: Vec<ForwardStatus>,
}

impl TunnelStatus {
    /// The forward with this spec, if any.
    pub fn forward(&self, spec: &str) -> Option<&ForwardStatus> {
        self.forwards.iter().find(|f| f.spec == spec)
    }
}
