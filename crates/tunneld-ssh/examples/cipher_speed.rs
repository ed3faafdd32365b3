//! Speed of each packet construction with each implementation we could use: seals and opens
//! full channel data packets (32 KiB encrypted part) in lockstep, and prints MB/s.
//!
//! `cargo run --release -p tunneld-ssh --example cipher_speed [MiB per run]`
//!
//! Prints, per construction and library, MB/s of encrypted part for sealing, for opening, and
//! for both one after the other (what one direction of a connection costs its two ends).
//!
//! "aws-lc-rs" is the crate's own code (its cipher module is compiled into this example);
//! "RustCrypto" composes the same constructions from the `chacha20`, `poly1305`, `aes-gcm`,
//! `ctr`, `aes`, `hmac` and `sha2` crates behind the same traits.

#![forbid(unsafe_code)]

#[allow(dead_code)]
#[path = "../src/cipher/mod.rs"]
mod cipher;

use std::hint::black_box;
use std::time::Duration;

use cipher::{DirectionKeys, Opener, Sealer};
use zeroize::Zeroizing;

/// Bytes of the encrypted part of one packet: a full 32 KiB channel data packet.
const BODY_BYTES: usize = 32 * 1024;
/// Packets sealed, then opened, at a time (512 KiB of packets).
const BATCH: usize = 16;
/// Rounds over all candidates; each candidate's best round is printed.
const ROUNDS: usize = 5;

fn main() {
    let mib_per_run: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(128);
    let packets = (mib_per_run * 1024 * 1024 / BODY_BYTES).div_ceil(BATCH) * BATCH;
    println!(
        "{packets} packets of {BODY_BYTES} bytes per run, thread CPU time, best of {ROUNDS} rounds; AES acceleration: {}",
        cipher::preferred_ciphers()[0] != cipher::CHACHA20_POLY1305
    );
    println!(
        "| {:<45} | {:<10} | {:>9} | {:>9} | {:>14} |",
        "construction", "library", "seal MB/s", "open MB/s", "seal+open MB/s"
    );
    println!(
        "|{:-<47}|{:-<12}|{:-<11}|{:-<11}|{:-<16}|",
        "", "", "", "", ""
    );
    let constructions: [(&str, Option<&str>); 7] = [
        (cipher::CHACHA20_POLY1305, None),
        (cipher::AES128_GCM, None),
        (cipher::AES256_GCM, None),
        (cipher::AES128_CTR, Some(cipher::HMAC_SHA256_ETM)),
        (cipher::AES128_CTR, Some(cipher::HMAC_SHA512_ETM)),
        (cipher::AES256_CTR, Some(cipher::HMAC_SHA256_ETM)),
        (cipher::AES256_CTR, Some(cipher::HMAC_SHA512_ETM)),
    ];
    // Rounds go over every candidate in turn, and each candidate keeps its best round: on a
    // shared machine, interference only ever slows a round down.
    type Make = Box<dyn Fn() -> (Box<dyn Sealer>, Box<dyn Opener>)>;
    let mut candidates: Vec<(String, &str, Make)> = Vec::new();
    for (name, mac) in constructions {
        let label = match mac {
            Some(mac) => format!("{name} + {}", mac.trim_end_matches("@openssh.com")),
            None => name.to_string(),
        };
        let ours: Make = Box::new(move || {
            let keys = keys_for(name, mac);
            (
                cipher::sealer(name, mac, &keys).expect("our sealer"),
                cipher::opener(name, mac, &keys).expect("our opener"),
            )
        });
        candidates.push((label.clone(), "aws-lc-rs", ours));
        let theirs: Make = Box::new(move || rustcrypto::pair(name, mac, &keys_for(name, mac)));
        candidates.push((label, "RustCrypto", theirs));
    }
    let mut best = vec![(Duration::MAX, Duration::MAX); candidates.len()];
    for _ in 0..ROUNDS {
        for (i, (_, _, make)) in candidates.iter().enumerate() {
            let (seal, open) = measure(make, packets);
            best[i].0 = best[i].0.min(seal);
            best[i].1 = best[i].1.min(open);
        }
    }
    for ((label, library, _), (seal, open)) in candidates.iter().zip(best) {
        report(label, library, seal, open, packets * BODY_BYTES);
    }
}

