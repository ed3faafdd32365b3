//! Entry points for the fuzz targets in `fuzz/` (one per decoder of the SSH client), kept
//! inside the crate because the decoders are crate-private. Each function takes the raw
//! fuzz input, drives the real code with it, and asserts what that code promises beyond
//! "no panic"; a failed assertion is a finding. Not part of the API.
//!
//! Inputs are read with [`Input`]: a missing byte reads as 0, so every input is valid.
//! Several entry points take a leading mode byte that makes the harness build well-formed
//! framing (packets, agent frames) around the fuzzed bytes, so the fuzzer spends its time
//! on the contents rather than on lengths and padding.

mod hostkeys;

pub use hostkeys::host_key_proofs;

use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, Waker};

use signature::{Signer, Verifier};
use ssh_key::encoding::Encode;
use ssh_key::{Certificate, PrivateKey, PublicKey};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::sync::{mpsc, oneshot};
use zeroize::Zeroizing;

use crate::auth::{self, Credential, MAX_AUTH_MESSAGES, MAX_BANNER_BYTES, PacketLink};
use crate::channel::{Channel, SessionShared};
use crate::cipher::{self, DirectionKeys};
use crate::connection::{ChannelConfig, Connection, IncomingChannel, OpenError, OpenKind};
use crate::error::LinkError;
use crate::hostkey::{self, HostKey};
use crate::kex::{self, HashAlg, KexError};
use crate::negotiate::KexInit;
use crate::packet::{Incoming, MAX_PACKET_LENGTH_BYTES, Outgoing};
use crate::transport::{Transport, TransportConfig, TransportError};
use crate::wire::{Reader, Writer};

/// The largest tag of our packet constructions (hmac-sha2-512-etm), as in `packet.rs`.
const MAX_TAG_BYTES: usize = 64;
/// The smallest read buffer `packet::Incoming` allocates (its idle size), as in `packet.rs`.
const READ_IDLE_BYTES: usize = 4 * 1024;
/// The most the packet reader may hold: the largest packet with its length field and tag,
/// and one more read.
const MAX_READ_BUFFER_BYTES: usize = 4 + MAX_PACKET_LENGTH_BYTES + MAX_TAG_BYTES + READ_IDLE_BYTES;
/// What the transport may add to its output before the first key exchange completes,
/// beyond its version line and KEXINIT: one KEX_ECDH_INIT (at most 1216 bytes of C_INIT for
/// mlkem768x25519) framed as a packet.
const MAX_ECDH_INIT_PACKET_BYTES: usize = 2048;

/// A test key made once with `ssh-keygen -t ed25519 -N '' -C fuzz-test-key` for these
/// harnesses only; it protects nothing.
const TEST_KEY: &str = "-----BEGIN OPENSSH PRIVATE KEY-----
b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW
QyNTUxOQAAACC2qYQv/UGHqxlW/OBFCPiFwb+t8X5swSSZeo3Kip9/igAAAJBZAGOjWQBj
owAAAAtzc2gtZWQyNTUxOQAAACC2qYQv/UGHqxlW/OBFCPiFwb+t8X5swSSZeo3Kip9/ig
AAAEBK1L72slt8kmthGOtaRMk7EyfNj5hi75WOjFfvOYgDmraphC/9QYerGVb84EUI+IXB
v63xfmzBJJl6jcqKn3+KAAAADWZ1enotdGVzdC1rZXk=
-----END OPENSSH PRIVATE KEY-----
";

/// A host certificate of [`TEST_KEY`], signed by itself: `ssh-keygen -s KEY -I fuzz-host -h
/// -n host.example -V 20240101:20340101 KEY.pub`.
const TEST_HOST_CERT: &str = "ssh-ed25519-cert-v01@openssh.com AAAAIHNzaC1lZDI1NTE5LWNlcnQtdjAxQG9wZW5zc2guY29tAAAAIFk0Yovti7K5yFLZopFbfbnOwKIoCMgeX8bF7PMDdPqGAAAAILaphC/9QYerGVb84EUI+IXBv63xfmzBJJl6jcqKn3+KAAAAAAAAAAAAAAACAAAACWZ1enotaG9zdAAAABAAAAAMaG9zdC5leGFtcGxlAAAAAGWSAIAAAAAAeGH4AAAAAAAAAAAAAAAAAAAAADMAAAALc3NoLWVkMjU1MTkAAAAgtqmEL/1Bh6sZVvzgRQj4hcG/rfF+bMEkmXqNyoqff4oAAABTAAAAC3NzaC1lZDI1NTE5AAAAQLht5+4szPul2SjTnNI2fx8Kfd8hn2tts2TzUIZ9cxW0Pd46klpADlAm0GWtiYWDwFEAH1vUC/dmLn4O+/TtxAE= fuzz-test-key";

/// A user certificate of [`TEST_KEY`] for principal `fuzz`, signed by itself: `ssh-keygen -s
/// KEY -I fuzz-user -n fuzz -V 20240101:20340101 KEY.pub`.
const TEST_USER_CERT: &str = "ssh-ed25519-cert-v01@openssh.com AAAAIHNzaC1lZDI1NTE5LWNlcnQtdjAxQG9wZW5zc2guY29tAAAAINJP43uVYmGhqydgn7ehIwXj1zz21hX6u7qQSjygsHTvAAAAILaphC/9QYerGVb84EUI+IXBv63xfmzBJJl6jcqKn3+KAAAAAAAAAAAAAAABAAAACWZ1enotdXNlcgAAAAgAAAAEZnV6egAAAABlkgCAAAAAAHhh+AAAAAAAAAAAggAAABVwZXJtaXQtWDExLWZvcndhcmRpbmcAAAAAAAAAF3Blcm1pdC1hZ2VudC1mb3J3YXJkaW5nAAAAAAAAABZwZXJtaXQtcG9ydC1mb3J3YXJkaW5nAAAAAAAAAApwZXJtaXQtcHR5AAAAAAAAAA5wZXJtaXQtdXNlci1yYwAAAAAAAAAAAAAAMwAAAAtzc2gtZWQyNTUxOQAAACC2qYQv/UGHqxlW/OBFCPiFwb+t8X5swSSZeo3Kip9/igAAAFMAAAALc3NoLWVkMjU1MTkAAABAKuUIZDqwUPAn4TlhTmKFJJAseij5mRx4IWut1XXc8JRhVit0PZUkk9y/BlHcD4lEuZv96ySc5r9kdhWdiN0HDw== fuzz-test-key";

/// The parsed test keys, made once per process.
struct Fixtures {
    key: Arc<PrivateKey>,
    /// The plain public key blob.
    blob: Vec<u8>,
    /// The host certificate's blob.
    host_cert_blob: Vec<u8>,
    user_cert: Certificate,
}

