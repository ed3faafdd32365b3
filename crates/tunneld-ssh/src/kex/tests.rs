//! Known-answer and round-trip tests of the key exchange methods, H and the key derivation.

use super::curve25519::{Curve25519, mpint_of_secret};
use super::mlkem768::{self, Mlkem768X25519};
use super::sntrup761::{self, Sntrup761X25519};
use super::x25519::X25519Key;
use super::*;
use crate::wire::Writer;

fn unhex(s: &str) -> Vec<u8> {
    hex::decode(s).unwrap()
}

fn array32(s: &str) -> [u8; 32] {
    unhex(s).try_into().unwrap()
}

// RFC 7748 §6.1: Alice's and Bob's private scalars, public keys and shared secret.
const ALICE_PRIVATE: &str = "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a";
const ALICE_PUBLIC: &str = "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a";
const BOB_PRIVATE: &str = "5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb";
const BOB_PUBLIC: &str = "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f";
const SHARED: &str = "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742";

#[test]
fn curve25519_matches_rfc_7748_section_6_1_both_ways() {
    let alice = Curve25519::from_key(X25519Key::from_scalar(&array32(ALICE_PRIVATE)));
    assert_eq!(hex::encode(alice.client_public()), ALICE_PUBLIC);
    let bob = Curve25519::from_key(X25519Key::from_scalar(&array32(BOB_PRIVATE)));
    assert_eq!(hex::encode(bob.client_public()), BOB_PUBLIC);

    // The shared secret's top bit is clear, so the mpint is the 32 bytes after a length.
    let expected = format!("00000020{SHARED}");
    let k_alice = Box::new(alice).agree(&unhex(BOB_PUBLIC)).unwrap();
    assert_eq!(hex::encode(&*k_alice), expected);
    let k_bob = Box::new(bob).agree(&unhex(ALICE_PUBLIC)).unwrap();
    assert_eq!(hex::encode(&*k_bob), expected);
}

#[test]
fn the_curve25519_mpint_gets_a_zero_byte_under_a_high_bit_and_loses_leading_zeros() {
    let mut high = [0x01u8; 32];
    high[0] = 0x80;
    assert_eq!(
        hex::encode(&*mpint_of_secret(&high)),
        format!("000000210080{}", "01".repeat(31))
    );
    let mut leading_zeros = [0xffu8; 32];
    leading_zeros[0] = 0;
    leading_zeros[1] = 0;
    leading_zeros[2] = 0x7f;
    assert_eq!(
        hex::encode(&*mpint_of_secret(&leading_zeros)),
        format!("0000001e7f{}", "ff".repeat(29))
    );
    let mut leading_zero_then_high = [0x00u8; 32];
    leading_zero_then_high[1] = 0xc0;
    assert_eq!(
        hex::encode(&*mpint_of_secret(&leading_zero_then_high)),
        format!("0000002000c0{}", "00".repeat(30))
    );
    // The same bytes as the wire module's general mpint writer.
    for magnitude in [
        high,
        leading_zeros,
        leading_zero_then_high,
        [0; 32],
        [0xff; 32],
    ] {
        let mut w = Writer::new();
        w.mpint_unsigned(&magnitude);
        assert_eq!(&*mpint_of_secret(&magnitude), w.as_slice());
    }
}

#[test]
fn low_order_server_keys_giving_an_all_zero_secret_are_refused() {
    // u = 0 and u = 1 are points of small order (RFC 7748 §6.1 says to check for the
    // all-zero output); 2^255 - 19 + 1 is 1 in non-canonical form.
    let one_non_canonical = "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f";
    let one = "0100000000000000000000000000000000000000000000000000000000000000";
    for bad in [[0u8; 32], array32(one), array32(one_non_canonical)] {
        let method = Curve25519::from_key(X25519Key::from_scalar(&array32(ALICE_PRIVATE)));
        let err = Box::new(method).agree(&bad).unwrap_err();
        assert!(matches!(err, KexError::AllZeroSecret), "{err:?}");
        assert_eq!(
            err.to_string(),
            "server X25519 public key gives an all-zero shared secret"
        );
    }
}

