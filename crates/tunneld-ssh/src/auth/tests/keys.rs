//! Every key type, certificates, agent keys and key files, against the scripted server.

use super::*;

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
