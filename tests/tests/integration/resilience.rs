//! Supervision against real failures: a server down at boot, a server crash and restart,
//! a silent path (black hole), resets and refusals, a remote port held by someone else,
//! and a hundred tunnels against sshd's MaxStartups.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use tokio::net::TcpStream;
use tunneld_core::{Daemon, ForwardState, TunnelState, TunnelStatus};
use tunneld_tests::net::{echo_roundtrip, wait_until_async};
use tunneld_tests::{EchoServer, Fault, FaultProxy, Sshd, SshdOptions};

use crate::harness::*;

/// Polls an echo round trip through `addr` until one succeeds.
async fn wait_traffic(addr: SocketAddr, what: &str) {
    wait_until_async(UP_TIMEOUT, what, || async move {
        match TcpStream::connect(addr).await {
            Ok(s) => echo_roundtrip(s, b"ping").await.is_ok(),
            Err(_) => false,
        }
    })
    .await
    .unwrap();
}

/// A tunnel to `sshd` through `proxy`, with its own known_hosts line for the proxy's port.
fn via_proxy(sshd: &Sshd, proxy: &FaultProxy, name: &str, extra: &str) -> String {
    let kh = sshd
        .dir()
        .join(format!("known_hosts_proxy_{}", proxy.port()));
    std::fs::write(
        &kh,
        format!("[127.0.0.1]:{} {}\n", proxy.port(), sshd.host_key_pub()),
    )
    .unwrap();
    tunnel_toml(sshd, name, extra)
        .replace(
            &format!("port = {}", sshd.port()),
            &format!("port = {}", proxy.port()),
        )
        .replace(
            &sshd.known_hosts().display().to_string(),
            &kh.display().to_string(),
        )
}

