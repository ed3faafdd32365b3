//! Authentication against a scripted server: a responder that parses each request, answers
//! as an OpenSSH server would, and checks every signature it receives. The tests, by
//! subject: `keys` (key types, certificates, agent keys, key files) and `replies` (what the
//! server answers).

use std::collections::VecDeque;

use signature::Verifier;

use super::credential::parse_blob;
use super::signing::signature_name;
use super::testkeys::{Agent, KeyFiles, KeyType};
use super::*;

mod keys;
mod replies;

const SESSION_ID: &[u8] = b"the session identifier, 32 bytes";

type Responder = Box<dyn FnMut(&[u8]) -> Vec<Vec<u8>> + Send>;

/// A PacketLink whose peer is a function from each sent message to its replies.
struct Scripted {
    responder: Responder,
    queue: VecDeque<Vec<u8>>,
    sent: Vec<Vec<u8>>,
    received: usize,
    sig_algs: Option<Vec<String>>,
}

impl Scripted {
    fn new(responder: impl FnMut(&[u8]) -> Vec<Vec<u8>> + Send + 'static) -> Self {
        Scripted {
            responder: Box::new(responder),
            queue: VecDeque::new(),
            sent: Vec::new(),
            received: 0,
            sig_algs: None,
        }
    }
}

impl PacketLink for Scripted {
    async fn send(&mut self, payload: Vec<u8>) -> Result<(), LinkError> {
        let replies = (self.responder)(&payload);
        self.queue.extend(replies);
        self.sent.push(payload);
        Ok(())
    }
    async fn recv(&mut self) -> Result<Vec<u8>, LinkError> {
        self.received += 1;
        self.queue
            .pop_front()
            .ok_or_else(|| LinkError("the server closed the connection".to_owned()))
    }
    fn session_id(&self) -> &[u8] {
        SESSION_ID
    }
    fn server_sig_algs(&self) -> Option<Vec<String>> {
        self.sig_algs.clone()
    }
}

fn failure(methods: &str, partial: bool) -> Vec<u8> {
    let mut w = Writer::message(msg::USERAUTH_FAILURE);
    w.string(methods.as_bytes()).bool(partial);
    w.into_vec()
}

fn banner(text: &str) -> Vec<u8> {
    let mut w = Writer::message(msg::USERAUTH_BANNER);
    w.string(text.as_bytes()).string(b"");
    w.into_vec()
}

fn service_accept() -> Vec<u8> {
    let mut w = Writer::message(msg::SERVICE_ACCEPT);
    w.string(b"ssh-userauth");
    w.into_vec()
}

/// A publickey request as the server sees it.
#[derive(Debug)]
struct PkRequest {
    user: String,
    algorithm: String,
    blob: Vec<u8>,
    signature: Option<Vec<u8>>,
    /// The request without its signature field, for checking the signature.
    unsigned: Vec<u8>,
}

enum Request {
    Service(String),
    None,
    Publickey(PkRequest),
}

fn parse_request(msg: &[u8]) -> Request {
    let mut r = Reader::new(msg);
    match r.u8().unwrap() {
        msg::SERVICE_REQUEST => {
            let name = r.utf8().unwrap().to_owned();
            r.finish().unwrap();
            Request::Service(name)
        }
        msg::USERAUTH_REQUEST => {
            let user = r.utf8().unwrap().to_owned();
            assert_eq!(r.utf8().unwrap(), "ssh-connection");
            match r.utf8().unwrap() {
                "none" => {
                    r.finish().unwrap();
                    Request::None
                }
                "publickey" => {
                    let has_signature = r.bool().unwrap();
                    let algorithm = r.utf8().unwrap().to_owned();
                    let blob = r.string().unwrap().to_vec();
                    let unsigned_len = msg.len() - r.rest().len();
                    let signature = has_signature.then(|| r.string().unwrap().to_vec());
                    r.finish().unwrap();
                    Request::Publickey(PkRequest {
                        user,
                        algorithm,
                        blob,
                        signature,
                        unsigned: msg[..unsigned_len].to_vec(),
                    })
                }
                other => panic!("unexpected method {other}"),
            }
        }
        other => panic!("unexpected message {other}"),
    }
}

/// Checks a signed request as sshd does: the signature's algorithm fits the request's, and it
/// verifies over session id || request with the key in the blob.
fn check_signature(req: &PkRequest) -> bool {
    let Some(sig) = &req.signature else {
        return false;
    };
    let Some((key, cert)) = parse_blob(&req.blob) else {
        return false;
    };
    if cert != req.algorithm.ends_with("-cert-v01@openssh.com") {
        return false;
    }
    let Ok(sig) = hostkey::parse_signature(sig, signature_name(&req.algorithm)) else {
        return false;
    };
    let mut data = Writer::new();
    data.string(SESSION_ID).raw(&req.unsigned);
    key.verify(data.as_slice(), &sig).is_ok()
}

/// Records of what the server saw.
#[derive(Default, Debug)]
struct Seen {
    queries: Vec<(String, Vec<u8>)>,
    signed: Vec<(String, Vec<u8>, bool)>,
}

/// An OpenSSH-like server that takes the keys (or certificates) in `accepted` for user
/// "user" and offers `methods`.
fn server(
    accepted: Vec<Vec<u8>>,
    methods: &'static str,
    seen: std::sync::Arc<std::sync::Mutex<Seen>>,
) -> impl FnMut(&[u8]) -> Vec<Vec<u8>> + Send + 'static {
    move |msg| match parse_request(msg) {
        Request::Service(name) => {
            assert_eq!(name, "ssh-userauth");
            vec![service_accept()]
        }
        Request::None => vec![failure(methods, false)],
        Request::Publickey(req) => {
            assert_eq!(req.user, "user");
            let ok = accepted.contains(&req.blob);
            match &req.signature {
                None => {
                    seen.lock()
                        .unwrap()
                        .queries
                        .push((req.algorithm.clone(), req.blob.clone()));
                    if ok {
                        let mut w = Writer::message(msg::USERAUTH_PK_OK);
                        w.string(req.algorithm.as_bytes()).string(&req.blob);
                        vec![w.into_vec()]
                    } else {
                        vec![failure(methods, false)]
                    }
                }
                Some(_) => {
                    let valid = check_signature(&req);
                    seen.lock().unwrap().signed.push((
                        req.algorithm.clone(),
                        req.blob.clone(),
                        valid,
                    ));
                    if ok && valid {
                        vec![vec![msg::USERAUTH_SUCCESS]]
                    } else {
                        vec![failure(methods, false)]
                    }
                }
            }
        }
    }
}

fn seen() -> std::sync::Arc<std::sync::Mutex<Seen>> {
    std::sync::Arc::default()
}

fn file_credential(files: &KeyFiles, t: KeyType, label: &str) -> Credential {
    Credential::from_openssh(&files.private_text(t), label).unwrap()
}
