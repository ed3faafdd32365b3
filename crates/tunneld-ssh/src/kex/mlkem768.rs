//! `mlkem768x25519-sha256` (draft-ietf-sshm-mlkem-hybrid-kex; OpenSSH 9.9+): C_INIT is an
//! ML-KEM-768 encapsulation key followed by an X25519 public key, S_REPLY an ML-KEM-768
//! ciphertext followed by the server's X25519 public key, and
//! K = string(SHA-256(ML-KEM secret || X25519 secret)).
//!
//! ML-KEM (FIPS 203) comes from aws-lc-rs, already our X25519 and cipher library, rather than
//! the `ml-kem` crate: one implementation fewer to keep and a faster one.

use aws_lc_rs::kem::{Ciphertext, DecapsulationKey, ML_KEM_768};
use zeroize::Zeroizing;

use super::x25519::{X25519_LEN_BYTES, X25519Key};
use super::{HashAlg, KexError, KexMethod, check_reply_size, hybrid_shared_secret};

/// Size in bytes of an ML-KEM-768 encapsulation key (FIPS 203 Table 3).
pub(crate) const MLKEM768_PUBLIC_LEN_BYTES: usize = 1184;
/// Size in bytes of an ML-KEM-768 ciphertext (FIPS 203 Table 3).
pub(crate) const MLKEM768_CIPHERTEXT_LEN_BYTES: usize = 1088;
/// Size in bytes of C_INIT: encapsulation key (1184) || X25519 public key (32).
pub(crate) const CLIENT_INIT_LEN_BYTES: usize = MLKEM768_PUBLIC_LEN_BYTES + X25519_LEN_BYTES;
/// Size in bytes of S_REPLY: ciphertext (1088) || X25519 public key (32).
pub(crate) const SERVER_REPLY_LEN_BYTES: usize = MLKEM768_CIPHERTEXT_LEN_BYTES + X25519_LEN_BYTES;

/// One mlkem768x25519-sha256 exchange.
pub(crate) struct Mlkem768X25519 {
    kem: DecapsulationKey,
    x25519: X25519Key,
    client_init: Vec<u8>,
}

impl Mlkem768X25519 {
    /// A new exchange with fresh ephemeral keys.
    pub(crate) fn generate() -> Result<Self, KexError> {
        Self::with_x25519(X25519Key::generate()?)
    }

    /// A new exchange with a fresh ML-KEM key and the given X25519 key.
    pub(crate) fn with_x25519(x25519: X25519Key) -> Result<Self, KexError> {
        let failed = |_| KexError::KeyGeneration("ML-KEM-768");
        let kem = DecapsulationKey::generate(&ML_KEM_768).map_err(failed)?;
        let public = kem.encapsulation_key().map_err(failed)?;
        let public = public.key_bytes().map_err(failed)?;
        if public.as_ref().len() != MLKEM768_PUBLIC_LEN_BYTES {
            return Err(KexError::KeyGeneration("ML-KEM-768"));
        }
        let mut client_init = Vec::with_capacity(CLIENT_INIT_LEN_BYTES);
        client_init.extend_from_slice(public.as_ref());
        client_init.extend_from_slice(x25519.public());
        Ok(Mlkem768X25519 {
            kem,
            x25519,
            client_init,
        })
    }
}

impl KexMethod for Mlkem768X25519 {
    fn hash(&self) -> HashAlg {
        HashAlg::Sha256
    }

    fn client_public(&self) -> &[u8] {
        &self.client_init
    }

    fn agree(self: Box<Self>, server_public: &[u8]) -> Result<Zeroizing<Vec<u8>>, KexError> {
        check_reply_size(
            "mlkem768x25519-sha256",
            server_public,
            SERVER_REPLY_LEN_BYTES,
        )?;
        let (ciphertext, x25519_public) = server_public
            .split_at_checked(MLKEM768_CIPHERTEXT_LEN_BYTES)
            .ok_or(KexError::InvalidServerKey {
                what: "key exchange reply",
            })?;
        // A forged ciphertext of the right size decapsulates to an unrelated key (implicit
        // rejection, FIPS 203 §6.3); the host key signature over H then does not verify.
        let kem_secret = self
            .kem
            .decapsulate(Ciphertext::from(ciphertext))
            .map_err(|_| KexError::InvalidServerKey {
                what: "ML-KEM-768 ciphertext",
            })?;
        let x25519_secret = self.x25519.agree(x25519_public)?;
        Ok(hybrid_shared_secret(
            HashAlg::Sha256,
            kem_secret.as_ref(),
            x25519_secret.as_slice(),
        ))
    }
}
