//! Why authentication failed, said with what the server offered and what was tried.

use super::MAX_AUTH_MESSAGES;
use crate::error::{LinkError, WireError};

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
