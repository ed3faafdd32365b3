//! Packet protection of the SSH binary packet protocol (RFC 4253 §6): the ciphers and MACs
//! we negotiate, the key sizes key derivation must produce for them, and the sealers and
//! openers that protect packets in place.
//!
//! Constructions, one file each:
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

/// Bytes of the `uint32 packet_length` field that opens every packet.
pub(crate) const LENGTH_FIELD_BYTES: usize = 4;

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

/// Protects outgoing packets of one direction.
pub(crate) trait Sealer: Send {
    /// Padding aligns `padding_length || payload || padding` to this (the 4 length bytes are
    /// excluded for all of our constructions, which either keep the length in the clear or
    /// encrypt it separately).
    fn block_size(&self) -> usize;
    /// Bytes of tag/MAC after the packet.
    fn tag_len(&self) -> usize;
    /// `packet` = `uint32 packet_length` (clear) `|| byte padding_length || payload || padding ||
    /// tag_len() bytes of room`. Encrypts in place (the length too where the construction does)
    /// and writes the tag into the room at the end.
    ///
    /// # Panics
    /// When `packet` is shorter than the length field and the tag, or its middle part is not a
    /// multiple of [`Sealer::block_size`]: the packet layer built it wrong, and sending it
    /// half-protected would be worse.
    fn seal(&mut self, seq: u32, packet: &mut [u8]);
}

/// Checks and decrypts incoming packets of one direction.
pub(crate) trait Opener: Send {
    /// `packet_length` must be a multiple of this.
    fn block_size(&self) -> usize;
    /// Bytes of tag/MAC after the packet.
    fn tag_len(&self) -> usize;
    /// The packet length from the first 4 bytes as received (decrypted when the construction
    /// encrypts the length). Changes nothing: the caller will call `open` with the same bytes.
    /// The value is not authenticated yet: the caller bounds it before it reads that much.
    fn packet_length(&mut self, seq: u32, first4: [u8; 4]) -> u32;
    /// `packet` = the 4 length bytes as received `|| packet_length bytes || tag_len() bytes`.
    /// Verifies the tag first (constant time), then decrypts in place: afterwards
    /// `packet[4..4 + packet_length]` is `padding_length || payload || padding` in the clear
    /// (`packet[..4]` may hold anything). A bad tag is an error and nothing may be used.
    fn open(&mut self, seq: u32, packet: &mut [u8]) -> Result<(), CipherError>;
}

/// A packet that failed authentication.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CipherError {
    /// The tag or MAC does not match the packet: it was altered, or the keys or the sequence
    /// number differ from the sender's.
    #[error("message authentication failed")]
    BadTag,
    /// The packet buffer is shorter than its length field and tag.
    #[error("packet of {0} bytes is too short for its length field and tag")]
    Short(usize),
    /// The encrypted part of the packet is not a whole number of cipher blocks.
    #[error("packet length {0} is not a multiple of the cipher block size")]
    NotBlockAligned(usize),
}

/// A packet cut into its length field, the part that is encrypted and the tag (or room for it).
type Parts<'a> = (&'a mut [u8], &'a mut [u8], &'a mut [u8]);

/// The parts of a packet being opened, checked: long enough for the length field and the
/// tag, and an encrypted part of whole blocks.
fn split_for_open(
    packet: &mut [u8],
    tag_len: usize,
    block_size: usize,
) -> Result<Parts<'_>, CipherError> {
    let short = CipherError::Short(packet.len());
    let body_end = packet
        .len()
        .checked_sub(tag_len)
        .filter(|end| *end >= LENGTH_FIELD_BYTES)
        .ok_or(short)?;
    let (head, tag) = packet.split_at_mut(body_end);
    let (length, body) = head.split_at_mut(LENGTH_FIELD_BYTES);
    if !body.len().is_multiple_of(block_size) {
        return Err(CipherError::NotBlockAligned(body.len()));
    }
    Ok((length, body, tag))
}

