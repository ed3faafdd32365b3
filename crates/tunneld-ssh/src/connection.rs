//! The connection layer (RFC 4254 and OpenSSH's PROTOCOL extensions): the channel table,
//! global requests and their replies in order, channels the server opens for our remote
//! listeners, and the per-channel work the driver does (window adjusts, framing data,
//! EOF and CLOSE).
//!
//! Handling a message never waits on anyone: data is appended to its channel (the window
//! bounds it), replies go to an outbox the driver sends right after.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use bytes::Buf;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, trace, warn};

use crate::channel::{Channel, ChannelShared, Phase, SessionShared};
use crate::error::WireError;
use crate::msg;
use crate::transport::{Transport, TransportError};
use crate::wire::{Reader, Writer};

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
/// Host keys accepted in one hostkeys-00@openssh.com announcement.
const MAX_ANNOUNCED_HOST_KEYS: usize = 64;
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

/// A channel the server opened towards us.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Forwarded {
    /// `forwarded-tcpip` (RFC 4254 §7.2): a connection to one of our remote listeners.
    Tcpip {
        /// The listener's address as the server reports it.
        address: String,
        /// The listener's port.
        port: u32,
        /// Who connected.
        originator: String,
        /// Their port.
        originator_port: u32,
    },
    /// `forwarded-streamlocal@openssh.com`: a connection to one of our remote Unix sockets.
    Streamlocal {
        /// The socket's path on the server.
        path: String,
    },
}

/// A channel the server offers: accept it to get the stream, or refuse it. Dropping it
/// refuses it.
pub struct IncomingChannel {
    /// What it is for.
    pub kind: Forwarded,
    shared: Option<Arc<ChannelShared>>,
}

impl IncomingChannel {
    /// Accepts: the server is told, and data flows.
    pub fn accept(mut self) -> Channel {
        let shared = self.shared.take().expect("accept or refuse, once");
        {
            let mut state = shared.lock();
            state.phase = Phase::Accepted;
            shared.schedule(&mut state);
        }
        Channel::new(shared)
    }

    /// Refuses with `OPEN_FAILURE` and the given reason code (see [`open_failure`]).
    pub fn refuse(mut self, reason: u32) {
        if let Some(shared) = self.shared.take() {
            refuse(&shared, reason);
        }
    }
}

fn refuse(shared: &Arc<ChannelShared>, reason: u32) {
    let mut state = shared.lock();
    state.phase = Phase::Refused;
    state.remote_window = reason;
    shared.schedule(&mut state);
}

impl Drop for IncomingChannel {
    fn drop(&mut self) {
        if let Some(shared) = self.shared.take() {
            refuse(&shared, open_failure::ADMINISTRATIVELY_PROHIBITED);
        }
    }
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

/// A global request's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GlobalReply {
    /// REQUEST_SUCCESS with what followed the message number.
    Success(Vec<u8>),
    /// REQUEST_FAILURE.
    Failure,
}

