//! tunneld's configuration: the TOML schema, OpenSSH forward syntax, validation.
//!
//! # Layout
//! - [`error`](ConfigError): errors with file positions.
//! - [`forward`]: `-L`/`-R`/`-D` specification parsers, usable on their own.
//! - `host`: `host` entries and `proxy_jump` lists.
//! - `duration`: `"10s"`-style durations ([`parse_duration`]).

mod duration;
mod error;
pub mod forward;
mod host;

pub use duration::parse_duration;
pub use error::{ConfigError, ConfigErrors};
pub use forward::{
    DynamicForward, Endpoint, Listen, LocalBind, LocalForward, RemoteForward, RemoteListen,
};
pub use host::{HostPort, JumpHost};
