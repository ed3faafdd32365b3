//! Client credentials: identity files (with OpenSSH's permission rule) with their
//! certificates, and the keys of an ssh-agent.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use ssh_key::{Certificate, PrivateKey, PublicKey};
use tunneld_ssh::Credential;

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
/// A message naming the file and what to do: missing, too open, or not an OpenSSH
/// private key.
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
    let key = PrivateKey::from_openssh(&text)
        .map_err(|e| format!("identity file {}: cannot read key: {e}", path.display()))?;
    if !key.is_encrypted() {
        return Ok(Identity::Key(Box::new(key)));
    }
    // OpenSSH's format keeps the public half in the clear, even for an encrypted key.
    Ok(Identity::Encrypted(key.public_key().clone()))
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

/// The certificates for the key of `identity`: configured ones that certify it, and
/// `IDENTITY-cert.pub` beside its file, as OpenSSH finds it.
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

/// What to offer the server, in order, and why other identities could not be used.
pub(crate) struct Credentials {
    pub list: Vec<Credential>,
    pub notes: Vec<String>,
}

/// The credentials to try: each configured identity file (its certificates first), then
/// the agent's other keys. An encrypted identity file is used through the agent when the
/// agent holds it.
pub(crate) async fn credentials(
    identity_files: &[PathBuf],
    certificate_files: &[PathBuf],
) -> Credentials {
    let mut notes: Vec<String> = Vec::new();
    let mut list: Vec<Credential> = Vec::new();
    let mut agent_keys: Vec<Credential> = match std::env::var_os("SSH_AUTH_SOCK") {
        Some(socket) => match tunneld_ssh::auth::agent::identities(Path::new(&socket)).await {
            Ok(keys) => keys,
            Err(e) => {
                notes.push(format!("ssh-agent at $SSH_AUTH_SOCK: {e}"));
                Vec::new()
            }
        },
        None => Vec::new(),
    };
    let agent_blob = |c: &Credential| match c {
        Credential::Agent { blob, .. } => Some(blob.clone()),
        Credential::Key { .. } => None,
    };
    let certificates = load_certificates(certificate_files, &mut notes);
    let files = if identity_files.is_empty() {
        default_identities()
    } else {
        identity_files.to_vec()
    };
    for path in &files {
        let label = path.display().to_string();
        match load_identity(path) {
            Ok(Identity::Key(key)) => {
                let public = key.public_key().clone();
                let blob = public.to_bytes().unwrap_or_default();
                agent_keys.retain(|k| agent_blob(k).as_deref() != Some(blob.as_slice()));
                let key = std::sync::Arc::new(*key);
                for (_, cert) in certificates_for(path, &public, &certificates) {
                    list.push(Credential::Key {
                        key: std::sync::Arc::clone(&key),
                        certificate: Some(cert),
                        label: label.clone(),
                    });
                }
                list.push(Credential::Key {
                    key,
                    certificate: None,
                    label,
                });
            }
            Ok(Identity::Encrypted(public)) => {
                let blob = public.to_bytes().unwrap_or_default();
                let at = agent_keys
                    .iter()
                    .position(|k| agent_blob(k).as_deref() == Some(blob.as_slice()));
                match at {
                    Some(i) => list.push(agent_keys.remove(i)),
                    None => notes.push(format!(
                        "identity file {label} is encrypted: load it into ssh-agent (ssh-add \
                         {label}) and set SSH_AUTH_SOCK for tunneld, or use a key without a \
                         passphrase"
                    )),
                }
            }
            Err(note) => notes.push(note),
        }
    }
    list.extend(agent_keys);
    Credentials { list, notes }
}

/// The reason text of a failed authentication: the server's answer and our notes.
pub(crate) fn failure(error: &tunneld_ssh::auth::AuthError, credentials: &Credentials) -> String {
    let mut reason = if credentials.list.is_empty() {
        "no usable key (set identity_file, or run an ssh-agent)".to_string()
    } else {
        error.to_string()
    };
    for note in &credentials.notes {
        reason.push_str("; ");
        reason.push_str(note);
    }
    reason
}
