//! Channels, remote listeners, host key refusal and re-keying against a real sshd.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tunneld_ssh::{Config, ConnectError, Forwarded, OpenError, OpenKind, TransportError};
use tunneld_tests::net::{echo_roundtrip, transfer_both_ways, wait_port_closed, wait_until};
use tunneld_tests::{EchoServer, SourceServer, Sshd, SshdOptions, UnixEchoServer};

use crate::kit::{self, CONNECT_TIMEOUT};

pub fn to(addr: SocketAddr) -> OpenKind {
    OpenKind::DirectTcpip {
        host: addr.ip().to_string(),
        port: u32::from(addr.port()),
        originator: "127.0.0.1".into(),
        originator_port: 40000,
    }
}

#[tokio::test]
async fn direct_tcpip_channels_carry_bytes_both_ways_side_by_side() {
    let sshd = Sshd::start().await.unwrap();
    let echo = EchoServer::start().await.unwrap();
    let (session, _incoming) = kit::connect(&sshd).await;
    assert!(
        session
            .info()
            .server_version
            .starts_with("SSH-2.0-OpenSSH_")
    );
    let transfers = (0..4).map(|_| {
        let session = session.clone();
        let target = to(echo.addr());
        async move {
            let channel = session.open(target).await.unwrap();
            transfer_both_ways(channel, 8 << 20).await
        }
    });
    for result in futures_util::future::join_all(transfers).await {
        result.unwrap();
    }
    assert_eq!(echo.connections(), 4);
    session.ping().await.unwrap();
}

