//! OpenSSH's host key rotation (PROTOCOL §2.5, `hostkeys-00@openssh.com` and
//! `hostkeys-prove-00@openssh.com`), the protocol half, without I/O: reading the server's
//! announcement of all its host keys, the request asking it to prove the ones we do not
//! know, and checking its proofs.
//!
//! Whether a key is known, and what is written where, is the caller's known_hosts policy.
//! [`crate::Session::host_key_announcement`] gives the [`Announcement`] handle that waits
//! for the server's announcement and sends the request (file `hostkeys/handle.rs`).

mod handle;

pub use handle::{Announcement, ProveError};

use ssh_key::public::KeyData;
use ssh_key::{HashAlg, PublicKey};

use crate::hostkey::{self, HostKey, HostKeyError};
use crate::wire::{Reader, Writer};

/// The request's name, also the first field of the data each proof signs.
pub const PROVE_REQUEST: &str = "hostkeys-prove-00@openssh.com";
/// The largest RSA modulus accepted in an announcement, in bits: OpenSSH's own maximum
/// (`SSHBUF_MAX_BIGNUM`), so that checking a proof costs a bounded time.
pub const MAX_ANNOUNCED_RSA_BITS: u32 = 16384;
/// RSA proofs accepted when the session's host key is not RSA (OpenSSH's
/// `HOSTKEY_PROOF_RSA_ALGS`): never SHA-1.
const PROOF_RSA_ALGORITHMS: &[&str] = &["rsa-sha2-512", "rsa-sha2-256"];

/// The keys of an announcement we can use, in the order the server sent them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Announced {
    /// Plain keys of the types we accept, each once.
    pub keys: Vec<PublicKey>,
    /// What was left out and why (certificates, key types we do not accept, malformed
    /// blobs), for the log.
    pub skipped: Vec<String>,
}

/// An announcement that must not be acted upon.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnnounceError {
    /// The same key twice: OpenSSH aborts the whole update then, and so do we.
    #[error("the server announced its {0} key {1} twice")]
    Duplicate(String, String),
}

/// Why the server's proofs are refused; nothing is learned then.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    /// The reply does not hold one signature per key asked about, or has bytes after them.
    #[error("malformed proof reply: {0}")]
    Malformed(String),
    /// A signature does not verify for its key over this session.
    #[error("the server's proof for its {key_type} key {fingerprint} does not verify: {reason}")]
    BadSignature {
        /// The key's type.
        key_type: String,
        /// Its SHA-256 fingerprint.
        fingerprint: String,
        /// What is wrong with the signature.
        reason: String,
    },
}

/// The outcome of checking the server's proofs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Proven {
    /// The keys whose proof verified, in the order asked.
    pub keys: Vec<PublicKey>,
    /// RSA keys proven only with an algorithm we do not accept (`ssh-rsa`, SHA-1): left
    /// out, as OpenSSH does, without failing the others.
    pub disregarded: Vec<PublicKey>,
}

/// `TYPE SHA256:...` of a key, for messages.
pub fn describe(key: &PublicKey) -> String {
    format!("{} {}", key.algorithm(), key.fingerprint(HashAlg::Sha256))
}

/// Reads an announcement's key blobs: certificates, key types we do not accept, RSA keys
/// over [`MAX_ANNOUNCED_RSA_BITS`] and blobs that do not decode are skipped (OpenSSH
/// skips what it cannot use); a key announced twice refuses the whole announcement.
///
/// # Errors
/// [`AnnounceError::Duplicate`].
pub fn parse_announcement(blobs: &[Vec<u8>]) -> Result<Announced, AnnounceError> {
    let mut out = Announced::default();
    for blob in blobs {
        let key = match hostkey::decode(blob) {
            Ok(HostKey::Key(key)) => key,
            Ok(HostKey::Certificate(cert)) => {
                out.skipped.push(format!(
                    "a {} certificate (certificates are not learned)",
                    cert.algorithm().to_certificate_type()
                ));
                continue;
            }
            Err(e) => {
                out.skipped.push(e.to_string());
                continue;
            }
        };
        if let KeyData::Rsa(rsa) = key.key_data()
            && rsa.key_size() > MAX_ANNOUNCED_RSA_BITS
        {
            out.skipped.push(format!(
                "an rsa key of {} bits (more than {MAX_ANNOUNCED_RSA_BITS})",
                rsa.key_size()
            ));
            continue;
        }
        if out.keys.iter().any(|k| k.key_data() == key.key_data()) {
            return Err(AnnounceError::Duplicate(
                key.algorithm().to_string(),
                key.fingerprint(HashAlg::Sha256).to_string(),
            ));
        }
        out.keys.push(key);
    }
    Ok(out)
}

