//! Errors of the SSH client, by layer.

/// A message that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// A field runs past the end of the message.
    #[error("message too short: a field needs {wanted} bytes, {left} left")]
    Short {
        /// Bytes the field needs.
        wanted: usize,
        /// Bytes left in the message.
        left: usize,
    },
    /// Bytes after the last field.
    #[error("{0} unexpected bytes at the end of a message")]
    Trailing(usize),
    /// A text field that is not UTF-8.
    #[error("a text field is not UTF-8")]
    NotUtf8,
    /// A name-list with non-ASCII bytes.
    #[error("a name-list is not ASCII")]
    NotAscii,
    /// A name-list with an empty name.
    #[error("a name-list has an empty name")]
    EmptyName,
}

/// The connection under a layer failed (transport error, disconnect, closed socket).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct LinkError(pub String);
