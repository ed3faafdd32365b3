//! Host key decoding and signature checks, on fuzzed blobs and on real signatures.

use signature::Signer;
use ssh_key::encoding::Encode;

use super::{Input, fixtures};
use crate::hostkey::{self, HostKey};
use crate::wire::Reader;

/// The first string of a blob (its type name).
fn first_string(blob: &[u8]) -> Option<&[u8]> {
    Reader::new(blob).string().ok()
}

/// `hostkey::decode` and `hostkey::verify`.
///
/// Input: mode byte, algorithm byte (one of our host key algorithms, or, past the list, a
/// u8-prefixed name from the input), then by mode bit 0:
/// - 0: u16-prefixed key blob, u16-prefixed exchange hash, rest the signature blob;
/// - 1: u16 flip position, flip-bit byte, rest a message; the test key (bit 1: its host
///   certificate) signs the message for real, then bit 2 flips a bit of the signature
///   blob, bit 3 of the message.
///
/// Asserts: no panic; a decoded key re-encodes to exactly the blob, names the blob's type,
/// has a `SHA256:` fingerprint, and holds no RSA key under 1024 bits; `verify` succeeds
/// only for one of our algorithms; a real signature verifies exactly when nothing was
/// flipped and the algorithm is the key's own (`ssh-ed25519` or its certificate form).
pub fn hostkey(data: &[u8]) {
    let mut input = Input::new(data);
    let mode = input.u8();
    let pick = usize::from(input.u8());
    let algorithm: String = match hostkey::HOST_KEY_ALGORITHMS.get(pick % 16) {
        Some(name) => (*name).to_owned(),
        None => {
            let n = usize::from(input.u8());
            String::from_utf8_lossy(input.take(n)).into_owned()
        }
    };
    if mode & 1 == 0 {
        let blob = input.chunk().unwrap_or_default();
        let hash = input.chunk().unwrap_or_default();
        let signature = input.rest();
        let key = match hostkey::decode(blob) {
            Ok(key) => key,
            Err(e) => {
                let _ = e.to_string();
                return;
            }
        };
        assert!(blob.len() <= hostkey::MAX_HOST_KEY_BLOB_BYTES);
        let reencoded = match &key {
            HostKey::Key(k) => k.key_data().encode_vec(),
            HostKey::Certificate(c) => c.encode_vec(),
        }
        .expect("a decoded key encodes");
        assert_eq!(reencoded, blob, "a decoded key is not its blob");
        assert_eq!(Some(key.type_name().as_bytes()), first_string(blob));
        assert!(key.fingerprint().starts_with("SHA256:"));
        if let Some(rsa) = key.public_key().key_data().rsa() {
            assert!(rsa.key_size() >= hostkey::MIN_RSA_MODULUS_BITS);
        }
        match hostkey::verify(&key, &algorithm, hash, signature) {
            Ok(()) => assert!(
                hostkey::HOST_KEY_ALGORITHMS.contains(&algorithm.as_str()),
                "verified under {algorithm:?}"
            ),
            Err(e) => {
                let _ = e.to_string();
            }
        }
        return;
    }

    let f = fixtures();
    let flip_at = usize::from(input.u16());
    let flip_bit = input.u8() % 8;
    let mut message = input.rest().to_vec();
    let certificate = mode & 2 != 0;
    let blob = if certificate {
        &f.host_cert_blob
    } else {
        &f.blob
    };
    let key = hostkey::decode(blob).expect("the test key decodes");
    let signature: ssh_key::Signature = f.key.try_sign(&message).expect("the test key signs");
    let mut signature = signature.encode_vec().expect("a signature encodes");
    let mut flipped = false;
    if mode & 4 != 0 {
        let at = flip_at % signature.len();
        signature[at] ^= 1 << flip_bit;
        flipped = true;
    }
    if mode & 8 != 0 && !message.is_empty() {
        let at = flip_at % message.len();
        message[at] ^= 1 << flip_bit;
        flipped = true;
    }
    let own = if certificate {
        "ssh-ed25519-cert-v01@openssh.com"
    } else {
        "ssh-ed25519"
    };
    let result = hostkey::verify(&key, &algorithm, &message, &signature);
    assert_eq!(
        result.is_ok(),
        !flipped && algorithm == own,
        "verify under {algorithm:?} (flipped: {flipped}): {result:?}"
    );
}