#[tokio::test]
async fn a_refused_open_says_why_and_the_session_carries_on() {
    let sshd = Sshd::start().await.unwrap();
    let (session, _incoming) = kit::connect(&sshd).await;
    let closed = SocketAddr::new(
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        tunneld_tests::net::free_port(IpAddr::V4(Ipv4Addr::LOCALHOST)),
    );
    match session.open(to(closed)).await {
        Err(OpenError::Refused { reason, .. }) => {
            assert_eq!(reason, tunneld_ssh::open_failure::CONNECT_FAILED)
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    session.ping().await.unwrap();
}

#[tokio::test]
async fn unix_socket_channels_reach_the_servers_socket() {
    let sshd = Sshd::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let echo = UnixEchoServer::start(&dir.path().join("echo.sock"))
        .await
        .unwrap();
    let (session, _incoming) = kit::connect(&sshd).await;
    let channel = session
        .open(OpenKind::DirectStreamlocal {
            path: echo.path().display().to_string(),
        })
        .await
        .unwrap();
    transfer_both_ways(channel, 1 << 20).await.unwrap();
    assert_eq!(echo.connections(), 1);
}

#[tokio::test]
async fn a_remote_listener_on_port_0_gets_a_port_and_hands_us_its_connections() {
    let sshd = Sshd::start().await.unwrap();
    let (session, mut incoming) = kit::connect(&sshd).await;
    let port = session.tcpip_forward("127.0.0.1", 0).await.unwrap();
    assert_ne!(port, 0);
    let server_side = SocketAddr::from((Ipv4Addr::LOCALHOST, u16::try_from(port).unwrap()));
    // Our side of the listener echoes.
    let echoer = tokio::spawn(async move {
        let offer = incoming.recv().await.expect("a forwarded connection");
        let Forwarded::Tcpip {
            port: p, address, ..
        } = offer.kind.clone()
        else {
            panic!("not tcpip: {:?}", offer.kind);
        };
        assert_eq!((address.as_str(), p), ("127.0.0.1", port));
        let channel = offer.accept();
        let (mut rd, mut wr) = tokio::io::split(channel);
        tokio::io::copy(&mut rd, &mut wr).await.unwrap();
        tokio::io::AsyncWriteExt::shutdown(&mut wr).await.unwrap();
        incoming
    });
    let tcp = TcpStream::connect(server_side).await.unwrap();
    transfer_both_ways(tcp, 4 << 20).await.unwrap();
    let _incoming = echoer.await.unwrap();
    session
        .cancel_tcpip_forward("127.0.0.1", port)
        .await
        .unwrap();
    wait_port_closed(server_side, CONNECT_TIMEOUT)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_refused_host_key_ends_the_handshake_before_authentication() {
    let sshd = Sshd::start().await.unwrap();
    let tcp = TcpStream::connect(sshd.addr()).await.unwrap();
    let credential = kit::client_credential(&sshd);
    let refused = tunneld_ssh::connect(
        tcp,
        tunneld_ssh::Config::default(),
        &sshd.user(),
        std::slice::from_ref(&credential),
        Box::new(|_| Err("not the key we know".into())),
    )
    .await;
    match refused {
        Err(ConnectError::Transport(TransportError::HostKeyRejected(why))) => {
            assert_eq!(why, "not the key we know")
        }
        Err(e) => panic!("expected a host key refusal, got {e}"),
        Ok(_) => panic!("connected with a refused host key"),
    }
    assert_eq!(sshd.count_in_log("Accepted publickey"), 0, "{}", sshd.log());
}

#[tokio::test]
async fn keys_are_re_exchanged_by_either_side_while_data_flows() {
    let sshd = Sshd::start_with(SshdOptions {
        extra_config: vec!["RekeyLimit 1M".into()],
        ..SshdOptions::default()
    })
    .await
    .unwrap();
    let echo = EchoServer::start().await.unwrap();
    let (session, _incoming) = kit::connect(&sshd).await;
    let channel = session.open(to(echo.addr())).await.unwrap();
    let rekeys = {
        let session = session.clone();
        async move {
            for _ in 0..5 {
                session.rekey();
                session.ping().await.unwrap();
            }
        }
    };
    let (moved, ()) = tokio::join!(transfer_both_ways(channel, 16 << 20), rekeys);
    moved.unwrap();
    // 32 MiB through a 1 MiB server limit, plus ours.
    assert!(
        session.kex_count() >= 16,
        "only {} key exchanges",
        session.kex_count()
    );
    let mut again = session.open(to(echo.addr())).await.unwrap();
    echo_roundtrip(&mut again, b"same session").await.unwrap();
}

/// The client starts a re-exchange by itself once its volume limit is reached, in the
/// middle of a transfer both ways (sshd keeps its own, far larger, limit).
#[tokio::test]
async fn our_volume_limit_starts_a_re_exchange_while_data_flows() {
    let sshd = Sshd::start().await.unwrap();
    let echo = EchoServer::start().await.unwrap();
    let mut config = Config::default();
    config.transport.rekey_after_bytes = 1 << 20;
    let (session, _incoming) = kit::connect_with(&sshd, config).await;
    let channel = session.open(to(echo.addr())).await.unwrap();
    transfer_both_ways(channel, 8 << 20).await.unwrap();
    // 16 MiB through a 1 MiB limit.
    assert!(
        session.kex_count() >= 8,
        "only {} key exchanges",
        session.kex_count()
    );
    assert!(
        sshd.count_in_log("SSH2_MSG_KEXINIT received") >= 8,
        "{}",
        sshd.log()
    );
    let mut again = session.open(to(echo.addr())).await.unwrap();
    echo_roundtrip(&mut again, b"same session").await.unwrap();
}

/// A goodbye said while the server is still sending must reach it. Closing a socket with
/// bytes unread makes the kernel reset the connection, and the server, busy writing,
/// meets the reset before it reads our DISCONNECT; so the socket is shut for writing and
/// drained to the server's end instead.
#[tokio::test]
async fn a_goodbye_said_while_data_pours_in_reaches_the_server() {
    let sshd = Sshd::start().await.unwrap();
    let source = SourceServer::start().await.unwrap();
    for round in 0..3 {
        let (session, _incoming) = kit::connect(&sshd).await;
        let read = Arc::new(AtomicU64::new(0));
        for _ in 0..4 {
            let mut channel = session.open(to(source.addr())).await.unwrap();
            let read = Arc::clone(&read);
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 << 10];
                while let Ok(n @ 1..) = channel.read(&mut buf).await {
                    read.fetch_add(n as u64, Ordering::Relaxed);
                }
            });
        }
        wait_until(CONNECT_TIMEOUT, "data pouring in", || {
            read.load(Ordering::Relaxed) >= 16 << 20
        })
        .await
        .unwrap();
        let goodbyes = sshd.count_in_log("Received disconnect");
        session.disconnect("leaving mid-transfer");
        tokio::time::timeout(CONNECT_TIMEOUT, session.closed())
            .await
            .unwrap();
        wait_until(CONNECT_TIMEOUT, "sshd logs our goodbye", || {
            sshd.count_in_log("Received disconnect") == goodbyes + 1
        })
        .await
        .unwrap_or_else(|e| panic!("round {round}: {e}; sshd log:\n{}", sshd.log()));
    }
    assert_eq!(sshd.count_in_log("Connection reset"), 0, "{}", sshd.log());
}
