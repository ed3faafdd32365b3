//! known_hosts lookup with OpenSSH's rules: plain and hashed names, `[host]:port`,
//! patterns with `*`/`?` and `!` negation, and `@revoked` keys.
//!
//! The matching is ours (OpenSSH's rules: every line is considered, a later line may
//! match where an earlier one did not); parsing of each line is `ssh_key::known_hosts`. [`HostLine`] is one line, parsed and matched on
//! its own.

use std::io::Write;
use std::path::{Path, PathBuf};

use hmac::{Hmac, Mac};
use sha1::Sha1;
use ssh_key::known_hosts::{Entry, HostPatterns, KnownHosts};
use ssh_key::{Algorithm, PublicKey};

pub use ssh_key::known_hosts::Marker;

/// What the known_hosts files say about a server's key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// A line for this host holds exactly this key.
    Trusted,
    /// The key is marked `@revoked` for this host.
    Revoked { file: PathBuf, line: usize },
    /// The host is known, but with other keys: possibly a man in the middle.
    Changed { file: PathBuf, line: usize },
    /// No line names this host.
    Unknown,
}

/// The name OpenSSH looks up: `host` on port 22, `[host]:port` elsewhere.
pub fn lookup_name(host: &str, port: u16) -> String {
    if port == 22 {
        host.to_ascii_lowercase()
    } else {
        format!("[{}]:{}", host.to_ascii_lowercase(), port)
    }
}

/// One known_hosts line that names hosts and a key: `[@marker] hosts keytype base64 [comment]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostLine(Entry);

impl HostLine {
    /// Parses one line of a known_hosts file; anything from a newline on is ignored.
    ///
    /// Returns `None` for blank and comment lines and for lines that cannot be read (a
    /// key type we do not know, a typo): OpenSSH skips those too, so one bad line does
    /// not hide the others.
    pub fn parse(line: &str) -> Option<HostLine> {
        let line = line.split('\n').next().unwrap_or_default();
        match KnownHosts::new(line).next() {
            Some(Ok(entry)) => Some(HostLine(entry)),
            _ => None,
        }
    }

    /// Whether the line's host field names `name`, the lower-case name OpenSSH looks up
    /// (see [`lookup_name`]). A hashed field (`|1|salt|hash`) matches when HMAC-SHA1 of
    /// `name` keyed with the salt is the hash. Otherwise the field is a comma-separated
    /// list of patterns, lower-cased as `name` is, where `*` is any run of characters and
    /// `?` any one: it matches when some pattern matches and no `!`-negated one does.
    pub fn matches(&self, name: &str) -> bool {
        host_matches(self.0.host_patterns(), name)
    }

    /// `@cert-authority` or `@revoked`; `None` for a plain host key line.
    pub fn marker(&self) -> Option<&Marker> {
        self.0.marker()
    }

    /// The line's key.
    pub fn public_key(&self) -> &PublicKey {
        self.0.public_key()
    }

    /// Whether the host field is hashed (`|1|salt|hash`, `ssh-keygen -H`).
    pub fn is_hashed(&self) -> bool {
        matches!(self.0.host_patterns(), HostPatterns::HashedName { .. })
    }

    /// Whether the line names its hosts plainly enough to be rewritten for one of them:
    /// a hashed name, or one or two names (`host` or `host,address`) without wildcards
    /// or negation. OpenSSH's `UpdateHostKeys` leaves other lines alone (and then the
    /// whole update: a pattern is someone's deliberate choice).
    pub fn names_plainly(&self) -> bool {
        match self.0.host_patterns() {
            HostPatterns::HashedName { .. } => true,
            HostPatterns::Patterns(list) => {
                list.len() <= 2 && !list.iter().any(|p| p.contains(['*', '?', '!']))
            }
        }
    }
}

/// One readable line of a known_hosts file, with where it is.
pub(crate) struct Line {
    pub file: PathBuf,
    /// 1-based.
    pub number: usize,
    pub entry: HostLine,
}

/// Every line of `files` that names hosts and a key, in order; unreadable files and
/// lines are skipped.
pub(crate) fn read_lines(files: &[PathBuf]) -> Vec<Line> {
    let mut out = Vec::new();
    for file in files {
        let Ok(text) = std::fs::read_to_string(file) else {
            continue;
        };
        for (index, raw) in text.lines().enumerate() {
            // Parse line by line so one entry we cannot read (a key type we do not know,
            // a typo) skips that line only, as OpenSSH does.
            let Some(entry) = HostLine::parse(raw) else {
                continue;
            };
            out.push(Line {
                file: file.clone(),
                number: index + 1,
                entry,
            });
        }
    }
    out
}

