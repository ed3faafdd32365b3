//! What the server answers: refusals, partial success, `none`, PK_OK for another key,
//! banners and garbage.

use super::*;

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
async fn a_server_that_takes_none_needs_no_key() {
    let mut link = Scripted::new(|msg: &[u8]| match parse_request(msg) {
        Request::Service(_) => vec![service_accept()],
        _ => vec![vec![msg::USERAUTH_SUCCESS]],
    });
    let done = authenticate(&mut link, "user", &[]).await.unwrap();
    assert_eq!(done.credential, "none");
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
