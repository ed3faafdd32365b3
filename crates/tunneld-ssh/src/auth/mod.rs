//! User authentication (RFC 4252) with the publickey method (RFC 4252 §7): keys read from
//! files, OpenSSH certificates (PROTOCOL.certkeys) and keys held by ssh-agent. RSA signs
//! with rsa-sha2-512 or rsa-sha2-256 (RFC 8332) as the server's `server-sig-algs`
//! (RFC 8308 §3.1) allows; never with SHA-1.
//!
//! Files: this one runs the exchange with the server; `credential` holds what we
//! authenticate with, `signing` makes the signatures, `error` says why it failed and
//! `agent` talks to ssh-agent.

// The crate-internal entry points are called by the transport, which is not in the crate yet.

pub mod agent;
mod credential;
mod error;
mod signing;
#[cfg(test)]
pub(crate) mod testkeys;

use std::future::Future;

use crate::error::LinkError;
use crate::hostkey;
use crate::msg;
use crate::wire::{Reader, Writer};

pub use agent::AgentError;
pub use credential::Credential;
pub use error::AuthError;
use signing::{SignFailure, sign, signing_algorithm};

/// The most messages authentication handles before giving up (banners included).
pub const MAX_AUTH_MESSAGES: usize = 256;
/// The most banner text we keep for the log, in bytes (the rest is dropped).
pub const MAX_BANNER_BYTES: usize = 8 * 1024;

/// The packet layer as authentication sees it (the transport implements this; tests script
/// it).
pub(crate) trait PacketLink: Send {
    /// Sends one message payload (starting with its message number).
    fn send(&mut self, payload: Vec<u8>) -> impl Future<Output = Result<(), LinkError>> + Send;
    /// The next message for the layers above the transport, in order (the transport has
    /// already handled IGNORE, DEBUG, EXT_INFO and key re-exchange).
    fn recv(&mut self) -> impl Future<Output = Result<Vec<u8>, LinkError>> + Send;
    /// The session identifier (H of the first key exchange).
    fn session_id(&self) -> &[u8];
    /// The server's `server-sig-algs` from EXT_INFO, if it sent one.
    fn server_sig_algs(&self) -> Option<Vec<String>>;
}

/// Which credential worked (its label / fingerprint), for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authenticated {
    /// The credential's description (`ED25519 SHA256:... (label)`), or `none` when the
    /// server let us in without one.
    pub credential: String,
    /// The server's banners, control characters replaced, at most [`MAX_BANNER_BYTES`].
    pub banner: String,
}

