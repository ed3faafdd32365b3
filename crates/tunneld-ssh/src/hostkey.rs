//! The server's host key: decoding K_S from the key exchange reply, its fingerprint, and
//! checking the server's signature over the exchange hash (RFC 4253 §8, RFC 5656 §3.1,
//! RFC 8332, RFC 8709, OpenSSH PROTOCOL.certkeys).
//!
//! This module only proves that the server holds the key it presented. Whether that key
//! (or the certificate's CA, principals and validity) is the right one for the host is the
//! caller's known_hosts policy.

// The crate-internal entry points are called by the transport, which is not in the crate yet.

use signature::Verifier;
use ssh_key::encoding::Encode;
use ssh_key::public::KeyData;
use ssh_key::{Algorithm, Certificate, EcdsaCurve, HashAlg, PublicKey};

use crate::wire::Reader;

/// The longest host key blob we decode, in bytes. A 16384-bit RSA key is about 2 KiB; a
/// certificate adds its principals, options and the CA's key and signature.
pub const MAX_HOST_KEY_BLOB_BYTES: usize = 64 * 1024;

/// The smallest RSA modulus we accept, in bits (OpenSSH's `SSH_RSA_MINIMUM_MODULUS_SIZE`).
pub const MIN_RSA_MODULUS_BITS: u32 = 1024;

/// The server's host key as it presented it.
#[derive(Clone, Debug)]
pub enum HostKey {
    /// A plain public key.
    Key(PublicKey),
    /// An OpenSSH certificate (`*-cert-v01@openssh.com`); not yet checked against any CA.
    Certificate(Box<Certificate>),
}

impl HostKey {
    /// The key itself (for a certificate: the certified key).
    pub fn public_key(&self) -> PublicKey {
        match self {
            HostKey::Key(key) => key.clone(),
            HostKey::Certificate(cert) => PublicKey::from(cert.public_key().clone()),
        }
    }

    /// `SHA256:...` of the key blob as sent. For a certificate it is the certified key's
    /// fingerprint, as OpenSSH prints it (`ssh-keygen -l` of the host's key file matches).
    /// Decoding refuses blobs that do not re-encode to the same bytes, so the blob
    /// fingerprinted here is the one the server sent.
    pub fn fingerprint(&self) -> String {
        self.public_key().fingerprint(HashAlg::Sha256).to_string()
    }

    /// The key type's name as it appears in the blob (`ssh-ed25519`,
    /// `ssh-rsa-cert-v01@openssh.com`, ...).
    pub fn type_name(&self) -> String {
        match self {
            HostKey::Key(key) => key.algorithm().as_str().to_owned(),
            HostKey::Certificate(cert) => cert.algorithm().to_certificate_type(),
        }
    }

    fn kind(&self) -> Option<KeyKind> {
        match self {
            HostKey::Key(key) => KeyKind::of(key.key_data()),
            HostKey::Certificate(cert) => KeyKind::of(cert.public_key()),
        }
    }

    fn key_data(&self) -> &KeyData {
        match self {
            HostKey::Key(key) => key.key_data(),
            HostKey::Certificate(cert) => cert.public_key(),
        }
    }
}

/// The key types we accept, for host keys and user keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum KeyKind {
    /// ssh-ed25519 (RFC 8709).
    Ed25519,
    /// ecdsa-sha2-nistp256/384/521 (RFC 5656).
    Ecdsa(EcdsaCurve),
    /// ssh-rsa keys, signing with rsa-sha2-256/512 (RFC 8332).
    Rsa,
}

impl KeyKind {
    /// The kind of `key`; `None` for DSA, security keys, certificates and unknown types.
    pub(crate) fn of(key: &KeyData) -> Option<KeyKind> {
        match key {
            KeyData::Ed25519(_) => Some(KeyKind::Ed25519),
            KeyData::Ecdsa(ecdsa) => Some(KeyKind::Ecdsa(ecdsa.curve())),
            KeyData::Rsa(_) => Some(KeyKind::Rsa),
            _ => None,
        }
    }
}

