//! A local reader that pauses or reads slowly holds back only its own connection: the
//! other connections of its tunnel, the heartbeats and the session carry on, nothing is
//! cut and every byte arrives (per-channel flow control, as OpenSSH does it). Through
//! `-L` (the reader is ours) and `-R` (the reader is on the server's side).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::TcpStream;
use tunneld_core::{Daemon, TunnelState};
use tunneld_tests::net::{echo_roundtrip, sha256_hex, transfer_both_ways};
use tunneld_tests::{DownloadServer, EchoServer, Sshd, SshdOptions};

use crate::harness::*;

/// The paused download.
const DOWNLOAD_BYTES: usize = 48 << 20;
/// How long the reader pauses.
const PAUSE: Duration = Duration::from_secs(12);
/// Each echo beside the paused or slow reader must come back within this.
const ROUND_TRIP_DEADLINE: Duration = Duration::from_secs(2);
/// Heartbeats as tight as the slow-reader check asks: dead after 4 s of silence.
const HEARTBEATS: &str = "server_alive_interval = \"2s\"\nserver_alive_count_max = 2";
/// The slow reader takes this much every [`SLOW_EVERY`]: about 1 MiB/s.
const SLOW_CHUNK_BYTES: usize = 64 << 10;
const SLOW_EVERY: Duration = Duration::from_millis(62);
/// What the slow reader reads in all.
const SLOW_BYTES: usize = 8 << 20;
/// The bulk transfer beside it, each way.
const BULK_TRANSFER_BYTES: usize = 64 << 20;

/// sshd re-keys every 8 MiB, so keys change during the pauses and transfers too.
async fn rekeying_sshd() -> Sshd {
    Sshd::start_with(SshdOptions {
        extra_config: vec!["RekeyLimit 8M".into()],
        ..SshdOptions::default()
    })
    .await
    .unwrap()
}

