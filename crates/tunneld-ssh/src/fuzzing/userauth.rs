//! User authentication against a server whose messages are cut from the input.

use std::sync::Arc;

use signature::Verifier;
use ssh_key::{Certificate, PublicKey};

use super::{Input, fixtures, runtime};
use crate::auth::{self, Credential, MAX_AUTH_MESSAGES, MAX_BANNER_BYTES, PacketLink};
use crate::error::LinkError;
use crate::hostkey;
use crate::wire::{Reader, Writer};

/// The session identifier the scripted link reports.
const SESSION_ID: &[u8] = b"a session identifier of 32 bytes";
/// The user name authentication runs for.
const USER: &str = "fuzz";

/// One step of a scripted authentication, in order.
#[derive(Debug)]
enum Event {
    Sent(Vec<u8>),
    Received(Vec<u8>),
}

/// A `PacketLink` whose server replies are cut from the fuzz input.
struct ScriptedLink<'a> {
    input: Input<'a>,
    events: Vec<Event>,
    recv_calls: usize,
    sig_algs: Option<Vec<String>>,
}

impl PacketLink for ScriptedLink<'_> {
    async fn send(&mut self, payload: Vec<u8>) -> Result<(), LinkError> {
        self.events.push(Event::Sent(payload));
        Ok(())
    }

    async fn recv(&mut self) -> Result<Vec<u8>, LinkError> {
        self.recv_calls += 1;
        match self.input.chunk() {
            Some(msg) => {
                self.events.push(Event::Received(msg.to_vec()));
                Ok(msg.to_vec())
            }
            None => Err(LinkError("the script ended".to_owned())),
        }
    }

    fn session_id(&self) -> &[u8] {
        SESSION_ID
    }

    fn server_sig_algs(&self) -> Option<Vec<String>> {
        self.sig_algs.clone()
    }
}

/// The fields of a publickey USERAUTH_REQUEST we sent: (signed, algorithm, blob, the
/// request up to the signature, signature).
type PublickeyRequest<'a> = (bool, &'a [u8], &'a [u8], &'a [u8], Option<&'a [u8]>);

fn parse_publickey_request(msg: &[u8]) -> Option<PublickeyRequest<'_>> {
    let mut r = Reader::new(msg);
    (r.u8().ok()? == 50).then_some(())?;
    r.string().ok()?;
    r.string().ok()?;
    (r.string().ok()? == b"publickey").then_some(())?;
    let signed = r.bool().ok()?;
    let algorithm = r.string().ok()?;
    let blob = r.string().ok()?;
    let unsigned = &msg[..msg.len() - r.rest().len()];
    let signature = if signed {
        let s = r.string().ok()?;
        Some(s)
    } else {
        None
    };
    r.finish().ok()?;
    Some((signed, algorithm, blob, unsigned, signature))
}

/// `auth::authenticate` against a server whose messages are cut from the input.
///
/// Input: mode byte (bit 0: the server sent `server-sig-algs`; bits 1-3 pick the
/// credentials: the test key, the test key with its user certificate, an ssh-agent key
/// whose socket does not exist; none set means all three), then u16-prefixed server
/// messages; the link fails once they are used up.
///
/// Asserts: no panic, and it finishes; at most [`MAX_AUTH_MESSAGES`] messages are read
/// (exactly that many when it gives up for that reason); it sends SERVICE_REQUEST for
/// ssh-userauth, then the `none` request, then only USERAUTH_REQUESTs for our user and
/// ssh-connection, at most two per credential; every signed request directly follows a
/// PK_OK naming its algorithm and blob, and its signature verifies over the session
/// identifier and the request; success follows a USERAUTH_SUCCESS and keeps at most
/// [`MAX_BANNER_BYTES`] of banner.
pub fn userauth(data: &[u8]) {
    let _ = run_userauth(data);
}

