//! The raw layer: a walk over toml's span-keeping document into `Raw*` structs.
//!
//! Every key is looked at and every problem recorded with its byte position, so
//! one run reports all of them. (Deserializing with serde's `deny_unknown_fields`
//! would stop at the first problem of each table.) Values that can be checked on
//! their own are checked here; anything that depends on `[defaults]` is left to
//! [`resolve`](crate::resolve).

use std::net::SocketAddr;
use std::ops::Range;
use std::path::PathBuf;
use std::time::Duration;

use toml::Spanned;
use toml::de::{DeString, DeTable, DeValue};

use crate::duration::parse_duration;
use crate::env::Env;
use crate::host::{JumpHost, parse_host_port, parse_jump_list};
use crate::model::{LOG_LEVELS, StrictHostKeyChecking};

type Item<'i> = Spanned<DeValue<'i>>;
type Key<'i> = Spanned<DeString<'i>>;

/// Problems found so far, as (byte offset, message).
#[derive(Debug, Default)]
pub(crate) struct Problems(pub Vec<(usize, String)>);

impl Problems {
    pub fn push(&mut self, span: Range<usize>, message: impl Into<String>) {
        self.0.push((span.start, message.into()));
    }
}

/// The whole document, each table walked.
#[derive(Debug, Default)]
pub(crate) struct RawDoc {
    pub daemon: RawDaemon,
    pub defaults: RawTunnel,
    /// Tunnel names (with the span of the name) and their tables, in file order.
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
}