/// One accepted host key algorithm: its name, the key it needs, whether that key comes in a
/// certificate, and the signature algorithm name it implies.
struct HostKeyAlgorithm {
    name: &'static str,
    kind: KeyKind,
    certificate: bool,
    signature: &'static str,
}

const fn alg(
    name: &'static str,
    kind: KeyKind,
    certificate: bool,
    signature: &'static str,
) -> HostKeyAlgorithm {
    HostKeyAlgorithm {
        name,
        kind,
        certificate,
        signature,
    }
}

const P256: KeyKind = KeyKind::Ecdsa(EcdsaCurve::NistP256);
const P384: KeyKind = KeyKind::Ecdsa(EcdsaCurve::NistP384);
const P521: KeyKind = KeyKind::Ecdsa(EcdsaCurve::NistP521);

/// Every algorithm we accept, in `HOST_KEY_ALGORITHMS` order.
const ALGORITHMS: &[HostKeyAlgorithm] = &[
    alg(
        "ssh-ed25519-cert-v01@openssh.com",
        KeyKind::Ed25519,
        true,
        "ssh-ed25519",
    ),
    alg(
        "ecdsa-sha2-nistp256-cert-v01@openssh.com",
        P256,
        true,
        "ecdsa-sha2-nistp256",
    ),
    alg(
        "ecdsa-sha2-nistp384-cert-v01@openssh.com",
        P384,
        true,
        "ecdsa-sha2-nistp384",
    ),
    alg(
        "ecdsa-sha2-nistp521-cert-v01@openssh.com",
        P521,
        true,
        "ecdsa-sha2-nistp521",
    ),
    alg(
        "rsa-sha2-512-cert-v01@openssh.com",
        KeyKind::Rsa,
        true,
        "rsa-sha2-512",
    ),
    alg(
        "rsa-sha2-256-cert-v01@openssh.com",
        KeyKind::Rsa,
        true,
        "rsa-sha2-256",
    ),
    alg("ssh-ed25519", KeyKind::Ed25519, false, "ssh-ed25519"),
    alg("ecdsa-sha2-nistp256", P256, false, "ecdsa-sha2-nistp256"),
    alg("ecdsa-sha2-nistp384", P384, false, "ecdsa-sha2-nistp384"),
    alg("ecdsa-sha2-nistp521", P521, false, "ecdsa-sha2-nistp521"),
    alg("rsa-sha2-512", KeyKind::Rsa, false, "rsa-sha2-512"),
    alg("rsa-sha2-256", KeyKind::Rsa, false, "rsa-sha2-256"),
];

/// Host key algorithms we accept, best first: certificates first (ed25519, ecdsa 256/384/521,
/// rsa-sha2-512, rsa-sha2-256 cert-v01@openssh.com forms), then plain ssh-ed25519,
/// ecdsa-sha2-nistp256/384/521, rsa-sha2-512, rsa-sha2-256. Never ssh-rsa (SHA-1), never DSA.
pub(crate) const HOST_KEY_ALGORITHMS: &[&str] = &[
    "ssh-ed25519-cert-v01@openssh.com",
    "ecdsa-sha2-nistp256-cert-v01@openssh.com",
    "ecdsa-sha2-nistp384-cert-v01@openssh.com",
    "ecdsa-sha2-nistp521-cert-v01@openssh.com",
    "rsa-sha2-512-cert-v01@openssh.com",
    "rsa-sha2-256-cert-v01@openssh.com",
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "rsa-sha2-512",
    "rsa-sha2-256",
];

/// Key type names a host key blob may start with (the RSA certificate's blob type is
/// `ssh-rsa-cert-v01@openssh.com` whatever hash signs with it).
const BLOB_TYPES: &[&str] = &[
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "ssh-rsa",
];

/// The suffix of OpenSSH certificate type names.
const CERT_SUFFIX: &str = "-cert-v01@openssh.com";

