//! `update_host_keys`: OpenSSH's `UpdateHostKeys` for a tunnel's known_hosts file. After
//! authentication OpenSSH's sshd announces all its host keys; the keys we do not know
//! are proven by the server over this session (`tunneld_ssh::hostkeys`), then added
//! under the host's name, and the host's keys the server no longer has are dropped. So a
//! public host whose administrator adds a key, and later removes the old one, does not
//! lock its boxes out.
//!
//! The rules are OpenSSH's (`clientloop.c`, `client_input_hostkeys`): nothing is changed
//! when the session's key was not trusted through a known_hosts line of this host (a
//! certificate authority, `strict_host_key_checking = "no"`), when a line for the host
//! carries a marker (`@cert-authority`, `@revoked`) or a pattern, when an announced or a
//! dropped key also stands under another name, when the server announces a key twice,
//! or when a proof fails. Ours besides: the host's lines must all be in one file, not
//! OpenSSH's system-wide one, and the announcement must hold the key the session was
//! authenticated with. The file is rewritten under the lock accept-new records under,
//! as a new file renamed over the old one (same permissions), with new lines hashed when
//! the host's lines are.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use hmac::{Hmac, Mac};
use sha1::Sha1;
use ssh_key::PublicKey;
use tracing::{debug, info, warn};
use tunneld_ssh::hostkeys::{self, Announcement, ProveError, Proven};

use crate::known_hosts::{self, Line};

/// How long the server has to send its proofs.
const PROVE_TIMEOUT: Duration = Duration::from_secs(30);
/// OpenSSH's `GlobalKnownHostsFile` defaults: never rewritten (OpenSSH turns
/// `UpdateHostKeys` off when the host's key was found there).
const SYSTEM_FILES: [&str; 2] = ["/etc/ssh/ssh_known_hosts", "/etc/ssh/ssh_known_hosts2"];

/// What would change in known_hosts for a host, read from the files as they are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Plan {
    /// The file holding the host's lines, where the change is made.
    pub file: PathBuf,
    /// Announced keys the file does not have for the host: to be proven, then added.
    pub new: Vec<PublicKey>,
    /// Keys the file has for the host that the server did not announce: to be dropped.
    pub old: Vec<PublicKey>,
}

/// Works out the change for `name` given the server's `announced` keys: `Ok(None)` when
/// the files already agree with the server, `Err` (why) when they must not be touched.
pub(crate) fn plan(
    files: &[PathBuf],
    name: &str,
    announced: &[PublicKey],
) -> Result<Option<Plan>, String> {
    let lines = known_hosts::read_lines(files);
    let same = |a: &PublicKey, b: &PublicKey| a.key_data() == b.key_data();
    let host_lines: Vec<&Line> = lines.iter().filter(|l| l.entry.matches(name)).collect();
    let plain = |l: &&&Line| l.entry.marker().is_none();
    let known = |k: &PublicKey| {
        host_lines
            .iter()
            .filter(plain)
            .any(|l| same(l.entry.public_key(), k))
    };
    let new: Vec<PublicKey> = announced.iter().filter(|k| !known(k)).cloned().collect();
    let mut old: Vec<PublicKey> = Vec::new();
    for l in host_lines.iter().filter(plain) {
        let key = l.entry.public_key();
        if !announced.iter().any(|k| same(k, key)) && !old.iter().any(|o| same(o, key)) {
            old.push(key.clone());
        }
    }
    // Nothing to do is no reason to look further (nor to complain), as in OpenSSH.
    if new.is_empty() && old.is_empty() {
        return Ok(None);
    }
    for l in &host_lines {
        if l.entry.marker().is_some() {
            return Err(format!(
                "{}:{} marks a key of {name} (@cert-authority or @revoked)",
                l.file.display(),
                l.number
            ));
        }
        if !l.entry.names_plainly() {
            return Err(format!(
                "{}:{} names {name} through a pattern or a list",
                l.file.display(),
                l.number
            ));
        }
    }
    // An announced key, or one to drop, that stands under another name too: such
    // entries are someone's arrangement, kept as they are.
    let elsewhere = lines.iter().filter(|l| !l.entry.matches(name)).find(|l| {
        let key = l.entry.public_key();
        announced.iter().chain(&old).any(|k| same(k, key))
    });
    if let Some(l) = elsewhere {
        return Err(format!(
            "{} stands under another name too ({}:{})",
            hostkeys::describe(l.entry.public_key()),
            l.file.display(),
            l.number
        ));
    }
    let Some(first) = host_lines.first() else {
        return Err(format!("no line of the known_hosts files names {name} now"));
    };
    let file = first.file.clone();
    if let Some(other) = host_lines.iter().find(|l| l.file != file) {
        return Err(format!(
            "{name} has lines in two files ({} and {})",
            file.display(),
            other.file.display()
        ));
    }
    if SYSTEM_FILES.iter().any(|s| file == Path::new(s)) {
        return Err(format!("{} is the system-wide file", file.display()));
    }
    Ok(Some(Plan { file, new, old }))
}

