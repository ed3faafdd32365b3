use super::*;
use crate::client_run::{CLIENT_RUN_TIMEOUT, assert_ran, run};
use crate::net::{wait_port_open, wait_until};

#[tokio::test]
async fn login_with_generated_keys_and_strict_known_hosts() {
    let sshd = Sshd::start().await.unwrap();
    assert_eq!(sshd.addr(), SocketAddr::from(([127, 0, 0, 1], sshd.port())));
    assert!(sshd.host_key_pub().starts_with("ssh-ed25519 AAAA"));
    let kh = std::fs::read_to_string(sshd.known_hosts()).unwrap();
    assert_eq!(
        kh,
        format!("[127.0.0.1]:{} {}\n", sshd.port(), sshd.host_key_pub())
    );

    // Spelled out rather than through ssh_args, as a user would type it.
    let mut cmd = tokio::process::Command::new("ssh");
    cmd.arg("-F")
        .arg("/dev/null")
        .arg("-i")
        .arg(sshd.client_key());
    cmd.arg("-o").arg(format!(
        "UserKnownHostsFile={}",
        sshd.known_hosts().display()
    ));
    cmd.args(["-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes"]);
    cmd.arg("-p").arg(sshd.port().to_string());
    cmd.arg(format!("{}@127.0.0.1", sshd.user()))
        .kill_on_drop(true);
    let out = run(cmd, &["echo", "logged-in"]).await;
    assert_ran(&out, "ssh login", "sshd", &sshd.log());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "logged-in\n");
    sshd.wait_log("Accepted publickey", Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(sshd.count_in_log("Accepted publickey"), 1);
}

#[tokio::test]
async fn wrong_host_key_is_refused() {
    let sshd = Sshd::start().await.unwrap();
    let other = Sshd::start().await.unwrap();
    // `other`'s key recorded under `sshd`'s address: strict checking must refuse.
    std::fs::write(
        sshd.known_hosts(),
        format!("[127.0.0.1]:{} {}\n", sshd.port(), other.host_key_pub()),
    )
    .unwrap();
    let out = run(sshd.ssh_command(), &["true"]).await;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("HOST IDENTIFICATION HAS CHANGED"),
        "{stderr}"
    );
}

/// `sshd.ssh_command()` but logging in with `key` instead of the default client key.
fn ssh_with_key(sshd: &Sshd, key: &Path) -> tokio::process::Command {
    let mut args = sshd.ssh_args();
    let i = args
        .iter()
        .position(|a| a == "-i")
        .expect("ssh_args has -i");
    args[i + 1] = key.display().to_string();
    let mut cmd = tokio::process::Command::new("ssh");
    cmd.args(&args).stdin(Stdio::null()).kill_on_drop(true);
    cmd
}

#[tokio::test]
async fn extra_keys_of_each_kind() {
    let sshd = Sshd::start().await.unwrap();
    for kind in ["ecdsa", "rsa", "ed25519"] {
        let key = sshd
            .generate_client_key(&format!("k-{kind}"), kind, true)
            .unwrap();
        let out = run(ssh_with_key(&sshd, &key), &["true"]).await;
        assert_ran(&out, kind, "sshd", &sshd.log());
    }
    assert_eq!(sshd.count_in_log("Accepted publickey"), 3);

    let unauthorized = sshd
        .generate_client_key("stranger", "ed25519", false)
        .unwrap();
    let out = run(ssh_with_key(&sshd, &unauthorized), &["true"]).await;
    assert!(!out.status.success(), "an unauthorized key logged in");
    assert!(
        sshd.generate_client_key("../escape", "ed25519", true)
            .is_err()
    );
}

#[tokio::test]
async fn bad_extra_config_is_reported_with_sshds_message() {
    let opts = SshdOptions {
        extra_config: vec!["NoSuchKeyword yes".into()],
        ..Default::default()
    };
    let err = Sshd::start_with(opts)
        .await
        .err()
        .expect("config accepted")
        .to_string();
    assert!(err.contains("NoSuchKeyword"), "{err}");
}

#[tokio::test]
async fn extra_config_comes_first_and_wins() {
    let opts = SshdOptions {
        extra_config: vec!["PubkeyAuthentication no".into()],
        ..Default::default()
    };
    let sshd = Sshd::start_with(opts).await.unwrap();
    let cfg = std::fs::read_to_string(sshd.dir().join("sshd_config")).unwrap();
    assert!(cfg.starts_with("PubkeyAuthentication no\n"), "{cfg}");
    let out = run(sshd.ssh_command(), &["true"]).await;
    assert!(!out.status.success(), "pubkey login worked though disabled");
}

#[tokio::test]
async fn kill_sessions_ends_clients_and_keeps_the_listener() {
    let sshd = Sshd::start().await.unwrap();
    let mut cmd = sshd.ssh_command();
    cmd.args(["sleep", "30"])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut client = cmd.spawn().unwrap();
    sshd.wait_log("Starting session", Duration::from_secs(15))
        .await
        .unwrap();
    assert!(!sshd.session_pids().is_empty());

    sshd.kill_sessions();
    let status = timeout(Duration::from_secs(10), client.wait())
        .await
        .expect("ssh still running after kill_sessions")
        .unwrap();
    assert!(!status.success());
    wait_until(Duration::from_secs(5), "no session processes", || {
        sshd.session_pids().is_empty()
    })
    .await
    .unwrap();

    let out = run(sshd.ssh_command(), &["true"]).await;
    assert_ran(&out, "login after kill_sessions", "sshd", &sshd.log());
}

