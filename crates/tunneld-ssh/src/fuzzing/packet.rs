//! The packet reader (`packet::Incoming`) fed a byte stream, clear or sealed.

use zeroize::Zeroizing;

use super::{Input, ReadSizes};
use crate::cipher::{self, DirectionKeys};
use crate::packet::{Incoming, MAX_PACKET_LENGTH_BYTES, Outgoing};

/// The largest tag of our packet constructions (hmac-sha2-512-etm), as in `packet.rs`.
const MAX_TAG_BYTES: usize = 64;
/// The smallest read buffer `packet::Incoming` allocates (its idle size), as in `packet.rs`.
const READ_IDLE_BYTES: usize = 4 * 1024;
/// The most the packet reader may hold: the largest packet with its length field and tag,
/// and one more read.
const MAX_READ_BUFFER_BYTES: usize = 4 + MAX_PACKET_LENGTH_BYTES + MAX_TAG_BYTES + READ_IDLE_BYTES;

/// The protections the packet target uses: none, and three constructions with fixed keys.
const PACKET_PROTECTIONS: [(Option<&str>, Option<&str>); 4] = [
    (None, None),
    (Some(cipher::CHACHA20_POLY1305), None),
    (Some(cipher::AES128_GCM), None),
    (Some(cipher::AES128_CTR), Some(cipher::HMAC_SHA256_ETM)),
];

fn fixed_keys(cipher_name: &str, mac: Option<&str>) -> DirectionKeys {
    let sizes = cipher::key_sizes(cipher_name, mac).expect("a construction we implement");
    let fill = |n: usize, base: u8| -> Zeroizing<Vec<u8>> {
        Zeroizing::new((0..n).map(|i| base.wrapping_add(i as u8)).collect())
    };
    DirectionKeys {
        iv: fill(sizes.iv, 0x10),
        key: fill(sizes.key, 0x40),
        mac_key: fill(sizes.mac_key, 0x90),
    }
}

/// `packet::Incoming` fed a byte stream in read sizes the input picks.
///
/// Input: mode byte (bits 0-1: none, chacha20-poly1305, aes128-gcm, aes128-ctr with
/// hmac-sha2-256-etm; bit 2: the rest is u16-prefixed payloads the harness frames with
/// `packet::Outgoing` under the same keys, else the rest is the stream itself; bit 3: flip
/// one bit of the framed stream), read-size byte, u16 flip position, flip-bit byte, rest.
///
/// Asserts: no panic; every payload lies inside the buffer and within the packet limit;
/// the buffer (room plus unread bytes) never exceeds [`MAX_READ_BUFFER_BYTES`]; the reader
/// never sits on a whole packet; framed payloads come back exactly, in order, without an
/// error; after a flipped bit every packet before it comes back exactly, and with a real
/// construction nothing from the flipped packet on is delivered.
pub fn packet(data: &[u8]) {
    let mut input = Input::new(data);
    let mode = input.u8();
    let mut sizes = ReadSizes::new(input.u8());
    let flip_at = usize::from(input.u16());
    let flip_bit = input.u8() % 8;
    let (cipher_name, mac) = PACKET_PROTECTIONS[usize::from(mode & 3)];
    let framed = mode & 4 != 0;
    let corrupt = framed && mode & 8 != 0;

    let mut incoming = Incoming::new();
    let mut outgoing = Outgoing::new();
    if let Some(c) = cipher_name {
        let keys = fixed_keys(c, mac);
        let opener = cipher::opener(c, mac, &keys).expect("an opener for our construction");
        let sealer = cipher::sealer(c, mac, &keys).expect("a sealer for our construction");
        incoming.set_opener(opener, false);
        outgoing.set_sealer(sealer, false);
    }

    let mut sent: Vec<&[u8]> = Vec::new();
    // The end of each framed packet in the stream.
    let mut ends: Vec<usize> = Vec::new();
    let mut wire = if framed {
        while let Some(p) = input.chunk() {
            // The packet layer never frames an empty payload (every message has a number).
            if p.is_empty() {
                continue;
            }
            outgoing.packet(|b| b.extend_from_slice(p));
            sent.push(p);
            ends.push(outgoing.pending_len());
        }
        outgoing.pending().to_vec()
    } else {
        input.rest().to_vec()
    };
    // The index of the packet whose bytes were flipped.
    let mut flipped = None;
    if corrupt && !wire.is_empty() {
        let at = flip_at % wire.len();
        wire[at] ^= 1 << flip_bit;
        flipped = ends.iter().position(|&end| at < end);
    }

    let mut got: Vec<Vec<u8>> = Vec::new();
    let mut failed = false;
    let mut fed = 0;
    while fed < wire.len() && !failed {
        let buffered = incoming.buffered().len();
        let spare = incoming.spare();
        assert!(
            !spare.is_empty(),
            "the packet reader has no room to read into"
        );
        assert!(
            spare.len() + buffered <= MAX_READ_BUFFER_BYTES,
            "the packet reader holds {} bytes",
            spare.len() + buffered
        );
        let n = sizes.next().min(spare.len()).min(wire.len() - fed);
        spare[..n].copy_from_slice(&wire[fed..fed + n]);
        incoming.filled(n);
        fed += n;
        loop {
            match incoming.next_packet() {
                Ok(Some(range)) => {
                    assert!(range.start <= range.end, "a reversed payload range");
                    let len = range.len();
                    assert!(len < MAX_PACKET_LENGTH_BYTES, "a payload of {len} bytes");
                    let payload = incoming.payload(range);
                    assert_eq!(payload.len(), len);
                    got.push(payload.to_vec());
                    incoming.done();
                }
                Ok(None) => {
                    assert!(
                        incoming.buffered().len() < 4 + MAX_PACKET_LENGTH_BYTES + MAX_TAG_BYTES,
                        "the packet reader waits with {} bytes buffered",
                        incoming.buffered().len()
                    );
                    break;
                }
                Err(e) => {
                    let _ = e.to_string();
                    failed = true;
                    break;
                }
            }
        }
    }
    assert_eq!(incoming.seq() as usize, got.len(), "sequence number");
    if !framed {
        return;
    }
    match flipped {
        None if !corrupt || wire.is_empty() => {
            assert!(!failed, "a well-framed stream failed");
            assert_eq!(got, sent, "payloads changed on the way");
        }
        None => unreachable!("a flipped bit lies inside some packet"),
        Some(k) => {
            assert!(got.len() >= k, "packets before the flipped one were lost");
            assert_eq!(
                got[..k],
                sent[..k],
                "packets before the flipped one changed"
            );
            if cipher_name.is_some() {
                assert_eq!(got.len(), k, "a tampered packet was delivered");
            }
        }
    }
}
