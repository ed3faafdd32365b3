//! The walk itself: the top level, `[daemon]`, `[defaults]` and each `[tunnels.NAME]`,
//! key by key, and the values that take more than one check (hosts, proxies, `backoff`,
//! `strict_host_key_checking`).

use std::net::SocketAddr;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::Item;
use super::keys::{
    BACKOFF_KEYS, DAEMON_KEYS, INCLUDED_TOP_KEYS, NOT_IN_DEFAULTS, TOP_KEYS, TUNNEL_KEYS,
    unknown_key,
};
use super::problems::Problems;
use super::structs::{RawBackoff, RawDaemon, RawDoc, RawProxy, RawTunnel};
use super::value::{
    boolean, count, duration, float, integer, non_empty, path, paths, string, strings, table,
    wrong_type,
};
use crate::env::Env;
use crate::host::{parse_host_port, parse_jump_list};
use crate::model::{LOG_LEVELS, StrictHostKeyChecking};

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

/// Walks an included file, which may hold only `[tunnels.NAME]` tables; its problems are
/// filed under the file [`Problems::in_file`] names.
pub(crate) fn walk_included(
    root: &DeTable<'_>,
    env: &Env,
    p: &mut Problems,
) -> Vec<(Spanned<String>, RawTunnel)> {
    let mut out = Vec::new();
    for (key, item) in root.iter() {
        match key.get_ref().as_ref() {
            "tunnels" => {
                let expected = "a table of [tunnels.NAME] tables";
                if let Some(t) = table("tunnels", expected, item, p) {
                    out.extend(tunnels(t, env, p));
                }
            }
            k @ ("daemon" | "defaults") => p.push(
                key.span(),
                format!(
                    "[{k}] cannot be set in an included file; an included file holds only \
                     [tunnels.NAME] tables (move it to the main file)"
                ),
            ),
            _ => unknown_key(key, "an included file", INCLUDED_TOP_KEYS, p),
        }
    }
    out
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
            let mut raw = tunnel(tt, &place, false, env, p);
            raw.file = p.current_file();
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
            "include" => {
                let expected = "a file pattern like \"/etc/tunneld/tunnels.d/*.toml\"";
                for pattern in strings(k, expected, item, p).unwrap_or_default() {
                    if pattern.get_ref().is_empty() {
                        p.push(pattern.span(), "include: empty pattern");
                        continue;
                    }
                    match env.expand_tilde(pattern.get_ref()) {
                        Ok(path) => d.include.push(Spanned::new(pattern.span(), path)),
                        Err(e) => p.push(pattern.span(), format!("include: {e}")),
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
            "update_host_keys" => r.update_host_keys = yes_no(k, item, p),
            "on_state_change" => r.on_state_change = argv(k, item, env, p),
            _ => unknown_key(key, place, TUNNEL_KEYS, p),
        }
    }
    r
}

/// `"yes"` or `"no"` (OpenSSH's words), or `true` / `false`.
fn yes_no(key: &str, item: &Item<'_>, p: &mut Problems) -> Option<bool> {
    match item.get_ref() {
        DeValue::Boolean(b) => Some(*b),
        DeValue::String(s) if s.as_ref() == "yes" => Some(true),
        DeValue::String(s) if s.as_ref() == "no" => Some(false),
        DeValue::String(s) if s.as_ref() == "ask" => {
            p.push(
                item.span(),
                format!("{key} \"ask\" is impossible in a daemon; use \"yes\" or \"no\""),
            );
            None
        }
        DeValue::String(s) => {
            p.push(
                item.span(),
                format!("{key} \"{s}\" is unknown; use \"yes\" or \"no\""),
            );
            None
        }
        v => {
            wrong_type(key, "\"yes\" or \"no\"", v, item.span(), p);
            None
        }
    }
}

/// A program and its arguments, run without a shell: an array of strings whose first is
/// not empty (`~/` expanded in it); `[]` means none.
fn argv(key: &str, item: &Item<'_>, env: &Env, p: &mut Problems) -> Option<Vec<String>> {
    let expected = "an array: the program and its arguments, run without a shell, \
                    e.g. [\"/usr/local/bin/tunnel-alert\", \"--quiet\"] ([] for none)";
    let DeValue::Array(a) = item.get_ref() else {
        wrong_type(key, expected, item.get_ref(), item.span(), p);
        return None;
    };
    let mut out = Vec::new();
    for (i, e) in a.iter().enumerate() {
        let DeValue::String(s) = e.get_ref() else {
            wrong_type(
                &format!("entries of {key}"),
                "strings",
                e.get_ref(),
                e.span(),
                p,
            );
            return None;
        };
        if s.contains('\0') {
            p.push(
                e.span(),
                format!("{key}: an argument cannot hold a NUL character"),
            );
            return None;
        }
        if i > 0 {
            out.push(s.to_string());
            continue;
        }
        if s.trim().is_empty() {
            p.push(
                e.span(),
                format!("{key}: the program is empty; write {expected}"),
            );
            return None;
        }
        match env.expand_tilde(s) {
            Ok(program) => out.push(program.to_string_lossy().into_owned()),
            Err(e2) => {
                p.push(e.span(), format!("{key}: {e2}"));
                return None;
            }
        }
    }
    Some(out)
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