fn keys_for(cipher: &str, mac: Option<&str>) -> DirectionKeys {
    let sizes = cipher::key_sizes(cipher, mac).expect("a construction we implement");
    let fill = |n: usize, base: u8| Zeroizing::new((0..n).map(|i| base ^ i as u8).collect());
    DirectionKeys {
        iv: fill(sizes.iv, 0x11),
        key: fill(sizes.key, 0x22),
        mac_key: fill(sizes.mac_key, 0x33),
    }
}

/// This thread's CPU time: what the work cost, whatever else runs on the machine.
fn cpu_time() -> Duration {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(now.tv_sec as u64, now.tv_nsec as u32)
}

/// Seal and open time (CPU) for `packets` packets, sealed in batches of [`BATCH`] and then
/// opened.
fn measure(
    make: &dyn Fn() -> (Box<dyn Sealer>, Box<dyn Opener>),
    packets: usize,
) -> (Duration, Duration) {
    let (mut sealer, mut opener) = make();
    let tag = sealer.tag_len();
    let mut plain = vec![0x5au8; 4 + BODY_BYTES + tag];
    plain[..4].copy_from_slice(&(BODY_BYTES as u32).to_be_bytes());
    plain[4] = 8;
    let mut batch = vec![plain.clone(); BATCH];
    let (mut seal, mut open) = (Duration::ZERO, Duration::ZERO);
    let mut seq = 0u32;
    for _ in 0..packets.div_ceil(BATCH) {
        for packet in &mut batch {
            packet.copy_from_slice(&plain);
        }
        let start = cpu_time();
        for (i, packet) in batch.iter_mut().enumerate() {
            sealer.seal(seq + i as u32, packet);
        }
        let sealed = cpu_time();
        for (i, packet) in batch.iter_mut().enumerate() {
            let first4 = [packet[0], packet[1], packet[2], packet[3]];
            let length = opener.packet_length(seq + i as u32, first4);
            opener
                .open(seq + i as u32, packet)
                .expect("our own packet opens");
            assert_eq!(length as usize, BODY_BYTES);
        }
        open += cpu_time() - sealed;
        seal += sealed - start;
        black_box(&batch);
        seq += BATCH as u32;
    }
    for packet in &batch {
        assert_eq!(packet[4..4 + BODY_BYTES], plain[4..4 + BODY_BYTES]);
    }
    (seal, open)
}

fn report(label: &str, library: &str, seal: Duration, open: Duration, bytes: usize) {
    let mbps = |d: Duration| bytes as f64 / d.as_secs_f64() / 1e6;
    println!(
        "| {label:<45} | {library:<10} | {:>9.0} | {:>9.0} | {:>14.0} |",
        mbps(seal),
        mbps(open),
        mbps(seal + open)
    );
}

/// The same constructions composed from RustCrypto crates, for comparison only.
mod rustcrypto {
    use super::cipher::{self, CipherError, DirectionKeys, Opener, Sealer};
    use aes_gcm::aead::{AeadInOut, KeyInit};
    use aes_gcm::{Aes128Gcm, Aes256Gcm};
    use chacha20::ChaCha20Legacy;
    use chacha20::cipher::{KeyIvInit, StreamCipher, StreamCipherSeek};
    use hmac::{Hmac, Mac};
    use poly1305::Poly1305;
    use sha2_011::{Sha256, Sha512};

    /// Constant-time equality of two tags of the same length.
    fn tags_equal(a: &[u8], b: &[u8]) -> bool {
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }

    pub(super) fn pair(
        name: &str,
        mac: Option<&str>,
        keys: &DirectionKeys,
    ) -> (Box<dyn Sealer>, Box<dyn Opener>) {
        match name {
            cipher::CHACHA20_POLY1305 => {
                let key: [u8; 64] = keys.key.as_slice().try_into().expect("64 bytes");
                (Box::new(ChaCha { key }), Box::new(ChaCha { key }))
            }
            cipher::AES128_GCM | cipher::AES256_GCM => {
                let make = || Gcm::new(&keys.key, &keys.iv);
                (Box::new(make()), Box::new(make()))
            }
            _ => {
                let sha512 = mac == Some(cipher::HMAC_SHA512_ETM);
                let make = || CtrEtm::new(&keys.key, &keys.iv, &keys.mac_key, sha512);
                (Box::new(make()), Box::new(make()))
            }
        }
    }

