//! The control socket: a Unix stream socket (mode 0600, or 0660 with `socket_group`)
//! speaking one JSON request and one JSON response per connection.
//!
//! Request: `{"version": 1, "command": "status" | "reload"}`.
//! Response: `{"version": 1, "ok": true, "status": {...}}`,
//! `{"version": 1, "ok": true, "reload": {"summary": "...", "added": [...], ...}}`, or
//! `{"version": 1, "ok": false, "errors": ["..."]}`.

use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, warn};

// The request parser lives in the core crate, where it is fuzzed on its own.
pub use tunneld_core::control_request::{Command, PROTOCOL_VERSION, parse_request};

/// Largest request accepted; anything longer is refused unread.
const MAX_REQUEST_BYTES: u64 = 64 * 1024;
/// Input swallowed after answering a bad request, so the client can read the answer.
const DRAIN_BYTES: u64 = 1 << 20;
/// A client has this long to send its request, and the daemon this long to answer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// A reload may take a while (stopping tunnels); the client waits this long.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(30);

/// A request handed to the daemon's loop, with where to send the response.
pub struct Request {
    pub command: Command,
    pub reply: oneshot::Sender<Value>,
}

/// A bound control socket; the file is removed on drop.
pub struct ControlSocket {
    listener: UnixListener,
    path: PathBuf,
    group: Option<u32>,
}

impl Drop for ControlSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Resolves a group name to its gid.
fn group_id(name: &str) -> anyhow::Result<u32> {
    let c = std::ffi::CString::new(name).context("group name contains a NUL byte")?;
    // SAFETY: getgrnam reads the group database; the pointer is used before any other call.
    let gr = unsafe { libc::getgrnam(c.as_ptr()) };
    if gr.is_null() {
        bail!("socket_group \"{name}\" does not exist");
    }
    // SAFETY: non-null result of getgrnam.
    Ok(unsafe { (*gr).gr_gid })
}

impl ControlSocket {
    /// Binds the socket at `path`: a stale socket from a crashed daemon is replaced, a
    /// live one (another daemon) is an error, and so is any other file.
    ///
    /// # Errors
    /// Naming the path and what to do.
    pub async fn bind(path: &Path, group: Option<&str>) -> anyhow::Result<ControlSocket> {
        let gid = group.map(group_id).transpose()?;
        if let Ok(meta) = std::fs::symlink_metadata(path) {
            if !meta.file_type().is_socket() {
                bail!(
                    "{} exists and is not a socket; remove it or set [daemon] socket",
                    path.display()
                );
            }
            if UnixStream::connect(path).await.is_ok() {
                bail!("another tunneld is already listening on {}", path.display());
            }
            std::fs::remove_file(path)
                .with_context(|| format!("cannot remove stale socket {}", path.display()))?;
        }
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        // Mode and group are set before the socket appears at `path` (see safe_fs).
        let mode = if gid.is_some() { 0o660 } else { 0o600 };
        let listener = tunneld_core::safe_fs::bind_unix(path, mode, gid)
            .and_then(|l| {
                l.set_nonblocking(true)?;
                UnixListener::from_std(l)
            })
            .with_context(|| format!("cannot listen on {}", path.display()))?;
        Ok(ControlSocket {
            listener,
            path: path.to_path_buf(),
            group: gid,
        })
    }

    /// Accepts clients until the task is dropped, forwarding their requests to `daemon`.
    pub async fn serve(self, daemon: mpsc::Sender<Request>) {
        loop {
            let stream = match self.listener.accept().await {
                Ok((s, _)) => s,
                Err(e) => {
                    warn!(error = %e, "control socket: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let (daemon, group) = (daemon.clone(), self.group);
            tokio::spawn(async move {
                if let Err(e) = handle(stream, daemon, group).await {
                    debug!(error = %e, "control socket: client dropped");
                }
            });
        }
    }
}

/// May this peer talk to us? Our own user and root always; with `socket_group`, members
/// of that group too (the socket's mode already says so; this checks it again).
fn allowed(stream: &UnixStream, group: Option<u32>) -> bool {
    let Ok(cred) = stream.peer_cred() else {
        return false;
    };
    // SAFETY: geteuid cannot fail.
    let me = unsafe { libc::geteuid() };
    if cred.uid() == me || cred.uid() == 0 {
        return true;
    }
    let Some(gid) = group else { return false };
    if cred.gid() == gid {
        return true;
    }
    // Supplementary groups of the peer process.
    cred.pid()
        .and_then(|pid| std::fs::read_to_string(format!("/proc/{pid}/status")).ok())
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("Groups:")
                    .map(|g| g.split_whitespace().any(|x| x == gid.to_string()))
            })
        })
        .unwrap_or(false)
}

fn error_response(errors: Vec<String>) -> Value {
    json!({"version": PROTOCOL_VERSION, "ok": false, "errors": errors})
}

