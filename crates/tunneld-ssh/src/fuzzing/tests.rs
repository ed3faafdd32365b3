//! The seeds of every target, a few thousand mutations of them, what the seeds reach,
//! and the seed files in `fuzz/seeds/`.

use super::agent::run_agent_reply;
use super::connection::run_connection;
use super::transport::run_transport;
use super::userauth::run_userauth;
use super::{
    agent_reply, connection, fixtures, host_key_proofs, hostkey, hostkeys, kex_reply, packet,
    transport, userauth,
};
use crate::auth;
use crate::hostkey::HostKeyError;
use crate::kex::{self, KexError};
use crate::negotiate::OPENSSH_9_2_KEXINIT_HEX;
use crate::packet::Outgoing;
use crate::transport::TransportError;
use crate::wire::Writer;

const OPENSSH_VERSION_LINE: &[u8] = b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u10\r\n";

fn chunk(out: &mut Vec<u8>, piece: &[u8]) {
    out.extend_from_slice(
        &u16::try_from(piece.len())
            .expect("a short piece")
            .to_be_bytes(),
    );
    out.extend_from_slice(piece);
}

/// `head`, then each piece as a [`chunk`].
fn chunked(head: &[u8], pieces: &[&[u8]]) -> Vec<u8> {
    let mut out = head.to_vec();
    for piece in pieces {
        chunk(&mut out, piece);
    }
    out
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
            seeds.push(chunked(
                &[protection | flags, sizes, 0x01, 0x23, 3],
                &payloads,
            ));
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
        let head = [&[mode, sizes], OPENSSH_VERSION_LINE].concat();
        seeds.push(chunked(&head, &[&kexinit, &ecdh_reply()]));
    }
    let head = [&[3, 7], OPENSSH_VERSION_LINE].concat();
    seeds.push(chunked(
        &head,
        &[&[2, 0, 0, 0, 0], &ext_info, &kexinit, &disconnect],
    ));
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
    let failure_pk = failure(b"publickey", false);
    vec![
        chunked(
            &[2],
            &[
                &accept,
                &banner,
                &failure(b"publickey,password", false),
                &pk_ok,
                &[52],
            ],
        ),
        chunked(&[0], &[&accept, &failure_pk, &failure_pk, &failure_pk]),
        chunked(
            &[3],
            &[&accept, &failure_pk, &pk_ok, &failure(b"password", true)],
        ),
        chunked(&[8], &[&accept, &failure_pk, &pk_ok, &failure_pk]),
    ]
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
                Some(TransportError::HostKey(HostKeyError::BadSignature))
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
