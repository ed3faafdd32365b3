//! tunneld's configuration: the TOML schema, OpenSSH forward syntax, validation.
//!
//! [`load`] reads a file (and the files its `include` patterns name) and returns a fully
//! resolved [`Config`] (every default applied, every forward parsed) or every problem in
//! the files at once, each as `FILE:LINE:COL: message` naming its own file. No tokio, no
//! I/O besides reading the files.
//!
//! # Layout
//! - [`error`](ConfigError): errors with file positions.
//! - `model`: the resolved types ([`Config`], [`TunnelConfig`], ...).
//! - [`forward`]: `-L`/`-R`/`-D` specification parsers, usable on their own.
//! - `host`: `host` entries and `proxy_jump` lists.
//! - `proxy`: `proxy` URLs, `proxy = "env"`, `no_proxy`, `proxy_command` templates.
//! - `duration`: `"10s"`-style durations ([`parse_duration`]).
//! - `env`: user, home and runtime directory the defaults depend on.
//! - [`include`](mod@include): `[daemon] include` patterns and the files they name.
//! - `raw`: walk over the span-keeping TOML tree; every key and value checked.
//! - `resolve`: `[defaults]` layering, forwards, cross-tunnel checks.
//! - [`wildcard`]: OpenSSH's `*` and `?` patterns, for file names and host names.
//! - `diff`: what a reload changes between two configurations ([`diff()`], [`Diff`]).

mod diff;
mod duration;
mod env;
mod error;
pub mod forward;
mod host;
pub mod include;
mod model;
mod permit;
mod proxy;
mod raw;
mod resolve;
pub mod wildcard;

use std::path::{Path, PathBuf};

use toml::Spanned;

pub use diff::{Diff, ForwardChanges, diff, forward_changes};
pub use duration::parse_duration;
pub use error::{ConfigError, ConfigErrors};
pub use forward::{
    DynamicForward, Endpoint, Listen, LocalBind, LocalForward, RemoteForward, RemoteListen,
};
pub use host::{HostPort, JumpHost};
pub use model::{Backoff, Config, ConfigFile, DaemonConfig, StrictHostKeyChecking, TunnelConfig};
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

/// Parses configuration text; `path` is used in error messages and [`Config::path`], and
/// its folder is where relative `include` patterns start. The included files are read.
/// Defaults depend on the current user's environment (`$USER`, `$HOME`,
/// `$XDG_RUNTIME_DIR`, effective uid).
///
/// # Errors
/// Every problem in the text and the included files, each with its file, line and
/// column, main file first, each file in order. A TOML syntax error in the main file is
/// reported alone (the rest cannot be trusted); one in an included file stops only that
/// file.
pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigErrors> {
    parse_with_env(path, text, &Env::current())
}

fn parse_with_env(path: &Path, text: &str, env: &Env) -> Result<Config, ConfigErrors> {
    let (root, syntax) = toml::de::DeTable::parse_recoverable(text);
    if !syntax.is_empty() {
        return Err(ConfigErrors {
            errors: syntax_errors(path, text, &syntax),
        });
    }
    let mut problems = raw::Problems::default();
    let mut doc = raw::walk(root.get_ref(), env, &mut problems);
    let base = path.parent().unwrap_or(Path::new(""));
    let patterns = include::absolute(&doc.daemon.include, base, &mut problems);
    // Every file read, main first, with its text (for positions); and the errors that
    // are not at a position of a walked document: unreadable files and TOML syntax.
    let mut files: Vec<(PathBuf, String)> = vec![(path.to_path_buf(), text.to_owned())];
    let mut unwalked: Vec<(usize, ConfigError)> = Vec::new();
    for file in include::expand(&patterns, path, &mut problems) {
        let index = files.len();
        let text = match include::read(&file) {
            Ok(text) => text,
            Err(why) => {
                unwalked.push((index, ConfigError::whole_file(&file, why)));
                files.push((file, String::new()));
                continue;
            }
        };
        let (root, syntax) = toml::de::DeTable::parse_recoverable(&text);
        if syntax.is_empty() {
            problems.in_file(index);
            doc.tunnels
                .extend(raw::walk_included(root.get_ref(), env, &mut problems));
        } else {
            unwalked.extend(
                syntax_errors(&file, &text, &syntax)
                    .into_iter()
                    .map(|e| (index, e)),
            );
        }
        files.push((file, text));
    }
    problems.in_file(0);
    duplicates(&doc.tunnels, &files, &mut problems);
    let sources = files
        .iter()
        .enumerate()
        .map(|(index, (path, _))| ConfigFile {
            path: path.clone(),
            tunnels: doc
                .tunnels
                .iter()
                .filter(|(_, raw)| raw.file == index)
                .map(|(name, _)| name.get_ref().clone())
                .collect(),
        })
        .collect();
    let include = patterns.into_iter().map(Spanned::into_inner).collect();
    let (daemon, tunnels) = resolve::resolve(doc, include, env, &mut problems);
    if problems.is_empty() && unwalked.is_empty() {
        return Ok(Config {
            path: path.to_path_buf(),
            daemon,
            tunnels,
            files: sources,
        });
    }
    let mut errors: Vec<(usize, usize, ConfigError)> = problems
        .into_sorted()
        .into_iter()
        .map(
            |raw::Problem {
                 file,
                 offset,
                 message,
             }| {
                let (path, text) = &files[file];
                (file, offset, ConfigError::at(path, text, offset, message))
            },
        )
        .collect();
    errors.extend(unwalked.into_iter().map(|(file, e)| (file, 0, e)));
    // Stable: problems at one position keep the order they were found in.
    errors.sort_by_key(|(file, offset, e)| (*file, e.line, *offset));
    Err(ConfigErrors {
        errors: errors.into_iter().map(|(_, _, e)| e).collect(),
    })
}

/// Each TOML syntax error of `text` (read from `path`), once.
fn syntax_errors(path: &Path, text: &str, syntax: &[toml::de::Error]) -> Vec<ConfigError> {
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
    errors
}

/// A tunnel name defined in two files (a file cannot define one twice: that is a TOML
/// error) is reported at the later definition, naming the earlier one.
fn duplicates(
    tunnels: &[(Spanned<String>, raw::RawTunnel)],
    files: &[(PathBuf, String)],
    p: &mut raw::Problems,
) {
    for (i, (name, raw)) in tunnels.iter().enumerate() {
        let earlier = tunnels[..i]
            .iter()
            .find(|(other, _)| other.get_ref() == name.get_ref());
        if let Some((other, other_raw)) = earlier {
            let (other_path, other_text) = &files[other_raw.file];
            let (line, col) = error::line_col(other_text, other.span().start);
            p.push_at(
                raw.file,
                name.span().start,
                format!(
                    "tunnel \"{}\" is already defined at {}:{line}:{col}; a name may be used \
                     once in the main file and all its includes together",
                    name.get_ref(),
                    other_path.display()
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests;
