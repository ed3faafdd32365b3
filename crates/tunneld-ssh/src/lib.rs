//! tunneld's SSH client: the client side of SSH-2, what port forwarding needs, with
//! per-channel flow control (a channel's receive window reopens only as its reader
//! drains it).
//!
//! Layout:
//! - `wire`: bounded readers and writers for SSH types.
//! - `error`: errors by layer.
//! - `hostkey`: the server's host key: decoding, fingerprints, signature checks.
//! - `auth`: user authentication (publickey with keys, certificates and ssh-agent).

#![forbid(unsafe_code)]

pub mod auth;
pub mod error;
pub mod hostkey;
pub mod wire;
