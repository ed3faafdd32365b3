//! Host key checking and authentication: failures forward nothing and say why.

use std::os::unix::fs::PermissionsExt;

use tokio::net::TcpStream;
use tunneld_core::{Daemon, TunnelState};
use tunneld_tests::net::echo_roundtrip;
use tunneld_tests::{EchoServer, Sshd};

use crate::harness::*;

/// A SOCKS tunnel to `sshd` that logs in with `key` instead of the kit's key.
fn with_key(sshd: &Sshd, key: &std::path::Path) -> String {
    tunnel_toml(sshd, "t", "dynamic = [\"0\"]").replace(
        &sshd.client_key().display().to_string(),
        &key.display().to_string(),
    )
}

/// Starts a one-local-forward tunnel with `text` and waits for its first failure.
async fn first_error(text: &str) -> (Daemon, String) {
    let daemon = Daemon::start(&config(text));
    let mut rx = daemon.subscribe("t").unwrap();
    let s = wait_status(&mut rx, "a connection failure", |s| s.last_error.is_some()).await;
    (daemon, s.last_error.unwrap())
}

#[tokio::test]
async fn host_key_mismatch_forwards_nothing() {
    let sshd = Sshd::start().await.unwrap();
    let echo = EchoServer::start().await.unwrap();
    let other = Sshd::start().await.unwrap();
    // known_hosts claims the other server's key for this server's address.
    let kh = sshd.dir().join("wrong_known_hosts");
    std::fs::write(
        &kh,
        format!("[127.0.0.1]:{} {}\n", sshd.port(), other.host_key_pub()),
    )
    .unwrap();
    let spec = format!("0:127.0.0.1:{}", echo.port());
    let text = tunnel_toml(
        &sshd,
        "t",
        &format!("local = [\"{spec}\"]\nknown_hosts = \"{}\"", kh.display()),
    )
    .replace(
        &format!("known_hosts = \"{}\"\n", sshd.known_hosts().display()),
        "",
    );
    let (daemon, error) = first_error(&text).await;
    assert!(error.contains("host key verification failed"), "{error}");
    assert!(error.contains("CHANGED"), "{error}");
    assert!(error.contains(&format!("{}:1", kh.display())), "{error}");

    // The local listener is there, but a client gets nothing through it.
    let status = daemon.status().remove(0);
    assert_ne!(status.state, TunnelState::Up);
    let mut s = TcpStream::connect(bound_addr(&status, &spec))
        .await
        .unwrap();
    assert!(echo_roundtrip(&mut s, b"secret").await.is_err());
    assert_eq!(echo.connections(), 0);
    // We never authenticated to the impostor.
    assert_eq!(sshd.count_in_log("Accepted publickey"), 0, "{}", sshd.log());
    daemon.shutdown().await;
}

#[tokio::test]
async fn revoked_host_key_is_refused() {
    let sshd = Sshd::start().await.unwrap();
    let kh = sshd.dir().join("revoking_known_hosts");
    let good = std::fs::read_to_string(sshd.known_hosts()).unwrap();
    std::fs::write(&kh, format!("{good}@revoked * {}\n", sshd.host_key_pub())).unwrap();
    let text = tunnel_toml(&sshd, "t", "dynamic = [\"0\"]").replace(
        &sshd.known_hosts().display().to_string(),
        &kh.display().to_string(),
    );
    let (daemon, error) = first_error(&text).await;
    assert!(error.contains("@revoked"), "{error}");
    assert_eq!(sshd.count_in_log("Accepted publickey"), 0);
    daemon.shutdown().await;
}

#[tokio::test]
async fn unknown_host_refused_by_yes_and_learned_by_accept_new() {
    let sshd = Sshd::start().await.unwrap();
    let kh = sshd.dir().join("empty_known_hosts");
    std::fs::write(&kh, "").unwrap();
    let base = tunnel_toml(&sshd, "t", "dynamic = [\"0\"]").replace(
        &sshd.known_hosts().display().to_string(),
        &kh.display().to_string(),
    );
    let (daemon, error) = first_error(&base).await;
    assert!(
        error.contains("no ssh-ed25519 key for [127.0.0.1]"),
        "{error}"
    );
    assert!(error.contains("accept-new"), "{error}");
    daemon.shutdown().await;

    let text = format!("{base}strict_host_key_checking = \"accept-new\"\n");
    let (daemon, _) = start_up(&text, "t").await;
    daemon.shutdown().await;
    let learned = std::fs::read_to_string(&kh).unwrap();
    let key = sshd.host_key_pub();
    assert_eq!(
        learned.trim(),
        format!("[127.0.0.1]:{} {}", sshd.port(), key.trim())
    );
}

