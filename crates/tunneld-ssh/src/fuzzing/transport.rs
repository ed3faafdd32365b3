//! A client `Transport` fed what a server sends before the first key exchange completes.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::{Input, ReadSizes};
use crate::hostkey::HostKey;
use crate::negotiate::KexInit;
use crate::packet::Outgoing;
use crate::transport::{Transport, TransportConfig, TransportError};

/// What the transport may add to its output before the first key exchange completes,
/// beyond its version line and KEXINIT: one KEX_ECDH_INIT (at most 1216 bytes of C_INIT for
/// mlkem768x25519) framed as a packet.
const MAX_ECDH_INIT_PACKET_BYTES: usize = 2048;

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
pub(super) fn run_transport(data: &[u8]) -> Option<TransportError> {
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