/// What is wrong with a host key or its signature.
#[derive(Debug, thiserror::Error)]
pub enum HostKeyError {
    /// The blob is longer than we decode.
    #[error("host key blob of {0} bytes is longer than the {MAX_HOST_KEY_BLOB_BYTES} byte limit")]
    TooLong(usize),
    /// The blob does not parse, or does not re-encode to the same bytes.
    #[error("malformed host key: {0}")]
    Malformed(String),
    /// A key type we do not accept (DSA, security keys, unknown names).
    #[error("unsupported host key type {0}")]
    UnsupportedKeyType(String),
    /// An RSA key below the minimum size.
    #[error("rsa host key of {0} bits is below the {MIN_RSA_MODULUS_BITS} bit minimum")]
    RsaTooSmall(u32),
    /// A negotiated host key algorithm we do not implement (ssh-rsa, ssh-dss, unknown).
    #[error("unsupported host key algorithm {0}")]
    UnsupportedAlgorithm(String),
    /// The key (or certificate) does not fit the negotiated algorithm.
    #[error("the host key is {key}, which does not fit the negotiated algorithm {algorithm}")]
    WrongKeyType {
        /// The negotiated host key algorithm.
        algorithm: String,
        /// The presented key's type name.
        key: String,
    },
    /// The signature blob does not parse.
    #[error("malformed host key signature: {0}")]
    MalformedSignature(String),
    /// The signature names another algorithm than the negotiated one implies.
    #[error("the host key signature is {got}, expected {expected}")]
    WrongSignatureAlgorithm {
        /// What the negotiated algorithm implies.
        expected: String,
        /// What the signature says.
        got: String,
    },
    /// The signature does not verify over the exchange hash.
    #[error("the host key signature does not verify")]
    BadSignature,
}

/// Decodes K_S from SSH_MSG_KEX_ECDH_REPLY: a plain key blob or an OpenSSH certificate blob.
///
/// # Errors
/// A blob that is too long, does not parse, has trailing or non-canonical bytes, is of a
/// type we do not accept, or holds an RSA key under [`MIN_RSA_MODULUS_BITS`].
pub(crate) fn decode(blob: &[u8]) -> Result<HostKey, HostKeyError> {
    if blob.len() > MAX_HOST_KEY_BLOB_BYTES {
        return Err(HostKeyError::TooLong(blob.len()));
    }
    let type_name = Reader::new(blob)
        .utf8()
        .map_err(|e| HostKeyError::Malformed(e.to_string()))?;
    let (plain, certificate) = match type_name.strip_suffix(CERT_SUFFIX) {
        Some(plain) => (plain, true),
        None => (type_name, false),
    };
    if !BLOB_TYPES.contains(&plain) {
        return Err(HostKeyError::UnsupportedKeyType(printable(type_name)));
    }
    let key = if certificate {
        let cert =
            Certificate::from_bytes(blob).map_err(|e| HostKeyError::Malformed(e.to_string()))?;
        HostKey::Certificate(Box::new(cert))
    } else {
        let key =
            PublicKey::from_bytes(blob).map_err(|e| HostKeyError::Malformed(e.to_string()))?;
        HostKey::Key(key)
    };
    let reencoded = match &key {
        HostKey::Key(k) => k.key_data().encode_vec(),
        HostKey::Certificate(c) => c.encode_vec(),
    }
    .map_err(|e| HostKeyError::Malformed(e.to_string()))?;
    if reencoded != blob {
        return Err(HostKeyError::Malformed(
            "the blob is not in canonical form".to_owned(),
        ));
    }
    check_key(key.key_data())?;
    Ok(key)
}

/// Refuses key types we do not accept and small RSA keys.
fn check_key(key: &KeyData) -> Result<(), HostKeyError> {
    match key {
        KeyData::Rsa(rsa) if rsa.key_size() < MIN_RSA_MODULUS_BITS => {
            Err(HostKeyError::RsaTooSmall(rsa.key_size()))
        }
        _ if KeyKind::of(key).is_some() => Ok(()),
        other => Err(HostKeyError::UnsupportedKeyType(
            other.algorithm().as_str().to_owned(),
        )),
    }
}

