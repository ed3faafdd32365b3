//! The decision on a server's host key: known_hosts with OpenSSH's rules (revoked keys,
//! changed keys, `strict_host_key_checking`, accept-new's record), and host certificates
//! against the `@cert-authority` lines for the host.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use ssh_key::{Certificate, HashAlg, PublicKey};
use tracing::{info, warn};
use tunneld_config::StrictHostKeyChecking;
use tunneld_ssh::HostKey;

use crate::known_hosts::{self, Verdict};
use crate::sync::lock;

/// What a handshake checks the server's key against, and what it found.
pub(crate) struct HostCheck {
    pub files: Vec<PathBuf>,
    pub name: String,
    /// The host name a host certificate must list as a principal.
    pub principal: String,
    /// CA keys of the `@cert-authority` lines for this host.
    pub authorities: Vec<PublicKey>,
    pub mode: StrictHostKeyChecking,
    /// The accepted key's type and SHA-256 fingerprint, for the "connected" log line.
    pub accepted: Arc<Mutex<Option<String>>>,
    /// The accepted key, when a known_hosts line for this host trusted it (or accept-new
    /// just wrote one): only then may `update_host_keys` rewrite the host's lines.
    pub trusted_by_line: Arc<Mutex<Option<PublicKey>>>,
}

impl HostCheck {
    /// The decision on the server's key (plain or certified), recording what was
    /// accepted for the "connected" log line.
    pub fn decide(&self, key: &HostKey) -> Result<(), String> {
        let public = match key {
            HostKey::Key(public) => {
                self.verify(public)?;
                public.clone()
            }
            HostKey::Certificate(cert) => {
                let public = PublicKey::from(cert.public_key().clone());
                match self.verify_certificate(cert) {
                    Some(Ok(ca)) => {
                        info!(host = %self.name, ca = %ca, "host certificate signed by a trusted authority");
                    }
                    Some(Err(reason)) => return Err(reason),
                    // Without a @cert-authority line OpenSSH checks the certified key itself.
                    None => self.verify(&public)?,
                }
                public
            }
        };
        *lock(&self.accepted) = Some(tunneld_ssh::hostkeys::describe(&public));
        Ok(())
    }

    /// A host certificate against the `@cert-authority` lines for this host: `None`
    /// when there are none, else the signing CA's fingerprint or why it is refused.
    fn verify_certificate(&self, cert: &Certificate) -> Option<Result<String, String>> {
        if self.authorities.is_empty() {
            return None;
        }
        let public = PublicKey::from(cert.public_key().clone());
        if let Verdict::Revoked { file, line } =
            known_hosts::check(&self.files, &self.name, &public)
        {
            return Some(Err(format!(
                "the server's certified key is marked @revoked ({}:{line})",
                file.display()
            )));
        }
        let fingerprints: Vec<_> = self
            .authorities
            .iter()
            .map(|ca| ca.fingerprint(HashAlg::Sha256))
            .collect();
        let verdict = if cert.cert_type() != ssh_key::certificate::CertType::Host {
            Err("the server presented a user certificate as its host key".to_string())
        } else if let Err(e) = cert.validate(fingerprints.iter()) {
            Err(format!(
                "host certificate not accepted: {e} (trusted authorities for {}: {})",
                self.name,
                fingerprints
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        } else if !cert
            .valid_principals()
            .iter()
            .any(|p| p.eq_ignore_ascii_case(&self.principal))
        {
            Err(format!(
                "host certificate is not valid for {} (principals: {})",
                self.principal,
                cert.valid_principals().join(", ")
            ))
        } else {
            let ca = PublicKey::from(cert.signature_key().clone());
            Ok(ca.fingerprint(HashAlg::Sha256).to_string())
        };
        Some(verdict)
    }

    fn verify(&self, key: &PublicKey) -> Result<(), String> {
        let fingerprint = key.fingerprint(HashAlg::Sha256);
        let verdict = known_hosts::check(&self.files, &self.name, key);
        match (verdict, self.mode) {
            (Verdict::Revoked { file, line }, _) => Err(format!(
                "the server's {} key {fingerprint} is marked @revoked ({}:{line})",
                key.algorithm(),
                file.display()
            )),
            (Verdict::Trusted, _) => {
                *lock(&self.trusted_by_line) = Some(key.clone());
                Ok(())
            }
            (Verdict::Changed { file, line }, StrictHostKeyChecking::No) => {
                warn!(host = %self.name, %fingerprint, known = %format!("{}:{line}", file.display()),
                      "host key does not match known_hosts; accepted because strict_host_key_checking = \"no\"");
                Ok(())
            }
            (Verdict::Changed { file, line }, _) => Err(format!(
                "REMOTE HOST IDENTIFICATION HAS CHANGED: the server offered {} key {fingerprint}, \
                 which does not match {}:{line}; someone may be intercepting the connection, or the \
                 host key was replaced (check it, then fix that line)",
                key.algorithm(),
                file.display()
            )),
            (Verdict::Unknown, StrictHostKeyChecking::Yes) => Err(format!(
                "no {} key for {} in {}: the server offered {fingerprint}; add it (e.g. \
                 ssh-keyscan), or set strict_host_key_checking = \"accept-new\"",
                key.algorithm(),
                self.name,
                self.files
                    .iter()
                    .map(|f| f.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
            (Verdict::Unknown, StrictHostKeyChecking::AcceptNew) => {
                let Some(file) = self.files.first() else {
                    return Err("accept-new needs a known_hosts file to record the key in".into());
                };
                let recorded =
                    known_hosts::record(&self.files, file, &self.name, key).map_err(|e| {
                        format!("cannot record the new host key in {}: {e}", file.display())
                    })?;
                match recorded {
                    Verdict::Unknown => {
                        info!(host = %self.name, %fingerprint, file = %file.display(), "new host key recorded (accept-new)");
                        *lock(&self.trusted_by_line) = Some(key.clone());
                        Ok(())
                    }
                    Verdict::Trusted => {
                        *lock(&self.trusted_by_line) = Some(key.clone());
                        Ok(())
                    }
                    // Another tunnel recorded a different key for this host meanwhile.
                    Verdict::Changed { file, line } | Verdict::Revoked { file, line } => {
                        Err(format!(
                            "the server's {} key {fingerprint} does not match the key just recorded for it by another tunnel ({}:{line})",
                            key.algorithm(),
                            file.display()
                        ))
                    }
                }
            }
            (Verdict::Unknown, StrictHostKeyChecking::No) => {
                warn!(host = %self.name, %fingerprint,
                      "unknown host key accepted because strict_host_key_checking = \"no\"");
                Ok(())
            }
        }
    }
}
