//! The constructions against each other and against misuse: names, key sizes, sealing
//! and opening in sequence, tampering, sequence numbers and short packets.

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