fn fixtures() -> &'static Fixtures {
    static FIXTURES: OnceLock<Fixtures> = OnceLock::new();
    FIXTURES.get_or_init(|| {
        let key = PrivateKey::from_openssh(TEST_KEY).expect("the test key parses");
        let blob = key
            .public_key()
            .key_data()
            .encode_vec()
            .expect("the test key encodes");
        let host_cert_blob = Certificate::from_openssh(TEST_HOST_CERT)
            .expect("the host cert parses")
            .encode_vec()
            .expect("the host cert encodes");
        let user_cert = Certificate::from_openssh(TEST_USER_CERT).expect("the user cert parses");
        Fixtures {
            key: Arc::new(key),
            blob,
            host_cert_blob,
            user_cert,
        }
    })
}

/// Fuzz input read front to back; past its end every read gives zeros or nothing.
struct Input<'a> {
    data: &'a [u8],
}

impl<'a> Input<'a> {
    fn new(data: &'a [u8]) -> Self {
        Input { data }
    }

    fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    fn u8(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&b, rest)) => {
                self.data = rest;
                b
            }
            None => 0,
        }
    }

    fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.u8(), self.u8()])
    }

    fn u32(&mut self) -> u32 {
        u32::from_be_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }

    /// Up to `n` bytes.
    fn take(&mut self, n: usize) -> &'a [u8] {
        let (head, tail) = self.data.split_at(n.min(self.data.len()));
        self.data = tail;
        head
    }

    /// A u16-length-prefixed piece; `None` once the input is used up.
    fn chunk(&mut self) -> Option<&'a [u8]> {
        if self.is_empty() {
            return None;
        }
        let n = usize::from(self.u16());
        Some(self.take(n))
    }

    fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.data)
    }
}

/// Read sizes for feeding a byte stream, picked by a mode byte: fixed small and large
/// sizes, everything at once, or a pseudo-random sequence.
struct ReadSizes {
    mode: u8,
    state: u32,
}

impl ReadSizes {
    fn new(mode: u8) -> Self {
        ReadSizes {
            mode,
            state: u32::from(mode).wrapping_mul(0x9e37_79b9) | 1,
        }
    }

    fn next(&mut self) -> usize {
        match self.mode % 8 {
            0 => 1,
            1 => 3,
            2 => 17,
            3 => 500,
            4 => 4096,
            5 => 70_000,
            6 => usize::MAX,
            _ => {
                // xorshift32
                self.state ^= self.state << 13;
                self.state ^= self.state >> 17;
                self.state ^= self.state << 5;
                1 + (self.state % 2000) as usize
            }
        }
    }
}

/// Runs a future that never waits on anything outside itself (scripted links).
fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime")
    })
}

// ---------------------------------------------------------------------------------------
// ssh_packet

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

// ---------------------------------------------------------------------------------------
// ssh_transport

/// Strict key exchange's server pseudo-algorithm (OpenSSH PROTOCOL §1.10).
const STRICT_KEX_S: &str = "kex-strict-s-v00@openssh.com";

/// A client `Transport` fed what a server sends, in the clear.
///
/// Input: mode byte (bit 0: after the first line, the rest is u16-prefixed payloads the
/// harness frames as unprotected packets, else the rest is the stream itself; bit 1:
/// curve25519 first in our kex list, else the default order), read-size byte, rest.
///
/// Asserts: no panic; the host key check is never called (no server signature can verify
/// over an exchange hash that holds our fresh ephemeral key) and the transport never
/// becomes established nor hands a message up; its output grows by at most one ECDH_INIT
/// packet; an accepted identification is printable ASCII of at most 253 characters
/// starting `SSH-2.0-` or `SSH-1.99-`; DISCONNECT text is cut and cleaned. With framed
/// payloads, a run that ends without error has seen no empty message, no message numbered
/// 50 or more, at most one KEXINIT and no NEWKEYS, and, when the server asked for strict
/// key exchange, its KEXINIT first and nothing but key exchange messages after it.
pub fn transport(data: &[u8]) {
    let _ = run_transport(data);
}

/// [`transport`], returning how the transport stopped.
fn run_transport(data: &[u8]) -> Option<TransportError> {
    let mut input = Input::new(data);
    let mode = input.u8();
    let mut sizes = ReadSizes::new(input.u8());
    let framed = mode & 1 != 0;
    let mut config = TransportConfig::default();
    if mode & 2 != 0 {
        config.kex.reverse();
    }
    let calls = Arc::new(AtomicUsize::new(0));
    let check_calls = Arc::clone(&calls);
    let mut t = Transport::new(
        config,
        Box::new(move |_key: &HostKey| {
            check_calls.fetch_add(1, Ordering::Relaxed);
            Ok(())
        }),
    );
    assert!(t.output().starts_with(b"SSH-2.0-tunneld_"));
    let initial_output = t.output_len();

    let mut first_line: &[u8] = &[];
    let mut payloads: Vec<&[u8]> = Vec::new();
    let wire = if framed {
        let rest = input.rest();
        let (line, packets) = match rest.iter().position(|&b| b == b'\n') {
            Some(i) => rest.split_at(i + 1),
            None => (rest, &[][..]),
        };
        first_line = line;
        let mut out = Outgoing::new();
        out.raw(line);
        let mut p = Input::new(packets);
        while let Some(payload) = p.chunk() {
            out.packet(|b| b.extend_from_slice(payload));
            payloads.push(payload);
        }
        out.pending().to_vec()
    } else {
        input.rest().to_vec()
    };

    let mut error: Option<TransportError> = None;
    let mut fed = 0;
    while fed < wire.len() {
        let buf = t.read_buf();
        assert!(!buf.is_empty(), "the transport has no room to read into");
        let n = sizes.next().min(buf.len()).min(wire.len() - fed);
        buf[..n].copy_from_slice(&wire[fed..fed + n]);
        t.filled(n);
        fed += n;
        // One poll handles every whole packet buffered (none may reach the layers above).
        match t.poll() {
            Ok(Some(range)) => {
                let len = t.message(range).len();
                panic!("a message of {len} bytes reached the layers above before NEWKEYS");
            }
            Ok(None) => {}
            Err(e) => {
                error = Some(e);
                break;
            }
        }
    }

    assert_eq!(calls.load(Ordering::Relaxed), 0, "host key check called");
    assert!(!t.is_established());
    assert!(t.session_id().is_none());
    assert!(t.host_key().is_none());
    assert!(t.algorithms().is_none());
    assert_eq!(t.kex_count(), 0);
    assert!(
        t.output_len() <= initial_output + MAX_ECDH_INIT_PACKET_BYTES,
        "the transport wrote {} bytes beyond its KEXINIT",
        t.output_len() - initial_output
    );
    if let Some(version) = t.server_version() {
        assert!(
            version.len() <= 253,
            "an identification of {}",
            version.len()
        );
        assert!(version.starts_with("SSH-2.0-") || version.starts_with("SSH-1.99-"));
        assert!(version.chars().all(|c| c.is_ascii_graphic() || c == ' '));
    }
    match &error {
        Some(TransportError::Disconnected { message, .. }) => {
            assert!(message.chars().count() <= 256);
            assert!(!message.chars().any(char::is_control));
        }
        Some(e) => {
            let _ = e.to_string();
        }
        None => {}
    }

    // The packets were parsed as packets only if the first line was the identification.
    let as_packets = framed && first_line.starts_with(b"SSH-") && t.server_version().is_some();
    if !as_packets || error.is_some() {
        return error;
    }
    assert!(
        payloads.iter().all(|p| !p.is_empty()),
        "an empty message passed"
    );
    let numbers: Vec<u8> = payloads.iter().map(|p| p[0]).collect();
    assert!(
        numbers.iter().all(|&n| n < 50 && n != 1),
        "messages {numbers:?} passed before the key exchange finished"
    );
    assert!(
        numbers.iter().filter(|&&n| n == 20).count() <= 1,
        "two KEXINITs passed"
    );
    assert!(
        !numbers.contains(&21),
        "NEWKEYS passed without a key exchange"
    );
    let kexinit = payloads.iter().position(|p| p[0] == 20);
    if let Some(k) = kexinit
        && let Ok(theirs) = KexInit::decode(payloads[k])
        && theirs.kex.iter().any(|name| name == STRICT_KEX_S)
    {
        assert_eq!(k, 0, "strict kex: KEXINIT was packet {k}, not the first");
        assert!(
            numbers.iter().all(|&n| (20..=49).contains(&n)),
            "strict kex: messages {numbers:?} passed during the initial exchange"
        );
    }
    None
}

