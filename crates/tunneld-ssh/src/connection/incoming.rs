//! Channels the server opens towards us (RFC 4254 §7.2 `forwarded-tcpip`, OpenSSH
//! PROTOCOL §2.4 `forwarded-streamlocal@openssh.com`): the offer the application accepts
//! or refuses, and the refusals of kinds we never ask for or have no room for.

use std::sync::Arc;

use tracing::warn;

use super::{Connection, Handled, MIN_REMOTE_MAX_PACKET_BYTES, open_failure, printable};
use crate::channel::{Channel, ChannelShared, Phase};
use crate::msg;
use crate::wire::{Reader, Writer};

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

impl Connection {
    pub(super) fn server_open(&mut self, r: &mut Reader<'_>) -> Result<(), Handled> {
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
}
