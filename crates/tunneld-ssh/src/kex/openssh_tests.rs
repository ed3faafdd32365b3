//! Each of our methods against the installed OpenSSH server: `sshd -i` over a socket pair
//! (no port), our KEXINIT offering one method, then ECDH_INIT; the server's signature over
//! H must verify with its host key, which proves K and H are what OpenSSH computes.
//!
//! Skipped, with a note on stderr, where `/usr/sbin/sshd` or `ssh-keygen` is missing
//! (`tests/run` installs both).

use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use aws_lc_rs::signature::{ED25519, UnparsedPublicKey};

use super::{ExchangeHashInput, KEX_METHODS, exchange_hash, start};
use crate::negotiate::{KexInit, choose};
use crate::wire::{Reader, Writer};

const SSHD: &str = "/usr/sbin/sshd";
/// Longest wait for one read from sshd before the test fails instead of hanging.
const READ_TIMEOUT: Duration = Duration::from_secs(20);
/// Largest packet we accept from sshd in this test.
const MAX_PACKET_LEN_BYTES: usize = 64 * 1024;
const CLIENT_VERSION: &[u8] = b"SSH-2.0-tunneld_kex_test";

/// A `sshd -i` child on one end of a socket pair, killed on drop.
struct InetdSshd {
    child: Child,
    stream: BufReader<UnixStream>,
    _dir: tempfile::TempDir,
}

impl Drop for InetdSshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn tools_present() -> bool {
    let keygen = Command::new("ssh-keygen")
        .arg("-?")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    Path::new(SSHD).exists() && keygen
}

fn spawn_sshd() -> InetdSshd {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("host_ed25519");
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "kex-test", "-f"])
        .arg(&key)
        .status()
        .unwrap();
    assert!(status.success());
    let config = dir.path().join("sshd_config");
    std::fs::write(
        &config,
        format!(
            "HostKey {}\nUsePAM no\nPidFile none\nStrictModes no\n",
            key.display()
        ),
    )
    .unwrap();
    // As root, sshd insists on its privilege-separation directory.
    if std::fs::metadata("/run").is_ok() {
        let _ = std::fs::create_dir_all("/run/sshd");
    }
    let (ours, theirs) = UnixStream::pair().unwrap();
    ours.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
    let stdin = OwnedFd::from(theirs.try_clone().unwrap());
    let stdout = OwnedFd::from(theirs);
    let child = Command::new(SSHD)
        .args(["-i", "-e", "-f"])
        .arg(&config)
        .stdin(Stdio::from(stdin))
        .stdout(Stdio::from(stdout))
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    InetdSshd {
        child,
        stream: BufReader::new(ours),
        _dir: dir,
    }
}

impl InetdSshd {
    /// The server's version line, without CR LF (lines before it are skipped, RFC 4253 §4.2).
    fn read_version(&mut self) -> Vec<u8> {
        for _ in 0..32 {
            let mut line = Vec::new();
            self.stream.read_until(b'\n', &mut line).unwrap();
            if line.starts_with(b"SSH-") {
                let trimmed = line.strip_suffix(b"\r\n").or(line.strip_suffix(b"\n"));
                return trimmed.unwrap().to_vec();
            }
        }
        panic!("no version line from sshd");
    }

    /// One unencrypted binary packet's payload (RFC 4253 §6).
    fn read_packet(&mut self) -> Vec<u8> {
        let mut head = [0u8; 5];
        self.stream.read_exact(&mut head).unwrap();
        let [a, b, c, d, padding] = head;
        let len = u32::from_be_bytes([a, b, c, d]) as usize;
        assert!(
            (5..=MAX_PACKET_LEN_BYTES).contains(&len),
            "packet length {len}"
        );
        let mut rest = vec![0u8; len - 1];
        self.stream.read_exact(&mut rest).unwrap();
        rest.truncate(len - 1 - usize::from(padding));
        rest
    }

    /// `payload` in an unencrypted packet, padded to a multiple of 8 with at least 4 bytes.
    fn write_packet(&mut self, payload: &[u8]) {
        let mut padding = 8 - (payload.len() + 5) % 8;
        if padding < 4 {
            padding += 8;
        }
        let mut packet = Writer::new();
        packet
            .u32((payload.len() + padding + 1) as u32)
            .u8(padding as u8)
            .raw(payload)
            .raw(&vec![0; padding]);
        self.stream.get_mut().write_all(packet.as_slice()).unwrap();
    }
}

