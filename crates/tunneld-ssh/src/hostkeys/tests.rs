//! Announcements and proofs against keys made by `ssh-keygen`, signed here as sshd signs
//! them; and every way a hostile or broken server can get a proof wrong.

use signature::Signer;
use ssh_key::encoding::Encode;
use ssh_key::{HashAlg, PrivateKey, PublicKey};

use super::*;
use crate::auth::testkeys::{KeyFiles, KeyType};

const SESSION_ID: &[u8] = b"the session identifier: 32 bytes";

/// A proof as sshd makes it (`server_input_hostkeys_prove`): `algorithm` for RSA keys.
fn prove(key: &PrivateKey, session_id: &[u8], rsa_algorithm: &str) -> Vec<u8> {
    let data = signed_data(session_id, key.public_key());
    let sig = match rsa_algorithm {
        _ if key.key_data().rsa().is_none() => key.try_sign(&data).unwrap(),
        "rsa-sha2-256" => (key.key_data().rsa().unwrap(), Some(HashAlg::Sha256))
            .try_sign(&data)
            .unwrap(),
        _ => (key.key_data().rsa().unwrap(), Some(HashAlg::Sha512))
            .try_sign(&data)
            .unwrap(),
    };
    sig.encode_vec().unwrap()
}

/// A reply holding `proofs`.
fn reply(proofs: &[Vec<u8>]) -> Vec<u8> {
    let mut w = Writer::new();
    for p in proofs {
        w.string(p);
    }
    w.into_vec()
}

fn public(files: &KeyFiles, t: KeyType) -> PublicKey {
    files.private_key(t).public_key().clone()
}

#[test]
fn honest_proofs_for_every_key_type_verify() {
    let files = KeyFiles::new(KeyType::ALL);
    let keys: Vec<PublicKey> = KeyType::ALL.iter().map(|&t| public(&files, t)).collect();
    let proofs: Vec<Vec<u8>> = KeyType::ALL
        .iter()
        .map(|&t| prove(&files.private_key(t), SESSION_ID, "rsa-sha2-512"))
        .collect();
    let proven = verify_proofs(&reply(&proofs), &keys, SESSION_ID, "ssh-ed25519").unwrap();
    assert_eq!(proven.keys, keys);
    assert!(proven.disregarded.is_empty());
    // The request names exactly the blobs ssh-keygen wrote, in order.
    let body = prove_request(&keys);
    let mut r = Reader::new(&body);
    for &t in KeyType::ALL {
        assert_eq!(r.string().unwrap(), files.public_blob(t), "{t:?}");
    }
    assert!(r.is_empty());
}

#[test]
fn a_proof_from_another_session_or_by_another_key_is_refused() {
    let files = KeyFiles::new(&[KeyType::Ed25519, KeyType::P256]);
    let new = public(&files, KeyType::P256);
    let cases = [
        (
            "replayed from another session",
            prove(&files.private_key(KeyType::P256), b"another session", ""),
        ),
        (
            "signed by the server's trusted key instead of the new one",
            prove(&files.private_key(KeyType::Ed25519), SESSION_ID, ""),
        ),
    ];
    for (what, proof) in cases {
        let got = verify_proofs(
            &reply(&[proof]),
            std::slice::from_ref(&new),
            SESSION_ID,
            "ssh-ed25519",
        );
        assert!(
            matches!(got, Err(ProofError::BadSignature { .. })),
            "{what}: {got:?}"
        );
    }
}

#[test]
fn one_bad_proof_among_good_ones_proves_nothing() {
    let files = KeyFiles::new(&[KeyType::Ed25519, KeyType::P256, KeyType::P384]);
    let types = [KeyType::Ed25519, KeyType::P256, KeyType::P384];
    let keys: Vec<PublicKey> = types.iter().map(|&t| public(&files, t)).collect();
    let mut proofs: Vec<Vec<u8>> = types
        .iter()
        .map(|&t| prove(&files.private_key(t), SESSION_ID, ""))
        .collect();
    // Every flipped bit of the middle proof is refused, without panicking.
    let good = proofs[1].clone();
    for i in 0..good.len() * 8 {
        let mut bad = good.clone();
        bad[i / 8] ^= 1 << (i % 8);
        proofs[1] = bad;
        assert!(
            verify_proofs(&reply(&proofs), &keys, SESSION_ID, "ssh-ed25519").is_err(),
            "bit {i}"
        );
    }
}

