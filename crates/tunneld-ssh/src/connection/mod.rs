//! The connection layer (RFC 4254 and OpenSSH's PROTOCOL extensions): the channel table,
//! global requests and their replies in order, channels the server opens for our remote
//! listeners, and the per-channel work the driver does (window adjusts, framing data,
//! EOF and CLOSE).
//!
//! Handling a message never waits on anyone: data is appended to its channel (the window
//! bounds it), replies go to an outbox the driver sends right after.
//!
//! Files: this one holds the channel table, our opens and the dispatch of each message;
//! `incoming` the channels the server opens, `global` the global requests and replies,
//! `data_path` channel data, windows, EOF, CLOSE and buffers.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, watch};
use tracing::{debug, trace};

use crate::channel::{Channel, ChannelShared, Phase, SessionShared};
use crate::error::WireError;
use crate::msg;
use crate::transport::{Transport, TransportError};
use crate::wire::{Reader, Writer};

mod data_path;
mod global;
mod incoming;

pub use global::GlobalReply;
pub(crate) use global::GlobalWaiter;
pub use incoming::{Forwarded, IncomingChannel};

/// CHANNEL_OPEN_FAILURE reason codes (RFC 4254 §5.1).
pub mod open_failure {
    /// Refused by policy.
    pub const ADMINISTRATIVELY_PROHIBITED: u32 = 1;
    /// The target could not be reached.
    pub const CONNECT_FAILED: u32 = 2;
    /// A channel type we do not know.
    pub const UNKNOWN_CHANNEL_TYPE: u32 = 3;
    /// Too many channels.
    pub const RESOURCE_SHORTAGE: u32 = 4;
}

/// Sizes and bounds of channels.
#[derive(Clone, Copy, Debug)]
pub struct ChannelConfig {
    /// The receive window of each channel: the most a channel buffers (OpenSSH: 2 MiB).
    pub window_bytes: u32,
    /// The largest data packet we take and send (OpenSSH: 32 KiB).
    pub max_packet_bytes: u32,
    /// Channels open at once, ours and the server's.
    pub max_channels: usize,
    /// Channels the server opened that the application has not taken yet.
    pub max_offered: usize,
}

impl Default for ChannelConfig {
    fn default() -> Self {
        ChannelConfig {
            window_bytes: 2 * 1024 * 1024,
            max_packet_bytes: 32 * 1024,
            max_channels: 16 * 1024,
            max_offered: 64,
        }
    }
}

/// The smallest max packet a server may announce; smaller would make us frame tiny packets.
const MIN_REMOTE_MAX_PACKET_BYTES: u32 = 512;
/// Descriptions from the server kept for errors and logs, in characters.
const MAX_DESCRIPTION_CHARS: usize = 256;

/// A channel we ask the server to open.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OpenKind {
    /// `direct-tcpip` (RFC 4254 §7.2): the server connects to `host:port`.
    DirectTcpip {
        /// Where the server connects.
        host: String,
        /// Its port.
        port: u32,
        /// Who asked, on our side.
        originator: String,
        /// Their port.
        originator_port: u32,
    },
    /// `direct-streamlocal@openssh.com`: the server connects to a Unix socket.
    DirectStreamlocal {
        /// The socket's path on the server.
        path: String,
    },
}

/// Why a channel did not open.
#[derive(Debug, Clone, thiserror::Error)]
pub enum OpenError {
    /// The server refused it.
    #[error("the server refused the channel: {description} (reason {reason})")]
    Refused {
        /// The reason code (RFC 4254 §5.1).
        reason: u32,
        /// The server's description.
        description: String,
    },
    /// The session ended first.
    #[error("the session ended: {0}")]
    SessionClosed(Arc<str>),
    /// Too many channels open.
    #[error("too many channels open")]
    TooMany,
}

/// A pending open of ours.
pub(crate) type OpenReply = oneshot::Sender<Result<Channel, OpenError>>;

