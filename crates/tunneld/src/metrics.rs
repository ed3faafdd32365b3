//! `[daemon] metrics`: Prometheus text at `/metrics` and a health check at `/ready`, over
//! plain HTTP/1.1, one request per connection.
//!
//! The daemon loop owns the tunnels; a request asks it for a snapshot through a channel,
//! as control requests do. Bad requests get a 4xx answer and never affect the daemon.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc, oneshot};
use tracing::debug;
use tunneld_core::{ForwardCounters, ForwardState, TunnelState, TunnelStatus};

/// A request for the tunnels' status, answered by the daemon loop.
pub type Snapshot = oneshot::Sender<Vec<TunnelStatus>>;

/// Largest request head read; scrapers send a few hundred bytes.
const MAX_HEAD_BYTES: usize = 8 * 1024;
/// Time allowed to send the request head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// Time allowed to take the answer.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Requests served at once; more wait for a turn.
const MAX_CONCURRENT: usize = 16;

/// Binds the metrics listener.
///
/// # Errors
/// The address does not parse or cannot be bound.
pub async fn bind(addr: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen for metrics on {addr}"))
}

/// Serves requests until the task is aborted.
pub async fn serve(listener: TcpListener, snapshots: mpsc::Sender<Snapshot>) {
    let turns = Arc::new(Semaphore::new(MAX_CONCURRENT));
    loop {
        let Ok((stream, peer)) = listener.accept().await else {
            continue;
        };
        let Ok(turn) = Arc::clone(&turns).acquire_owned().await else {
            return;
        };
        let snapshots = snapshots.clone();
        tokio::spawn(async move {
            if let Err(e) = handle(stream, &snapshots).await {
                debug!(%peer, error = %e, "metrics request failed");
            }
            drop(turn);
        });
    }
}

async fn handle(mut stream: TcpStream, snapshots: &mpsc::Sender<Snapshot>) -> std::io::Result<()> {
    let (status, content_type, body) = match read_head(&mut stream).await {
        Ok(head) => answer(&head, snapshots).await,
        Err(why) => (400, "text/plain", format!("{why}\n")),
    };
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Service Unavailable",
    };
    let response = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    tokio::time::timeout(WRITE_TIMEOUT, stream.write_all(response.as_bytes()))
        .await
        .map_err(|_| std::io::Error::other("client too slow to take the answer"))??;
    stream.shutdown().await
}

/// Reads up to the blank line ending the request head.
async fn read_head(stream: &mut TcpStream) -> Result<String, &'static str> {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    let read = async {
        while !head.windows(4).any(|w| w == b"\r\n\r\n") && !head.windows(2).any(|w| w == b"\n\n") {
            if head.len() > MAX_HEAD_BYTES {
                return Err("request head too large");
            }
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return Err("request cut short"),
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
        Ok(())
    };
    tokio::time::timeout(HEAD_TIMEOUT, read)
        .await
        .map_err(|_| "request head not sent in time")??;
    String::from_utf8(head).map_err(|_| "request head is not UTF-8")
}

async fn answer(head: &str, snapshots: &mpsc::Sender<Snapshot>) -> (u16, &'static str, String) {
    let mut parts = head.lines().next().unwrap_or_default().split_whitespace();
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return (400, "text/plain", "malformed request line\n".into());
    };
    if !version.starts_with("HTTP/1.") {
        return (400, "text/plain", "HTTP/1.x only\n".into());
    }
    let path = target.split('?').next().unwrap_or_default();
    if !matches!(path, "/metrics" | "/ready") {
        return (404, "text/plain", "try /metrics or /ready\n".into());
    }
    if method != "GET" {
        return (405, "text/plain", "GET only\n".into());
    }
    let (tx, rx) = oneshot::channel();
    let statuses = match snapshots.send(tx).await {
        Ok(()) => rx.await.ok(),
        Err(_) => None,
    };
    let Some(statuses) = statuses else {
        return (503, "text/plain", "stopping\n".into());
    };
    if path == "/ready" {
        let waiting: Vec<&str> = statuses
            .iter()
            .filter(|s| s.state != TunnelState::Up)
            .map(|s| s.name.as_str())
            .collect();
        if waiting.is_empty() {
            (200, "text/plain", "ready\n".into())
        } else {
            (
                503,
                "text/plain",
                format!("not up: {}\n", waiting.join(", ")),
            )
        }
    } else {
        (
            200,
            "text/plain; version=0.0.4; charset=utf-8",
            render(&statuses),
        )
    }
}

const STATES: [TunnelState; 5] = [
    TunnelState::Connecting,
    TunnelState::Up,
    TunnelState::Degraded,
    TunnelState::Backoff,
    TunnelState::Stopped,
];

