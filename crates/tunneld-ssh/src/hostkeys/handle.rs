//! The session's side of host key rotation: waiting for the server's announcement and
//! asking it for proofs, without keeping the session alive.

use std::sync::Arc;

use ssh_key::PublicKey;
use tokio::sync::{mpsc, oneshot, watch};

use super::{PROVE_REQUEST, ProofError, Proven, prove_request, verify_proofs};
use crate::connection::GlobalReply;
use crate::driver::Command;

/// A session's host key announcement and the means to ask for proofs. Holding it does
/// not keep the session open.
pub struct Announcement {
    pub(crate) announced: watch::Receiver<Option<Vec<Vec<u8>>>>,
    pub(crate) commands: mpsc::WeakUnboundedSender<Command>,
    pub(crate) session_id: Arc<[u8]>,
    /// The session's host key algorithm, which fixes the algorithm of RSA proofs.
    pub(crate) host_key_algorithm: String,
}

/// Why the keys were not proven.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ProveError {
    /// The server answered REQUEST_FAILURE.
    #[error("the server refused to prove it holds the keys")]
    Refused,
    /// The session ended first.
    #[error("the session ended: {0}")]
    SessionClosed(Arc<str>),
    /// The proofs do not hold.
    #[error(transparent)]
    Proof(#[from] ProofError),
}

impl Announcement {
    /// The key blobs the server announced (`hostkeys-00@openssh.com`), once it has; `None`
    /// if the session ends first (servers other than OpenSSH's never announce).
    pub async fn recv(&mut self) -> Option<Vec<Vec<u8>>> {
        match self.announced.wait_for(Option::is_some).await {
            Ok(keys) => keys.clone(),
            Err(_) => None,
        }
    }

    /// Asks the server to prove it holds `keys` (`hostkeys-prove-00@openssh.com`) and
    /// checks each proof over this session. The caller bounds the wait.
    ///
    /// # Errors
    /// The server's refusal, the session's end, or proofs that do not hold: then no key
    /// is proven.
    pub async fn prove(&self, keys: &[PublicKey]) -> Result<Proven, ProveError> {
        let closed = || ProveError::SessionClosed(Arc::from("the session ended"));
        let commands = self.commands.upgrade().ok_or_else(closed)?;
        let (tx, rx) = oneshot::channel();
        commands
            .send(Command::Global {
                name: PROVE_REQUEST,
                body: prove_request(keys),
                reply: Some(tx),
            })
            .map_err(|_| closed())?;
        drop(commands);
        let reply = match rx.await {
            Ok(Ok(reply)) => reply,
            Ok(Err(why)) => return Err(ProveError::SessionClosed(why)),
            Err(_) => return Err(closed()),
        };
        match reply {
            GlobalReply::Failure => Err(ProveError::Refused),
            GlobalReply::Success(body) => Ok(verify_proofs(
                &body,
                keys,
                &self.session_id,
                &self.host_key_algorithm,
            )?),
        }
    }
}