/// The parts of a packet being sealed: the length field, the part to encrypt and the room
/// for the tag. Panics on a packet the packet layer built wrong (see [`Sealer::seal`]).
fn split_for_seal(packet: &mut [u8], tag_len: usize, block_size: usize) -> Parts<'_> {
    let len = packet.len();
    assert!(
        len >= LENGTH_FIELD_BYTES + tag_len,
        "a packet of {len} bytes has no room for its length field and {tag_len}-byte tag"
    );
    let (head, tag) = packet.split_at_mut(len - tag_len);
    let (length, body) = head.split_at_mut(LENGTH_FIELD_BYTES);
    assert!(
        body.len().is_multiple_of(block_size),
        "the encrypted part of a packet ({} bytes) is not a multiple of {block_size}",
        body.len()
    );
    (length, body, tag)
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
pub(crate) mod tests {
    use super::*;

    /// Bytes from hex, spaces and newlines allowed (test vectors are printed that way).
    pub(crate) fn hex(text: &str) -> Vec<u8> {
        let digits: Vec<u8> = text
            .bytes()
            .filter(|b| !b.is_ascii_whitespace() && *b != b':')
            .collect();
        assert!(digits.len().is_multiple_of(2), "odd number of hex digits");
        digits
            .chunks(2)
            .map(|pair| {
                let text = std::str::from_utf8(pair).expect("hex digits are ASCII");
                u8::from_str_radix(text, 16).expect("a hex digit pair")
            })
            .collect()
    }

    /// Keys of the sizes `cipher`/`mac` need, each byte distinct per field so that a mix-up of
    /// fields shows.
    pub(crate) fn keys_for(cipher: &str, mac: Option<&str>, salt: u8) -> DirectionKeys {
        let sizes = key_sizes(cipher, mac).expect("a construction we implement");
        let fill = |n: usize, base: u8| -> Zeroizing<Vec<u8>> {
            Zeroizing::new(
                (0..n)
                    .map(|i| base.wrapping_add(salt).wrapping_add(i as u8))
                    .collect(),
            )
        };
        DirectionKeys {
            iv: fill(sizes.iv, 0x10),
            key: fill(sizes.key, 0x40),
            mac_key: fill(sizes.mac_key, 0x90),
        }
    }

    /// Every (cipher, MAC) pair we implement.
    pub(crate) fn all_constructions() -> Vec<(&'static str, Option<&'static str>)> {
        let mut out = Vec::new();
        for cipher in CIPHERS {
            if is_aead(cipher) {
                out.push((*cipher, None));
            } else {
                for mac in MACS {
                    out.push((*cipher, Some(*mac)));
                }
            }
        }
        out
    }

    /// A packet as the packet layer builds it: length, padding length, payload, padding
    /// (deterministic here), and room for the tag.
    pub(crate) fn build_packet(payload: &[u8], block_size: usize, tag_len: usize) -> Vec<u8> {
        let unpadded = 1 + payload.len();
        let mut padding = block_size - unpadded % block_size;
        if padding < 4 {
            padding += block_size;
        }
        let packet_length = unpadded + padding;
        let mut packet = Vec::with_capacity(4 + packet_length + tag_len);
        packet.extend_from_slice(&(packet_length as u32).to_be_bytes());
        packet.push(padding as u8);
        packet.extend_from_slice(payload);
        packet.extend((0..padding).map(|i| 0xa0 + i as u8));
        packet.resize(4 + packet_length + tag_len, 0);
        packet
    }

    fn pair(cipher: &str, mac: Option<&str>) -> (Box<dyn Sealer>, Box<dyn Opener>) {
        let keys = keys_for(cipher, mac, 0);
        (
            sealer(cipher, mac, &keys).expect("sealer"),
            opener(cipher, mac, &keys).expect("opener"),
        )
    }

