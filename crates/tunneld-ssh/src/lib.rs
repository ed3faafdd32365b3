//! tunneld's SSH client: the client side of SSH-2, what port forwarding needs, with
//! per-channel flow control (a channel's receive window reopens only as its reader
//! drains it, so one stalled reader stops only its own channel).
//!
//! Layout:
//! - `wire`: bounded readers and writers for SSH types.
//! - `error`: errors by layer.
//! - `msg`: the SSH message numbers of every layer.
//! - `packet`: the binary packet protocol: framing, padding, sealing and opening in place.
//! - `cipher`: packet protection (chacha20-poly1305, AES-GCM, AES-CTR with ETM MACs).
//! - `kex`: key exchange methods (one file each), the exchange hash and key derivation.
//! - `negotiate`: KEXINIT and the algorithm choice rules (RFC 4253 §7.1).
//! - `hostkey`: the server's host key: decoding, fingerprints, signature checks.
//! - `hostkeys`: host key rotation (`hostkeys-00`, `hostkeys-prove-00@openssh.com`): the
//!   announcement, the prove request and the checks of the proofs.
//! - `transport`: the transport state machine (no I/O): versions, KEXINIT, NEWKEYS,
//!   strict key exchange, re-keying, EXT_INFO.
//! - `auth`: user authentication (publickey with keys, certificates and ssh-agent).
//! - `channel`: one channel's shared state and its byte-stream handle.
//! - `connection`: the channel table, global requests, forwarded channels.
//! - `driver`: the tokio task running one session.
//! - `session`: [`connect`] and the [`Session`] handle.
//! - `fuzzing`: entry points for the fuzz targets in `fuzz/` (each decoder, with its checks).

#![forbid(unsafe_code)]

pub mod auth;
mod channel;
mod cipher;
mod connection;
mod driver;
pub mod error;
#[doc(hidden)]
pub mod fuzzing;
pub mod hostkey;
pub mod hostkeys;
mod kex;
mod msg;
pub mod negotiate;
mod packet;
mod session;
pub mod transport;
pub mod wire;

pub use auth::Credential;
pub use channel::{BufferCapacity, Channel, ChannelReader, ChannelWriter};
pub use connection::{
    ChannelConfig, Forwarded, GlobalReply, IncomingChannel, OpenError, OpenKind, open_failure,
};
pub use hostkey::HostKey;
pub use negotiate::Chosen;
pub use session::{Config, ConnectError, Incoming, RequestError, Session, SessionInfo, connect};
pub use transport::{HostKeyCheck, TransportConfig, TransportError};
