//! `aes128-gcm@openssh.com` and `aes256-gcm@openssh.com`: RFC 5647 as OpenSSH does it. The
//! 12-byte nonce is the IV from key derivation, a 4-byte fixed field and an 8-byte invocation
//! counter that goes up by one after each packet (independent of the sequence number, which
//! this construction does not use); the `uint32 packet_length` is additional authenticated
//! data in the clear; the tag is 16 bytes.
//!
//! Runs on aws-lc-rs' AES-GCM.

use aws_lc_rs::aead::{AES_128_GCM, AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};

use super::protect::{CipherError, Opener, Sealer, split_for_open, split_for_seal};

/// Bytes of IV: the fixed field and the invocation counter (RFC 5647 §7.1).
pub(super) const IV_BYTES: usize = NONCE_LEN;
/// Bytes of tag.
const TAG_BYTES: usize = 16;
/// AES block size, to which the encrypted part is padded (RFC 5647 §7.2).
const BLOCK_BYTES: usize = 16;

/// The nonce of RFC 5647 §7.1 and the key.
struct GcmState {
    key: LessSafeKey,
    /// The fixed field, the first 4 bytes of the IV.
    fixed: [u8; 4],
    /// The invocation counter, the last 8 bytes of the IV, for the next packet.
    counter: u64,
}

impl GcmState {
    fn new(key: &[u8], iv: &[u8]) -> Option<Self> {
        let algorithm = match key.len() {
            16 => &AES_128_GCM,
            32 => &AES_256_GCM,
            _ => return None,
        };
        let iv: &[u8; IV_BYTES] = iv.try_into().ok()?;
        let (fixed, counter) = iv.split_at(4);
        Some(GcmState {
            key: LessSafeKey::new(UnboundKey::new(algorithm, key).ok()?),
            fixed: fixed.try_into().ok()?,
            counter: u64::from_be_bytes(counter.try_into().ok()?),
        })
    }

    /// The nonce for the current packet.
    fn nonce(&self) -> Nonce {
        let mut nonce = [0u8; IV_BYTES];
        nonce[..4].copy_from_slice(&self.fixed);
        nonce[4..].copy_from_slice(&self.counter.to_be_bytes());
        // Unique: the counter advances after each packet, and rekeying comes long before
        // 2^64 packets (RFC 4344 §3.1).
        Nonce::assume_unique_for_key(nonce)
    }

    /// RFC 5647 §7.1: `invocation_counter` is incremented after each packet, modulo 2^64.
    fn advance(&mut self) {
        self.counter = self.counter.wrapping_add(1);
    }
}

/// Seals packets with AES-GCM.
pub(super) struct GcmSealer {
    state: GcmState,
}

impl GcmSealer {
    /// A sealer for a 16- or 32-byte key and a 12-byte IV; `None` for other sizes.
    pub(super) fn new(key: &[u8], iv: &[u8]) -> Option<Self> {
        Some(GcmSealer {
            state: GcmState::new(key, iv)?,
        })
    }
}

impl Sealer for GcmSealer {
    fn block_size(&self) -> usize {
        BLOCK_BYTES
    }

    fn tag_len(&self) -> usize {
        TAG_BYTES
    }

    fn seal(&mut self, _seq: u32, packet: &mut [u8]) {
        let (length, body, tag_room) = split_for_seal(packet, TAG_BYTES, BLOCK_BYTES);
        let nonce = self.state.nonce();
        // Fails only for a body beyond AES-GCM's 2^36-byte limit, far past any packet.
        let Ok(tag) = self
            .state
            .key
            .seal_in_place_separate_tag(nonce, Aad::from(&*length), body)
        else {
            panic!("AES-GCM refused a packet of {} bytes", body.len());
        };
        tag_room.copy_from_slice(tag.as_ref());
        self.state.advance();
    }
}

/// Opens packets sealed with AES-GCM.
pub(super) struct GcmOpener {
    state: GcmState,
}

impl GcmOpener {
    /// An opener for a 16- or 32-byte key and a 12-byte IV; `None` for other sizes.
    pub(super) fn new(key: &[u8], iv: &[u8]) -> Option<Self> {
        Some(GcmOpener {
            state: GcmState::new(key, iv)?,
        })
    }
}

impl Opener for GcmOpener {
    fn block_size(&self) -> usize {
        BLOCK_BYTES
    }

    fn tag_len(&self) -> usize {
        TAG_BYTES
    }

    fn packet_length(&mut self, _seq: u32, first4: [u8; 4]) -> u32 {
        u32::from_be_bytes(first4)
    }