    struct ChaCha {
        key: [u8; 64],
    }

    impl ChaCha {
        /// The two keystreams for `seq`, the payload one after its Poly1305 key, and that key.
        fn streams(&self, seq: u32) -> (ChaCha20Legacy, ChaCha20Legacy, Poly1305) {
            let nonce = u64::from(seq).to_be_bytes();
            let length = ChaCha20Legacy::new_from_slices(&self.key[32..], &nonce).expect("sizes");
            let mut body = ChaCha20Legacy::new_from_slices(&self.key[..32], &nonce).expect("sizes");
            let mut poly_key = [0u8; 32];
            body.apply_keystream(&mut poly_key);
            body.seek(64u64);
            (length, body, Poly1305::new((&poly_key).into()))
        }
    }

    impl Sealer for ChaCha {
        fn block_size(&self) -> usize {
            8
        }
        fn tag_len(&self) -> usize {
            16
        }
        fn seal(&mut self, seq: u32, packet: &mut [u8]) {
            let (mut length, mut body, poly) = self.streams(seq);
            let tag_at = packet.len() - 16;
            length.apply_keystream(&mut packet[..4]);
            body.apply_keystream(&mut packet[4..tag_at]);
            let tag = poly.compute_unpadded(&packet[..tag_at]);
            packet[tag_at..].copy_from_slice(&tag);
        }
    }

    impl Opener for ChaCha {
        fn block_size(&self) -> usize {
            8
        }
        fn tag_len(&self) -> usize {
            16
        }
        fn packet_length(&mut self, seq: u32, mut first4: [u8; 4]) -> u32 {
            self.streams(seq).0.apply_keystream(&mut first4);
            u32::from_be_bytes(first4)
        }
        fn open(&mut self, seq: u32, packet: &mut [u8]) -> Result<(), CipherError> {
            let (_, mut body, poly) = self.streams(seq);
            let tag_at = packet.len() - 16;
            let tag = poly.compute_unpadded(&packet[..tag_at]);
            if !tags_equal(&tag, &packet[tag_at..]) {
                return Err(CipherError::BadTag);
            }
            body.apply_keystream(&mut packet[4..tag_at]);
            Ok(())
        }
    }

    enum GcmKey {
        Aes128(Box<Aes128Gcm>),
        Aes256(Box<Aes256Gcm>),
    }

    struct Gcm {
        key: GcmKey,
        nonce: [u8; 12],
    }

    impl Gcm {
        fn new(key: &[u8], iv: &[u8]) -> Self {
            let key = if key.len() == 16 {
                GcmKey::Aes128(Box::new(Aes128Gcm::new_from_slice(key).expect("16 bytes")))
            } else {
                GcmKey::Aes256(Box::new(Aes256Gcm::new_from_slice(key).expect("32 bytes")))
            };
            Gcm {
                key,
                nonce: iv.try_into().expect("12 bytes"),
            }
        }

        fn advance(&mut self) {
            let counter = u64::from_be_bytes(self.nonce[4..].try_into().expect("8 bytes"));
            self.nonce[4..].copy_from_slice(&counter.wrapping_add(1).to_be_bytes());
        }
    }

    impl Sealer for Gcm {
        fn block_size(&self) -> usize {
            16
        }
        fn tag_len(&self) -> usize {
            16
        }
        fn seal(&mut self, _seq: u32, packet: &mut [u8]) {
            let tag_at = packet.len() - 16;
            let (head, tag_room) = packet.split_at_mut(tag_at);
            let (length, body) = head.split_at_mut(4);
            let nonce = (&self.nonce).into();
            let tag = match &self.key {
                GcmKey::Aes128(k) => k.encrypt_inout_detached(nonce, length, body.into()),
                GcmKey::Aes256(k) => k.encrypt_inout_detached(nonce, length, body.into()),
            }
            .expect("a packet-sized message");
            tag_room.copy_from_slice(&tag);
            self.advance();
        }
    }