fn our_kexinit(method: &str) -> KexInit {
    let one = |s: &str| vec![s.to_owned()];
    KexInit {
        cookie: [0x5a; 16],
        kex: one(method),
        host_key: one("ssh-ed25519"),
        cipher_c2s: one("aes128-ctr"),
        cipher_s2c: one("aes128-ctr"),
        mac_c2s: one("hmac-sha2-256"),
        mac_s2c: one("hmac-sha2-256"),
        compression_c2s: one("none"),
        compression_s2c: one("none"),
        languages_c2s: Vec::new(),
        languages_s2c: Vec::new(),
        first_kex_follows: false,
    }
}

/// One exchange of `method` with a fresh sshd; panics unless the signature over H verifies.
fn exchange_with_openssh(method: &str) {
    let mut sshd = spawn_sshd();
    let mut version_line = CLIENT_VERSION.to_vec();
    version_line.extend_from_slice(b"\r\n");
    sshd.stream.get_mut().write_all(&version_line).unwrap();
    let server_version = sshd.read_version();
    let server_kexinit = sshd.read_packet();
    let theirs = KexInit::decode(&server_kexinit).unwrap();
    let ours = our_kexinit(method);
    assert_eq!(choose(&ours, &theirs, |_| false).unwrap().kex, method);

    let client_kexinit = ours.encode();
    sshd.write_packet(&client_kexinit);
    let kex = start(method).unwrap();
    let client_public = kex.client_public().to_vec();
    let mut init = Writer::message(30);
    init.string(&client_public);
    sshd.write_packet(init.as_slice());

    let reply = sshd.read_packet();
    let mut r = Reader::new(&reply);
    assert_eq!(r.u8().unwrap(), 31, "{method}: expected KEX_ECDH_REPLY");
    let host_key = r.string().unwrap();
    let server_public = r.string().unwrap();
    let signature = r.string().unwrap();
    r.finish().unwrap();

    let hash = kex.hash();
    let k = kex.agree(server_public).unwrap();
    let h = exchange_hash(
        hash,
        &ExchangeHashInput {
            client_version: CLIENT_VERSION,
            server_version: &server_version,
            client_kexinit: &client_kexinit,
            server_kexinit: &server_kexinit,
            host_key,
            client_public: &client_public,
            server_public,
            shared_secret: &k,
        },
    );

    let mut key = Reader::new(host_key);
    assert_eq!(key.string().unwrap(), b"ssh-ed25519");
    let key = key.string().unwrap();
    let mut sig = Reader::new(signature);
    assert_eq!(sig.string().unwrap(), b"ssh-ed25519");
    let sig = sig.string().unwrap();
    UnparsedPublicKey::new(&ED25519, key)
        .verify(&h, sig)
        .unwrap_or_else(|_| panic!("{method}: OpenSSH's signature over our H does not verify"));
    // A changed H must not verify: the check above can fail.
    let mut wrong = h.clone();
    wrong[0] ^= 1;
    assert!(
        UnparsedPublicKey::new(&ED25519, key)
            .verify(&wrong, sig)
            .is_err()
    );
}

#[test]
fn every_method_the_installed_openssh_offers_agrees_with_it() {
    if !tools_present() {
        eprintln!("skipped: {SSHD} or ssh-keygen not installed");
        return;
    }
    // Which of ours this sshd offers (9.2: no ML-KEM; 9.9+: all five).
    let mut probe = spawn_sshd();
    let mut version_line = CLIENT_VERSION.to_vec();
    version_line.extend_from_slice(b"\r\n");
    probe.stream.get_mut().write_all(&version_line).unwrap();
    probe.read_version();
    let offered = KexInit::decode(&probe.read_packet()).unwrap().kex;
    drop(probe);
    let common: Vec<&str> = KEX_METHODS
        .iter()
        .copied()
        .filter(|m| offered.iter().any(|o| o == m))
        .collect();
    assert!(common.contains(&"curve25519-sha256"), "{offered:?}");
    assert!(
        common.contains(&"sntrup761x25519-sha512@openssh.com"),
        "{offered:?}"
    );
    for method in common {
        exchange_with_openssh(method);
    }
}
