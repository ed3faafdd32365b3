//! Flow control: a paused or slow reader stops only its own channel. Heartbeats and the
//! other channels of the session carry on, no session is lost, every byte arrives.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tunneld_ssh::{Channel, Session};
use tunneld_tests::net::{echo_roundtrip, random_bytes, sha256_hex};
use tunneld_tests::{EchoServer, Sshd, SshdOptions};

use crate::basics::to;
use crate::kit;

/// The download of the paused-reader tests.
const DOWNLOAD_BYTES: usize = 48 << 20;
/// How long the reader pauses.
const PAUSE: Duration = Duration::from_secs(12);
/// Each echo and heartbeat beside a paused or slow reader must come back within this.
const ROUND_TRIP_DEADLINE: Duration = Duration::from_secs(2);
/// A channel's receive window (tunneld-ssh's default, as OpenSSH's).
const WINDOW_BYTES: usize = 2 << 20;
/// The slow reader's pace: 64 KiB every 62 ms, about 1 MiB/s.
const SLOW_CHUNK_BYTES: usize = 64 << 10;
const SLOW_EVERY: Duration = Duration::from_millis(62);

/// Serves `data` once to each client, then closes.
async fn download_server(data: Vec<u8>) -> SocketAddr {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            let data = data.clone();
            tokio::spawn(async move {
                let _ = tcp.write_all(&data).await;
                let _ = tcp.shutdown().await;
            });
        }
    });
    addr
}