#[test]
fn replies_of_the_wrong_size_are_refused_for_every_method() {
    let cases: [(&str, usize); 3] = [
        ("curve25519-sha256", 32),
        ("sntrup761x25519-sha512", 1039 + 32),
        ("mlkem768x25519-sha256", 1088 + 32),
    ];
    for (name, size) in cases {
        for got in [0, 1, 31, 33, size - 1, size + 1, 2 * size] {
            let method = start(name).unwrap();
            let err = method.agree(&vec![0x42; got]).unwrap_err();
            match err {
                KexError::WrongReplySize {
                    method,
                    expected,
                    got: g,
                } => {
                    assert_eq!((method, expected, g), (name, size, got));
                }
                other => panic!("{name} {got}: {other:?}"),
            }
        }
    }
    let err = start("curve25519-sha256")
        .unwrap()
        .agree(&[1; 31])
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "server key exchange reply for curve25519-sha256 is 31 bytes, expected 32"
    );
}

#[test]
fn start_knows_every_listed_method_and_no_other() {
    let expected: [(&str, HashAlg, usize); 5] = [
        ("mlkem768x25519-sha256", HashAlg::Sha256, 1184 + 32),
        ("sntrup761x25519-sha512", HashAlg::Sha512, 1158 + 32),
        (
            "sntrup761x25519-sha512@openssh.com",
            HashAlg::Sha512,
            1158 + 32,
        ),
        ("curve25519-sha256", HashAlg::Sha256, 32),
        ("curve25519-sha256@libssh.org", HashAlg::Sha256, 32),
    ];
    assert_eq!(
        KEX_METHODS,
        expected.iter().map(|(n, _, _)| *n).collect::<Vec<_>>()
    );
    for (name, hash, init_len) in expected {
        let a = start(name).unwrap();
        let b = start(name).unwrap();
        assert_eq!(a.hash(), hash, "{name}");
        assert_eq!(a.client_public().len(), init_len, "{name}");
        assert_ne!(
            a.client_public(),
            b.client_public(),
            "{name}: keys are fresh"
        );
    }
    for unknown in ["", "ecdh-sha2-nistp256", "curve25519-sha256 ", "ext-info-c"] {
        assert!(start(unknown).is_none(), "{unknown:?}");
    }
}

/// The server side of a hybrid: its X25519 key and how it encapsulates to C_INIT.
fn server_x25519() -> X25519Key {
    X25519Key::from_scalar(&array32(BOB_PRIVATE))
}

/// K as the server computes it: string(HASH(kem || x25519)), written out by hand.
fn hybrid_k_by_hand(hash: HashAlg, kem: &[u8], x25519: &[u8]) -> Vec<u8> {
    let digest = hash.digest(&[kem, x25519]);
    let mut k = (digest.len() as u32).to_be_bytes().to_vec();
    k.extend_from_slice(&digest);
    k
}

#[test]
fn mlkem768_client_and_a_server_of_primitives_agree() {
    use aws_lc_rs::kem::{EncapsulationKey, ML_KEM_768};
    assert_eq!(mlkem768::CLIENT_INIT_LEN_BYTES, 1216);
    assert_eq!(mlkem768::SERVER_REPLY_LEN_BYTES, 1120);

    let client = Box::new(Mlkem768X25519::generate().unwrap());
    let init = client.client_public().to_vec();
    assert_eq!(init.len(), 1216);
    let (ek, client_x) = init.split_at(1184);

    let ek = EncapsulationKey::new(&ML_KEM_768, ek).unwrap();
    let (ciphertext, kem_secret) = ek.encapsulate().unwrap();
    assert_eq!(ciphertext.as_ref().len(), 1088);
    assert_eq!(kem_secret.as_ref().len(), 32);
    let server = server_x25519();
    let x_secret = server.agree(client_x).unwrap();
    let mut reply = ciphertext.as_ref().to_vec();
    reply.extend_from_slice(server.public());
    assert_eq!(reply.len(), 1120);

    let expected = hybrid_k_by_hand(HashAlg::Sha256, kem_secret.as_ref(), &*x_secret);
    assert_eq!(expected.len(), 4 + 32);
    assert_eq!(&expected[..4], &[0, 0, 0, 32]);
    let k = client.agree(&reply).unwrap();
    assert_eq!(*k, expected);

    // Garbage of the right size: no panic; the KEM's implicit rejection yields another K.
    let client = Box::new(Mlkem768X25519::generate().unwrap());
    let mut garbage: Vec<u8> = (0..1120u32).map(|i| (i * 7 + 3) as u8).collect();
    garbage[1088..].copy_from_slice(server.public());
    let k = client.agree(&garbage).unwrap();
    assert_eq!(k.len(), 36);
    assert_ne!(*k, expected);

    // An all-zero X25519 part is refused after a valid ciphertext.
    let client = Box::new(Mlkem768X25519::generate().unwrap());
    let mut zero_point = garbage.clone();
    zero_point[1088..].fill(0);
    assert!(matches!(
        client.agree(&zero_point),
        Err(KexError::AllZeroSecret)
    ));
}

