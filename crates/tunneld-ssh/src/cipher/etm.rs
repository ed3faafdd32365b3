//! `aes128-ctr` and `aes256-ctr` (RFC 4344 §4) with `hmac-sha2-256-etm@openssh.com` or
//! `hmac-sha2-512-etm@openssh.com` (OpenSSH PROTOCOL §1.5): the `uint32 packet_length`
//! stays in the clear, the rest is encrypted, and the MAC is
//! `HMAC(mac_key, uint32 seq || uint32 packet_length || ciphertext)`, checked before anything
//! is decrypted. The CTR counter is the IV from key derivation, a 128-bit big-endian number
//! that runs on across packets (one per 16-byte block).
//!
//! Runs on aws-lc-rs' AES-CTR and HMAC.

use aws_lc_rs::cipher::{AES_128, AES_256, EncryptingKey, EncryptionContext, UnboundCipherKey};
use aws_lc_rs::constant_time::verify_slices_are_equal;
use aws_lc_rs::hmac;
use aws_lc_rs::iv::FixedLength;

use super::Mac;
use super::protect::{CipherError, Opener, Sealer, split_for_open, split_for_seal};

/// Bytes of IV: the initial counter block.
pub(super) const IV_BYTES: usize = 16;
/// AES block size: the encrypted part is padded to it, and the counter counts these.
const BLOCK_BYTES: usize = 16;

/// AES-CTR with the counter carried from packet to packet.
struct Ctr {
    key: EncryptingKey,
    /// The counter block for the next byte to encrypt (always at a block boundary).
    counter: u128,
}

impl Ctr {
    fn new(key: &[u8], iv: &[u8]) -> Option<Self> {
        let algorithm = match key.len() {
            16 => &AES_128,
            32 => &AES_256,
            _ => return None,
        };
        let iv: [u8; IV_BYTES] = iv.try_into().ok()?;
        Some(Ctr {
            key: EncryptingKey::ctr(UnboundCipherKey::new(algorithm, key).ok()?).ok()?,
            counter: u128::from_be_bytes(iv),
        })
    }

    /// Encrypts (or decrypts) `data`, a whole number of blocks, and moves the counter past
    /// it. RFC 4344 §4: the counter is incremented modulo 2^128.
    fn apply(&mut self, data: &mut [u8]) -> Result<(), CipherError> {
        if !data.len().is_multiple_of(BLOCK_BYTES) {
            return Err(CipherError::NotBlockAligned(data.len()));
        }
        let context = EncryptionContext::Iv128(FixedLength::from(self.counter.to_be_bytes()));
        // Fails only for a context of the wrong kind, which this is not.
        self.key
            .less_safe_encrypt(data, context)
            .map_err(|_| CipherError::NotBlockAligned(data.len()))?;
        // A packet is at most 2^32 bytes: its block count fits a u128 many times over.
        self.counter = self
            .counter
            .wrapping_add((data.len() / BLOCK_BYTES) as u128);
        Ok(())
    }
}

/// The ETM MAC with its key.
struct EtmMac {
    key: hmac::Key,
    tag_bytes: usize,
}

impl EtmMac {
    fn new(mac: Mac, key: &[u8]) -> Option<Self> {
        if key.len() != mac.key_bytes() {
            return None;
        }
        let algorithm = match mac {
            Mac::Sha256Etm => hmac::HMAC_SHA256,
            Mac::Sha512Etm => hmac::HMAC_SHA512,
        };
        Some(EtmMac {
            key: hmac::Key::new(algorithm, key),
            tag_bytes: mac.key_bytes(),
        })
    }

    /// `HMAC(key, uint32 seq || uint32 packet_length || ciphertext)`; `packet` holds the
    /// length and the ciphertext.
    fn tag(&self, seq: u32, packet: &[u8]) -> hmac::Tag {
        let mut context = hmac::Context::with_key(&self.key);
        context.update(&seq.to_be_bytes());
        context.update(packet);
        context.sign()
    }
}

/// Seals packets with AES-CTR and an ETM MAC.
pub(super) struct EtmSealer {
    ctr: Ctr,
    mac: EtmMac,
}

impl EtmSealer {
    /// A sealer for a 16- or 32-byte AES key, a 16-byte IV and a MAC key of the MAC's size;
    /// `None` for other sizes.
    pub(super) fn new(key: &[u8], iv: &[u8], mac_key: &[u8], mac: Mac) -> Option<Self> {
        Some(EtmSealer {
            ctr: Ctr::new(key, iv)?,
            mac: EtmMac::new(mac, mac_key)?,
        })
    }
}

impl Sealer for EtmSealer {
    fn block_size(&self) -> usize {
        BLOCK_BYTES
    }

    fn tag_len(&self) -> usize {
        self.mac.tag_bytes
    }

