//! `curve25519-sha256` and `curve25519-sha256@libssh.org` (RFC 8731): Q_C and Q_S are X25519
//! public keys, K is the X25519 result read as an unsigned big-endian number, sent as an
//! mpint (RFC 8731 §3), and the hash is SHA-256.

use zeroize::Zeroizing;

use super::x25519::{X25519_LEN_BYTES, X25519Key};
use super::{HashAlg, KexError, KexMethod, check_reply_size};

/// One curve25519-sha256 exchange.
pub(crate) struct Curve25519 {
    key: X25519Key,
}

impl Curve25519 {
    /// A new exchange with a fresh ephemeral key.
    pub(crate) fn generate() -> Result<Self, KexError> {
        Ok(Curve25519 {
            key: X25519Key::generate()?,
        })
    }

    /// An exchange with a fixed key (known-answer tests).
    #[cfg(test)]
    pub(crate) fn from_key(key: X25519Key) -> Self {
        Curve25519 { key }
    }
}

impl KexMethod for Curve25519 {
    fn hash(&self) -> HashAlg {
        HashAlg::Sha256
    }

    fn client_public(&self) -> &[u8] {
        self.key.public()
    }

    fn agree(self: Box<Self>, server_public: &[u8]) -> Result<Zeroizing<Vec<u8>>, KexError> {
        check_reply_size("curve25519-sha256", server_public, X25519_LEN_BYTES)?;
        let secret = self.key.agree(server_public)?;
        Ok(mpint_of_secret(&secret))
    }
}

/// RFC 4251 §5 mpint of a non-negative big-endian number: leading zero bytes dropped, one
/// zero byte added when the top bit is set; the result never reallocates (at most 4 + 33
/// bytes), so no copy of the secret is left behind.
pub(crate) fn mpint_of_secret(magnitude: &[u8; X25519_LEN_BYTES]) -> Zeroizing<Vec<u8>> {
    let digits = match magnitude.iter().position(|&b| b != 0) {
        Some(start) => magnitude.get(start..).unwrap_or_default(),
        None => &[],
    };
    let pad = digits.first().is_some_and(|&b| b & 0x80 != 0);
    let len = digits.len() + usize::from(pad);
    let mut out = Zeroizing::new(Vec::with_capacity(4 + X25519_LEN_BYTES + 1));
    // At most 33, so the length always fits.
    out.extend_from_slice(&(len as u32).to_be_bytes());
    if pad {
        out.push(0);
    }
    out.extend_from_slice(digits);
    out
}
