//! The ssh-agent client against a fake agent that answers with the input.

use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{Input, fixtures, runtime};
use crate::auth::{self, Credential};
use crate::wire::{Reader, Writer};

/// Answers one connection on `listener` with `reply` once it has read the request, then
/// hangs up.
async fn fake_agent(listener: tokio::net::UnixListener, reply: Vec<u8>) {
    let Ok((mut stream, _)) = listener.accept().await else {
        return;
    };
    let mut len = [0u8; 4];
    if stream.read_exact(&mut len).await.is_err() {
        return;
    }
    let mut request = vec![0u8; (u32::from_be_bytes(len) as usize).min(1 << 20)];
    if stream.read_exact(&mut request).await.is_err() {
        return;
    }
    let _ = stream.write_all(&reply).await;
}

/// A socket path no other process or call uses.
fn agent_socket_path() -> std::path::PathBuf {
    static COUNT: AtomicUsize = AtomicUsize::new(0);
    std::env::temp_dir().join(format!(
        "tunneld-fuzz-agent-{}-{}.sock",
        std::process::id(),
        COUNT.fetch_add(1, Ordering::Relaxed)
    ))
}

/// The agent client (`agent::identities` or `agent::sign`) against a fake agent on a real
/// Unix socket that answers with the input.
///
/// Input: mode byte (bit 0: a sign request, else a list; bit 1: the harness adds the
/// reply's u32 length frame, else the rest is sent as it is), rest the reply.
///
/// Asserts: no panic, and it finishes without the timeout (the fake agent hangs up after
/// its reply); an identities answer holds at most `MAX_AGENT_IDENTITIES` keys, each with
/// the blob and comment the reply holds, at this socket; a signature is exactly the
/// string the reply holds.
pub fn agent_reply(data: &[u8]) {
    let _ = run_agent_reply(data);
}

/// [`agent_reply`], returning the keys listed or the signature's length.
pub(super) fn run_agent_reply(data: &[u8]) -> Result<usize, auth::AgentError> {
    let mut input = Input::new(data);
    let mode = input.u8();
    let body = input.rest();
    let reply = if mode & 2 != 0 {
        let mut w = Writer::new();
        w.string(body);
        w.into_vec()
    } else {
        body.to_vec()
    };
    let socket = agent_socket_path();
    let _ = std::fs::remove_file(&socket);
    let outcome = runtime().block_on(async {
        let listener = tokio::net::UnixListener::bind(&socket)
            .unwrap_or_else(|e| panic!("cannot bind {}: {e}", socket.display()));
        let server = tokio::spawn(fake_agent(listener, reply.clone()));
        // The framed reply as the client reads it (its length says how much).
        let mut r = Reader::new(&reply);
        let framed = r.string().ok();
        let outcome = if mode & 1 == 0 {
            let result = auth::agent::identities(&socket).await;
            match result {
                Ok(keys) => {
                    assert!(keys.len() <= auth::agent::MAX_AGENT_IDENTITIES);
                    let framed = framed.expect("a list from a reply without its frame");
                    let mut r = Reader::new(framed);
                    assert_eq!(r.u8(), Ok(12));
                    assert_eq!(r.u32().map(|n| n as usize), Ok(keys.len()));
                    for key in &keys {
                        let Credential::Agent {
                            socket: at,
                            blob,
                            comment,
                        } = key
                        else {
                            panic!("the agent listed a file key");
                        };
                        assert_eq!(at, &socket);
                        assert_eq!(Ok(blob.as_slice()), r.string());
                        let raw = r.string().expect("a comment for each key");
                        assert_eq!(*comment, String::from_utf8_lossy(raw));
                        let _ = key.describe();
                    }
                    assert!(r.is_empty(), "bytes after the listed keys");
                    Ok(keys.len())
                }
                Err(e) => {
                    let _ = e.to_string();
                    Err(e)
                }
            }
        } else {
            let result = auth::agent::sign(&socket, &fixtures().blob, b"data to sign", 0).await;
            match result {
                Ok(signature) => {
                    let framed = framed.expect("a signature from a reply without its frame");
                    let mut w = Writer::message(14);
                    w.string(&signature);
                    assert_eq!(framed, w.as_slice(), "the signature is not the reply's");
                    Ok(signature.len())
                }
                Err(e) => {
                    let _ = e.to_string();
                    Err(e)
                }
            }
        };
        let _ = server.await;
        outcome
    });
    let _ = std::fs::remove_file(&socket);
    outcome
}