async fn handle(
    stream: UnixStream,
    daemon: mpsc::Sender<Request>,
    group: Option<u32>,
) -> anyhow::Result<()> {
    let permitted = allowed(&stream, group);
    let uid = stream.peer_cred().ok().map(|c| c.uid());
    let (rd, mut wr) = stream.into_split();
    let mut line = String::new();
    let mut limited = BufReader::new(rd.take(MAX_REQUEST_BYTES));
    // Read the request first, even from a peer we refuse, so that it reads our answer
    // rather than a broken pipe.
    let read = tokio::time::timeout(REQUEST_TIMEOUT, limited.read_line(&mut line)).await;
    let response = match read {
        _ if !permitted => {
            warn!(uid = ?uid, "control socket: refused a client of another user");
            error_response(vec![
                "permission denied: not tunneld's user or socket_group".into(),
            ])
        }
        Err(_) => error_response(vec!["request timed out".into()]),
        Ok(Err(e)) => error_response(vec![format!("cannot read request: {e}")]),
        Ok(Ok(_)) if !line.ends_with('\n') => error_response(vec![format!(
            "request too long or not newline-terminated (limit {MAX_REQUEST_BYTES} bytes)"
        )]),
        Ok(Ok(_)) => match parse_request(&line) {
            Err(e) => error_response(vec![e]),
            Ok(command) => {
                let (reply, rx) = oneshot::channel();
                if daemon.send(Request { command, reply }).await.is_err() {
                    error_response(vec!["daemon is shutting down".into()])
                } else {
                    rx.await
                        .unwrap_or_else(|_| error_response(vec!["daemon is shutting down".into()]))
                }
            }
        },
    };
    wr.write_all(format!("{response}\n").as_bytes()).await?;
    wr.shutdown().await?;
    // Closing with unread input would reset the connection before the client reads the
    // answer: swallow what is left of an oversized request, bounded in size and time.
    let mut rest = limited.into_inner().into_inner().take(DRAIN_BYTES);
    let _ = tokio::time::timeout(
        REQUEST_TIMEOUT,
        tokio::io::copy(&mut rest, &mut tokio::io::sink()),
    )
    .await;
    Ok(())
}

/// Why a client call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nothing answers at the socket.
    #[error(
        "no tunneld answers at {path}: {source} (is the daemon running? is this its [daemon] socket?)"
    )]
    Unreachable {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The daemon answered something we cannot read, or too late.
    #[error("{0}")]
    Protocol(String),
}

/// The request line a client sends for `command`, newline included.
fn request_line(command: Command) -> String {
    let name = match command {
        Command::Status => "status",
        Command::Reload => "reload",
    };
    format!(
        "{}\n",
        json!({"version": PROTOCOL_VERSION, "command": name})
    )
}

/// Sends one command and returns the daemon's response.
///
/// # Errors
/// [`ClientError::Unreachable`] when no daemon listens; `Protocol` otherwise.
pub async fn call(path: &Path, command: Command) -> Result<Value, ClientError> {
    let mut stream =
        UnixStream::connect(path)
            .await
            .map_err(|source| ClientError::Unreachable {
                path: path.to_path_buf(),
                source,
            })?;
    let request = request_line(command);
    let exchange = async {
        // A daemon that refuses us may answer and close before reading: read its answer
        // even if our write fails.
        let _ = stream.write_all(request.as_bytes()).await;
        let mut out = String::new();
        BufReader::new(stream)
            .take(16 << 20)
            .read_to_string(&mut out)
            .await?;
        Ok::<_, std::io::Error>(out)
    };
    let out = tokio::time::timeout(CLIENT_TIMEOUT, exchange)
        .await
        .map_err(|_| {
            ClientError::Protocol(format!(
                "no answer from {} within {CLIENT_TIMEOUT:?}",
                path.display()
            ))
        })?
        .map_err(|e| ClientError::Protocol(format!("control socket {}: {e}", path.display())))?;
    serde_json::from_str(out.trim())
        .map_err(|e| ClientError::Protocol(format!("unreadable answer from the daemon: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_parsed_strictly() {
        assert_eq!(
            parse_request(r#"{"version":1,"command":"status"}"#),
            Ok(Command::Status)
        );
        assert_eq!(
            parse_request("{\"version\":1,\"command\":\"reload\"}\n"),
            Ok(Command::Reload)
        );
        assert!(
            parse_request(r#"{"version":2,"command":"status"}"#)
                .unwrap_err()
                .contains("version 2")
        );
        assert!(
            parse_request(r#"{"command":"status"}"#)
                .unwrap_err()
                .contains("no \"version\"")
        );
        assert!(
            parse_request(r#"{"version":1,"command":"rm -rf"}"#)
                .unwrap_err()
                .contains("unknown command")
        );
        assert!(
            parse_request("not json")
                .unwrap_err()
                .starts_with("malformed request")
        );
    }

    /// What the client sends is what the daemon accepts: one line, parsed back to the
    /// command it was built from. (The parser's own properties are tested in
    /// tunneld-core, where it lives.)
    #[test]
    fn client_requests_parse_back_to_their_command() {
        for command in [Command::Status, Command::Reload] {
            let line = request_line(command);
            assert_eq!(line.matches('\n').count(), 1, "{line:?}");
            assert!(line.ends_with('\n'), "{line:?}");
            assert_eq!(parse_request(&line), Ok(command), "{line:?}");
        }
    }
}