struct Entry {
    shared: Arc<ChannelShared>,
    /// Our open waiting for CONFIRMATION or FAILURE.
    opening: Option<OpenReply>,
}

/// The channel table and the session's requests.
pub(crate) struct Connection {
    config: ChannelConfig,
    session: Arc<SessionShared>,
    channels: HashMap<u32, Entry>,
    next_id: u32,
    /// Offered channels not accepted or refused yet.
    offered: usize,
    /// Our global requests, oldest first: replies come in this order (RFC 4254 §4).
    globals: VecDeque<GlobalWaiter>,
    incoming: mpsc::Sender<IncomingChannel>,
    /// Replies to send once the current message is handled.
    outbox: Vec<Vec<u8>>,
    /// Channels with data waiting for room in the output or a key exchange to end.
    sendable: VecDeque<u32>,
    /// The key blobs of the server's hostkeys-00@openssh.com announcement, once it came.
    pub(crate) announced_host_keys: watch::Sender<Option<Vec<Vec<u8>>>>,
    /// Server-opened channels of kinds we never asked for, refused so far.
    pub(crate) unrequested: u64,
    /// Channel buffers were filled since the last [`Connection::release_buffers`].
    buffers_used: bool,
}

impl Connection {
    pub(crate) fn new(
        config: ChannelConfig,
        session: Arc<SessionShared>,
        incoming: mpsc::Sender<IncomingChannel>,
    ) -> Connection {
        Connection {
            config,
            session,
            channels: HashMap::new(),
            next_id: 0,
            offered: 0,
            globals: VecDeque::new(),
            incoming,
            outbox: Vec::new(),
            sendable: VecDeque::new(),
            announced_host_keys: watch::Sender::new(None),
            unrequested: 0,
            buffers_used: false,
        }
    }

    fn allocate(&mut self, phase: Phase) -> Option<Arc<ChannelShared>> {
        if self.channels.len() >= self.config.max_channels {
            return None;
        }
        while self.channels.contains_key(&self.next_id) {
            self.next_id = self.next_id.wrapping_add(1);
        }
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        let shared = ChannelShared::new(
            id,
            Arc::clone(&self.session),
            phase,
            self.config.window_bytes,
            self.config.max_packet_bytes,
        );
        self.channels.insert(
            id,
            Entry {
                shared: Arc::clone(&shared),
                opening: None,
            },
        );
        Some(shared)
    }

    /// Sends CHANNEL_OPEN; `reply` gets the channel or the refusal.
    pub(crate) fn open(
        &mut self,
        kind: &OpenKind,
        reply: OpenReply,
        t: &mut Transport,
    ) -> Result<(), TransportError> {
        let Some(shared) = self.allocate(Phase::Opening) else {
            let _ = reply.send(Err(OpenError::TooMany));
            return Ok(());
        };
        let mut w = Writer::message(msg::CHANNEL_OPEN);
        match kind {
            OpenKind::DirectTcpip { .. } => w.string(b"direct-tcpip"),
            OpenKind::DirectStreamlocal { .. } => w.string(b"direct-streamlocal@openssh.com"),
        };
        w.u32(shared.id)
            .u32(self.config.window_bytes)
            .u32(self.config.max_packet_bytes);
        match kind {
            OpenKind::DirectTcpip {
                host,
                port,
                originator,
                originator_port,
            } => {
                w.string(host.as_bytes())
                    .u32(*port)
                    .string(originator.as_bytes())
                    .u32(*originator_port);
            }
            OpenKind::DirectStreamlocal { path } => {
                // Then a reserved string and uint32 (OpenSSH PROTOCOL §2.4).
                w.string(path.as_bytes()).string(b"").u32(0);
            }
        }
        if let Some(entry) = self.channels.get_mut(&shared.id) {
            entry.opening = Some(reply);
        }
        trace!(channel = shared.id, ?kind, "opening a channel");
        self.outbox.push(w.into_vec());
        self.flush(t)
    }