#[test]
fn sntrup761_client_and_a_server_of_primitives_agree() {
    assert_eq!(sntrup761::CLIENT_INIT_LEN_BYTES, 1190);
    assert_eq!(sntrup761::SERVER_REPLY_LEN_BYTES, 1071);

    let client = Box::new(Sntrup761X25519::generate().unwrap());
    let init = client.client_public().to_vec();
    assert_eq!(init.len(), 1190);
    let (pk, client_x) = init.split_at(1158);

    let pk = ::sntrup761::EncapsulationKey::try_from(pk).unwrap();
    let (ciphertext, kem_secret) = pk.encapsulate_deterministic([9; 32]);
    assert_eq!(ciphertext.as_ref().len(), 1039);
    assert_eq!(kem_secret.as_ref().len(), 32);
    let server = server_x25519();
    let x_secret = server.agree(client_x).unwrap();
    let mut reply = ciphertext.as_ref().to_vec();
    reply.extend_from_slice(server.public());
    assert_eq!(reply.len(), 1071);

    let expected = hybrid_k_by_hand(HashAlg::Sha512, kem_secret.as_ref(), &*x_secret);
    assert_eq!(expected.len(), 4 + 64);
    assert_eq!(&expected[..4], &[0, 0, 0, 64]);
    let k = client.agree(&reply).unwrap();
    assert_eq!(*k, expected);

    // Garbage of the right size: no panic; implicit rejection yields another K.
    let client = Box::new(Sntrup761X25519::generate().unwrap());
    let mut garbage: Vec<u8> = (0..1071u32).map(|i| (i * 13 + 5) as u8).collect();
    garbage[1039..].copy_from_slice(server.public());
    let k = client.agree(&garbage).unwrap();
    assert_eq!(k.len(), 68);
    assert_ne!(*k, expected);

    let client = Box::new(Sntrup761X25519::generate().unwrap());
    let mut zero_point = garbage.clone();
    zero_point[1039..].fill(0);
    assert!(matches!(
        client.agree(&zero_point),
        Err(KexError::AllZeroSecret)
    ));
}

#[test]
fn sntrup761_keys_from_one_seed_are_the_same() {
    let a = Sntrup761X25519::from_parts([1; 32], server_x25519()).unwrap();
    let b = Sntrup761X25519::from_parts([1; 32], server_x25519()).unwrap();
    let c = Sntrup761X25519::from_parts([2; 32], server_x25519()).unwrap();
    assert_eq!(a.client_public(), b.client_public());
    assert_ne!(a.client_public(), c.client_public());
}

/// Fixed inputs of H; `q_c`, `q_s` and `k` vary by method.
fn fixed_input<'a>(
    q_c: &'a [u8],
    q_s: &'a [u8],
    k: &'a [u8],
    bufs: &'a Bufs,
) -> ExchangeHashInput<'a> {
    ExchangeHashInput {
        client_version: b"SSH-2.0-tunneld_0.1",
        server_version: b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u10",
        client_kexinit: &bufs.i_c,
        server_kexinit: &bufs.i_s,
        host_key: &bufs.k_s,
        client_public: q_c,
        server_public: q_s,
        shared_secret: k,
    }
}

struct Bufs {
    i_c: Vec<u8>,
    i_s: Vec<u8>,
    k_s: Vec<u8>,
}

fn bufs() -> Bufs {
    let mut i_c = vec![20];
    i_c.extend(0..16u8);
    i_c.extend_from_slice(b"kex");
    let mut i_s = vec![20];
    i_s.extend([0xff; 16]);
    i_s.extend_from_slice(b"srv");
    let mut k_s = b"\x00\x00\x00\x0bssh-ed25519".to_vec();
    k_s.extend([7; 36]);
    Bufs { i_c, i_s, k_s }
}

