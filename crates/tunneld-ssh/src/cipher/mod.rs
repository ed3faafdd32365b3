//! Packet protection of the SSH binary packet protocol (RFC 4253 §6): the ciphers and MACs
//! we negotiate, the key sizes key derivation must produce for them, and the sealers and
//! openers that protect packets in place.
//!
//! [`Sealer`] and [`Opener`] are in `protect`; the constructions, one file each:
//! - `chacha`: `chacha20-poly1305@openssh.com` (OpenSSH PROTOCOL.chacha20poly1305).
//! - `gcm`: `aes128-gcm@openssh.com`, `aes256-gcm@openssh.com` (RFC 5647 as OpenSSH does it).
//! - `etm`: `aes128-ctr`, `aes256-ctr` (RFC 4344) with `hmac-sha2-256-etm@openssh.com` or
//!   `hmac-sha2-512-etm@openssh.com` (OpenSSH PROTOCOL §1.5, encrypt-then-MAC).
//!
//! All of them run on aws-lc-rs, the fastest implementation measured here
//! (`examples/cipher_speed.rs`). None of them allocates per packet.
//!
//! The packet layer owns the framing: it pads `padding_length || payload || padding` to
//! [`Sealer::block_size`] (the 4 length bytes never count: each construction here keeps the
//! length in the clear or encrypts it on its own), checks the received `packet_length`
//! against its bounds and [`Opener::block_size`], and hands whole packets to `seal`/`open`.

use zeroize::Zeroizing;

mod chacha;
mod etm;
mod gcm;
mod protect;

pub use protect::CipherError;
pub(crate) use protect::{Opener, Sealer};

/// `chacha20-poly1305@openssh.com`.
pub(crate) const CHACHA20_POLY1305: &str = "chacha20-poly1305@openssh.com";
/// `aes128-gcm@openssh.com`.
pub(crate) const AES128_GCM: &str = "aes128-gcm@openssh.com";
/// `aes256-gcm@openssh.com`.
pub(crate) const AES256_GCM: &str = "aes256-gcm@openssh.com";
/// `aes128-ctr` (RFC 4344 §4).
pub(crate) const AES128_CTR: &str = "aes128-ctr";
/// `aes256-ctr` (RFC 4344 §4).
pub(crate) const AES256_CTR: &str = "aes256-ctr";
/// `hmac-sha2-256-etm@openssh.com`.
pub(crate) const HMAC_SHA256_ETM: &str = "hmac-sha2-256-etm@openssh.com";
/// `hmac-sha2-512-etm@openssh.com`.
pub(crate) const HMAC_SHA512_ETM: &str = "hmac-sha2-512-etm@openssh.com";

/// Keys for one direction, from key derivation (RFC 4253 §7.2): IV, encryption key, MAC key.
pub(crate) struct DirectionKeys {
    /// The initial IV (`A`/`B` of RFC 4253 §7.2), [`KeySizes::iv`] bytes.
    pub iv: Zeroizing<Vec<u8>>,
    /// The encryption key (`C`/`D`), [`KeySizes::key`] bytes.
    pub key: Zeroizing<Vec<u8>>,
    /// The integrity key (`E`/`F`), [`KeySizes::mac_key`] bytes; empty for AEAD ciphers.
    pub mac_key: Zeroizing<Vec<u8>>,
}

/// What key derivation must produce for a negotiated cipher and MAC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct KeySizes {
    /// Bytes of IV.
    pub iv: usize,
    /// Bytes of encryption key.
    pub key: usize,
    /// Bytes of MAC key (0 for AEAD ciphers).
    pub mac_key: usize,
}

/// Every cipher name we implement.
#[cfg(test)]
pub(crate) const CIPHERS: &[&str] = &[
    CHACHA20_POLY1305,
    AES128_GCM,
    AES256_GCM,
    AES128_CTR,
    AES256_CTR,
];

/// Every MAC name we implement (ETM only), in our order of preference.
pub(crate) const MACS: &[&str] = &[HMAC_SHA256_ETM, HMAC_SHA512_ETM];

/// Whether this CPU has the instructions that make AES-GCM fast (x86_64: AES-NI and
/// PCLMULQDQ; aarch64: the AES extension, which comes with PMULL).
fn aes_is_accelerated() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("aes")
            && std::arch::is_x86_feature_detected!("pclmulqdq")
    }
    #[cfg(target_arch = "aarch64")]
    {
        std::arch::is_aarch64_feature_detected!("aes")
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        false
    }
}

/// Our cipher preference: AES-GCM first when the CPU accelerates AES (x86_64: aes + pclmulqdq,
/// aarch64: aes), chacha20-poly1305 first otherwise; aes-ctr last.
pub(crate) fn preferred_ciphers() -> Vec<&'static str> {
    preference(aes_is_accelerated())
}

/// The preference for a CPU with or without AES acceleration.
fn preference(aes_accelerated: bool) -> Vec<&'static str> {
    if aes_accelerated {
        vec![
            AES128_GCM,
            AES256_GCM,
            CHACHA20_POLY1305,
            AES128_CTR,
            AES256_CTR,
        ]
    } else {
        vec![
            CHACHA20_POLY1305,
            AES128_GCM,
            AES256_GCM,
            AES128_CTR,
            AES256_CTR,
        ]
    }
}