    fn seal(&mut self, seq: u32, packet: &mut [u8]) {
        let tag_bytes = self.mac.tag_bytes;
        let (_, body, _) = split_for_seal(packet, tag_bytes, BLOCK_BYTES);
        if let Err(error) = self.ctr.apply(body) {
            panic!("AES-CTR refused a packet: {error}");
        }
        let tag_at = packet.len() - tag_bytes;
        let (covered, tag_room) = packet.split_at_mut(tag_at);
        tag_room.copy_from_slice(self.mac.tag(seq, covered).as_ref());
    }
}

/// Opens packets sealed with AES-CTR and an ETM MAC.
pub(super) struct EtmOpener {
    ctr: Ctr,
    mac: EtmMac,
}

impl EtmOpener {
    /// An opener for a 16- or 32-byte AES key, a 16-byte IV and a MAC key of the MAC's size;
    /// `None` for other sizes.
    pub(super) fn new(key: &[u8], iv: &[u8], mac_key: &[u8], mac: Mac) -> Option<Self> {
        Some(EtmOpener {
            ctr: Ctr::new(key, iv)?,
            mac: EtmMac::new(mac, mac_key)?,
        })
    }
}

impl Opener for EtmOpener {
    fn block_size(&self) -> usize {
        BLOCK_BYTES
    }

    fn tag_len(&self) -> usize {
        self.mac.tag_bytes
    }

    fn packet_length(&mut self, _seq: u32, first4: [u8; 4]) -> u32 {
        u32::from_be_bytes(first4)
    }