/// Requests the "ssh-userauth" service (SERVICE_REQUEST/ACCEPT), asks "none" to learn the
/// methods, then tries each credential with publickey: query first (no signature; PK_OK = 60
/// means the server would take it), then the signed request. RSA keys sign with rsa-sha2-512
/// or rsa-sha2-256 as server-sig-algs allows (rsa-sha2-512 when the server sent no list —
/// OpenSSH 7.2+ accepts it); certificates use their -cert-v01@openssh.com algorithm names.
/// Agent keys sign through the agent with the SSH_AGENT_RSA_SHA2_256/512 flags.
/// USERAUTH_BANNER (53) messages are skipped (kept, bounded, for the log). Bounded: at most
/// [`MAX_AUTH_MESSAGES`] messages handled before giving up.
///
/// # Errors
/// What the server offered and what was tried: e.g. "the server refused every key (tried:
/// ED25519 SHA256:..., ...); it accepts: publickey,password", partial success said, no
/// publickey method offered; agent failures are listed with the key they hit.
pub(crate) async fn authenticate<L: PacketLink>(
    link: &mut L,
    user: &str,
    credentials: &[Credential],
) -> Result<Authenticated, AuthError> {
    let mut io = Io {
        link,
        handled: 0,
        banner: String::new(),
    };

    let mut w = Writer::message(msg::SERVICE_REQUEST);
    w.string(b"ssh-userauth");
    io.link.send(w.into_vec()).await?;
    let message = io.next().await?;
    let mut r = Reader::new(&message);
    match r.u8()? {
        msg::SERVICE_ACCEPT => {
            let service = r.string()?;
            r.finish()?;
            if service != b"ssh-userauth" {
                return Err(AuthError::WrongService(hostkey::printable(
                    &String::from_utf8_lossy(service),
                )));
            }
        }
        got => {
            return Err(AuthError::Unexpected {
                got,
                waiting: "SERVICE_ACCEPT",
            });
        }
    }

    let mut w = Writer::message(msg::USERAUTH_REQUEST);
    w.string(user.as_bytes())
        .string(b"ssh-connection")
        .string(b"none");
    io.link.send(w.into_vec()).await?;
    let mut methods = match io.reply("USERAUTH_FAILURE after none").await? {
        Reply::Success => return Ok(io.done("none".to_owned())),
        Reply::Failure { methods, .. } => methods,
        Reply::PkOk(_) => {
            return Err(AuthError::Unexpected {
                got: msg::USERAUTH_PK_OK,
                waiting: "USERAUTH_FAILURE after none",
            });
        }
    };
    tracing::debug!(methods = %methods.join(","), "the server's authentication methods");
    if !offers_publickey(&methods) {
        return Err(AuthError::NoPublickey(methods.join(",")));
    }
    if credentials.is_empty() {
        return Err(AuthError::NoCredentials(methods.join(",")));
    }

    let sig_algs = io.link.server_sig_algs();
    let mut tried: Vec<String> = Vec::new();
    let mut accepted_before: Option<String> = None;
    for cred in credentials {
        if !offers_publickey(&methods) {
            break;
        }
        let described = cred.describe();
        let Some((kind, certificate)) = cred.kind() else {
            tried.push(format!("{described}: not a key type we can use"));
            continue;
        };
        let Some((algorithm, flags)) = signing_algorithm(kind, certificate, sig_algs.as_deref())
        else {
            tried.push(format!(
                "{described}: the server takes no rsa-sha2 signatures"
            ));
            continue;
        };
        let blob = cred.blob()?;
        tracing::debug!(key = %described, algorithm, "offering a key");

        // The query: would the server take this key?
        let mut w = Writer::message(msg::USERAUTH_REQUEST);
        w.string(user.as_bytes())
            .string(b"ssh-connection")
            .string(b"publickey")
            .bool(false)
            .string(algorithm.as_bytes())
            .string(&blob);
        io.link.send(w.into_vec()).await?;
        match io.reply("PK_OK or USERAUTH_FAILURE").await? {
            Reply::PkOk(body) => {
                let mut r = Reader::new(&body);
                let echoed_alg = r.string()?;
                let echoed_blob = r.string()?;
                r.finish()?;
                if echoed_alg != algorithm.as_bytes() || echoed_blob != blob.as_slice() {
                    return Err(AuthError::PkOkMismatch(described));
                }
            }
            Reply::Failure { methods: m, .. } => {
                methods = m;
                tried.push(described);
                continue;
            }
            Reply::Success => return Ok(io.done(described)),
        }

        // The signed request.
        let mut w = Writer::message(msg::USERAUTH_REQUEST);
        w.string(user.as_bytes())
            .string(b"ssh-connection")
            .string(b"publickey")
            .bool(true)
            .string(algorithm.as_bytes())
            .string(&blob);
        let mut signed = Writer::new();
        signed.string(io.link.session_id()).raw(w.as_slice());
        let signature = match sign(cred, &algorithm, flags, signed.as_slice()).await {
            Ok(s) => s,
            Err(SignFailure::Agent(e)) => {
                tried.push(format!("{described}: {e}"));
                continue;
            }
            Err(SignFailure::Local(reason)) => {
                return Err(AuthError::Sign {
                    credential: described,
                    reason,
                });
            }
        };
        w.string(&signature);
        io.link.send(w.into_vec()).await?;
        match io.reply("USERAUTH_SUCCESS or USERAUTH_FAILURE").await? {
            Reply::Success => return Ok(io.done(described)),
            Reply::Failure {
                methods: m,
                partial: true,
            } => {
                // The key counted; the server wants more (e.g. a second key, or a password).
                methods = m;
                accepted_before = Some(described);
            }
            Reply::Failure { methods: m, .. } => {
                methods = m;
                tried.push(format!("{described}: signature refused"));
            }
            Reply::PkOk(_) => {
                return Err(AuthError::Unexpected {
                    got: msg::USERAUTH_PK_OK,
                    waiting: "USERAUTH_SUCCESS or USERAUTH_FAILURE",
                });
            }
        }
    }
    if let Some(credential) = accepted_before {
        return Err(AuthError::Partial {
            credential,
            methods: methods.join(","),
        });
    }
    if !offers_publickey(&methods) && tried.is_empty() {
        return Err(AuthError::NoPublickey(methods.join(",")));
    }
    Err(AuthError::AllRefused {
        tried: tried.join(", "),
        methods: methods.join(","),
    })
}