// ---------------------------------------------------------------------------------------
// ssh_kex_reply

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

// ---------------------------------------------------------------------------------------
// ssh_hostkey

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

// ---------------------------------------------------------------------------------------
// ssh_userauth

/// The session identifier the scripted link reports.
const SESSION_ID: &[u8] = b"a session identifier of 32 bytes";
/// The user name authentication runs for.
const USER: &str = "fuzz";

/// One step of a scripted authentication, in order.
#[derive(Debug)]
enum Event {
    Sent(Vec<u8>),
    Received(Vec<u8>),
}

/// A `PacketLink` whose server replies are cut from the fuzz input.
struct ScriptedLink<'a> {
    input: Input<'a>,
    events: Vec<Event>,
    recv_calls: usize,
    sig_algs: Option<Vec<String>>,
}

impl PacketLink for ScriptedLink<'_> {
    async fn send(&mut self, payload: Vec<u8>) -> Result<(), LinkError> {
        self.events.push(Event::Sent(payload));
        Ok(())
    }

    async fn recv(&mut self) -> Result<Vec<u8>, LinkError> {
        self.recv_calls += 1;
        match self.input.chunk() {
            Some(msg) => {
                self.events.push(Event::Received(msg.to_vec()));
                Ok(msg.to_vec())
            }
            None => Err(LinkError("the script ended".to_owned())),
        }
    }

    fn session_id(&self) -> &[u8] {
        SESSION_ID
    }

    fn server_sig_algs(&self) -> Option<Vec<String>> {
        self.sig_algs.clone()
    }
}

/// The fields of a publickey USERAUTH_REQUEST we sent: (signed, algorithm, blob, the
/// request up to the signature, signature).
type PublickeyRequest<'a> = (bool, &'a [u8], &'a [u8], &'a [u8], Option<&'a [u8]>);

fn parse_publickey_request(msg: &[u8]) -> Option<PublickeyRequest<'_>> {
    let mut r = Reader::new(msg);
    (r.u8().ok()? == 50).then_some(())?;
    r.string().ok()?;
    r.string().ok()?;
    (r.string().ok()? == b"publickey").then_some(())?;
    let signed = r.bool().ok()?;
    let algorithm = r.string().ok()?;
    let blob = r.string().ok()?;
    let unsigned = &msg[..msg.len() - r.rest().len()];
    let signature = if signed {
        let s = r.string().ok()?;
        Some(s)
    } else {
        None
    };
    r.finish().ok()?;
    Some((signed, algorithm, blob, unsigned, signature))
}

/// `auth::authenticate` against a server whose messages are cut from the input.
///
/// Input: mode byte (bit 0: the server sent `server-sig-algs`; bits 1-3 pick the
/// credentials: the test key, the test key with its user certificate, an ssh-agent key
/// whose socket does not exist; none set means all three), then u16-prefixed server
/// messages; the link fails once they are used up.
///
/// Asserts: no panic, and it finishes; at most [`MAX_AUTH_MESSAGES`] messages are read
/// (exactly that many when it gives up for that reason); it sends SERVICE_REQUEST for
/// ssh-userauth, then the `none` request, then only USERAUTH_REQUESTs for our user and
/// ssh-connection, at most two per credential; every signed request directly follows a
/// PK_OK naming its algorithm and blob, and its signature verifies over the session
/// identifier and the request; success follows a USERAUTH_SUCCESS and keeps at most
/// [`MAX_BANNER_BYTES`] of banner.
pub fn userauth(data: &[u8]) {
    let _ = run_userauth(data);
}

