//! Key exchange, client side: the ephemeral methods we implement (one file each), the
//! exchange hash H and the key derivation of RFC 4253 §7.2.
//!
//! Every method here uses SSH_MSG_KEX_ECDH_INIT (30) and SSH_MSG_KEX_ECDH_REPLY (31): the
//! client sends one string (Q_C, or C_INIT for the hybrids), the server answers with one
//! (Q_S / S_REPLY), and both compute the shared secret K. [`KexMethod::agree`] returns K
//! already encoded as it enters H and the key derivation (an mpint for curve25519, a string
//! for the post-quantum hybrids), so the transport never needs to know which it is.
//!
//! - `curve25519`: `curve25519-sha256` (RFC 8731), also named `curve25519-sha256@libssh.org`.
//! - `sntrup761`: `sntrup761x25519-sha512` (draft-josefsson-ntruprime-ssh), also named
//!   `sntrup761x25519-sha512@openssh.com`.
//! - `mlkem768`: `mlkem768x25519-sha256` (draft-ietf-sshm-mlkem-hybrid-kex).
//! - `x25519`: the X25519 half that all three share.

// Nothing outside the tests calls in until the transport state machine does.

mod curve25519;
mod mlkem768;
mod sntrup761;
mod x25519;

use aws_lc_rs::digest;
use zeroize::Zeroizing;

use crate::wire::Writer;

/// The hash function of a key exchange method.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum HashAlg {
    /// SHA-256 (32-byte output).
    Sha256,
    /// SHA-512 (64-byte output).
    Sha512,
}

impl HashAlg {
    /// The hash of the concatenation of `data`.
    pub(crate) fn digest(self, data: &[&[u8]]) -> Vec<u8> {
        let mut ctx = digest::Context::new(self.algorithm());
        for part in data {
            ctx.update(part);
        }
        ctx.finish().as_ref().to_vec()
    }

    /// The output size in bytes.
    pub(crate) fn output_len_bytes(self) -> usize {
        self.algorithm().output_len()
    }

    fn algorithm(self) -> &'static digest::Algorithm {
        match self {
            HashAlg::Sha256 => &digest::SHA256,
            HashAlg::Sha512 => &digest::SHA512,
        }
    }
}

/// `mlkem768x25519-sha256`.
pub(crate) const MLKEM768X25519_SHA256: &str = "mlkem768x25519-sha256";
/// `sntrup761x25519-sha512`.
pub(crate) const SNTRUP761X25519_SHA512: &str = "sntrup761x25519-sha512";
/// `sntrup761x25519-sha512@openssh.com`, OpenSSH's name before the IANA one.
pub(crate) const SNTRUP761X25519_SHA512_OPENSSH: &str = "sntrup761x25519-sha512@openssh.com";
/// `curve25519-sha256`.
pub(crate) const CURVE25519_SHA256: &str = "curve25519-sha256";
/// `curve25519-sha256@libssh.org`, the name before RFC 8731.
pub(crate) const CURVE25519_SHA256_LIBSSH: &str = "curve25519-sha256@libssh.org";

/// Every kex method we implement, best first (mlkem, sntrup761 (both names), curve25519 (both)).
pub(crate) const KEX_METHODS: &[&str] = &[
    MLKEM768X25519_SHA256,
    SNTRUP761X25519_SHA512,
    SNTRUP761X25519_SHA512_OPENSSH,
    CURVE25519_SHA256,
    CURVE25519_SHA256_LIBSSH,
];

/// One client-side exchange in progress: ephemeral keys made at `start`.
pub(crate) trait KexMethod: Send {
    /// The hash of the exchange hash and the key derivation.
    fn hash(&self) -> HashAlg;
    /// Q_C / C_INIT: the string sent in SSH_MSG_KEX_ECDH_INIT.
    fn client_public(&self) -> &[u8];
    /// K from the server's Q_S / S_REPLY, encoded exactly as it enters the exchange hash and
    /// key derivation (mpint for curve25519, string for the hybrids — length prefix included).
    /// Fails on a reply of the wrong size, an invalid point, an all-zero X25519 result.
    fn agree(self: Box<Self>, server_public: &[u8]) -> Result<Zeroizing<Vec<u8>>, KexError>;
}

/// A new exchange for the negotiated method with fresh ephemeral keys; `None` for a name
/// that is not ours.
///
/// Also `None` if the crypto library cannot make a key pair, which it only fails to do when
/// it cannot allocate or read the system's random source; the caller reports both as "no
/// usable key exchange method".
pub(crate) fn start(name: &str) -> Option<Box<dyn KexMethod>> {
    let method: Box<dyn KexMethod> = match name {
        MLKEM768X25519_SHA256 => Box::new(mlkem768::Mlkem768X25519::generate().ok()?),
        SNTRUP761X25519_SHA512 | SNTRUP761X25519_SHA512_OPENSSH => {
            Box::new(sntrup761::Sntrup761X25519::generate().ok()?)
        }
        CURVE25519_SHA256 | CURVE25519_SHA256_LIBSSH => {
            Box::new(curve25519::Curve25519::generate().ok()?)
        }
        _ => return None,
    };
    Some(method)
}