/// A pending open of ours.
pub(crate) type OpenReply = oneshot::Sender<Result<Channel, OpenError>>;
/// A pending global request of ours.
pub(crate) type GlobalWaiter = Option<oneshot::Sender<Result<GlobalReply, Arc<str>>>>;

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
    /// Keys of the last hostkeys-00@openssh.com announcement.
    pub(crate) announced_host_keys: Option<Vec<Vec<u8>>>,
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
            announced_host_keys: None,
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

    /// Sends a global request; `reply` (when the request wants one) gets the answer.
    pub(crate) fn global(
        &mut self,
        name: &str,
        body: &[u8],
        reply: GlobalWaiter,
        t: &mut Transport,
    ) -> Result<(), TransportError> {
        trace!(request = name, "global request");
        let mut w = Writer::message(msg::GLOBAL_REQUEST);
        w.string(name.as_bytes()).bool(reply.is_some()).raw(body);
        if reply.is_some() {
            self.globals.push_back(reply);
        }
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
            msg::CHANNEL_WINDOW_ADJUST => {
                let id = r.u32()?;
                let bytes = r.u32()?;
                r.finish()?;
                let entry = self.open_entry(id)?;
                let mut state = entry.shared.lock();
                state.remote_window = state.remote_window.checked_add(bytes).ok_or_else(|| {
                    Handled::Protocol(format!("channel {id}: window adjust overflows"))
                })?;
                if !state.send.is_empty() || state.send_eof || state.dropped {
                    entry.shared.schedule(&mut state);
                }
                Ok(())
            }
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
            msg::GLOBAL_REQUEST => {
                let name = r.string()?;
                let want_reply = r.bool()?;
                if name == b"hostkeys-00@openssh.com" {
                    let mut keys = Vec::new();
                    while !r.is_empty() {
                        if keys.len() == MAX_ANNOUNCED_HOST_KEYS {
                            return Err(Handled::Protocol("too many announced host keys".into()));
                        }
                        keys.push(r.string()?.to_vec());
                    }
                    self.announced_host_keys = Some(keys);
                }
                if want_reply {
                    self.outbox.push(vec![msg::REQUEST_FAILURE]);
                }
                Ok(())
            }
            msg::REQUEST_SUCCESS | msg::REQUEST_FAILURE => {
                let Some(waiter) = self.globals.pop_front() else {
                    return Err(Handled::Protocol("a reply to no global request".into()));
                };
                let reply = if number == msg::REQUEST_SUCCESS {
                    GlobalReply::Success(r.rest().to_vec())
                } else {
                    GlobalReply::Failure
                };
                if let Some(w) = waiter {
                    let _ = w.send(Ok(reply));
                }
                Ok(())
            }
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

    fn data(&mut self, id: u32, data: &[u8], extended: bool) -> Result<(), Handled> {
        self.buffers_used = true;
        let entry = self.open_entry(id)?;
        let mut state = entry.shared.lock();
        let len = u32::try_from(data.len()).unwrap_or(u32::MAX);
        if len > state.local_window {
            return Err(Handled::Protocol(format!(
                "channel {id}: {len} bytes of data with {} bytes of window left",
                state.local_window
            )));
        }
        state.local_window -= len;
        if extended || state.dropped || state.recv_eof || state.close_sent {
            // Nobody reads it: consumed at once, so the window never closes on it.
            state.consumed = state.consumed.saturating_add(len);
            if state.adjust_due() {
                entry.shared.schedule(&mut state);
            }
            return Ok(());
        }
        state.recv.extend_from_slice(data);
        if let Some(w) = state.reader.take() {
            w.wake();
        }
        Ok(())
    }

    fn server_open(&mut self, r: &mut Reader<'_>) -> Result<(), Handled> {
        let kind = r.string()?.to_vec();
        let remote_id = r.u32()?;
        let window = r.u32()?;
        let max_packet = r.u32()?;
        let forwarded = match kind.as_slice() {
            b"forwarded-tcpip" => {
                let address = printable(r.string()?);
                let port = r.u32()?;
                let originator = printable(r.string()?);
                let originator_port = r.u32()?;
                Some(Forwarded::Tcpip {
                    address,
                    port,
                    originator,
                    originator_port,
                })
            }
            b"forwarded-streamlocal@openssh.com" => {
                let path = printable(r.string()?);
                Some(Forwarded::Streamlocal { path })
            }
            _ => None,
        };
        let refuse_now = |conn: &mut Connection, reason: u32, text: &str| {
            let mut w = Writer::message(msg::CHANNEL_OPEN_FAILURE);
            w.u32(remote_id)
                .u32(reason)
                .string(text.as_bytes())
                .string(b"");
            conn.outbox.push(w.into_vec());
        };
        let Some(forwarded) = forwarded else {
            self.unrequested += 1;
            if self.unrequested == 1 {
                warn!(
                    kind = %String::from_utf8_lossy(&kind),
                    "server opened a channel of a kind we never ask for; refused"
                );
            }
            refuse_now(
                self,
                open_failure::ADMINISTRATIVELY_PROHIBITED,
                "channel type not accepted",
            );
            return Ok(());
        };
        if max_packet < MIN_REMOTE_MAX_PACKET_BYTES || self.offered >= self.config.max_offered {
            refuse_now(self, open_failure::RESOURCE_SHORTAGE, "too many channels");
            return Ok(());
        }
        let Some(shared) = self.allocate(Phase::Offered) else {
            refuse_now(self, open_failure::RESOURCE_SHORTAGE, "too many channels");
            return Ok(());
        };
        {
            let mut state = shared.lock();
            state.remote_id = remote_id;
            state.remote_window = window;
            state.remote_max_packet = max_packet.min(self.config.max_packet_bytes);
        }
        self.offered += 1;
        let offer = IncomingChannel {
            kind: forwarded,
            shared: Some(Arc::clone(&shared)),
        };
        if let Err(e) = self.incoming.try_send(offer) {
            // Nobody listens, or too many wait: the offer's drop refuses it.
            drop(e);
        }
        Ok(())
    }

    /// Does what a channel asked for: accept/refuse answers, window adjusts, EOF and
    /// CLOSE, and queues its data for [`Connection::pump`].
    pub(crate) fn service(&mut self, id: u32, t: &mut Transport) -> Result<(), TransportError> {
        let Some(entry) = self.channels.get(&id) else {
            return Ok(());
        };
        let shared = Arc::clone(&entry.shared);
        let mut state = shared.lock();
        ChannelShared::unschedule(&mut state);
        match state.phase {
            Phase::Accepted => {
                self.offered = self.offered.saturating_sub(1);
                state.phase = Phase::Open;
                let mut w = Writer::message(msg::CHANNEL_OPEN_CONFIRMATION);
                w.u32(state.remote_id)
                    .u32(id)
                    .u32(self.config.window_bytes)
                    .u32(self.config.max_packet_bytes);
                t.send(w.as_slice())?;
            }
            Phase::Refused => {
                self.offered = self.offered.saturating_sub(1);
                let mut w = Writer::message(msg::CHANNEL_OPEN_FAILURE);
                // The refusal's reason code was left in remote_window.
                w.u32(state.remote_id)
                    .u32(state.remote_window)
                    .string(b"refused")
                    .string(b"");
                t.send(w.as_slice())?;
                drop(state);
                self.channels.remove(&id);
                return Ok(());
            }
            Phase::Opening | Phase::Offered => return Ok(()),
            Phase::Open => {}
        }
        if state.adjust_due() {
            let mut w = Writer::message(msg::CHANNEL_WINDOW_ADJUST);
            w.u32(state.remote_id).u32(state.consumed);
            t.send(w.as_slice())?;
            state.local_window = state.local_window.saturating_add(state.consumed);
            state.consumed = 0;
        }
        if !state.send.is_empty() && state.remote_window > 0 && !state.close_sent {
            if !self.sendable.contains(&id) {
                self.sendable.push_back(id);
            }
            return Ok(());
        }
        self.finish(id, &mut state, t)?;
        let both_closed = state.close_sent && state.close_received;
        drop(state);
        if both_closed {
            self.channels.remove(&id);
        }
        Ok(())
    }

    /// EOF and CLOSE once the channel's data is out.
    fn finish(
        &mut self,
        id: u32,
        state: &mut crate::channel::ChannelState,
        t: &mut Transport,
    ) -> Result<(), TransportError> {
        let drained = state.send.is_empty() || state.close_received;
        if drained && (state.send_eof || state.dropped) && !state.eof_sent && !state.close_sent {
            if !state.close_received {
                let mut w = Writer::message(msg::CHANNEL_EOF);
                w.u32(state.remote_id);
                t.send(w.as_slice())?;
            }
            state.eof_sent = true;
            state.wake_all();
        }
        let close = (drained && state.dropped) || state.close_received;
        if close && !state.close_sent {
            let mut w = Writer::message(msg::CHANNEL_CLOSE);
            w.u32(state.remote_id);
            t.send(w.as_slice())?;
            state.close_sent = true;
            state.wake_all();
            debug!(channel = id, "channel closed");
        }
        Ok(())
    }

    /// Frames queued channel data while the output has room, taking turns between
    /// channels, each within the server's window for it.
    pub(crate) fn pump(
        &mut self,
        t: &mut Transport,
        output_high_water: usize,
    ) -> Result<(), TransportError> {
        while t.output_len() < output_high_water && t.can_send_data() {
            let Some(id) = self.sendable.pop_front() else {
                break;
            };
            let Some(entry) = self.channels.get(&id) else {
                continue;
            };
            let shared = Arc::clone(&entry.shared);
            let mut state = shared.lock();
            if state.close_sent || state.close_received {
                continue;
            }
            let n = state
                .send
                .len()
                .min(state.remote_window as usize)
                .min(state.remote_max_packet as usize);
            if n > 0 {
                self.buffers_used = true;
                t.send_channel_data(state.remote_id, &state.send[..n]);
                state.send.advance(n);
                state.remote_window -= n as u32;
                if let Some(w) = state.writer.take() {
                    w.wake();
                }
            }
            if !state.send.is_empty() && state.remote_window > 0 {
                self.sendable.push_back(id);
            } else {
                shared.schedule(&mut state);
            }
        }
        Ok(())
    }

    /// Whether channels may hold buffers that [`Connection::release_buffers`] would give
    /// back.
    pub(crate) fn holds_buffers(&self) -> bool {
        self.buffers_used
    }

    /// Gives back the buffers of channels that hold no data: a quiet session keeps
    /// nothing for its channels. Never during a transfer, where a buffer empties after
    /// every read and regrowing it each time costs more than the data's encryption.
    pub(crate) fn release_buffers(&mut self) {
        let mut kept = false;
        for entry in self.channels.values() {
            let mut state = entry.shared.lock();
            if state.recv.is_empty() {
                state.recv = bytes::BytesMut::new();
            } else {
                kept = true;
            }
            if state.send.is_empty() {
                state.send = bytes::BytesMut::new();
            } else {
                kept = true;
            }
        }
        self.buffers_used = kept;
    }

    /// Whether channel data waits for room in the output.
    pub(crate) fn has_sendable(&self) -> bool {
        !self.sendable.is_empty()
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