    impl Opener for Gcm {
        fn block_size(&self) -> usize {
            16
        }
        fn tag_len(&self) -> usize {
            16
        }
        fn packet_length(&mut self, _seq: u32, first4: [u8; 4]) -> u32 {
            u32::from_be_bytes(first4)
        }
        fn open(&mut self, _seq: u32, packet: &mut [u8]) -> Result<(), CipherError> {
            let tag_at = packet.len() - 16;
            let (head, tag) = packet.split_at_mut(tag_at);
            let (length, body) = head.split_at_mut(4);
            let nonce = (&self.nonce).into();
            let tag = (&*tag).try_into().expect("16 bytes");
            match &self.key {
                GcmKey::Aes128(k) => k.decrypt_inout_detached(nonce, length, body.into(), tag),
                GcmKey::Aes256(k) => k.decrypt_inout_detached(nonce, length, body.into(), tag),
            }
            .map_err(|_| CipherError::BadTag)?;
            self.advance();
            Ok(())
        }
    }

    enum CtrKey {
        Aes128(ctr::Ctr128BE<aes::Aes128>),
        Aes256(ctr::Ctr128BE<aes::Aes256>),
    }

    enum HmacKey {
        Sha256(Hmac<Sha256>),
        Sha512(Hmac<Sha512>),
    }

    struct CtrEtm {
        ctr: CtrKey,
        mac: HmacKey,
    }

    impl CtrEtm {
        fn new(key: &[u8], iv: &[u8], mac_key: &[u8], sha512: bool) -> Self {
            let ctr = if key.len() == 16 {
                CtrKey::Aes128(ctr::Ctr128BE::new_from_slices(key, iv).expect("sizes"))
            } else {
                CtrKey::Aes256(ctr::Ctr128BE::new_from_slices(key, iv).expect("sizes"))
            };
            let mac = if sha512 {
                HmacKey::Sha512(KeyInit::new_from_slice(mac_key).expect("any size"))
            } else {
                HmacKey::Sha256(KeyInit::new_from_slice(mac_key).expect("any size"))
            };
            CtrEtm { ctr, mac }
        }

        fn tag_bytes(&self) -> usize {
            match self.mac {
                HmacKey::Sha256(_) => 32,
                HmacKey::Sha512(_) => 64,
            }
        }

        fn apply(&mut self, data: &mut [u8]) {
            match &mut self.ctr {
                CtrKey::Aes128(c) => c.apply_keystream(data),
                CtrKey::Aes256(c) => c.apply_keystream(data),
            }
        }

        fn tag(&self, seq: u32, covered: &[u8], out: &mut [u8]) {
            match &self.mac {
                HmacKey::Sha256(m) => {
                    let mut m = m.clone();
                    m.update(&seq.to_be_bytes());
                    m.update(covered);
                    out.copy_from_slice(&m.finalize().into_bytes());
                }
                HmacKey::Sha512(m) => {
                    let mut m = m.clone();
                    m.update(&seq.to_be_bytes());
                    m.update(covered);
                    out.copy_from_slice(&m.finalize().into_bytes());
                }
            }
        }
    }

    impl Sealer for CtrEtm {
        fn block_size(&self) -> usize {
            16
        }
        fn tag_len(&self) -> usize {
            self.tag_bytes()
        }
        fn seal(&mut self, seq: u32, packet: &mut [u8]) {
            let tag_at = packet.len() - self.tag_bytes();
            self.apply(&mut packet[4..tag_at]);
            let (covered, tag) = packet.split_at_mut(tag_at);
            self.tag(seq, covered, tag);
        }
    }

    impl Opener for CtrEtm {
        fn block_size(&self) -> usize {
            16
        }
        fn tag_len(&self) -> usize {
            self.tag_bytes()
        }
        fn packet_length(&mut self, _seq: u32, first4: [u8; 4]) -> u32 {
            u32::from_be_bytes(first4)
        }
        fn open(&mut self, seq: u32, packet: &mut [u8]) -> Result<(), CipherError> {
            let tag_at = packet.len() - self.tag_bytes();
            let mut want = [0u8; 64];
            let want = &mut want[..self.tag_bytes()];
            self.tag(seq, &packet[..tag_at], want);
            if !tags_equal(want, &packet[tag_at..]) {
                return Err(CipherError::BadTag);
            }
            self.apply(&mut packet[4..tag_at]);
            Ok(())
        }
    }
}
