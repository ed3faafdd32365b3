//! Problems found while walking the documents, each at the byte offset where it is in
//! its file; [`crate::ConfigError::at`] turns a file and an offset into `FILE:LINE:COL`.

use std::ops::Range;

/// One problem: the file it is in (an index into the files read: 0 is the main file, then
/// the included ones in order), the byte offset in that file's text, and the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Problem {
    pub file: usize,
    pub offset: usize,
    pub message: String,
}

/// Problems found so far. [`Problems::push`] files a problem under the file being walked
/// or resolved, set with [`Problems::in_file`].
#[derive(Debug, Default)]
pub(crate) struct Problems {
    current: usize,
    pub found: Vec<Problem>,
}

impl Problems {
    /// A problem at `span` of the current file.
    pub fn push(&mut self, span: Range<usize>, message: impl Into<String>) {
        self.push_at(self.current, span.start, message);
    }

    /// A problem at `offset` of file `file`.
    pub fn push_at(&mut self, file: usize, offset: usize, message: impl Into<String>) {
        self.found.push(Problem {
            file,
            offset,
            message: message.into(),
        });
    }

    /// Files the problems that follow under file `file`.
    pub fn in_file(&mut self, file: usize) {
        self.current = file;
    }

    /// The file problems are filed under now.
    pub fn current_file(&self) -> usize {
        self.current
    }

    pub fn is_empty(&self) -> bool {
        self.found.is_empty()
    }

    /// The problems in file order, then by position (in the order found at one
    /// position), each once.
    pub fn into_sorted(mut self) -> Vec<Problem> {
        self.found.sort_by_key(|p| (p.file, p.offset));
        self.found.dedup();
        self.found
    }
}