    /// Opens `sealed` as the packet layer would: length first, then the whole packet.
    fn open_as_receiver(
        opener: &mut dyn Opener,
        seq: u32,
        sealed: &mut [u8],
    ) -> Result<u32, CipherError> {
        let first4: [u8; 4] = sealed[..4].try_into().expect("4 bytes");
        let length = opener.packet_length(seq, first4);
        opener.open(seq, sealed)?;
        Ok(length)
    }

    #[test]
    fn names_and_sizes() {
        assert_eq!(
            CIPHERS,
            &[
                "chacha20-poly1305@openssh.com",
                "aes128-gcm@openssh.com",
                "aes256-gcm@openssh.com",
                "aes128-ctr",
                "aes256-ctr"
            ]
        );
        assert_eq!(
            MACS,
            &[
                "hmac-sha2-256-etm@openssh.com",
                "hmac-sha2-512-etm@openssh.com"
            ]
        );
        let sizes = |iv, key, mac_key| Some(KeySizes { iv, key, mac_key });
        assert_eq!(key_sizes(CHACHA20_POLY1305, None), sizes(0, 64, 0));
        assert_eq!(
            key_sizes(CHACHA20_POLY1305, Some("hmac-sha1")),
            sizes(0, 64, 0)
        );
        assert_eq!(key_sizes(AES128_GCM, None), sizes(12, 16, 0));
        assert_eq!(
            key_sizes(AES256_GCM, Some(HMAC_SHA512_ETM)),
            sizes(12, 32, 0)
        );
        assert_eq!(
            key_sizes(AES128_CTR, Some(HMAC_SHA256_ETM)),
            sizes(16, 16, 32)
        );
        assert_eq!(
            key_sizes(AES256_CTR, Some(HMAC_SHA512_ETM)),
            sizes(16, 32, 64)
        );
        assert_eq!(key_sizes(AES128_CTR, None), None);
        assert_eq!(key_sizes(AES128_CTR, Some("hmac-sha2-256")), None);
        assert_eq!(
            key_sizes(AES128_CTR, Some("hmac-sha1-etm@openssh.com")),
            None
        );
        assert_eq!(key_sizes("aes128-cbc", Some(HMAC_SHA256_ETM)), None);
        assert_eq!(key_sizes("none", None), None);
        assert!(is_aead(CHACHA20_POLY1305) && is_aead(AES128_GCM) && is_aead(AES256_GCM));
        assert!(!is_aead(AES128_CTR) && !is_aead(AES256_CTR) && !is_aead("none"));
    }

    #[test]
    fn preference_follows_aes_acceleration() {
        assert_eq!(
            preference(true),
            [
                AES128_GCM,
                AES256_GCM,
                CHACHA20_POLY1305,
                AES128_CTR,
                AES256_CTR
            ]
        );
        assert_eq!(
            preference(false),
            [
                CHACHA20_POLY1305,
                AES128_GCM,
                AES256_GCM,
                AES128_CTR,
                AES256_CTR
            ]
        );
        assert_eq!(preferred_ciphers(), preference(aes_is_accelerated()));
    }

    #[test]
    fn wrong_key_sizes_or_names_give_nothing() {
        for (cipher, mac) in all_constructions() {
            let good = keys_for(cipher, mac, 0);
            assert!(sealer(cipher, mac, &good).is_some(), "{cipher} {mac:?}");
            assert!(opener(cipher, mac, &good).is_some(), "{cipher} {mac:?}");
            let grow = |v: &Zeroizing<Vec<u8>>| {
                let mut v = v.to_vec();
                v.push(0);
                Zeroizing::new(v)
            };
            let variants = [
                DirectionKeys {
                    iv: grow(&good.iv),
                    key: good.key.clone(),
                    mac_key: good.mac_key.clone(),
                },
                DirectionKeys {
                    iv: good.iv.clone(),
                    key: grow(&good.key),
                    mac_key: good.mac_key.clone(),
                },
                DirectionKeys {
                    iv: good.iv.clone(),
                    key: good.key.clone(),
                    mac_key: grow(&good.mac_key),
                },
            ];
            for keys in &variants {
                assert!(sealer(cipher, mac, keys).is_none(), "{cipher} {mac:?}");
                assert!(opener(cipher, mac, keys).is_none(), "{cipher} {mac:?}");
            }
        }
        let keys = keys_for(AES128_CTR, Some(HMAC_SHA256_ETM), 0);
        assert!(sealer(AES128_CTR, None, &keys).is_none());
        assert!(opener(AES128_CTR, Some("hmac-sha2-256"), &keys).is_none());
        assert!(sealer("aes128-cbc", Some(HMAC_SHA256_ETM), &keys).is_none());
    }