/// [`userauth`], returning the outcome.
fn run_userauth(data: &[u8]) -> Result<auth::Authenticated, auth::AuthError> {
    let f = fixtures();
    let mut input = Input::new(data);
    let mode = input.u8();
    let sig_algs =
        (mode & 1 != 0).then(|| vec!["ssh-ed25519".to_owned(), "rsa-sha2-256".to_owned()]);
    let pick = if mode & 0x0e == 0 { 0x0e } else { mode };
    let mut credentials = Vec::new();
    if pick & 2 != 0 {
        credentials.push(Credential::Key {
            key: Arc::clone(&f.key),
            certificate: None,
            label: "test key".to_owned(),
        });
    }
    if pick & 4 != 0 {
        credentials.push(Credential::Key {
            key: Arc::clone(&f.key),
            certificate: Some(f.user_cert.clone()),
            label: "test key with certificate".to_owned(),
        });
    }
    if pick & 8 != 0 {
        credentials.push(Credential::Agent {
            socket: "/nonexistent/tunneld-fuzz/agent.sock".into(),
            blob: f.blob.clone(),
            comment: "agent key".to_owned(),
        });
    }
    let mut link = ScriptedLink {
        input,
        events: Vec::new(),
        recv_calls: 0,
        sig_algs,
    };
    let result = runtime().block_on(auth::authenticate(&mut link, USER, &credentials));

    assert!(
        link.recv_calls <= MAX_AUTH_MESSAGES,
        "{} reads",
        link.recv_calls
    );
    if matches!(result, Err(auth::AuthError::TooManyMessages)) {
        assert_eq!(link.recv_calls, MAX_AUTH_MESSAGES);
    }
    let sent: Vec<&[u8]> = link
        .events
        .iter()
        .filter_map(|e| match e {
            Event::Sent(m) => Some(m.as_slice()),
            Event::Received(_) => None,
        })
        .collect();
    assert!(
        sent.len() <= 2 + 2 * credentials.len(),
        "{} messages sent",
        sent.len()
    );
    let mut service = Writer::message(5);
    service.string(b"ssh-userauth");
    assert_eq!(sent.first().copied(), Some(service.as_slice()));
    if let Some(none) = sent.get(1) {
        let mut w = Writer::message(50);
        w.string(USER.as_bytes())
            .string(b"ssh-connection")
            .string(b"none");
        assert_eq!(*none, w.as_slice());
    }
    let mut prefix = Writer::message(50);
    prefix.string(USER.as_bytes()).string(b"ssh-connection");
    for msg in sent.iter().skip(1) {
        assert!(msg.starts_with(prefix.as_slice()), "sent {msg:02x?}");
    }

    let mut last_received: Option<&[u8]> = None;
    for event in &link.events {
        match event {
            Event::Received(m) => last_received = Some(m),
            Event::Sent(m) => {
                let Some((true, algorithm, blob, unsigned, Some(sig))) = parse_publickey_request(m)
                else {
                    continue;
                };
                let mut pk_ok = Writer::message(60);
                pk_ok.string(algorithm).string(blob);
                assert_eq!(
                    last_received,
                    Some(pk_ok.as_slice()),
                    "a signed request without a matching PK_OK"
                );
                let algorithm = std::str::from_utf8(algorithm).expect("our algorithm names");
                let key = if algorithm.ends_with("-cert-v01@openssh.com") {
                    Certificate::from_bytes(blob)
                        .expect("we offer blobs that parse")
                        .public_key()
                        .clone()
                } else {
                    PublicKey::from_bytes(blob)
                        .expect("we offer blobs that parse")
                        .key_data()
                        .clone()
                };
                let sig_name = algorithm
                    .strip_suffix("-cert-v01@openssh.com")
                    .unwrap_or(algorithm);
                let sig = hostkey::parse_signature(sig, sig_name).expect("our signatures parse");
                let mut signed = Writer::new();
                signed.string(SESSION_ID).raw(unsigned);
                key.verify(signed.as_slice(), &sig)
                    .expect("our signature verifies over the session id and request");
            }
        }
    }
    match &result {
        Ok(done) => {
            assert_eq!(
                last_received,
                Some(&[52u8][..]),
                "success without USERAUTH_SUCCESS"
            );
            assert!(done.banner.len() <= MAX_BANNER_BYTES);
            let names: Vec<String> = credentials.iter().map(Credential::describe).collect();
            assert!(
                done.credential == "none" || names.contains(&done.credential),
                "authenticated as {:?}",
                done.credential
            );
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
    result
}

// ---------------------------------------------------------------------------------------
// ssh_agent_reply

/// Answers one connection on `listener` with `reply` once it has read the request, then
/// hangs up.
async fn fake_agent(listener: tokio::net::UnixListener, reply: Vec<u8>) {
    let Ok((mut stream, _)) = listener.accept().await else {
        return;
    };
    let mut len = [0u8; 4];
    if stream.read_exact(&mut len).await.is_err() {
        return;
    }
    let mut request = vec![0u8; (u32::from_be_bytes(len) as usize).min(1 << 20)];
    if stream.read_exact(&mut request).await.is_err() {
        return;
    }
    let _ = stream.write_all(&reply).await;
}

/// A socket path no other process or call uses.
fn agent_socket_path() -> std::path::PathBuf {
    static COUNT: AtomicUsize = AtomicUsize::new(0);
    std::env::temp_dir().join(format!(
        "tunneld-fuzz-agent-{}-{}.sock",
        std::process::id(),
        COUNT.fetch_add(1, Ordering::Relaxed)
    ))
}

/// The agent client (`agent::identities` or `agent::sign`) against a fake agent on a real
/// Unix socket that answers with the input.
///
/// Input: mode byte (bit 0: a sign request, else a list; bit 1: the harness adds the
/// reply's u32 length frame, else the rest is sent as it is), rest the reply.
///
/// Asserts: no panic, and it finishes without the timeout (the fake agent hangs up after
/// its reply); an identities answer holds at most `MAX_AGENT_IDENTITIES` keys, each with
/// the blob and comment the reply holds, at this socket; a signature is exactly the
/// string the reply holds.
pub fn agent_reply(data: &[u8]) {
    let _ = run_agent_reply(data);
}

/// [`agent_reply`], returning the keys listed or the signature's length.
fn run_agent_reply(data: &[u8]) -> Result<usize, auth::AgentError> {
    let mut input = Input::new(data);
    let mode = input.u8();
    let body = input.rest();
    let reply = if mode & 2 != 0 {
        let mut w = Writer::new();
        w.string(body);
        w.into_vec()
    } else {
        body.to_vec()
    };
    let socket = agent_socket_path();
    let _ = std::fs::remove_file(&socket);
    let outcome = runtime().block_on(async {
        let listener = tokio::net::UnixListener::bind(&socket)
            .unwrap_or_else(|e| panic!("cannot bind {}: {e}", socket.display()));
        let server = tokio::spawn(fake_agent(listener, reply.clone()));
        // The framed reply as the client reads it (its length says how much).
        let mut r = Reader::new(&reply);
        let framed = r.string().ok();
        let outcome = if mode & 1 == 0 {
            let result = auth::agent::identities(&socket).await;
            match result {
                Ok(keys) => {
                    assert!(keys.len() <= auth::agent::MAX_AGENT_IDENTITIES);
                    let framed = framed.expect("a list from a reply without its frame");
                    let mut r = Reader::new(framed);
                    assert_eq!(r.u8(), Ok(12));
                    assert_eq!(r.u32().map(|n| n as usize), Ok(keys.len()));
                    for key in &keys {
                        let Credential::Agent {
                            socket: at,
                            blob,
                            comment,
                        } = key
                        else {
                            panic!("the agent listed a file key");
                        };
                        assert_eq!(at, &socket);
                        assert_eq!(Ok(blob.as_slice()), r.string());
                        let raw = r.string().expect("a comment for each key");
                        assert_eq!(*comment, String::from_utf8_lossy(raw));
                        let _ = key.describe();
                    }
                    assert!(r.is_empty(), "bytes after the listed keys");
                    Ok(keys.len())
                }
                Err(e) => {
                    let _ = e.to_string();
                    Err(e)
                }
            }
        } else {
            let result = auth::agent::sign(&socket, &fixtures().blob, b"data to sign", 0).await;
            match result {
                Ok(signature) => {
                    let framed = framed.expect("a signature from a reply without its frame");
                    let mut w = Writer::message(14);
                    w.string(&signature);
                    assert_eq!(framed, w.as_slice(), "the signature is not the reply's");
                    Ok(signature.len())
                }
                Err(e) => {
                    let _ = e.to_string();
                    Err(e)
                }
            }
        };
        let _ = server.await;
        outcome
    });
    let _ = std::fs::remove_file(&socket);
    outcome
}

// ---------------------------------------------------------------------------------------
// ssh_connection

/// The channel sizes of the connection target: small, so that windows fill.
const CONNECTION_CONFIG: ChannelConfig = ChannelConfig {
    window_bytes: 4096,
    max_packet_bytes: 1024,
    max_channels: 8,
    max_offered: 4,
};

/// What the harness knows of one channel of the table (by our channel number).
#[derive(Default)]
struct ChannelModel {
    /// Our open waiting for its answer.
    opening: Option<oneshot::Receiver<Result<Channel, OpenError>>>,
    /// The application's handle.
    handle: Option<Channel>,
    /// Channel data the connection took for this channel, in order.
    accepted: Vec<u8>,
    /// How much of `accepted` the handle has read.
    read: usize,
}

/// Reads up to `max` bytes from a handle without waiting: `None` when it would wait.
fn read_now(channel: &mut Channel, max: usize) -> Option<std::io::Result<Vec<u8>>> {
    let mut buf = vec![0u8; max];
    let mut rb = ReadBuf::new(&mut buf);
    match Pin::new(channel).poll_read(&mut Context::from_waker(Waker::noop()), &mut rb) {
        Poll::Ready(Ok(())) => Some(Ok(rb.filled().to_vec())),
        Poll::Ready(Err(e)) => Some(Err(e)),
        Poll::Pending => None,
    }
}

/// Checks what a handle read against what the connection accepted for its channel.
fn check_read(model: &mut ChannelModel, data: &[u8], id: u32) {
    let end = model.read + data.len();
    assert!(
        end <= model.accepted.len(),
        "channel {id}: read {end} bytes, the server sent {}",
        model.accepted.len()
    );
    assert_eq!(
        data,
        &model.accepted[model.read..end],
        "channel {id}: read other bytes than the server sent"
    );
    model.read = end;
}

/// A connection-layer message for channel `id`.
fn channel_message(number: u8, id: u32) -> Writer {
    let mut w = Writer::message(number);
    w.u32(id);
    w
}

/// `Connection::handle` with a sequence of connection-layer messages, after the harness
/// opened two channels (a direct-tcpip and a direct-streamlocal), interleaved with what
/// the application and the driver do: read, write, shut down and drop channel handles,
/// accept or refuse the server's channels, service the channels that asked for it.
///
/// Input: a sequence of operations, each an opcode byte and its operands (see the match
/// below); a channel operand is a byte taken modulo 8. Messages are either raw
/// (u16-prefixed) or built from operands.
///
/// Asserts: no panic; a channel never buffers more than its window (4096 bytes here), so
/// all channels together at most 8 windows; what a handle reads is exactly the channel
/// data the connection accepted for it, in order, and never more; the server's offers
/// waiting for the application are at most `max_offered`; once a message fails, the
/// session ends and every handle reads to its end or fails without waiting.
pub fn connection(data: &[u8]) {
    let _ = run_connection(data);
}

/// [`connection`], returning the bytes all handles read.
fn run_connection(data: &[u8]) -> usize {
    let config = CONNECTION_CONFIG;
    let mut input = Input::new(data);
    let mut t = Transport::new(TransportConfig::default(), Box::new(|_: &HostKey| Ok(())));
    let session = SessionShared::new();
    let (offers_tx, mut offers) = mpsc::channel::<IncomingChannel>(config.max_offered);
    let mut conn = Connection::new(config, Arc::clone(&session), offers_tx);
    let window = config.window_bytes as usize;
    let max_channels = config.max_channels;
    let mut models: Vec<ChannelModel> =
        (0..max_channels).map(|_| ChannelModel::default()).collect();
    // Channel numbers are given out in order from 0 (the table never fills up to wrap).
    let mut next_id = 0usize;

    let kinds = [
        OpenKind::DirectTcpip {
            host: "target.example".to_owned(),
            port: 22,
            originator: "127.0.0.1".to_owned(),
            originator_port: 40_000,
        },
        OpenKind::DirectStreamlocal {
            path: "/run/target.sock".to_owned(),
        },
    ];
    for kind in &kinds {
        let (tx, rx) = oneshot::channel();
        conn.open(kind, tx, &mut t)
            .expect("opens queue before the key exchange");
        models[next_id].opening = Some(rx);
        next_id += 1;
    }
    // The server's offers the application has not answered, with their channel numbers.
    let mut pending_offers: Vec<(usize, IncomingChannel)> = Vec::new();
    let mut dirty = Vec::new();
    let mut failed: Option<TransportError> = None;

    while !input.is_empty() && failed.is_none() {
        let op = input.u8();
        let ch = u32::from(input.u8() % max_channels as u8);
        let message: Option<Vec<u8>> = match op % 18 {
            0 => Some(input.chunk().unwrap_or_default().to_vec()),
            1 | 2 => {
                // CHANNEL_DATA / EXTENDED_DATA of a length the input picks, filled from
                // the input and then with a counter.
                let len = usize::from(input.u16()) % (window + 64);
                let mut data = input.take(len).to_vec();
                let start = data.len();
                data.extend((start..len).map(|i| i as u8));
                let mut w = if op % 18 == 1 {
                    channel_message(94, ch)
                } else {
                    let mut w = channel_message(95, ch);
                    w.u32(1);
                    w
                };
                w.string(&data);
                Some(w.into_vec())
            }
            3 => {
                let mut w = channel_message(93, ch);
                w.u32(input.u32());
                Some(w.into_vec())
            }
            4 => Some(channel_message(96, ch).into_vec()),
            5 => Some(channel_message(97, ch).into_vec()),
            6 => {
                let mut w = channel_message(91, ch);
                w.u32(u32::from(input.u8()))
                    .u32(input.u32())
                    .u32(u32::from(input.u16()));
                Some(w.into_vec())
            }
            7 => {
                let mut w = channel_message(92, ch);
                w.u32(2).string(b"connect failed").string(b"");
                Some(w.into_vec())
            }
            8 => {
                let mut w = Writer::message(90);
                if input.u8() & 1 == 0 {
                    w.string(b"forwarded-tcpip")
                        .u32(u32::from(input.u8()))
                        .u32(input.u32())
                        .u32(u32::from(input.u16()))
                        .string(b"0.0.0.0")
                        .u32(8080)
                        .string(b"192.0.2.1")
                        .u32(50_000);
                } else {
                    w.string(b"forwarded-streamlocal@openssh.com")
                        .u32(u32::from(input.u8()))
                        .u32(input.u32())
                        .u32(u32::from(input.u16()))
                        .string(b"/tmp/remote.sock")
                        .string(b"");
                }
                Some(w.into_vec())
            }
            9 => {
                let mut w = channel_message(98, ch);
                w.string(b"exit-status").bool(input.u8() & 1 != 0).u32(0);
                Some(w.into_vec())
            }
            10 => {
                let mut w = Writer::message(80);
                w.string(b"hostkeys-00@openssh.com")
                    .bool(input.u8() & 1 != 0);
                for _ in 0..input.u8() % 4 {
                    w.string(&fixtures().blob);
                }
                Some(w.into_vec())
            }
            11 => Some(vec![if input.u8() & 1 == 0 { 81 } else { 82 }]),
            12 => {
                // The application reads up to n bytes.
                let max = 1 + usize::from(input.u16()) % (2 * window);
                let model = &mut models[ch as usize];
                if let Some(handle) = model.handle.as_mut()
                    && let Some(Ok(data)) = read_now(handle, max)
                {
                    check_read(model, &data, ch);
                }
                None
            }
            13 => {
                // The application writes n bytes, or shuts its side down.
                let n = usize::from(input.u16());
                if let Some(handle) = models[ch as usize].handle.as_mut() {
                    let mut cx = Context::from_waker(Waker::noop());
                    if n == 0 {
                        let _ = Pin::new(handle).poll_shutdown(&mut cx);
                    } else {
                        let _ = Pin::new(handle).poll_write(&mut cx, &vec![0x5a; n]);
                    }
                }
                None
            }
            14 => {
                models[ch as usize].handle = None;
                None
            }
            15 => {
                // The application answers the oldest offer.
                if !pending_offers.is_empty() {
                    let (id, offer) = pending_offers.remove(0);
                    if input.u8() & 1 == 0 {
                        models[id].handle = Some(offer.accept());
                    } else {
                        offer.refuse(crate::connection::open_failure::CONNECT_FAILED);
                    }
                }
                None
            }
            16 => {
                // We send a global request that wants a reply.
                let (tx, _rx) = oneshot::channel();
                if let Err(e) = conn.global("keepalive@openssh.com", b"", Some(tx), &mut t) {
                    failed = Some(e);
                }
                None
            }
            _ => {
                // The driver's turn: service the channels that asked for it.
                dirty.clear();
                session.take_dirty(Waker::noop(), &mut dirty);
                for &id in &dirty {
                    if let Err(e) = conn.service(id, &mut t) {
                        failed = Some(e);
                        break;
                    }
                }
                None
            }
        };
        if let Some(message) = message {
            let before: Vec<usize> = models.iter().map(|m| m.accepted.len()).collect();
            let data_for = data_target(&message);
            match conn.handle(&message).and_then(|()| conn.flush(&mut t)) {
                Ok(()) => {
                    if let Some((id, data)) = data_for {
                        models[id].accepted.extend_from_slice(data);
                    }
                }
                Err(e) => failed = Some(e),
            }
            // Only CHANNEL_DATA adds to what a channel may deliver.
            for (i, m) in models.iter().enumerate() {
                if data_for.map(|(id, _)| id) != Some(i) {
                    assert_eq!(m.accepted.len(), before[i]);
                }
            }
        }
        // Answers to our opens, and offers from the server.
        for model in &mut models {
            if let Some(rx) = model.opening.as_mut() {
                match rx.try_recv() {
                    Ok(Ok(channel)) => {
                        model.handle = Some(channel);
                        model.opening = None;
                    }
                    Ok(Err(_)) | Err(oneshot::error::TryRecvError::Closed) => {
                        model.opening = None;
                    }
                    Err(oneshot::error::TryRecvError::Empty) => {}
                }
            }
        }
        while let Ok(offer) = offers.try_recv() {
            assert!(next_id < max_channels, "more channels than the table holds");
            models[next_id] = ChannelModel::default();
            pending_offers.push((next_id, offer));
            next_id += 1;
        }
        assert!(
            pending_offers.len() <= config.max_offered,
            "{} offers wait",
            pending_offers.len()
        );
        let mut total = 0;
        for m in &models {
            if let Some(h) = &m.handle {
                assert!(
                    h.buffered() <= window,
                    "a channel buffers {} bytes",
                    h.buffered()
                );
                total += h.buffered();
            }
        }
        assert!(total <= max_channels * window);
        if next_id >= max_channels {
            // The model numbers channels in order; the harness stops before they wrap.
            break;
        }
    }

    if let Some(e) = failed {
        let reason: Arc<str> = e.to_string().into();
        conn.end(&reason);
        for (id, model) in models.iter_mut().enumerate() {
            let Some(mut handle) = model.handle.take() else {
                continue;
            };
            // Every handle reads what is left, then its end or an error, without waiting.
            for _ in 0..=window {
                match read_now(&mut handle, window) {
                    Some(Ok(data)) if data.is_empty() => break,
                    Some(Ok(data)) => check_read(model, &data, id as u32),
                    Some(Err(_)) => break,
                    None => panic!("channel {id} waits after the session ended"),
                }
            }
        }
    }
    models.iter().map(|m| m.read).sum()
}

/// The channel and data of a CHANNEL_DATA message (extended data is not delivered).
fn data_target(message: &[u8]) -> Option<(usize, &[u8])> {
    let mut r = Reader::new(message);
    (r.u8().ok()? == 94).then_some(())?;
    let id = r.u32().ok()?;
    let data = r.string().ok()?;
    r.finish().ok()?;
    Some((usize::try_from(id).ok()?, data))
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::negotiate::OPENSSH_9_2_KEXINIT_HEX;
    const OPENSSH_VERSION_LINE: &[u8] = b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u10\r\n";

    fn chunk(out: &mut Vec<u8>, piece: &[u8]) {
        out.extend_from_slice(
            &u16::try_from(piece.len())
                .expect("a short piece")
                .to_be_bytes(),
        );
        out.extend_from_slice(piece);
    }

    fn message(build: impl FnOnce(&mut Writer), number: u8) -> Vec<u8> {
        let mut w = Writer::message(number);
        build(&mut w);
        w.into_vec()
    }

    fn packet_seeds() -> Vec<Vec<u8>> {
        let mut seeds = Vec::new();
        let payloads: [&[u8]; 3] = [b"\x05\x00\x00\x00\x0cssh-userauth", &[94; 300], &[2; 1]];
        for protection in 0..4u8 {
            for (sizes, flags) in [(0u8, 4u8), (4, 4), (7, 4), (7, 12)] {
                let mut s = vec![protection | flags, sizes, 0x01, 0x23, 3];
                for p in payloads {
                    chunk(&mut s, p);
                }
                seeds.push(s);
            }
        }
        // An unprotected stream as it is on the wire.
        let mut out = Outgoing::new();
        for p in payloads {
            out.packet(|b| b.extend_from_slice(p));
        }
        let mut raw = vec![0u8, 7, 0, 0, 0];
        raw.extend_from_slice(out.pending());
        seeds.push(raw);
        seeds
    }

    fn ecdh_reply() -> Vec<u8> {
        let mut sig = Writer::new();
        sig.string(b"ssh-ed25519").string(&[0x11; 64]);
        message(
            |w| {
                w.string(&fixtures().blob)
                    .string(&[9; 32])
                    .string(sig.as_slice());
            },
            31,
        )
    }

    fn transport_seeds() -> Vec<Vec<u8>> {
        let kexinit = hex::decode(OPENSSH_9_2_KEXINIT_HEX).expect("hex");
        let ext_info = message(
            |w| {
                w.u32(1)
                    .string(b"server-sig-algs")
                    .string(b"ssh-ed25519,rsa-sha2-256");
            },
            7,
        );
        let disconnect = message(
            |w| {
                w.u32(11).string(b"bye\x07").string(b"");
            },
            1,
        );
        let mut seeds = Vec::new();
        for (mode, sizes) in [(3u8, 6u8), (3, 7), (1, 4)] {
            let mut s = vec![mode, sizes];
            s.extend_from_slice(OPENSSH_VERSION_LINE);
            chunk(&mut s, &kexinit);
            chunk(&mut s, &ecdh_reply());
            seeds.push(s);
        }
        let mut s = vec![3u8, 7];
        s.extend_from_slice(OPENSSH_VERSION_LINE);
        chunk(&mut s, &[2, 0, 0, 0, 0]);
        chunk(&mut s, &ext_info);
        chunk(&mut s, &kexinit);
        chunk(&mut s, &disconnect);
        seeds.push(s);
        // Raw: lines before the identification, then a framed KEXINIT.
        let mut out = Outgoing::new();
        out.raw(b"a banner line\r\nSSH-2.0-OpenSSH_9.2\r\n");
        out.packet(|b| b.extend_from_slice(&kexinit));
        let mut s = vec![2u8, 3];
        s.extend_from_slice(out.pending());
        seeds.push(s);
        seeds
    }

    fn kex_seeds() -> Vec<Vec<u8>> {
        let mut seeds = Vec::new();
        for i in 0..kex::KEX_METHODS.len() as u8 {
            seeds.push(vec![0x80 | i, 0x42, 0x17]);
            let mut s = vec![i];
            s.extend_from_slice(&[0x33; 32]);
            seeds.push(s);
        }
        seeds
    }

    fn hostkey_seeds() -> Vec<Vec<u8>> {
        let f = fixtures();
        let mut seeds = Vec::new();
        for (mode, pick) in [(1u8, 6u8), (3, 0), (5, 6), (9, 6), (1, 10)] {
            let mut s = vec![mode, pick, 0, 7, 2];
            s.extend_from_slice(b"an exchange hash of 32 bytes....");
            seeds.push(s);
        }
        let mut sig = Writer::new();
        sig.string(b"ssh-ed25519").string(&[0x11; 64]);
        for (blob, pick) in [(&f.blob, 6u8), (&f.host_cert_blob, 0)] {
            let mut s = vec![0u8, pick];
            chunk(&mut s, blob);
            chunk(&mut s, &[0x22; 32]);
            s.extend_from_slice(sig.as_slice());
            seeds.push(s);
        }
        seeds
    }

    fn userauth_seeds() -> Vec<Vec<u8>> {
        let f = fixtures();
        let accept = message(
            |w| {
                w.string(b"ssh-userauth");
            },
            6,
        );
        let failure = |methods: &[u8], partial: bool| {
            message(
                |w| {
                    w.string(methods).bool(partial);
                },
                51,
            )
        };
        let banner = message(
            |w| {
                w.string(b"Welcome\r\n").string(b"");
            },
            53,
        );
        let pk_ok = message(
            |w| {
                w.string(b"ssh-ed25519").string(&f.blob);
            },
            60,
        );
        let mut seeds = Vec::new();
        let mut s = vec![2u8];
        for m in [
            &accept,
            &banner,
            &failure(b"publickey,password", false),
            &pk_ok,
            &vec![52],
        ] {
            chunk(&mut s, m);
        }
        seeds.push(s);
        let mut s = vec![0u8];
        for m in [
            &accept,
            &failure(b"publickey", false),
            &failure(b"publickey", false),
            &failure(b"publickey", false),
        ] {
            chunk(&mut s, m);
        }
        seeds.push(s);
        let mut s = vec![3u8];
        for m in [
            &accept,
            &failure(b"publickey", false),
            &pk_ok,
            &failure(b"password", true),
        ] {
            chunk(&mut s, m);
        }
        seeds.push(s);
        let mut s = vec![8u8];
        for m in [
            &accept,
            &failure(b"publickey", false),
            &pk_ok,
            &failure(b"publickey", false),
        ] {
            chunk(&mut s, m);
        }
        seeds.push(s);
        seeds
    }

    fn agent_seeds() -> Vec<Vec<u8>> {
        let f = fixtures();
        let mut list = Writer::message(12);
        list.u32(1).string(&f.blob).string(b"fuzz-test-key");
        let mut sig = Writer::new();
        sig.string(b"ssh-ed25519").string(&[0x11; 64]);
        let mut signed = Writer::message(14);
        signed.string(sig.as_slice());
        let mut raw = Writer::new();
        raw.string(list.as_slice());
        let mut seeds = vec![
            [&[2u8][..], list.as_slice()].concat(),
            [&[3u8][..], signed.as_slice()].concat(),
            [&[0u8][..], raw.as_slice()].concat(),
            vec![3u8, 5],
            vec![0u8, 0, 0, 0, 5, 12, 0xff, 0xff, 0xff, 0xff],
        ];
        seeds.push(vec![1u8, 0, 4, 0, 0, 14]);
        seeds
    }

    /// What the handles read in the first connection seed: "hi", and "abc" after the end.
    const READ_BY_CONNECTION_SEED: usize = 5;

    fn connection_seeds() -> Vec<Vec<u8>> {
        vec![
            vec![
                6, 0, 7, 0, 0, 0x10, 0, 0x80, 0, // CONFIRMATION of 0
                6, 1, 8, 0, 0, 0x10, 0, 0x04, 0, // CONFIRMATION of 1
                1, 0, 0, 2, b'h', b'i', // DATA "hi" for 0
                12, 0, 0, 0xff, // read 0
                17, 0, // service
                2, 1, 0, 4, 1, 2, 3, 4, // EXTENDED_DATA for 1
                4, 0, 5, 0, 17, 0, // EOF, CLOSE of 0, service
                8, 0, 0, 3, 0, 0, 0x40, 0, 0x04, 0, // the server opens forwarded-tcpip
                15, 0, 0, 17, 0, // accept it (channel 2), service
                1, 2, 0, 3, b'a', b'b', b'c', // DATA "abc" for 2
                16, 0, 11, 0, 0, // our global request, its REQUEST_SUCCESS
                1, 1, 0x10, 0x01, // 4097 bytes for 1: beyond its window, the session ends
            ],
            vec![1, 0, 0x10, 0x00, 6, 0, 7, 0, 0, 0x10, 0, 0x80, 0],
        ]
    }

    /// A target's name, entry point and seeds.
    type Seeds = (&'static str, fn(&[u8]), Vec<Vec<u8>>);

    /// All seeds, by target name.
    fn seeds() -> Vec<Seeds> {
        vec![
            ("ssh_packet", packet as fn(&[u8]), packet_seeds()),
            ("ssh_transport", transport, transport_seeds()),
            ("ssh_kex_reply", kex_reply, kex_seeds()),
            ("ssh_hostkey", hostkey, hostkey_seeds()),
            ("ssh_userauth", userauth, userauth_seeds()),
            ("ssh_agent_reply", agent_reply, agent_seeds()),
            ("ssh_connection", connection, connection_seeds()),
            ("ssh_hostkeys_prove", host_key_proofs, hostkeys::seeds()),
        ]
    }

    /// Runs `target` over its seeds and `count` mutations of them (byte flips, cuts,
    /// insertions from a fixed xorshift sequence), and over `count` short random inputs.
    fn exercise(name: &str, count: usize) {
        let (_, target, seeds) = seeds()
            .into_iter()
            .find(|(n, _, _)| *n == name)
            .expect("a target");
        let mut state = 0x2545_f491u32;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state as usize
        };
        for seed in &seeds {
            target(seed);
        }
        for i in 0..count {
            let mut input = seeds[i % seeds.len()].clone();
            for _ in 0..1 + next() % 4 {
                if input.is_empty() {
                    break;
                }
                let at = next() % input.len();
                match next() % 3 {
                    0 => input[at] ^= 1 << (next() % 8),
                    1 => input.truncate(at),
                    _ => input.insert(at, next() as u8),
                }
            }
            target(&input);
            let random: Vec<u8> = (0..next() % 64).map(|_| next() as u8).collect();
            target(&random);
        }
    }

    #[test]
    fn packet_seeds_and_mutations() {
        exercise("ssh_packet", 400);
    }

    #[test]
    fn transport_seeds_and_mutations() {
        exercise("ssh_transport", 200);
    }

    #[test]
    fn kex_reply_seeds_and_mutations() {
        exercise("ssh_kex_reply", 20);
    }

    #[test]
    fn hostkey_seeds_and_mutations() {
        exercise("ssh_hostkey", 300);
    }

    #[test]
    fn userauth_seeds_and_mutations() {
        exercise("ssh_userauth", 300);
    }

    #[test]
    fn agent_reply_seeds_and_mutations() {
        exercise("ssh_agent_reply", 200);
    }

    #[test]
    fn connection_seeds_and_mutations() {
        exercise("ssh_connection", 400);
    }

    #[test]
    fn hostkeys_prove_seeds_and_mutations() {
        exercise("ssh_hostkeys_prove", 300);
    }

    #[test]
    fn a_real_proof_verifies_and_a_flipped_one_does_not() {
        // The harness asserts both (a real proof of the test key, and each flip refused).
        for seed in hostkeys::seeds() {
            host_key_proofs(&seed);
        }
        for flip in [0u16, 7, 40, 100, 500, 799] {
            let mut seed = vec![1, 0];
            seed.extend_from_slice(&flip.to_be_bytes());
            host_key_proofs(&seed);
        }
    }

    #[test]
    fn the_seeds_reach_what_they_are_for() {
        let t = transport_seeds();
        // Curve25519 first: the reply parses, its host key decodes, its signature fails.
        for seed in &t[..2] {
            let stopped = run_transport(seed);
            assert!(
                matches!(
                    stopped,
                    Some(TransportError::HostKey(hostkey::HostKeyError::BadSignature))
                ),
                "{stopped:?}"
            );
        }
        // The default order picks sntrup761x25519 from OpenSSH 9.2's list: Q_S is too short.
        assert!(matches!(
            run_transport(&t[2]),
            Some(TransportError::Kex(KexError::WrongReplySize {
                expected: 1071,
                got: 32,
                ..
            }))
        ));
        let strict = run_transport(&t[3]).map(|e| e.to_string());
        assert_eq!(
            strict.as_deref(),
            Some("protocol error: strict key exchange: KEXINIT was not the server's first packet")
        );
        assert!(run_transport(&t[4]).is_none());

        let u = userauth_seeds();
        let done = run_userauth(&u[0]).expect("the first script succeeds");
        assert!(
            done.credential.ends_with("(test key)"),
            "{}",
            done.credential
        );
        assert_eq!(done.banner, "Welcome?\n");
        assert!(matches!(
            run_userauth(&u[2]),
            Err(auth::AuthError::Partial { .. })
        ));
        let refused = run_userauth(&u[3])
            .map(|d| d.credential)
            .unwrap_err()
            .to_string();
        assert!(refused.contains("cannot connect to ssh-agent"), "{refused}");

        let a = agent_seeds();
        assert_eq!(run_agent_reply(&a[0]).ok(), Some(1));
        assert_eq!(run_agent_reply(&a[1]).ok(), Some(83));
        assert_eq!(run_agent_reply(&a[2]).ok(), Some(1));
        assert!(matches!(
            run_agent_reply(&a[3]),
            Err(auth::AgentError::Refused)
        ));

        let c = connection_seeds();
        assert_eq!(run_connection(&c[0]), READ_BY_CONNECTION_SEED);
    }

    #[test]
    fn a_real_signature_verifies_and_a_flipped_one_does_not() {
        // Mode 1: a real signature under ssh-ed25519 (pick 6); mode 5: one bit flipped.
        hostkey(&[1, 6, 0, 0, 0, b'm']);
        hostkey(&[5, 6, 0, 40, 3, b'm']);
        // The certificate signs under its own algorithm only.
        hostkey(&[3, 0, 0, 0, 0, b'm']);
        hostkey(&[3, 6, 0, 0, 0, b'm']);
    }

    /// Writes the seeds to `fuzz/seeds/TARGET/` (run by hand after changing them:
    /// `cargo test -p tunneld-ssh fuzzing::tests::write_seed_files -- --ignored`).
    #[test]
    #[ignore = "writes the fuzz seed files"]
    fn write_seed_files() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/seeds");
        for (name, _, seeds) in seeds() {
            let dir = root.join(name);
            std::fs::create_dir_all(&dir).expect("the seed folder");
            for (i, seed) in seeds.iter().enumerate() {
                std::fs::write(dir.join(format!("seed-{i:02}")), seed).expect("a seed file");
            }
        }
    }
}
