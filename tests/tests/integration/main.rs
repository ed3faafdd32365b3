//! End-to-end tests: the daemon (in-process, or the real binary) against a real OpenSSH
//! sshd started by the test-kit on a loopback port with generated keys.
//!
//! Layout:
//! - `harness`: configs for a kit sshd, starting the daemon, waiting on tunnel state.
//! - `forwards`: -L, -R, -D (TCP and Unix sockets), the classic pictures, bind addresses.
//! - `trust`: host key checking and authentication failures.
//! - `resilience`: server down, crash and restart, black hole, reset, refuse, held port, 100 tunnels.
//! - `rekey`: rekeys, by either side, while many channels are busy.
//! - `stall`: a paused or slow local reader holds back only its own connection; nothing is cut or lost.
//! - `nat`: the daemon in a box behind real NAT routers (network namespaces): lost mappings,
//!   link flaps, a saturated slow uplink.
//! - `limits`: per-forward connection limit, idle SOCKS clients, running out of descriptors.
//! - `proxies`: the first hop through tinyproxy, microsocks and proxy commands (nc, socat).
//! - `ops`: control socket, status, reload by difference, file watch, systemd notify.
//! - `stopping`: stops that never wait on a client, reloads that never block the loop.
//! - `fleet`: include folders, host key rotation, port 0 in status, the state-change hook.
//! - `cross`: the ARM builds under qemu-user: --version, check, -L/-R/-D round trips.
//! - `cli`: `tunneld check` and `tunneld run` as a process (exit codes, SIGTERM).
//! - `import`: `tunneld import` of ssh/autossh command lines and ssh_config files, each
//!   result passed through the real `tunneld check`.

mod cli;
mod cross;
mod fleet;
mod forwards;
mod harness;
mod import;
mod limits;
mod nat;
mod ops;
mod proxies;
mod rekey;
mod resilience;
mod stall;
mod stopping;
mod trust;
