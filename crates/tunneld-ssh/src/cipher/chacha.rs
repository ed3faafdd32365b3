//! `chacha20-poly1305@openssh.com` (OpenSSH PROTOCOL.chacha20poly1305): two ChaCha20 keys
//! from one 64-byte key, K_2 (the first 32 bytes) for the packet and the Poly1305 key, K_1
//! (the last 32 bytes) for the length; the nonce is the sequence number as a `uint64`.
//! Poly1305 is keyed from K_2's block 0, the packet is encrypted from block 1, and the tag
//! covers `encrypted length || ciphertext`.
//!
//! Runs on aws-lc-rs' implementation of exactly this construction.

use aws_lc_rs::aead::chacha20_poly1305_openssh::{self as openssh, OpeningKey, SealingKey};

use super::protect::{
    CipherError, LENGTH_FIELD_BYTES, Opener, Sealer, split_for_open, split_for_seal,
};

/// Bytes of key: K_2 then K_1, 32 each.
pub(super) const KEY_BYTES: usize = openssh::KEY_LEN;
/// Bytes of Poly1305 tag.
const TAG_BYTES: usize = openssh::TAG_LEN;
/// The padding alignment OpenSSH uses for this cipher (its "block size" of 8).
const BLOCK_BYTES: usize = 8;

/// Seals packets with `chacha20-poly1305@openssh.com`.
pub(super) struct ChaChaSealer {
    key: SealingKey,
}

impl ChaChaSealer {
    /// A sealer for a 64-byte key; `None` for another size.
    pub(super) fn new(key: &[u8]) -> Option<Self> {
        let key: &[u8; KEY_BYTES] = key.try_into().ok()?;
        Some(ChaChaSealer {
            key: SealingKey::new(key),
        })
    }
}

impl Sealer for ChaChaSealer {
    fn block_size(&self) -> usize {
        BLOCK_BYTES
    }

    fn tag_len(&self) -> usize {
        TAG_BYTES
    }

    fn seal(&mut self, seq: u32, packet: &mut [u8]) {
        let (_, body, _) = split_for_seal(packet, TAG_BYTES, BLOCK_BYTES);
        let body_end = LENGTH_FIELD_BYTES + body.len();
        let (packet, tag) = packet.split_at_mut(body_end);
        let Ok(tag) = <&mut [u8; TAG_BYTES]>::try_from(tag) else {
            unreachable!("split_for_seal leaves exactly the tag room");
        };
        self.key.seal_in_place(seq, packet, tag);
    }
}

/// Opens packets sealed with `chacha20-poly1305@openssh.com`.
pub(super) struct ChaChaOpener {
    key: OpeningKey,
}

impl ChaChaOpener {
    /// An opener for a 64-byte key; `None` for another size.
    pub(super) fn new(key: &[u8]) -> Option<Self> {
        let key: &[u8; KEY_BYTES] = key.try_into().ok()?;
        Some(ChaChaOpener {
            key: OpeningKey::new(key),
        })
    }
}

impl Opener for ChaChaOpener {
    fn block_size(&self) -> usize {
        BLOCK_BYTES
    }

    fn tag_len(&self) -> usize {
        TAG_BYTES
    }

    fn packet_length(&mut self, seq: u32, first4: [u8; 4]) -> u32 {
        u32::from_be_bytes(self.key.decrypt_packet_length(seq, first4))
    }