    /// Sends what handling messages produced.
    pub(crate) fn flush(&mut self, t: &mut Transport) -> Result<(), TransportError> {
        for payload in self.outbox.drain(..) {
            t.send(&payload)?;
        }
        Ok(())
    }

    /// Handles one message of the connection layer.
    ///
    /// # Errors
    /// A malformed message or a protocol violation: the session cannot go on.
    pub(crate) fn handle(&mut self, payload: &[u8]) -> Result<(), TransportError> {
        let Some(&number) = payload.first() else {
            return Err(TransportError::Protocol("empty message".into()));
        };
        let what = message_name(number);
        let mut r = Reader::new(&payload[1..]);
        self.dispatch(number, &mut r).map_err(|e| match e {
            Handled::Wire(source) => TransportError::Malformed { what, source },
            Handled::Protocol(text) => TransportError::Protocol(text),
        })
    }

    fn dispatch(&mut self, number: u8, r: &mut Reader<'_>) -> Result<(), Handled> {
        if number != msg::CHANNEL_DATA && number != msg::CHANNEL_WINDOW_ADJUST {
            trace!(message = message_name(number), "connection message");
        }
        match number {
            msg::CHANNEL_DATA => {
                let id = r.u32()?;
                let data = r.string()?;
                r.finish()?;
                self.data(id, data, false)
            }
            msg::CHANNEL_EXTENDED_DATA => {
                let id = r.u32()?;
                let _code = r.u32()?;
                let data = r.string()?;
                r.finish()?;
                self.data(id, data, true)
            }
            msg::CHANNEL_WINDOW_ADJUST => self.window_adjust(r),
            msg::CHANNEL_EOF => {
                let id = r.u32()?;
                r.finish()?;
                let entry = self.open_entry(id)?;
                let mut state = entry.shared.lock();
                state.recv_eof = true;
                state.wake_all();
                Ok(())
            }
            msg::CHANNEL_CLOSE => {
                let id = r.u32()?;
                r.finish()?;
                let entry = self.open_entry(id)?;
                let mut state = entry.shared.lock();
                if state.close_received {
                    return Err(Handled::Protocol(format!("channel {id}: a second CLOSE")));
                }
                state.close_received = true;
                state.send.clear();
                state.wake_all();
                entry.shared.schedule(&mut state);
                Ok(())
            }
            msg::CHANNEL_REQUEST => {
                let id = r.u32()?;
                let kind = r.string()?;
                let want_reply = r.bool()?;
                let entry = self.open_entry(id)?;
                let remote = entry.shared.lock().remote_id;
                debug!(
                    channel = id,
                    request = %String::from_utf8_lossy(kind),
                    "channel request refused"
                );
                if want_reply {
                    let mut w = Writer::message(msg::CHANNEL_FAILURE);
                    w.u32(remote);
                    self.outbox.push(w.into_vec());
                }
                Ok(())
            }
            msg::CHANNEL_SUCCESS | msg::CHANNEL_FAILURE => {
                // We send no channel requests; an answer to none is ignored.
                let _ = r.u32()?;
                Ok(())
            }
            msg::CHANNEL_OPEN_CONFIRMATION => {
                let id = r.u32()?;
                let remote_id = r.u32()?;
                let window = r.u32()?;
                let max_packet = r.u32()?;
                let entry = self.channels.get_mut(&id).filter(|e| e.opening.is_some());
                let Some(entry) = entry else {
                    return Err(Handled::Protocol(format!(
                        "confirmation for channel {id}, which we are not opening"
                    )));
                };
                if max_packet < MIN_REMOTE_MAX_PACKET_BYTES {
                    return Err(Handled::Protocol(format!(
                        "channel {id}: maximum packet of {max_packet} bytes"
                    )));
                }
                {
                    let mut state = entry.shared.lock();
                    state.phase = Phase::Open;
                    state.remote_id = remote_id;
                    state.remote_window = window;
                    state.remote_max_packet = max_packet.min(self.config.max_packet_bytes);
                }
                let shared = Arc::clone(&entry.shared);
                if let Some(reply) = entry.opening.take()
                    && let Err(Ok(channel)) = reply.send(Ok(Channel::new(shared)))
                {
                    // The opener stopped waiting: the channel closes by itself.
                    drop(channel);
                }
                Ok(())
            }
            msg::CHANNEL_OPEN_FAILURE => {
                let id = r.u32()?;
                let reason = r.u32()?;
                let description = r.string()?;
                let entry = self.channels.get(&id).filter(|e| e.opening.is_some());
                if entry.is_none() {
                    return Err(Handled::Protocol(format!(
                        "open failure for channel {id}, which we are not opening"
                    )));
                }
                if let Some(reply) = self.channels.remove(&id).and_then(|mut e| e.opening.take()) {
                    let _ = reply.send(Err(OpenError::Refused {
                        reason,
                        description: printable(description),
                    }));
                }
                Ok(())
            }
            msg::CHANNEL_OPEN => self.server_open(r),
            msg::GLOBAL_REQUEST => self.global_request(r),
            msg::REQUEST_SUCCESS | msg::REQUEST_FAILURE => self.global_reply(number, r),
            n => Err(Handled::Protocol(format!("unexpected message {n}"))),
        }
    }

