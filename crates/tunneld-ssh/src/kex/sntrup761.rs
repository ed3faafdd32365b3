//! `sntrup761x25519-sha512` and `sntrup761x25519-sha512@openssh.com`
//! (draft-josefsson-ntruprime-ssh; OpenSSH 9.0–9.8's default): C_INIT is an sntrup761
//! public key followed by an X25519 public key, S_REPLY an sntrup761 ciphertext followed by
//! the server's X25519 public key, and K = string(SHA-512(sntrup761 key || X25519 secret)).

use aws_lc_rs::rand;
use sntrup761::{
    CIPHERTEXT_SIZE, Ciphertext, DecapsulationKey, PUBLIC_KEY_SIZE, generate_key_from_seed,
};
use zeroize::Zeroizing;

use super::x25519::{X25519_LEN_BYTES, X25519Key};
use super::{HashAlg, KexError, KexMethod, check_reply_size, hybrid_shared_secret};

/// Size in bytes of C_INIT: sntrup761 public key (1158) || X25519 public key (32).
pub(crate) const CLIENT_INIT_LEN_BYTES: usize = PUBLIC_KEY_SIZE + X25519_LEN_BYTES;
/// Size in bytes of S_REPLY: sntrup761 ciphertext (1039) || X25519 public key (32).
pub(crate) const SERVER_REPLY_LEN_BYTES: usize = CIPHERTEXT_SIZE + X25519_LEN_BYTES;

/// One sntrup761x25519-sha512 exchange.
pub(crate) struct Sntrup761X25519 {
    kem: DecapsulationKey,
    x25519: X25519Key,
    client_init: Vec<u8>,
}

impl Sntrup761X25519 {
    /// A new exchange with fresh ephemeral keys. The sntrup761 key pair comes from a 32-byte
    /// seed drawn from the system's random source (the crate expands it with ChaCha20).
    pub(crate) fn generate() -> Result<Self, KexError> {
        let mut seed = Zeroizing::new([0u8; 32]);
        rand::fill(seed.as_mut_slice()).map_err(|_| KexError::KeyGeneration("sntrup761"))?;
        Self::from_parts(*seed, X25519Key::generate()?)
    }

    /// The exchange of a fixed sntrup761 seed and X25519 key (tests).
    pub(crate) fn from_parts(seed: [u8; 32], x25519: X25519Key) -> Result<Self, KexError> {
        let seed = Zeroizing::new(seed);
        let (public, kem) = generate_key_from_seed(*seed);
        let mut client_init = Vec::with_capacity(CLIENT_INIT_LEN_BYTES);
        client_init.extend_from_slice(public.as_ref());
        client_init.extend_from_slice(x25519.public());
        Ok(Sntrup761X25519 {
            kem,
            x25519,
            client_init,
        })
    }
}

impl KexMethod for Sntrup761X25519 {
    fn hash(&self) -> HashAlg {
        HashAlg::Sha512
    }

    fn client_public(&self) -> &[u8] {
        &self.client_init
    }

    fn agree(self: Box<Self>, server_public: &[u8]) -> Result<Zeroizing<Vec<u8>>, KexError> {
        check_reply_size(
            "sntrup761x25519-sha512",
            server_public,
            SERVER_REPLY_LEN_BYTES,
        )?;
        let (ciphertext, x25519_public) =
            server_public
                .split_at_checked(CIPHERTEXT_SIZE)
                .ok_or(KexError::InvalidServerKey {
                    what: "key exchange reply",
                })?;
        let ciphertext =
            Ciphertext::try_from(ciphertext).map_err(|_| KexError::InvalidServerKey {
                what: "sntrup761 ciphertext",
            })?;
        // Decapsulation never fails: a forged ciphertext yields an unrelated key (implicit
        // rejection), and the host key signature over H then does not verify.
        let kem_secret = self.kem.decapsulate(&ciphertext);
        let x25519_secret = self.x25519.agree(x25519_public)?;
        Ok(hybrid_shared_secret(
            HashAlg::Sha512,
            kem_secret.as_ref(),
            x25519_secret.as_slice(),
        ))
    }
}
