//! Each key exchange method's client side given the server's reply.

use super::Input;
use crate::kex::{self, HashAlg, KexError};
use crate::wire::Reader;

/// (C_INIT, S_REPLY) sizes in bytes of each method: X25519 keys are 32 bytes (RFC 7748);
/// ML-KEM-768 has a 1184-byte encapsulation key and 1088-byte ciphertext (FIPS 203 §8);
/// sntrup761 a 1158-byte public key and 1039-byte ciphertext.
fn kex_sizes(name: &str) -> (usize, usize) {
    match name {
        kex::MLKEM768X25519_SHA256 => (1184 + 32, 1088 + 32),
        kex::SNTRUP761X25519_SHA512 | kex::SNTRUP761X25519_SHA512_OPENSSH => (1158 + 32, 1039 + 32),
        _ => (32, 32),
    }
}

/// `kex::start(name).agree(reply)` for each method.
///
/// Input: method byte (low bits pick the method; bit 7: the reply is cut or zero-padded to
/// the method's exact size), rest the server's reply.
///
/// Asserts: no panic; C_INIT has the method's size; a reply of the wrong size is refused
/// with `WrongReplySize` naming both sizes; any other outcome comes from a reply of the
/// right size; K is encoded as it enters the hash: a canonical mpint of at most 32
/// magnitude bytes for curve25519, a string of one digest of the method's hash for the
/// hybrids.
pub fn kex_reply(data: &[u8]) {
    let mut input = Input::new(data);
    let pick = input.u8();
    let name = kex::KEX_METHODS[usize::from(pick & 0x7f) % kex::KEX_METHODS.len()];
    let (client_len, reply_len) = kex_sizes(name);
    let mut reply = input.rest().to_vec();
    if pick & 0x80 != 0 {
        reply.resize(reply_len, 0);
    }
    let method = kex::start(name).expect("our own kex method starts");
    assert_eq!(method.client_public().len(), client_len, "{name} C_INIT");
    let hash = method.hash();
    let hybrid = name != kex::CURVE25519_SHA256 && name != kex::CURVE25519_SHA256_LIBSSH;
    match method.agree(&reply) {
        Ok(k) => {
            assert_eq!(
                reply.len(),
                reply_len,
                "{name} took a reply of the wrong size"
            );
            let mut r = Reader::new(&k);
            let magnitude = r.string().expect("K is a string or mpint");
            assert!(r.is_empty(), "bytes after K");
            if hybrid {
                assert_eq!(magnitude.len(), hash.output_len_bytes(), "{name} K");
            } else {
                assert_eq!(hash, HashAlg::Sha256);
                assert!(
                    magnitude.len() <= 33,
                    "an mpint of {} bytes",
                    magnitude.len()
                );
                if let Some((&first, rest)) = magnitude.split_first() {
                    assert!(first & 0x80 == 0, "a negative mpint");
                    if first == 0 {
                        assert!(
                            rest.first().is_some_and(|b| b & 0x80 != 0),
                            "a padded mpint"
                        );
                    }
                }
            }
        }
        Err(KexError::WrongReplySize { expected, got, .. }) => {
            assert_eq!(expected, reply_len);
            assert_eq!(got, reply.len());
            assert_ne!(got, expected);
        }
        Err(e @ (KexError::AllZeroSecret | KexError::InvalidServerKey { .. })) => {
            assert_eq!(
                reply.len(),
                reply_len,
                "{name}: {e} for a reply of the wrong size"
            );
        }
        Err(e @ KexError::KeyGeneration(_)) => panic!("{name}: {e}"),
    }
}
