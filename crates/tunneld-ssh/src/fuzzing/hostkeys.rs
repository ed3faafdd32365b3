//! The host key rotation harness: the server's announcement through the connection
//! layer, then its proofs (`crate::hostkeys`).

use signature::Signer;
use ssh_key::encoding::Encode;
use tokio::sync::mpsc;

use super::{Input, fixtures};
use crate::channel::SessionShared;
use crate::connection::{ChannelConfig, Connection};
use crate::hostkeys::{self, AnnounceError};
use crate::msg;
use crate::wire::Writer;

/// The session identifier the harness's proofs are made over.
const SESSION_ID: &[u8] = b"fuzzing session identifier......";
/// Session host key algorithms, picked by bits 1-3 of the mode byte.
const SESSION_ALGORITHMS: [&str; 5] = [
    "ssh-ed25519",
    "rsa-sha2-256",
    "rsa-sha2-512",
    "ecdsa-sha2-nistp256",
    "rsa-sha2-512-cert-v01@openssh.com",
];
/// The most blobs an announcement may carry (`connection::global`).
const MAX_ANNOUNCED: usize = 64;

/// `hostkeys-00@openssh.com` through `Connection::handle`, `hostkeys::parse_announcement`,
/// then `hostkeys::verify_proofs`.
///
/// Input: a mode byte (bit 0: an honest round; bits 1-3: the session's host key
/// algorithm), a count byte and that many u16-prefixed blobs to announce. Honest: the test
/// key is announced after them and proven with a real signature over the session, then
/// the bit the next u16 names is flipped (none for 0xffff or past the end). Otherwise the
/// rest is the server's reply to a request for every usable announced key.
///
/// Asserts: no panic; the connection hands up exactly the blobs sent, and refuses more
/// than 64; a key announced twice refuses the announcement; a reply that verifies proves
/// or disregards each key asked about, in order, and nothing else; an honest proof
/// verifies exactly when no bit was flipped.
pub fn host_key_proofs(data: &[u8]) {
    let mut input = Input::new(data);
    let mode = input.u8();
    let honest = mode & 1 == 1;
    let algorithm = SESSION_ALGORITHMS[usize::from(mode >> 1) % SESSION_ALGORITHMS.len()];
    let count = input.u8();
    let mut blobs: Vec<Vec<u8>> = (0..count)
        .map_while(|_| input.chunk().map(<[u8]>::to_vec))
        .collect();
    let test_key = fixtures().key.public_key().clone();
    if honest {
        blobs.push(fixtures().blob.clone());
    }

    let mut w = Writer::message(msg::GLOBAL_REQUEST);
    w.string(b"hostkeys-00@openssh.com").bool(false);
    for blob in &blobs {
        w.string(blob);
    }
    let (offers, _offered) = mpsc::channel(1);
    let mut conn = Connection::new(ChannelConfig::default(), SessionShared::new(), offers);
    if conn.handle(w.as_slice()).is_err() {
        assert!(blobs.len() > MAX_ANNOUNCED, "{} blobs refused", blobs.len());
        return;
    }
    assert!(blobs.len() <= MAX_ANNOUNCED);
    let received = conn.announced_host_keys.borrow().clone();
    assert_eq!(received.as_ref(), Some(&blobs));

    let announced = match hostkeys::parse_announcement(&blobs) {
        Ok(a) => a,
        Err(AnnounceError::Duplicate(..)) => return,
    };
    assert!(announced.keys.len() + announced.skipped.len() <= blobs.len());
    for (i, k) in announced.keys.iter().enumerate() {
        assert!(
            !announced.keys[..i]
                .iter()
                .any(|o| o.key_data() == k.key_data()),
            "a key kept twice"
        );
    }
    if honest {
        assert!(
            announced
                .keys
                .iter()
                .any(|k| k.key_data() == test_key.key_data())
        );
        let signed = hostkeys::signed_data(SESSION_ID, &test_key);
        let signature = fixtures()
            .key
            .try_sign(&signed)
            .and_then(|s| s.encode_vec().map_err(|_| signature::Error::new()))
            .expect("the test key signs");
        let mut reply = Writer::new();
        reply.string(&signature);
        let mut reply = reply.into_vec();
        let flip = usize::from(input.u16());
        let flipped = flip < reply.len() * 8;
        if flipped {
            reply[flip / 8] ^= 1 << (flip % 8);
        }
        let checked = hostkeys::verify_proofs(
            &reply,
            std::slice::from_ref(&test_key),
            SESSION_ID,
            algorithm,
        );
        assert_eq!(checked.is_ok(), !flipped, "flip {flip}: {checked:?}");
        if let Ok(proven) = checked {
            assert_eq!(proven.keys, [test_key]);
        }
        return;
    }
    let keys = announced.keys;
    if let Ok(proven) = hostkeys::verify_proofs(input.rest(), &keys, SESSION_ID, algorithm) {
        assert_eq!(proven.keys.len() + proven.disregarded.len(), keys.len());
        let mut asked = keys.iter();
        for k in &proven.keys {
            assert!(asked.any(|a| a == k), "proven out of order or not asked");
        }
        for k in &proven.disregarded {
            assert!(keys.contains(k));
            assert!(!proven.keys.contains(k));
        }
    }
}

/// Seeds: honest rounds (alone, after a certificate, under an RSA session, one bit
/// flipped), raw replies (a signature of another key, a duplicate announcement).
#[cfg(test)]
pub(super) fn seeds() -> Vec<Vec<u8>> {
    let blob = fixtures().blob.clone();
    let cert = fixtures().host_cert_blob.clone();
    let chunk = |out: &mut Vec<u8>, piece: &[u8]| {
        out.extend_from_slice(&u16::try_from(piece.len()).unwrap_or(0).to_be_bytes());
        out.extend_from_slice(piece);
    };
    let mut with_cert = vec![1, 1];
    chunk(&mut with_cert, &cert);
    with_cert.extend_from_slice(&[0xff, 0xff]);
    let mut raw = vec![0, 1];
    chunk(&mut raw, &blob);
    let mut w = Writer::new();
    w.string(&[0; 83]);
    raw.extend_from_slice(w.as_slice());
    let mut twice = vec![0, 2];
    chunk(&mut twice, &blob);
    chunk(&mut twice, &blob);
    vec![
        vec![1, 0, 0xff, 0xff],
        with_cert,
        vec![3, 0, 0xff, 0xff],
        vec![1, 0, 0, 200],
        raw,
        twice,
    ]
}