    /// GCM checks the tag and decrypts in one pass; on a bad tag the encrypted part is left
    /// unspecified (the caller must drop it, as for any failed packet) and the counter stays.
    fn open(&mut self, _seq: u32, packet: &mut [u8]) -> Result<(), CipherError> {
        let (length, body, tag) = split_for_open(packet, TAG_BYTES, BLOCK_BYTES)?;
        let nonce = self.state.nonce();
        self.state
            .key
            .open_in_place_separate_tag(nonce, Aad::from(&*length), tag, body)
            .map_err(|_| CipherError::BadTag)?;
        self.state.advance();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{build_packet, hex};
    use super::*;
    use aes_gcm::aead::{AeadInOut, KeyInit};
    use aes_gcm::{Aes128Gcm, Aes256Gcm};

    /// One GCM test case: key, IV, plaintext, AAD, ciphertext, tag.
    struct Case {
        key: &'static str,
        iv: &'static str,
        plain: &'static str,
        aad: &'static str,
        cipher: &'static str,
        tag: &'static str,
    }

    const K128: &str = "feffe9928665731c6d6a8f9467308308";
    const K256: &str = "feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308";
    const IV: &str = "cafebabefacedbaddecaf888";
    const P64: &str = "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72
                       1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b391aafd255";
    const P60: &str = "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72
                       1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39";
    const AAD: &str = "feedfacedeadbeeffeedfacedeadbeefabaddad2";

    /// McGrew & Viega, "The Galois/Counter Mode of Operation (GCM)", appendix B, test
    /// cases 3, 4 (AES-128) and 15, 16 (AES-256).
    const CASES: [Case; 4] = [
        Case {
            key: K128,
            iv: IV,
            plain: P64,
            aad: "",
            cipher: "42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e
                     21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e091473f5985",
            tag: "4d5c2af327cd64a62cf35abd2ba6fab4",
        },
        Case {
            key: K128,
            iv: IV,
            plain: P60,
            aad: AAD,
            cipher: "42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e
                     21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e091",
            tag: "5bc94fbc3221a5db94fae95ae7121a47",
        },
        Case {
            key: K256,
            iv: IV,
            plain: P64,
            aad: "",
            cipher: "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa
                     8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662898015ad",
            tag: "b094dac5d93471bdec1a502270e3cc6c",
        },
        Case {
            key: K256,
            iv: IV,
            plain: P60,
            aad: AAD,
            cipher: "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa
                     8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662",
            tag: "76fc6ece0f4e1768cddf8853bb2d551b",
        },
    ];

    #[test]
    fn gcm_spec_test_cases_3_4_15_16() {
        for (i, case) in CASES.iter().enumerate() {
            let algorithm = if hex(case.key).len() == 16 {
                &AES_128_GCM
            } else {
                &AES_256_GCM
            };
            let key = LessSafeKey::new(UnboundKey::new(algorithm, &hex(case.key)).unwrap());
            let nonce = || Nonce::assume_unique_for_key(hex(case.iv).try_into().unwrap());
            let mut text = hex(case.plain);
            let tag = key
                .seal_in_place_separate_tag(nonce(), Aad::from(hex(case.aad)), &mut text)
                .unwrap();
            assert_eq!(text, hex(case.cipher), "case {i}");
            assert_eq!(tag.as_ref(), hex(case.tag), "case {i}");
            key.open_in_place_separate_tag(
                nonce(),
                Aad::from(hex(case.aad)),
                tag.as_ref(),
                &mut text,
            )
            .unwrap();
            assert_eq!(text, hex(case.plain), "case {i}");
        }
    }

    /// The construction composed from RustCrypto's AES-GCM: nonce = fixed || counter,
    /// counter + 1 per packet, the length as AAD.
    fn reference_seal(key: &[u8], iv: &[u8; 12], packets: u64, packet: &mut [u8]) {
        let mut nonce = *iv;
        let counter = u64::from_be_bytes(iv[4..].try_into().unwrap()).wrapping_add(packets);
        nonce[4..].copy_from_slice(&counter.to_be_bytes());
        let tag_at = packet.len() - TAG_BYTES;
        let (head, tag_room) = packet.split_at_mut(tag_at);
        let (length, body) = head.split_at_mut(4);
        let tag = if key.len() == 16 {
            Aes128Gcm::new_from_slice(key)
                .unwrap()
                .encrypt_inout_detached((&nonce).into(), length, body.into())
                .unwrap()
        } else {
            Aes256Gcm::new_from_slice(key)
                .unwrap()
                .encrypt_inout_detached((&nonce).into(), length, body.into())
                .unwrap()
        };
        tag_room.copy_from_slice(&tag);
    }

    #[test]
    fn construction_matches_an_independent_composition() {
        for key_len in [16, 32] {
            let key: Vec<u8> = (0..key_len).map(|i| 0x30 + i as u8).collect();
            // A counter about to wrap: it must wrap in 64 bits, leaving the fixed field alone.
            let iv: [u8; 12] = hex("0a0b0c0d fffffffffffffffe").try_into().unwrap();
            let mut sealer = GcmSealer::new(&key, &iv).unwrap();
            let mut opener = GcmOpener::new(&key, &iv).unwrap();
            for n in 0..4u64 {
                let plain = build_packet(&vec![n as u8; 40 + n as usize], BLOCK_BYTES, TAG_BYTES);
                let mut ours = plain.clone();
                // The sequence number plays no part.
                sealer.seal(1000 - n as u32, &mut ours);
                let mut theirs = plain.clone();
                reference_seal(&key, &iv, n, &mut theirs);
                assert_eq!(ours, theirs, "key {key_len}, packet {n}");
                assert_eq!(ours[..4], plain[..4], "length in the clear");
                opener.open(0, &mut ours).unwrap();
                assert_eq!(ours[4..plain.len() - 16], plain[4..plain.len() - 16]);
            }
        }
    }
}