/// H written out from RFC 4253 §8's concatenation, independently of `exchange_hash`.
fn h_by_hand(hash: HashAlg, input: &ExchangeHashInput<'_>) -> Vec<u8> {
    let mut data = Vec::new();
    for field in [
        input.client_version,
        input.server_version,
        input.client_kexinit,
        input.server_kexinit,
        input.host_key,
        input.client_public,
        input.server_public,
    ] {
        data.extend_from_slice(&(field.len() as u32).to_be_bytes());
        data.extend_from_slice(field);
    }
    data.extend_from_slice(input.shared_secret);
    hash.digest(&[&data])
}

// The expected hex of the three tests below was computed with Python's hashlib over the
// same concatenation (string = 4-byte big-endian length, then the bytes).

#[test]
fn exchange_hash_of_curve25519_over_fixed_inputs() {
    let bufs = bufs();
    let mut k = vec![0, 0, 0, 33, 0, 0x80];
    k.extend([1; 31]);
    let input = fixed_input(&[0x11; 32], &[0x22; 32], &k, &bufs);
    let h = exchange_hash(HashAlg::Sha256, &input);
    assert_eq!(h, h_by_hand(HashAlg::Sha256, &input));
    assert_eq!(
        hex::encode(h),
        "916cd1de0ff8d2944fdb4d1d5599d01035bcdbcc71c1ac45cecaefb592b4fbdf"
    );
}

#[test]
fn exchange_hash_of_sntrup761x25519_over_fixed_inputs() {
    let bufs = bufs();
    let mut k = vec![0, 0, 0, 64];
    k.extend([0x33; 64]);
    let input = fixed_input(&[0x44; 1190], &[0x55; 1071], &k, &bufs);
    let h = exchange_hash(HashAlg::Sha512, &input);
    assert_eq!(h, h_by_hand(HashAlg::Sha512, &input));
    assert_eq!(
        hex::encode(h),
        "bb21518b04d8fa586e3bbfff1784667f683e0dfd56307efbcfa4f7e16ea72934\
         f5ffe6784d1b28846656f03c90a994c70b70769fccfe95a5205be424b6929398"
    );
}

#[test]
fn exchange_hash_of_mlkem768x25519_over_fixed_inputs() {
    let bufs = bufs();
    let mut k = vec![0, 0, 0, 32];
    k.extend([0x66; 32]);
    let input = fixed_input(&[0x77; 1216], &[0x88; 1120], &k, &bufs);
    let h = exchange_hash(HashAlg::Sha256, &input);
    assert_eq!(h, h_by_hand(HashAlg::Sha256, &input));
    assert_eq!(
        hex::encode(h),
        "aba27b73e88429ec779d48a4262f53ef400caaed80664cd1180d99010c82b2e3"
    );
}

// NIST CAVS 14.1 SSH KDF vectors (SP 800-135 §5.2 "SSHKDF"), as copied into OpenSSL's
// test/recipes/30-test_evp_data/evpkdf_ssh.txt. K is given mpint-encoded, as `agree` returns
// it. One SHA-256 case (the one whose K starts 7d3783ce) and one SHA-512 case (K starts
// a82ae406), letters A (IV size) and E (integrity key size, a whole digest).

const SHA256_K: &str = "000000807d3783ce1f598c3279e8a33f3e8bfe9c255979034f43d107bb3dd6cb21ff67d9\
    45594929f2fd7bef74679be81d3ad6c1b472293d1060242d720ed2fb250fde838064eec64d75cb9d5d2ec09c\
    9e67e3bf48c0d0a92577f8bf6e05cfcbaafcd243369f30f14d24a4ad2c1aaff528e03198227135d26839fd45\
    cd60678ae41307c2";
const SHA256_H: &str = "2efc2c1be24e1259105757bbd2c518d62ae52400451347aa90e2aab00bc58864";
const SHA256_SESSION_ID: &str = "2df7d0dbcb1beb17ef1a8b9884c9d6d8833b5039797a5fce61e7a2490405b323";

