//! tunneld's configuration: the TOML schema, OpenSSH forward syntax, validation.
//!
//! [`load`] reads a file and returns a fully resolved [`Config`] (every default
//! applied, every forward parsed) or every problem in the file at once, each as
//! `FILE:LINE:COL: message`. No tokio, no I/O besides reading the file.
//!
//! # Layout
//! - [`error`](ConfigError): errors with file positions.
//! - `model`: the resolved types ([`Config`], [`TunnelConfig`], ...).
//! - [`forward`]: `-L`/`-R`/`-D` specification parsers, usable on their own.
//! - `host`: `host` entries and `proxy_jump` lists.
//! - `proxy`: `proxy` URLs, `proxy = "env"`, `no_proxy`, `proxy_command` templates.
//! - `duration`: `"10s"`-style durations ([`parse_duration`]).
//! - `env`: user, home and runtime directory the defaults depend on.
//! - `raw`: walk over the span-keeping TOML tree; every key and value checked.
//! - `resolve`: `[defaults]` layering, forwards, cross-tunnel checks.
//! - `diff`: what a reload changes between two configurations ([`diff()`], [`Diff`]).

mod diff;
mod duration;
mod env;
mod error;
pub mod forward;
mod host;
mod model;
mod permit;
mod proxy;
mod raw;
mod resolve;

use std::path::{Path, PathBuf};

pub use diff::{Diff, ForwardChanges, diff};
pub use duration::parse_duration;
pub use error::{ConfigError, ConfigErrors};
pub use forward::{
    DynamicForward, Endpoint, Listen, LocalBind, LocalForward, RemoteForward, RemoteListen,
};
pub use host::{HostPort, JumpHost};
pub use model::{Backoff, Config, DaemonConfig, StrictHostKeyChecking, TunnelConfig};
pub use permit::{PermitEntry, PermitRemoteOpen};
pub use proxy::{
    EnvProxy, NoProxy, Proxy, ProxyRoute, ProxyScheme, ProxySettings, ProxyUrl, Secret,
    expand_command, substitute_tokens,
};

use env::Env;

/// Where the configuration lives when `-c` is not given: `$TUNNELD_CONFIG`, else
/// `/etc/tunneld/tunneld.toml`.
pub fn default_config_path() -> PathBuf {
    match std::env::var_os("TUNNELD_CONFIG") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from("/etc/tunneld/tunneld.toml"),
    }
}

/// The control socket used when `[daemon] socket` is not set: `/run/tunneld/tunneld.sock`
/// for root, else `$XDG_RUNTIME_DIR/tunneld.sock`.
pub fn default_socket_path() -> PathBuf {
    Env::current().default_socket()
}

/// Reads and parses the configuration file at `path`.
///
/// # Errors
/// Every problem in the file, each with its line and column; or a single
/// whole-file error (line 0) when the file cannot be read.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        let message = match e.kind() {
            std::io::ErrorKind::NotFound => {
                "file not found; create it, or point -c/--config or $TUNNELD_CONFIG at another file"
                    .to_owned()
            }
            std::io::ErrorKind::InvalidData => "the file is not valid UTF-8".to_owned(),
            _ => format!("cannot read the file: {e}"),
        };
        ConfigErrors {
            errors: vec![ConfigError::whole_file(path, message)],
        }
    })?;
    parse(path, &text)
}

/// Parses configuration text; `path` is only used in error messages and
/// [`Config::path`]. Defaults depend on the current user's environment
/// (`$USER`, `$HOME`, `$XDG_RUNTIME_DIR`, effective uid).
///
/// # Errors
/// Every problem in the text, each with its line and column, in file order.
/// A TOML syntax error is reported alone (the rest cannot be trusted).
pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigErrors> {
    parse_with_env(path, text, &Env::current())
}

fn parse_with_env(path: &Path, text: &str, env: &Env) -> Result<Config, ConfigErrors> {
    let (root, syntax) = toml::de::DeTable::parse_recoverable(text);
    if !syntax.is_empty() {
        let mut errors: Vec<ConfigError> = syntax
            .iter()
            .map(|e| {
                let message = format!("invalid TOML: {}", e.message());
                match e.span() {
                    Some(span) => ConfigError::at(path, text, span.start, message),
                    None => ConfigError::whole_file(path, message),
                }
            })
            .collect();
        errors.dedup();
        return Err(ConfigErrors { errors });
    }
    let mut problems = raw::Problems::default();
    let doc = raw::walk(root.get_ref(), env, &mut problems);
    let (daemon, tunnels) = resolve::resolve(doc, env, &mut problems);
    if problems.0.is_empty() {
        return Ok(Config {
            path: path.to_path_buf(),
            daemon,
            tunnels,
        });
    }
    problems.0.sort_by_key(|(offset, _)| *offset);
    problems.0.dedup();
    Err(ConfigErrors {
        errors: problems
            .0
            .into_iter()
            .map(|(offset, message)| ConfigError::at(path, text, offset, message))
            .collect(),
    })
}

#[cfg(test)]
mod tests;
