//! The known keys of each table, and the message for an unknown one: a near typo or
//! the ssh_config spelling gets a "did you mean", anything else the list of keys.

use super::Key;
use super::problems::Problems;

pub(super) const TOP_KEYS: &[&str] = &["daemon", "defaults", "tunnels"];
/// What an included file may hold.
pub(super) const INCLUDED_TOP_KEYS: &[&str] = &["tunnels"];
pub(super) const DAEMON_KEYS: &[&str] = &[
    "socket",
    "socket_group",
    "watch",
    "metrics",
    "log_level",
    "max_concurrent_handshakes",
    "include",
];
pub(super) const TUNNEL_KEYS: &[&str] = &[
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
    "update_host_keys",
    "on_state_change",
];
/// Keys that only make sense per tunnel.
pub(super) const NOT_IN_DEFAULTS: &[&str] = &["host", "local", "remote", "dynamic"];
pub(super) const BACKOFF_KEYS: &[&str] = &["initial", "max", "multiplier", "jitter"];

pub(super) fn unknown_key(key: &Key<'_>, place: &str, known: &[&str], p: &mut Problems) {
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