/// [`userauth`], returning the outcome.
pub(super) fn run_userauth(data: &[u8]) -> Result<auth::Authenticated, auth::AuthError> {
    let f = fixtures();
    let mut input = Input::new(data);
    let mode = input.u8();
    let sig_algs =
        (mode & 1 != 0).then(|| vec!["ssh-ed25519".to_owned(), "rsa-sha2-256".to_owned()]);
    let pick = if mode & 0x0e == 0 { 0x0e } else { mode };
    let mut credentials = Vec::new();
    if pick & 2 != 0 {
        credentials.push(Credential::Key {
            key: Arc::clone(&f.key),
            certificate: None,
            label: "test key".to_owned(),
        });
    }
    if pick & 4 != 0 {
        credentials.push(Credential::Key {
            key: Arc::clone(&f.key),
            certificate: Some(f.user_cert.clone()),
            label: "test key with certificate".to_owned(),
        });
    }
    if pick & 8 != 0 {
        credentials.push(Credential::Agent {
            socket: "/nonexistent/tunneld-fuzz/agent.sock".into(),
            blob: f.blob.clone(),
            comment: "agent key".to_owned(),
        });
    }
    let mut link = ScriptedLink {
        input,
        events: Vec::new(),
        recv_calls: 0,
        sig_algs,
    };
    let result = runtime().block_on(auth::authenticate(&mut link, USER, &credentials));

    assert!(
        link.recv_calls <= MAX_AUTH_MESSAGES,
        "{} reads",
        link.recv_calls
    );
    if matches!(result, Err(auth::AuthError::TooManyMessages)) {
        assert_eq!(link.recv_calls, MAX_AUTH_MESSAGES);
    }
    let sent: Vec<&[u8]> = link
        .events
        .iter()
        .filter_map(|e| match e {
            Event::Sent(m) => Some(m.as_slice()),
            Event::Received(_) => None,
        })
        .collect();
    assert!(
        sent.len() <= 2 + 2 * credentials.len(),
        "{} messages sent",
        sent.len()
    );
    let mut service = Writer::message(5);
    service.string(b"ssh-userauth");
    assert_eq!(sent.first().copied(), Some(service.as_slice()));
    if let Some(none) = sent.get(1) {
        let mut w = Writer::message(50);
        w.string(USER.as_bytes())
            .string(b"ssh-connection")
            .string(b"none");
        assert_eq!(*none, w.as_slice());
    }
    let mut prefix = Writer::message(50);
    prefix.string(USER.as_bytes()).string(b"ssh-connection");
    for msg in sent.iter().skip(1) {
        assert!(msg.starts_with(prefix.as_slice()), "sent {msg:02x?}");
    }

    let mut last_received: Option<&[u8]> = None;
    for event in &link.events {
        match event {
            Event::Received(m) => last_received = Some(m),
            Event::Sent(m) => {
                let Some((true, algorithm, blob, unsigned, Some(sig))) = parse_publickey_request(m)
                else {
                    continue;
                };
                let mut pk_ok = Writer::message(60);
                pk_ok.string(algorithm).string(blob);
                assert_eq!(
                    last_received,
                    Some(pk_ok.as_slice()),
                    "a signed request without a matching PK_OK"
                );
                let algorithm = std::str::from_utf8(algorithm).expect("our algorithm names");
                let key = if algorithm.ends_with("-cert-v01@openssh.com") {
                    Certificate::from_bytes(blob)
                        .expect("we offer blobs that parse")
                        .public_key()
                        .clone()
                } else {
                    PublicKey::from_bytes(blob)
                        .expect("we offer blobs that parse")
                        .key_data()
                        .clone()
                };
                let sig_name = algorithm
                    .strip_suffix("-cert-v01@openssh.com")
                    .unwrap_or(algorithm);
                let sig = hostkey::parse_signature(sig, sig_name).expect("our signatures parse");
                let mut signed = Writer::new();
                signed.string(SESSION_ID).raw(unsigned);
                key.verify(signed.as_slice(), &sig)
                    .expect("our signature verifies over the session id and request");
            }
        }
    }
    match &result {
        Ok(done) => {
            assert_eq!(
                last_received,
                Some(&[52u8][..]),
                "success without USERAUTH_SUCCESS"
            );
            assert!(done.banner.len() <= MAX_BANNER_BYTES);
            let names: Vec<String> = credentials.iter().map(Credential::describe).collect();
            assert!(
                done.credential == "none" || names.contains(&done.credential),
                "authenticated as {:?}",
                done.credential
            );
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
    result
}
