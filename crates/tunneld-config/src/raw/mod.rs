//! The raw layer: a walk over toml's span-keeping document into `Raw*` structs.
//!
//! Every key is looked at and every problem recorded with its byte position, so
//! one run reports all of them. (Deserializing with serde's `deny_unknown_fields`
//! would stop at the first problem of each table.) Values that can be checked on
//! their own are checked here; anything that depends on `[defaults]` is left to
//! [`resolve`](crate::resolve).
//!
//! - `structs`: what the walk fills in ([`RawDoc`] and the tables in it).
//! - `problems`: the problems found so far, each at a byte offset.
//! - `walk`: the tables, key by key, and the values that need more than one check.
//! - `value`: one value of an expected type (string, path, integer, duration, ...),
//!   or a problem at it.
//! - `keys`: the known keys of each table, and the "did you mean" for unknown ones.

mod keys;
mod problems;
mod structs;
mod value;
mod walk;

use toml::Spanned;
use toml::de::{DeString, DeValue};

pub(crate) use problems::{Problem, Problems};
pub(crate) use structs::{RawBackoff, RawDaemon, RawDoc, RawProxy, RawTunnel};
pub(crate) use walk::{walk, walk_included};

type Item<'i> = Spanned<DeValue<'i>>;
type Key<'i> = Spanned<DeString<'i>>;