    fn open(&mut self, seq: u32, packet: &mut [u8]) -> Result<(), CipherError> {
        let tag_bytes = self.mac.tag_bytes;
        split_for_open(packet, tag_bytes, BLOCK_BYTES)?;
        let tag_at = packet.len() - tag_bytes;
        let (covered, tag) = packet.split_at_mut(tag_at);
        let want = self.mac.tag(seq, covered);
        verify_slices_are_equal(want.as_ref(), tag).map_err(|_| CipherError::BadTag)?;
        let (_, body) = covered.split_at_mut(super::protect::LENGTH_FIELD_BYTES);
        self.ctr.apply(body)
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{build_packet, hex};
    use super::super::{AES128_CTR, AES256_CTR, HMAC_SHA256_ETM, HMAC_SHA512_ETM};
    use super::*;
    use ::hmac::{Hmac, KeyInit, Mac as _};
    use ctr::cipher::{KeyIvInit, StreamCipher};
    use sha2_011::{Sha256, Sha512};

    const SP800_38A_PLAIN: &str = "6bc1bee22e409f96e93d7e117393172a ae2d8a571e03ac9c9eb76fac45af8e51
                                   30c81c46a35ce411e5fbc1191a0a52ef f69f2445df4f9b17ad2b417be66c3710";
    const SP800_38A_COUNTER: &str = "f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff";

    /// NIST SP 800-38A appendix F.5.1 (CTR-AES128.Encrypt) and F.5.5 (CTR-AES256.Encrypt).
    const SP800_38A: [(&str, &str); 2] = [
        (
            "2b7e151628aed2a6abf7158809cf4f3c",
            "874d6191b620e3261bef6864990db6ce 9806f66b7970fdff8617187bb9fffdff
             5ae4df3edbd5d35e5b4f09020db03eab 1e031dda2fbe03d1792170a0f3009cee",
        ),
        (
            "603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4",
            "601ec313775789a5b7a7f504bbf3d228 f443e3ca4d62b59aca84e990cacaf5c5
             2b0930daa23de94ce87017ba2d84988d dfc9c58db67aada613c2dd08457941a6",
        ),
    ];

    #[test]
    fn sp800_38a_f_5_1_and_f_5_5() {
        for (key, cipher) in SP800_38A {
            // In one call, and as two packets of two blocks: the counter must run on.
            let mut whole = hex(SP800_38A_PLAIN);
            Ctr::new(&hex(key), &hex(SP800_38A_COUNTER))
                .unwrap()
                .apply(&mut whole)
                .unwrap();
            assert_eq!(whole, hex(cipher));
            let mut ctr = Ctr::new(&hex(key), &hex(SP800_38A_COUNTER)).unwrap();
            let mut split = hex(SP800_38A_PLAIN);
            let (first, second) = split.split_at_mut(32);
            ctr.apply(first).unwrap();
            ctr.apply(second).unwrap();
            assert_eq!(split, hex(cipher));
        }
    }

    /// RFC 4231 §4.2, §4.3, §4.5 and §4.7 (test cases 1, 2, 4 and 6): key, data,
    /// HMAC-SHA-256, HMAC-SHA-512.
    #[test]
    fn rfc4231_test_cases_1_2_4_6() {
        let cases: [(Vec<u8>, Vec<u8>, &str, &str); 4] = [
            (
                vec![0x0b; 20],
                b"Hi There".to_vec(),
                "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7",
                "87aa7cdea5ef619d4ff0b4241a1d6cb02379f4e2ce4ec2787ad0b30545e17cde
                 daa833b7d6b8a702038b274eaea3f4e4be9d914eeb61f1702e696c203a126854",
            ),
            (
                b"Jefe".to_vec(),
                b"what do ya want for nothing?".to_vec(),
                "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
                "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea250554
                 9758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737",
            ),
            (
                (1..=25).collect(),
                vec![0xcd; 50],
                "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b",
                "b0ba465637458c6990e5a8c5f61d4af7e576d97ff94b872de76f8050361ee3db
                 a91ca5c11aa25eb4d679275cc5788063a5f19741120c4f2de2adebeb10a298dd",
            ),
            (
                vec![0xaa; 131],
                b"Test Using Larger Than Block-Size Key - Hash Key First".to_vec(),
                "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54",
                "80b24263c7c1a3ebb71493c1dd7be8b49b46d1f41b4aeec1121b013783f8f352
                 6b56d037e05f2598bd0fd2215d6a1e5295e64f73f63f0aec8b915a985d786598",
            ),
        ];
        for (i, (key, data, sha256, sha512)) in cases.iter().enumerate() {
            let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), data);
            assert_eq!(tag.as_ref(), hex(sha256), "case {i}, SHA-256");
            let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA512, key), data);
            assert_eq!(tag.as_ref(), hex(sha512), "case {i}, SHA-512");
        }
    }

    /// The construction composed from RustCrypto's AES-CTR (128-bit big-endian counter),
    /// HMAC and SHA-2: one keystream over all packets' encrypted parts, and
    /// `HMAC(uint32 seq || packet_length || ciphertext)`.
    struct Reference {
        ctr: Box<dyn StreamCipher>,
        mac_key: Vec<u8>,
    }

    impl Reference {
        fn new(key: &[u8], iv: &[u8], mac_key: &[u8]) -> Self {
            let ctr: Box<dyn StreamCipher> = if key.len() == 16 {
                Box::new(ctr::Ctr128BE::<aes::Aes128>::new_from_slices(key, iv).unwrap())
            } else {
                Box::new(ctr::Ctr128BE::<aes::Aes256>::new_from_slices(key, iv).unwrap())
            };
            Reference {
                ctr,
                mac_key: mac_key.to_vec(),
            }
        }

        fn seal(&mut self, seq: u32, packet: &mut [u8]) {
            let tag_at = packet.len() - self.mac_key.len();
            self.ctr.apply_keystream(&mut packet[4..tag_at]);
            let tag = if self.mac_key.len() == 32 {
                let mut mac = Hmac::<Sha256>::new_from_slice(&self.mac_key).unwrap();
                mac.update(&seq.to_be_bytes());
                mac.update(&packet[..tag_at]);
                mac.finalize().into_bytes().to_vec()
            } else {
                let mut mac = Hmac::<Sha512>::new_from_slice(&self.mac_key).unwrap();
                mac.update(&seq.to_be_bytes());
                mac.update(&packet[..tag_at]);
                mac.finalize().into_bytes().to_vec()
            };
            packet[tag_at..].copy_from_slice(&tag);
        }
    }

    #[test]
    fn construction_matches_an_independent_composition() {
        // Initial counters that carry out of the low 32 bits, and out of all 128, within a
        // packet and between packets.
        let ivs = [
            hex("000102030405060708090a0b0c0d0e0f"),
            hex("0011223344556677 8899aabb fffffffd"),
            hex("ffffffffffffffff ffffffff fffffffe"),
        ];
        for (cipher, key_len) in [(AES128_CTR, 16), (AES256_CTR, 32)] {
            for (mac, mac_name) in [
                (Mac::Sha256Etm, HMAC_SHA256_ETM),
                (Mac::Sha512Etm, HMAC_SHA512_ETM),
            ] {
                for iv in &ivs {
                    let key: Vec<u8> = (0..key_len).map(|i| 0x60 ^ i as u8).collect();
                    let mac_key: Vec<u8> = (0..mac.key_bytes()).map(|i| 0xc0 ^ i as u8).collect();
                    let mut sealer = EtmSealer::new(&key, iv, &mac_key, mac).unwrap();
                    let mut opener = EtmOpener::new(&key, iv, &mac_key, mac).unwrap();
                    let mut reference = Reference::new(&key, iv, &mac_key);
                    for (seq, payload) in [
                        (7u32, &b"one"[..]),
                        (8, &[0x33; 60][..]),
                        (u32::MAX, &[0x44; 32768][..]),
                    ] {
                        let plain = build_packet(payload, BLOCK_BYTES, mac.key_bytes());
                        let mut ours = plain.clone();
                        sealer.seal(seq, &mut ours);
                        let mut theirs = plain.clone();
                        reference.seal(seq, &mut theirs);
                        assert_eq!(ours, theirs, "{cipher} {mac_name} iv {iv:02x?} seq {seq}");
                        assert_eq!(ours[..4], plain[..4], "length in the clear");
                        opener.open(seq, &mut ours).unwrap();
                        let body = 4..plain.len() - mac.key_bytes();
                        assert_eq!(ours[body.clone()], plain[body]);
                    }
                }
            }
        }
    }
}
