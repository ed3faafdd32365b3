//! Interop of `tunneld-ssh` with real servers for every algorithm it offers: each key
//! exchange × cipher (× ETM MAC) against OpenSSH 9.2, every host key type and host
//! certificate, every user key type, user certificates and ssh-agent keys, servers with only
//! weak algorithms, Dropbear 2022.83, and `mlkem768x25519-sha256` against OpenSSH 10.
//!
//! One server per group, one session per combination. Each test prints what it covered and
//! asserts how many combinations that was, so a matrix that covers nothing fails.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpStream;
use tunneld_ssh::auth::AuthError;
use tunneld_ssh::negotiate::NegotiationError;
use tunneld_ssh::{
    Chosen, Config, ConnectError, Credential, Forwarded, HostKey, HostKeyCheck, Incoming, Session,
    TransportConfig, TransportError,
};
use tunneld_tests::net::{echo_roundtrip, transfer_both_ways, wait_until};
use tunneld_tests::{
    Dropbear, DropbearOptions, EchoServer, HostKeyType, ModernSshd, Sshd, SshdOptions,
};

use crate::basics::to;
use crate::kit::{self, CONNECT_TIMEOUT};

/// Bytes moved each way through one session of a matrix.
const MATRIX_BYTES: usize = 256 << 10;
/// Bytes moved each way through a Dropbear session.
const DROPBEAR_BYTES: usize = 1 << 20;
/// How long a server's log may lag behind what the client already saw.
const LOG_TIMEOUT: Duration = Duration::from_secs(5);
/// How long ssh-agent may take to listen.
const AGENT_TIMEOUT: Duration = Duration::from_secs(10);

/// Key exchange methods of OpenSSH 9.2 that we offer (all of ours but mlkem).
const KEX_OPENSSH_9_2: [&str; 4] = [
    "sntrup761x25519-sha512",
    "sntrup761x25519-sha512@openssh.com",
    "curve25519-sha256",
    "curve25519-sha256@libssh.org",
];
/// `mlkem768x25519-sha256`, OpenSSH ≥ 9.9 only.
const MLKEM: &str = "mlkem768x25519-sha256";
/// Our AEAD ciphers.
const AEAD_CIPHERS: [&str; 3] = [
    "aes128-gcm@openssh.com",
    "aes256-gcm@openssh.com",
    "chacha20-poly1305@openssh.com",
];
/// Our non-AEAD ciphers; they go only with [`ETM_MACS`].
const CTR_CIPHERS: [&str; 2] = ["aes128-ctr", "aes256-ctr"];
/// Our MACs.
const ETM_MACS: [&str; 2] = [
    "hmac-sha2-256-etm@openssh.com",
    "hmac-sha2-512-etm@openssh.com",
];

/// Every cipher suite we offer: the AEAD ciphers alone, each CTR cipher with each ETM MAC.
fn cipher_suites() -> Vec<(&'static str, Option<&'static str>)> {
    let mut suites: Vec<_> = AEAD_CIPHERS.iter().map(|c| (*c, None)).collect();
    for cipher in CTR_CIPHERS {
        for mac in ETM_MACS {
            suites.push((cipher, Some(mac)));
        }
    }
    suites
}

/// A configuration offering exactly `kex` and the cipher suite (and the default host key
/// algorithms).
fn forced(kex: &str, cipher: &str, mac: Option<&str>) -> Config {
    let defaults = TransportConfig::default();
    Config {
        transport: TransportConfig {
            kex: vec![kex.to_owned()],
            ciphers: vec![cipher.to_owned()],
            macs: mac.map_or(defaults.macs.clone(), |m| vec![m.to_owned()]),
            ..defaults
        },
        ..Config::default()
    }
}

/// A configuration offering only the host key algorithm `alg`.
fn host_key_only(alg: &str) -> Config {
    Config {
        transport: TransportConfig {
            host_key_algorithms: vec![alg.to_owned()],
            ..TransportConfig::default()
        },
        ..Config::default()
    }
}

/// What a session must have agreed: the same cipher and MAC both ways.
fn chosen(kex: &str, host_key: &str, cipher: &str, mac: Option<&str>) -> Chosen {
    Chosen {
        kex: kex.to_owned(),
        host_key: host_key.to_owned(),
        cipher_c2s: cipher.to_owned(),
        cipher_s2c: cipher.to_owned(),
        mac_c2s: mac.map(str::to_owned),
        mac_s2c: mac.map(str::to_owned),
    }
}

/// Our default cipher (it depends on AES acceleration) and its MAC against a server that
/// has all of ours.
fn default_suite() -> (String, Option<String>) {
    let defaults = TransportConfig::default();
    let cipher = defaults.ciphers[0].clone();
    let mac = cipher.ends_with("-ctr").then(|| defaults.macs[0].clone());
    (cipher, mac)
}

/// A handshake with `credentials` and `check`, bounded by [`CONNECT_TIMEOUT`].
async fn dial(
    addr: SocketAddr,
    user: &str,
    config: Config,
    credentials: &[Credential],
    check: HostKeyCheck,
) -> Result<(Session, Incoming), ConnectError> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    tokio::time::timeout(
        CONNECT_TIMEOUT,
        tunneld_ssh::connect(tcp, config, user, credentials, check),
    )
    .await
    .expect("handshake within the timeout")
}

