//! Client authentication: identity files (with OpenSSH's permission rule) and ssh-agent.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use russh::client::{AuthResult, Handle};
use russh::keys::agent::AgentIdentity;
use russh::keys::agent::client::AgentClient;
use russh::keys::{Certificate, HashAlg, PrivateKey, PrivateKeyWithHashAlg, PublicKey};
use tracing::debug;

use crate::session::ClientHandler;

/// An identity file read from disk.
pub(crate) enum Identity {
    /// A usable private key.
    Key(Box<PrivateKey>),
    /// A passphrase-protected key: only its public half, to look for in the agent.
    Encrypted(PublicKey),
}

/// Reads an identity file, refusing it when group or others may read it (as OpenSSH does)
/// or when it is a symbolic link of another user's.
///
/// # Errors
/// A message naming the file and what to do: missing, too open, unreadable format,
/// or encrypted without a public half to find in the agent.
pub(crate) fn load_identity(path: &Path) -> Result<Identity, String> {
    crate::safe_fs::check_link(path, "identity file")?;
    let meta =
        std::fs::metadata(path).map_err(|e| format!("identity file {}: {e}", path.display()))?;
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    if meta.uid() == euid && meta.mode() & 0o077 != 0 {
        return Err(format!(
            "permissions {:04o} for identity file {} are too open: private keys must not be \
             accessible by others, so it is ignored (chmod 600 {})",
            meta.mode() & 0o7777,
            path.display(),
            path.display()
        ));
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("identity file {}: {e}", path.display()))?;
    match russh::keys::decode_secret_key(&text, None) {
        Ok(key) => Ok(Identity::Key(Box::new(key))),
        Err(russh::keys::Error::KeyIsEncrypted) => encrypted_public_half(path, &text)
            .map(Identity::Encrypted)
            .ok_or_else(|| {
                format!(
                    "identity file {} is encrypted and its public key ({}.pub) is missing",
                    path.display(),
                    path.display()
                )
            }),
        Err(e) => Err(format!(
            "identity file {}: cannot read key: {e}",
            path.display()
        )),
    }
}

fn encrypted_public_half(path: &Path, text: &str) -> Option<PublicKey> {
    if let Ok(k) = PrivateKey::from_openssh(text) {
        return Some(k.public_key().clone());
    }
    let mut pub_path = path.as_os_str().to_owned();
    pub_path.push(".pub");
    let pub_text = std::fs::read_to_string(PathBuf::from(pub_path)).ok()?;
    PublicKey::from_openssh(pub_text.trim()).ok()
}

/// The identity files OpenSSH tries when none is configured, those that exist.
pub(crate) fn default_identities() -> Vec<PathBuf> {
    let Some(home) = std::env::var_os("HOME") else {
        return Vec::new();
    };
    ["id_ed25519", "id_ecdsa", "id_rsa"]
        .iter()
        .map(|n| Path::new(&home).join(".ssh").join(n))
        .filter(|p| p.exists())
        .collect()
}

fn hash_for(key: &PublicKey, rsa_hash: Option<HashAlg>) -> Option<HashAlg> {
    if key.algorithm().is_rsa() {
        rsa_hash
    } else {
        None
    }
}

/// Reads the configured certificate files; a file that cannot be used becomes a note.
fn load_certificates(files: &[PathBuf], notes: &mut Vec<String>) -> Vec<(PathBuf, Certificate)> {
    files
        .iter()
        .filter_map(|path| {
            let read = std::fs::read_to_string(path).map_err(|e| e.to_string());
            match read.and_then(|t| Certificate::from_openssh(t.trim()).map_err(|e| e.to_string()))
            {
                Ok(cert) => Some((path.clone(), cert)),
                Err(e) => {
                    notes.push(format!("certificate file {}: {e}", path.display()));
                    None
                }
            }
        })
        .collect()
}

/// The certificates for `key`: configured ones that certify it, and `IDENTITY-cert.pub`
/// beside its file, as OpenSSH finds it.
fn certificates_for(
    identity: &Path,
    key: &PublicKey,
    configured: &[(PathBuf, Certificate)],
) -> Vec<(PathBuf, Certificate)> {
    let mut out: Vec<(PathBuf, Certificate)> = configured
        .iter()
        .filter(|(_, c)| c.public_key() == key.key_data())
        .cloned()
        .collect();
    let mut beside = identity.as_os_str().to_owned();
    beside.push("-cert.pub");
    let beside = PathBuf::from(beside);
    if !out.iter().any(|(p, _)| *p == beside)
        && let Ok(text) = std::fs::read_to_string(&beside)
        && let Ok(cert) = Certificate::from_openssh(text.trim())
        && cert.public_key() == key.key_data()
    {
        out.push((beside, cert));
    }
    out
}