#[tokio::test]
async fn wrong_key_or_user_gives_a_clear_error() {
    let sshd = Sshd::start().await.unwrap();
    let stranger = sshd
        .generate_client_key("stranger", "ed25519", false)
        .unwrap();
    let text = with_key(&sshd, &stranger);
    let (daemon, error) = first_error(&text).await;
    assert!(
        error.starts_with(&format!(
            "authentication failed for {}@127.0.0.1:{}",
            sshd.user(),
            sshd.port()
        )),
        "{error}"
    );
    assert!(
        error.contains("the server refused every key (tried: ED25519 SHA256:"),
        "{error}"
    );
    assert!(
        error.contains(&format!("({}))", stranger.display())),
        "{error}"
    );
    daemon.shutdown().await;

    let text = tunnel_toml(&sshd, "t", "dynamic = [\"0\"]").replace(
        &format!("user = \"{}\"", sshd.user()),
        "user = \"no-such-user-here\"",
    );
    let (daemon, error) = first_error(&text).await;
    assert!(
        error.starts_with("authentication failed for no-such-user-here@"),
        "{error}"
    );
    daemon.shutdown().await;
}

#[tokio::test]
async fn a_private_key_readable_by_others_is_refused() {
    let sshd = Sshd::start().await.unwrap();
    let key = sshd.generate_client_key("open", "ed25519", true).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let text = with_key(&sshd, &key);
    let (daemon, error) = first_error(&text).await;
    assert!(error.contains("permissions 0644"), "{error}");
    assert!(error.contains("too open"), "{error}");
    daemon.shutdown().await;
}

/// A link that another user owns chooses which file is read as our key: refused, while a
/// link of our own to the same key logs in.
#[tokio::test]
async fn an_identity_link_owned_by_another_user_is_not_followed() {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: giving a link to another user needs root");
        return;
    }
    let sshd = Sshd::start().await.unwrap();
    let link = sshd.dir().join("planted");
    std::os::unix::fs::symlink(sshd.client_key(), &link).unwrap();
    let ours = with_key(&sshd, &link);
    let (daemon, _) = start_up(&ours, "t").await;
    daemon.shutdown().await;
    std::os::unix::fs::lchown(&link, Some(65534), None).unwrap();
    let (daemon, error) = first_error(&with_key(&sshd, &link)).await;
    assert!(
        error.contains("symbolic link owned by uid 65534"),
        "{error}"
    );
    daemon.shutdown().await;
}

/// Nothing of the private key reaches the log, even at trace level, or the status.
#[tokio::test]
async fn the_private_key_is_never_logged_or_shown() {
    let sshd = Sshd::start().await.unwrap();
    let echo = EchoServer::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("s.sock");
    let spec = format!("127.0.0.1:0:127.0.0.1:{}", echo.port());
    let config = dir.path().join("t.toml");
    let text = format!(
        "[daemon]\nsocket = \"{}\"\n{}",
        socket.display(),
        tunnel_toml(&sshd, "t", &format!("local = [\"{spec}\"]"))
    );
    std::fs::write(&config, text).unwrap();
    let mut run = Running::start(&config, &[("RUST_LOG", "trace")]);
    run.wait_line("connected");
    let out = std::process::Command::new(tunneld_bin())
        .args(["status", "--json", "--socket"])
        .arg(&socket)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let status = String::from_utf8(out.stdout).unwrap();
    let lines = run.finish();
    assert!(lines.len() > 20, "trace logging is on: {lines:?}");
    // The body of the OpenSSH private key file, in pieces of 16 base64 characters (any
    // piece appearing anywhere would be a leak, whatever the framing).
    let key = std::fs::read_to_string(sshd.client_key()).unwrap();
    let body: String = key.lines().filter(|l| !l.starts_with("-----")).collect();
    let pieces: Vec<&str> = body
        .as_bytes()
        .chunks(16)
        .filter_map(|c| std::str::from_utf8(c).ok())
        .collect();
    assert!(pieces.len() > 10);
    for piece in &pieces {
        assert!(!status.contains(piece), "status shows key material {piece}");
        for line in &lines {
            assert!(
                !line.contains(piece),
                "log shows key material {piece}: {line}"
            );
        }
    }
}

