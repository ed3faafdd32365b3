//! SOCKS4/4a/5 handshakes: the input is everything a client sends before closing.
//! `read_request` must finish without waiting (the input ends, so waiting would be a
//! hang), read no more than the largest request can take, and never panic.

#![no_main]

use std::future::Future;
use std::io;
use std::pin::{Pin, pin};
use std::task::{Context, Poll, Waker};

use libfuzzer_sys::fuzz_target;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tunneld_core::socks::read_request;

/// SOCKS4a: 8-byte head, then a user id and a host name, each read up to its 256th byte.
const MAX_V4_READ_BYTES: usize = 8 + 2 * 256;
/// SOCKS5: greeting with 255 methods, request head, 255-byte name with its length, port.
const MAX_V5_READ_BYTES: usize = 2 + 255 + 4 + 1 + 255 + 2;

/// A client that has sent `input` and closed its side; replies are kept.
struct Client<'a> {
    input: &'a [u8],
    read: usize,
    replies: Vec<u8>,
}

impl AsyncRead for Client<'_> {
    fn poll_read(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let rest = &this.input[this.read..];
        let n = rest.len().min(buf.remaining());
        buf.put_slice(&rest[..n]);
        this.read += n;
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Client<'_> {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, b: &[u8]) -> Poll<io::Result<usize>> {
        self.get_mut().replies.extend_from_slice(b);
        Poll::Ready(Ok(b.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

fuzz_target!(|data: &[u8]| {
    let mut client = Client {
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