/// Checks `key` for `name` (see [`lookup_name`]) against every file, in order.
pub fn check(files: &[PathBuf], name: &str, key: &PublicKey) -> Verdict {
    let lines: Vec<Line> = read_lines(files)
        .into_iter()
        .filter(|l| l.entry.matches(name))
        .collect();
    let same_key = |l: &&Line| l.entry.public_key().key_data() == key.key_data();
    if let Some(l) = lines
        .iter()
        .filter(|l| l.entry.marker() == Some(&Marker::Revoked))
        .find(same_key)
    {
        return Verdict::Revoked {
            file: l.file.clone(),
            line: l.number,
        };
    }
    let plain: Vec<&Line> = lines
        .iter()
        .filter(|l| l.entry.marker().is_none())
        .collect();
    if plain.iter().any(same_key) {
        return Verdict::Trusted;
    }
    match plain.first() {
        Some(l) => Verdict::Changed {
            file: l.file.clone(),
            line: l.number,
        },
        None => Verdict::Unknown,
    }
}

/// Key algorithms already recorded for `name`, so the handshake can ask for those first
/// (as OpenSSH does) instead of failing on a key type we have no line for.
pub fn known_algorithms(files: &[PathBuf], name: &str) -> Vec<Algorithm> {
    let mut algs = Vec::new();
    for l in read_lines(files) {
        if l.entry.marker().is_none() && l.entry.matches(name) {
            let alg = l.entry.public_key().algorithm();
            if !algs.contains(&alg) {
                algs.push(alg);
            }
        }
    }
    algs
}

/// The CA keys of the `@cert-authority` lines whose patterns match `name`.
pub fn cert_authorities(files: &[PathBuf], name: &str) -> Vec<PublicKey> {
    read_lines(files)
        .into_iter()
        .filter(|l| l.entry.marker() == Some(&Marker::CertAuthority))
        .filter(|l| l.entry.matches(name))
        .map(|l| l.entry.public_key().clone())
        .collect()
}

/// Records `name key` in `file` for `accept-new`, creating it with mode 0600; never
/// through a symbolic link of another user's (see [`crate::safe_fs`]).
///
/// Under an exclusive lock on the file, the host is looked up again in `files` (which
/// include `file`): another tunnel may have learnt it meanwhile. Only a host still
/// unknown is appended, on a line of its own even when the file does not end with a
/// newline. Returns the verdict under the lock: [`Verdict::Unknown`] means recorded now.
///
/// # Errors
/// The file cannot be created, locked, read or written.
pub fn record(
    files: &[PathBuf],
    file: &Path,
    name: &str,
    key: &PublicKey,
) -> std::io::Result<Verdict> {
    use std::io::{Read, Seek, SeekFrom};
    let encoded = key
        .to_openssh()
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    let mut f = lock(file)?;
    let verdict = check(files, name, key);
    if !matches!(verdict, Verdict::Unknown) {
        return Ok(verdict);
    }
    let mut line = String::new();
    if f.seek(SeekFrom::End(0))? > 0 {
        f.seek(SeekFrom::End(-1))?;
        let mut last = [0u8; 1];
        f.read_exact(&mut last)?;
        if last[0] != b'\n' {
            line.push('\n');
        }
    }
    line.push_str(&format!("{name} {encoded}\n"));
    // One write call: with O_APPEND the line lands whole even beside a writer that does
    // not lock (ssh itself).
    f.write_all(line.as_bytes())?;
    Ok(Verdict::Unknown)
}

/// How many times [`lock`] opens the file again when it was replaced while it waited.
const LOCK_ATTEMPTS: usize = 16;