#[test]
fn missing_and_extra_signatures_are_malformed() {
    let files = KeyFiles::new(&[KeyType::Ed25519, KeyType::P256]);
    let keys = [
        public(&files, KeyType::Ed25519),
        public(&files, KeyType::P256),
    ];
    let one = prove(&files.private_key(KeyType::Ed25519), SESSION_ID, "");
    let two = prove(&files.private_key(KeyType::P256), SESSION_ID, "");
    for (what, body) in [
        ("empty", Vec::new()),
        ("one of two", reply(std::slice::from_ref(&one))),
        ("a third", reply(&[one.clone(), two.clone(), two.clone()])),
        ("a length past the end", {
            let mut b = reply(std::slice::from_ref(&one));
            b.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 1]);
            b
        }),
    ] {
        let got = verify_proofs(&body, &keys, SESSION_ID, "ssh-ed25519");
        assert!(
            matches!(got, Err(ProofError::Malformed(_))),
            "{what}: {got:?}"
        );
    }
    assert!(verify_proofs(&reply(&[one, two]), &keys, SESSION_ID, "ssh-ed25519").is_ok());
}

#[test]
fn rsa_proofs_follow_the_session_algorithm_and_never_sha1() {
    let files = KeyFiles::new(&[KeyType::Rsa, KeyType::Ed25519]);
    let rsa = files.private_key(KeyType::Rsa);
    let keys = [
        public(&files, KeyType::Rsa),
        public(&files, KeyType::Ed25519),
    ];
    let ed = prove(&files.private_key(KeyType::Ed25519), SESSION_ID, "");
    // An ssh-rsa (SHA-1) proof: the RSA key is left out, the other still learned.
    let mut sha1 = Writer::new();
    sha1.string(b"ssh-rsa").string(&[7u8; 384]);
    let proven = verify_proofs(
        &reply(&[sha1.into_vec(), ed.clone()]),
        &keys,
        SESSION_ID,
        "ssh-ed25519",
    )
    .unwrap();
    assert_eq!(proven.keys, [keys[1].clone()]);
    assert_eq!(proven.disregarded, [keys[0].clone()]);
    // On a session whose host key is RSA with SHA-256, a SHA-512 proof does not do.
    let sha512 = prove(&rsa, SESSION_ID, "rsa-sha2-512");
    let got = verify_proofs(
        &reply(&[sha512.clone(), ed.clone()]),
        &keys,
        SESSION_ID,
        "rsa-sha2-256",
    );
    assert!(
        matches!(got, Err(ProofError::BadSignature { .. })),
        "{got:?}"
    );
    let sha256 = prove(&rsa, SESSION_ID, "rsa-sha2-256");
    let proven = verify_proofs(
        &reply(&[sha256, ed.clone()]),
        &keys,
        SESSION_ID,
        "rsa-sha2-256",
    )
    .unwrap();
    assert_eq!(proven.keys, keys);
    // Otherwise either SHA-2 proof is fine.
    let proven = verify_proofs(
        &reply(&[sha512, ed]),
        &keys,
        SESSION_ID,
        "ecdsa-sha2-nistp256",
    )
    .unwrap();
    assert_eq!(proven.keys, keys);
}

#[test]
fn announcements_keep_usable_keys_and_refuse_duplicates() {
    let files = KeyFiles::new(&[KeyType::Ed25519, KeyType::P256]);
    let ed = files.public_blob(KeyType::Ed25519);
    let p256 = files.public_blob(KeyType::P256);
    let cert = files.host_certificate_blob(KeyType::Ed25519);
    let mut dsa = Writer::new();
    dsa.string(b"ssh-dss").string(&[1; 20]);
    let blobs = vec![
        ed.clone(),
        cert,
        dsa.into_vec(),
        b"garbage".to_vec(),
        Vec::new(),
        p256.clone(),
    ];
    let got = parse_announcement(&blobs).unwrap();
    assert_eq!(
        got.keys,
        [
            PublicKey::from_bytes(&ed).unwrap(),
            PublicKey::from_bytes(&p256).unwrap()
        ]
    );
    assert_eq!(got.skipped.len(), 4, "{:?}", got.skipped);
    assert!(got.skipped[0].contains("certificate"), "{:?}", got.skipped);

    let twice = vec![ed.clone(), p256, ed];
    let err = parse_announcement(&twice).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("the server announced its ssh-ed25519 key SHA256:"),
        "{err}"
    );
    assert_eq!(parse_announcement(&[]).unwrap(), Announced::default());
}