#[tokio::test]
async fn ecdsa_and_rsa_keys_log_in() {
    let sshd = Sshd::start().await.unwrap();
    for kind in ["ecdsa", "rsa"] {
        let key = sshd.generate_client_key(kind, kind, true).unwrap();
        let text = with_key(&sshd, &key);
        let (daemon, _) = start_up(&text, "t").await;
        daemon.shutdown().await;
    }
    // sshd saw both logins; RSA signed with SHA-2 (OpenSSH 8.8+ refuses ssh-rsa/SHA-1).
    assert!(
        sshd.log().contains("Accepted publickey") && sshd.log().contains("ECDSA"),
        "{}",
        sshd.log()
    );
    assert!(sshd.log().contains("RSA SHA256"), "{}", sshd.log());
}

#[tokio::test]
async fn encrypted_key_without_agent_says_what_to_do() {
    let sshd = Sshd::start().await.unwrap();
    let key = sshd.dir().join("locked");
    let out = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "passphrase", "-f"])
        .arg(&key)
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = with_key(&sshd, &key);
    let (daemon, error) = first_error(&text).await;
    assert!(error.contains("is encrypted"), "{error}");
    assert!(error.contains("ssh-add"), "{error}");
    daemon.shutdown().await;
}

#[tokio::test]
async fn failures_only_an_operator_can_fix_retry_at_the_backoff_ceiling() {
    // Test backoff: initial 50 ms, max 500 ms, jitter 0.2.
    let mut sshd = Sshd::start().await.unwrap();
    let stranger = sshd
        .generate_client_key("stranger", "ed25519", false)
        .unwrap();
    let text = with_key(&sshd, &stranger);
    let daemon = Daemon::start(&config(&text));
    let mut rx = daemon.subscribe("t").unwrap();
    let s = wait_status(&mut rx, "backoff after refused keys", |s| {
        s.retry_in.is_some()
    })
    .await;
    let wait = s.retry_in.unwrap();
    assert!(wait >= std::time::Duration::from_millis(400), "{s:?}");
    daemon.shutdown().await;

    // A server that is merely down starts from the bottom of the schedule.
    sshd.stop().await;
    let text = tunnel_toml(&sshd, "t", "dynamic = [\"0\"]");
    let daemon = Daemon::start(&config(&text));
    let mut rx = daemon.subscribe("t").unwrap();
    let s = wait_status(&mut rx, "backoff after a refused connect", |s| {
        s.retry_in.is_some()
    })
    .await;
    assert!(
        s.retry_in.unwrap() <= std::time::Duration::from_millis(50),
        "{s:?}"
    );
    daemon.shutdown().await;
}

/// Eight tunnels meet the same unknown server at once under `accept-new`: each comes up,
/// and the key is recorded once, whole, in the shared file. (The race itself, writers
/// released together, is pinned by the known_hosts unit tests; here it is the whole path.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tunnels_learning_one_host_at_once_record_it_once() {
    let sshd = Sshd::start().await.unwrap();
    let kh = sshd.dir().join("shared_known_hosts");
    std::fs::write(&kh, "").unwrap();
    let text: String = (0..8)
        .map(|i| {
            tunnel_toml(
                &sshd,
                &format!("t{i}"),
                "dynamic = [\"0\"]\nstrict_host_key_checking = \"accept-new\"",
            )
            .replace(
                &sshd.known_hosts().display().to_string(),
                &kh.display().to_string(),
            )
        })
        .collect();
    let daemon = Daemon::start(&config(&text));
    for i in 0..8 {
        let mut rx = daemon.subscribe(&format!("t{i}")).unwrap();
        wait_state(&mut rx, TunnelState::Up).await;
    }
    daemon.shutdown().await;
    let learned = std::fs::read_to_string(&kh).unwrap();
    assert_eq!(
        learned,
        format!(
            "[127.0.0.1]:{} {}\n",
            sshd.port(),
            sshd.host_key_pub().trim()
        ),
    );
}