/// The private key file at `path` as a credential.
fn key_credential(path: &Path) -> Credential {
    let text = std::fs::read_to_string(path).unwrap();
    Credential::from_openssh(&text, &path.display().to_string()).unwrap()
}

/// The private key at `key` with its certificate `cert` (a `-cert.pub` file).
fn cert_credential(key: &Path, cert: &Path) -> Credential {
    key_credential(key)
        .with_certificate(&std::fs::read_to_string(cert).unwrap())
        .unwrap()
}

/// "ED25519 SHA256:..." of a credential: its description without the label, as OpenSSH
/// logs it after "ssh2: ".
fn key_id(credential: &Credential) -> String {
    let described = credential.describe();
    match described.split_once(" (") {
        Some((id, _)) => id.to_owned(),
        None => described,
    }
}

/// Lines of `log` that end with `suffix` (line ends, trailing blanks and sshd's
/// " [preauth]" mark ignored).
fn lines_ending_with(log: &str, suffix: &str) -> usize {
    log.lines()
        .map(|l| l.trim_end().trim_end_matches(" [preauth]"))
        .filter(|l| l.ends_with(suffix))
        .count()
}

/// Waits until `count(log)` is `want`, then asserts it is exactly that.
async fn wait_log_count(
    what: &str,
    log: impl Fn() -> String,
    count: impl Fn(&str) -> usize,
    want: usize,
) {
    let _ = wait_until(LOG_TIMEOUT, what, || count(&log()) >= want).await;
    let log = log();
    assert_eq!(count(&log), want, "{what}; log:\n{log}");
}

/// Opens a direct-tcpip channel to `echo` and moves `bytes` each way through it.
async fn move_bytes(session: &Session, echo: &EchoServer, bytes: usize, what: &str) {
    let channel = session
        .open(to(echo.addr()))
        .await
        .unwrap_or_else(|e| panic!("{what}: open: {e}"));
    transfer_both_ways(channel, bytes)
        .await
        .unwrap_or_else(|e| panic!("{what}: transfer: {e:#}"));
}

/// A short echo through a new direct-tcpip channel.
async fn echo_once(session: &Session, echo: &EchoServer, what: &str) {
    let mut channel = session
        .open(to(echo.addr()))
        .await
        .unwrap_or_else(|e| panic!("{what}: open: {e}"));
    echo_roundtrip(&mut channel, what.as_bytes())
        .await
        .unwrap_or_else(|e| panic!("{what}: echo: {e:#}"));
}

/// Connects to `sshd` with its client key and `config` for each (kex, cipher, MAC), checks
/// the agreement, moves [`MATRIX_BYTES`] each way, and checks that sshd logged the same
/// choice. Returns the combinations covered.
async fn run_kex_cipher_matrix(sshd: &Sshd, kexes: &[&str]) -> Vec<String> {
    let echo = EchoServer::start().await.unwrap();
    let mut covered = Vec::new();
    for kex in kexes {
        for (cipher, mac) in cipher_suites() {
            let what = format!("{kex} {cipher} {}", mac.unwrap_or("(aead)"));
            let kex_lines = |log: &str| lines_ending_with(log, &format!("kex: algorithm: {kex}"));
            let mac_shown = mac.unwrap_or("<implicit>");
            let cipher_lines = |log: &str| {
                ["client->server", "server->client"]
                    .iter()
                    .map(|dir| {
                        lines_ending_with(
                            log,
                            &format!(
                                "kex: {dir} cipher: {cipher} MAC: {mac_shown} compression: none"
                            ),
                        )
                    })
                    .sum::<usize>()
            };
            let kex_before = kex_lines(&sshd.log());
            let cipher_before = cipher_lines(&sshd.log());

            let (session, _incoming) = kit::connect_with(sshd, forced(kex, cipher, mac)).await;
            assert_eq!(
                session.info().algorithms,
                chosen(kex, "ssh-ed25519", cipher, mac),
                "{what}"
            );
            move_bytes(&session, &echo, MATRIX_BYTES, &what).await;
            drop(session);

            wait_log_count(&what, || sshd.log(), kex_lines, kex_before + 1).await;
            wait_log_count(&what, || sshd.log(), cipher_lines, cipher_before + 2).await;
            covered.push(what);
        }
    }
    assert_eq!(echo.connections(), covered.len());
    covered
}

/// Prints what a test covered.
fn report(test: &str, covered: &[String]) {
    eprintln!("{test}: {} combinations", covered.len());
    for c in covered {
        eprintln!("  {c}");
    }
}

#[tokio::test]
async fn every_kex_and_cipher_interoperates_with_openssh_9_2() {
    let sshd = Sshd::start().await.unwrap();
    let covered = run_kex_cipher_matrix(&sshd, &KEX_OPENSSH_9_2).await;
    report("OpenSSH 9.2 kex × cipher (× MAC)", &covered);
    // 4 kex × (3 AEAD + 2 CTR × 2 ETM MACs).
    assert_eq!(covered.len(), 28);
}

/// The host key algorithms a server with a `kind` host key signs with.
fn plain_algorithms(kind: HostKeyType) -> Vec<String> {
    kind.signature_algorithms()
        .iter()
        .map(|s| (*s).to_owned())
        .collect()
}

