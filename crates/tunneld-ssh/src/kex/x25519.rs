//! The X25519 half of every method here (RFC 7748), through aws-lc-rs.

use aws_lc_rs::agreement::{self, PrivateKey, UnparsedPublicKey, X25519};
use zeroize::Zeroizing;

use super::KexError;

/// Size in bytes of an X25519 public key and of a shared secret.
pub(crate) const X25519_LEN_BYTES: usize = 32;

/// Our ephemeral X25519 key pair.
pub(crate) struct X25519Key {
    private: PrivateKey,
    public: [u8; X25519_LEN_BYTES],
}

impl X25519Key {
    /// A fresh key pair from the system's random source.
    pub(crate) fn generate() -> Result<Self, KexError> {
        let private =
            PrivateKey::generate(&X25519).map_err(|_| KexError::KeyGeneration("X25519"))?;
        Self::from_private(private)
    }

    /// The key pair of a fixed private scalar (known-answer tests).
    #[cfg(test)]
    pub(crate) fn from_scalar(scalar: &[u8; X25519_LEN_BYTES]) -> Self {
        let private = PrivateKey::from_private_key(&X25519, scalar).unwrap();
        Self::from_private(private).unwrap()
    }

    fn from_private(private: PrivateKey) -> Result<Self, KexError> {
        let public = private
            .compute_public_key()
            .map_err(|_| KexError::KeyGeneration("X25519"))?;
        let public: [u8; X25519_LEN_BYTES] = public
            .as_ref()
            .try_into()
            .map_err(|_| KexError::KeyGeneration("X25519"))?;
        Ok(X25519Key { private, public })
    }

    /// Our public key (its u-coordinate, 32 bytes).
    pub(crate) fn public(&self) -> &[u8; X25519_LEN_BYTES] {
        &self.public
    }

    /// X25519(our scalar, the server's public key). Refuses a key that is not 32 bytes and an
    /// all-zero result (RFC 7748 §6.1, RFC 8731 §3).
    pub(crate) fn agree(
        &self,
        server_public: &[u8],
    ) -> Result<Zeroizing<[u8; X25519_LEN_BYTES]>, KexError> {
        if server_public.len() != X25519_LEN_BYTES {
            return Err(KexError::InvalidServerKey {
                what: "X25519 public key",
            });
        }
        let peer = UnparsedPublicKey::new(&X25519, server_public);
        // aws-lc itself fails the agreement when the result is all zero; a server key that
        // does that is the only way to make it fail once the size is right.
        let secret = agreement::agree(&self.private, peer, KexError::AllZeroSecret, |raw| {
            let mut out = Zeroizing::new([0u8; X25519_LEN_BYTES]);
            if raw.len() != X25519_LEN_BYTES {
                return Err(KexError::InvalidServerKey {
                    what: "X25519 public key",
                });
            }
            out.copy_from_slice(raw);
            Ok(out)
        })?;
        // Checked here too, in constant time, whatever the library does.
        if secret.iter().fold(0u8, |acc, b| acc | b) == 0 {
            return Err(KexError::AllZeroSecret);
        }
        Ok(secret)
    }
}
