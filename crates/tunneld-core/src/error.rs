//! Errors of a tunnel, sorted by what a supervisor should do about them.

use std::time::Duration;

/// Why a connection attempt or an established session failed.
#[derive(Debug, thiserror::Error)]
pub enum TunnelError {
    /// The TCP connection to the server could not be made.
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// The address as configured (`host:port`).
        addr: String,
        /// The socket error.
        source: std::io::Error,
    },
    /// Connect, key exchange and authentication did not finish in `connect_timeout`.
    #[error("connecting to {addr} timed out after {after:?} (connect_timeout)")]
    Timeout {
        /// The address as configured.
        addr: String,
        /// The timeout that ran out.
        after: Duration,
    },
    /// The server's host key is unknown, changed or revoked: nothing is forwarded.
    #[error("host key verification failed for {host}: {reason}")]
    HostKey {
        /// The host as looked up in known_hosts (`host` or `[host]:port`).
        host: String,
        /// What is wrong and what to do.
        reason: String,
    },
    /// The server accepted none of our keys.
    #[error("authentication failed for {user}@{host}: {reason}")]
    Auth {
        /// The login user.
        user: String,
        /// The server address.
        host: String,
        /// Which keys were tried and why the others could not be used.
        reason: String,
    },
    /// A jump host would not open the way to the next host.
    #[error("jump host {via} could not reach {to}: {reason}")]
    Jump {
        /// The jump host (`host:port`).
        via: String,
        /// The next host it was asked to reach.
        to: String,
        /// Its answer.
        reason: String,
    },
    /// The proxy (or the proxy command) did not open the way to the first hop.
    #[error("proxy {proxy}: {reason}")]
    Proxy {
        /// The proxy URL without its password, or `command "…"`.
        proxy: String,
        /// What it said, or why it could not be used.
        reason: String,
        /// It refused our credentials or our request: an operator has to fix it.
        auth: bool,
    },
    /// The SSH protocol failed (handshake, transport, disconnect by the server).
    #[error("ssh: {0}")]
    Ssh(String),
}

impl TunnelError {
    /// True for failures an operator has to fix (keys, host keys); retrying soon will not help.
    pub fn needs_operator(&self) -> bool {
        matches!(
            self,
            TunnelError::HostKey { .. }
                | TunnelError::Auth { .. }
                | TunnelError::Proxy { auth: true, .. }
        )
    }
}
