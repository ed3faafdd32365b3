//! The data path of open channels: channel data into a channel's buffer within its
//! window, window adjusts both ways, framing queued data within the server's window, EOF
//! and CLOSE once the data is out, and giving buffers back when the session is quiet.

use std::sync::Arc;

use bytes::Buf;
use tracing::debug;

use super::{Connection, Handled};
use crate::channel::{ChannelShared, Phase};
use crate::msg;
use crate::transport::{Transport, TransportError};
use crate::wire::{Reader, Writer};

impl Connection {
    pub(super) fn data(&mut self, id: u32, data: &[u8], extended: bool) -> Result<(), Handled> {
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

    /// CHANNEL_WINDOW_ADJUST: more room in the server's window for one of our channels.
    pub(super) fn window_adjust(&mut self, r: &mut Reader<'_>) -> Result<(), Handled> {
        let id = r.u32()?;
        let bytes = r.u32()?;
        r.finish()?;
        let entry = self.open_entry(id)?;
        let mut state = entry.shared.lock();
        state.remote_window = state
            .remote_window
            .checked_add(bytes)
            .ok_or_else(|| Handled::Protocol(format!("channel {id}: window adjust overflows")))?;
        if !state.send.is_empty() || state.send_eof || state.dropped {
            entry.shared.schedule(&mut state);
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
                crate::channel::rewind_if_empty(&mut state.send);
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
}
