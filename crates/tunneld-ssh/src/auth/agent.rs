//! A small client of the ssh-agent protocol (draft-miller-ssh-agent §3, §4.4, §4.5): list
//! the agent's keys and ask it to sign. One connection per request, each bounded in time and
//! in the size of the agent's reply.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

use super::Credential;
use crate::error::WireError;
use crate::wire::{Reader, Writer};

/// SSH_AGENT_FAILURE.
const AGENT_FAILURE: u8 = 5;
/// SSH_AGENTC_REQUEST_IDENTITIES.
const REQUEST_IDENTITIES: u8 = 11;
/// SSH_AGENT_IDENTITIES_ANSWER.
const IDENTITIES_ANSWER: u8 = 12;
/// SSH_AGENTC_SIGN_REQUEST.
const SIGN_REQUEST: u8 = 13;
/// SSH_AGENT_SIGN_RESPONSE.
const SIGN_RESPONSE: u8 = 14;

/// Sign flag: an RSA signature with SHA-256 (`rsa-sha2-256`).
pub(crate) const SSH_AGENT_RSA_SHA2_256: u32 = 2;
/// Sign flag: an RSA signature with SHA-512 (`rsa-sha2-512`).
pub(crate) const SSH_AGENT_RSA_SHA2_512: u32 = 4;

/// The largest agent reply we read, in bytes.
pub const MAX_AGENT_REPLY_BYTES: usize = 256 * 1024;
/// The most identities we take from one agent.
pub const MAX_AGENT_IDENTITIES: usize = 1024;
/// How long listing the agent's keys may take, in seconds.
pub const IDENTITIES_TIMEOUT_SECS: u64 = 5;
/// How long one signature may take, in seconds (the agent may ask the user to confirm, or a
/// security key to be touched).
pub const SIGN_TIMEOUT_SECS: u64 = 30;

/// What went wrong talking to ssh-agent.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The agent's socket could not be reached.
    #[error("cannot connect to ssh-agent at {socket}: {source}")]
    Connect {
        /// The socket path.
        socket: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Reading or writing the socket failed.
    #[error("ssh-agent connection failed: {0}")]
    Io(#[from] std::io::Error),
    /// The agent did not answer in time.
    #[error("ssh-agent did not answer within {0} s")]
    Timeout(u64),
    /// The agent's reply is empty or longer than we read.
    #[error(
        "ssh-agent reply of {0} bytes is empty or longer than the {MAX_AGENT_REPLY_BYTES} byte limit"
    )]
    ReplySize(u32),
    /// The agent answered SSH_AGENT_FAILURE.
    #[error("ssh-agent refused the request")]
    Refused,
    /// The agent answered with a message we did not ask for.
    #[error("ssh-agent sent unexpected message {0}")]
    Unexpected(u8),
    /// The agent claims more identities than we take.
    #[error("ssh-agent lists {0} keys, more than the {MAX_AGENT_IDENTITIES} we take")]
    TooManyKeys(u32),
    /// The agent's reply does not parse.
    #[error("malformed ssh-agent reply: {0}")]
    Malformed(#[from] WireError),
}

/// The keys the agent at `socket` holds, as `Credential::Agent` (blob as listed, comment).
///
/// # Errors
/// The agent cannot be reached, refuses, times out or sends a malformed or oversized reply.
pub async fn identities(socket: &Path) -> Result<Vec<Credential>, AgentError> {
    let reply = request(
        socket,
        &[REQUEST_IDENTITIES],
        IDENTITIES_TIMEOUT_SECS,
        IDENTITIES_ANSWER,
    )
    .await?;
    let mut r = Reader::new(&reply);
    let count = r.u32()?;
    if usize::try_from(count).map_or(true, |n| n > MAX_AGENT_IDENTITIES) {
        return Err(AgentError::TooManyKeys(count));
    }
    let mut keys = Vec::new();
    for _ in 0..count {
        let blob = r.string()?.to_vec();
        let comment = String::from_utf8_lossy(r.string()?).into_owned();
        keys.push(Credential::Agent {
            socket: socket.to_path_buf(),
            blob,
            comment,
        });
    }
    r.finish()?;
    Ok(keys)
}

