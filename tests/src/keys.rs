//! `ssh-keygen` wrappers: generate unencrypted key pairs and read public keys.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, bail};

/// Key types [`generate`] accepts, as `ssh-keygen -t` spells them.
pub const KEY_KINDS: [&str; 3] = ["ed25519", "ecdsa", "rsa"];

/// Generates an unencrypted key pair at `path` (private, mode 0600) and `path.pub`.
///
/// `kind` is one of [`KEY_KINDS`]. An existing pair at `path` is replaced.
///
/// # Errors
/// An unknown `kind`, or `ssh-keygen` failing (its stderr is in the error).
pub fn generate(path: &Path, kind: &str, comment: &str) -> anyhow::Result<PathBuf> {
    if !KEY_KINDS.contains(&kind) {
        bail!("unknown key kind {kind:?}: use one of {KEY_KINDS:?}");
    }
    let public = pub_path(path);
    for p in [path, public.as_path()] {
        match std::fs::remove_file(p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("remove old key {}", p.display())),
        }
    }
    let mut cmd = Command::new("ssh-keygen");
    cmd.args(["-q", "-t", kind, "-N", "", "-C", comment, "-f"]);
    cmd.arg(path);
    if kind == "rsa" {
        // The default is 3072 bits; 2048 is accepted everywhere and generates faster.
        cmd.args(["-b", "2048"]);
    }
    run_keygen(cmd, &format!("ssh-keygen -t {kind} -f {}", path.display()))?;
    Ok(path.to_path_buf())
}

/// Runs an ssh-keygen command, failing with its stderr.
fn run_keygen(mut cmd: Command, what: &str) -> anyhow::Result<()> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .context("run ssh-keygen (is OpenSSH installed?)")?;
    if !out.status.success() {
        bail!(
            "{what} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// The `.pub` file next to a private key.
pub fn pub_path(private: &Path) -> PathBuf {
    let mut s = private.as_os_str().to_owned();
    s.push(".pub");
    PathBuf::from(s)
}

/// The public key line for a private key at `private`, as `"TYPE BASE64"` without the comment.
///
/// # Errors
/// The `.pub` file is missing or not a key line.
pub fn public_key_line(private: &Path) -> anyhow::Result<String> {
    let path = pub_path(private);
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("read {}", path.display()))?;
    let mut fields = text.split_whitespace();
    match (fields.next(), fields.next()) {
        (Some(kind), Some(blob)) => Ok(format!("{kind} {blob}")),
        _ => bail!("{} holds no public key line", path.display()),
    }
}

/// Signs the public half of `key` with the CA private key `ca` (`ssh-keygen -s`): a user
/// certificate for `principal`, valid from five minutes ago for an hour. Returns the
/// certificate's path (`KEY-cert.pub`).
///
/// # Errors
/// ssh-keygen is missing or fails.
pub fn sign(ca: &Path, key: &Path, principal: &str) -> anyhow::Result<PathBuf> {
    sign_as(ca, key, principal, &[])
}

/// As [`sign`], a host certificate (`ssh-keygen -h`) naming `principal` as the host.
///
/// # Errors
/// ssh-keygen is missing or fails.
pub fn sign_host(ca: &Path, key: &Path, principal: &str) -> anyhow::Result<PathBuf> {
    sign_as(ca, key, principal, &["-h"])
}

fn sign_as(ca: &Path, key: &Path, principal: &str, extra: &[&str]) -> anyhow::Result<PathBuf> {
    let public = pub_path(key);
    let mut cmd = Command::new("ssh-keygen");
    cmd.args(["-q", "-s"]).arg(ca);
    cmd.args(["-I", "tunneld-test", "-n", principal, "-V", "-5m:+1h"]);
    cmd.args(extra);
    cmd.arg(&public);
    run_keygen(cmd, &format!("ssh-keygen -s {}", ca.display()))?;
    let mut cert = key.as_os_str().to_owned();
    cert.push("-cert.pub");
    Ok(PathBuf::from(cert))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn generates_every_kind_with_private_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        for kind in KEY_KINDS {
            let path = generate(&dir.path().join(kind), kind, "test").unwrap();
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{kind}");
            let line = public_key_line(&path).unwrap();
            let expected = match kind {
                "ed25519" => "ssh-ed25519 ",
                "ecdsa" => "ecdsa-sha2-nistp256 ",
                _ => "ssh-rsa ",
            };
            assert!(line.starts_with(expected), "{kind}: {line}");
        }
        // Regenerating over an existing pair replaces it instead of prompting.
        let again = generate(&dir.path().join("ed25519"), "ed25519", "x").unwrap();
        assert!(public_key_line(&again).is_ok());
    }

    #[test]
    fn rejects_unknown_kind() {
        let dir = tempfile::tempdir().unwrap();
        let err = generate(&dir.path().join("k"), "dsa", "x").unwrap_err();
        assert!(err.to_string().contains("unknown key kind"), "{err}");
    }
}
