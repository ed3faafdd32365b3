//! Authentication against a scripted server: a responder that parses each request, answers
//! as an OpenSSH server would, and checks every signature it receives.

use std::collections::VecDeque;

use signature::Verifier;

use super::credential::parse_blob;
use super::signing::signature_name;
use super::testkeys::{Agent, KeyFiles, KeyType};
use super::*;

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

#[tokio::test]
async fn every_key_type_and_its_certificate_signs_what_the_server_verifies() {
    let files = KeyFiles::new(KeyType::ALL);
    for &t in KeyType::ALL {
        for with_cert in [false, true] {
            let mut cred = file_credential(&files, t, "key");
            let blob = if with_cert {
                cred = cred
                    .with_certificate(&files.user_certificate_text(t))
                    .unwrap();
                files.user_certificate_blob(t)
            } else {
                // What ssh-keygen -y derives from the private key file.
                files.public_blob(t)
            };
            let s = seen();
            let mut link = Scripted::new(server(vec![blob.clone()], "publickey", s.clone()));
            let done = authenticate(&mut link, "user", &[cred]).await.unwrap();
            let label = match t {
                KeyType::Ed25519 => "ED25519",
                KeyType::Rsa => "RSA",
                _ => "ECDSA",
            };
            let cert = if with_cert { "-CERT" } else { "" };
            assert_eq!(
                done.credential,
                format!("{label}{cert} {} (key)", files.keygen_fingerprint(t))
            );
            let seen = s.lock().unwrap();
            let plain = match t {
                KeyType::Ed25519 => "ssh-ed25519",
                KeyType::P256 => "ecdsa-sha2-nistp256",
                KeyType::P384 => "ecdsa-sha2-nistp384",
                KeyType::P521 => "ecdsa-sha2-nistp521",
                KeyType::Rsa => "rsa-sha2-512",
            };
            let algorithm = if with_cert {
                format!("{plain}-cert-v01@openssh.com")
            } else {
                plain.to_owned()
            };
            assert_eq!(seen.queries, vec![(algorithm.clone(), blob.clone())]);
            assert_eq!(seen.signed, vec![(algorithm, blob, true)]);
        }
    }
}

#[tokio::test]
async fn success_on_the_second_key_after_pk_ok() {
    let files = KeyFiles::new(&[KeyType::Ed25519, KeyType::Rsa]);
    let s = seen();
    let mut link = Scripted::new(server(
        vec![files.public_blob(KeyType::Rsa)],
        "publickey,password",
        s.clone(),
    ));
    link.sig_algs = Some(vec!["ssh-ed25519".into(), "rsa-sha2-256".into()]);
    let creds = [
        file_credential(&files, KeyType::Ed25519, "id_ed25519"),
        file_credential(&files, KeyType::Rsa, "id_rsa"),
    ];
    let done = authenticate(&mut link, "user", &creds).await.unwrap();
    assert_eq!(
        done,
        Authenticated {
            credential: format!("RSA {} (id_rsa)", files.keygen_fingerprint(KeyType::Rsa)),
            banner: String::new(),
        }
    );
    // service, none, query ed25519, query rsa, signed rsa.
    assert_eq!(link.sent.len(), 5);
    let seen = s.lock().unwrap();
    assert_eq!(
        seen.queries
            .iter()
            .map(|q| q.0.as_str())
            .collect::<Vec<_>>(),
        ["ssh-ed25519", "rsa-sha2-256"]
    );
    assert_eq!(seen.signed.len(), 1);
    assert_eq!(seen.signed[0].0, "rsa-sha2-256");
    assert!(seen.signed[0].2);
}

#[tokio::test]
async fn all_refused_names_every_key_and_the_methods() {
    let files = KeyFiles::new(&[KeyType::Ed25519, KeyType::P384]);
    let mut link = Scripted::new(server(vec![], "publickey,password", seen()));
    let creds = [
        file_credential(&files, KeyType::Ed25519, "k1"),
        file_credential(&files, KeyType::P384, "k2"),
    ];
    let err = authenticate(&mut link, "user", &creds).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "the server refused every key (tried: ED25519 {} (k1), ECDSA {} (k2)); it accepts: publickey,password",
            files.keygen_fingerprint(KeyType::Ed25519),
            files.keygen_fingerprint(KeyType::P384)
        )
    );
}