fn local_addr(status: &TunnelStatus, spec: &str) -> SocketAddr {
    bound_addr(status, spec)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_down_at_start_is_waited_for() {
    let mut sshd = Sshd::start().await.unwrap();
    sshd.stop().await;
    let echo = EchoServer::start().await.unwrap();
    let spec = format!("0:127.0.0.1:{}", echo.port());
    let daemon = Daemon::start(&config(&tunnel_toml(
        &sshd,
        "t",
        &format!("local = [\"{spec}\"]"),
    )));
    let mut rx = daemon.subscribe("t").unwrap();
    let failed = wait_status(&mut rx, "a failed attempt", |s| s.last_error.is_some()).await;
    assert!(
        failed
            .last_error
            .as_deref()
            .unwrap()
            .contains("cannot connect"),
        "{failed:?}"
    );
    // No starting gate: it keeps trying, and comes up once the server is there.
    sshd.restart().await.unwrap();
    let up = wait_state(&mut rx, TunnelState::Up).await;
    wait_traffic(local_addr(&up, &spec), "traffic after the server came up").await;
    daemon.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_crash_and_restart_brings_local_and_remote_forwards_back() {
    let mut sshd = Sshd::start().await.unwrap();
    let echo = EchoServer::start().await.unwrap();
    let local = format!("0:127.0.0.1:{}", echo.port());
    // A fixed remote port (the server must give the same one back after its restart).
    let rport = tunneld_tests::net::free_port(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let remote = format!("127.0.0.1:{rport}:127.0.0.1:{}", echo.port());
    let text = tunnel_toml(
        &sshd,
        "t",
        &format!("local = [\"{local}\"]\nremote = [\"{remote}\"]"),
    );
    let (daemon, status) = start_up(&text, "t").await;
    let laddr = local_addr(&status, &local);
    let raddr: SocketAddr = (Ipv4Addr::LOCALHOST, rport).into();
    wait_traffic(laddr, "local before the crash").await;
    wait_traffic(raddr, "remote before the crash").await;

    // The server dies with all its sessions, then comes back on the same port.
    let mut rx = daemon.subscribe("t").unwrap();
    sshd.stop().await;
    wait_status(&mut rx, "the session noticed as lost", |s| {
        s.state != TunnelState::Up
    })
    .await;
    sshd.restart().await.unwrap();
    let back = Instant::now();
    wait_state(&mut rx, TunnelState::Up).await;
    wait_traffic(laddr, "local after the restart").await;
    wait_traffic(raddr, "remote after the restart").await;
    eprintln!(
        "sshd back -> traffic through -L and -R again: {:?}",
        back.elapsed()
    );
    assert_eq!(daemon.status()[0].reconnects, 1);
    daemon.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_sessions_are_replaced() {
    let sshd = Sshd::start().await.unwrap();
    let echo = EchoServer::start().await.unwrap();
    let local = format!("0:127.0.0.1:{}", echo.port());
    let text = tunnel_toml(&sshd, "t", &format!("local = [\"{local}\"]"));
    let (daemon, status) = start_up(&text, "t").await;
    let mut rx = daemon.subscribe("t").unwrap();
    sshd.kill_sessions();
    wait_status(&mut rx, "a reconnect", |s| {
        s.reconnects == 1 && s.state == TunnelState::Up
    })
    .await;
    wait_traffic(local_addr(&status, &local), "traffic on the new session").await;
    daemon.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_black_hole_is_detected_within_the_heartbeat_bound_and_healed() {
    let sshd = Sshd::start().await.unwrap();
    let proxy = FaultProxy::start(sshd.addr()).await.unwrap();
    let echo = EchoServer::start().await.unwrap();
    let local = format!("0:127.0.0.1:{}", echo.port());
    let text = via_proxy(
        &sshd,
        &proxy,
        "t",
        &format!(
            "local = [\"{local}\"]\nserver_alive_interval = \"2s\"\nserver_alive_count_max = 2"
        ),
    ) + &tunnel_toml(&sshd, "direct", &format!("local = [\"{local}\"]"));
    // The second tunnel goes straight to the server: it must not notice anything.
    let daemon = Daemon::start(&config(&text));
    let status = wait_state(&mut daemon.subscribe("t").unwrap(), TunnelState::Up).await;
    let direct = wait_state(&mut daemon.subscribe("direct").unwrap(), TunnelState::Up).await;
    let laddr = local_addr(&status, &local);
    wait_traffic(laddr, "traffic before the black hole").await;
    // A connection through the other tunnel, open across the whole fault.
    let mut long_lived = TcpStream::connect(local_addr(&direct, &local))
        .await
        .unwrap();
    echo_roundtrip(&mut long_lived, b"before").await.unwrap();

    let mut rx = daemon.subscribe("t").unwrap();
    proxy.set_fault(Fault::BlackHole);
    let dropped = Instant::now();
    let lost = wait_status(&mut rx, "the silent session declared dead", |s| {
        s.state != TunnelState::Up
    })
    .await;
    let detected = dropped.elapsed();
    eprintln!("black hole at 2 s x 2 heartbeats detected after {detected:?}");
    // SPEC: within interval x count + 1 s.
    assert!(detected <= Duration::from_secs(5), "{detected:?}");
    assert!(
        lost.last_error.as_deref().unwrap().contains("heartbeat"),
        "{lost:?}"
    );
    // Isolation: the other tunnel's session and open connection carried on.
    echo_roundtrip(&mut long_lived, b"during").await.unwrap();
    let other = daemon.subscribe("direct").unwrap().borrow().clone();
    assert_eq!((other.state, other.reconnects), (TunnelState::Up, 0));

    proxy.set_fault(Fault::None);
    let healed = Instant::now();
    wait_state(&mut rx, TunnelState::Up).await;
    wait_traffic(laddr, "traffic after the path healed").await;
    eprintln!("path healed -> traffic again after {:?}", healed.elapsed());
    daemon.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resets_and_refusals_are_survived() {
    let sshd = Sshd::start().await.unwrap();
    let proxy = FaultProxy::start(sshd.addr()).await.unwrap();
    let echo = EchoServer::start().await.unwrap();
    let local = format!("0:127.0.0.1:{}", echo.port());
    let text = via_proxy(&sshd, &proxy, "t", &format!("local = [\"{local}\"]"));
    let (daemon, status) = start_up(&text, "t").await;
    let laddr = local_addr(&status, &local);
    let mut rx = daemon.subscribe("t").unwrap();

    // Every connection cut with a RST: noticed at once, reconnected.
    proxy.reset_all();
    wait_status(&mut rx, "reconnect after a reset", |s| {
        s.reconnects == 1 && s.state == TunnelState::Up
    })
    .await;
    wait_traffic(laddr, "traffic after the reset").await;

    // The server refuses for a while: failed attempts, then back once it accepts.
    proxy.set_fault(Fault::Refuse);
    proxy.reset_all();
    wait_status(&mut rx, "an attempt refused", |s| {
        s.state == TunnelState::Backoff && s.last_error.is_some()
    })
    .await;
    proxy.set_fault(Fault::None);
    wait_status(&mut rx, "up again after refusals", |s| {
        s.reconnects == 2 && s.state == TunnelState::Up
    })
    .await;
    wait_traffic(laddr, "traffic after refusals").await;
    daemon.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_remote_port_degrades_the_tunnel_until_it_is_free() {
    let sshd = Sshd::start().await.unwrap();
    let echo = EchoServer::start().await.unwrap();
    // Someone else holds the port on the server side (the server is this machine).
    let squatter = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let held = squatter.local_addr().unwrap().port();
    let stuck = format!("127.0.0.1:{held}:127.0.0.1:{}", echo.port());
    let fine = format!("0:127.0.0.1:{}", echo.port());
    let local = format!("0:127.0.0.1:{}", echo.port());
    let text = tunnel_toml(
        &sshd,
        "t",
        &format!("remote = [\"{stuck}\", \"{fine}\"]\nlocal = [\"{local}\"]"),
    );
    let daemon = Daemon::start(&config(&text));
    let mut rx = daemon.subscribe("t").unwrap();
    let degraded = wait_status(&mut rx, "degraded with the other forwards active", |s| {
        s.state == TunnelState::Degraded
            && s.forward(&stuck).unwrap().state == ForwardState::Refused
            && s.forward(&fine).unwrap().state == ForwardState::Active
    })
    .await;
    assert!(
        degraded
            .forward(&stuck)
            .unwrap()
            .error
            .as_deref()
            .unwrap()
            .contains("refused")
    );
    // The session and the other forwards work meanwhile.
    wait_traffic(
        (Ipv4Addr::LOCALHOST, remote_port(&degraded, &fine)).into(),
        "the other remote forward",
    )
    .await;
    wait_traffic(local_addr(&degraded, &local), "the local forward").await;

    // Freed: the forward binds by itself, on the same session.
    drop(squatter);
    let up = wait_state(&mut rx, TunnelState::Up).await;
    assert_eq!(up.reconnects, 0);
    wait_traffic((Ipv4Addr::LOCALHOST, held).into(), "the freed port").await;
    daemon.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_tunnels_come_up_despite_max_startups() {
    let sshd = Sshd::start_with(SshdOptions {
        extra_config: vec!["MaxStartups 10:30:100".into()],
        ..Default::default()
    })
    .await
    .unwrap();
    let echo = EchoServer::start().await.unwrap();
    const TUNNELS: usize = 100;
    let mut text = String::new();
    for i in 0..TUNNELS {
        text.push_str(&tunnel_toml(
            &sshd,
            &format!("t{i:03}"),
            &format!("local = [\"0:127.0.0.1:{}\"]", echo.port()),
        ));
    }
    let started = Instant::now();
    let daemon = Daemon::start(&config(&text));
    for i in 0..TUNNELS {
        let mut rx = daemon.subscribe(&format!("t{i:03}")).unwrap();
        wait_state(&mut rx, TunnelState::Up).await;
    }
    eprintln!("{TUNNELS} tunnels up after {:?}", started.elapsed());
    // Paced handshakes stay under sshd's first MaxStartups threshold: sshd never started
    // throttling or dropping, and logged exactly one login per tunnel.
    let log = sshd.log();
    assert_eq!(sshd.count_in_log("MaxStartups throttling"), 0, "{log}");
    assert_eq!(sshd.count_in_log("drop connection"), 0, "{log}");
    assert_eq!(sshd.count_in_log("Accepted publickey"), TUNNELS);
    // And each carries traffic.
    for s in daemon.status() {
        let spec = s.forwards[0].spec.clone();
        echo_roundtrip(
            TcpStream::connect(bound_addr(&s, &spec)).await.unwrap(),
            b"hi",
        )
        .await
        .unwrap();
    }
    daemon.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_never_speaks_hits_connect_timeout() {
    let sshd = Sshd::start().await.unwrap();
    let proxy = FaultProxy::start(sshd.addr()).await.unwrap();
    // TCP connects, then silence: no banner, no key exchange.
    proxy.set_fault(Fault::BlackHole);
    let text = via_proxy(&sshd, &proxy, "t", "dynamic = [\"0\"]")
        .replace("connect_timeout = \"5s\"", "connect_timeout = \"1s\"");
    let daemon = Daemon::start(&config(&text));
    let mut rx = daemon.subscribe("t").unwrap();
    let s = wait_status(&mut rx, "a timed-out attempt", |s| s.last_error.is_some()).await;
    assert!(
        s.last_error
            .as_deref()
            .unwrap()
            .contains("timed out after 1s"),
        "{s:?}"
    );
    proxy.set_fault(Fault::None);
    wait_state(&mut rx, TunnelState::Up).await;
    daemon.shutdown().await;
}

/// `host` as a list: with the first server down the tunnel moves to the second after
/// `failover_after` failed attempts; when that one dies in turn and the first is back, it
/// goes round to the first. Status names the host in use.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_list_fails_over_to_the_next_server_and_round_again() {
    let mut first = Sshd::start().await.unwrap();
    first.stop().await;
    let mut second = Sshd::start().await.unwrap();
    let echo = EchoServer::start().await.unwrap();
    let spec = format!("0:127.0.0.1:{}", echo.port());
    let (a, b) = (
        format!("127.0.0.1:{}", first.port()),
        format!("127.0.0.1:{}", second.port()),
    );
    let text = format!(
        r#"
[tunnels.t]
host = ["{a}", "{b}"]
user = "{user}"
identity_file = ["{ka}", "{kb}"]
known_hosts = ["{kha}", "{khb}"]
connect_timeout = "5s"
backoff = {{ initial = "50ms", max = "200ms" }}
failover_after = 2
local = ["{spec}"]
"#,
        user = first.user(),
        ka = first.client_key().display(),
        kb = second.client_key().display(),
        kha = first.known_hosts().display(),
        khb = second.known_hosts().display(),
    );
    let daemon = Daemon::start(&config(&text));
    let mut rx = daemon.subscribe("t").unwrap();
    let up = wait_state(&mut rx, TunnelState::Up).await;
    assert_eq!(up.host, b, "{up:?}");
    wait_traffic(local_addr(&up, &spec), "traffic through the second host").await;
    assert_eq!(second.count_in_log("Accepted publickey"), 1);

    // The second dies, the first is back: round the list to the first.
    first.restart().await.unwrap();
    second.stop().await;
    let back = wait_status(&mut rx, "the tunnel up on the first host", |s| {
        s.state == TunnelState::Up && s.host == a
    })
    .await;
    assert_eq!(back.reconnects, 1, "{back:?}");
    wait_traffic(local_addr(&back, &spec), "traffic through the first host").await;
    assert_eq!(first.count_in_log("Accepted publickey"), 1);
    daemon.shutdown().await;
}

/// The tunnel for two sshd instances where the second is reached through the first.
fn jump_toml(
    first: &Sshd,
    second: &Sshd,
    second_known_hosts: &std::path::Path,
    extra: &str,
) -> String {
    format!(
        r#"
[tunnels.j]
host = "127.0.0.1:{b}"
user = "{user}"
proxy_jump = "{user}@127.0.0.1:{a}"
identity_file = ["{ka}", "{kb}"]
known_hosts = ["{kha}", "{khb}"]
connect_timeout = "5s"
backoff = {{ initial = "50ms", max = "200ms" }}
{extra}
"#,
        a = first.port(),
        b = second.port(),
        user = first.user(),
        ka = first.client_key().display(),
        kb = second.client_key().display(),
        kha = first.known_hosts().display(),
        khb = second_known_hosts.display(),
    )
}

/// `proxy_jump`: the tunnel reaches the second sshd through the first (sshd A logs the
/// direct-tcpip to B), forwards data intact, and is detected dead when the jump host
/// dies; a wrong host key on the second hop forwards nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tunnel_through_a_jump_host() {
    let mut first = Sshd::start().await.unwrap();
    let second = Sshd::start().await.unwrap();
    let echo = EchoServer::start().await.unwrap();
    let spec = format!("0:127.0.0.1:{}", echo.port());
    let text = jump_toml(
        &first,
        &second,
        second.known_hosts(),
        &format!(
            "local = [\"{spec}\"]\nserver_alive_interval = \"1s\"\nserver_alive_count_max = 2"
        ),
    );
    let daemon = Daemon::start(&config(&text));
    let mut rx = daemon.subscribe("j").unwrap();
    let up = wait_state(&mut rx, TunnelState::Up).await;
    let stream = TcpStream::connect(local_addr(&up, &spec)).await.unwrap();
    tunneld_tests::net::transfer_both_ways(stream, 4 << 20)
        .await
        .unwrap();
    // A opened the way to B; B's login came from there; the forward left from B.
    first
        .wait_log(
            &format!("target 127.0.0.1 port {}", second.port()),
            UP_TIMEOUT,
        )
        .await
        .unwrap();
    assert_eq!(second.count_in_log("Accepted publickey"), 1);
    second
        .wait_log(
            &format!("target 127.0.0.1 port {}", echo.port()),
            UP_TIMEOUT,
        )
        .await
        .unwrap();

    // The jump host dies: the session through it is declared lost, and comes back.
    first.kill_sessions();
    first.stop().await;
    wait_status(&mut rx, "the session to be lost", |s| {
        s.state != TunnelState::Up
    })
    .await;
    first.restart().await.unwrap();
    let back = wait_status(&mut rx, "the tunnel back up", |s| {
        s.state == TunnelState::Up && s.reconnects == 1
    })
    .await;
    wait_traffic(
        local_addr(&back, &spec),
        "traffic after the jump host came back",
    )
    .await;
    daemon.shutdown().await;

    // B's key in known_hosts is wrong: nothing reaches B's login, nothing is forwarded.
    let logins = second.count_in_log("Accepted publickey");
    let wrong = second.dir().join("wrong_known_hosts");
    let stranger =
        tunneld_tests::keys::generate(&second.dir().join("stranger_host"), "ed25519", "x").unwrap();
    let stranger_pub = tunneld_tests::keys::public_key_line(&stranger).unwrap();
    std::fs::write(
        &wrong,
        format!("[127.0.0.1]:{} {}\n", second.port(), stranger_pub.trim()),
    )
    .unwrap();
    let text = jump_toml(&first, &second, &wrong, &format!("local = [\"{spec}\"]"));
    let daemon = Daemon::start(&config(&text));
    let mut rx = daemon.subscribe("j").unwrap();
    let failed = wait_status(&mut rx, "a host key failure", |s| s.last_error.is_some()).await;
    let error = failed.last_error.unwrap();
    assert!(error.contains("host key verification failed"), "{error}");
    assert!(
        error.contains(&format!("[127.0.0.1]:{}", second.port())),
        "{error}"
    );
    assert_eq!(
        second.count_in_log("Accepted publickey"),
        logins,
        "no login on B"
    );
    daemon.shutdown().await;
}
