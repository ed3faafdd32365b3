//! What an HTTP CONNECT or SOCKS5 proxy answers: the first input byte picks the protocol
//! and whether we send credentials, the rest is the proxy's whole answer. The handshake
//! must finish without waiting, read at most the bounded head (HTTP) or the fixed
//! replies (SOCKS5), never panic, and quote the proxy only within bounds.

#![no_main]

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use libfuzzer_sys::fuzz_target;
use tunneld_config::ProxyScheme;
use tunneld_core::proxy_handshake_for_fuzzing;

#[path = "common/peer.rs"]
mod peer;
use peer::Peer;

/// The HTTP head bound (16 KiB) plus its last byte.
const MAX_HTTP_READ_BYTES: usize = 16 * 1024;
/// SOCKS5: method choice, auth status, reply head, a 255-byte name with its length, port.
const MAX_SOCKS_READ_BYTES: usize = 2 + 2 + 4 + 1 + 255 + 2;
/// A refusal's text: what we say plus at most 200 quoted characters (4 bytes each).
const MAX_REASON_BYTES: usize = 1024;

fuzz_target!(|data: &[u8]| {
    let Some((&choice, answer)) = data.split_first() else {
        return;
    };
    let scheme = if choice & 1 == 0 {
        ProxyScheme::Http
    } else {
        ProxyScheme::Socks5h
    };
    let credentials = (choice & 2 != 0).then_some(("bob", "s3cret"));
    let mut proxy = Peer {
        input: answer,
        read: 0,
        replies: Vec::new(),
    };
    let result = {
        let mut handshake = pin!(proxy_handshake_for_fuzzing(&mut proxy, scheme, credentials));
        match handshake
            .as_mut()
            .poll(&mut Context::from_waker(Waker::noop()))
        {
            Poll::Ready(r) => r,
            Poll::Pending => panic!("the handshake waits on a closed, fully buffered stream"),
        }
    };
    let bound = match scheme {
        ProxyScheme::Http => MAX_HTTP_READ_BYTES,
        _ => MAX_SOCKS_READ_BYTES,
    };
    assert!(proxy.read <= bound, "read {} bytes", proxy.read);
    if let Ok(Some(reason)) = result {
        assert!(
            reason.len() <= MAX_REASON_BYTES,
            "{} bytes of reason",
            reason.len()
        );
        assert!(
            !reason.contains("s3cret"),
            "the password is quoted: {reason}"
        );
    }
});