const SHA512_K: &str = "0000010100a82ae4062baef678d20dd9cf1704cdc69e9e78eea5faa435e4dffec06976ff\
    73bd1e2ebd206658a26fb85a0911e2034eede31e7df2d7b87aa9700cf301b6b38502ba4db2b9723505455a7d\
    a0c6e0cf374b063921179d1bc69508f660bbb26d05ab16a2325716dbd0a733809cac36660d9a73ff0f61e09f\
    55d1ff0652474130be7fcd2d37ebd1203960d788a1307fae48ec4e1042ab85f037a01bfd17f15725ee929d6e\
    6246bbda00fe7105461ee873b0190c2f44692845e464949f909df46309a8eb72037278f792c87249897a0564\
    d290bec1e09b2c9d3ad3011710fc4dcfabfa435611794dc7d1507b657229a2aab65ce2e789305d5d24ed955e\
    89d8eb4f7e";
const SHA512_H: &str = "a6ef8e3102b16ce51b2a2fe17e8dc711a964c195ca4d597aabecce595187344c\
    cb2ea37dc4cac0a77a47e7ea1b9055b1c9948e6e09793a9121f120b3bd07c5f2";
const SHA512_SESSION_ID: &str = "cc85cf95e29a5991306b21c1738de9a6612b8cb09f12b1738a4873c29f971e8d\
    204aeb98bb7a7502cdab952eaaa6ec1e3a9655db3e5217afbff63ad588fbbf85";

fn kdf(hash: HashAlg, k: &str, h: &str, id: &str, letter: u8, len: usize) -> String {
    let k = unhex(&k.replace(' ', ""));
    hex::encode(&*derive_key(hash, &k, &unhex(h), letter, &unhex(id), len))
}

#[test]
fn key_derivation_matches_nist_cavs_sha256() {
    let (k, h, id) = (SHA256_K, SHA256_H, SHA256_SESSION_ID);
    assert_eq!(kdf(HashAlg::Sha256, k, h, id, b'A', 8), "3cc220d5bb9b5346");
    assert_eq!(kdf(HashAlg::Sha256, k, h, id, b'B', 8), "051e3c79aede7e41");
    assert_eq!(
        kdf(HashAlg::Sha256, k, h, id, b'C', 24),
        "44c2b4725965ee9a2bce58d38e2e9a778263c415b21a25be"
    );
    assert_eq!(
        kdf(HashAlg::Sha256, k, h, id, b'E', 32),
        "7d2039a6505e3220535fde0ff71464f3971580f50711356760b225fc3053fc19"
    );
}

#[test]
fn key_derivation_matches_nist_cavs_sha512() {
    let (k, h, id) = (SHA512_K, SHA512_H, SHA512_SESSION_ID);
    assert_eq!(
        kdf(HashAlg::Sha512, k, h, id, b'A', 16),
        "77cb432c67bf0ae658aa4e34376d01b5"
    );
    assert_eq!(
        kdf(HashAlg::Sha512, k, h, id, b'E', 64),
        "70357486ca57c93418c6705b731b054bc41be03289c25a5e\
         d29a937732807ae10a3604486c53d1f2431411808d87bfba\
         a6b25971fa2e4ec3719b5d2622aed2ff"
    );
}

#[test]
fn key_derivation_extends_past_one_digest_as_rfc_4253_section_7_2_says() {
    let k = unhex(SHA256_K);
    let (h, id) = (unhex(SHA256_H), unhex(SHA256_SESSION_ID));
    let k1 = HashAlg::Sha256.digest(&[&k, &h, b"C", &id]);
    let k2 = HashAlg::Sha256.digest(&[&k, &h, &k1]);
    let k3 = HashAlg::Sha256.digest(&[&k, &h, &k1, &k2]);
    let mut expected = [k1, k2, k3].concat();
    expected.truncate(80);
    let key = derive_key(HashAlg::Sha256, &k, &h, b'C', &id, 80);
    assert_eq!(*key, expected);
    // A prefix of a longer key is the shorter key.
    let short = derive_key(HashAlg::Sha256, &k, &h, b'C', &id, 32);
    assert_eq!(&short[..], &expected[..32]);
    assert_eq!(
        hex::encode(&*derive_key(HashAlg::Sha256, &k, &h, b'E', &id, 64))[..64],
        *"7d2039a6505e3220535fde0ff71464f3971580f50711356760b225fc3053fc19"
    );
}
