//! The real `tunneld` binary: `check` exit codes and messages, `run` with SIGTERM, and
//! authentication through ssh-agent.

use std::process::{Command, Stdio};
use std::time::Duration;

use tokio::net::TcpStream;
use tunneld_tests::net::{echo_roundtrip, free_port};
use tunneld_tests::{EchoServer, Sshd};

use crate::harness::*;

/// `tunneld run` stops within this bound on SIGTERM (SPEC: 5 s).
const STOP_BOUND: Duration = Duration::from_secs(5);

/// A config for `tunneld run`: its control socket in the test's own folder.
fn write_run_config(dir: &std::path::Path, text: &str) -> std::path::PathBuf {
    let socket = dir.join("tunneld.sock");
    write_config(
        dir,
        &format!("[daemon]\nsocket = \"{}\"\n{text}", socket.display()),
    )
}

fn write_config(dir: &std::path::Path, text: &str) -> std::path::PathBuf {
    let path = dir.join("tunneld.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn check_accepts_a_good_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(
        dir.path(),
        "[tunnels.home]\nhost = \"example.org\"\nuser = \"u\"\nremote = [\"2222:localhost:22\"]\nlocal = [\"8080:intranet:80\"]\n",
    );
    let out = Command::new(tunneld_bin())
        .args(["check", "-c"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        stdout.contains("home: u@example.org:22  -L 8080:intranet:80  -R 2222:localhost:22"),
        "{stdout}"
    );
    assert!(stdout.contains("ok, 1 tunnel"), "{stdout}");
}

#[test]
fn check_reports_every_error_with_position_and_exits_78() {
    let dir = tempfile::tempdir().unwrap();
    let text = "[tunnels.a]\nhost = \"h\"\nlocal = [\"8080:x\"]\n\n[tunnels.b]\nhost = \"h\"\nremote = [\"2222:localhost:22\"]\nserver_alive_interval = \"10\"\nbogus = 1\n";
    let path = write_config(dir.path(), text);
    let out = Command::new(tunneld_bin())
        .args(["check", "-c"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78), "{out:?}");
    let stderr = String::from_utf8(out.stderr).unwrap();
    let lines: Vec<&str> = stderr.lines().collect();
    let p = path.display().to_string();
    assert_eq!(lines.len(), 3, "{stderr}");
    assert!(lines[0].starts_with(&format!("{p}:3:10: ")), "{stderr}");
    assert!(lines[1].starts_with(&format!("{p}:8:25: ")), "{stderr}");
    assert!(lines[2].starts_with(&format!("{p}:9:1: ")), "{stderr}");
    // run refuses the same file the same way.
    let out = Command::new(tunneld_bin())
        .args(["run", "-c"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
}

#[test]
fn missing_file_and_bad_usage() {
    let out = Command::new(tunneld_bin())
        .args(["check", "-c", "/nonexistent/tunneld.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/tunneld.toml"));
    let out = Command::new(tunneld_bin())
        .arg("frobnicate")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_serves_then_stops_on_sigterm_and_sigint_with_exit_0() {
    let mut sshd = Sshd::start().await.unwrap();
    let echo = EchoServer::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    for sig in [libc::SIGTERM, libc::SIGINT] {
        let port = free_port(std::net::Ipv4Addr::LOCALHOST.into());
        let text = tunnel_toml(
            &sshd,
            "t",
            &format!(
                "local = [\"{port}:127.0.0.1:{}\"]\nremote = [\"0:127.0.0.1:{}\"]",
                echo.port(),
                echo.port()
            ),
        );
        let path = write_run_config(dir.path(), &text);
        let mut run = Running::start(&path, &[]);
        run.wait_line("remote forward active");
        let stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        echo_roundtrip(stream, b"through the binary").await.unwrap();
        // A connection left open must not hold up the stop.
        let _open = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let disconnects_before = sshd.count_in_log("Received disconnect");
        run.signal(sig);
        let (code, took) = run.wait_exit(STOP_BOUND);
        assert_eq!(code, Some(0), "signal {sig}");
        eprintln!("stopped on signal {sig} in {took:?}");
        // Our listener is gone, and the server saw a polite disconnect.
        assert!(TcpStream::connect(("127.0.0.1", port)).await.is_err());
        tunneld_tests::net::wait_until(UP_TIMEOUT, "sshd logs our disconnect", || {
            sshd.count_in_log("Received disconnect") == disconnects_before + 1
        })
        .await
        .unwrap();
    }
    sshd.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_encrypted_key_works_through_ssh_agent() {
    let sshd = Sshd::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("locked");
    let ok = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "secret words", "-f"])
        .arg(&key)
        .status()
        .unwrap();
    assert!(ok.success());
    let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    let mut ak = std::fs::OpenOptions::new()
        .append(true)
        .open(sshd.authorized_keys())
        .unwrap();
    std::io::Write::write_all(&mut ak, public.as_bytes()).unwrap();

    // A private agent, loaded through SSH_ASKPASS so nothing reads a terminal.
    let sock = dir.path().join("agent.sock");
    let mut agent = Command::new("ssh-agent")
        .arg("-D")
        .arg("-a")
        .arg(&sock)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    tunneld_tests::net::wait_until(UP_TIMEOUT, "agent socket", || sock.exists())
        .await
        .unwrap();
    let askpass = dir.path().join("askpass");
    std::fs::write(&askpass, "#!/bin/sh\necho 'secret words'\n").unwrap();
    std::fs::set_permissions(
        &askpass,
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .unwrap();
    let added = Command::new("ssh-add")
        .arg(&key)
        .env("SSH_AUTH_SOCK", &sock)
        .env("SSH_ASKPASS", &askpass)
        .env("SSH_ASKPASS_REQUIRE", "force")
        .env("DISPLAY", ":0")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(added.status.success(), "{added:?}");

    let text = tunnel_toml(&sshd, "t", "dynamic = [\"0\"]").replace(
        &sshd.client_key().display().to_string(),
        &key.display().to_string(),
    );
    let path = write_run_config(dir.path(), &text);
    let mut run = Running::start(&path, &[("SSH_AUTH_SOCK", sock.to_str().unwrap())]);
    run.wait_line("connected");
    run.signal(libc::SIGTERM);
    assert_eq!(run.wait_exit(STOP_BOUND).0, Some(0));
    assert!(sshd.log().contains("Accepted publickey"), "{}", sshd.log());
    let _ = agent.kill();
    let _ = agent.wait();
}

#[test]
fn every_example_in_config_passes_check() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../config");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let out = Command::new(tunneld_bin())
                .args(["check", "-c"])
                .arg(&path)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}: {}",
                path.display(),
                String::from_utf8_lossy(&out.stderr)
            );
            checked += 1;
            // The fleet example reads its drop-in folder.
            if path.ends_with("fleet.toml") {
                let drop_in = dir.join("tunnels.d/box-ssh.toml");
                let stdout = String::from_utf8_lossy(&out.stdout);
                assert!(
                    stdout.contains(&format!("{}: ok, 1 tunnel", drop_in.display())),
                    "{stdout}"
                );
            }
        }
    }
    // A test that finds nothing must fail: keep this count in step with config/.
    assert_eq!(checked, 5, "examples found in {}", dir.display());
}

