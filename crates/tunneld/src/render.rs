//! `tunneld status` output: the JSON document of the SPEC and a table for people.

use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use tunneld_core::{TunnelState, TunnelStatus};

/// The `tunneld status --json` document: `{"tunnels": [...]}`.
pub fn status_json(tunnels: &[TunnelStatus]) -> Value {
    let tunnels: Vec<Value> = tunnels
        .iter()
        .map(|t| {
            let forwards: Vec<Value> = t
                .forwards
                .iter()
                .map(|f| {
                    json!({
                        "kind": f.kind.as_str(),
                        "spec": f.spec,
                        "state": f.state.as_str(),
                        "listen": f.listen,
                        "error": f.error,
                        "connections": f.counters.active.load(Ordering::Relaxed),
                        "bytes_in": f.counters.bytes_in.load(Ordering::Relaxed),
                        "bytes_out": f.counters.bytes_out.load(Ordering::Relaxed),
                    })
                })
                .collect();
            json!({
                "name": t.name,
                "state": t.state.as_str(),
                "host": t.host,
                "since": rfc3339(t.since),
                "reconnects": t.reconnects,
                "last_error": t.last_error,
                "forwards": forwards,
            })
        })
        .collect();
    json!({ "tunnels": tunnels })
}

/// One line per tunnel under a header, from the JSON document (what the client receives).
pub fn status_table(doc: &Value, now: SystemTime) -> String {
    let empty = Vec::new();
    let tunnels = doc["tunnels"].as_array().unwrap_or(&empty);
    let mut rows = vec![[
        "NAME".to_string(),
        "STATE".into(),
        "UPTIME".into(),
        "RECONNECTS".into(),
        "FORWARDS".into(),
        "LISTEN".into(),
        "LAST ERROR".into(),
    ]];
    for t in tunnels {
        let state = t["state"].as_str().unwrap_or("?");
        let uptime = match (state, t["since"].as_str().and_then(parse_rfc3339)) {
            ("up" | "degraded", Some(since)) => {
                human(now.duration_since(since).unwrap_or_default())
            }
            _ => "-".into(),
        };
        let forwards = t["forwards"].as_array().unwrap_or(&empty);
        let active = forwards.iter().filter(|f| f["state"] == "active").count();
        let conns: u64 = forwards
            .iter()
            .filter_map(|f| f["connections"].as_u64())
            .sum();
        rows.push([
            t["name"].as_str().unwrap_or("?").to_string(),
            state.to_string(),
            uptime,
            t["reconnects"].to_string(),
            format!("{active}/{} active, {conns} conn", forwards.len()),
            listen(forwards),
            t["last_error"].as_str().unwrap_or("-").to_string(),
        ]);
    }
    let widths: Vec<usize> = (0..6)
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in &rows {
        for (i, cell) in row.iter().enumerate() {
            if i < 6 {
                out.push_str(&format!("{cell:<w$}  ", w = widths[i]));
            } else {
                out.push_str(cell);
            }
        }
        out.push('\n');
    }
    out
}

/// What the forwards have bound, for the table: each active forward's addresses joined
/// by commas, forwards apart by spaces (`localhost:40123 127.0.0.1:8080,[::1]:8080`);
/// `-` when none is bound.
fn listen(forwards: &[Value]) -> String {
    let bound: Vec<String> = forwards
        .iter()
        .filter_map(|f| f["listen"].as_array())
        .map(|addrs| {
            addrs
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(",")
        })
        .filter(|s| !s.is_empty())
        .collect();
    if bound.is_empty() {
        "-".into()
    } else {
        bound.join(" ")
    }
}

/// `STATUS=` for systemd: "3/4 tunnels up" (degraded counts as up: its session is).
pub fn status_line(tunnels: &[TunnelStatus]) -> String {
    let up = tunnels
        .iter()
        .filter(|t| matches!(t.state, TunnelState::Up | TunnelState::Degraded))
        .count();
    let degraded = tunnels
        .iter()
        .filter(|t| t.state == TunnelState::Degraded)
        .count();
    let mut line = format!("{up}/{} tunnels up", tunnels.len());
    if degraded > 0 {
        line.push_str(&format!(", {degraded} degraded"));
    }
    line
}

fn human(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{}s", s / 60, s % 60),
        3600..86400 => format!("{}h{}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{}h", s / 86400, s % 86400 / 3600),
    }
}

/// `2026-11-24T10:00:00Z`.
pub fn rfc3339(t: SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn parse_rfc3339(s: &str) -> Option<SystemTime> {
    let b = s.as_bytes();
    if b.len() != 20 || b[10] != b'T' || b[19] != b'Z' {
        return None;
    }
    let n = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let days = days_from_civil(n(0..4)?, n(5..7)?, n(8..10)?);
    let secs = days * 86_400 + n(11..13)? * 3600 + n(14..16)? * 60 + n(17..19)?;
    Some(UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).ok()?))
}

// Howard Hinnant's civil-calendar conversions (proleptic Gregorian, UTC).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_round_trips() {
        let t = UNIX_EPOCH + Duration::from_secs(1_795_514_400); // 2026-11-24T10:00:00Z
        assert_eq!(rfc3339(t), "2026-11-24T10:00:00Z");
        assert_eq!(parse_rfc3339("2026-11-24T10:00:00Z"), Some(t));
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_secs(951_782_400)),
            "2000-02-29T00:00:00Z"
        );
        assert_eq!(parse_rfc3339("garbage"), None);
    }

    #[test]
    fn table_lines_up() {
        let now = UNIX_EPOCH + Duration::from_secs(1_795_514_400 + 3725);
        let doc = json!({"tunnels": [
            {"name": "home-ssh", "state": "up", "host": "h:22", "since": "2026-11-24T10:00:00Z",
             "reconnects": 2, "last_error": null,
             "forwards": [{"kind": "remote", "spec": "0:localhost:22", "state": "active",
                           "listen": ["localhost:40123"],
                           "error": null, "connections": 1, "bytes_in": 0, "bytes_out": 0},
                          {"kind": "local", "spec": "8080:web:80", "state": "active",
                           "listen": ["127.0.0.1:8080", "[::1]:8080"],
                           "error": null, "connections": 0, "bytes_in": 0, "bytes_out": 0}]},
            {"name": "b", "state": "backoff", "host": "h:22", "since": "2026-11-24T10:00:00Z",
             "reconnects": 0, "last_error": "cannot connect to h:22: refused",
             "forwards": [{"kind": "local", "spec": "1:h:2", "state": "pending",
                           "listen": null,
                           "error": null, "connections": 0, "bytes_in": 0, "bytes_out": 0}]}
        ]});
        let table = status_table(&doc, now);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(
            lines[0]
                .starts_with("NAME      STATE    UPTIME  RECONNECTS  FORWARDS            LISTEN  "),
            "{table}"
        );
        assert!(
            lines[1].starts_with(
                "home-ssh  up       1h2m    2           2/2 active, 1 conn  \
                 localhost:40123 127.0.0.1:8080,[::1]:8080  -"
            ),
            "{table}"
        );
        assert!(
            lines[2].starts_with("b         backoff  -       0           0/1 active, 0 conn  -"),
            "{table}"
        );
        assert!(
            lines[2].ends_with("cannot connect to h:22: refused"),
            "{table}"
        );
    }
}