#[tokio::test]
async fn rsa_is_skipped_when_the_server_takes_only_sha1() {
    let files = KeyFiles::new(&[KeyType::Rsa]);
    let s = seen();
    let mut link = Scripted::new(server(
        vec![files.public_blob(KeyType::Rsa)],
        "publickey",
        s.clone(),
    ));
    link.sig_algs = Some(vec!["ssh-rsa".into(), "ssh-ed25519".into()]);
    let creds = [file_credential(&files, KeyType::Rsa, "id_rsa")];
    let err = authenticate(&mut link, "user", &creds).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "the server refused every key (tried: RSA {} (id_rsa): the server takes no rsa-sha2 signatures); it accepts: publickey",
            files.keygen_fingerprint(KeyType::Rsa)
        )
    );
    assert!(s.lock().unwrap().queries.is_empty());
}

#[tokio::test]
async fn partial_success_is_said() {
    let files = KeyFiles::new(&[KeyType::Ed25519]);
    let mut link = Scripted::new(|msg: &[u8]| match parse_request(msg) {
        Request::Service(_) => vec![service_accept()],
        Request::None => vec![failure("publickey", false)],
        Request::Publickey(req) if req.signature.is_none() => {
            let mut w = Writer::message(msg::USERAUTH_PK_OK);
            w.string(req.algorithm.as_bytes()).string(&req.blob);
            vec![w.into_vec()]
        }
        Request::Publickey(req) => {
            assert!(check_signature(&req));
            vec![failure("password,keyboard-interactive", true)]
        }
    });
    let creds = [file_credential(&files, KeyType::Ed25519, "id_ed25519")];
    let err = authenticate(&mut link, "user", &creds).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "the server accepted ED25519 {} (id_ed25519) but requires more authentication (partial success); it accepts: password,keyboard-interactive",
            files.keygen_fingerprint(KeyType::Ed25519)
        )
    );
}

#[tokio::test]
async fn two_keys_when_the_server_requires_publickey_twice() {
    let files = KeyFiles::new(&[KeyType::Ed25519, KeyType::P256]);
    let first = files.public_blob(KeyType::Ed25519);
    let mut accepted_once = false;
    let mut link = Scripted::new(move |msg: &[u8]| match parse_request(msg) {
        Request::Service(_) => vec![service_accept()],
        Request::None => vec![failure("publickey", false)],
        Request::Publickey(req) if req.signature.is_none() => {
            let mut w = Writer::message(msg::USERAUTH_PK_OK);
            w.string(req.algorithm.as_bytes()).string(&req.blob);
            vec![w.into_vec()]
        }
        Request::Publickey(req) => {
            assert!(check_signature(&req));
            if req.blob == first && !accepted_once {
                accepted_once = true;
                vec![failure("publickey", true)]
            } else {
                vec![vec![msg::USERAUTH_SUCCESS]]
            }
        }
    });
    let creds = [
        file_credential(&files, KeyType::Ed25519, "a"),
        file_credential(&files, KeyType::P256, "b"),
    ];
    let done = authenticate(&mut link, "user", &creds).await.unwrap();
    assert_eq!(
        done.credential,
        format!("ECDSA {} (b)", files.keygen_fingerprint(KeyType::P256))
    );
}

#[tokio::test]
async fn no_publickey_method_is_said() {
    let files = KeyFiles::new(&[KeyType::Ed25519]);
    let mut link = Scripted::new(server(vec![], "password,keyboard-interactive", seen()));
    let creds = [file_credential(&files, KeyType::Ed25519, "k")];
    let err = authenticate(&mut link, "user", &creds).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "the server does not offer publickey authentication; it accepts: password,keyboard-interactive"
    );
    // service and none only.
    assert_eq!(link.sent.len(), 2);

    let mut link = Scripted::new(server(vec![], "publickey", seen()));
    assert_eq!(
        authenticate(&mut link, "user", &[])
            .await
            .unwrap_err()
            .to_string(),
        "no keys to try; the server accepts: publickey"
    );
}