/// Opens `file` for reading and appending (created with mode 0600, never through another
/// user's symbolic link, see [`crate::safe_fs`]) and takes an exclusive lock on it: the
/// lock accept-new records under and host key rotation rewrites under. A file replaced
/// while we waited (host key rotation writes a new file and renames it over) is opened
/// again, so the lock held is always on the file the name leads to.
///
/// # Errors
/// The file cannot be created, opened or locked.
pub(crate) fn lock(file: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    use std::os::unix::io::AsRawFd;
    crate::safe_fs::check_link(file, "known_hosts file").map_err(std::io::Error::other)?;
    if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    for _ in 0..LOCK_ATTEMPTS {
        let f = std::fs::OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(0o600)
            .open(file)?;
        // SAFETY: flock on a descriptor we own; released when `f` is closed.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let (held, named) = (f.metadata()?, std::fs::metadata(file)?);
        if (held.dev(), held.ino()) == (named.dev(), named.ino()) {
            return Ok(f);
        }
    }
    Err(std::io::Error::other(format!(
        "{} keeps being replaced; cannot lock it",
        file.display()
    )))
}

fn host_matches(patterns: &HostPatterns, name: &str) -> bool {
    match patterns {
        HostPatterns::HashedName { salt, hash } => {
            let Ok(mut mac) = Hmac::<Sha1>::new_from_slice(salt) else {
                return false;
            };
            mac.update(name.as_bytes());
            mac.verify_slice(hash).is_ok()
        }
        HostPatterns::Patterns(list) => {
            let mut positive = false;
            for pattern in list {
                let pattern = pattern.to_ascii_lowercase();
                if let Some(negated) = pattern.strip_prefix('!') {
                    if glob(negated.as_bytes(), name.as_bytes()) {
                        return false;
                    }
                } else if glob(pattern.as_bytes(), name.as_bytes()) {
                    positive = true;
                }
            }
            positive
        }
    }
}

