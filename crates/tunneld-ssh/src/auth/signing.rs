//! Signing the publickey request: which algorithm a key signs with (RFC 8332's
//! rsa-sha2-512 and rsa-sha2-256 as `server-sig-algs` allows, certificates under their
//! `-cert-v01@openssh.com` names), with a file key here or through ssh-agent.

use signature::Signer;
use ssh_key::HashAlg;
use ssh_key::encoding::Encode;

use super::agent;
use super::credential::Credential;
use crate::hostkey::{self, KeyKind};

/// The publickey algorithm name for a key, and the agent flags that make the agent sign with
/// it; `None` for an RSA key when the server lists no rsa-sha2 algorithm.
pub(super) fn signing_algorithm(
    kind: KeyKind,
    certificate: bool,
    server_sig_algs: Option<&[String]>,
) -> Option<(String, u32)> {
    let (plain, flags) = match kind {
        KeyKind::Rsa => {
            let has = |name: &str| server_sig_algs.is_none_or(|l| l.iter().any(|a| a == name));
            if has("rsa-sha2-512") {
                ("rsa-sha2-512", agent::SSH_AGENT_RSA_SHA2_512)
            } else if has("rsa-sha2-256") {
                ("rsa-sha2-256", agent::SSH_AGENT_RSA_SHA2_256)
            } else {
                return None;
            }
        }
        KeyKind::Ed25519 => ("ssh-ed25519", 0),
        KeyKind::Ecdsa(curve) => (
            match curve {
                ssh_key::EcdsaCurve::NistP256 => "ecdsa-sha2-nistp256",
                ssh_key::EcdsaCurve::NistP384 => "ecdsa-sha2-nistp384",
                ssh_key::EcdsaCurve::NistP521 => "ecdsa-sha2-nistp521",
            },
            0,
        ),
    };
    let name = if certificate {
        format!("{plain}-cert-v01@openssh.com")
    } else {
        plain.to_owned()
    };
    Some((name, flags))
}

/// The signature algorithm name inside a signature for publickey algorithm `algorithm`.
pub(super) fn signature_name(algorithm: &str) -> &str {
    algorithm
        .strip_suffix("-cert-v01@openssh.com")
        .unwrap_or(algorithm)
}

pub(super) enum SignFailure {
    /// The agent failed or refused: try the next key.
    Agent(String),
    /// Our own key failed to sign: a bug or a broken key, stop.
    Local(String),
}

/// The signature blob (string algorithm || string signature) over `data`.
pub(super) async fn sign(
    cred: &Credential,
    algorithm: &str,
    flags: u32,
    data: &[u8],
) -> Result<Vec<u8>, SignFailure> {
    let sig_name = signature_name(algorithm);
    match cred {
        Credential::Key { key, .. } => {
            let signature = match key.key_data().rsa() {
                Some(rsa) => {
                    let hash = if sig_name == "rsa-sha2-256" {
                        HashAlg::Sha256
                    } else {
                        HashAlg::Sha512
                    };
                    (rsa, Some(hash)).try_sign(data)
                }
                None => key.try_sign(data),
            }
            .map_err(|e| SignFailure::Local(e.to_string()))?;
            if signature.algorithm().as_str() != sig_name {
                return Err(SignFailure::Local(format!(
                    "made a {} signature, not {sig_name}",
                    signature.algorithm()
                )));
            }
            signature
                .encode_vec()
                .map_err(|e| SignFailure::Local(e.to_string()))
        }
        Credential::Agent { socket, blob, .. } => {
            let signature = agent::sign(socket, blob, data, flags)
                .await
                .map_err(|e| SignFailure::Agent(e.to_string()))?;
            // An old agent may ignore the flags and sign with SHA-1: the server would refuse
            // it, so say so here.
            hostkey::parse_signature(&signature, sig_name)
                .map_err(|e| SignFailure::Agent(format!("ssh-agent's signature: {e}")))?;
            Ok(signature)
        }
    }
}