    fn open_entry(&self, id: u32) -> Result<&Entry, Handled> {
        match self.channels.get(&id) {
            Some(e) if e.shared.lock().phase == Phase::Open => Ok(e),
            _ => Err(Handled::Protocol(format!(
                "message for channel {id}, which is not open"
            ))),
        }
    }

    /// The session ended: every channel, open and request learns why.
    pub(crate) fn end(&mut self, reason: &Arc<str>) {
        for (_, mut entry) in self.channels.drain() {
            if let Some(reply) = entry.opening.take() {
                let _ = reply.send(Err(OpenError::SessionClosed(Arc::clone(reason))));
            }
            let mut state = entry.shared.lock();
            state.gone = Some(Arc::clone(reason));
            state.wake_all();
        }
        for waiter in self.globals.drain(..).flatten() {
            let _ = waiter.send(Err(Arc::clone(reason)));
        }
    }
}

/// What went wrong handling a message.
enum Handled {
    Wire(WireError),
    Protocol(String),
}

impl From<WireError> for Handled {
    fn from(e: WireError) -> Self {
        Handled::Wire(e)
    }
}

fn message_name(number: u8) -> &'static str {
    match number {
        msg::GLOBAL_REQUEST => "GLOBAL_REQUEST",
        msg::REQUEST_SUCCESS => "REQUEST_SUCCESS",
        msg::REQUEST_FAILURE => "REQUEST_FAILURE",
        msg::CHANNEL_OPEN => "CHANNEL_OPEN",
        msg::CHANNEL_OPEN_CONFIRMATION => "CHANNEL_OPEN_CONFIRMATION",
        msg::CHANNEL_OPEN_FAILURE => "CHANNEL_OPEN_FAILURE",
        msg::CHANNEL_WINDOW_ADJUST => "CHANNEL_WINDOW_ADJUST",
        msg::CHANNEL_DATA => "CHANNEL_DATA",
        msg::CHANNEL_EXTENDED_DATA => "CHANNEL_EXTENDED_DATA",
        msg::CHANNEL_EOF => "CHANNEL_EOF",
        msg::CHANNEL_CLOSE => "CHANNEL_CLOSE",
        msg::CHANNEL_REQUEST => "CHANNEL_REQUEST",
        msg::CHANNEL_SUCCESS => "CHANNEL_SUCCESS",
        msg::CHANNEL_FAILURE => "CHANNEL_FAILURE",
        _ => "connection-layer",
    }
}

/// Text from the server, cut to a bounded length and stripped of control characters.
pub(crate) fn printable(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_DESCRIPTION_CHARS)
        .collect()
}
