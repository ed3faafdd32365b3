//! Problems found while walking the document, each at the byte offset where it is;
//! [`crate::ConfigError::at`] turns an offset into `FILE:LINE:COL`.

use std::ops::Range;

/// Problems found so far, as (byte offset, message).
#[derive(Debug, Default)]
pub(crate) struct Problems(pub Vec<(usize, String)>);

impl Problems {
    pub fn push(&mut self, span: Range<usize>, message: impl Into<String>) {
        self.0.push((span.start, message.into()));
    }
}
