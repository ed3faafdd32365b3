//! The version exchange (RFC 4253 §4.2): the server's identification line, and the
//! lines a server may send before it.

use tracing::debug;

use super::{Transport, TransportError};

/// The longest identification line accepted from the server, CR LF included (RFC 4253 §4.2).
const MAX_VERSION_LINE_BYTES: usize = 255;
/// The longest line before the identification line (RFC 4253 §4.2 allows other lines first).
const MAX_PRE_BANNER_LINE_BYTES: usize = 1024;
/// How many lines may come before the identification line (OpenSSH's bound as well).
const MAX_PRE_BANNER_LINES: usize = 1024;

impl Transport {
    /// Reads the server's identification line; false while it is incomplete.
    pub(super) fn read_version(&mut self) -> Result<bool, TransportError> {
        loop {
            let buffered = self.incoming.buffered();
            let Some(newline) = buffered.iter().position(|&b| b == b'\n') else {
                if buffered.len() > MAX_PRE_BANNER_LINE_BYTES {
                    return Err(TransportError::Banner(
                        "a line longer than 1024 bytes".into(),
                    ));
                }
                return Ok(false);
            };
            let line = &buffered[..newline];
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.starts_with(b"SSH-") {
                if newline + 1 > MAX_VERSION_LINE_BYTES {
                    return Err(TransportError::Banner(
                        "identification line longer than 255 bytes".into(),
                    ));
                }
                let text = std::str::from_utf8(line)
                    .ok()
                    .filter(|t| t.chars().all(|c| c.is_ascii_graphic() || c == ' '))
                    .ok_or_else(|| TransportError::Banner("not printable ASCII".into()))?;
                if !(text.starts_with("SSH-2.0-") || text.starts_with("SSH-1.99-")) {
                    return Err(TransportError::Banner(format!(
                        "unsupported protocol version: {text}"
                    )));
                }
                debug!(server = text, "server identification");
                self.server_version = Some(text.to_string());
                self.incoming.consume(newline + 1);
                return Ok(true);
            }
            if newline + 1 > MAX_PRE_BANNER_LINE_BYTES {
                return Err(TransportError::Banner(
                    "a line longer than 1024 bytes".into(),
                ));
            }
            self.pre_banner_lines += 1;
            if self.pre_banner_lines > MAX_PRE_BANNER_LINES {
                return Err(TransportError::Banner(
                    "more than 1024 lines before the identification".into(),
                ));
            }
            self.incoming.consume(newline + 1);
        }
    }
}
