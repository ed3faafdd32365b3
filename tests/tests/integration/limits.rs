//! Hostile load on the listeners: the per-forward connection limit, idle SOCKS clients
//! (slowloris), and running out of file descriptors.

use std::net::Ipv4Addr;
use std::sync::atomic::Ordering;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tunneld_core::{TunnelState, TunnelStatus};
use tunneld_tests::net::echo_roundtrip;
use tunneld_tests::socks::socks5_connect;
use tunneld_tests::{EchoServer, Sshd};

use crate::harness::*;

/// A connection the forward turned away: closed without carrying a byte (EOF, or a reset
/// when what we wrote was left unread).
async fn assert_closed_unserved(mut s: TcpStream, what: &str) {
    // The write may already fail if the close won the race.
    let _ = s.write_all(b"x").await;
    let mut buf = Vec::new();
    let read = tokio::time::timeout(UP_TIMEOUT, s.read_to_end(&mut buf))
        .await
        .unwrap_or_else(|_| panic!("{what}: still open after {UP_TIMEOUT:?}"));
    match read {
        Ok(_) => assert!(buf.is_empty(), "{what}: carried {buf:?}"),
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{what}"),
    }
}

fn counter(
    status: &TunnelStatus,
    spec: &str,
    pick: fn(&tunneld_core::ForwardCounters) -> u64,
) -> u64 {
    pick(&status.forward(spec).expect("forward").counters)
}

