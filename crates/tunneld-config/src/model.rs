//! The resolved configuration: every default applied, every value validated.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use crate::forward::{DynamicForward, LocalForward, RemoteForward};
use crate::host::{HostPort, JumpHost};

pub(crate) const DEFAULT_LOG_LEVEL: &str = "info";
pub(crate) const LOG_LEVELS: [&str; 5] = ["error", "warn", "info", "debug", "trace"];
/// Enough to keep a few tunnels busy without tripping sshd's default `MaxStartups 10:30:100`.
pub(crate) const DEFAULT_MAX_CONCURRENT_HANDSHAKES: usize = 8;
pub(crate) const DEFAULT_SERVER_ALIVE_INTERVAL: Duration = Duration::from_secs(10);
pub(crate) const DEFAULT_SERVER_ALIVE_COUNT_MAX: u32 = 3;
/// Failed attempts on one host before the next of a host list is tried.
pub(crate) const DEFAULT_FAILOVER_AFTER: u32 = 3;
/// Connections one forward carries at once by default: a flood on a listener open to a
/// LAN (or on a server port of a remote forward) stops here instead of at the file
/// descriptor limit, where it would also stop the other forwards and the reconnects.
pub(crate) const DEFAULT_MAX_CONNECTIONS: u32 = 1024;
/// OpenSSH's `StreamLocalBindMask`: local forward sockets readable and writable by their
/// owner only.
pub(crate) const DEFAULT_STREAM_LOCAL_BIND_MASK: u32 = 0o177;
pub(crate) const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
pub(crate) const DEFAULT_STABLE_AFTER: Duration = Duration::from_secs(30);
/// Learn rotated host keys, as OpenSSH's client does with its default known_hosts file: a
/// new key is written only after the server proves it holds it, on a session whose key
/// was already trusted (see the README, "Host key rotation").
pub(crate) const DEFAULT_UPDATE_HOST_KEYS: bool = true;

/// A whole configuration file, resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The file it was read from (for messages and reload).
    pub path: PathBuf,
    /// The `[daemon]` table.
    pub daemon: DaemonConfig,
    /// Tunnels by name (the `[tunnels.NAME]` keys), from every file.
    pub tunnels: BTreeMap<String, TunnelConfig>,
    /// The files read: the main file first, then the included ones in the order read.
    pub files: Vec<ConfigFile>,
}

/// One file of a configuration and the tunnels it defines.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigFile {
    /// The file, as given (the main file) or as its `include` pattern found it.
    pub path: PathBuf,
    /// The names of the `[tunnels.NAME]` tables in it, in file order.
    pub tunnels: Vec<String>,
}

/// The `[daemon]` table.
#[derive(Debug, Clone, PartialEq)]
pub struct DaemonConfig {
    /// Control socket path.
    pub socket: PathBuf,
    /// Group allowed on the control socket (mode 0660); `None` = owner only (0600).
    pub socket_group: Option<String>,
    /// Re-read the file when it changes.
    pub watch: bool,
    /// Prometheus endpoint, an `IP:PORT` that parses as a `SocketAddr`; `None` = off.
    pub metrics: Option<String>,
    /// One of `error`, `warn`, `info`, `debug`, `trace` (`RUST_LOG` overrides it).
    pub log_level: String,
    /// How many tunnels may be in the SSH handshake at once (>= 1), so hundreds of
    /// tunnels do not trip the server's `MaxStartups`.
    pub max_concurrent_handshakes: usize,
    /// `include` patterns, absolute (relative ones are taken from the main file's
    /// folder); wildcards only in the file name. Re-read at every reload.
    pub include: Vec<PathBuf>,
}

/// OpenSSH's `StrictHostKeyChecking`, minus `ask` (a daemon cannot ask).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StrictHostKeyChecking {
    /// Refuse unknown and changed host keys.
    #[default]
    Yes,
    /// Record an unknown host's key, refuse changed ones.
    AcceptNew,
    /// Accept any key (logged as a warning at every connect).
    No,
}

/// Reconnection backoff: exponential with jitter.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    /// First wait after a failure (> 0).
    pub initial: Duration,
    /// Ceiling of the wait (>= `initial`).
    pub max: Duration,
    /// Factor applied after each failure (>= 1.0).
    pub multiplier: f64,
    /// Fraction of each wait randomised, 0.0..=1.0.
    pub jitter: f64,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(60),
            multiplier: 2.0,
            jitter: 0.2,
        }
    }
}