/// The certificate algorithms for a `kind` host key: `KIND-cert-v01@openssh.com`, for RSA
/// the rsa-sha2-512 and rsa-sha2-256 forms.
fn cert_algorithms(kind: HostKeyType) -> Vec<String> {
    match kind {
        HostKeyType::Rsa => vec![
            "rsa-sha2-512-cert-v01@openssh.com".to_owned(),
            "rsa-sha2-256-cert-v01@openssh.com".to_owned(),
        ],
        other => vec![other.cert_name().to_owned()],
    }
}

#[tokio::test]
async fn every_host_key_type_and_signature_algorithm_is_verified() {
    let echo = EchoServer::start().await.unwrap();
    let (cipher, mac) = default_suite();
    let mut covered = Vec::new();
    for kind in HostKeyType::ALL {
        let sshd = Sshd::start_with(SshdOptions {
            host_key_type: kind,
            ..SshdOptions::default()
        })
        .await
        .unwrap();
        let algorithms = plain_algorithms(kind);
        // How often sshd must have logged each host key algorithm.
        let mut logged = std::collections::HashMap::new();
        // Our default list picks the first (rsa-sha2-512 for RSA).
        let mut configs = vec![(algorithms[0].clone(), Config::default(), "default")];
        for alg in &algorithms {
            configs.push((alg.clone(), host_key_only(alg), "forced"));
        }
        for (alg, config, how) in configs {
            let what = format!("{} host key, {how} {alg}", kind.short_name());
            let (session, _incoming) = kit::connect_with(&sshd, config).await;
            let info = session.info();
            assert_eq!(
                info.algorithms,
                chosen("sntrup761x25519-sha512", &alg, &cipher, mac.as_deref()),
                "{what}"
            );
            assert!(
                matches!(info.host_key, HostKey::Key(_)),
                "{what}: {:?}",
                info.host_key
            );
            assert_eq!(info.host_key.type_name(), kind.key_name(), "{what}");
            echo_once(&session, &echo, &what).await;
            let line = format!("kex: host key algorithm: {alg}");
            let seen = logged.entry(alg.clone()).or_insert(0);
            *seen += 1;
            let want = *seen;
            wait_log_count(&what, || sshd.log(), |l| lines_ending_with(l, &line), want).await;
            covered.push(what);
        }
    }
    report("host key types", &covered);
    // ed25519, ecdsa 256/384/521: default + forced; RSA: default + rsa-sha2-512 + rsa-sha2-256.
    assert_eq!(covered.len(), 4 * 2 + 3);
    assert_eq!(echo.connections(), covered.len());
}

/// `ssh-keygen -l` fingerprint (`SHA256:...`) of the public key file `pub_file`.
fn fingerprint_of(pub_file: &Path) -> String {
    let out = Command::new("ssh-keygen")
        .arg("-l")
        .arg("-f")
        .arg(pub_file)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ssh-keygen -l -f {}",
        pub_file.display()
    );
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .nth(1)
        .unwrap()
        .to_owned()
}

/// A host key check that accepts only a host certificate of the key `host_key_line`,
/// signed by the CA of fingerprint `ca_fingerprint`, for 127.0.0.1; records the presented
/// type name in `seen`.
fn expect_host_certificate(
    host_key_line: &str,
    ca_fingerprint: String,
    seen: Arc<Mutex<Vec<String>>>,
) -> HostKeyCheck {
    let mut certified = kit::expect_host_key(host_key_line);
    Box::new(move |key: &HostKey| {
        seen.lock().unwrap().push(key.type_name());
        let HostKey::Certificate(cert) = key else {
            return Err(format!("not a certificate: {}", key.type_name()));
        };
        certified(key)?;
        if !cert.cert_type().is_host() {
            return Err("not a host certificate".into());
        }
        if !cert.valid_principals().iter().any(|p| p == "127.0.0.1") {
            return Err(format!("principals {:?}", cert.valid_principals()));
        }
        let ca = cert
            .signature_key()
            .fingerprint(Default::default())
            .to_string();
        if ca != ca_fingerprint {
            return Err(format!("signed by {ca}, not {ca_fingerprint}"));
        }
        Ok(())
    })
}

