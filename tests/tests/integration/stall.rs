//! A local reader that stops reading must not freeze the other connections of its
//! tunnel (russh waits on a full channel queue inside its session loop).

use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tunneld_core::{STALLED_READER_TIMEOUT, TunnelState};
use tunneld_tests::net::{echo_roundtrip, wait_until};
use tunneld_tests::{EchoServer, SourceServer, Sshd};

use crate::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_reader_is_cut_off_and_the_others_carry_on() {
    let sshd = Sshd::start().await.unwrap();
    let source = SourceServer::start().await.unwrap();
    let echo = EchoServer::start().await.unwrap();
    let to_source = format!("0:127.0.0.1:{}", source.port());
    let to_echo = format!("0:127.0.0.1:{}", echo.port());
    let text = tunnel_toml(
        &sshd,
        "t",
        &format!(
            "local = [\"{to_source}\", \"{to_echo}\"]\nserver_alive_interval = \"2s\"\nserver_alive_count_max = 2"
        ),
    );
    let (daemon, status) = start_up(&text, "t").await;

    // A reader that never reads, while the server side keeps sending.
    let mut stalled = TcpStream::connect(bound_addr(&status, &to_source))
        .await
        .unwrap();
    // Wait until the buffers between them are full and the source is held back.
    wait_until(UP_TIMEOUT, "the source to fill the buffers", || {
        source.bytes_sent() > 2 << 20
    })
    .await
    .unwrap();
    wait_until(UP_TIMEOUT, "the source to be held back", {
        let mut last = 0;
        move || {
            let now = source.bytes_sent();
            let still = now == last;
            last = now;
            still
        }
    })
    .await
    .unwrap();

    // Another connection of the same tunnel still round-trips, within the stall bound.
    let started = Instant::now();
    let other = TcpStream::connect(bound_addr(&status, &to_echo))
        .await
        .unwrap();
    echo_roundtrip(other, b"not held up").await.unwrap();
    let took = started.elapsed();
    eprintln!("round trip beside a stalled reader took {took:?}");
    assert!(
        took < STALLED_READER_TIMEOUT + Duration::from_secs(5),
        "{took:?}"
    );

    // The stalled connection was closed by tunneld: draining it ends in EOF or a reset.
    let mut sink = vec![0u8; 1 << 20];
    let drained = tokio::time::timeout(UP_TIMEOUT, async {
        loop {
            match stalled.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(drained.is_ok(), "the stalled connection was never closed");

    // The session itself survived: no reconnect, still up.
    let s = daemon.status().remove(0);
    assert_eq!((s.state, s.reconnects), (TunnelState::Up, 0), "{s:?}");
    daemon.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_but_steady_reader_gets_everything() {
    let sshd = Sshd::start().await.unwrap();
    let source = SourceServer::start().await.unwrap();
    let to_source = format!("0:127.0.0.1:{}", source.port());
    let text = tunnel_toml(&sshd, "t", &format!("local = [\"{to_source}\"]"));
    let (daemon, status) = start_up(&text, "t").await;
    let mut slow = TcpStream::connect(bound_addr(&status, &to_source))
        .await
        .unwrap();
    // Read 24 MiB at about a tenth of the link's speed: backpressure, not a cut.
    let mut buf = vec![0u8; 64 << 10];
    let mut got = 0usize;
    while got < 24 << 20 {
        let n = tokio::time::timeout(UP_TIMEOUT, slow.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "connection closed after {got} bytes");
        got += n;
        // Pacing the reader (this is the load, not a synchronisation).
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    daemon.shutdown().await;
}
