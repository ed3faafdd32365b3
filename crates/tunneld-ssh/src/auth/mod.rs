//! User authentication (RFC 4252) with the publickey method (RFC 4252 §7): keys read from
//! files, OpenSSH certificates (PROTOCOL.certkeys) and keys held by ssh-agent. RSA signs
//! with rsa-sha2-512 or rsa-sha2-256 (RFC 8332) as the server's `server-sig-algs`
//! (RFC 8308 §3.1) allows; never with SHA-1.

// The crate-internal entry points are called by the transport, which is not in the crate yet.

pub mod agent;
#[cfg(test)]
pub(crate) mod testkeys;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

use signature::Signer;
use ssh_key::encoding::Encode;
use ssh_key::public::KeyData;
use ssh_key::{Certificate, HashAlg, PrivateKey, PublicKey};

use crate::error::{LinkError, WireError};
use crate::hostkey::{self, KeyKind};
use crate::msg;
use crate::wire::{Reader, Writer};

pub use agent::AgentError;

/// The most messages authentication handles before giving up (banners included).
pub const MAX_AUTH_MESSAGES: usize = 256;
/// The most banner text we keep for the log, in bytes (the rest is dropped).
pub const MAX_BANNER_BYTES: usize = 8 * 1024;

/// Something that can prove we hold a key.
// A handful per tunnel, built once and borrowed: the unboxed certificate costs nothing.
#[allow(clippy::large_enum_variant)]
pub enum Credential {
    /// A private key read from a file (the caller reads and permission-checks the file).
    Key {
        /// The key.
        key: Arc<PrivateKey>,
        /// A certificate of the key, offered instead of the bare key.
        certificate: Option<Certificate>,
        /// Where it came from (a path), for messages.
        label: String,
    },
    /// A key held by the ssh-agent at `socket` (blob as the agent listed it; may be a
    /// certificate).
    Agent {
        /// The agent's socket.
        socket: PathBuf,
        /// The public key or certificate blob.
        blob: Vec<u8>,
        /// The agent's comment for the key.
        comment: String,
    },
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the private key.
        f.write_str(&self.describe())
    }
}

impl Credential {
    /// Parses an OpenSSH private key file's text; an encrypted key is an error saying to load
    /// it into ssh-agent (`ssh-add FILE`). `label` names the file in messages.
    ///
    /// # Errors
    /// Not an OpenSSH private key, encrypted, or of a type we cannot sign with here (DSA,
    /// security keys: those work through ssh-agent).
    pub fn from_openssh(text: &str, label: &str) -> Result<Credential, AuthError> {
        let key = PrivateKey::from_openssh(text).map_err(|e| AuthError::BadKey {
            label: label.to_owned(),
            reason: e.to_string(),
        })?;
        if key.is_encrypted() {
            return Err(AuthError::EncryptedKey {
                label: label.to_owned(),
            });
        }
        if KeyKind::of(key.public_key().key_data()).is_none() {
            return Err(AuthError::UnsupportedKey {
                label: label.to_owned(),
                algorithm: key.algorithm().as_str().to_owned(),
            });
        }
        Ok(Credential::Key {
            key: Arc::new(key),
            certificate: None,
            label: label.to_owned(),
        })
    }

    /// Adds the certificate in `text` (an OpenSSH `*-cert.pub` line) to a file key.
    ///
    /// # Errors
    /// The text is not a certificate, is for another key, or this is an agent credential
    /// (the agent lists its certificates itself).
    pub fn with_certificate(self, text: &str) -> Result<Credential, AuthError> {
        let Credential::Key { key, label, .. } = self else {
            return Err(AuthError::CertificateMismatch {
                label: self.describe(),
            });
        };
        let cert = Certificate::from_openssh(text.trim()).map_err(|e| AuthError::BadKey {
            label: label.clone(),
            reason: format!("certificate: {e}"),
        })?;
        if cert.public_key() != key.public_key().key_data() {
            return Err(AuthError::CertificateMismatch { label });
        }
        Ok(Credential::Key {
            key,
            certificate: Some(cert),
            label,
        })
    }

