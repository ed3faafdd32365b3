//! Requests on the daemon's control socket: one JSON object per line,
//! `{"version": 1, "command": "status" | "reload"}`.
//!
//! Only the parsing lives here, apart from the socket, so that it can be tested and
//! fuzzed on its own; the binary's `control` module serves the socket.

use serde_json::Value;

/// The protocol version spoken on the control socket.
pub const PROTOCOL_VERSION: u64 = 1;

/// What a client asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// A status snapshot.
    Status,
    /// Re-read the configuration file.
    Reload,
}

/// Parses one request line (surrounding whitespace, such as the newline, is ignored).
/// Members other than `version` and `command` are ignored.
///
/// # Errors
/// A message for the client: malformed JSON, unknown version or command.
pub fn parse_request(line: &str) -> Result<Command, String> {
    let v: Value =
        serde_json::from_str(line.trim()).map_err(|e| format!("malformed request: {e}"))?;
    match v.get("version").and_then(Value::as_u64) {
        Some(PROTOCOL_VERSION) => {}
        Some(other) => {
            return Err(format!(
                "unsupported protocol version {other} (this daemon speaks {PROTOCOL_VERSION})"
            ));
        }
        None => return Err("request has no \"version\"".into()),
    }
    match v.get("command").and_then(Value::as_str) {
        Some("status") => Ok(Command::Status),
        Some("reload") => Ok(Command::Reload),
        Some(other) => Err(format!("unknown command \"{other}\"")),
        None => Err("request has no \"command\"".into()),
    }
}