/// OpenSSH's `match_pattern`, byte by byte as OpenSSH compares host names.
fn glob(pattern: &[u8], text: &[u8]) -> bool {
    tunneld_config::wildcard::matches(pattern, text, b'*', b'?')
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY_A: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEX7/OD3esRYH+a3z0a80PmwbTZh3yF//z2+FCmH+e1Z";
    const KEY_B: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIIouhlGwha0rL1TjFuJrRp8wI8G8lLAGlI93BgqS1wMW";

    fn key(s: &str) -> PublicKey {
        PublicKey::from_openssh(s).unwrap()
    }

    fn file(content: &str) -> (tempfile::TempDir, Vec<PathBuf>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("known_hosts");
        std::fs::write(&path, content).unwrap();
        (dir, vec![path])
    }

    #[test]
    fn glob_follows_openssh() {
        assert!(glob(b"*.example.com", b"a.example.com"));
        assert!(glob(b"host?", b"host1"));
        assert!(!glob(b"host?", b"host"));
        assert!(glob(b"*", b""));
        assert!(glob(b"[127.0.0.1]:*", b"[127.0.0.1]:2222"));
        assert!(!glob(b"a*c", b"abd"));
    }

    #[test]
    fn plain_port_and_pattern_lines() {
        let (_d, files) = file(&format!(
            "# comment\nother.example {KEY_B}\n[127.0.0.1]:2222 {KEY_A}\n*.corp,!bad.corp {KEY_A}\n"
        ));
        let a = key(KEY_A);
        assert_eq!(
            check(&files, &lookup_name("127.0.0.1", 2222), &a),
            Verdict::Trusted
        );
        assert_eq!(
            check(&files, &lookup_name("127.0.0.1", 22), &a),
            Verdict::Unknown
        );
        assert_eq!(
            check(&files, &lookup_name("x.corp", 22), &a),
            Verdict::Trusted
        );
        assert_eq!(
            check(&files, &lookup_name("bad.corp", 22), &a),
            Verdict::Unknown
        );
        assert!(matches!(
            check(&files, "other.example", &a),
            Verdict::Changed { line: 2, .. }
        ));
    }

    #[test]
    fn a_later_matching_line_wins_over_an_earlier_mismatch() {
        let (_d, files) = file(&format!("h {KEY_B}\nh {KEY_A}\n"));
        assert_eq!(check(&files, "h", &key(KEY_A)), Verdict::Trusted);
    }

    #[test]
    fn revoked_beats_trusted() {
        let (_d, files) = file(&format!("h {KEY_A}\n@revoked h {KEY_A}\n"));
        assert!(matches!(
            check(&files, "h", &key(KEY_A)),
            Verdict::Revoked { line: 2, .. }
        ));
    }

    #[test]
    fn hashed_names_match() {
        // `ssh-keygen -H` form of "[127.0.0.1]:2222", salt chosen here.
        let salt = b"0123456789abcdefghij";
        let mut mac = Hmac::<Sha1>::new_from_slice(salt).unwrap();
        mac.update(b"[127.0.0.1]:2222");
        let hash = mac.finalize().into_bytes();
        use base64ct::Encoding;
        let line = format!(
            "|1|{}|{} {KEY_A}\n",
            base64ct::Base64::encode_string(salt),
            base64ct::Base64::encode_string(&hash)
        );
        let (_d, files) = file(&line);
        assert_eq!(
            check(&files, "[127.0.0.1]:2222", &key(KEY_A)),
            Verdict::Trusted
        );
        assert_eq!(
            check(&files, "[127.0.0.1]:2223", &key(KEY_A)),
            Verdict::Unknown
        );
    }

    #[test]
    fn unreadable_lines_are_skipped_and_record_round_trips() {
        let (dir, files) = file("garbage line here\n");
        let k = key(KEY_A);
        assert_eq!(check(&files, "h", &k), Verdict::Unknown);
        let recorded = record(&files, &files[0], "[h]:2200", &k).unwrap();
        assert_eq!(recorded, Verdict::Unknown);
        assert_eq!(check(&files, "[h]:2200", &k), Verdict::Trusted);
        assert_eq!(
            known_algorithms(&files, "[h]:2200"),
            vec![Algorithm::Ed25519]
        );
        drop(dir);
    }

    #[test]
    fn a_file_without_a_final_newline_gets_the_key_on_a_line_of_its_own() {
        let (_d, files) = file(&format!("other.example {KEY_B}"));
        record(&files, &files[0], "new.example", &key(KEY_A)).unwrap();
        assert_eq!(
            check(&files, "other.example", &key(KEY_B)),
            Verdict::Trusted
        );
        assert_eq!(check(&files, "new.example", &key(KEY_A)), Verdict::Trusted);
        let text = std::fs::read_to_string(&files[0]).unwrap();
        assert_eq!(text.lines().count(), 2, "{text}");
    }

    #[test]
    fn tunnels_learning_a_host_at_once_write_it_once() {
        let (_d, files) = file("");
        let k = key(KEY_A);
        let barrier = std::sync::Barrier::new(8);
        let verdicts: Vec<Verdict> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    s.spawn(|| {
                        barrier.wait();
                        record(&files, &files[0], "[h]:2200", &k).unwrap()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let recorded = verdicts.iter().filter(|v| **v == Verdict::Unknown).count();
        assert_eq!(recorded, 1, "{verdicts:?}");
        assert!(
            verdicts
                .iter()
                .all(|v| matches!(v, Verdict::Unknown | Verdict::Trusted))
        );
        let text = std::fs::read_to_string(&files[0]).unwrap();
        assert_eq!(text.lines().count(), 1, "{text}");
    }

    #[test]
    fn a_key_recorded_meanwhile_by_another_wins_over_a_different_one() {
        let (_d, files) = file("");
        record(&files, &files[0], "h", &key(KEY_A)).unwrap();
        let second = record(&files, &files[0], "h", &key(KEY_B)).unwrap();
        assert!(
            matches!(second, Verdict::Changed { line: 1, .. }),
            "{second:?}"
        );
        let text = std::fs::read_to_string(&files[0]).unwrap();
        assert_eq!(text.lines().count(), 1, "{text}");
    }

    #[test]
    fn never_written_through_another_users_link() {
        // SAFETY: geteuid cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: giving a link to another user needs root");
            return;
        }
        let (dir, files) = file("");
        let elsewhere = dir.path().join("elsewhere");
        std::fs::write(&elsewhere, "untouched\n").unwrap();
        std::fs::remove_file(&files[0]).unwrap();
        std::os::unix::fs::symlink(&elsewhere, &files[0]).unwrap();
        std::os::unix::fs::lchown(&files[0], Some(65534), None).unwrap();
        let err = record(&files, &files[0], "h", &key(KEY_A)).unwrap_err();
        assert!(err.to_string().contains("owned by uid 65534"), "{err}");
        assert_eq!(std::fs::read_to_string(&elsewhere).unwrap(), "untouched\n");
        // Our own link is written through.
        std::os::unix::fs::lchown(&files[0], Some(0), None).unwrap();
        record(&files, &files[0], "h", &key(KEY_A)).unwrap();
        assert_eq!(
            std::fs::read_to_string(&elsewhere).unwrap().lines().count(),
            2
        );
    }
}