/// Echoes through `addr` every 100 ms until `until`, each round trip within
/// [`ROUND_TRIP_DEADLINE`]; returns the slowest.
async fn keep_echoing(addr: SocketAddr, until: Instant) -> Duration {
    let mut echo = TcpStream::connect(addr).await.unwrap();
    let mut slowest = Duration::ZERO;
    let mut trips = 0;
    while Instant::now() < until {
        let started = Instant::now();
        tokio::time::timeout(
            ROUND_TRIP_DEADLINE,
            echo_roundtrip(&mut echo, b"still moving"),
        )
        .await
        .expect("an echo beside the paused reader within the deadline")
        .unwrap();
        slowest = slowest.max(started.elapsed());
        trips += 1;
        // The pause is the scenario, not synchronisation: the probes are paced across it.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(trips > 10, "only {trips} round trips");
    slowest
}

/// Reads 1 MiB, pauses for [`PAUSE`] while `beside` echoes, then reads to the end.
async fn paused_download<R: AsyncRead + Unpin>(mut download: R, beside: SocketAddr) -> Vec<u8> {
    let mut got = vec![0u8; 1 << 20];
    download.read_exact(&mut got).await.unwrap();
    let slowest = keep_echoing(beside, Instant::now() + PAUSE).await;
    eprintln!("slowest echo during the pause: {slowest:?}");
    download.read_to_end(&mut got).await.unwrap();
    got
}

/// Reads at about 1 MiB/s to the end.
async fn slow_read<R: AsyncRead + Unpin>(mut reader: R) -> Vec<u8> {
    let mut got = Vec::with_capacity(SLOW_BYTES);
    let mut chunk = vec![0u8; SLOW_CHUNK_BYTES];
    loop {
        let n = reader.read(&mut chunk).await.unwrap();
        if n == 0 {
            return got;
        }
        got.extend_from_slice(&chunk[..n]);
        // Pacing the reader: this is the load, not a synchronisation.
        tokio::time::sleep(SLOW_EVERY).await;
    }
}

fn assert_whole(got: &[u8], sent: &[u8]) {
    assert_eq!(got.len(), sent.len(), "bytes lost");
    assert_eq!(sha256_hex(got), sha256_hex(sent), "bytes changed");
}

/// The session survived everything: still up, never reconnected, one login on the server.
async fn assert_same_session(daemon: Daemon, sshd: &Sshd) {
    let s = daemon.status().remove(0);
    assert_eq!((s.state, s.reconnects), (TunnelState::Up, 0), "{s:?}");
    assert_eq!(sshd.count_in_log("Accepted publickey"), 1, "{}", sshd.log());
    daemon.shutdown().await;
}

/// Which side of the tunnel the reader is on.
#[derive(Clone, Copy)]
enum Through {
    /// `-L`: the reader connects to our listener.
    Local,
    /// `-R`: the reader is a client of the server's listener.
    Remote,
}

/// A tunnel with two forwards of one kind, to a download server of `len` bytes and to
/// an echo server; the addresses the reader and its neighbour connect to.
struct TwoForwards {
    sshd: Sshd,
    source: DownloadServer,
    _echo: EchoServer,
    daemon: Daemon,
    to_source: SocketAddr,
    to_echo: SocketAddr,
}

impl TwoForwards {
    async fn start(through: Through, len: usize, seed: u64) -> TwoForwards {
        let sshd = rekeying_sshd().await;
        let source = DownloadServer::start(len, seed).await.unwrap();
        let echo = EchoServer::start().await.unwrap();
        let (key, bind) = match through {
            Through::Local => ("local", "0"),
            Through::Remote => ("remote", "127.0.0.1:0"),
        };
        let spec_source = format!("{bind}:127.0.0.1:{}", source.port());
        let spec_echo = format!("{bind}:127.0.0.1:{}", echo.port());
        let text = tunnel_toml(
            &sshd,
            "t",
            &format!("{key} = [\"{spec_source}\", \"{spec_echo}\"]\n{HEARTBEATS}"),
        );
        let (daemon, status) = start_up(&text, "t").await;
        let addr = |spec: &str| match through {
            Through::Local => bound_addr(&status, spec),
            Through::Remote => SocketAddr::from(([127, 0, 0, 1], remote_port(&status, spec))),
        };
        let (to_source, to_echo) = (addr(&spec_source), addr(&spec_echo));
        TwoForwards {
            sshd,
            source,
            _echo: echo,
            daemon,
            to_source,
            to_echo,
        }
    }

    /// Checks what the reader got, and that the session survived.
    async fn finish(self, got: &[u8]) {
        assert_whole(got, self.source.data());
        assert_same_session(self.daemon, &self.sshd).await;
    }
}

async fn paused_download_through(through: Through, seed: u64) {
    let t = TwoForwards::start(through, DOWNLOAD_BYTES, seed).await;
    let download = TcpStream::connect(t.to_source).await.unwrap();
    let got = paused_download(download, t.to_echo).await;
    t.finish(&got).await;
}

async fn slow_reader_beside_bulk_through(through: Through, seed: u64) {
    let t = TwoForwards::start(through, SLOW_BYTES, seed).await;
    let slow = TcpStream::connect(t.to_source).await.unwrap();
    let bulk = TcpStream::connect(t.to_echo).await.unwrap();
    let (got, moved) = tokio::join!(
        slow_read(slow),
        transfer_both_ways(bulk, BULK_TRANSFER_BYTES)
    );
    moved.unwrap();
    t.finish(&got).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_download_through_a_local_forward_arrives_whole() {
    paused_download_through(Through::Local, 48).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_download_through_a_remote_forward_arrives_whole() {
    paused_download_through(Through::Remote, 49).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_reader_beside_a_bulk_transfer_through_local_forwards_keeps_both_whole() {
    slow_reader_beside_bulk_through(Through::Local, 8).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_reader_beside_a_bulk_transfer_through_remote_forwards_keeps_both_whole() {
    slow_reader_beside_bulk_through(Through::Remote, 9).await;
}