#[tokio::test]
async fn host_certificates_of_every_key_type_are_presented_and_verified() {
    let echo = EchoServer::start().await.unwrap();
    let (cipher, mac) = default_suite();
    let mut covered = Vec::new();
    for kind in HostKeyType::ALL {
        let sshd = Sshd::start_with(SshdOptions {
            host_key_type: kind,
            host_certificate: true,
            ..SshdOptions::default()
        })
        .await
        .unwrap();
        let ca_fingerprint = fingerprint_of(&sshd.dir().join("host_ca.pub"));
        let client = kit::client_credential(&sshd);
        let algorithms = cert_algorithms(kind);
        // Our default list puts certificates first.
        let mut configs = vec![(algorithms[0].clone(), Config::default(), "default")];
        for alg in &algorithms {
            configs.push((alg.clone(), host_key_only(alg), "forced"));
        }
        for (alg, config, how) in configs {
            let what = format!("{} host certificate, {how} {alg}", kind.short_name());
            let seen = Arc::new(Mutex::new(Vec::new()));
            let (session, _incoming) = dial(
                sshd.addr(),
                &sshd.user(),
                config,
                std::slice::from_ref(&client),
                expect_host_certificate(&sshd.host_key_pub(), ca_fingerprint.clone(), seen.clone()),
            )
            .await
            .unwrap_or_else(|e| panic!("{what}: {e}\n{}", sshd.log()));
            assert_eq!(
                *seen.lock().unwrap(),
                vec![kind.cert_name().to_owned()],
                "{what}"
            );
            let info = session.info();
            assert_eq!(
                info.algorithms,
                chosen("sntrup761x25519-sha512", &alg, &cipher, mac.as_deref()),
                "{what}"
            );
            assert!(matches!(info.host_key, HostKey::Certificate(_)), "{what}");
            echo_once(&session, &echo, &what).await;
            covered.push(what);
        }
    }
    report("host certificates", &covered);
    // ed25519, ecdsa 256/384/521: default + forced; RSA: default + both rsa-sha2 forms.
    assert_eq!(covered.len(), 4 * 2 + 3);
    assert_eq!(echo.connections(), covered.len());
}

/// Connects to `sshd` with `credential` alone; checks that it is the one accepted and that
/// sshd logged "Accepted publickey ... ssh2: ID" for it once more than before.
async fn log_in_alone(sshd: &Sshd, credential: &Credential, what: &str) -> Session {
    let accepted = format!("ssh2: {}", key_id(credential));
    let count = |log: &str| {
        log.lines()
            .filter(|l| l.contains("Accepted publickey for ") && l.contains(&accepted))
            .count()
    };
    let before = count(&sshd.log());
    let (session, _incoming) = dial(
        sshd.addr(),
        &sshd.user(),
        Config::default(),
        std::slice::from_ref(credential),
        kit::expect_host_key(&sshd.host_key_pub()),
    )
    .await
    .unwrap_or_else(|e| panic!("{what}: {e}\n{}", sshd.log()));
    assert_eq!(
        session.info().authenticated_with,
        credential.describe(),
        "{what}"
    );
    wait_log_count(what, || sshd.log(), count, before + 1).await;
    session
}

/// The lines of sshd's log where it answers our query whether it takes the key `key_id`
/// with signature algorithm `alg` (at LogLevel DEBUG1 sshd logs the algorithm only there;
/// we sign with the algorithm we asked about).
fn signature_lines(log: &str, alg: &str, key_id: &str) -> usize {
    let needle = format!("userauth_pubkey: publickey test pkalg {alg} pkblob {key_id}");
    log.lines().filter(|l| l.contains(&needle)).count()
}

#[tokio::test]
async fn every_user_key_type_and_user_certificates_log_in() {
    let sshd = Sshd::start_with(SshdOptions {
        user_ca: true,
        ..SshdOptions::default()
    })
    .await
    .unwrap();
    let mut covered = Vec::new();
    for kind in HostKeyType::ALL {
        let name = format!("user_{}", kind.short_name());
        let key = sshd.generate_client_key_of(&name, kind, true).unwrap();
        let credential = key_credential(&key);
        let what = format!("{} key", kind.short_name());
        let _session = log_in_alone(&sshd, &credential, &what).await;
        if kind == HostKeyType::Rsa {
            // The server lists rsa-sha2-512 first in server-sig-algs.
            let log = sshd.log();
            assert_eq!(
                signature_lines(&log, "rsa-sha2-512", &key_id(&credential)),
                1,
                "{log}"
            );
        }
        covered.push(what);

        // A certificate for another key of this type, not in authorized_keys.
        let name = format!("certified_{}", kind.short_name());
        let key = sshd.generate_client_key_of(&name, kind, false).unwrap();
        let cert = sshd.sign_user_key(&key, &sshd.user()).unwrap();
        let credential = cert_credential(&key, &cert);
        assert!(
            key_id(&credential).contains("-CERT "),
            "{}",
            credential.describe()
        );
        let what = format!("{} user certificate", kind.short_name());
        let _session = log_in_alone(&sshd, &credential, &what).await;
        covered.push(what);
    }
    report("user keys and certificates", &covered);
    assert_eq!(covered.len(), 2 * HostKeyType::ALL.len());
}