    fn open(&mut self, seq: u32, packet: &mut [u8]) -> Result<(), CipherError> {
        let body_end = LENGTH_FIELD_BYTES + split_for_open(packet, TAG_BYTES, BLOCK_BYTES)?.1.len();
        let (packet, tag) = packet.split_at_mut(body_end);
        let tag: &[u8; TAG_BYTES] = (&*tag).try_into().map_err(|_| CipherError::BadTag)?;
        // aws-lc-rs checks the tag in constant time before it decrypts anything.
        self.key
            .open_in_place(seq, packet, tag)
            .map(|_| ())
            .map_err(|_| CipherError::BadTag)
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{build_packet, hex};
    use super::*;
    use chacha20::cipher::{KeyIvInit, StreamCipher, StreamCipherSeek};
    use chacha20::{ChaCha20, ChaCha20Legacy};
    use poly1305::Poly1305;
    use poly1305::universal_hash::KeyInit;

    /// RFC 8439 §2.4.2's key and plaintext ("Ladies and Gentlemen ... sunscreen").
    const SUNSCREEN: &[u8] = b"Ladies and Gentlemen of the class of '99: If I could offer you \
only one tip for the future, sunscreen would be it.";

    fn key_0_to_31() -> [u8; 32] {
        std::array::from_fn(|i| i as u8)
    }

    /// The ChaCha20 keystream of RustCrypto's IETF variant (32-bit counter, 96-bit nonce).
    fn ietf_keystream(key: &[u8; 32], nonce: &[u8; 12], counter: u32, len: usize) -> Vec<u8> {
        let mut cipher = ChaCha20::new(key.into(), nonce.into());
        cipher.seek(u64::from(counter) * 64);
        let mut out = vec![0u8; len];
        cipher.apply_keystream(&mut out);
        out
    }

    // RFC 8439 §2.3.2: the block function for key 00..1f, nonce 00:00:00:09:00:00:00:4a:00:00:00:00,
    // block count 1 (checks the reference used below).
    #[test]
    fn rfc8439_2_3_2_block_function() {
        let nonce = hex("000000090000004a00000000");
        let block = ietf_keystream(&key_0_to_31(), &nonce.try_into().unwrap(), 1, 64);
        assert_eq!(
            block,
            hex("10 f1 e7 e4 d1 3b 59 15 50 0f dd 1f a3 20 71 c4
                 c7 d1 f4 c7 33 c0 68 03 04 22 aa 9a c3 d4 6c 4e
                 d2 82 64 46 07 9f aa 09 14 c2 d7 05 d9 8b 02 a2
                 b5 12 9c d1 de 16 4e b9 cb d0 83 e8 a2 50 3c 4e")
        );
    }

    // RFC 8439 §2.4.2: encryption with key 00..1f, nonce 00:00:00:00:00:00:00:4a:00:00:00:00,
    // initial counter 1.
    #[test]
    fn rfc8439_2_4_2_encryption() {
        let nonce = hex("000000000000004a00000000");
        let mut cipher = ChaCha20::new_from_slices(&key_0_to_31(), &nonce).unwrap();
        cipher.seek(64u64);
        let mut text = SUNSCREEN.to_vec();
        cipher.apply_keystream(&mut text);
        assert_eq!(
            text,
            hex("6e 2e 35 9a 25 68 f9 80 41 ba 07 28 dd 0d 69 81
                 e9 7e 7a ec 1d 43 60 c2 0a 27 af cc fd 9f ae 0b
                 f9 1b 65 c5 52 47 33 ab 8f 59 3d ab cd 62 b3 57
                 16 39 d6 24 e6 51 52 ab 8f 53 0c 35 9f 08 61 d8
                 07 ca 0d bf 50 0d 6a 61 56 a3 8e 08 8a 22 b6 5e
                 52 bc 51 4d 16 cc f8 06 81 8c e9 1a b7 79 37 36
                 5a f9 0b bf 74 a3 5b e6 b4 0b 8e ed f2 78 5e 42
                 87 4d")
        );
    }

    // RFC 8439 §2.5.2: Poly1305 of "Cryptographic Forum Research Group".
    #[test]
    fn rfc8439_2_5_2_poly1305() {
        let key = hex("85:d6:be:78:57:55:6d:33:7f:44:52:fe:42:d5:06:a8:
                       01:03:80:8a:fb:0d:b2:fd:4a:bf:f6:af:41:49:f5:1b");
        let tag = Poly1305::new_from_slice(&key)
            .unwrap()
            .compute_unpadded(b"Cryptographic Forum Research Group");
        assert_eq!(
            tag.as_slice(),
            hex("a8:06:1d:c1:30:51:36:c6:c2:2b:8b:af:0c:01:27:a9")
        );
    }

    /// RFC 8439 §A.1 test vectors #1, #2, #3 and #5 (key, nonce, block counter → block):
    /// zero key and nonce, blocks 0 and 1; key 00..01, block 1; zero key, nonce 00..02, block 0.
    const A1_1: &str = "76 b8 e0 ad a0 f1 3d 90 40 5d 6a e5 53 86 bd 28
        bd d2 19 b8 a0 8d ed 1a a8 36 ef cc 8b 77 0d c7
        da 41 59 7c 51 57 48 8d 77 24 e0 3f b8 d8 4a 37
        6a 43 b8 f4 15 18 a1 1c c3 87 b6 69 b2 ee 65 86";
    const A1_2: &str = "9f 07 e7 be 55 51 38 7a 98 ba 97 7c 73 2d 08 0d
        cb 0f 29 a0 48 e3 65 69 12 c6 53 3e 32 ee 7a ed
        29 b7 21 76 9c e6 4e 43 d5 71 33 b0 74 d8 39 d5
        31 ed 1f 28 51 0a fb 45 ac e1 0a 1f 4b 79 4d 6f";
    const A1_3: &str = "3a eb 52 24 ec f8 49 92 9b 9d 82 8d b1 ce d4 dd
        83 20 25 e8 01 8b 81 60 b8 22 84 f3 c9 49 aa 5a
        8e ca 00 bb b4 a7 3b da d1 92 b5 c4 2f 73 f2 fd
        4e 27 36 44 c8 b3 61 25 a6 4a dd eb 00 6c 13 a0";
    const A1_5: &str = "c2 c6 4d 37 8c d5 36 37 4a e2 04 b9 ef 93 3f cd
        1a 8b 22 88 b3 df a4 96 72 ab 76 5b 54 ee 27 c7
        8a 97 0e 0e 95 5c 14 f3 a8 8e 74 1b 97 c2 86 f7
        5f 8f c2 99 e8 14 83 62 fa 19 8a 39 53 1b ed 6d";

    #[test]
    fn rfc8439_a_1_block_function() {
        let zero = [0u8; 32];
        let mut last_one = [0u8; 32];
        last_one[31] = 1;
        let mut nonce_2 = [0u8; 12];
        nonce_2[11] = 2;
        assert_eq!(ietf_keystream(&zero, &[0; 12], 0, 64), hex(A1_1));
        assert_eq!(ietf_keystream(&zero, &[0; 12], 1, 64), hex(A1_2));
        assert_eq!(ietf_keystream(&last_one, &[0; 12], 1, 64), hex(A1_3));
        assert_eq!(ietf_keystream(&zero, &nonce_2, 0, 64), hex(A1_5));
    }

    /// The construction's keystreams are RFC 8439 §A.1's: with K_2 = 00..01 and K_1 = 0,
    /// sequence number 0 encrypts the length with K_1's block 0 (#1) and the packet with
    /// K_2's block 1 (#3). With both keys zero, sequence number 2 puts the nonce where #5
    /// has it (block 0: the length's keystream and the Poly1305 key). The tag is Poly1305
    /// keyed with the first 32 bytes of K_2's block 0 over the whole encrypted packet.
    #[test]
    fn construction_keystreams_are_rfc8439_a_1() {
        let mut key = [0u8; KEY_BYTES];
        key[31] = 1; // K_2 = 00..01, K_1 = 0
        let mut sealer = ChaChaSealer::new(&key).unwrap();
        let mut packet = vec![0u8; 4 + 64 + TAG_BYTES];
        sealer.seal(0, &mut packet);
        assert_eq!(packet[..4], hex(A1_1)[..4], "length under K_1, block 0");
        assert_eq!(packet[4..68], hex(A1_3), "packet under K_2, block 1");
        let k2_block0 = ietf_keystream(&key[..32].try_into().unwrap(), &[0; 12], 0, 32);
        let tag = Poly1305::new_from_slice(&k2_block0)
            .unwrap()
            .compute_unpadded(&packet[..68]);
        assert_eq!(packet[68..], tag[..]);

        let mut sealer = ChaChaSealer::new(&[0u8; KEY_BYTES]).unwrap();
        let mut packet = vec![0u8; 4 + 64 + TAG_BYTES];
        sealer.seal(2, &mut packet);
        assert_eq!(packet[..4], hex(A1_5)[..4], "seq 2, length");
        let tag = Poly1305::new_from_slice(&hex(A1_5)[..32])
            .unwrap()
            .compute_unpadded(&packet[..68]);
        assert_eq!(packet[68..], tag[..], "seq 2, tag");

        let mut packet = vec![0u8; 4 + 64 + TAG_BYTES];
        sealer.seal(0, &mut packet);
        assert_eq!(packet[4..68], hex(A1_2));
        let tag = Poly1305::new_from_slice(&hex(A1_1)[..32])
            .unwrap()
            .compute_unpadded(&packet[..68]);
        assert_eq!(packet[68..], tag[..]);
    }

    /// The construction composed from RustCrypto's original (64-bit nonce) ChaCha20 and
    /// Poly1305, as PROTOCOL.chacha20poly1305 describes it.
    fn reference_seal(key: &[u8; 64], seq: u32, packet: &mut [u8]) {
        let (k_2, k_1) = key.split_at(32);
        let nonce = u64::from(seq).to_be_bytes();
        let tag_at = packet.len() - 16;
        let mut length = ChaCha20Legacy::new_from_slices(k_1, &nonce).unwrap();
        length.apply_keystream(&mut packet[..4]);
        let mut body = ChaCha20Legacy::new_from_slices(k_2, &nonce).unwrap();
        let mut poly_key = [0u8; 32];
        body.apply_keystream(&mut poly_key);
        body.seek(64u64);
        body.apply_keystream(&mut packet[4..tag_at]);
        let tag = Poly1305::new((&poly_key).into()).compute_unpadded(&packet[..tag_at]);
        packet[tag_at..].copy_from_slice(&tag);
    }

    #[test]
    fn construction_matches_an_independent_composition() {
        let key: [u8; 64] = std::array::from_fn(|i| (i as u8).wrapping_mul(7).wrapping_add(3));
        let mut sealer = ChaChaSealer::new(&key).unwrap();
        let mut opener = ChaChaOpener::new(&key).unwrap();
        for (seq, payload) in [
            (0u32, &b"first"[..]),
            (1, &[0x42; 1000][..]),
            (0x0102_0304, &b"a larger sequence number"[..]),
            (u32::MAX, &[0x17; 32768][..]),
        ] {
            let plain = build_packet(payload, BLOCK_BYTES, TAG_BYTES);
            let mut ours = plain.clone();
            sealer.seal(seq, &mut ours);
            let mut theirs = plain.clone();
            reference_seal(&key, seq, &mut theirs);
            assert_eq!(ours, theirs, "seq {seq}");
            let first4: [u8; 4] = ours[..4].try_into().unwrap();
            assert_eq!(
                opener.packet_length(seq, first4),
                (plain.len() - 4 - TAG_BYTES) as u32
            );
            opener.open(seq, &mut ours).unwrap();
            assert_eq!(
                ours[4..plain.len() - TAG_BYTES],
                plain[4..plain.len() - TAG_BYTES]
            );
        }
    }
}