/// Whether `cipher` authenticates by itself (then no MAC is negotiated/used: RFC 5647 §5.1 as
/// OpenSSH does it — the MAC name list is ignored for AEAD ciphers).
pub(crate) fn is_aead(cipher: &str) -> bool {
    matches!(cipher, CHACHA20_POLY1305 | AES128_GCM | AES256_GCM)
}

/// The MAC of a non-AEAD cipher.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mac {
    /// HMAC-SHA-256, encrypt-then-MAC.
    Sha256Etm,
    /// HMAC-SHA-512, encrypt-then-MAC.
    Sha512Etm,
}

impl Mac {
    fn from_name(name: &str) -> Option<Mac> {
        match name {
            HMAC_SHA256_ETM => Some(Mac::Sha256Etm),
            HMAC_SHA512_ETM => Some(Mac::Sha512Etm),
            _ => None,
        }
    }

    /// Bytes of key, which are also the bytes of the tag (RFC 4868 §2.1.1 for the key).
    fn key_bytes(self) -> usize {
        match self {
            Mac::Sha256Etm => 32,
            Mac::Sha512Etm => 64,
        }
    }
}

/// A cipher and MAC pair we implement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Construction {
    /// `chacha20-poly1305@openssh.com`.
    ChaCha20Poly1305,
    /// AES-GCM with a 16- or 32-byte key.
    AesGcm { key_bytes: usize },
    /// AES-CTR with a 16- or 32-byte key, then an ETM MAC.
    AesCtrEtm { key_bytes: usize, mac: Mac },
}

impl Construction {
    fn from_names(cipher: &str, mac: Option<&str>) -> Option<Construction> {
        match cipher {
            CHACHA20_POLY1305 => Some(Construction::ChaCha20Poly1305),
            AES128_GCM => Some(Construction::AesGcm { key_bytes: 16 }),
            AES256_GCM => Some(Construction::AesGcm { key_bytes: 32 }),
            AES128_CTR | AES256_CTR => {
                let mac = Mac::from_name(mac?)?;
                let key_bytes = if cipher == AES128_CTR { 16 } else { 32 };
                Some(Construction::AesCtrEtm { key_bytes, mac })
            }
            _ => None,
        }
    }

    fn key_sizes(self) -> KeySizes {
        match self {
            Construction::ChaCha20Poly1305 => KeySizes {
                iv: 0,
                key: chacha::KEY_BYTES,
                mac_key: 0,
            },
            Construction::AesGcm { key_bytes } => KeySizes {
                iv: gcm::IV_BYTES,
                key: key_bytes,
                mac_key: 0,
            },
            Construction::AesCtrEtm { key_bytes, mac } => KeySizes {
                iv: etm::IV_BYTES,
                key: key_bytes,
                mac_key: mac.key_bytes(),
            },
        }
    }

    /// The construction, if `keys` have exactly the sizes it needs.
    fn checked(cipher: &str, mac: Option<&str>, keys: &DirectionKeys) -> Option<Construction> {
        let construction = Construction::from_names(cipher, mac)?;
        let want = construction.key_sizes();
        let have = KeySizes {
            iv: keys.iv.len(),
            key: keys.key.len(),
            mac_key: keys.mac_key.len(),
        };
        (want == have).then_some(construction)
    }
}

/// Sizes for key derivation; `None` for an unknown name or a non-AEAD cipher without a known MAC.
pub(crate) fn key_sizes(cipher: &str, mac: Option<&str>) -> Option<KeySizes> {
    Construction::from_names(cipher, mac).map(Construction::key_sizes)
}

/// The sealer/opener for a negotiated cipher (and MAC for non-AEAD); `None` when the names
/// are not ours or the keys have the wrong sizes.
pub(crate) fn sealer(
    cipher: &str,
    mac: Option<&str>,
    keys: &DirectionKeys,
) -> Option<Box<dyn Sealer>> {
    Some(match Construction::checked(cipher, mac, keys)? {
        Construction::ChaCha20Poly1305 => Box::new(chacha::ChaChaSealer::new(&keys.key)?),
        Construction::AesGcm { .. } => Box::new(gcm::GcmSealer::new(&keys.key, &keys.iv)?),
        Construction::AesCtrEtm { mac, .. } => Box::new(etm::EtmSealer::new(
            &keys.key,
            &keys.iv,
            &keys.mac_key,
            mac,
        )?),
    })
}

/// The opener for a negotiated cipher (and MAC for non-AEAD); `None` when the names are not
/// ours or the keys have the wrong sizes.
pub(crate) fn opener(
    cipher: &str,
    mac: Option<&str>,
    keys: &DirectionKeys,
) -> Option<Box<dyn Opener>> {
    Some(match Construction::checked(cipher, mac, keys)? {
        Construction::ChaCha20Poly1305 => Box::new(chacha::ChaChaOpener::new(&keys.key)?),
        Construction::AesGcm { .. } => Box::new(gcm::GcmOpener::new(&keys.key, &keys.iv)?),
        Construction::AesCtrEtm { mac, .. } => Box::new(etm::EtmOpener::new(
            &keys.key,
            &keys.iv,
            &keys.mac_key,
            mac,
        )?),
    })
}

#[cfg(test)]
pub(crate) mod tests;
