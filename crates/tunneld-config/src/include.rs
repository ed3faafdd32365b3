//! `[daemon] include`: more files holding `[tunnels.NAME]` tables, one pattern each
//! (`/etc/tunneld/tunnels.d/*.toml`).
//!
//! Wildcards (`*`, `?`) may stand in the file name only, so that each pattern names one
//! folder (the one the daemon watches); as in the shell, they do not match a leading dot
//! (editors' lock and swap files). A pattern with a wildcard may match no file, even in a
//! folder that does not exist; one without names a file that must exist. Matches are read
//! in name order, each once.

use std::path::{Path, PathBuf};

use toml::Spanned;

use crate::raw::Problems;

/// The largest included file read, in bytes; a tunnel table is a few hundred.
pub(crate) const MAX_INCLUDED_FILE_BYTES: u64 = 1 << 20;
/// The most files all patterns together may match.
pub(crate) const MAX_INCLUDED_FILES: usize = 4096;

/// Whether `name` (a file name, no `/`) matches `pattern`: `*` is any run of characters,
/// `?` any one, neither a leading `.`.
pub fn file_name_matches(pattern: &str, name: &str) -> bool {
    if name.starts_with('.') && !pattern.starts_with('.') {
        return false;
    }
    crate::wildcard::matches_str(pattern, name)
}

fn has_wildcard(s: &str) -> bool {
    s.contains(['*', '?'])
}

/// The folder and file-name pattern of an absolute include pattern.
pub fn split_pattern(pattern: &Path) -> Option<(PathBuf, String)> {
    let name = pattern.file_name()?.to_str()?.to_owned();
    let dir = pattern.parent()?.to_path_buf();
    Some((dir, name))
}

/// Makes the patterns absolute (relative ones against `base`, the main file's folder)
/// and checks their form; problems are filed at each pattern's string in the main file.
pub(crate) fn absolute(
    patterns: &[Spanned<PathBuf>],
    base: &Path,
    p: &mut Problems,
) -> Vec<Spanned<PathBuf>> {
    let mut out = Vec::new();
    for pattern in patterns {
        let path = base.join(pattern.get_ref());
        let shown = pattern.get_ref().display();
        let Some((dir, name)) = split_pattern(&path) else {
            p.push_at(
                0,
                pattern.span().start,
                format!("include \"{shown}\" names no file; write e.g. \"tunnels.d/*.toml\""),
            );
            continue;
        };
        if has_wildcard(&dir.to_string_lossy()) {
            p.push_at(
                0,
                pattern.span().start,
                format!(
                    "include \"{shown}\": wildcards may stand in the file name only, not in \
                     the folder; name the folder, e.g. \"/etc/tunneld/tunnels.d/*.toml\""
                ),
            );
            continue;
        }
        if !name.ends_with(".toml") {
            p.push_at(
                0,
                pattern.span().start,
                format!(
                    "include \"{shown}\" must name .toml files (e.g. \"*.toml\"), so that \
                     other files in the folder (backups, notes) are never read"
                ),
            );
            continue;
        }
        out.push(Spanned::new(pattern.span(), dir.join(name)));
    }
    out
}

/// The files the patterns name, in pattern order and, within a pattern, in name order;
/// each once, never `main` itself. A missing file named without wildcards, or a folder
/// that cannot be read (but exists), is a problem at its pattern.
pub(crate) fn expand(patterns: &[Spanned<PathBuf>], main: &Path, p: &mut Problems) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = Vec::new();
    for pattern in patterns {
        let at = pattern.span().start;
        let Some((dir, name)) = split_pattern(pattern.get_ref()) else {
            continue;
        };
        if !has_wildcard(&name) {
            let path = pattern.get_ref().clone();
            if !path.is_file() {
                p.push_at(
                    0,
                    at,
                    format!("include \"{}\": no such file", path.display()),
                );
            } else if !files.contains(&path) && path != main {
                files.push(path);
            }
            continue;
        }
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            // Like a shell glob: no folder, no files (a package may not have made it).
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => {
                p.push_at(
                    0,
                    at,
                    format!(
                        "include \"{}\": cannot read the folder {}: {e}",
                        pattern.get_ref().display(),
                        dir.display()
                    ),
                );
                continue;
            }
        };
        let mut matched: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .filter(|e| {
                e.file_name()
                    .to_str()
                    .is_some_and(|n| file_name_matches(&name, n))
            })
            .map(|e| e.path())
            // Folders (and other things that are not files) are not configuration.
            .filter(|path| path.is_file())
            .collect();
        matched.sort();
        for path in matched {
            if files.len() >= MAX_INCLUDED_FILES {
                p.push_at(
                    0,
                    at,
                    format!("include: more than {MAX_INCLUDED_FILES} files; merge some of them"),
                );
                return files;
            }
            if !files.contains(&path) && path != main {
                files.push(path);
            }
        }
    }
    files
}

/// Reads an included file (at most [`MAX_INCLUDED_FILE_BYTES`]).
///
/// # Errors
/// Why it cannot be read, lower-case.
pub(crate) fn read(path: &Path) -> Result<String, String> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| format!("cannot read the file: {e}"))?;
    let mut bytes = Vec::new();
    file.take(MAX_INCLUDED_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read the file: {e}"))?;
    if bytes.len() as u64 > MAX_INCLUDED_FILE_BYTES {
        return Err(format!(
            "the file is larger than {MAX_INCLUDED_FILE_BYTES} bytes; is it really a tunnel table?"
        ));
    }
    String::from_utf8(bytes).map_err(|_| "the file is not valid UTF-8".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_as_in_the_shell() {
        assert!(file_name_matches("*.toml", "a.toml"));
        assert!(!file_name_matches("*.toml", ".toml.toml"));
        assert!(!file_name_matches("*.toml", ".#a.toml"));
        assert!(!file_name_matches("*.toml", "a.toml~"));
        assert!(!file_name_matches("*.toml", "a.toml.swp"));
        assert!(file_name_matches("box-?.toml", "box-1.toml"));
        assert!(!file_name_matches("box-?.toml", "box-12.toml"));
        assert!(file_name_matches("one.toml", "one.toml"));
        assert!(file_name_matches(".hidden.toml", ".hidden.toml"));
    }
}