// OpenSSH 9.2 lists every algorithm it knows in server-sig-algs whatever
// PubkeyAcceptedAlgorithms says, so we (like its own ssh) sign with rsa-sha2-512 and are
// refused; we do not retry with rsa-sha2-256. This pins that: a clean refusal naming the key.
#[tokio::test]
async fn openssh_9_2_taking_only_rsa_sha2_256_refuses_our_rsa_sha2_512_cleanly() {
    let sshd = Sshd::start_with(SshdOptions {
        extra_config: vec!["PubkeyAcceptedAlgorithms rsa-sha2-256".into()],
        ..SshdOptions::default()
    })
    .await
    .unwrap();
    let key = sshd
        .generate_client_key_of("user_rsa", HostKeyType::Rsa, true)
        .unwrap();
    let credential = key_credential(&key);
    match dial(
        sshd.addr(),
        &sshd.user(),
        Config::default(),
        std::slice::from_ref(&credential),
        kit::expect_host_key(&sshd.host_key_pub()),
    )
    .await
    {
        Err(ConnectError::Auth(AuthError::AllRefused { tried, methods })) => {
            assert_eq!(
                (tried.as_str(), methods.as_str()),
                (credential.describe().as_str(), "publickey")
            );
        }
        Err(e) => panic!("expected a refusal, got {e}"),
        Ok(_) => panic!("logged in: OpenSSH 9.2 now lists only accepted algorithms?"),
    }
    let needle =
        "userauth_pubkey: signature algorithm rsa-sha2-512 not in PubkeyAcceptedAlgorithms";
    wait_log_count(
        "sshd refusing rsa-sha2-512",
        || sshd.log(),
        |l| l.matches(needle).count(),
        1,
    )
    .await;
    assert_eq!(sshd.count_in_log("Accepted publickey"), 0, "{}", sshd.log());
    eprintln!("OpenSSH 9.2 rsa-sha2-256 only: 1 combination (refused, as OpenSSH's ssh is)");
}

// OpenSSH 10 lists only the accepted algorithms in server-sig-algs, so the choice of
// rsa-sha2-256 from server-sig-algs is tested against it (9.2: see the test above).
#[tokio::test]
async fn an_rsa_key_signs_with_rsa_sha2_256_when_the_server_takes_only_that() {
    let sshd = ModernSshd::start_with(SshdOptions {
        extra_config: vec!["PubkeyAcceptedAlgorithms rsa-sha2-256".into()],
        ..SshdOptions::default()
    })
    .await
    .unwrap();
    let config = sshd.effective_config().unwrap();
    assert!(
        config
            .lines()
            .any(|l| l == "pubkeyacceptedalgorithms rsa-sha2-256"),
        "{config}"
    );
    let key = sshd
        .generate_client_key_of("user_rsa", HostKeyType::Rsa, true)
        .unwrap();
    let credential = key_credential(&key);
    let _session = log_in_alone(&sshd, &credential, "rsa key, server takes rsa-sha2-256").await;
    let log = sshd.log();
    assert_eq!(
        signature_lines(&log, "rsa-sha2-256", &key_id(&credential)),
        1,
        "{log}"
    );
    assert_eq!(
        signature_lines(&log, "rsa-sha2-512", &key_id(&credential)),
        0,
        "{log}"
    );
    eprintln!("rsa-sha2-256 only server: 1 combination");
}

#[tokio::test]
async fn a_key_the_server_does_not_know_is_refused_with_what_was_tried() {
    let sshd = Sshd::start().await.unwrap();
    let key = sshd
        .generate_client_key_of("stranger", HostKeyType::Ed25519, false)
        .unwrap();
    let credential = key_credential(&key);
    let refused = dial(
        sshd.addr(),
        &sshd.user(),
        Config::default(),
        std::slice::from_ref(&credential),
        kit::expect_host_key(&sshd.host_key_pub()),
    )
    .await;
    match refused {
        Err(ConnectError::Auth(AuthError::AllRefused { tried, methods })) => {
            assert_eq!(tried, credential.describe());
            assert_eq!(methods, "publickey");
            let e = ConnectError::Auth(AuthError::AllRefused { tried, methods }).to_string();
            assert_eq!(
                e,
                format!(
                    "the server refused every key (tried: {}); it accepts: publickey",
                    credential.describe()
                )
            );
        }
        Err(e) => panic!("expected a refusal, got {e}"),
        Ok(_) => panic!("logged in with a key the server does not know"),
    }
    assert_eq!(sshd.count_in_log("Accepted publickey"), 0, "{}", sshd.log());
    eprintln!("unknown key: 1 combination");
}

/// An `ssh-agent -D` on a socket of its own tempdir; killed and reaped on drop.
struct Agent {
    child: Child,
    socket: PathBuf,
    _dir: tempfile::TempDir,
}

impl Agent {
    async fn start() -> Agent {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("agent.sock");
        let child = Command::new("ssh-agent")
            .arg("-D")
            .arg("-a")
            .arg(&socket)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("run ssh-agent");
        let agent = Agent {
            child,
            socket,
            _dir: dir,
        };
        wait_until(AGENT_TIMEOUT, "ssh-agent to listen", || {
            std::os::unix::net::UnixStream::connect(&agent.socket).is_ok()
        })
        .await
        .unwrap();
        agent
    }

