//! Global requests (RFC 4254 §4): ours and their replies, which come in the order the
//! requests went out, and the server's, which we refuse after noting a
//! `hostkeys-00@openssh.com` announcement (published for [`crate::Session`]).

use std::sync::Arc;

use tokio::sync::oneshot;
use tracing::{debug, trace};

use super::{Connection, Handled};
use crate::msg;
use crate::transport::{Transport, TransportError};
use crate::wire::{Reader, Writer};

/// Host keys accepted in one hostkeys-00@openssh.com announcement.
const MAX_ANNOUNCED_HOST_KEYS: usize = 64;

/// A global request's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GlobalReply {
    /// REQUEST_SUCCESS with what followed the message number.
    Success(Vec<u8>),
    /// REQUEST_FAILURE.
    Failure,
}

/// A pending global request of ours.
pub(crate) type GlobalWaiter = Option<oneshot::Sender<Result<GlobalReply, Arc<str>>>>;

impl Connection {
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

    /// GLOBAL_REQUEST from the server: a host key announcement is kept, and a request
    /// that wants a reply is refused.
    pub(super) fn global_request(&mut self, r: &mut Reader<'_>) -> Result<(), Handled> {
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
            // OpenSSH's server sends one, right after authentication; a later one is not
            // acted upon.
            let first = self.announced_host_keys.send_if_modified(|announced| {
                announced
                    .is_none()
                    .then(|| *announced = Some(keys))
                    .is_some()
            });
            if !first {
                debug!("a second host key announcement; ignored");
            }
        }
        if want_reply {
            self.outbox.push(vec![msg::REQUEST_FAILURE]);
        }
        Ok(())
    }

    /// REQUEST_SUCCESS or REQUEST_FAILURE: the answer to our oldest global request.
    pub(super) fn global_reply(&mut self, number: u8, r: &mut Reader<'_>) -> Result<(), Handled> {
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
}