/// A key the server does not know, certified by a CA it trusts (`TrustedUserCAKeys`):
/// found as `KEY-cert.pub` beside the identity, or named by `certificate_file`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_certificate_logs_in_where_the_bare_key_is_refused() {
    use tunneld_tests::keys;
    let ca_dir = tempfile::tempdir().unwrap();
    let ca = keys::generate(&ca_dir.path().join("user_ca"), "ed25519", "user CA").unwrap();
    let ca_pub = ca_dir.path().join("user_ca.pub");
    let sshd = Sshd::start_with(tunneld_tests::SshdOptions {
        extra_config: vec![format!("TrustedUserCAKeys {}", ca_pub.display())],
        ..Default::default()
    })
    .await
    .unwrap();
    let stranger = sshd
        .generate_client_key("stranger", "ed25519", false)
        .unwrap();

    // Without a certificate: refused.
    let (daemon, error) = first_error(&with_key(&sshd, &stranger)).await;
    assert!(error.contains("authentication failed"), "{error}");
    daemon.shutdown().await;

    // Beside the identity: used by itself.
    let cert = keys::sign(&ca, &stranger, &sshd.user()).unwrap();
    let (daemon, _) = start_up(&with_key(&sshd, &stranger), "t").await;
    daemon.shutdown().await;
    assert_eq!(sshd.count_in_log("Accepted publickey"), 1, "{}", sshd.log());
    assert_eq!(sshd.count_in_log("ssh2: ED25519-CERT"), 1, "{}", sshd.log());

    // Elsewhere, named by certificate_file.
    let moved = ca_dir.path().join("elsewhere-cert.pub");
    std::fs::rename(&cert, &moved).unwrap();
    let text = format!(
        "{}certificate_file = \"{}\"\n",
        with_key(&sshd, &stranger),
        moved.display()
    );
    let (daemon, _) = start_up(&text, "t").await;
    daemon.shutdown().await;
    assert_eq!(sshd.count_in_log("ssh2: ED25519-CERT"), 2, "{}", sshd.log());
}

/// A host key certified by a CA that known_hosts trusts (`@cert-authority`) is accepted
/// with no line for the key itself; a certificate for another host name, or from an
/// authority not listed, forwards nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_certificate_from_a_trusted_authority_is_accepted() {
    use tunneld_tests::keys;
    let ca_dir = tempfile::tempdir().unwrap();
    let host_ca = keys::generate(&ca_dir.path().join("host_ca"), "ed25519", "host CA").unwrap();
    let other_ca = keys::generate(&ca_dir.path().join("other_ca"), "ed25519", "other").unwrap();
    let cert_path = ca_dir.path().join("host-cert.pub");
    let mut sshd = Sshd::start_with(tunneld_tests::SshdOptions {
        extra_config: vec![format!("HostCertificate {}", cert_path.display())],
        ..Default::default()
    })
    .await
    .unwrap();
    let host_key = sshd.dir().join("ssh_host_ed25519_key");
    let kh = ca_dir.path().join("known_hosts");
    let text = tunnel_toml(&sshd, "t", "dynamic = [\"0\"]").replace(
        &sshd.known_hosts().display().to_string(),
        &kh.display().to_string(),
    );
    let port = sshd.port();
    let ca_line = move |ca: &std::path::Path| {
        let public = std::fs::read_to_string(ca.with_extension("pub")).unwrap();
        format!("@cert-authority [127.0.0.1]:{port} {}\n", public.trim())
    };

    // Signed for 127.0.0.1 by the trusted CA: up, with no plain key in known_hosts.
    let signed = keys::sign_host(&host_ca, &host_key, "127.0.0.1").unwrap();
    std::fs::copy(&signed, &cert_path).unwrap();
    sshd.restart().await.unwrap();
    std::fs::write(&kh, ca_line(&host_ca)).unwrap();
    let (daemon, _) = start_up(&text, "t").await;
    daemon.shutdown().await;
    assert_eq!(sshd.count_in_log("Accepted publickey"), 1);

    // The same certificate, but known_hosts trusts another authority.
    std::fs::write(&kh, ca_line(&other_ca)).unwrap();
    let (daemon, error) = first_error(&text).await;
    assert!(error.contains("host certificate not accepted"), "{error}");
    daemon.shutdown().await;

    // The trusted CA, but a certificate for another host name.
    let signed = keys::sign_host(&host_ca, &host_key, "elsewhere.example").unwrap();
    std::fs::copy(&signed, &cert_path).unwrap();
    sshd.restart().await.unwrap();
    std::fs::write(&kh, ca_line(&host_ca)).unwrap();
    let (daemon, error) = first_error(&text).await;
    assert!(error.contains("not valid for 127.0.0.1"), "{error}");
    daemon.shutdown().await;
    assert_eq!(
        sshd.count_in_log("Accepted publickey"),
        1,
        "no login after a refusal"
    );
}
