//! What we authenticate with: a private key from a file (with or without its
//! certificate) or a key held by ssh-agent, and how each is named in messages.

use std::path::PathBuf;
use std::sync::Arc;

use ssh_key::encoding::Encode;
use ssh_key::public::KeyData;
use ssh_key::{Certificate, HashAlg, PrivateKey, PublicKey};

use super::error::AuthError;
use crate::hostkey::{self, KeyKind};
use crate::wire::Reader;

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
    pub(super) fn blob(&self) -> Result<Vec<u8>, AuthError> {
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
    pub(super) fn kind(&self) -> Option<(KeyKind, bool)> {
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
pub(super) fn parse_blob(blob: &[u8]) -> Option<(KeyData, bool)> {
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