/// Authenticates with the configured identity files (each with its certificates first),
/// then with the agent's keys.
///
/// # Errors
/// A message listing what was offered and why other identities could not be used.
pub(crate) async fn authenticate(
    handle: &mut Handle<ClientHandler>,
    user: &str,
    identity_files: &[PathBuf],
    certificate_files: &[PathBuf],
) -> Result<(), String> {
    // RSA keys must sign with rsa-sha2-256/512: OpenSSH 8.8+ refuses SHA-1 `ssh-rsa`.
    let rsa_hash = handle
        .best_supported_rsa_hash()
        .await
        .map_err(|e| format!("ssh: {e}"))?
        .flatten()
        .or(Some(HashAlg::Sha256));
    let mut notes: Vec<String> = Vec::new();
    let mut offered: Vec<String> = Vec::new();

    let mut agent = match std::env::var_os("SSH_AUTH_SOCK") {
        Some(_) => match AgentClient::connect_env().await {
            Ok(a) => Some(a),
            Err(e) => {
                notes.push(format!("ssh-agent at $SSH_AUTH_SOCK: {e}"));
                None
            }
        },
        None => None,
    };
    let mut agent_keys: Vec<PublicKey> = match agent.as_mut() {
        Some(a) => a
            .request_identities()
            .await
            .unwrap_or_default()
            .into_iter()
            .filter_map(|id| match id {
                AgentIdentity::PublicKey { key, .. } => Some(key),
                AgentIdentity::Certificate { .. } => None,
            })
            .collect(),
        None => Vec::new(),
    };

    let certificates = load_certificates(certificate_files, &mut notes);
    let files = if identity_files.is_empty() {
        default_identities()
    } else {
        identity_files.to_vec()
    };
    for path in &files {
        match load_identity(path) {
            Ok(Identity::Key(key)) => {
                let public = key.public_key().clone();
                agent_keys.retain(|k| k.key_data() != public.key_data());
                let key = Arc::new(*key);
                for (cert_path, cert) in certificates_for(path, &public, &certificates) {
                    offered.push(format!(
                        "{} with certificate {}",
                        path.display(),
                        cert_path.display()
                    ));
                    match handle
                        .authenticate_openssh_cert(user, Arc::clone(&key), cert)
                        .await
                    {
                        Ok(AuthResult::Success) => return Ok(()),
                        Ok(AuthResult::Failure { .. }) => {
                            debug!(certificate = %cert_path.display(), "certificate refused");
                        }
                        Err(e) => return Err(format!("ssh: {e}")),
                    }
                }
                offered.push(path.display().to_string());
                let hash = hash_for(&public, rsa_hash);
                let key = PrivateKeyWithHashAlg::new(key, hash);
                match handle.authenticate_publickey(user, key).await {
                    Ok(AuthResult::Success) => return Ok(()),
                    Ok(AuthResult::Failure { .. }) => debug!(key = %path.display(), "key refused"),
                    Err(e) => return Err(format!("ssh: {e}")),
                }
            }
            Ok(Identity::Encrypted(public)) => {
                let in_agent = agent_keys.iter().any(|k| k.key_data() == public.key_data());
                match agent.as_mut() {
                    Some(a) if in_agent => {
                        agent_keys.retain(|k| k.key_data() != public.key_data());
                        offered.push(format!("{} (via ssh-agent)", path.display()));
                        let hash = hash_for(&public, rsa_hash);
                        match handle
                            .authenticate_publickey_with(user, public, hash, a)
                            .await
                        {
                            Ok(AuthResult::Success) => return Ok(()),
                            Ok(AuthResult::Failure { .. }) => {}
                            Err(e) => notes.push(format!("ssh-agent: {e}")),
                        }
                    }
                    _ => notes.push(format!(
                        "identity file {} is encrypted: load it into ssh-agent (ssh-add {}) and \
                         set SSH_AUTH_SOCK for tunneld, or use a key without a passphrase",
                        path.display(),
                        path.display()
                    )),
                }
            }
            Err(note) => notes.push(note),
        }
    }
    if let Some(a) = agent.as_mut() {
        for key in agent_keys {
            offered.push(format!("agent key {}", key.fingerprint(HashAlg::Sha256)));
            let hash = hash_for(&key, rsa_hash);
            match handle.authenticate_publickey_with(user, key, hash, a).await {
                Ok(AuthResult::Success) => return Ok(()),
                Ok(AuthResult::Failure { .. }) => {}
                Err(e) => notes.push(format!("ssh-agent: {e}")),
            }
        }
    }
    let mut reason = if offered.is_empty() {
        "no usable key (set identity_file, or run an ssh-agent)".to_string()
    } else {
        format!("server refused {}", offered.join(", "))
    };
    for note in notes {
        reason.push_str("; ");
        reason.push_str(&note);
    }
    Err(reason)
}