/// `[defaults]` or `[tunnels.NAME]`: every key optional; forwards still strings
/// because local bind addresses depend on `gateway_ports`, which may come from
/// `[defaults]`.
#[derive(Debug, Default)]
pub(crate) struct RawTunnel {
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

const TOP_KEYS: &[&str] = &["daemon", "defaults", "tunnels"];
const DAEMON_KEYS: &[&str] = &[
    "socket",
    "socket_group",
    "watch",
    "metrics",
    "log_level",
    "max_concurrent_handshakes",
];
const TUNNEL_KEYS: &[&str] = &[
    "host",
    "port",
    "user",
    "identity_file",
    "certificate_file",
    "known_hosts",
    "strict_host_key_checking",
    "server_alive_interval",
    "server_alive_count_max",
    "failover_after",
    "max_connections",
    "connect_timeout",
    "backoff",
    "stable_after",
    "gateway_ports",
    "local",
    "remote",
    "dynamic",
    "proxy_jump",
    "permit_remote_open",
    "stream_local_bind_unlink",
    "stream_local_bind_mask",
    "proxy",
    "proxy_password_file",
    "proxy_command",
];
/// Keys that only make sense per tunnel.
const NOT_IN_DEFAULTS: &[&str] = &["host", "local", "remote", "dynamic"];
const BACKOFF_KEYS: &[&str] = &["initial", "max", "multiplier", "jitter"];

/// Walks the document root.
pub(crate) fn walk(root: &DeTable<'_>, env: &Env, p: &mut Problems) -> RawDoc {
    let mut doc = RawDoc::default();
    for (key, item) in root.iter() {
        match key.get_ref().as_ref() {
            "daemon" => {
                if let Some(t) = table("daemon", "a table ([daemon])", item, p) {
                    doc.daemon = daemon(t, env, p);
                }
            }
            "defaults" => {
                if let Some(t) = table("defaults", "a table ([defaults])", item, p) {
                    doc.defaults = tunnel(t, "[defaults]", true, env, p);
                }
            }
            "tunnels" => {
                let expected = "a table of [tunnels.NAME] tables";
                if let Some(t) = table("tunnels", expected, item, p) {
                    doc.tunnels = tunnels(t, env, p);
                }
            }
            _ => unknown_key(key, "the top level", TOP_KEYS, p),
        }
    }
    doc
}

fn tunnels(t: &DeTable<'_>, env: &Env, p: &mut Problems) -> Vec<(Spanned<String>, RawTunnel)> {
    let mut out = Vec::new();
    for (key, item) in t.iter() {
        let name = key.get_ref().as_ref();
        let valid = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
        if !valid {
            p.push(
                key.span(),
                format!(
                    "tunnel name \"{name}\" may contain only letters, digits, '_', '.' and '-'"
                ),
            );
        }
        let place = format!("[tunnels.{name}]");
        let expected = format!("a table ({place})");
        if let Some(tt) = table(&format!("tunnels.{name}"), &expected, item, p) {
            let raw = tunnel(tt, &place, false, env, p);
            out.push((Spanned::new(key.span(), name.to_owned()), raw));
        }
    }
    out.sort_by_key(|(name, _)| name.span().start);
    out
}

fn daemon(t: &DeTable<'_>, env: &Env, p: &mut Problems) -> RawDaemon {
    let mut d = RawDaemon::default();
    for (key, item) in t.iter() {
        let k = key.get_ref().as_ref();
        match k {
            "socket" => d.socket = path(k, item, env, p),
            "socket_group" => d.socket_group = non_empty(k, "a group name", item, p),
            "watch" => d.watch = boolean(k, item, p),
            "metrics" => {
                let expected = "an address like \"127.0.0.1:9337\"";
                if let Some(s) = string(k, expected, item, p) {
                    if s.parse::<SocketAddr>().is_ok() {
                        d.metrics = Some(s.to_owned());
                    } else {
                        p.push(
                            item.span(),
                            format!("metrics address \"{s}\" is not IP:PORT; write e.g. \"127.0.0.1:9337\" or \"[::1]:9337\""),
                        );
                    }
                }
            }
            "log_level" => {
                let expected = "one of \"error\", \"warn\", \"info\", \"debug\", \"trace\"";
                if let Some(s) = string(k, expected, item, p) {
                    let level = s.to_ascii_lowercase();
                    if LOG_LEVELS.contains(&level.as_str()) {
                        d.log_level = Some(level);
                    } else {
                        p.push(item.span(), format!("log_level \"{s}\" is unknown; use {expected} (RUST_LOG takes full filters)"));
                    }
                }
            }
            "max_concurrent_handshakes" => {
                if let Some(n) = integer(k, item, p) {
                    match usize::try_from(n) {
                        Ok(n) if n >= 1 => d.max_concurrent_handshakes = Some(n),
                        _ => p.push(
                            item.span(),
                            format!("max_concurrent_handshakes must be at least 1, not {n}"),
                        ),
                    }
                }
            }
            _ => unknown_key(key, "[daemon]", DAEMON_KEYS, p),
        }
    }
    d
}

fn tunnel(
    t: &DeTable<'_>,
    place: &str,
    in_defaults: bool,
    env: &Env,
    p: &mut Problems,
) -> RawTunnel {
    let mut r = RawTunnel::default();
    for (key, item) in t.iter() {
        let k = key.get_ref().as_ref();
        if in_defaults && NOT_IN_DEFAULTS.contains(&k) {
            p.push(
                key.span(),
                format!("{k} cannot be set in [defaults]; set it in each [tunnels.NAME] table"),
            );
            continue;
        }
        match k {
            "host" => {
                r.has_host = true;
                r.host = host_list(item, p);
            }
            "port" => {
                if let Some(n) = integer(k, item, p) {
                    match u16::try_from(n) {
                        Ok(port) if port >= 1 => r.port = Some(port),
                        _ => p.push(
                            item.span(),
                            format!("port must be between 1 and 65535, not {n}"),
                        ),
                    }
                }
            }
            "user" => r.user = non_empty(k, "a user name", item, p),
            "identity_file" => r.identity_file = paths(k, item, env, p),
            "certificate_file" => r.certificate_file = paths(k, item, env, p),
            "known_hosts" => r.known_hosts = paths(k, item, env, p),
            "strict_host_key_checking" => r.strict_host_key_checking = strict(item, p),
            "server_alive_interval" => r.server_alive_interval = duration(k, item, true, p),
            "server_alive_count_max" => r.server_alive_count_max = count(k, item, p),
            "failover_after" => r.failover_after = count(k, item, p),
            "max_connections" => r.max_connections = count(k, item, p),
            "connect_timeout" => r.connect_timeout = duration(k, item, true, p),
            "backoff" => r.backoff = backoff(item, p),
            "stable_after" => r.stable_after = duration(k, item, false, p),
            "gateway_ports" => r.gateway_ports = boolean(k, item, p),
            "local" | "remote" | "dynamic" => {
                r.has_forward_key = true;
                r.forward_entries += match item.get_ref() {
                    DeValue::Array(a) => a.len(),
                    _ => 1,
                };
                let list = strings(k, "an ssh forward string", item, p).unwrap_or_default();
                match k {
                    "local" => r.local = list,
                    "remote" => r.remote = list,
                    _ => r.dynamic = list,
                }
            }
            "proxy_jump" => {
                let expected = "a string like \"user@jump.example.com:22\"";
                if let Some(s) = string(k, expected, item, p) {
                    match parse_jump_list(s) {
                        Ok(hops) => r.proxy_jump = Some(hops),
                        Err(e) => p.push(item.span(), e),
                    }
                }
            }
            "stream_local_bind_unlink" => r.stream_local_bind_unlink = boolean(k, item, p),
            "proxy" | "proxy_command" => {
                if let Some(value) = proxy(k, item, p) {
                    if r.proxy.is_some() {
                        p.push(
                            key.span(),
                            "proxy and proxy_command are both set; keep one of them",
                        );
                    } else {
                        r.proxy = Some(Spanned::new(item.span(), value));
                    }
                }
            }
            "proxy_password_file" => {
                r.proxy_password_file =
                    path(k, item, env, p).map(|path| Spanned::new(item.span(), path));
            }
            "stream_local_bind_mask" => {
                let expected = "an octal mask like \"0177\"";
                if let Some(text) = string(k, expected, item, p) {
                    match u32::from_str_radix(text, 8) {
                        Ok(mask) if mask <= 0o777 && !text.is_empty() => {
                            r.stream_local_bind_mask = Some(mask);
                        }
                        _ => p.push(
                            item.span(),
                            format!("stream_local_bind_mask must be {expected}, not \"{text}\""),
                        ),
                    }
                }
            }
            "permit_remote_open" => {
                let expected = "\"host:port\", \"any\" or \"none\"";
                if let Some(list) = strings(k, expected, item, p) {
                    let texts: Vec<&str> = list.iter().map(|e| e.get_ref().as_str()).collect();
                    match crate::PermitRemoteOpen::parse(&texts) {
                        Ok(permit) => r.permit_remote_open = Some(permit),
                        Err((i, e)) => p.push(list[i].span(), e),
                    }
                }
            }
            _ => unknown_key(key, place, TUNNEL_KEYS, p),
        }
    }
    r
}

fn proxy(key: &str, item: &Item<'_>, p: &mut Problems) -> Option<RawProxy> {
    let command = key == "proxy_command";
    let expected = if command {
        "a command like \"nc -X connect -x proxy:3128 %h %p\", or \"none\""
    } else {
        "a URL like \"http://proxy.corp:3128\", \"env\" or \"none\""
    };
    let s = string(key, expected, item, p)?;
    let parsed = match s.trim() {
        "none" => Ok(RawProxy::Direct),
        "env" if !command => Ok(RawProxy::Env),
        _ if command => crate::proxy::check_command(s).map(|()| RawProxy::Command(s.to_owned())),
        _ => crate::proxy::parse_url(s, false).map(RawProxy::Url),
    };
    parsed.map_err(|e| p.push(item.span(), e)).ok()
}

fn host_list(item: &Item<'_>, p: &mut Problems) -> Vec<(String, Option<u16>)> {
    let expected =
        "a host name or an array of them, e.g. [\"a.example.com\", \"b.example.com:2222\"]";
    let Some(entries) = strings("host", expected, item, p) else {
        return Vec::new();
    };
    if entries.is_empty() {
        p.push(item.span(), format!("host is empty; write {expected}"));
    }
    entries
        .iter()
        .filter_map(|e| match parse_host_port(e.get_ref()) {
            Ok(hp) => Some(hp),
            Err(msg) => {
                p.push(e.span(), msg);
                None
            }
        })
        .collect()
}

fn backoff(item: &Item<'_>, p: &mut Problems) -> Option<Spanned<RawBackoff>> {
    let expected =
        "an inline table like { initial = \"1s\", max = \"60s\", multiplier = 2.0, jitter = 0.2 }";
    let t = table("backoff", expected, item, p)?;
    let mut b = RawBackoff::default();
    for (key, v) in t.iter() {
        let k = key.get_ref().as_ref();
        match k {
            "initial" => b.initial = duration("backoff.initial", v, true, p),
            "max" => b.max = duration("backoff.max", v, true, p),
            "multiplier" => {
                b.multiplier = float("backoff.multiplier", v, p).filter(|&m| {
                    let ok = m >= 1.0 && m.is_finite();
                    if !ok {
                        p.push(
                            v.span(),
                            format!("backoff.multiplier must be at least 1.0, not {m}"),
                        );
                    }
                    ok
                });
            }
            "jitter" => {
                b.jitter = float("backoff.jitter", v, p).filter(|&j| {
                    let ok = (0.0..=1.0).contains(&j);
                    if !ok {
                        p.push(
                            v.span(),
                            format!("backoff.jitter must be between 0.0 and 1.0, not {j}"),
                        );
                    }
                    ok
                });
            }
            _ => unknown_key(key, "backoff", BACKOFF_KEYS, p),
        }
    }
    Some(Spanned::new(item.span(), b))
}

fn strict(item: &Item<'_>, p: &mut Problems) -> Option<StrictHostKeyChecking> {
    let expected = "\"yes\", \"accept-new\" or \"no\"";
    match item.get_ref() {
        DeValue::Boolean(true) => Some(StrictHostKeyChecking::Yes),
        DeValue::Boolean(false) => Some(StrictHostKeyChecking::No),
        DeValue::String(s) => match s.as_ref() {
            "yes" => Some(StrictHostKeyChecking::Yes),
            "accept-new" => Some(StrictHostKeyChecking::AcceptNew),
            "no" | "off" => Some(StrictHostKeyChecking::No),
            "ask" => {
                p.push(item.span(), "strict_host_key_checking \"ask\" is impossible in a daemon; use \"yes\" or \"accept-new\"");
                None
            }
            other => {
                p.push(
                    item.span(),
                    format!("strict_host_key_checking \"{other}\" is unknown; use {expected}"),
                );
                None
            }
        },
        v => {
            wrong_type("strict_host_key_checking", expected, v, item.span(), p);
            None
        }
    }
}

// ---- scalar helpers: each records a problem at the value and returns None ----

fn a_type(v: &DeValue<'_>) -> &'static str {
    match v {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a date-time",
        DeValue::Array(_) => "an array",
        DeValue::Table(_) => "a table",
    }
}

fn wrong_type(key: &str, expected: &str, v: &DeValue<'_>, span: Range<usize>, p: &mut Problems) {
    p.push(span, format!("{key} must be {expected}, not {}", a_type(v)));
}

fn table<'a, 'i>(
    key: &str,
    expected: &str,
    item: &'a Item<'i>,
    p: &mut Problems,
) -> Option<&'a DeTable<'i>> {
    match item.get_ref() {
        DeValue::Table(t) => Some(t),
        v => {
            wrong_type(key, expected, v, item.span(), p);
            None
        }
    }
}

fn string<'a>(key: &str, expected: &str, item: &'a Item<'_>, p: &mut Problems) -> Option<&'a str> {
    match item.get_ref() {
        DeValue::String(s) => Some(s.as_ref()),
        v => {
            wrong_type(key, expected, v, item.span(), p);
            None
        }
    }
}

fn non_empty(key: &str, expected: &str, item: &Item<'_>, p: &mut Problems) -> Option<String> {
    let s = string(key, expected, item, p)?;
    if s.is_empty() {
        p.push(
            item.span(),
            format!("{key} is empty; write {expected} or remove the key"),
        );
        return None;
    }
    Some(s.to_owned())
}

/// A string or an array of strings; each bad element is reported at its own position.
fn strings(
    key: &str,
    expected: &str,
    item: &Item<'_>,
    p: &mut Problems,
) -> Option<Vec<Spanned<String>>> {
    match item.get_ref() {
        DeValue::String(s) => Some(vec![Spanned::new(item.span(), s.to_string())]),
        DeValue::Array(a) => Some(
            a.iter()
                .filter_map(|e| match e.get_ref() {
                    DeValue::String(s) => Some(Spanned::new(e.span(), s.to_string())),
                    v => {
                        let what = format!("entries of {key}");
                        p.push(
                            e.span(),
                            format!("{what} must be strings ({expected}), not {}", a_type(v)),
                        );
                        None
                    }
                })
                .collect(),
        ),
        v => {
            wrong_type(
                key,
                &format!("{expected} or an array of them"),
                v,
                item.span(),
                p,
            );
            None
        }
    }
}

fn path(key: &str, item: &Item<'_>, env: &Env, p: &mut Problems) -> Option<PathBuf> {
    let s = non_empty(key, "a path", item, p)?;
    env.expand_tilde(&s)
        .map_err(|e| p.push(item.span(), format!("{key}: {e}")))
        .ok()
}

fn paths(key: &str, item: &Item<'_>, env: &Env, p: &mut Problems) -> Option<Vec<PathBuf>> {
    let list = strings(key, "a path", item, p)?;
    let mut out = Vec::new();
    for s in list {
        if s.get_ref().is_empty() {
            p.push(s.span(), format!("{key}: empty path"));
            continue;
        }
        match env.expand_tilde(s.get_ref()) {
            Ok(path) => out.push(path),
            Err(e) => p.push(s.span(), format!("{key}: {e}")),
        }
    }
    Some(out)
}

fn boolean(key: &str, item: &Item<'_>, p: &mut Problems) -> Option<bool> {
    match item.get_ref() {
        DeValue::Boolean(b) => Some(*b),
        v => {
            wrong_type(key, "true or false", v, item.span(), p);
            None
        }
    }
}

fn integer(key: &str, item: &Item<'_>, p: &mut Problems) -> Option<i64> {
    match item.get_ref() {
        DeValue::Integer(i) => match i64::from_str_radix(i.as_str(), i.radix()) {
            Ok(n) => Some(n),
            Err(_) => {
                p.push(item.span(), format!("{key}: {i} is too large"));
                None
            }
        },
        v => {
            wrong_type(key, "an integer", v, item.span(), p);
            None
        }
    }
}

/// A count of at least 1.
fn count(key: &str, item: &Item<'_>, p: &mut Problems) -> Option<u32> {
    let n = integer(key, item, p)?;
    match u32::try_from(n) {
        Ok(count) if count >= 1 => Some(count),
        _ => {
            p.push(item.span(), format!("{key} must be at least 1, not {n}"));
            None
        }
    }
}

fn float(key: &str, item: &Item<'_>, p: &mut Problems) -> Option<f64> {
    match item.get_ref() {
        DeValue::Float(f) => f.as_str().parse().ok(),
        DeValue::Integer(_) => integer(key, item, p).map(|n| n as f64),
        v => {
            wrong_type(key, "a number like 2.0", v, item.span(), p);
            None
        }
    }
}

fn duration(
    key: &str,
    item: &Item<'_>,
    must_be_positive: bool,
    p: &mut Problems,
) -> Option<Duration> {
    let s = string(key, "a string like \"10s\"", item, p)?;
    match parse_duration(s) {
        Ok(d) if must_be_positive && d.is_zero() => {
            p.push(item.span(), format!("{key} must be greater than 0"));
            None
        }
        Ok(d) => Some(d),
        Err(e) => {
            p.push(item.span(), format!("{key}: {e}"));
            None
        }
    }
}

// ---- unknown keys ----

fn unknown_key(key: &Key<'_>, place: &str, known: &[&str], p: &mut Problems) {
    let k = key.get_ref().as_ref();
    let hint = match suggest(k, known) {
        Some(s) => format!("did you mean \"{s}\"?"),
        None => format!("expected one of: {}", known.join(", ")),
    };
    p.push(
        key.span(),
        format!("unknown key \"{k}\" in {place}; {hint}"),
    );
}

/// A known key the user probably meant: a near typo, or the ssh_config spelling.
fn suggest<'a>(k: &str, known: &[&'a str]) -> Option<&'a str> {
    let squash = |s: &str| -> String {
        s.chars()
            .filter(char::is_ascii_alphanumeric)
            .map(|c| c.to_ascii_lowercase())
            .collect()
    };
    let sk = squash(k);
    let alias = match sk.as_str() {
        "localforward" => Some("local"),
        "remoteforward" => Some("remote"),
        "dynamicforward" => Some("dynamic"),
        "hostname" | "hosts" => Some("host"),
        "userknownhostsfile" | "globalknownhostsfile" => Some("known_hosts"),
        "identityfiles" => Some("identity_file"),
        "tunnel" => Some("tunnels"),
        "default" => Some("defaults"),
        _ => None,
    };
    if let Some(a) = alias.filter(|a| known.contains(a)) {
        return Some(a);
    }
    if let Some(same) = known.iter().find(|c| squash(c) == sk) {
        return Some(same);
    }
    let limit = if k.chars().count() <= 4 { 1 } else { 2 };
    known
        .iter()
        .map(|c| (edit_distance(k, c), *c))
        .filter(|&(d, _)| d <= limit)
        .min_by_key(|&(d, _)| d)
        .map(|(_, c)| c)
}

/// Optimal string alignment distance (Levenshtein plus adjacent transpositions).
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions() {
        let cases = [
            ("hots", Some("host")),
            ("hostt", Some("host")),
            ("LocalForward", Some("local")),
            ("ServerAliveInterval", Some("server_alive_interval")),
            ("identity_files", Some("identity_file")),
            ("IdentityFile", Some("identity_file")),
            ("proxy-jump", Some("proxy_jump")),
            ("connect_timout", Some("connect_timeout")),
            ("colour", None),
            ("pot", Some("port")),
            ("xyz", None),
        ];
        for (k, want) in cases {
            assert_eq!(suggest(k, TUNNEL_KEYS), want, "{k}");
        }
        assert_eq!(suggest("tunnel", TOP_KEYS), Some("tunnels"));
    }
}
