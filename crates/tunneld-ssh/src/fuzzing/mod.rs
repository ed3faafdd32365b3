//! Entry points for the fuzz targets in `fuzz/` (one per decoder of the SSH client), kept
//! inside the crate because the decoders are crate-private. Each function takes the raw
//! fuzz input, drives the real code with it, and asserts what that code promises beyond
//! "no panic"; a failed assertion is a finding. Not part of the API.
//!
//! Layout (one file per target, named for the module it drives):
//! - this file: the test key and certificates, the `Input` reader, read sizes, a runtime.
//! - `packet`: [`packet()`], the packet reader (`ssh_packet`).
//! - `transport`: [`transport()`], the transport before its first NEWKEYS (`ssh_transport`).
//! - `kex`: [`kex_reply()`], each key exchange method's reply (`ssh_kex_reply`).
//! - `hostkey`: [`hostkey()`], host key decoding and signature checks (`ssh_hostkey`).
//! - `userauth`: [`userauth()`], authentication over a scripted link (`ssh_userauth`).
//! - `agent`: [`agent_reply()`], the ssh-agent client against a fake agent (`ssh_agent_reply`).
//! - `connection`: [`connection()`], the channel table driven by operations (`ssh_connection`).
//! - `hostkeys`: [`host_key_proofs()`], host key rotation (`ssh_hostkeys_prove`).
//! - `tests`: the seeds of every target, their mutations, and the seed files in `fuzz/seeds/`.
//!
//! Inputs are read with [`Input`]: a missing byte reads as 0, so every input is valid.
//! Several entry points take a leading mode byte that makes the harness build well-formed
//! framing (packets, agent frames) around the fuzzed bytes, so the fuzzer spends its time
//! on the contents rather than on lengths and padding.

mod agent;
mod connection;
mod hostkey;
mod hostkeys;
mod kex;
mod packet;
#[cfg(test)]
mod tests;
mod transport;
mod userauth;

pub use agent::agent_reply;
pub use connection::connection;
pub use hostkey::hostkey;
pub use hostkeys::host_key_proofs;
pub use kex::kex_reply;
pub use packet::packet;
pub use transport::transport;
pub use userauth::userauth;

use std::sync::{Arc, OnceLock};

use ssh_key::encoding::Encode;
use ssh_key::{Certificate, PrivateKey};

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
