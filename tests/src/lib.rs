//! Test-kit for tunneld: a real OpenSSH `sshd` in a temporary folder, small
//! servers to forward to, and client helpers to drive traffic through forwards.
//!
//! Layout:
//! - [`sshd`]: a private `sshd` on an ephemeral loopback port, with generated host and
//!   client keys, its log, and fault injection (kill sessions, crash, restart).
//! - [`dropbear`]: a private Dropbear server (a second SSH implementation) like `sshd`.
//! - [`modern_sshd`]: OpenSSH ≥ 9.9 (mlkem kex) from a Debian trixie root, via chroot.
//! - [`build`]: the release `tunneld` binary, for the bench and the soak.
//! - [`keys`]: `ssh-keygen` wrappers.
//! - [`servers`]: TCP and Unix echo servers, a minimal HTTP server, a byte source.
//! - [`net`]: free ports, polling with deadlines, checked bulk transfers, `/proc/net/tcp`
//!   listeners, `curl`.
//! - [`socks`]: SOCKS4, SOCKS4a and SOCKS5 CONNECT clients.
//! - [`proxy`]: a fault-injecting TCP proxy (black hole, refuse, reset every connection).
//! - [`proxy_servers`]: real HTTP CONNECT and SOCKS5 proxies (tinyproxy, microsocks).
//! - [`netlab`]: a box behind real NAT routers and a public host, in network namespaces,
//!   with network faults (lost mappings, uplink switch, link flap, renewal, rate limit).
//! - `procs` (private): the process tree under a pid, read from `/proc`; stopping a child
//!   with SIGTERM, then SIGKILL after a grace ([`sigterm_then_sigkill`]).
//! - `layout` (tests only): the workspace's layout rules, read from its sources: no file in
//!   `crates/*/src` over 700 lines, no import cycle between a crate's top-level modules.
//!
//! Nothing here sleeps to synchronise: every wait polls with a deadline and fails with a
//! message naming what it waited for. Everything binds to loopback addresses, or to
//! addresses inside the namespaces of a [`netlab::NatLab`].

pub mod build;
#[cfg(test)]
mod client_run;
pub mod dropbear;
pub mod keys;
#[cfg(test)]
mod layout;
pub mod modern_sshd;
pub mod net;
pub mod netlab;
mod procs;
pub mod proxy;
pub mod proxy_servers;
pub mod servers;
pub mod socks;
pub mod sshd;

pub use dropbear::{Dropbear, DropbearOptions};
pub use modern_sshd::ModernSshd;
pub use procs::{AfterGrace, Process, die_with_this_process, processes, sigterm_then_sigkill};
pub use proxy::{Fault, FaultProxy};
pub use proxy_servers::{ProxyKind, ProxyServer};
pub use servers::{DownloadServer, EchoServer, HttpServer, SourceServer, UnixEchoServer};
pub use sshd::{FrozenSessions, HostKeyType, Sshd, SshdOptions};
