//! SOCKS4/4a/5 handshakes: the input is everything a client sends before closing.
//! `read_request` must finish without waiting (the input ends, so waiting would be a
//! hang), read no more than the largest request can take, and never panic.

#![no_main]

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use libfuzzer_sys::fuzz_target;
use tunneld_core::socks::read_request;

#[path = "common/peer.rs"]
mod peer;
use peer::Peer;

/// SOCKS4a: 8-byte head, then a user id and a host name, each read up to its 256th byte.
const MAX_V4_READ_BYTES: usize = 8 + 2 * 256;
/// SOCKS5: greeting with 255 methods, request head, 255-byte name with its length, port.
const MAX_V5_READ_BYTES: usize = 2 + 255 + 4 + 1 + 255 + 2;

fuzz_target!(|data: &[u8]| {
    let mut client = Peer {
        input: data,
        read: 0,
        replies: Vec::new(),
    };
    let result = {
        let mut request = pin!(read_request(&mut client));
        // Nothing here ever waits: one poll must finish the handshake.
        match request
            .as_mut()
            .poll(&mut Context::from_waker(Waker::noop()))
        {
            Poll::Ready(r) => r,
            Poll::Pending => panic!("read_request waits on a closed, fully buffered stream"),
        }
    };
    let bound = match data.first() {
        Some(4) => MAX_V4_READ_BYTES,
        Some(5) => MAX_V5_READ_BYTES,
        _ => 1,
    };
    assert!(client.read <= bound, "read {} bytes", client.read);
    if let Ok(req) = result {
        assert!(!req.host.is_empty());
    }
});
