//! Every forward kind carrying real traffic through a real sshd.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Instant;

use tokio::net::{TcpStream, UnixStream};
use tunneld_core::{ForwardState, TunnelState};
use tunneld_tests::net::{
    curl, curl_available, echo_roundtrip, listening_sockets, transfer_both_ways,
};
use tunneld_tests::socks::{socks4a_connect, socks5_connect};
use tunneld_tests::{EchoServer, HttpServer, Sshd, UnixEchoServer};

use crate::harness::*;

fn report(what: &str, started: Instant) {
    let secs = started.elapsed().as_secs_f64();
    let mib = (BULK_BYTES >> 20) as f64;
    // Both directions run at once: this is the rate of each.
    eprintln!(
        "{what}: {mib} MiB each way in {secs:.2} s = {:.0} MiB/s per direction",
        mib / secs
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_forward_moves_32_mib_each_way() {
    let sshd = Sshd::start().await.unwrap();
    let echo = EchoServer::start().await.unwrap();
    let spec = format!("0:127.0.0.1:{}", echo.port());
    let text = tunnel_toml(&sshd, "l", &format!("local = [\"{spec}\"]"));
    let (daemon, status) = start_up(&text, "l").await;
    let stream = TcpStream::connect(bound_addr(&status, &spec))
        .await
        .unwrap();
    let started = Instant::now();
    transfer_both_ways(stream, BULK_BYTES).await.unwrap();
    report("local forward", started);
    // The channel went through the server to the echo server.
    assert_eq!(echo.connections(), 1);
    sshd.wait_log(
        &format!("target 127.0.0.1 port {}", echo.port()),
        UP_TIMEOUT,
    )
    .await
    .unwrap();
    let counters = &daemon.status()[0].forwards[0].counters;
    assert_eq!(
        counters
            .bytes_out
            .load(std::sync::atomic::Ordering::Relaxed),
        BULK_BYTES as u64
    );
    assert_eq!(
        counters.bytes_in.load(std::sync::atomic::Ordering::Relaxed),
        BULK_BYTES as u64
    );
    daemon.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_forward_moves_32_mib_each_way() {
    let sshd = Sshd::start().await.unwrap();
    let echo = EchoServer::start().await.unwrap();
    // Port 0: the server allocates one, as `ssh -R 0:...` does.
    let spec = format!("0:127.0.0.1:{}", echo.port());
    let text = tunnel_toml(&sshd, "r", &format!("remote = [\"{spec}\"]"));
    let (daemon, status) = start_up(&text, "r").await;
    let port = remote_port(&status, &spec);
    // The server listens on "localhost" (loopback) as no bind address was given.
    let stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port))
        .await
        .unwrap();
    let started = Instant::now();
    transfer_both_ways(stream, BULK_BYTES).await.unwrap();
    report("remote forward", started);
    assert_eq!(echo.connections(), 1);
    daemon.shutdown().await;
    // Shutdown cancelled the remote listener on the server.
    tunneld_tests::net::wait_port_closed((Ipv4Addr::LOCALHOST, port).into(), UP_TIMEOUT)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamic_forward_moves_32_mib_and_speaks_socks4a_and_socks5() {
    let sshd = Sshd::start().await.unwrap();
    let echo = EchoServer::start().await.unwrap();
    let text = tunnel_toml(&sshd, "d", "dynamic = [\"0\"]");
    let (daemon, status) = start_up(&text, "d").await;
    let proxy = bound_addr(&status, "0");

    // SOCKS5 with a host name: resolved by the server, not by us.
    let stream = socks5_connect(proxy, "localhost", echo.port())
        .await
        .unwrap();
    let started = Instant::now();
    transfer_both_ways(stream, BULK_BYTES).await.unwrap();
    report("dynamic forward (SOCKS5)", started);

    let mut s = socks4a_connect(proxy, "localhost", echo.port())
        .await
        .unwrap();
    echo_roundtrip(&mut s, b"socks4a through the server")
        .await
        .unwrap();
    let s = tunneld_tests::socks::socks4_connect(proxy, Ipv4Addr::LOCALHOST, echo.port())
        .await
        .unwrap();
    echo_roundtrip(s, b"socks4").await.unwrap();
    assert_eq!(echo.connections(), 3);

    // A refused destination gets a SOCKS error, and the proxy keeps serving.
    let closed = tunneld_tests::net::free_port(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let err = socks5_connect(proxy, "127.0.0.1", closed)
        .await
        .unwrap_err();
    assert!(format!("{err:#}").contains("reply"), "{err:#}");
    // Garbage instead of SOCKS: dropped, the tunnel stays up.
    let mut junk = TcpStream::connect(proxy).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut junk, b"GET / HTTP/1.0\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    // Closed without an answer: EOF, or a reset as the request was left unread.
    match tokio::io::AsyncReadExt::read_to_end(&mut junk, &mut buf).await {
        Ok(_) => assert!(buf.is_empty(), "{buf:?}"),
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset),
    }
    let mut s = socks5_connect(proxy, "127.0.0.1", echo.port())
        .await
        .unwrap();
    echo_roundtrip(&mut s, b"still serving").await.unwrap();
    assert_eq!(daemon.status()[0].state, TunnelState::Up);
    daemon.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_through_socks5h_and_socks5() {
    if !curl_available() {
        panic!("curl is needed for this test (.ci/run installs it)");
    }
    let sshd = Sshd::start().await.unwrap();
    let web = HttpServer::start("B").await.unwrap();
    let text = tunnel_toml(&sshd, "d", "dynamic = [\"0\"]");
    let (daemon, status) = start_up(&text, "d").await;
    let proxy = bound_addr(&status, "0");
    let url = format!("http://localhost:{}/", web.port());
    // socks5h: curl hands the name to the proxy, the server resolves it.
    let body = curl(&["-x", &format!("socks5h://{proxy}"), &url])
        .await
        .unwrap();
    assert_eq!(body, "hello from B\n");
    let body = curl(&["-x", &format!("socks5://{proxy}"), &url])
        .await
        .unwrap();
    assert_eq!(body, "hello from B\n");
    let body = curl(&["-x", &format!("socks4a://{proxy}"), &url])
        .await
        .unwrap();
    assert_eq!(body, "hello from B\n");
    assert_eq!(web.requests(), 3);
    daemon.shutdown().await;
}

/// Picture 1: `ssh -L 1234:localhost:8000 B` reaches B's own web server.
/// Picture 2: the same to a third host C (127.0.0.2), the connection leaving from B.
/// Picture 3: `ssh -R` publishes a web server of the client machine on B.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_three_classic_pictures() {
    let sshd = Sshd::start().await.unwrap();
    let web_b = HttpServer::start("B").await.unwrap();
    let web_c = HttpServer::start_on(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)), "C")
        .await
        .unwrap();
    let web_client = HttpServer::start("client").await.unwrap();
    let to_b = format!("0:localhost:{}", web_b.port());
    let to_c = format!("0:127.0.0.2:{}", web_c.port());
    let publish = format!("0:localhost:{}", web_client.port());
    let text = tunnel_toml(
        &sshd,
        "pictures",
        &format!("local = [\"{to_b}\", \"{to_c}\"]\nremote = [\"{publish}\"]"),
    );
    let (daemon, status) = start_up(&text, "pictures").await;

    let url = |addr: std::net::SocketAddr| format!("http://{addr}/");
    assert_eq!(
        curl(&[&url(bound_addr(&status, &to_b))]).await.unwrap(),
        "hello from B\n"
    );
    assert_eq!(
        curl(&[&url(bound_addr(&status, &to_c))]).await.unwrap(),
        "hello from C\n"
    );
    // The connection to C was opened by the server (sshd logs the direct-tcpip target).
    sshd.wait_log(
        &format!("target 127.0.0.2 port {}", web_c.port()),
        UP_TIMEOUT,
    )
    .await
    .unwrap();
    let published = format!("http://127.0.0.1:{}/", remote_port(&status, &publish));
    assert_eq!(curl(&[&published]).await.unwrap(), "hello from client\n");
    assert_eq!(
        (web_b.requests(), web_c.requests(), web_client.requests()),
        (1, 1, 1)
    );
    daemon.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unix_socket_forms() {
    let sshd = Sshd::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let echo = EchoServer::start().await.unwrap();
    let unix_echo = UnixEchoServer::start(&dir.path().join("echo.sock"))
        .await
        .unwrap();
    let local_sock = dir.path().join("local.sock");
    let remote_sock = dir.path().join("remote.sock");
    // A stale socket file from an earlier run is replaced.
    drop(std::os::unix::net::UnixListener::bind(&local_sock).unwrap());
    let l_unix_to_tcp = format!("{}:127.0.0.1:{}", local_sock.display(), echo.port());
    let l_tcp_to_unix = format!("0:{}", unix_echo.path().display());
    let r_unix_to_tcp = format!("{}:127.0.0.1:{}", remote_sock.display(), echo.port());
    let r_tcp_to_unix = format!("0:{}", unix_echo.path().display());
    let text = tunnel_toml(
        &sshd,
        "u",
        &format!(
            "local = [\"{l_unix_to_tcp}\", \"{l_tcp_to_unix}\"]\nremote = [\"{r_unix_to_tcp}\", \"{r_tcp_to_unix}\"]"
        ),
    );
    let (daemon, status) = start_up(&text, "u").await;
    const MIB: usize = 1 << 20;
    transfer_both_ways(UnixStream::connect(&local_sock).await.unwrap(), MIB)
        .await
        .unwrap();
    transfer_both_ways(
        TcpStream::connect(bound_addr(&status, &l_tcp_to_unix))
            .await
            .unwrap(),
        MIB,
    )
    .await
    .unwrap();
    tunneld_tests::net::wait_until(UP_TIMEOUT, "server-side socket exists", || {
        remote_sock.exists()
    })
    .await
    .unwrap();
    transfer_both_ways(UnixStream::connect(&remote_sock).await.unwrap(), MIB)
        .await
        .unwrap();
    let port = remote_port(&status, &r_tcp_to_unix);
    transfer_both_ways(
        TcpStream::connect((Ipv4Addr::LOCALHOST, port))
            .await
            .unwrap(),
        MIB,
    )
    .await
    .unwrap();
    assert_eq!((echo.connections(), unix_echo.connections()), (2, 2));
    daemon.shutdown().await;
    // Our own socket file is removed on shutdown.
    assert!(!local_sock.exists());
}

#[tokio::test]
async fn a_file_that_is_not_a_socket_is_never_removed() {
    let sshd = Sshd::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("precious");
    std::fs::write(&path, "data").unwrap();
    let spec = format!("{}:127.0.0.1:9", path.display());
    let text = tunnel_toml(&sshd, "u", &format!("local = [\"{spec}\"]"));
    let daemon = tunneld_core::Daemon::start(&config(&text));
    let mut rx = daemon.subscribe("u").unwrap();
    let s = wait_status(&mut rx, "forward error", |s| {
        s.forwards[0].state == ForwardState::Error
    })
    .await;
    assert!(
        s.forwards[0]
            .error
            .as_deref()
            .unwrap()
            .contains("not a socket"),
        "{s:?}"
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "data");
    daemon.shutdown().await;
}

#[tokio::test]
async fn loopback_by_default_network_with_star_or_gateway_ports() {
    let sshd = Sshd::start().await.unwrap();
    let echo = EchoServer::start().await.unwrap();
    let default = format!("0:127.0.0.1:{}", echo.port());
    let star = format!("*:0:127.0.0.1:{}", echo.port());
    let any4 = format!("0.0.0.0:0:127.0.0.1:{}", echo.port());
    let text = format!(
        "{}{}",
        tunnel_toml(
            &sshd,
            "a",
            &format!("local = [\"{default}\", \"{star}\", \"{any4}\"]\ndynamic = [\"0\"]")
        ),
        tunnel_toml(
            &sshd,
            "g",
            &format!("gateway_ports = true\nlocal = [\"{default}\"]")
        )
    );
    let daemon = tunneld_core::Daemon::start(&config(&text));
    let a = wait_state(&mut daemon.subscribe("a").unwrap(), TunnelState::Up).await;
    let g = wait_state(&mut daemon.subscribe("g").unwrap(), TunnelState::Up).await;

    let ips = |port: u16| -> Vec<IpAddr> {
        let mut v: Vec<IpAddr> = listening_sockets(port).iter().map(|a| a.ip()).collect();
        v.sort();
        v
    };
    let loopback = |v: &[IpAddr]| !v.is_empty() && v.iter().all(|ip| ip.is_loopback());
    let wildcard = |v: &[IpAddr]| {
        v.iter().any(|ip| ip.is_unspecified()) && v.iter().all(|ip| ip.is_unspecified())
    };
    let default_ips = ips(bound_addr(&a, &default).port());
    assert!(loopback(&default_ips), "{default_ips:?}");
    let dynamic_ips = ips(bound_addr(&a, "0").port());
    assert!(loopback(&dynamic_ips), "{dynamic_ips:?}");
    let star_ips = ips(bound_addr(&a, &star).port());
    assert!(wildcard(&star_ips), "{star_ips:?}");
    assert_eq!(
        ips(bound_addr(&a, &any4).port()),
        vec![IpAddr::V4(Ipv4Addr::UNSPECIFIED)]
    );
    let gateway_ips = ips(bound_addr(&g, &default).port());
    assert!(wildcard(&gateway_ips), "{gateway_ips:?}");

    // Each listener also carries traffic.
    for addr in [
        bound_addr(&a, &default),
        bound_addr(&a, &star),
        bound_addr(&g, &default),
    ] {
        echo_roundtrip(TcpStream::connect(addr).await.unwrap(), b"hi")
            .await
            .unwrap();
    }
    daemon.shutdown().await;
}

#[tokio::test]
async fn a_remote_forward_to_a_dead_target_refuses_cleanly() {
    // The server's connection is refused (channel open failure), and the tunnel stays up.
    let sshd = Sshd::start().await.unwrap();
    let dead = tunneld_tests::net::free_port(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let spec = format!("0:127.0.0.1:{dead}");
    let text = tunnel_toml(&sshd, "r", &format!("remote = [\"{spec}\"]"));
    let (daemon, status) = start_up(&text, "r").await;
    let port = remote_port(&status, &spec);
    let mut s = TcpStream::connect((Ipv4Addr::LOCALHOST, port))
        .await
        .unwrap();
    let mut buf = Vec::new();
    // sshd closes the accepted connection once we refuse the channel.
    tokio::io::AsyncReadExt::read_to_end(&mut s, &mut buf)
        .await
        .unwrap();
    assert!(buf.is_empty());
    assert_eq!(daemon.status()[0].state, TunnelState::Up);
    daemon.shutdown().await;
}

/// `remote = ["0"]`: the server's port is a SOCKS proxy exiting on our side (OpenSSH
/// 7.6+). curl goes through it with a host name resolved here; a destination outside
/// `permit_remote_open` gets "not allowed" and nothing is connected to.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reverse_socks_exits_here_within_permit_remote_open() {
    let sshd = Sshd::start().await.unwrap();
    let web = HttpServer::start("the tunneld side").await.unwrap();
    let other = EchoServer::start().await.unwrap();
    let text = tunnel_toml(
        &sshd,
        "r",
        &format!(
            "remote = [\"0\"]\npermit_remote_open = [\"localhost:{}\", \"127.0.0.1:{}\"]",
            web.port(),
            web.port()
        ),
    );
    let (daemon, status) = start_up(&text, "r").await;
    let port = remote_port(&status, "0");
    let proxy: std::net::SocketAddr = (Ipv4Addr::LOCALHOST, port).into();
    if curl_available() {
        let body = curl(&[
            "-sS",
            "--max-time",
            "10",
            "-x",
            &format!("socks5h://127.0.0.1:{port}"),
            &format!("http://localhost:{}/", web.port()),
        ])
        .await
        .unwrap();
        assert_eq!(body.trim(), "hello from the tunneld side");
    }
    let s = socks5_connect(proxy, "127.0.0.1", web.port())
        .await
        .unwrap();
    drop(s);
    let refused = format!(
        "{:#}",
        socks5_connect(proxy, "127.0.0.1", other.port())
            .await
            .unwrap_err()
    );
    assert!(refused.contains("reply code 0x02"), "{refused}");
    assert_eq!(other.connections(), 0);
    daemon.shutdown().await;
}

/// Local Unix socket forwards get OpenSSH's `StreamLocalBindMask` (0177: owner only) or
/// the configured one; with `stream_local_bind_unlink = false` a stale socket is left
/// alone and the forward says why.
#[tokio::test]
async fn unix_socket_mask_and_unlink_follow_the_config() {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    let sshd = Sshd::start().await.unwrap();
    let echo = EchoServer::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    for (extra, want) in [("", 0o600), ("stream_local_bind_mask = \"0117\"", 0o660)] {
        let sock = dir.path().join(format!("m{want:o}.sock"));
        let spec = format!("{}:127.0.0.1:{}", sock.display(), echo.port());
        let text = tunnel_toml(&sshd, "u", &format!("local = [\"{spec}\"]\n{extra}"));
        let (daemon, _) = start_up(&text, "u").await;
        assert_eq!(mode(&sock), want, "{extra:?}");
        echo_roundtrip(
            UnixStream::connect(&sock).await.unwrap(),
            b"through the socket",
        )
        .await
        .unwrap();
        daemon.shutdown().await;
    }

    let stale = dir.path().join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
    let spec = format!("{}:127.0.0.1:{}", stale.display(), echo.port());
    let text = tunnel_toml(
        &sshd,
        "u",
        &format!("local = [\"{spec}\"]\nstream_local_bind_unlink = false"),
    );
    let daemon = tunneld_core::Daemon::start(&config(&text));
    let mut rx = daemon.subscribe("u").unwrap();
    let s = wait_status(&mut rx, "forward error", |s| {
        s.forwards[0].state == ForwardState::Error
    })
    .await;
    let error = s.forwards[0].error.as_deref().unwrap();
    assert!(
        error.contains("stream_local_bind_unlink = false"),
        "{error}"
    );
    assert!(
        std::fs::symlink_metadata(&stale)
            .unwrap()
            .file_type()
            .is_socket()
    );
    daemon.shutdown().await;
}