/// `localhost` is two addresses; when one is taken the forward serves on the other and
/// the log says which could not be bound (as ssh warns), rather than staying silent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_taken_loopback_address_is_reported_and_the_other_serves() {
    if std::net::TcpListener::bind(("::1", 0)).is_err() {
        eprintln!("skipped: no IPv6 loopback on this machine");
        return;
    }
    let sshd = Sshd::start().await.unwrap();
    let echo = EchoServer::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let held = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap();
    let port = held.local_addr().unwrap().port();
    let text = tunnel_toml(
        &sshd,
        "t",
        &format!("local = [\"{port}:127.0.0.1:{}\"]", echo.port()),
    );
    let path = write_run_config(dir.path(), &text);
    let mut run = Running::start(&path, &[]);
    run.wait_line(&format!("cannot listen on 127.0.0.1:{port}"));
    run.wait_line("connected");
    let stream = TcpStream::connect(("::1", port)).await.unwrap();
    echo_roundtrip(stream, b"over ::1").await.unwrap();
    run.signal(libc::SIGTERM);
    let (code, _) = run.wait_exit(STOP_BOUND);
    assert_eq!(code, Some(0));
}

/// One HTTP/1.1 request to the metrics listener; the status code and body.
async fn http_get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut raw = String::new();
    tokio::time::timeout(UP_TIMEOUT, s.read_to_string(&mut raw))
        .await
        .unwrap()
        .unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let code = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (code, body.to_owned())
}

/// The samples of a Prometheus text page, `name{labels}` → value, checking the format:
/// every sample's family announced by HELP and TYPE lines before it.
fn parse_prometheus(text: &str) -> std::collections::HashMap<String, f64> {
    let mut typed = std::collections::HashSet::new();
    let mut helped = std::collections::HashSet::new();
    let mut samples = std::collections::HashMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            helped.insert(rest.split_whitespace().next().unwrap().to_owned());
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut w = rest.split_whitespace();
            let name = w.next().unwrap().to_owned();
            let kind = w.next().unwrap();
            assert!(["gauge", "counter"].contains(&kind), "{line}");
            typed.insert(name);
        } else {
            let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("{line}"));
            let name = series.split('{').next().unwrap();
            assert!(
                name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                "{line}"
            );
            assert!(typed.contains(name) && helped.contains(name), "{line}");
            if series.contains('{') {
                assert!(series.ends_with('}'), "{line}");
            }
            let v: f64 = value.parse().unwrap_or_else(|_| panic!("{line}"));
            assert!(
                samples.insert(series.to_owned(), v).is_none(),
                "twice: {line}"
            );
        }
    }
    samples
}