#[tokio::test]
async fn stop_then_restart_on_the_same_port() {
    let mut sshd = Sshd::start().await.unwrap();
    let port = sshd.port();
    let mut cmd = sshd.ssh_command();
    cmd.args(["sleep", "30"])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut client = cmd.spawn().unwrap();
    sshd.wait_log("Starting session", Duration::from_secs(15))
        .await
        .unwrap();

    sshd.stop().await;
    assert!(!sshd.is_running());
    timeout(Duration::from_secs(10), client.wait())
        .await
        .expect("ssh session survived stop")
        .unwrap();
    assert!(TcpStream::connect(sshd.addr()).await.is_err());
    let out = run(sshd.ssh_command(), &["true"]).await;
    assert!(!out.status.success());

    sshd.restart().await.unwrap();
    assert_eq!(sshd.port(), port);
    assert!(sshd.is_running());
    let out = run(sshd.ssh_command(), &["true"]).await;
    assert_ran(&out, "login after restart", "sshd", &sshd.log());
    assert_eq!(sshd.count_in_log(LISTENING_LINE), 2, "log keeps both runs");

    // Restart while running stops first.
    sshd.restart().await.unwrap();
    wait_port_open(sshd.addr(), Duration::from_secs(5))
        .await
        .unwrap();
    let out = run(sshd.ssh_command(), &["true"]).await;
    assert_ran(&out, "login after second restart", "sshd", &sshd.log());
}

#[tokio::test]
async fn drop_kills_listener_and_sessions() {
    let sshd = Sshd::start().await.unwrap();
    let dir = sshd.dir().to_path_buf();
    let listener = sshd.child.as_ref().unwrap().id() as i32;
    let mut cmd = sshd.ssh_command();
    cmd.args(["sleep", "30"])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut client = cmd.spawn().unwrap();
    sshd.wait_log("Starting session", Duration::from_secs(15))
        .await
        .unwrap();
    let sessions = sshd.session_pids();
    assert!(!sessions.is_empty());

    let addr = sshd.addr();
    drop(sshd);
    assert!(!dir.exists(), "tempdir left behind");
    for pid in std::iter::once(listener).chain(sessions) {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let state = stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .split_whitespace()
            .next();
        assert!(
            matches!(state, None | Some("Z" | "X")),
            "pid {pid} alive: {stat}"
        );
    }
    timeout(Duration::from_secs(10), client.wait())
        .await
        .expect("ssh outlived sshd")
        .unwrap();
    assert!(TcpStream::connect(addr).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_servers_at_once_on_a_multi_thread_runtime() {
    let (a, b, c) = tokio::join!(Sshd::start(), Sshd::start(), Sshd::start());
    let all = [a.unwrap(), b.unwrap(), c.unwrap()];
    let mut ports: Vec<u16> = all.iter().map(Sshd::port).collect();
    ports.sort_unstable();
    ports.dedup();
    assert_eq!(ports.len(), 3);
    for sshd in &all {
        let out = run(sshd.ssh_command(), &["true"]).await;
        assert_ran(&out, "login", "sshd", &sshd.log());
    }
}

#[tokio::test]
async fn restart_waits_out_a_port_held_for_a_moment() {
    let mut sshd = Sshd::start().await.unwrap();
    sshd.stop().await;
    let squatter = std::net::TcpListener::bind(sshd.addr()).unwrap();
    let log = sshd.log.clone();
    let bind_failures = move || log.lock().unwrap().matches(BIND_FAILED_LINE).count();
    assert_eq!(bind_failures(), 0);
    let release = async {
        // Let go once sshd has tried and failed at least once.
        wait_until(Duration::from_secs(10), "a failed bind", || {
            bind_failures() > 0
        })
        .await
        .unwrap();
        drop(squatter);
    };
    let (restarted, ()) = tokio::join!(sshd.restart(), release);
    restarted.unwrap();
    let out = run(sshd.ssh_command(), &["true"]).await;
    assert_ran(&out, "login after the port came back", "sshd", &sshd.log());
}

#[tokio::test]
async fn direct_tcpip_hops_are_logged() {
    use tokio::io::AsyncWriteExt;
    let sshd = Sshd::start().await.unwrap();
    let echo = crate::servers::EchoServer::start().await.unwrap();
    let mut args = sshd.ssh_args();
    let dest = args.pop().unwrap();
    let mut cmd = tokio::process::Command::new("ssh");
    cmd.args(&args)
        .arg("-W")
        .arg(echo.addr().to_string())
        .arg(dest);
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"through the hop\n").await.unwrap();
    drop(stdin);
    let out = timeout(CLIENT_RUN_TIMEOUT, child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "through the hop\n");
    assert_eq!(echo.connections(), 1);
    let target = format!("target 127.0.0.1 port {}", echo.port());
    sshd.wait_log(&target, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(
        sshd.count_in_log("server_request_direct_tcpip"),
        1,
        "{}",
        sshd.log()
    );
}

#[tokio::test]
async fn listens_on_ipv6_loopback() {
    let v6 = IpAddr::V6(std::net::Ipv6Addr::LOCALHOST);
    if std::net::TcpListener::bind((v6, 0)).is_err() {
        eprintln!("no IPv6 loopback here: skipping");
        return;
    }
    let sshd = Sshd::start_with(SshdOptions {
        listen: v6,
        ..Default::default()
    })
    .await
    .unwrap();
    assert_eq!(sshd.addr().ip(), v6);
    let kh = std::fs::read_to_string(sshd.known_hosts()).unwrap();
    assert!(
        kh.starts_with(&format!("[::1]:{} ssh-ed25519 ", sshd.port())),
        "{kh}"
    );
    let out = run(sshd.ssh_command(), &["true"]).await;
    assert_ran(&out, "login over ::1", "sshd", &sshd.log());
    assert!(
        Sshd::start_with(SshdOptions {
            listen: "192.0.2.1".parse().unwrap(),
            ..Default::default()
        })
        .await
        .is_err()
    );
}