/// One `[tunnels.NAME]` table with `[defaults]` and built-in defaults applied.
#[derive(Debug, Clone, PartialEq)]
pub struct TunnelConfig {
    /// The table key: unique, `[A-Za-z0-9_.-]+`.
    pub name: String,
    /// Servers to try in order (at least one); failover goes to the next.
    pub hosts: Vec<HostPort>,
    /// Login name on the server.
    pub user: String,
    /// Private keys to offer, `~` expanded; empty = the core tries `~/.ssh/id_*`.
    pub identity_files: Vec<PathBuf>,
    /// OpenSSH user certificates (`CertificateFile`), each used with the identity whose
    /// key it certifies; `IDENTITY-cert.pub` beside an identity file is found by itself.
    pub certificate_files: Vec<PathBuf>,
    /// known_hosts files to check host keys against, `~` expanded.
    pub known_hosts: Vec<PathBuf>,
    /// What to do with unknown or changed host keys.
    pub strict_host_key_checking: StrictHostKeyChecking,
    /// Period of `keepalive@openssh.com` heartbeats (> 0).
    pub server_alive_interval: Duration,
    /// Unanswered heartbeats before the session is declared dead (>= 1).
    pub server_alive_count_max: u32,
    /// Failed attempts in a row on one host before trying the next of `hosts` (>= 1).
    pub failover_after: u32,
    /// Connections each of its forwards carries at once (>= 1); more are closed at once
    /// (a remote forward's are refused to the server).
    pub max_connections: u32,
    /// Limit for TCP connect + handshake + authentication (> 0).
    pub connect_timeout: Duration,
    /// Wait schedule between reconnection attempts.
    pub backoff: Backoff,
    /// A session up this long resets the backoff.
    pub stable_after: Duration,
    /// `ssh -g`: forwards without a bind address listen on every interface.
    /// Already applied to `local` and `dynamic`; kept for display.
    pub gateway_ports: bool,
    /// `ssh -L` forwards.
    pub local: Vec<LocalForward>,
    /// `ssh -R` forwards.
    pub remote: Vec<RemoteForward>,
    /// `ssh -D` forwards.
    pub dynamic: Vec<DynamicForward>,
    /// Jump hosts, first hop first (`ssh -J`); empty = direct.
    pub proxy_jump: Vec<JumpHost>,
    /// Where reverse SOCKS forwards (`remote` with only `[bind:]port`) may connect.
    pub permit_remote_open: crate::PermitRemoteOpen,
    /// `StreamLocalBindUnlink`: remove a stale socket file before binding a local Unix
    /// socket forward (never a file that is not a socket).
    pub stream_local_bind_unlink: bool,
    /// `StreamLocalBindMask`: permission bits taken away from local Unix socket forwards.
    pub stream_local_bind_mask: u32,
    /// `proxy`, `proxy_command` and `proxy_password_file`: how the first hop is reached.
    pub proxy: crate::ProxySettings,
    /// OpenSSH's `UpdateHostKeys`: learn the host keys the server announces after it
    /// proves them, and forget those it no longer has.
    pub update_host_keys: bool,
    /// `on_state_change`: a program and its arguments, run (without a shell) at each
    /// state change; empty = none. A change applies without a reconnect.
    pub on_state_change: Vec<String>,
}

impl TunnelConfig {
    /// True when two configs differ only in their `local`/`remote`/`dynamic` lists,
    /// so a reload can keep the SSH session and just add or remove forwards.
    ///
    /// `gateway_ports` is ignored too: it only changes where local and dynamic
    /// forwards bind, which their resolved lists already show.
    pub fn same_connection(&self, other: &TunnelConfig) -> bool {
        // Destructured so that a new field cannot be forgotten here.
        let TunnelConfig {
            name,
            hosts,
            user,
            identity_files,
            certificate_files,
            known_hosts,
            strict_host_key_checking,
            server_alive_interval,
            server_alive_count_max,
            failover_after,
            max_connections,
            connect_timeout,
            backoff,
            stable_after,
            gateway_ports: _,
            local: _,
            remote: _,
            dynamic: _,
            proxy_jump,
            permit_remote_open,
            stream_local_bind_unlink,
            stream_local_bind_mask,
            proxy,
            update_host_keys,
            // The hook watches the tunnel from outside: a new one needs no new session.
            on_state_change: _,
        } = self;
        *name == other.name
            && *hosts == other.hosts
            && *user == other.user
            && *identity_files == other.identity_files
            && *certificate_files == other.certificate_files
            && *known_hosts == other.known_hosts
            && *strict_host_key_checking == other.strict_host_key_checking
            && *server_alive_interval == other.server_alive_interval
            && *server_alive_count_max == other.server_alive_count_max
            && *failover_after == other.failover_after
            && *max_connections == other.max_connections
            && *connect_timeout == other.connect_timeout
            && *backoff == other.backoff
            && *stable_after == other.stable_after
            && *proxy_jump == other.proxy_jump
            && *permit_remote_open == other.permit_remote_open
            && *stream_local_bind_unlink == other.stream_local_bind_unlink
            && *stream_local_bind_mask == other.stream_local_bind_mask
            && *proxy == other.proxy
            && *update_host_keys == other.update_host_keys
    }
}