/// What [`apply`] changed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Applied {
    /// The file changed (empty when nothing was).
    pub file: PathBuf,
    pub added: Vec<PublicKey>,
    pub removed: Vec<PublicKey>,
}

/// Under the file's lock, works the plan out again from the file as it is now (another
/// tunnel may have updated it meanwhile) and writes it: `proven` keys the host still
/// lacks are added, the host's keys not in `announced` are dropped.
///
/// # Errors
/// The files changed so that they must not be touched any more, or the file cannot be
/// locked, read or replaced.
pub(crate) fn apply(
    files: &[PathBuf],
    name: &str,
    announced: &[PublicKey],
    proven: &[PublicKey],
) -> Result<Applied, String> {
    let Some(planned) = plan(files, name, announced)? else {
        return Ok(Applied::default());
    };
    let file = planned.file.clone();
    let shown = file.display().to_string();
    let mut f = known_hosts::lock(&file).map_err(|e| format!("cannot lock {shown}: {e}"))?;
    // Under the lock: as it is now.
    let Some(plan) = plan(files, name, announced)? else {
        return Ok(Applied::default());
    };
    if plan.file != file {
        return Err(format!("{name} moved to {} meanwhile", plan.file.display()));
    }
    let mut text = String::new();
    f.read_to_string(&mut text)
        .map_err(|e| format!("cannot read {shown}: {e}"))?;
    let mut hashed = false;
    let mut kept: Vec<&str> = Vec::new();
    for raw in text.lines() {
        match known_hosts::HostLine::parse(raw) {
            Some(l) if l.matches(name) => {
                hashed |= l.is_hashed();
                let drop = plan
                    .old
                    .iter()
                    .any(|o| o.key_data() == l.public_key().key_data());
                if !drop {
                    kept.push(raw);
                }
            }
            _ => kept.push(raw),
        }
    }
    let added: Vec<PublicKey> = plan
        .new
        .iter()
        .filter(|k| proven.iter().any(|p| p.key_data() == k.key_data()))
        .cloned()
        .collect();
    if added.is_empty() && plan.old.is_empty() {
        return Ok(Applied::default());
    }
    let mut out = kept.join("\n");
    if !out.is_empty() {
        out.push('\n');
    }
    for key in &added {
        let encoded = key.to_openssh().map_err(|e| e.to_string())?;
        let host = if hashed {
            hash_name(name)
        } else {
            name.to_owned()
        };
        out.push_str(&format!("{host} {encoded}\n"));
    }
    replace(&file, &f, out.as_bytes()).map_err(|e| format!("cannot rewrite {shown}: {e}"))?;
    Ok(Applied {
        file,
        added,
        removed: plan.old,
    })
}

/// `|1|salt|hash` for `name`, as `ssh-keygen -H` and `HashKnownHosts` write it.
fn hash_name(name: &str) -> String {
    use base64ct::Encoding;
    let salt: [u8; 20] = rand::random();
    let Ok(mut mac) = Hmac::<Sha1>::new_from_slice(&salt) else {
        return name.to_owned();
    };
    mac.update(name.as_bytes());
    let hash = mac.finalize().into_bytes();
    format!(
        "|1|{}|{}",
        base64ct::Base64::encode_string(&salt),
        base64ct::Base64::encode_string(&hash)
    )
}