/// Echoes and pings side by side until `until`; returns the slowest round trip. Fails
/// if any takes longer than [`ROUND_TRIP_DEADLINE`].
async fn keep_echoing(session: &Session, echo: &mut Channel, until: Instant) -> Duration {
    let mut slowest = Duration::ZERO;
    let mut n = 0u32;
    while Instant::now() < until {
        let started = Instant::now();
        let message = format!("round trip {n}");
        tokio::time::timeout(
            ROUND_TRIP_DEADLINE,
            echo_roundtrip(&mut *echo, message.as_bytes()),
        )
        .await
        .expect("an echo beside the paused reader within the deadline")
        .unwrap();
        tokio::time::timeout(ROUND_TRIP_DEADLINE, session.ping())
            .await
            .expect("a heartbeat beside the paused reader within the deadline")
            .unwrap();
        slowest = slowest.max(started.elapsed());
        n += 1;
        // The pause is the scenario, not synchronisation: pace the probes across it.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(n > 10, "only {n} round trips");
    slowest
}

/// Reads a stream to its end.
async fn read_all<R: AsyncRead + Unpin>(mut reader: R, mut got: Vec<u8>) -> Vec<u8> {
    reader.read_to_end(&mut got).await.unwrap();
    got
}

/// What the paused-download tests check after the pause, for any stream.
fn check_download(got: &[u8], sent: &[u8]) {
    assert_eq!(got.len(), sent.len(), "bytes lost");
    assert_eq!(sha256_hex(got), sha256_hex(sent), "bytes changed");
}

fn rekeying_sshd() -> SshdOptions {
    SshdOptions {
        // Re-keying during the pause and the resume, several times.
        extra_config: vec!["RekeyLimit 8M".into()],
        ..SshdOptions::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_download_arrives_whole_while_the_session_carries_on() {
    let sshd = Sshd::start_with(rekeying_sshd()).await.unwrap();
    let echo = EchoServer::start().await.unwrap();
    let sent = random_bytes(DOWNLOAD_BYTES, 48);
    let source = download_server(sent.clone()).await;
    let (session, _incoming) = kit::connect(&sshd).await;

    let mut download = session.open(to(source)).await.unwrap();
    let mut got = vec![0u8; 1 << 20];
    download.read_exact(&mut got).await.unwrap();
    let mut echo_channel = session.open(to(echo.addr())).await.unwrap();

    let slowest = keep_echoing(&session, &mut echo_channel, Instant::now() + PAUSE).await;
    eprintln!("slowest round trip during the pause: {slowest:?}");
    let held = download.buffered();
    assert!(
        held <= WINDOW_BYTES,
        "{held} bytes buffered, over the window"
    );
    assert!(
        held > WINDOW_BYTES / 2,
        "only {held} bytes buffered: the server stopped early?"
    );

    let got = read_all(&mut download, got).await;
    check_download(&got, &sent);
    assert!(!session.is_closed());
    assert!(session.kex_count() > 2, "no re-keying during the test");
    echo_roundtrip(&mut echo_channel, b"still the same session")
        .await
        .unwrap();
    assert_eq!(
        sshd.count_in_log("Accepted publickey"),
        1,
        "a reconnect happened"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_reader_beside_a_bulk_transfer_keeps_both_whole() {
    let sshd = Sshd::start_with(rekeying_sshd()).await.unwrap();
    let echo = EchoServer::start().await.unwrap();
    let slow_bytes = 8 << 20;
    let sent = random_bytes(slow_bytes, 8);
    let source = download_server(sent.clone()).await;
    let (session, _incoming) = kit::connect(&sshd).await;

    let slow = async {
        let mut channel = session.open(to(source)).await.unwrap();
        let mut got = Vec::with_capacity(slow_bytes);
        let mut chunk = vec![0u8; SLOW_CHUNK_BYTES];
        loop {
            let n = channel.read(&mut chunk).await.unwrap();
            if n == 0 {
                break;
            }
            got.extend_from_slice(&chunk[..n]);
            tokio::time::sleep(SLOW_EVERY).await;
        }
        got
    };
    let bulk = async {
        let channel = session.open(to(echo.addr())).await.unwrap();
        tunneld_tests::net::transfer_both_ways(channel, 64 << 20).await
    };
    // Heartbeats at 2 s × 2, as a tunnel would send them.
    let heartbeats = async {
        let mut beats = 0;
        loop {
            tokio::time::sleep(Duration::from_secs(2)).await;
            let answered = tokio::time::timeout(Duration::from_secs(4), session.ping()).await;
            assert!(matches!(answered, Ok(Ok(_))), "a heartbeat went unanswered");
            beats += 1;
            if session.is_closed() {
                return beats;
            }
        }
    };
    let (got, moved) = tokio::select! {
        both = async { tokio::join!(slow, bulk) } => both,
        _ = heartbeats => unreachable!("heartbeats end only with the session"),
    };
    moved.unwrap();
    check_download(&got, &sent);
    assert!(!session.is_closed());
    assert_eq!(sshd.count_in_log("Accepted publickey"), 1);
}

/// Through a remote listener: the client on the server's side pauses reading, our side
/// writes; another connection through the same listener keeps echoing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_reader_behind_a_remote_listener_stops_only_itself() {
    let sshd = Sshd::start_with(rekeying_sshd()).await.unwrap();
    let (session, mut incoming) = kit::connect(&sshd).await;
    let port = session.tcpip_forward("127.0.0.1", 0).await.unwrap();
    let server_side = SocketAddr::from((Ipv4Addr::LOCALHOST, u16::try_from(port).unwrap()));
    let sent = random_bytes(DOWNLOAD_BYTES, 7);

    // The first connection gets the download, every later one an echo.
    let serving = {
        let sent = sent.clone();
        tokio::spawn(async move {
            let mut first = true;
            while let Some(offer) = incoming.recv().await {
                let channel = offer.accept();
                if std::mem::take(&mut first) {
                    let sent = sent.clone();
                    tokio::spawn(async move { write_and_close(channel, &sent).await });
                } else {
                    tokio::spawn(echo_channel(channel));
                }
            }
        })
    };
    let mut download = TcpStream::connect(server_side).await.unwrap();
    let mut got = vec![0u8; 1 << 20];
    download.read_exact(&mut got).await.unwrap();
    let mut echo = TcpStream::connect(server_side).await.unwrap();
    let until = Instant::now() + PAUSE;
    let mut n = 0;
    while Instant::now() < until {
        tokio::time::timeout(
            ROUND_TRIP_DEADLINE,
            echo_roundtrip(&mut echo, b"beside the paused one"),
        )
        .await
        .expect("an echo within the deadline")
        .unwrap();
        tokio::time::timeout(ROUND_TRIP_DEADLINE, session.ping())
            .await
            .expect("a heartbeat within the deadline")
            .unwrap();
        n += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(n > 10);
    let got = read_all(&mut download, got).await;
    check_download(&got, &sent);
    assert!(!session.is_closed());
    assert_eq!(sshd.count_in_log("Accepted publickey"), 1);
    serving.abort();
}

async fn write_and_close<S: AsyncWrite + Unpin>(mut stream: S, data: &[u8]) {
    stream.write_all(data).await.unwrap();
    stream.shutdown().await.unwrap();
}

async fn echo_channel(channel: Channel) {
    let (mut rd, mut wr) = tokio::io::split(channel);
    let _ = tokio::io::copy(&mut rd, &mut wr).await;
    let _ = wr.shutdown().await;
}

/// A reader paused for a minute holds at most its window, however much the server has.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_during_a_long_pause_stays_within_the_window() {
    let sshd = Sshd::start().await.unwrap();
    let source = tunneld_tests::SourceServer::start().await.unwrap();
    let (session, _incoming) = kit::connect(&sshd).await;
    let mut channel = session.open(to(source.addr())).await.unwrap();
    let mut first = [0u8; 1024];
    channel.read_exact(&mut first).await.unwrap();
    let until = Instant::now() + Duration::from_secs(60);
    let mut largest = 0;
    let mut samples = 0;
    while Instant::now() < until {
        largest = largest.max(channel.buffered());
        samples += 1;
        tokio::time::timeout(ROUND_TRIP_DEADLINE, session.ping())
            .await
            .expect("a heartbeat within the deadline")
            .unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    eprintln!("largest buffered during the pause: {largest} bytes over {samples} samples");
    assert!(largest <= WINDOW_BYTES, "{largest} bytes buffered");
    assert!(largest > WINDOW_BYTES / 2);
    // The source was held back by the window (plus socket buffers), not read into memory.
    assert!(
        source.bytes_sent() < 64 << 20,
        "source sent {} bytes",
        source.bytes_sent()
    );
}

/// A channel keeps its buffers while data flows (regrowing them after every read would
/// cost more than the encryption) and gives them back once the session is quiet.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channel_buffers_are_kept_during_a_transfer_and_given_back_when_quiet() {
    let sshd = Sshd::start().await.unwrap();
    let echo = EchoServer::start().await.unwrap();
    let (session, _incoming) = kit::connect(&sshd).await;
    let mut channel = session.open(to(echo.addr())).await.unwrap();
    let data = random_bytes(4 << 20, 11);
    let mut got = vec![0u8; data.len()];
    let (mut rd, mut wr) = channel.split();
    let (written, read) = tokio::join!(wr.write_all(&data), rd.read_exact(&mut got));
    written.unwrap();
    read.unwrap();
    assert_eq!(sha256_hex(&got), sha256_hex(&data));
    // Each buffer holds at least the largest chunk it carried, more than 16 KiB in a 4 MiB
    // stream; one given back after every read would hold nothing.
    let held = channel.buffer_capacity();
    assert!(
        held.receive >= 16 << 10 && held.send >= 16 << 10,
        "{held:?} right after 4 MiB went by each way"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while channel.buffer_capacity().total() > 0 {
        assert!(
            Instant::now() < deadline,
            "{:?} still held after 10 s of quiet",
            channel.buffer_capacity()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The channel still works, and grows its buffers again.
    echo_roundtrip(&mut channel, b"after the quiet")
        .await
        .unwrap();
}
