//! Connecting a `tunneld-ssh` session to a kit sshd.

use std::time::Duration;

use tokio::net::TcpStream;
use tunneld_ssh::{Config, Credential, HostKey, Incoming, Session};
use tunneld_tests::Sshd;

/// Bound for a handshake against a local server.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);

/// The key line's type and base64 ("ssh-ed25519 AAAA..."), without the comment.
pub fn key_text(line: &str) -> String {
    line.split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ")
}

/// A host key check that accepts exactly the key of `line` (an authorized-keys style line).
pub fn expect_host_key(line: &str) -> tunneld_ssh::HostKeyCheck {
    let want = key_text(line);
    Box::new(move |key: &HostKey| {
        let got = key_text(&key.public_key().to_openssh().map_err(|e| e.to_string())?);
        if got == want {
            Ok(())
        } else {
            Err(format!("unexpected host key {got}"))
        }
    })
}

/// The kit's client key as a credential.
pub fn client_credential(sshd: &Sshd) -> Credential {
    let text = std::fs::read_to_string(sshd.client_key()).unwrap();
    Credential::from_openssh(&text, &sshd.client_key().display().to_string()).unwrap()
}

/// A session to `sshd` with the kit's key and `config`.
pub async fn connect_with(sshd: &Sshd, config: Config) -> (Session, Incoming) {
    let tcp = TcpStream::connect(sshd.addr()).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    let credential = client_credential(sshd);
    tokio::time::timeout(
        CONNECT_TIMEOUT,
        tunneld_ssh::connect(
            tcp,
            config,
            &sshd.user(),
            std::slice::from_ref(&credential),
            expect_host_key(&sshd.host_key_pub()),
        ),
    )
    .await
    .expect("handshake within the timeout")
    .unwrap_or_else(|e| panic!("connect: {e}\n{}", sshd.log()))
}

/// A session with the default configuration.
pub async fn connect(sshd: &Sshd) -> (Session, Incoming) {
    connect_with(sshd, Config::default()).await
}