/// Asks the agent at `socket` to sign `data` with the key `blob`; `flags` are
/// `SSH_AGENT_RSA_SHA2_*` for RSA keys, else 0. Returns the signature blob (string
/// algorithm || string signature), unchecked.
///
/// # Errors
/// As for [`identities`]; [`AgentError::Refused`] when the agent does not hold the key or
/// the user declined.
pub(crate) async fn sign(
    socket: &Path,
    blob: &[u8],
    data: &[u8],
    flags: u32,
) -> Result<Vec<u8>, AgentError> {
    let mut w = Writer::message(SIGN_REQUEST);
    w.string(blob).string(data).u32(flags);
    let reply = request(socket, w.as_slice(), SIGN_TIMEOUT_SECS, SIGN_RESPONSE).await?;
    let mut r = Reader::new(&reply);
    let signature = r.string()?.to_vec();
    r.finish()?;
    Ok(signature)
}

/// Sends one framed request and reads one framed reply whose type must be `want`; returns
/// the reply after its type byte.
async fn request(
    socket: &Path,
    payload: &[u8],
    timeout_secs: u64,
    want: u8,
) -> Result<Vec<u8>, AgentError> {
    let exchange = async {
        let mut stream =
            UnixStream::connect(socket)
                .await
                .map_err(|source| AgentError::Connect {
                    socket: socket.to_path_buf(),
                    source,
                })?;
        let mut framed = Writer::new();
        framed.string(payload);
        stream.write_all(framed.as_slice()).await?;
        let mut len = [0u8; 4];
        stream.read_exact(&mut len).await?;
        let len = u32::from_be_bytes(len);
        let size = usize::try_from(len).unwrap_or(usize::MAX);
        if size == 0 || size > MAX_AGENT_REPLY_BYTES {
            return Err(AgentError::ReplySize(len));
        }
        let mut reply = vec![0u8; size];
        stream.read_exact(&mut reply).await?;
        Ok::<_, AgentError>(reply)
    };
    let mut reply = tokio::time::timeout(Duration::from_secs(timeout_secs), exchange)
        .await
        .map_err(|_| AgentError::Timeout(timeout_secs))??;
    match reply.first().copied() {
        Some(t) if t == want => {
            reply.remove(0);
            Ok(reply)
        }
        Some(AGENT_FAILURE) => Err(AgentError::Refused),
        Some(other) => Err(AgentError::Unexpected(other)),
        None => Err(AgentError::ReplySize(0)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::testkeys::{Agent, KeyFiles, KeyType, run};
    use crate::hostkey::{KeyKind, parse_signature};
    use signature::Verifier;
    use ssh_key::PublicKey;
    use std::process::Command;
    use tokio::net::UnixListener;

    #[tokio::test]
    async fn a_real_agent_lists_and_signs_with_every_key_type() {
        let files = KeyFiles::new(&[KeyType::Ed25519, KeyType::P256, KeyType::P521, KeyType::Rsa]);
        let agent = Agent::start(files.dir());
        assert!(identities(&agent.socket).await.unwrap().is_empty());
        for t in [KeyType::Ed25519, KeyType::P256, KeyType::P521, KeyType::Rsa] {
            agent.add(&files.path(t));
        }
        let listed = identities(&agent.socket).await.unwrap();
        // ssh-add also loads the certificate next to each key: 4 keys and 4 certificates.
        assert_eq!(listed.len(), 8);
        let mut signed = 0;
        for t in [KeyType::Ed25519, KeyType::P256, KeyType::P521, KeyType::Rsa] {
            let blob = files.public_blob(t);
            let cred = listed
                .iter()
                .find(|c| matches!(c, Credential::Agent { blob: b, .. } if *b == blob))
                .expect("the agent lists the key");
            let Credential::Agent { comment, .. } = cred else {
                unreachable!()
            };
            assert!(comment.ends_with("@test"), "{comment}");
            let cert_blob = files.user_certificate_blob(t);
            assert!(
                listed
                    .iter()
                    .any(|c| matches!(c, Credential::Agent { blob: b, .. } if *b == cert_blob))
            );
            let public = PublicKey::from_bytes(&blob).unwrap();
            let own = public.algorithm();
            let cases: Vec<(u32, &str)> = match KeyKind::of(public.key_data()) {
                Some(KeyKind::Rsa) => vec![
                    (SSH_AGENT_RSA_SHA2_256, "rsa-sha2-256"),
                    (SSH_AGENT_RSA_SHA2_512, "rsa-sha2-512"),
                ],
                _ => vec![(0, own.as_str())],
            };
            for &(flags, expected) in &cases {
                let data = format!("data to sign for {t:?} {flags}");
                let sig = sign(&agent.socket, &blob, data.as_bytes(), flags)
                    .await
                    .unwrap();
                let sig = parse_signature(&sig, expected).unwrap();
                public.key_data().verify(data.as_bytes(), &sig).unwrap();
                assert!(public.key_data().verify(b"other data", &sig).is_err());
                signed += 1;
            }
            // Signing with the certificate blob signs with the certified key.
            let data = b"signed through the certificate";
            let flags = cases[cases.len() - 1].0;
            let sig = sign(&agent.socket, &cert_blob, data, flags).await.unwrap();
            let sig = parse_signature(&sig, cases[cases.len() - 1].1).unwrap();
            public.key_data().verify(data, &sig).unwrap();
        }
        assert_eq!(signed, 5);
        // A key the agent does not hold.
        let other = files.keygen("other", &["-t", "ed25519"], "");
        let other_blob = crate::auth::testkeys::blob_of_line(&run(Command::new("ssh-keygen")
            .arg("-y")
            .arg("-f")
            .arg(&other)));
        assert!(matches!(
            sign(&agent.socket, &other_blob, b"x", 0).await,
            Err(AgentError::Refused)
        ));
    }

    #[tokio::test]
    async fn a_missing_socket_names_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("nothing.sock");
        let err = identities(&socket).await.unwrap_err();
        assert!(
            err.to_string().starts_with(&format!(
                "cannot connect to ssh-agent at {}: ",
                socket.display()
            )),
            "{err}"
        );
    }

    /// A fake agent that answers one connection with `reply` (raw bytes, framing included).
    async fn fake_agent(
        reply: Vec<u8>,
    ) -> (tempfile::TempDir, PathBuf, tokio::task::JoinHandle<()>) {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("fake.sock");
        let listener = UnixListener::bind(&socket).unwrap();
        let task = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut len = [0u8; 4];
            stream.read_exact(&mut len).await.unwrap();
            let mut req = vec![0u8; u32::from_be_bytes(len) as usize];
            stream.read_exact(&mut req).await.unwrap();
            stream.write_all(&reply).await.unwrap();
            // Hold the connection open until the client hangs up.
            let mut rest = Vec::new();
            let _ = stream.read_to_end(&mut rest).await;
        });
        (dir, socket, task)
    }

    #[tokio::test]
    async fn hostile_agent_replies_are_bounded() {
        let too_long = (MAX_AGENT_REPLY_BYTES as u32 + 1).to_be_bytes().to_vec();
        let (_d, socket, _t) = fake_agent(too_long).await;
        assert_eq!(
            identities(&socket).await.unwrap_err().to_string(),
            "ssh-agent reply of 262145 bytes is empty or longer than the 262144 byte limit"
        );

        let mut many = Writer::new();
        many.u32(5).u8(IDENTITIES_ANSWER).u32(u32::MAX);
        let (_d, socket, _t) = fake_agent(many.into_vec()).await;
        assert_eq!(
            identities(&socket).await.unwrap_err().to_string(),
            "ssh-agent lists 4294967295 keys, more than the 1024 we take"
        );

        // Claims 2 keys, holds 1.
        let mut body = Writer::message(IDENTITIES_ANSWER);
        body.u32(2).string(b"blob").string(b"comment");
        let mut framed = Writer::new();
        framed.string(body.as_slice());
        let (_d, socket, _t) = fake_agent(framed.into_vec()).await;
        assert!(matches!(
            identities(&socket).await,
            Err(AgentError::Malformed(WireError::Short { .. }))
        ));

        let (_d, socket, _t) = fake_agent(vec![0, 0, 0, 1, AGENT_FAILURE]).await;
        assert!(matches!(
            sign(&socket, b"k", b"d", 0).await,
            Err(AgentError::Refused)
        ));

        let (_d, socket, _t) = fake_agent(vec![0, 0, 0, 1, 99]).await;
        assert_eq!(
            sign(&socket, b"k", b"d", 0).await.unwrap_err().to_string(),
            "ssh-agent sent unexpected message 99"
        );

        // The agent hangs up halfway through its reply.
        let (_d, socket, t) = {
            let dir = tempfile::tempdir().unwrap();
            let socket = dir.path().join("cut.sock");
            let listener = UnixListener::bind(&socket).unwrap();
            let t = tokio::spawn(async move {
                let (mut stream, _) = listener.accept().await.unwrap();
                stream.write_all(&[0, 0, 0, 9, 12, 0]).await.unwrap();
            });
            (dir, socket, t)
        };
        assert!(matches!(identities(&socket).await, Err(AgentError::Io(_))));
        t.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_agent_times_out() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("silent.sock");
        let listener = UnixListener::bind(&socket).unwrap();
        let _t = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            // Never answer; keep the stream alive.
            std::future::pending::<()>().await;
            drop(stream);
        });
        assert_eq!(
            sign(&socket, b"k", b"d", 0).await.unwrap_err().to_string(),
            "ssh-agent did not answer within 30 s"
        );
    }
}
