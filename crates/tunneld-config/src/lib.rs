//! tunneld's configuration: the TOML schema, OpenSSH forward syntax, validation.
//!
//! # Layout
//! - [`forward`]: `-L`/`-R`/`-D` specification parsers, usable on their own.

pub mod forward;

pub use forward::{
    DynamicForward, Endpoint, Listen, LocalBind, LocalForward, RemoteForward, RemoteListen,
};