/// Polls the first tunnel's status until `pred` holds: the counters are updated in place,
/// without a status change to wait on.
async fn wait_counters(
    daemon: &tunneld_core::Daemon,
    what: &str,
    mut pred: impl FnMut(&TunnelStatus) -> bool,
) -> TunnelStatus {
    let deadline = tokio::time::Instant::now() + UP_TIMEOUT;
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(10));
    loop {
        tick.tick().await;
        let s = daemon.status().remove(0);
        if pred(&s) {
            return s;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: never happened; last status: {s:#?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_connections_turns_away_what_is_over_the_limit_on_every_kind() {
    let sshd = Sshd::start().await.unwrap();
    let echo = EchoServer::start().await.unwrap();
    let local = format!("127.0.0.1:0:127.0.0.1:{}", echo.port());
    let remote = format!("0:127.0.0.1:{}", echo.port());
    let extra = format!(
        "max_connections = 2\nlocal = [\"{local}\"]\nremote = [\"{remote}\"]\ndynamic = [\"0\"]"
    );
    let (daemon, status) = start_up(&tunnel_toml(&sshd, "m", &extra), "m").await;
    let l_addr = bound_addr(&status, &local);
    let r_addr = (Ipv4Addr::LOCALHOST, remote_port(&status, &remote));
    let d_addr = bound_addr(&status, "0");

    // Two each, carrying traffic.
    let mut held = Vec::new();
    for i in 0..2 {
        let mut l = TcpStream::connect(l_addr).await.unwrap();
        echo_roundtrip(&mut l, format!("local {i}").as_bytes())
            .await
            .unwrap();
        let mut r = TcpStream::connect(r_addr).await.unwrap();
        echo_roundtrip(&mut r, format!("remote {i}").as_bytes())
            .await
            .unwrap();
        let mut d = socks5_connect(d_addr, "127.0.0.1", echo.port())
            .await
            .unwrap();
        echo_roundtrip(&mut d, format!("dynamic {i}").as_bytes())
            .await
            .unwrap();
        held.push((l, r, d));
    }
    // The third of each is turned away.
    assert_closed_unserved(TcpStream::connect(l_addr).await.unwrap(), "local #3").await;
    assert_closed_unserved(TcpStream::connect(r_addr).await.unwrap(), "remote #3").await;
    let err = socks5_connect(d_addr, "127.0.0.1", echo.port())
        .await
        .unwrap_err();
    assert!(!format!("{err:#}").is_empty());
    let s = wait_counters(&daemon, "one refusal counted per forward", |s| {
        [&local, &remote, "0"]
            .iter()
            .all(|f| counter(s, f, |c| c.refused.load(Ordering::Relaxed)) == 1)
    })
    .await;
    for f in [&local, &remote, "0"] {
        assert_eq!(
            counter(&s, f, |c| c.active.load(Ordering::Relaxed)),
            2,
            "{f}"
        );
        assert_eq!(
            counter(&s, f, |c| c.total.load(Ordering::Relaxed)),
            2,
            "{f}"
        );
    }
    // The echo server saw exactly the six admitted connections.
    assert_eq!(echo.connections(), 6);

    // One of each closes: a new one is let in.
    drop(held.pop());
    wait_counters(&daemon, "a slot freed on every forward", |s| {
        [&local, &remote, "0"]
            .iter()
            .all(|f| counter(s, f, |c| c.active.load(Ordering::Relaxed)) == 1)
    })
    .await;
    echo_roundtrip(TcpStream::connect(l_addr).await.unwrap(), b"local again")
        .await
        .unwrap();
    echo_roundtrip(TcpStream::connect(r_addr).await.unwrap(), b"remote again")
        .await
        .unwrap();
    let d = socks5_connect(d_addr, "127.0.0.1", echo.port())
        .await
        .unwrap();
    echo_roundtrip(d, b"dynamic again").await.unwrap();
    assert_eq!(daemon.status()[0].state, TunnelState::Up);
    daemon.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_socks_clients_are_dropped_and_free_their_slots() {
    let sshd = Sshd::start().await.unwrap();
    let echo = EchoServer::start().await.unwrap();
    let extra = "max_connections = 3\ndynamic = [\"0\"]";
    let (daemon, status) = start_up(&tunnel_toml(&sshd, "s", extra), "s").await;
    let proxy = bound_addr(&status, "0");
    // Slowloris: three clients that never finish the handshake fill the forward...
    let mut idle = Vec::new();
    for greeting in [&b""[..], &b"\x05"[..], &b"\x05\x01\x00\x05\x01"[..]] {
        let mut s = TcpStream::connect(proxy).await.unwrap();
        s.write_all(greeting).await.unwrap();
        idle.push(s);
    }
    wait_counters(&daemon, "three idle clients admitted", |s| {
        counter(s, "0", |c| c.active.load(Ordering::Relaxed)) == 3
    })
    .await;
    assert!(
        socks5_connect(proxy, "127.0.0.1", echo.port())
            .await
            .is_err()
    );
    // ...until the handshake timeout closes them (within the bound, well before it).
    let mut chose = [0u8; 2];
    idle[2].read_exact(&mut chose).await.unwrap();
    assert_eq!(chose, [5, 0], "SOCKS5 method selection: no authentication");
    for (i, s) in idle.into_iter().enumerate() {
        assert_closed_unserved(s, &format!("idle client {i}")).await;
    }
    wait_counters(&daemon, "the idle clients' slots freed", |s| {
        counter(s, "0", |c| c.active.load(Ordering::Relaxed)) == 0
    })
    .await;
    let s = socks5_connect(proxy, "127.0.0.1", echo.port())
        .await
        .unwrap();
    echo_roundtrip(s, b"served after the flood").await.unwrap();
    assert_eq!(echo.connections(), 1);
    daemon.shutdown().await;
}

/// With the open-file limit too low for the connections asked for, accept fails with
/// EMFILE: the forward pauses, doubling the pause (never spinning), and recovers once
/// descriptors are free again; the session stays up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_file_descriptors_backs_off_and_recovers() {
    let sshd = Sshd::start().await.unwrap();
    let echo = EchoServer::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let spec = format!("127.0.0.1:0:127.0.0.1:{}", echo.port());
    let config = dir.path().join("t.toml");
    let text = format!(
        "[daemon]\nsocket = \"{}\"\n{}",
        dir.path().join("s.sock").display(),
        tunnel_toml(&sshd, "f", &format!("local = [\"{spec}\"]"))
    );
    std::fs::write(&config, text).unwrap();
    let mut run = Running::start_with_fd_limit(&config, 40);
    // Warned at start: 1024 connections (the default max_connections) cannot fit.
    run.wait_line("limit=40");
    let listening = run.wait_line("listening");
    let addr: std::net::SocketAddr = listening
        .split("listen=")
        .nth(1)
        .and_then(|rest| rest.split([',', ' ']).next())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no address in {listening:?}"));
    run.wait_line("connected");

    // More connections than descriptors: the kernel queues the ones the daemon cannot
    // accept.
    let mut held = Vec::new();
    for _ in 0..40 {
        held.push(TcpStream::connect(addr).await.unwrap());
    }
    let first = run.wait_line("accept failed");
    assert!(first.contains("Too many open files"), "{first}");
    assert!(first.contains("retry_in=100ms"), "{first}");
    for pause in ["retry_in=200ms", "retry_in=400ms", "retry_in=800ms"] {
        run.wait_line(pause);
    }
    drop(held);
    // Descriptors free again: the next retry accepts, and traffic flows.
    let s = TcpStream::connect(addr).await.unwrap();
    echo_roundtrip(s, b"after EMFILE").await.unwrap();
    // The session survived it all.
    let out = std::process::Command::new(tunneld_bin())
        .args(["status", "--json", "--socket"])
        .arg(dir.path().join("s.sock"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["tunnels"][0]["state"], "up", "{status:#}");
    assert_eq!(status["tunnels"][0]["reconnects"], 0, "{status:#}");
}