/// The inputs of the exchange hash H (RFC 4253 §8, RFC 5656 §4, RFC 8731 §3).
pub(crate) struct ExchangeHashInput<'a> {
    /// V_C: our version line without CR LF.
    pub client_version: &'a [u8],
    /// V_S: the server's version line without CR LF.
    pub server_version: &'a [u8],
    /// I_C: our KEXINIT payload, from the message number on.
    pub client_kexinit: &'a [u8],
    /// I_S: the server's KEXINIT payload, from the message number on.
    pub server_kexinit: &'a [u8],
    /// K_S: the server's host key blob.
    pub host_key: &'a [u8],
    /// Q_C / C_INIT.
    pub client_public: &'a [u8],
    /// Q_S / S_REPLY.
    pub server_public: &'a [u8],
    /// K as returned by [`KexMethod::agree`] (already encoded).
    pub shared_secret: &'a [u8],
}

/// H = HASH(string V_C || string V_S || string I_C || string I_S || string K_S || string Q_C ||
/// string Q_S || K).
///
/// K is hashed in place, never copied into the buffer of the other fields.
pub(crate) fn exchange_hash(hash: HashAlg, input: &ExchangeHashInput<'_>) -> Vec<u8> {
    let mut public = Writer::new();
    public
        .string(input.client_version)
        .string(input.server_version)
        .string(input.client_kexinit)
        .string(input.server_kexinit)
        .string(input.host_key)
        .string(input.client_public)
        .string(input.server_public);
    hash.digest(&[public.as_slice(), input.shared_secret])
}

/// RFC 4253 §7.2: HASH(K || H || letter || session_id), extended with HASH(K || H || K1 ..)
/// until `len` bytes; `letter` is b'A'..=b'F'.
pub(crate) fn derive_key(
    hash: HashAlg,
    shared_secret: &[u8],
    exchange_hash: &[u8],
    letter: u8,
    session_id: &[u8],
    len: usize,
) -> Zeroizing<Vec<u8>> {
    let block = hash.output_len_bytes();
    // Room for every whole block up front, so no reallocation leaves key bytes behind.
    let mut key = Zeroizing::new(Vec::with_capacity(len.div_ceil(block) * block));
    let first = Zeroizing::new(hash.digest(&[shared_secret, exchange_hash, &[letter], session_id]));
    key.extend_from_slice(&first);
    while key.len() < len {
        let next = Zeroizing::new(hash.digest(&[shared_secret, exchange_hash, &key]));
        key.extend_from_slice(&next);
    }
    key.truncate(len);
    key
}

/// Why a key exchange failed on our side.
#[derive(Debug, thiserror::Error)]
pub enum KexError {
    /// The server's Q_S / S_REPLY is not the size the method fixes.
    #[error("server key exchange reply for {method} is {got} bytes, expected {expected}")]
    WrongReplySize {
        /// The method negotiated.
        method: &'static str,
        /// The size the method fixes.
        expected: usize,
        /// The size received.
        got: usize,
    },
    /// The server's X25519 public key gives an all-zero shared secret (a low-order point,
    /// RFC 7748 §6.1); refused as RFC 8731 §3 requires.
    #[error("server X25519 public key gives an all-zero shared secret")]
    AllZeroSecret,
    /// The crypto library refused the server's key or ciphertext.
    #[error("server {what} is invalid")]
    InvalidServerKey {
        /// Which of the server's values.
        what: &'static str,
    },
    /// The crypto library could not make our ephemeral key pair.
    #[error("ephemeral key generation failed for {0}")]
    KeyGeneration(&'static str),
}

/// K of the hybrid methods: string(HASH(kem_secret || x25519_secret)).
fn hybrid_shared_secret(
    hash: HashAlg,
    kem_secret: &[u8],
    x25519_secret: &[u8],
) -> Zeroizing<Vec<u8>> {
    let digest = Zeroizing::new(hash.digest(&[kem_secret, x25519_secret]));
    let mut encoded = Zeroizing::new(Vec::with_capacity(4 + digest.len()));
    // A digest is at most 64 bytes, so its length always fits the u32 prefix.
    encoded.extend_from_slice(&(digest.len() as u32).to_be_bytes());
    encoded.extend_from_slice(&digest);
    encoded
}

/// Fails unless `reply` is exactly `expected` bytes.
fn check_reply_size(method: &'static str, reply: &[u8], expected: usize) -> Result<(), KexError> {
    if reply.len() == expected {
        Ok(())
    } else {
        Err(KexError::WrongReplySize {
            method,
            expected,
            got: reply.len(),
        })
    }
}

#[cfg(test)]
mod openssh_tests;
#[cfg(test)]
mod tests;