    /// "ED25519 SHA256:... (label)", as in OpenSSH's messages, for logs and errors.
    pub fn describe(&self) -> String {
        match self {
            Credential::Key {
                key,
                certificate,
                label,
            } => format!(
                "{}{} {} ({label})",
                type_label(key.public_key().key_data()),
                if certificate.is_some() { "-CERT" } else { "" },
                key.public_key().fingerprint(HashAlg::Sha256)
            ),
            Credential::Agent { blob, comment, .. } => match parse_blob(blob) {
                Some((data, cert)) => format!(
                    "{}{} {} (agent: {})",
                    type_label(&data),
                    if cert { "-CERT" } else { "" },
                    data.fingerprint(HashAlg::Sha256),
                    hostkey::printable(comment)
                ),
                None => format!(
                    "an unknown agent key (agent: {})",
                    hostkey::printable(comment)
                ),
            },
        }
    }

    /// The public key or certificate blob we offer.
    fn blob(&self) -> Result<Vec<u8>, AuthError> {
        match self {
            Credential::Key {
                certificate: Some(cert),
                ..
            } => cert.encode_vec(),
            Credential::Key { key, .. } => key.public_key().key_data().encode_vec(),
            Credential::Agent { blob, .. } => return Ok(blob.clone()),
        }
        .map_err(|e| AuthError::Sign {
            credential: self.describe(),
            reason: e.to_string(),
        })
    }

    /// The key's type and whether it is a certificate; `None` for blobs we cannot use.
    fn kind(&self) -> Option<(KeyKind, bool)> {
        match self {
            Credential::Key {
                key, certificate, ..
            } => KeyKind::of(key.public_key().key_data()).map(|k| (k, certificate.is_some())),
            Credential::Agent { blob, .. } => {
                let (data, cert) = parse_blob(blob)?;
                KeyKind::of(&data).map(|k| (k, cert))
            }
        }
    }
}

/// Decodes a user key or certificate blob: the (certified) key and whether it is a
/// certificate.
fn parse_blob(blob: &[u8]) -> Option<(KeyData, bool)> {
    let type_name = Reader::new(blob).utf8().ok()?;
    if type_name.ends_with("-cert-v01@openssh.com") {
        let cert = Certificate::from_bytes(blob).ok()?;
        Some((cert.public_key().clone(), true))
    } else {
        let key = PublicKey::from_bytes(blob).ok()?;
        Some((key.key_data().clone(), false))
    }
}

/// OpenSSH's short name of a key type.
fn type_label(key: &KeyData) -> &'static str {
    match KeyKind::of(key) {
        Some(KeyKind::Ed25519) => "ED25519",
        Some(KeyKind::Ecdsa(_)) => "ECDSA",
        Some(KeyKind::Rsa) => "RSA",
        None => match key {
            KeyData::SkEd25519(_) => "ED25519-SK",
            KeyData::SkEcdsaSha2NistP256(_) => "ECDSA-SK",
            KeyData::Dsa(_) => "DSA",
            _ => "UNKNOWN",
        },
    }
}

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

/// Why authentication failed.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The connection failed under us.
    #[error(transparent)]
    Link(#[from] LinkError),
    /// A message from the server does not parse.
    #[error("malformed authentication message from the server: {0}")]
    Malformed(#[from] WireError),
    /// The server sent a message that does not belong at this point.
    #[error("unexpected message {got} from the server while waiting for {waiting}")]
    Unexpected {
        /// Its message number (0 for an empty message).
        got: u8,
        /// What we waited for.
        waiting: &'static str,
    },
    /// The server accepted another service than the one we asked for.
    #[error("the server accepted service {0:?} instead of ssh-userauth")]
    WrongService(String),
    /// The server sent more messages than we handle.
    #[error("the server sent more than {MAX_AUTH_MESSAGES} messages during authentication")]
    TooManyMessages,
    /// The server does not take publickey authentication.
    #[error("the server does not offer publickey authentication; it accepts: {0}")]
    NoPublickey(String),
    /// There were no keys to offer.
    #[error("no keys to try; the server accepts: {0}")]
    NoCredentials(String),
    /// The server refused every key.
    #[error("the server refused every key (tried: {tried}); it accepts: {methods}")]
    AllRefused {
        /// What was tried, and why each failed when not simply refused.
        tried: String,
        /// The methods the server still accepts.
        methods: String,
    },
    /// A key was accepted but the server wants more than publickey can give.
    #[error(
        "the server accepted {credential} but requires more authentication (partial success); it accepts: {methods}"
    )]
    Partial {
        /// The key that was accepted.
        credential: String,
        /// What the server wants next.
        methods: String,
    },
    /// The server's PK_OK names another key or algorithm than we asked about.
    #[error("the server's PK_OK does not match the key offered ({0})")]
    PkOkMismatch(String),
    /// A private key file that does not parse.
    #[error("{label}: not a usable OpenSSH private key: {reason}")]
    BadKey {
        /// The file.
        label: String,
        /// Why.
        reason: String,
    },
    /// An encrypted private key file: tunneld does not ask for passphrases.
    #[error("{label}: the private key is encrypted; load it into ssh-agent (ssh-add {label})")]
    EncryptedKey {
        /// The file.
        label: String,
    },
    /// A private key of a type we cannot sign with.
    #[error("{label}: {algorithm} keys are not supported here (use ssh-agent for security keys)")]
    UnsupportedKey {
        /// The file.
        label: String,
        /// Its algorithm.
        algorithm: String,
    },
    /// A certificate that is not for this key.
    #[error("{label}: the certificate is not for this key")]
    CertificateMismatch {
        /// The file or agent key.
        label: String,
    },
    /// Signing with a local key failed.
    #[error("signing with {credential} failed: {reason}")]
    Sign {
        /// The key.
        credential: String,
        /// Why.
        reason: String,
    },
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

