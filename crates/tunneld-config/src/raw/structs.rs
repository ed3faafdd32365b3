//! The `Raw*` structs the walk fills in: every key optional, every value already
//! checked on its own, forwards still strings.

use std::path::PathBuf;
use std::time::Duration;

use toml::Spanned;

use crate::host::JumpHost;
use crate::model::StrictHostKeyChecking;

/// The whole document, each table walked.
#[derive(Debug, Default)]
pub(crate) struct RawDoc {
    pub daemon: RawDaemon,
    pub defaults: RawTunnel,
    /// Tunnel names (with the span of the name) and their tables, in file order; after
    /// the main file's, those of the included files, in the order they were read.
    pub tunnels: Vec<(Spanned<String>, RawTunnel)>,
}

/// `[daemon]`, each value already checked.
#[derive(Debug, Default)]
pub(crate) struct RawDaemon {
    pub socket: Option<PathBuf>,
    pub socket_group: Option<String>,
    pub watch: Option<bool>,
    pub metrics: Option<String>,
    pub log_level: Option<String>,
    pub max_concurrent_handshakes: Option<usize>,
    /// `include` patterns, `~/` expanded, each with the span of its string.
    pub include: Vec<Spanned<PathBuf>>,
}

/// `[defaults]` or `[tunnels.NAME]`: every key optional; forwards still strings
/// because local bind addresses depend on `gateway_ports`, which may come from
/// `[defaults]`.
#[derive(Debug, Default)]
pub(crate) struct RawTunnel {
    /// The file the table is in (0: the main file; see [`super::Problems`]).
    pub file: usize,
    /// The `host` key is present (even if its value is bad).
    pub has_host: bool,
    /// Host entries with their port when one was written.
    pub host: Vec<(String, Option<u16>)>,
    pub port: Option<u16>,
    pub user: Option<String>,
    pub identity_file: Option<Vec<PathBuf>>,
    pub certificate_file: Option<Vec<PathBuf>>,
    pub known_hosts: Option<Vec<PathBuf>>,
    pub strict_host_key_checking: Option<StrictHostKeyChecking>,
    pub server_alive_interval: Option<Duration>,
    pub server_alive_count_max: Option<u32>,
    pub failover_after: Option<u32>,
    pub max_connections: Option<u32>,
    pub connect_timeout: Option<Duration>,
    pub backoff: Option<Spanned<RawBackoff>>,
    pub stable_after: Option<Duration>,
    pub gateway_ports: Option<bool>,
    /// Some forward key is present (even if empty or bad).
    pub has_forward_key: bool,
    /// Values written under the forward keys, good or bad (0 = no forwards at all).
    pub forward_entries: usize,
    pub local: Vec<Spanned<String>>,
    pub remote: Vec<Spanned<String>>,
    pub dynamic: Vec<Spanned<String>>,
    pub proxy_jump: Option<Vec<JumpHost>>,
    pub permit_remote_open: Option<crate::PermitRemoteOpen>,
    pub stream_local_bind_unlink: Option<bool>,
    pub stream_local_bind_mask: Option<u32>,
    /// `proxy` or `proxy_command` (at most one per table), with the span of its value.
    pub proxy: Option<Spanned<RawProxy>>,
    pub proxy_password_file: Option<Spanned<PathBuf>>,
    pub update_host_keys: Option<bool>,
    /// `on_state_change`: the program and its arguments; empty turns a default off.
    pub on_state_change: Option<Vec<String>>,
}

/// A `proxy` or `proxy_command` value.
#[derive(Debug, Clone)]
pub(crate) enum RawProxy {
    /// `"none"`: straight, whatever `[defaults]` says.
    Direct,
    Url(crate::ProxyUrl),
    /// `proxy = "env"`.
    Env,
    Command(String),
}

/// A `backoff` inline table: only the fields written.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct RawBackoff {
    pub initial: Option<Duration>,
    pub max: Option<Duration>,
    pub multiplier: Option<f64>,
    pub jitter: Option<f64>,
}