/// Verifies the server's signature (the signature blob: string alg || string sig) over the
/// exchange hash, for the negotiated host key algorithm `algorithm`: the key's type must fit
/// the algorithm (rsa-sha2-512 → RSA key, SHA-512; cert algorithms → a certificate of that
/// key type), and the signature's own algorithm name must equal the expected one (ssh-rsa is
/// refused). Does NOT check certificate validity/CA trust — the caller's known_hosts policy
/// does that.
///
/// # Errors
/// An algorithm we do not implement, a key that does not fit it, a malformed signature, one
/// that names another algorithm, or one that does not verify.
pub(crate) fn verify(
    key: &HostKey,
    algorithm: &str,
    exchange_hash: &[u8],
    signature: &[u8],
) -> Result<(), HostKeyError> {
    let expected = ALGORITHMS
        .iter()
        .find(|a| a.name == algorithm)
        .ok_or_else(|| HostKeyError::UnsupportedAlgorithm(printable(algorithm)))?;
    let is_certificate = matches!(key, HostKey::Certificate(_));
    if is_certificate != expected.certificate || key.kind() != Some(expected.kind) {
        return Err(HostKeyError::WrongKeyType {
            algorithm: algorithm.to_owned(),
            key: key.type_name(),
        });
    }
    let parsed = parse_signature(signature, expected.signature)?;
    key.key_data()
        .verify(exchange_hash, &parsed)
        .map_err(|_| HostKeyError::BadSignature)
}

/// Parses a signature blob (string algorithm || string signature) whose algorithm must be
/// `expected`. Also used for user-key signatures made by ssh-agent.
pub(crate) fn parse_signature(
    blob: &[u8],
    expected: &str,
) -> Result<ssh_key::Signature, HostKeyError> {
    let mut r = Reader::new(blob);
    let malformed = |e: crate::error::WireError| HostKeyError::MalformedSignature(e.to_string());
    let name = r.string().map_err(malformed)?;
    let bytes = r.string().map_err(malformed)?;
    r.finish().map_err(malformed)?;
    if name != expected.as_bytes() {
        return Err(HostKeyError::WrongSignatureAlgorithm {
            expected: expected.to_owned(),
            got: printable(&String::from_utf8_lossy(name)),
        });
    }
    let algorithm =
        Algorithm::new(expected).map_err(|e| HostKeyError::MalformedSignature(e.to_string()))?;
    ssh_key::Signature::new(algorithm, bytes.to_vec())
        .map_err(|e| HostKeyError::MalformedSignature(e.to_string()))
}

