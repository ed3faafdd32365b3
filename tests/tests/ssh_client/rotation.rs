//! Host key rotation against OpenSSH's sshd: it announces every host key after
//! authentication and proves the ones asked about; a key it does not hold is refused.

use std::time::Duration;

use ssh_key::PublicKey;
use tunneld_ssh::hostkeys::{self, ProveError};
use tunneld_tests::{HostKeyType, Sshd};

use crate::kit;

/// Bound for the server's announcement and its proofs.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

fn public(line: &str) -> PublicKey {
    PublicKey::from_openssh(line.trim()).unwrap()
}

#[tokio::test]
async fn sshd_announces_its_keys_and_proves_each_type() {
    let mut sshd = Sshd::start().await.unwrap();
    let mut added = Vec::new();
    for (name, kind) in [
        ("ssh_host_second_ed25519_key", HostKeyType::Ed25519),
        ("ssh_host_ecdsa384_key", HostKeyType::Ecdsa384),
        ("ssh_host_rsa_key", HostKeyType::Rsa),
    ] {
        added.push(public(&sshd.add_host_key(name, kind).unwrap()));
    }
    sshd.restart().await.unwrap();
    let (session, _incoming) = kit::connect(&sshd).await;
    let mut announcement = session.host_key_announcement();
    let blobs = tokio::time::timeout(ANSWER_TIMEOUT, announcement.recv())
        .await
        .expect("announced in time")
        .expect("announced before the session ended");
    let announced = hostkeys::parse_announcement(&blobs).unwrap();
    let mut want = vec![public(&sshd.host_key_pub())];
    want.extend(added.iter().cloned());
    assert_eq!(announced.keys, want);
    assert!(announced.skipped.is_empty(), "{:?}", announced.skipped);

    let proven = tokio::time::timeout(ANSWER_TIMEOUT, announcement.prove(&added))
        .await
        .expect("proofs in time")
        .unwrap_or_else(|e| panic!("{e}\n{}", sshd.log()));
    assert_eq!(proven.keys, added);
    assert!(proven.disregarded.is_empty());
}

#[tokio::test]
async fn a_key_sshd_does_not_hold_is_never_proven() {
    let sshd = Sshd::start().await.unwrap();
    let stranger = Sshd::start().await.unwrap();
    let (session, _incoming) = kit::connect(&sshd).await;
    let mut announcement = session.host_key_announcement();
    tokio::time::timeout(ANSWER_TIMEOUT, announcement.recv())
        .await
        .expect("announced in time")
        .expect("announced");
    // Another server's key: sshd refuses to sign with a key it does not have.
    let other = public(&stranger.host_key_pub());
    let got = tokio::time::timeout(ANSWER_TIMEOUT, announcement.prove(&[other]))
        .await
        .expect("an answer in time");
    assert!(matches!(got, Err(ProveError::Refused)), "{got:?}");
    // The session carries on.
    session.ping().await.unwrap();
}