    #[test]
    fn sizes_of_each_construction() {
        let want: &[(&str, Option<&str>, usize, usize)] = &[
            (CHACHA20_POLY1305, None, 8, 16),
            (AES128_GCM, None, 16, 16),
            (AES256_GCM, None, 16, 16),
            (AES128_CTR, Some(HMAC_SHA256_ETM), 16, 32),
            (AES128_CTR, Some(HMAC_SHA512_ETM), 16, 64),
            (AES256_CTR, Some(HMAC_SHA256_ETM), 16, 32),
            (AES256_CTR, Some(HMAC_SHA512_ETM), 16, 64),
        ];
        assert_eq!(want.len(), all_constructions().len());
        for &(cipher, mac, block, tag) in want {
            let (sealer, opener) = pair(cipher, mac);
            assert_eq!(
                (sealer.block_size(), sealer.tag_len()),
                (block, tag),
                "{cipher}"
            );
            assert_eq!(
                (opener.block_size(), opener.tag_len()),
                (block, tag),
                "{cipher}"
            );
        }
    }

    #[test]
    fn sealed_packets_open_in_sequence() {
        for (cipher, mac) in all_constructions() {
            let (mut sealer, mut opener) = pair(cipher, mac);
            let (block, tag) = (sealer.block_size(), sealer.tag_len());
            // Sequence numbers need not start at 0 (strict kex resets them, rekeys do not).
            let payloads: [&[u8]; 5] = [b"", b"hello", &[0x5e; 100], &[7; 32768], b"again"];
            for (i, payload) in payloads.iter().enumerate() {
                let seq = 3 + i as u32;
                let plain = build_packet(payload, block, tag);
                let mut sealed = plain.clone();
                sealer.seal(seq, &mut sealed);
                let body = 4..plain.len() - tag;
                assert_ne!(
                    sealed[body.clone()],
                    plain[body.clone()],
                    "{cipher}: encrypted"
                );
                let length = open_as_receiver(opener.as_mut(), seq, &mut sealed)
                    .unwrap_or_else(|e| panic!("{cipher} {mac:?} packet {i}: {e}"));
                assert_eq!(length as usize, plain.len() - 4 - tag, "{cipher}");
                assert_eq!(
                    sealed[body.clone()],
                    plain[body],
                    "{cipher} {mac:?} packet {i}"
                );
            }
        }
    }

    #[test]
    fn the_same_packet_twice_is_encrypted_differently() {
        for (cipher, mac) in all_constructions() {
            let (mut sealer, mut opener) = pair(cipher, mac);
            let plain = build_packet(b"the same payload", sealer.block_size(), sealer.tag_len());
            let mut first = plain.clone();
            let mut second = plain.clone();
            sealer.seal(0, &mut first);
            sealer.seal(1, &mut second);
            let tag = sealer.tag_len();
            let body = 4..plain.len() - tag;
            assert_ne!(first[body.clone()], second[body], "{cipher}: body");
            assert_ne!(
                first[plain.len() - tag..],
                second[plain.len() - tag..],
                "{cipher}"
            );
            assert_eq!(
                open_as_receiver(opener.as_mut(), 0, &mut first),
                Ok(plain.len() as u32 - 4 - tag as u32)
            );
            assert_eq!(
                open_as_receiver(opener.as_mut(), 1, &mut second),
                Ok(plain.len() as u32 - 4 - tag as u32)
            );
            assert_eq!(first[4..plain.len() - tag], second[4..plain.len() - tag]);
        }
    }

