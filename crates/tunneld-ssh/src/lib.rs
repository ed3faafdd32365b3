//! tunneld's SSH client: the client side of SSH-2, what port forwarding needs, with
//! per-channel flow control (a channel's receive window reopens only as its reader
//! drains it).
//!
//! Layout:
//! - `wire`: bounded readers and writers for SSH types.
//! - `error`: errors by layer.
//! - `cipher`: packet protection (chacha20-poly1305, AES-GCM, AES-CTR with ETM MACs).

#![forbid(unsafe_code)]

// Until the packet layer uses it, parts of the cipher interface are only used by tests.
#[allow(dead_code)]
mod cipher;
pub mod error;
pub mod wire;