    /// `ssh-add KEY` (with `KEY-cert.pub` too when it exists).
    fn add(&self, key: &Path) {
        let out = Command::new("ssh-add")
            .arg(key)
            .env("SSH_AUTH_SOCK", &self.socket)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "ssh-add {}: {}",
            key.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn ssh_agent_keys_of_every_type_and_an_agent_certificate_log_in() {
    let sshd = Sshd::start_with(SshdOptions {
        user_ca: true,
        ..SshdOptions::default()
    })
    .await
    .unwrap();
    let agent = Agent::start().await;
    for kind in HostKeyType::ALL {
        let key = sshd
            .generate_client_key_of(&format!("agent_{}", kind.short_name()), kind, true)
            .unwrap();
        agent.add(&key);
    }
    // A certificate whose key is not in authorized_keys: ssh-add adds the key and the
    // certificate; only the certificate may log in.
    let certified = sshd
        .generate_client_key_of("agent_certified", HostKeyType::Ed25519, false)
        .unwrap();
    sshd.sign_user_key(&certified, &sshd.user()).unwrap();
    agent.add(&certified);
    let certified_id = key_id(&key_credential(&certified));

    let identities = tunneld_ssh::auth::agent::identities(&agent.socket)
        .await
        .unwrap();
    assert_eq!(
        identities.len(),
        HostKeyType::ALL.len() + 2,
        "{identities:?}"
    );
    let mut covered = Vec::new();
    let mut refused = 0;
    for credential in &identities {
        let what = format!("agent {}", credential.describe());
        assert!(matches!(credential, Credential::Agent { .. }), "{what}");
        if key_id(credential) == certified_id {
            match dial(
                sshd.addr(),
                &sshd.user(),
                Config::default(),
                std::slice::from_ref(credential),
                kit::expect_host_key(&sshd.host_key_pub()),
            )
            .await
            {
                Err(ConnectError::Auth(AuthError::AllRefused { tried, .. })) => {
                    assert_eq!(tried, credential.describe(), "{what}");
                }
                Err(e) => panic!("{what}: expected a refusal, got {e}"),
                Ok(_) => panic!("{what}: logged in with a key the server does not know"),
            }
            refused += 1;
        } else {
            let _session = log_in_alone(&sshd, credential, &what).await;
            if credential.describe().starts_with("RSA ") {
                let log = sshd.log();
                assert_eq!(
                    signature_lines(&log, "rsa-sha2-512", &key_id(credential)),
                    1,
                    "{what}; {log}"
                );
            }
        }
        covered.push(what);
    }
    report("ssh-agent keys", &covered);
    assert_eq!(refused, 1);
    assert_eq!(
        covered
            .iter()
            .filter(|c| c.contains("ED25519-CERT SHA256:"))
            .count(),
        1
    );
    assert_eq!(covered.len(), HostKeyType::ALL.len() + 2);
}

/// Connects to a server with default algorithms except `config`, expecting the negotiation
/// to fail; returns the error.
async fn negotiation_failure(sshd: &Sshd, config: Config) -> NegotiationError {
    let credential = kit::client_credential(sshd);
    match dial(
        sshd.addr(),
        &sshd.user(),
        config,
        std::slice::from_ref(&credential),
        kit::expect_host_key(&sshd.host_key_pub()),
    )
    .await
    {
        Err(ConnectError::Transport(TransportError::Negotiation(e))) => e,
        Err(e) => panic!("expected a negotiation failure, got {e}\n{}", sshd.log()),
        Ok(_) => panic!("negotiated with a server of only weak algorithms"),
    }
}

#[tokio::test]
async fn a_server_with_only_weak_algorithms_is_refused_naming_both_lists() {
    let defaults = TransportConfig::default();
    let cases: [(&[&str], HostKeyType, &str, String, &str); 5] = [
        (
            &["KexAlgorithms diffie-hellman-group14-sha1"],
            HostKeyType::Ed25519,
            "key exchange method",
            // As sent: with the pseudo-algorithms of the first key exchange.
            format!(
                "{},ext-info-c,kex-strict-c-v00@openssh.com",
                defaults.kex.join(",")
            ),
            "diffie-hellman-group14-sha1,kex-strict-s-v00@openssh.com",
        ),
        (
            &["HostKeyAlgorithms ssh-rsa"],
            HostKeyType::Rsa,
            "host key algorithm",
            defaults.host_key_algorithms.join(","),
            "ssh-rsa",
        ),
        (
            &["Ciphers aes128-cbc"],
            HostKeyType::Ed25519,
            "cipher (client to server)",
            defaults.ciphers.join(","),
            "aes128-cbc",
        ),
        (
            &["Ciphers 3des-cbc,aes256-cbc"],
            HostKeyType::Ed25519,
            "cipher (client to server)",
            defaults.ciphers.join(","),
            "3des-cbc,aes256-cbc",
        ),
        (
            &["Ciphers aes128-ctr", "MACs hmac-sha1,hmac-sha2-256"],
            HostKeyType::Ed25519,
            "MAC (client to server)",
            defaults.macs.join(","),
            "hmac-sha1,hmac-sha2-256",
        ),
    ];
    let mut covered = Vec::new();
    for (lines, kind, category, ours, theirs) in cases {
        let sshd = Sshd::start_with(SshdOptions {
            extra_config: lines.iter().map(|l| (*l).to_owned()).collect(),
            host_key_type: kind,
            ..SshdOptions::default()
        })
        .await
        .unwrap_or_else(|e| panic!("sshd with {lines:?}: {e:#}"));
        let error = negotiation_failure(&sshd, Config::default()).await;
        let want = format!("no common {category}: we offer {ours}; the server offers {theirs}");
        assert_eq!(error.to_string(), want, "{lines:?}");
        match error {
            NegotiationError::NoCommon {
                category: c,
                ours: o,
                theirs: t,
            } => assert_eq!(
                (c, o.as_str(), t.as_str()),
                (category, ours.as_str(), theirs)
            ),
            other => panic!("{lines:?}: {other:?}"),
        }
        assert_eq!(sshd.count_in_log("Accepted publickey"), 0, "{}", sshd.log());
        covered.push(format!("{}: {want}", lines.join("; ")));
    }
    report("weak-only servers", &covered);
    assert_eq!(covered.len(), 5);
}

/// A handshake with Dropbear: `credential` alone, only Dropbear's host key trusted.
async fn dial_dropbear(
    dropbear: &Dropbear,
    config: Config,
    credential: &Credential,
) -> Result<(Session, Incoming), ConnectError> {
    dial(
        dropbear.addr(),
        &dropbear.user(),
        config,
        std::slice::from_ref(credential),
        kit::expect_host_key(&dropbear.host_key_pub()),
    )
    .await
}

/// What a Dropbear 2022.83 server with a `kind` host key signs with: `rsa-sha2-256` for
/// RSA (it has no rsa-sha2-512), else the key's own name.
fn dropbear_host_key_algorithm(kind: HostKeyType) -> &'static str {
    match kind {
        HostKeyType::Rsa => "rsa-sha2-256",
        other => other.key_name(),
    }
}

// Dropbear 2022.83 offers kex curve25519-sha256 and curve25519-sha256@libssh.org (no
// sntrup761, no mlkem), ciphers chacha20-poly1305@openssh.com, aes128-ctr and aes256-ctr,
// and MACs hmac-sha1 and hmac-sha2-256 only: no ETM MAC, so our aes-ctr suites cannot be
// used against it (checked below as a clean negotiation failure).

#[tokio::test]
async fn dropbear_with_every_host_key_type_carries_a_mib_each_way() {
    let echo = EchoServer::start().await.unwrap();
    let mut covered = Vec::new();
    for kind in HostKeyType::ALL {
        let dropbear = Dropbear::start_with(DropbearOptions {
            host_key_type: kind,
            ..DropbearOptions::default()
        })
        .await
        .unwrap();
        let credential = key_credential(dropbear.client_key());
        let what = format!("dropbear {} host key, defaults", kind.short_name());
        let (session, _incoming) = dial_dropbear(&dropbear, Config::default(), &credential)
            .await
            .unwrap_or_else(|e| panic!("{what}: {e}\n{}", dropbear.log()));
        let info = session.info();
        assert!(
            info.server_version.starts_with("SSH-2.0-dropbear"),
            "{}",
            info.server_version
        );
        assert_eq!(
            info.algorithms,
            chosen(
                "curve25519-sha256",
                dropbear_host_key_algorithm(kind),
                "chacha20-poly1305@openssh.com",
                None
            ),
            "{what}"
        );
        assert_eq!(info.host_key.type_name(), kind.key_name(), "{what}");
        move_bytes(&session, &echo, DROPBEAR_BYTES, &what).await;
        covered.push(what);
    }
    report("dropbear host keys", &covered);
    assert_eq!(covered.len(), HostKeyType::ALL.len());
    assert_eq!(echo.connections(), covered.len());
}

#[tokio::test]
async fn dropbear_kexes_ciphers_and_user_keys() {
    let dropbear = Dropbear::start().await.unwrap();
    let echo = EchoServer::start().await.unwrap();
    let credential = key_credential(dropbear.client_key());
    let mut covered = Vec::new();
    for kex in ["curve25519-sha256", "curve25519-sha256@libssh.org"] {
        let cipher = "chacha20-poly1305@openssh.com";
        let what = format!("dropbear {kex} {cipher}");
        let (session, _incoming) = dial_dropbear(&dropbear, forced(kex, cipher, None), &credential)
            .await
            .unwrap_or_else(|e| panic!("{what}: {e}\n{}", dropbear.log()));
        assert_eq!(
            session.info().algorithms,
            chosen(kex, "ssh-ed25519", cipher, None),
            "{what}"
        );
        move_bytes(&session, &echo, DROPBEAR_BYTES, &what).await;
        covered.push(what);
    }
    // Our CTR ciphers need an ETM MAC, which Dropbear 2022.83 lacks.
    for cipher in CTR_CIPHERS {
        let config = forced("curve25519-sha256", cipher, None);
        let ours = config.transport.macs.join(",");
        match dial_dropbear(&dropbear, config, &credential).await {
            Err(ConnectError::Transport(TransportError::Negotiation(e))) => assert_eq!(
                e.to_string(),
                format!(
                    "no common MAC (client to server): we offer {ours}; the server offers \
                     hmac-sha1,hmac-sha2-256"
                )
            ),
            Err(e) => panic!("dropbear {cipher}: expected no common MAC, got {e}"),
            Ok(_) => panic!("dropbear {cipher}: negotiated a MAC it does not have"),
        }
        covered.push(format!("dropbear {cipher}: no common MAC (expected)"));
    }
    // User keys of every type; Dropbear takes RSA signatures as rsa-sha2-256 only.
    for kind in HostKeyType::ALL {
        let key = dropbear
            .generate_client_key(&format!("user_{}", kind.short_name()), kind, true)
            .unwrap();
        let user = key_credential(&key);
        let what = format!("dropbear {} user key", kind.short_name());
        // "Pubkey auth succeeded for 'root' with ssh-rsa key SHA256:..."
        let fingerprint = key_id(&user).split_whitespace().nth(1).unwrap().to_owned();
        let succeeded = |log: &str| {
            log.lines()
                .filter(|l| {
                    l.contains("Pubkey auth succeeded for ")
                        && l.contains(&format!("with {} key {fingerprint}", kind.key_name()))
                })
                .count()
        };
        let before = succeeded(&dropbear.log());
        let (session, _incoming) = dial_dropbear(&dropbear, Config::default(), &user)
            .await
            .unwrap_or_else(|e| panic!("{what}: {e}\n{}", dropbear.log()));
        assert_eq!(session.info().authenticated_with, user.describe(), "{what}");
        echo_once(&session, &echo, &what).await;
        wait_log_count(&what, || dropbear.log(), succeeded, before + 1).await;
        covered.push(what);
    }
    report("dropbear kex, ciphers, user keys", &covered);
    assert_eq!(covered.len(), 2 + 2 + HostKeyType::ALL.len());
}

#[tokio::test]
async fn a_dropbear_remote_listener_on_port_0_round_trips() {
    let dropbear = Dropbear::start().await.unwrap();
    let credential = key_credential(dropbear.client_key());
    let (session, mut incoming) = dial_dropbear(&dropbear, Config::default(), &credential)
        .await
        .unwrap_or_else(|e| panic!("dropbear: {e}\n{}", dropbear.log()));
    let port = session.tcpip_forward("127.0.0.1", 0).await.unwrap();
    assert_ne!(port, 0);
    let server_side = SocketAddr::from((Ipv4Addr::LOCALHOST, u16::try_from(port).unwrap()));
    let echoer = tokio::spawn(async move {
        let offer = incoming.recv().await.expect("a forwarded connection");
        let Forwarded::Tcpip { port: p, .. } = offer.kind.clone() else {
            panic!("not tcpip: {:?}", offer.kind);
        };
        assert_eq!(p, port);
        let channel = offer.accept();
        let (mut rd, mut wr) = tokio::io::split(channel);
        tokio::io::copy(&mut rd, &mut wr).await.unwrap();
        tokio::io::AsyncWriteExt::shutdown(&mut wr).await.unwrap();
        incoming
    });
    let tcp = TcpStream::connect(server_side).await.unwrap();
    transfer_both_ways(tcp, DROPBEAR_BYTES).await.unwrap();
    let _incoming = echoer.await.unwrap();
    eprintln!("dropbear remote listener: 1 combination (port {port})");
}

#[tokio::test]
async fn mlkem768x25519_interoperates_with_openssh_10() {
    let sshd = ModernSshd::start().await.unwrap();
    assert!(
        sshd.banner().starts_with("SSH-2.0-OpenSSH_10."),
        "{}",
        sshd.banner()
    );
    let echo = EchoServer::start().await.unwrap();

    // Our defaults pick mlkem first.
    let (cipher, mac) = default_suite();
    let (session, _incoming) = kit::connect(&sshd).await;
    assert_eq!(
        session.info().algorithms,
        chosen(MLKEM, "ssh-ed25519", &cipher, mac.as_deref())
    );
    echo_once(&session, &echo, "mlkem by default").await;
    drop(session);

    let mut covered = vec![format!("OpenSSH 10 defaults: {MLKEM} {cipher}")];
    covered.extend(run_kex_cipher_matrix(&sshd, &[MLKEM]).await);
    report("OpenSSH 10 mlkem", &covered);
    assert_eq!(covered.len(), 1 + 7);
}

/// OpenSSH 9.8+ `PerSourcePenalties`: after a failed login from this address the server
/// drops new connections from it before its banner. The error says that the server may be
/// refusing this address, not just that it closed.
#[tokio::test]
async fn a_penalised_address_is_told_apart_in_the_error() {
    let sshd = ModernSshd::start_with(SshdOptions {
        extra_config: vec!["PerSourcePenalties authfail:60s min:1s max:120s".into()],
        ..SshdOptions::default()
    })
    .await
    .unwrap();
    let stranger = sshd
        .generate_client_key_of("stranger", HostKeyType::Ed25519, false)
        .unwrap();
    let refused = dial(
        sshd.addr(),
        &sshd.user(),
        Config::default(),
        &[key_credential(&stranger)],
        kit::expect_host_key(&sshd.host_key_pub()),
    )
    .await;
    assert!(
        matches!(refused, Err(ConnectError::Auth(_))),
        "{:?}",
        refused.err()
    );
    // sshd's listener applies the penalty once it has reaped that connection's process.
    wait_log_count(
        "the penalty for the failed login",
        || sshd.log(),
        |log| {
            log.lines()
                .filter(|l| {
                    l.contains("activating ipv4 penalty") && l.contains("failed authentication")
                })
                .count()
        },
        1,
    )
    .await;
    let err = dial(
        sshd.addr(),
        &sshd.user(),
        Config::default(),
        &[kit::client_credential(&sshd)],
        kit::expect_host_key(&sshd.host_key_pub()),
    )
    .await
    .err()
    .unwrap_or_else(|| panic!("a penalised address is refused; log:\n{}", sshd.log()));
    let text = err.to_string();
    assert!(
        text.contains("may be refusing this address") && text.contains("PerSourcePenalties"),
        "{text}\n{}",
        sshd.log()
    );
}