/// `[daemon] metrics`: a real scrape parsed as Prometheus text, values moving with traffic,
/// `/ready` 200 while the tunnel is up and 503 once its server is gone; garbage answered
/// with 400 while the daemon carries on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_and_ready_follow_the_tunnel() {
    let mut sshd = Sshd::start().await.unwrap();
    let echo = EchoServer::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port(std::net::Ipv4Addr::LOCALHOST.into());
    let metrics: std::net::SocketAddr = (
        std::net::Ipv4Addr::LOCALHOST,
        free_port(std::net::Ipv4Addr::LOCALHOST.into()),
    )
        .into();
    let spec = format!("{port}:127.0.0.1:{}", echo.port());
    let text = tunnel_toml(
        &sshd,
        "t",
        &format!("local = [\"{spec}\"]\nserver_alive_interval = \"1s\""),
    );
    let path = write_run_config(dir.path(), &text);
    let text = std::fs::read_to_string(&path).unwrap().replace(
        "[daemon]\n",
        &format!("[daemon]\nmetrics = \"{metrics}\"\n"),
    );
    std::fs::write(&path, text).unwrap();
    let mut run = Running::start(&path, &[]);
    run.wait_line("connected");
    tunneld_tests::net::wait_until_async(UP_TIMEOUT, "/ready to say 200", || async {
        http_get(metrics, "/ready").await.0 == 200
    })
    .await
    .unwrap();

    let labels = format!("tunnel=\"t\",forward=\"{spec}\",kind=\"local\"");
    let before = parse_prometheus(&http_get(metrics, "/metrics").await.1);
    assert_eq!(before["tunneld_tunnel_up{tunnel=\"t\"}"], 1.0);
    assert_eq!(
        before["tunneld_tunnel_state{tunnel=\"t\",state=\"up\"}"],
        1.0
    );
    assert_eq!(
        before["tunneld_tunnel_state{tunnel=\"t\",state=\"backoff\"}"],
        0.0
    );
    assert_eq!(before["tunneld_tunnel_reconnects_total{tunnel=\"t\"}"], 0.0);
    assert!(before["tunneld_tunnel_last_connect_timestamp_seconds{tunnel=\"t\"}"] > 1.7e9);
    assert_eq!(
        before[&format!("tunneld_forward_connections_total{{{labels}}}")],
        0.0
    );
    assert_eq!(before[&format!("tunneld_forward_active{{{labels}}}")], 1.0);
    assert_eq!(
        before[&format!("tunneld_forward_listen_info{{{labels},listen=\"127.0.0.1:{port}\"}}")],
        1.0
    );

    let stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    echo_roundtrip(stream, b"counted by the metrics")
        .await
        .unwrap();
    // Heartbeats every second: a round trip is measured soon.
    tunneld_tests::net::wait_until_async(UP_TIMEOUT, "a heartbeat round trip", || async {
        parse_prometheus(&http_get(metrics, "/metrics").await.1)
            .contains_key("tunneld_tunnel_heartbeat_rtt_seconds{tunnel=\"t\"}")
    })
    .await
    .unwrap();
    let after = parse_prometheus(&http_get(metrics, "/metrics").await.1);
    assert_eq!(
        after[&format!("tunneld_forward_connections_total{{{labels}}}")],
        1.0
    );
    let moved = b"counted by the metrics".len() as f64;
    assert_eq!(
        after[&format!("tunneld_forward_bytes_out_total{{{labels}}}")],
        moved
    );
    assert_eq!(
        after[&format!("tunneld_forward_bytes_in_total{{{labels}}}")],
        moved
    );
    let rtt = after["tunneld_tunnel_heartbeat_rtt_seconds{tunnel=\"t\"}"];
    assert!(rtt > 0.0 && rtt < 1.0, "{rtt}");

    // Garbage and unknown paths get answers, not a crash.
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = TcpStream::connect(metrics).await.unwrap();
        s.write_all(b"\x16\x03\x01 not http at all\r\n\r\n")
            .await
            .unwrap();
        let mut raw = String::new();
        s.read_to_string(&mut raw).await.unwrap();
        assert!(raw.starts_with("HTTP/1.1 400"), "{raw}");
    }
    assert_eq!(http_get(metrics, "/nope").await.0, 404);

    sshd.stop().await;
    tunneld_tests::net::wait_until_async(UP_TIMEOUT, "/ready to say 503", || async {
        http_get(metrics, "/ready").await.0 == 503
    })
    .await
    .unwrap();
    let down = parse_prometheus(&http_get(metrics, "/metrics").await.1);
    assert_eq!(down["tunneld_tunnel_up{tunnel=\"t\"}"], 0.0);
    run.signal(libc::SIGTERM);
    let (code, _) = run.wait_exit(STOP_BOUND);
    assert_eq!(code, Some(0));
}