/// A peer-supplied name made safe for messages: at most 64 characters, control characters
/// replaced.
pub(crate) fn printable(name: &str) -> String {
    name.chars()
        .take(64)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::testkeys::{KeyFiles, KeyType};
    use crate::wire::Writer;
    use signature::Signer;
    use ssh_key::PrivateKey;

    /// Signs `data` as a server would for host key algorithm `algorithm`.
    fn server_sign(key: &PrivateKey, algorithm: &str, data: &[u8]) -> Vec<u8> {
        let sig = match algorithm {
            "rsa-sha2-256" | "rsa-sha2-256-cert-v01@openssh.com" => {
                (key.key_data().rsa().unwrap(), Some(HashAlg::Sha256))
                    .try_sign(data)
                    .unwrap()
            }
            "rsa-sha2-512" | "rsa-sha2-512-cert-v01@openssh.com" => {
                (key.key_data().rsa().unwrap(), Some(HashAlg::Sha512))
                    .try_sign(data)
                    .unwrap()
            }
            _ => key.try_sign(data).unwrap(),
        };
        sig.encode_vec().unwrap()
    }

    fn plain_algorithms(t: KeyType) -> &'static [&'static str] {
        match t {
            KeyType::Ed25519 => &["ssh-ed25519"],
            KeyType::P256 => &["ecdsa-sha2-nistp256"],
            KeyType::P384 => &["ecdsa-sha2-nistp384"],
            KeyType::P521 => &["ecdsa-sha2-nistp521"],
            KeyType::Rsa => &["rsa-sha2-512", "rsa-sha2-256"],
        }
    }

    const HASH: &[u8] = b"an exchange hash: 32 bytes long.";

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn ed25519_known_answers_from_rfc_8032() {
        // RFC 8032 §7.1, TEST 1 (empty message) and TEST 2 (one byte, 0x72).
        let cases = [
            (
                "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
                "",
                "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155\
                 5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
            ),
            (
                "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
                "72",
                "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da\
                 085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
            ),
        ];
        for (public, message, sig) in cases {
            let sig = sig.replace(' ', "");
            let mut blob = Writer::new();
            blob.string(b"ssh-ed25519").string(&hex(public));
            let key = decode(blob.as_slice()).unwrap();
            let mut sig_blob = Writer::new();
            sig_blob.string(b"ssh-ed25519").string(&hex(&sig));
            verify(&key, "ssh-ed25519", &hex(message), sig_blob.as_slice()).unwrap();
            assert!(matches!(
                verify(&key, "ssh-ed25519", b"x", sig_blob.as_slice()),
                Err(HostKeyError::BadSignature)
            ));
        }
    }

    #[test]
    fn the_published_list_matches_the_table() {
        let names: Vec<&str> = ALGORITHMS.iter().map(|a| a.name).collect();
        assert_eq!(names, HOST_KEY_ALGORITHMS);
        assert!(!HOST_KEY_ALGORITHMS.iter().any(|n| n.contains("ssh-rsa")));
        assert!(!HOST_KEY_ALGORITHMS.iter().any(|n| n.contains("dss")));
    }

    #[test]
    fn every_key_type_decodes_fingerprints_like_ssh_keygen_and_verifies() {
        let files = KeyFiles::new(KeyType::ALL);
        for &t in KeyType::ALL {
            let private = files.private_key(t);
            let blob = files.public_blob(t);
            let key = decode(&blob).unwrap();
            assert!(matches!(key, HostKey::Key(_)), "{t:?}");
            assert_eq!(key.public_key().to_bytes().unwrap(), blob, "{t:?}");
            assert_eq!(key.fingerprint(), files.keygen_fingerprint(t), "{t:?}");
            for &algorithm in plain_algorithms(t) {
                let sig = server_sign(&private, algorithm, HASH);
                verify(&key, algorithm, HASH, &sig).unwrap();
                // The same signature over another hash fails.
                assert!(matches!(
                    verify(&key, algorithm, b"another exchange hash", &sig),
                    Err(HostKeyError::BadSignature)
                ));
                // Every flipped bit of the signature blob is refused, without panicking.
                for i in 0..sig.len() * 8 {
                    let mut bad = sig.clone();
                    bad[i / 8] ^= 1 << (i % 8);
                    assert!(
                        verify(&key, algorithm, HASH, &bad).is_err(),
                        "{t:?} bit {i}"
                    );
                }
            }
        }
    }

    #[test]
    fn host_certificates_decode_and_verify_only_under_cert_algorithms() {
        let files = KeyFiles::new(KeyType::ALL);
        for &t in KeyType::ALL {
            let private = files.private_key(t);
            let cert_blob = files.host_certificate_blob(t);
            let key = decode(&cert_blob).unwrap();
            let HostKey::Certificate(cert) = &key else {
                panic!("{t:?}: not decoded as a certificate");
            };
            assert_eq!(cert.key_id(), "host-id");
            assert_eq!(cert.valid_principals(), ["host.example"]);
            assert_eq!(cert.cert_type(), ssh_key::certificate::CertType::Host);
            assert_eq!(key.public_key().to_bytes().unwrap(), files.public_blob(t));
            // The fingerprint of a certificate is the certified key's, as OpenSSH shows it.
            assert_eq!(key.fingerprint(), files.keygen_fingerprint(t), "{t:?}");
            for &plain in plain_algorithms(t) {
                let cert_alg = format!("{plain}{CERT_SUFFIX}");
                let sig = server_sign(&private, &cert_alg, HASH);
                verify(&key, &cert_alg, HASH, &sig).unwrap();
                // A certificate under the plain algorithm is refused, and the plain key
                // under the certificate algorithm.
                assert!(matches!(
                    verify(&key, plain, HASH, &sig),
                    Err(HostKeyError::WrongKeyType { .. })
                ));
                let plain_key = decode(&files.public_blob(t)).unwrap();
                assert!(matches!(
                    verify(&plain_key, &cert_alg, HASH, &sig),
                    Err(HostKeyError::WrongKeyType { .. })
                ));
            }
        }
    }

    #[test]
    fn rsa_hash_mismatches_and_sha1_are_refused() {
        let files = KeyFiles::new(&[KeyType::Rsa, KeyType::Ed25519]);
        let private = files.private_key(KeyType::Rsa);
        let key = decode(&files.public_blob(KeyType::Rsa)).unwrap();
        let sig256 = server_sign(&private, "rsa-sha2-256", HASH);
        let sig512 = server_sign(&private, "rsa-sha2-512", HASH);
        let err = verify(&key, "rsa-sha2-512", HASH, &sig256).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the host key signature is rsa-sha2-256, expected rsa-sha2-512"
        );
        let err = verify(&key, "rsa-sha2-256", HASH, &sig512).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the host key signature is rsa-sha2-512, expected rsa-sha2-256"
        );
        // An SHA-256 signature relabelled as SHA-512 names the right algorithm but fails.
        let mut r = Reader::new(&sig256);
        r.string().unwrap();
        let raw = r.string().unwrap();
        let mut relabelled = Writer::new();
        relabelled.string(b"rsa-sha2-512").string(raw);
        assert!(matches!(
            verify(&key, "rsa-sha2-512", HASH, relabelled.as_slice()),
            Err(HostKeyError::BadSignature)
        ));
        // ssh-rsa (SHA-1), as negotiated algorithm or as a signature's name.
        assert_eq!(
            verify(&key, "ssh-rsa", HASH, &sig512)
                .unwrap_err()
                .to_string(),
            "unsupported host key algorithm ssh-rsa"
        );
        let mut sha1_named = Writer::new();
        sha1_named.string(b"ssh-rsa").string(raw);
        assert_eq!(
            verify(&key, "rsa-sha2-256", HASH, sha1_named.as_slice())
                .unwrap_err()
                .to_string(),
            "the host key signature is ssh-rsa, expected rsa-sha2-256"
        );
        assert!(matches!(
            verify(&key, "ssh-dss", HASH, &sig512),
            Err(HostKeyError::UnsupportedAlgorithm(_))
        ));
        // A key of another type than the algorithm needs.
        let ed = decode(&files.public_blob(KeyType::Ed25519)).unwrap();
        assert_eq!(
            verify(&ed, "rsa-sha2-512", HASH, &sig512)
                .unwrap_err()
                .to_string(),
            "the host key is ssh-ed25519, which does not fit the negotiated algorithm rsa-sha2-512"
        );
        assert!(matches!(
            verify(&key, "ssh-ed25519", HASH, &sig512),
            Err(HostKeyError::WrongKeyType { .. })
        ));
    }

    #[test]
    fn ecdsa_curves_do_not_mix() {
        let files = KeyFiles::new(&[KeyType::P256, KeyType::P384]);
        let p256 = decode(&files.public_blob(KeyType::P256)).unwrap();
        let sig = server_sign(&files.private_key(KeyType::P384), "x", HASH);
        assert!(matches!(
            verify(&p256, "ecdsa-sha2-nistp384", HASH, &sig),
            Err(HostKeyError::WrongKeyType { .. })
        ));
        assert!(matches!(
            verify(&p256, "ecdsa-sha2-nistp256", HASH, &sig),
            Err(HostKeyError::WrongSignatureAlgorithm { .. })
        ));
    }

    #[test]
    fn truncated_and_extended_blobs_are_refused_without_panic() {
        let files = KeyFiles::new(KeyType::ALL);
        for &t in KeyType::ALL {
            for blob in [files.public_blob(t), files.host_certificate_blob(t)] {
                for cut in 0..blob.len() {
                    assert!(decode(&blob[..cut]).is_err(), "{t:?} cut at {cut}");
                }
                let mut longer = blob.clone();
                longer.push(0);
                assert!(decode(&longer).is_err(), "{t:?} with a trailing byte");
            }
            let private = files.private_key(t);
            let key = decode(&files.public_blob(t)).unwrap();
            let algorithm = plain_algorithms(t)[0];
            let sig = server_sign(&private, algorithm, HASH);
            for cut in 0..sig.len() {
                assert!(verify(&key, algorithm, HASH, &sig[..cut]).is_err());
            }
        }
    }

    #[test]
    fn a_certificate_with_bytes_hidden_in_a_field_is_refused() {
        // ssh-key's certificate decoder ignores bytes after the CA key inside its string;
        // the re-encoding check catches them.
        let files = KeyFiles::new(&[KeyType::Ed25519]);
        let blob = files.host_certificate_blob(KeyType::Ed25519);
        let mut r = Reader::new(&blob);
        r.string().unwrap(); // type
        r.string().unwrap(); // nonce
        r.string().unwrap(); // the ed25519 key
        r.u64().unwrap(); // serial
        r.u32().unwrap(); // type
        for _ in 0..2 {
            r.string().unwrap(); // key id, principals
        }
        r.u64().unwrap();
        r.u64().unwrap();
        for _ in 0..3 {
            r.string().unwrap(); // critical options, extensions, reserved
        }
        let head = &blob[..blob.len() - r.rest().len()];
        let ca_key = r.string().unwrap();
        let ca_signature = r.string().unwrap();
        r.finish().unwrap();
        let mut padded = Writer::new();
        padded
            .raw(head)
            .string(&[ca_key, &[0u8][..]].concat())
            .string(ca_signature);
        assert_eq!(
            decode(padded.as_slice()).unwrap_err().to_string(),
            "malformed host key: the blob is not in canonical form"
        );
    }

    #[test]
    fn unsupported_and_oversized_blobs_are_refused() {
        let mut dss = Writer::new();
        dss.string(b"ssh-dss").string(&[1; 20]);
        assert_eq!(
            decode(dss.as_slice()).unwrap_err().to_string(),
            "unsupported host key type ssh-dss"
        );
        let mut sk = Writer::new();
        sk.string(b"sk-ssh-ed25519@openssh.com")
            .string(&[1; 32])
            .string(b"ssh:");
        assert!(matches!(
            decode(sk.as_slice()),
            Err(HostKeyError::UnsupportedKeyType(_))
        ));
        let mut hostile = Writer::new();
        hostile.string(b"evil\x1b[2Jname");
        assert_eq!(
            decode(hostile.as_slice()).unwrap_err().to_string(),
            "unsupported host key type evil?[2Jname"
        );
        let huge = vec![0u8; MAX_HOST_KEY_BLOB_BYTES + 1];
        assert!(matches!(decode(&huge), Err(HostKeyError::TooLong(_))));
        // An ed25519 key of the wrong length.
        let mut short = Writer::new();
        short.string(b"ssh-ed25519").string(&[7; 31]);
        assert!(matches!(
            decode(short.as_slice()),
            Err(HostKeyError::Malformed(_))
        ));
    }

    #[test]
    fn small_rsa_keys_are_refused() {
        // ssh-keygen makes no RSA key under 1024 bits: build a 768-bit one by hand (an odd
        // modulus with its top bit set, e = 65537).
        let mut n = vec![0xc5u8; 96];
        n[95] = 0x01;
        let mut blob = Writer::new();
        blob.string(b"ssh-rsa")
            .mpint_unsigned(&[0x01, 0x00, 0x01])
            .mpint_unsigned(&n);
        assert_eq!(
            decode(blob.as_slice()).unwrap_err().to_string(),
            "rsa host key of 768 bits is below the 1024 bit minimum"
        );
    }
}