fn offers_publickey(methods: &[String]) -> bool {
    methods.iter().any(|m| m == "publickey")
}

/// A reply to a USERAUTH_REQUEST.
enum Reply {
    Success,
    Failure {
        methods: Vec<String>,
        partial: bool,
    },
    /// PK_OK's body after the message number.
    PkOk(Vec<u8>),
}

/// The link with the message count and the banners.
struct Io<'a, L> {
    link: &'a mut L,
    handled: usize,
    banner: String,
}

impl<L: PacketLink> Io<'_, L> {
    /// The next message that is not a banner; banners are kept (bounded).
    async fn next(&mut self) -> Result<Vec<u8>, AuthError> {
        loop {
            if self.handled >= MAX_AUTH_MESSAGES {
                return Err(AuthError::TooManyMessages);
            }
            self.handled += 1;
            let message = self.link.recv().await?;
            if message.first() != Some(&msg::USERAUTH_BANNER) {
                return Ok(message);
            }
            let mut r = Reader::new(&message);
            r.u8()?;
            let text = r.string()?;
            let _language = r.string()?;
            r.finish()?;
            self.keep_banner(&String::from_utf8_lossy(text));
        }
    }

    fn keep_banner(&mut self, text: &str) {
        for c in text.chars() {
            let c = if c.is_control() && c != '\n' && c != '\t' {
                '?'
            } else {
                c
            };
            if self.banner.len() + c.len_utf8() > MAX_BANNER_BYTES {
                return;
            }
            self.banner.push(c);
        }
    }

    /// The reply to a USERAUTH_REQUEST.
    async fn reply(&mut self, waiting: &'static str) -> Result<Reply, AuthError> {
        let message = self.next().await?;
        let mut r = Reader::new(&message);
        let number = match r.u8() {
            Ok(n) => n,
            Err(_) => return Err(AuthError::Unexpected { got: 0, waiting }),
        };
        match number {
            msg::USERAUTH_SUCCESS => {
                r.finish()?;
                Ok(Reply::Success)
            }
            msg::USERAUTH_FAILURE => {
                let methods = r.name_list()?.into_iter().map(str::to_owned).collect();
                let partial = r.bool()?;
                r.finish()?;
                Ok(Reply::Failure { methods, partial })
            }
            msg::USERAUTH_PK_OK => Ok(Reply::PkOk(r.rest().to_vec())),
            got => Err(AuthError::Unexpected { got, waiting }),
        }
    }

    fn done(self, credential: String) -> Authenticated {
        if !self.banner.is_empty() {
            tracing::info!(banner = %self.banner, "the server's banner");
        }
        Authenticated {
            credential,
            banner: self.banner,
        }
    }
}

#[cfg(test)]
mod tests;