/// The key blob as the server sent it (decoding refuses blobs that do not re-encode to
/// the same bytes, so this is that blob).
fn blob(key: &PublicKey) -> Vec<u8> {
    key.to_bytes().unwrap_or_default()
}

/// The body of the `hostkeys-prove-00@openssh.com` request for `keys`: their blobs.
pub fn prove_request(keys: &[PublicKey]) -> Vec<u8> {
    let mut w = Writer::new();
    for key in keys {
        w.string(&blob(key));
    }
    w.into_vec()
}

/// What the server signs to prove it holds `key` on this session.
pub(crate) fn signed_data(session_id: &[u8], key: &PublicKey) -> Vec<u8> {
    let mut w = Writer::new();
    w.string(PROVE_REQUEST.as_bytes())
        .string(session_id)
        .string(&blob(key));
    w.into_vec()
}

/// The signature algorithm a proof for `key` must use; `None` for an RSA proof made with
/// an algorithm we do not accept (the key is disregarded).
fn proof_algorithm(key: &PublicKey, signature: &[u8], session_algorithm: &str) -> Option<String> {
    match key.key_data() {
        KeyData::Rsa(_) => {
            // A session on an RSA host key fixes the algorithm (OpenSSH does so too).
            let plain = session_algorithm
                .strip_suffix("-cert-v01@openssh.com")
                .unwrap_or(session_algorithm);
            if PROOF_RSA_ALGORITHMS.contains(&plain) {
                return Some(plain.to_owned());
            }
            let named = Reader::new(signature).utf8().ok()?;
            PROOF_RSA_ALGORITHMS
                .contains(&named)
                .then(|| named.to_owned())
        }
        // Only the key types `parse_announcement` keeps reach here; each has one.
        other => Some(other.algorithm().as_str().to_owned()),
    }
}

/// Checks the server's reply to a prove request for `keys` (asked in this order) on the
/// session `session_id`, whose host key algorithm is `session_algorithm`: one signature
/// per key, nothing after them, each verifying over this session's data.
///
/// # Errors
/// A missing, extra or malformed signature, or one that does not verify: then no key is
/// proven (OpenSSH learns nothing then either).
pub fn verify_proofs(
    reply: &[u8],
    keys: &[PublicKey],
    session_id: &[u8],
    session_algorithm: &str,
) -> Result<Proven, ProofError> {
    let mut r = Reader::new(reply);
    let mut proven = Proven::default();
    for (i, key) in keys.iter().enumerate() {
        let signature = r.string().map_err(|e| {
            ProofError::Malformed(format!(
                "no signature for key {} of {}: {e}",
                i + 1,
                keys.len()
            ))
        })?;
        let Some(algorithm) = proof_algorithm(key, signature, session_algorithm) else {
            proven.disregarded.push(key.clone());
            continue;
        };
        let bad = |e: HostKeyError| ProofError::BadSignature {
            key_type: key.algorithm().to_string(),
            fingerprint: key.fingerprint(HashAlg::Sha256).to_string(),
            reason: e.to_string(),
        };
        hostkey::verify(
            &HostKey::Key(key.clone()),
            &algorithm,
            &signed_data(session_id, key),
            signature,
        )
        .map_err(bad)?;
        proven.keys.push(key.clone());
    }
    r.finish().map_err(|_| {
        ProofError::Malformed(format!(
            "{} bytes after the {} signatures",
            r.rest().len(),
            keys.len()
        ))
    })?;
    Ok(proven)
}

#[cfg(test)]
mod tests;