/// The Prometheus text exposition of `statuses`.
pub fn render(statuses: &[TunnelStatus]) -> String {
    let mut out = String::new();
    let mut family =
        |name: &str, kind: &str, help: &str, samples: &mut dyn Iterator<Item = String>| {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            for s in samples {
                let _ = writeln!(out, "{name}{s}");
            }
        };
    let t = |s: &TunnelStatus| format!("tunnel=\"{}\"", escape(&s.name));
    family(
        "tunneld_tunnel_up",
        "gauge",
        "1 while the tunnel's session is up (state up or degraded).",
        &mut statuses.iter().map(|s| {
            let up = matches!(s.state, TunnelState::Up | TunnelState::Degraded);
            format!("{{{}}} {}", t(s), u8::from(up))
        }),
    );
    family(
        "tunneld_tunnel_state",
        "gauge",
        "1 for the state the tunnel is in, 0 for the others.",
        &mut statuses.iter().flat_map(|s| {
            STATES.iter().map(move |st| {
                format!(
                    "{{{},state=\"{}\"}} {}",
                    t(s),
                    st.as_str(),
                    u8::from(*st == s.state)
                )
            })
        }),
    );
    family(
        "tunneld_tunnel_reconnects_total",
        "counter",
        "Sessions lost and re-established since the daemon started.",
        &mut statuses
            .iter()
            .map(|s| format!("{{{}}} {}", t(s), s.reconnects)),
    );
    family(
        "tunneld_tunnel_last_connect_timestamp_seconds",
        "gauge",
        "When a session last came up (Unix time); absent before the first.",
        &mut statuses.iter().filter_map(|s| {
            let at = s
                .last_connect?
                .duration_since(SystemTime::UNIX_EPOCH)
                .ok()?;
            Some(format!("{{{}}} {:.3}", t(s), at.as_secs_f64()))
        }),
    );
    family(
        "tunneld_tunnel_heartbeat_rtt_seconds",
        "gauge",
        "Round trip of the last answered heartbeat; absent until one is.",
        &mut statuses.iter().filter_map(|s| {
            let us = s.heartbeat_rtt_us.load(Ordering::Relaxed);
            (us > 0).then(|| format!("{{{}}} {:.6}", t(s), us as f64 / 1e6))
        }),
    );
    let forwards = || {
        statuses.iter().flat_map(move |s| {
            s.forwards.iter().map(move |f| {
                (
                    format!(
                        "{},forward=\"{}\",kind=\"{}\"",
                        t(s),
                        escape(&f.spec),
                        f.kind.as_str()
                    ),
                    f,
                )
            })
        })
    };
    for (name, kind, help, pick) in [
        (
            "tunneld_forward_bytes_in_total",
            "counter",
            "Bytes from the SSH channel towards the local side.",
            (|c| c.bytes_in.load(Ordering::Relaxed)) as fn(&ForwardCounters) -> u64,
        ),
        (
            "tunneld_forward_bytes_out_total",
            "counter",
            "Bytes from the local side into the SSH channel.",
            |c| c.bytes_out.load(Ordering::Relaxed),
        ),
        (
            "tunneld_forward_connections_active",
            "gauge",
            "Connections open through the forward now.",
            |c| c.active.load(Ordering::Relaxed),
        ),
        (
            "tunneld_forward_connections_total",
            "counter",
            "Connections carried through the forward since the daemon started.",
            |c| c.total.load(Ordering::Relaxed),
        ),
        (
            "tunneld_forward_connections_refused_total",
            "counter",
            "Connections closed at once because the forward carried max_connections.",
            |c| c.refused.load(Ordering::Relaxed),
        ),
    ] {
        family(
            name,
            kind,
            help,
            &mut forwards().map(|(labels, f)| format!("{{{labels}}} {}", pick(&f.counters))),
        );
    }
    family(
        "tunneld_forward_active",
        "gauge",
        "1 while the forward listens (local, dynamic) or is granted by the server (remote).",
        &mut forwards().map(|(labels, f)| {
            let active = f.state == ForwardState::Active;
            format!("{{{labels}}} {}", u8::from(active))
        }),
    );
    family(
        "tunneld_forward_listen_info",
        "gauge",
        "1 for each address an active forward has bound (a remote forward: what the server bound, with the port it chose for port 0).",
        &mut forwards().flat_map(|(labels, f)| {
            f.listen
                .iter()
                .flatten()
                .map(move |at| format!("{{{labels},listen=\"{}\"}} 1", escape(at)))
        }),
    );
    out
}

/// A label value escaped as the text format wants.
fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
