//! Configuration errors, each tied to a file position.

use std::fmt;
use std::path::{Path, PathBuf};

/// One problem in a configuration file.
///
/// `line` and `col` are 1-based (`col` counts characters). Both are 0 when the
/// problem concerns the whole file, such as the file being unreadable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The configuration file, as given to [`load`](crate::load) or [`parse`](crate::parse).
    pub file: PathBuf,
    /// 1-based line of the offending key or value; 0 for whole-file problems.
    pub line: usize,
    /// 1-based column (in characters) of the offending key or value; 0 for whole-file problems.
    pub col: usize,
    /// What is wrong, lower-case, with a hint of what to do.
    pub message: String,
}

impl ConfigError {
    /// An error about the whole file (e.g. it cannot be read): no line or column.
    pub fn whole_file(file: &Path, message: impl Into<String>) -> Self {
        ConfigError {
            file: file.to_path_buf(),
            line: 0,
            col: 0,
            message: message.into(),
        }
    }

    /// An error at byte `offset` of `text`.
    pub(crate) fn at(file: &Path, text: &str, offset: usize, message: impl Into<String>) -> Self {
        let (line, col) = line_col(text, offset);
        ConfigError {
            file: file.to_path_buf(),
            line,
            col,
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file.display(), self.message)
        } else {
            write!(
                f,
                "{}:{}:{}: {}",
                self.file.display(),
                self.line,
                self.col,
                self.message
            )
        }
    }
}

impl std::error::Error for ConfigError {}

/// Every problem found in a configuration file, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors {
    /// The problems; never empty when returned by [`load`](crate::load) or [`parse`](crate::parse).
    pub errors: Vec<ConfigError>,
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// 1-based (line, column) of byte `offset` in `text`; the column counts characters.
pub(crate) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let col = before[line_start..].chars().count() + 1;
    (line, col)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_chars_from_one() {
        let text = "ab\nçd = 1\r\nx";
        assert_eq!(line_col(text, 0), (1, 1));
        assert_eq!(line_col(text, 1), (1, 2));
        assert_eq!(line_col(text, 3), (2, 1));
        // 'ç' is two bytes but one column.
        assert_eq!(line_col(text, 5), (2, 2));
        assert_eq!(line_col(text, text.len() - 1), (3, 1));
        assert_eq!(line_col(text, 999), (3, 2));
    }

    #[test]
    fn display_with_and_without_position() {
        let e = ConfigError::at(Path::new("t.toml"), "a\nbc", 3, "bad");
        assert_eq!(e.to_string(), "t.toml:2:2: bad");
        let w = ConfigError::whole_file(Path::new("t.toml"), "cannot read");
        assert_eq!(w.to_string(), "t.toml: cannot read");
        let all = ConfigErrors { errors: vec![w, e] };
        assert_eq!(all.to_string(), "t.toml: cannot read\nt.toml:2:2: bad");
    }
}