#[tokio::test]
async fn banners_are_skipped_and_kept_bounded() {
    let files = KeyFiles::new(&[KeyType::Ed25519]);
    let blob = files.public_blob(KeyType::Ed25519);
    let mut inner = server(vec![blob], "publickey", seen());
    let mut link = Scripted::new(move |msg: &[u8]| {
        let mut replies = inner(msg);
        if msg.first() == Some(&msg::USERAUTH_REQUEST) {
            replies.insert(0, banner("Welcome\x1b[31m\r\n"));
            replies.insert(1, banner(&"x".repeat(MAX_BANNER_BYTES)));
        }
        replies
    });
    let creds = [file_credential(&files, KeyType::Ed25519, "k")];
    let done = authenticate(&mut link, "user", &creds).await.unwrap();
    let expected_start = "Welcome?[31m?\n";
    assert!(done.banner.starts_with(expected_start), "{:?}", done.banner);
    assert_eq!(done.banner.len(), MAX_BANNER_BYTES);
    assert_eq!(
        done.banner.len() - expected_start.len(),
        done.banner.matches('x').count()
    );
}

#[tokio::test]
async fn endless_banners_are_stopped_by_the_bound() {
    let mut link = Scripted::new(|msg: &[u8]| match parse_request(msg) {
        Request::Service(_) => vec![service_accept()],
        _ => (0..MAX_AUTH_MESSAGES * 2)
            .map(|_| banner("again"))
            .collect(),
    });
    let files = KeyFiles::new(&[KeyType::Ed25519]);
    let creds = [file_credential(&files, KeyType::Ed25519, "k")];
    let err = authenticate(&mut link, "user", &creds).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "the server sent more than 256 messages during authentication"
    );
    assert_eq!(link.received, MAX_AUTH_MESSAGES);
}

#[tokio::test]
async fn garbage_is_an_error_not_a_panic() {
    let valid_failure = failure("publickey", false);
    let mut replies: Vec<Vec<u8>> = (0..valid_failure.len())
        .map(|cut| valid_failure[..cut].to_vec())
        .collect();
    replies.push([valid_failure.clone(), vec![0]].concat());
    replies.push(vec![99, 1, 2, 3]);
    replies.push(vec![msg::USERAUTH_FAILURE, 0xff, 0xff, 0xff, 0xff, b'a']);
    replies.push(banner("x")[..3].to_vec());
    for reply in replies {
        let r = reply.clone();
        let mut link = Scripted::new(move |msg: &[u8]| match parse_request(msg) {
            Request::Service(_) => vec![service_accept()],
            _ => vec![r.clone()],
        });
        let err = authenticate(&mut link, "user", &[]).await.unwrap_err();
        assert!(
            matches!(err, AuthError::Malformed(_) | AuthError::Unexpected { .. }),
            "{reply:?}: {err}"
        );
    }
    let mut link =
        Scripted::new(|_: &[u8]| vec![vec![msg::SERVICE_ACCEPT, 0, 0, 0, 3, b'f', b'o', b'o']]);
    assert_eq!(
        authenticate(&mut link, "user", &[])
            .await
            .unwrap_err()
            .to_string(),
        "the server accepted service \"foo\" instead of ssh-userauth"
    );
    let mut link = Scripted::new(|_: &[u8]| vec![]);
    assert_eq!(
        authenticate(&mut link, "user", &[])
            .await
            .unwrap_err()
            .to_string(),
        "the server closed the connection"
    );
}

#[tokio::test]
async fn a_pk_ok_for_another_key_is_refused() {
    let files = KeyFiles::new(&[KeyType::Ed25519]);
    let mut link = Scripted::new(|msg: &[u8]| match parse_request(msg) {
        Request::Service(_) => vec![service_accept()],
        Request::None => vec![failure("publickey", false)],
        Request::Publickey(req) => {
            let mut w = Writer::message(msg::USERAUTH_PK_OK);
            w.string(req.algorithm.as_bytes()).string(b"another key");
            vec![w.into_vec()]
        }
    });
    let creds = [file_credential(&files, KeyType::Ed25519, "k")];
    let err = authenticate(&mut link, "user", &creds).await.unwrap_err();
    assert!(matches!(err, AuthError::PkOkMismatch(_)), "{err}");
}

#[tokio::test]
async fn a_server_that_takes_none_needs_no_key() {
    let mut link = Scripted::new(|msg: &[u8]| match parse_request(msg) {
        Request::Service(_) => vec![service_accept()],
        _ => vec![vec![msg::USERAUTH_SUCCESS]],
    });
    let done = authenticate(&mut link, "user", &[]).await.unwrap();
    assert_eq!(done.credential, "none");
}