    #[test]
    fn any_flipped_bit_fails() {
        for (cipher, mac) in all_constructions() {
            let (mut sealer, _) = pair(cipher, mac);
            let plain = build_packet(b"flip me", sealer.block_size(), sealer.tag_len());
            let mut sealed = plain.clone();
            sealer.seal(9, &mut sealed);
            for byte in 0..sealed.len() {
                for bit in [0x01u8, 0x80] {
                    let (_, mut opener) = pair(cipher, mac);
                    let mut altered = sealed.clone();
                    altered[byte] ^= bit;
                    assert_eq!(
                        opener.open(9, &mut altered),
                        Err(CipherError::BadTag),
                        "{cipher} {mac:?}: byte {byte} bit {bit:#x}"
                    );
                }
            }
            let (_, mut opener) = pair(cipher, mac);
            assert_eq!(opener.open(9, &mut sealed.clone()), Ok(()), "{cipher}");
        }
    }

    #[test]
    fn a_wrong_sequence_number_fails() {
        for (cipher, mac) in all_constructions() {
            let (mut sealer, _) = pair(cipher, mac);
            let plain = build_packet(b"in order", sealer.block_size(), sealer.tag_len());
            let mut sealed = plain.clone();
            sealer.seal(5, &mut sealed);
            for wrong in [4, 6, 5 + (1 << 16), u32::MAX] {
                let (_, mut opener) = pair(cipher, mac);
                let result = opener.open(wrong, &mut sealed.clone());
                if cipher.ends_with("-gcm@openssh.com") {
                    // RFC 5647 leaves the sequence number out of AES-GCM: its nonce is the
                    // invocation counter, which reordering or replay shifts just the same.
                    assert_eq!(result, Ok(()), "{cipher}");
                } else {
                    assert_eq!(
                        result,
                        Err(CipherError::BadTag),
                        "{cipher} {mac:?} seq {wrong}"
                    );
                }
            }
        }
    }

    #[test]
    fn gcm_fails_out_of_order_packets() {
        for cipher in [AES128_GCM, AES256_GCM] {
            let (mut sealer, mut opener) = pair(cipher, None);
            let plain = build_packet(b"counter", 16, 16);
            let mut first = plain.clone();
            let mut second = plain.clone();
            sealer.seal(0, &mut first);
            sealer.seal(1, &mut second);
            assert_eq!(
                opener.open(1, &mut second.clone()),
                Err(CipherError::BadTag)
            );
            // A failure does not advance the counter: the first packet still opens.
            assert_eq!(opener.open(0, &mut first), Ok(()));
            assert_eq!(opener.open(1, &mut second), Ok(()));
        }
    }

    #[test]
    fn short_or_misaligned_packets_are_errors_not_panics() {
        for (cipher, mac) in all_constructions() {
            let (_, mut opener) = pair(cipher, mac);
            let tag = opener.tag_len();
            for len in [0, 3, 4, 4 + tag - 1] {
                let mut packet = vec![0u8; len];
                assert_eq!(
                    opener.open(0, &mut packet),
                    Err(CipherError::Short(len)),
                    "{cipher}"
                );
            }
            let mut packet = vec![0u8; 4 + 4 + tag];
            assert_eq!(
                opener.open(0, &mut packet),
                Err(CipherError::NotBlockAligned(4)),
                "{cipher}"
            );
            // An empty encrypted part is aligned; it fails on its tag.
            let mut packet = vec![0u8; 4 + tag];
            assert_eq!(
                opener.open(0, &mut packet),
                Err(CipherError::BadTag),
                "{cipher}"
            );
        }
    }

    #[test]
    #[should_panic(expected = "no room for its length field")]
    fn sealing_a_packet_without_tag_room_panics() {
        let (mut sealer, _) = pair(AES128_GCM, None);
        sealer.seal(0, &mut [0u8; 19]);
    }
}