/// The publickey algorithm name for a key, and the agent flags that make the agent sign with
/// it; `None` for an RSA key when the server lists no rsa-sha2 algorithm.
fn signing_algorithm(
    kind: KeyKind,
    certificate: bool,
    server_sig_algs: Option<&[String]>,
) -> Option<(String, u32)> {
    let (plain, flags) = match kind {
        KeyKind::Rsa => {
            let has = |name: &str| server_sig_algs.is_none_or(|l| l.iter().any(|a| a == name));
            if has("rsa-sha2-512") {
                ("rsa-sha2-512", agent::SSH_AGENT_RSA_SHA2_512)
            } else if has("rsa-sha2-256") {
                ("rsa-sha2-256", agent::SSH_AGENT_RSA_SHA2_256)
            } else {
                return None;
            }
        }
        KeyKind::Ed25519 => ("ssh-ed25519", 0),
        KeyKind::Ecdsa(curve) => (
            match curve {
                ssh_key::EcdsaCurve::NistP256 => "ecdsa-sha2-nistp256",
                ssh_key::EcdsaCurve::NistP384 => "ecdsa-sha2-nistp384",
                ssh_key::EcdsaCurve::NistP521 => "ecdsa-sha2-nistp521",
            },
            0,
        ),
    };
    let name = if certificate {
        format!("{plain}-cert-v01@openssh.com")
    } else {
        plain.to_owned()
    };
    Some((name, flags))
}

/// The signature algorithm name inside a signature for publickey algorithm `algorithm`.
fn signature_name(algorithm: &str) -> &str {
    algorithm
        .strip_suffix("-cert-v01@openssh.com")
        .unwrap_or(algorithm)
}

enum SignFailure {
    /// The agent failed or refused: try the next key.
    Agent(String),
    /// Our own key failed to sign: a bug or a broken key, stop.
    Local(String),
}

/// The signature blob (string algorithm || string signature) over `data`.
async fn sign(
    cred: &Credential,
    algorithm: &str,
    flags: u32,
    data: &[u8],
) -> Result<Vec<u8>, SignFailure> {
    let sig_name = signature_name(algorithm);
    match cred {
        Credential::Key { key, .. } => {
            let signature = match key.key_data().rsa() {
                Some(rsa) => {
                    let hash = if sig_name == "rsa-sha2-256" {
                        HashAlg::Sha256
                    } else {
                        HashAlg::Sha512
                    };
                    (rsa, Some(hash)).try_sign(data)
                }
                None => key.try_sign(data),
            }
            .map_err(|e| SignFailure::Local(e.to_string()))?;
            if signature.algorithm().as_str() != sig_name {
                return Err(SignFailure::Local(format!(
                    "made a {} signature, not {sig_name}",
                    signature.algorithm()
                )));
            }
            signature
                .encode_vec()
                .map_err(|e| SignFailure::Local(e.to_string()))
        }
        Credential::Agent { socket, blob, .. } => {
            let signature = agent::sign(socket, blob, data, flags)
                .await
                .map_err(|e| SignFailure::Agent(e.to_string()))?;
            // An old agent may ignore the flags and sign with SHA-1: the server would refuse
            // it, so say so here.
            hostkey::parse_signature(&signature, sig_name)
                .map_err(|e| SignFailure::Agent(format!("ssh-agent's signature: {e}")))?;
            Ok(signature)
        }
    }
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
