//! tunneld's SSH client: the client side of SSH-2, what port forwarding needs, with
//! per-channel flow control (a channel's receive window reopens only as its reader
//! drains it).
//!
//! Layout:
//! - `wire`: bounded readers and writers for SSH types.
//! - `error`: errors by layer.
//! - `hostkey`: the server's host key: decoding, fingerprints, signature checks.
//! - `auth`: user authentication (publickey with keys, certificates and ssh-agent).
//! - `kex`: key exchange methods (one file each), the exchange hash and key derivation.
//! - `negotiate`: KEXINIT and the algorithm choice rules (RFC 4253 §7.1).
//! - `cipher`: packet protection (chacha20-poly1305, AES-GCM, AES-CTR with ETM MACs).

#![forbid(unsafe_code)]

pub mod auth;
// Until the packet layer uses it, parts of the cipher interface are only used by tests.
#[allow(dead_code)]
mod cipher;
pub mod error;
pub mod hostkey;
pub(crate) mod kex;
pub(crate) mod negotiate;
pub mod wire;