/// Writes `contents` to a new file beside `file` (the one a symbolic link leads to),
/// with the permissions of `locked` (its open, locked descriptor), and renames it over.
fn replace(file: &Path, locked: &std::fs::File, contents: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let real = std::fs::canonicalize(file)?;
    let dir = real.parent().unwrap_or(Path::new("/"));
    let base = real
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{base}.tunneld-{:016x}", rand::random::<u64>()));
    let mode = locked.metadata()?.permissions().mode() & 0o7777;
    let written = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.set_permissions(std::fs::Permissions::from_mode(mode))?;
        f.write_all(contents)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &real)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// Something that proves keys: the session ([`Announcement`]), or a test's script.
pub(crate) trait Prover {
    async fn prove(&self, keys: &[PublicKey]) -> Result<Proven, ProveError>;
}

impl Prover for Announcement {
    async fn prove(&self, keys: &[PublicKey]) -> Result<Proven, ProveError> {
        Announcement::prove(self, keys).await
    }
}

/// Where and for which host a session's key was trusted through a known_hosts line.
#[derive(Debug, Clone)]
pub(crate) struct Trusted {
    pub tunnel: std::sync::Arc<str>,
    pub files: Vec<PathBuf>,
    /// The name looked up (`host` or `[host]:port`).
    pub name: String,
    /// The key the session was authenticated with.
    pub key: PublicKey,
}

/// Waits for the session's announcement, then learns and forgets keys as the module
/// says; every outcome is logged. Ends with the session.
pub(crate) async fn follow(mut announcement: Announcement, trusted: Trusted) {
    let Some(blobs) = announcement.recv().await else {
        return;
    };
    let _ = learn(&announcement, &trusted, &blobs).await;
}

/// The update for one announcement (`blobs`): what was changed, or why nothing was.
pub(crate) async fn learn(
    prover: &impl Prover,
    trusted: &Trusted,
    blobs: &[Vec<u8>],
) -> Result<Applied, String> {
    let (tunnel, host) = (&*trusted.tunnel, trusted.name.as_str());
    let result = learn_quietly(prover, trusted, blobs).await;
    match &result {
        Ok(applied) => {
            let file = applied.file.display();
            for key in &applied.added {
                info!(tunnel, host, key = %hostkeys::describe(key), file = %file,
                      "learned a new host key the server proved it holds (update_host_keys)");
            }
            for key in &applied.removed {
                info!(tunnel, host, key = %hostkeys::describe(key), file = %file,
                      "dropped a host key the server no longer has (update_host_keys)");
            }
        }
        Err(why) => warn!(tunnel, host, "host keys not updated: {why}"),
    }
    result
}

async fn learn_quietly(
    prover: &impl Prover,
    trusted: &Trusted,
    blobs: &[Vec<u8>],
) -> Result<Applied, String> {
    let announced = hostkeys::parse_announcement(blobs).map_err(|e| e.to_string())?;
    for skipped in &announced.skipped {
        debug!(tunnel = %trusted.tunnel, "announced host key left out: {skipped}");
    }
    let keys = announced.keys;
    if !keys.iter().any(|k| k.key_data() == trusted.key.key_data()) {
        return Err(format!(
            "the announcement lacks the key the session was authenticated with ({})",
            hostkeys::describe(&trusted.key)
        ));
    }
    let (files, name) = (trusted.files.clone(), trusted.name.clone());
    let planned = {
        let keys = keys.clone();
        blocking(move || plan(&files, &name, &keys)).await?
    };
    let Some(planned) = planned else {
        debug!(tunnel = %trusted.tunnel, host = %trusted.name, "known_hosts already has every host key the server announced");
        return Ok(Applied::default());
    };
    let proven = if planned.new.is_empty() {
        Vec::new()
    } else {
        let proof = tokio::time::timeout(PROVE_TIMEOUT, prover.prove(&planned.new))
            .await
            .map_err(|_| format!("the server sent no proofs within {PROVE_TIMEOUT:?}"))?
            .map_err(|e| format!("{e}; nothing learned or dropped"))?;
        for key in &proof.disregarded {
            debug!(tunnel = %trusted.tunnel, key = %hostkeys::describe(key),
                   "host key proven only with SHA-1 (ssh-rsa); not learned");
        }
        proof.keys
    };
    let (files, name) = (trusted.files.clone(), trusted.name.clone());
    blocking(move || apply(&files, &name, &keys, &proven)).await
}

/// Runs file work off the runtime's threads.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, String> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| format!("internal error: {e}"))?
}

#[cfg(test)]
mod tests;