#[tokio::test]
async fn agent_keys_authenticate_through_a_real_agent() {
    let files = KeyFiles::new(&[KeyType::Ed25519, KeyType::P384, KeyType::Rsa]);
    let agent = Agent::start(files.dir());
    for t in [KeyType::Ed25519, KeyType::P384, KeyType::Rsa] {
        agent.add(&files.path(t));
    }
    let creds = agent::identities(&agent.socket).await.unwrap();
    // Three keys, three certificates.
    assert_eq!(creds.len(), 6);
    for (t, sig_algs, algorithm) in [
        (KeyType::Ed25519, None, "ssh-ed25519"),
        (KeyType::P384, None, "ecdsa-sha2-nistp384"),
        (KeyType::Rsa, None, "rsa-sha2-512"),
        (
            KeyType::Rsa,
            Some(vec!["rsa-sha2-256".to_owned()]),
            "rsa-sha2-256",
        ),
    ] {
        for (blob, alg) in [
            (files.public_blob(t), algorithm.to_owned()),
            (
                files.user_certificate_blob(t),
                format!("{algorithm}-cert-v01@openssh.com"),
            ),
        ] {
            let s = seen();
            let mut link = Scripted::new(server(vec![blob.clone()], "publickey", s.clone()));
            link.sig_algs = sig_algs.clone();
            let done = authenticate(&mut link, "user", &creds).await.unwrap();
            assert!(done.credential.contains("(agent: "), "{}", done.credential);
            assert!(
                done.credential.contains(&files.keygen_fingerprint(t)),
                "{}",
                done.credential
            );
            let seen = s.lock().unwrap();
            assert_eq!(seen.signed, vec![(alg, blob, true)]);
        }
    }
}

#[tokio::test]
async fn an_agent_failure_is_listed_with_its_key() {
    let files = KeyFiles::new(&[KeyType::Ed25519]);
    let agent = Agent::start(files.dir());
    agent.add(&files.path(KeyType::Ed25519));
    let creds = agent::identities(&agent.socket).await.unwrap();
    drop(agent);
    let blob = files.public_blob(KeyType::Ed25519);
    let mut link = Scripted::new(server(vec![blob], "publickey", seen()));
    let plain_only: Vec<Credential> = creds
        .into_iter()
        .filter(|c| !c.describe().contains("-CERT"))
        .collect();
    let err = authenticate(&mut link, "user", &plain_only)
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.starts_with(&format!(
            "the server refused every key (tried: ED25519 {} (agent: id_ed25519@test): cannot connect to ssh-agent at ",
            files.keygen_fingerprint(KeyType::Ed25519)
        )),
        "{text}"
    );
    assert!(text.ends_with("); it accepts: publickey"), "{text}");
}

#[test]
fn encrypted_and_broken_key_files_are_refused_with_the_way_out() {
    let files = KeyFiles::new(&[KeyType::Ed25519]);
    let path = files.keygen("locked", &["-t", "ed25519"], "secret passphrase");
    let text = std::fs::read_to_string(&path).unwrap();
    let label = path.display().to_string();
    let err = Credential::from_openssh(&text, &label).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("{label}: the private key is encrypted; load it into ssh-agent (ssh-add {label})")
    );
    let err = Credential::from_openssh("not a key", "f").unwrap_err();
    assert!(matches!(err, AuthError::BadKey { .. }), "{err}");
    let text = files.private_text(KeyType::Ed25519);
    for cut in [0, 10, text.len() / 2, text.len() - 40] {
        assert!(
            Credential::from_openssh(&text[..cut], "f").is_err(),
            "cut {cut}"
        );
    }
}

#[test]
fn a_certificate_for_another_key_is_refused() {
    let files = KeyFiles::new(&[KeyType::Ed25519, KeyType::P256]);
    let cred = file_credential(&files, KeyType::Ed25519, "k");
    let err = cred
        .with_certificate(&files.user_certificate_text(KeyType::P256))
        .unwrap_err();
    assert_eq!(err.to_string(), "k: the certificate is not for this key");
}

#[test]
fn debug_output_never_shows_the_private_key() {
    let files = KeyFiles::new(&[KeyType::Ed25519]);
    let cred = file_credential(&files, KeyType::Ed25519, "k");
    assert_eq!(
        format!("{cred:?}"),
        format!("ED25519 {} (k)", files.keygen_fingerprint(KeyType::Ed25519))
    );
}
