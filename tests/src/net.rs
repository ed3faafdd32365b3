//! Network helpers: free ports, polling with deadlines, checked transfers through
//! forwards, listening sockets from `/proc/net/tcp*`, and `curl`.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use anyhow::{Context, bail};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, sleep, timeout};

/// Pause between two polls of [`wait_until`] and [`wait_port_open`].
pub const POLL_INTERVAL: Duration = Duration::from_millis(15);
/// Budget for one connect attempt while polling a port.
const CONNECT_ATTEMPT_TIMEOUT: Duration = Duration::from_millis(500);
/// Fixed part of the time [`transfer_both_ways`] allows; a MiB adds [`TRANSFER_TIMEOUT_PER_MIB`].
pub const TRANSFER_TIMEOUT_BASE: Duration = Duration::from_secs(30);
/// Extra time [`transfer_both_ways`] allows per MiB moved each way (very slow debug builds).
pub const TRANSFER_TIMEOUT_PER_MIB: Duration = Duration::from_secs(2);
/// How long [`echo_roundtrip`] waits for the echo.
pub const ECHO_TIMEOUT: Duration = Duration::from_secs(10);
/// `curl --max-time`, in seconds; [`curl`] kills it a little after that.
const CURL_MAX_TIME_SECS: u64 = 10;
/// Seed of the data [`transfer_both_ways`] sends (mixed with the length).
const TRANSFER_SEED: u64 = 0x7475_6e6e_656c_6421;
/// Write chunk for [`transfer_both_ways`]: big enough to be fast, small enough to interleave.
const TRANSFER_CHUNK_BYTES: usize = 64 * 1024;

/// A port that was free on `ip` a moment ago: binds `ip:0`, reads the port, releases it.
///
/// Another process may take it before you bind it: callers that start a server on it
/// should retry with a fresh port when the bind fails.
///
/// # Panics
/// `ip` cannot be bound (not a local address).
pub fn free_port(ip: IpAddr) -> u16 {
    let listener = std::net::TcpListener::bind((ip, 0))
        .unwrap_or_else(|e| panic!("bind {ip}:0 to find a free port: {e}"));
    listener
        .local_addr()
        .expect("local_addr of a bound listener")
        .port()
}

/// Polls `f` every [`POLL_INTERVAL`] until it returns true.
///
/// # Errors
/// `f` is still false after `timeout`; the error names `what`.
pub async fn wait_until<F: FnMut() -> bool>(
    timeout: Duration,
    what: &str,
    mut f: F,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if f() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        sleep(POLL_INTERVAL).await;
    }
}

/// Like [`wait_until`], for a condition that must be checked asynchronously.
///
/// # Errors
/// The condition is still false after `timeout`; the error names `what`.
pub async fn wait_until_async<F, Fut>(timeout: Duration, what: &str, mut f: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if tokio::time::timeout(left, f()).await == Ok(true) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        sleep(POLL_INTERVAL).await;
    }
}

/// Polls until a TCP connect to `addr` succeeds (the connection is closed at once).
///
/// # Errors
/// No connect succeeded within `timeout`; the error carries the last connect error.
pub async fn wait_port_open(addr: SocketAddr, timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let attempt =
            CONNECT_ATTEMPT_TIMEOUT.min(deadline.saturating_duration_since(Instant::now()));
        let err = match tokio::time::timeout(attempt, TcpStream::connect(addr)).await {
            Ok(Ok(_)) => return Ok(()),
            Ok(Err(e)) => e.to_string(),
            Err(_) => "connect timed out".to_owned(),
        };
        if Instant::now() >= deadline {
            bail!("port {addr} not open after {timeout:?}: {err}");
        }
        sleep(POLL_INTERVAL).await;
    }
}

/// Polls until TCP connects to `addr` are refused.
///
/// # Errors
/// Something still accepts on `addr` after `timeout`.
pub async fn wait_port_closed(addr: SocketAddr, timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let attempt =
            CONNECT_ATTEMPT_TIMEOUT.min(deadline.saturating_duration_since(Instant::now()));
        if let Ok(Err(_)) = tokio::time::timeout(attempt, TcpStream::connect(addr)).await {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("port {addr} still accepts connections after {timeout:?}");
        }
        sleep(POLL_INTERVAL).await;
    }
}

/// `n` pseudo-random bytes, the same for the same `seed` (SplitMix64).
pub fn random_bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut state = seed;
    let mut out = Vec::with_capacity(n + 8);
    while out.len() < n {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        out.extend_from_slice(&z.to_le_bytes());
    }
    out.truncate(n);
    out
}

/// Lower-case hex SHA-256 of `data`.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Sends `bytes` pseudo-random bytes through `stream` to an **echo** server while reading
/// the echo back concurrently, then checks length and SHA-256 of both directions.
///
/// The write side is shut down after the last byte (so the echo server sees EOF and closes
/// its side); the read side reads to EOF. Pass `&mut stream` to keep the stream.
///
/// # Errors
/// I/O errors on either half, an echo that differs (the error gives lengths, hashes and
/// the first differing offset), or the whole exchange taking longer than
/// [`TRANSFER_TIMEOUT_BASE`] + [`TRANSFER_TIMEOUT_PER_MIB`] per MiB.
pub async fn transfer_both_ways<S>(stream: S, bytes: usize) -> anyhow::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let sent = random_bytes(bytes, TRANSFER_SEED ^ bytes as u64);
    let limit = TRANSFER_TIMEOUT_BASE + TRANSFER_TIMEOUT_PER_MIB * (bytes / (1 << 20)) as u32;
    let (mut rd, mut wr) = tokio::io::split(stream);
    let write = async {
        for chunk in sent.chunks(TRANSFER_CHUNK_BYTES) {
            wr.write_all(chunk).await.context("write to echo")?;
        }
        wr.shutdown().await.context("shut down the write side")?;
        anyhow::Ok(())
    };
    let read = async {
        let mut back = Vec::with_capacity(bytes);
        rd.read_to_end(&mut back)
            .await
            .with_context(|| format!("read echo (after {} bytes)", back.len()))?;
        anyhow::Ok(back)
    };
    let (written, back) = timeout(limit, async { tokio::join!(write, read) })
        .await
        .with_context(|| format!("transfer of {bytes} bytes each way took over {limit:?}"))?;
    // A read error usually explains a write error (peer reset), so report it first.
    let back = back?;
    written?;
    if back != sent {
        let first_diff = sent.iter().zip(&back).position(|(a, b)| a != b);
        bail!(
            "echo differs: sent {} bytes sha256 {}, got back {} bytes sha256 {}; first differing \
             offset {}",
            sent.len(),
            sha256_hex(&sent),
            back.len(),
            sha256_hex(&back),
            first_diff.map_or_else(
                || "none (one is a prefix of the other)".to_owned(),
                |o| o.to_string()
            ),
        );
    }
    Ok(())
}

/// Writes `msg` to an echo server through `stream` and reads exactly as many bytes back.
/// Pass `&mut stream` to keep using the stream.
///
/// # Errors
/// I/O errors, EOF before the whole echo, a different echo, or no echo within [`ECHO_TIMEOUT`].
pub async fn echo_roundtrip<S>(mut stream: S, msg: &[u8]) -> anyhow::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut back = vec![0; msg.len()];
    timeout(ECHO_TIMEOUT, async {
        stream.write_all(msg).await.context("write to echo")?;
        stream.flush().await.context("flush to echo")?;
        stream.read_exact(&mut back).await.context("read echo")?;
        anyhow::Ok(())
    })
    .await
    .with_context(|| format!("no echo of {} bytes within {ECHO_TIMEOUT:?}", msg.len()))??;
    if back != msg {
        bail!(
            "echo differs: sent {:?}, got {:?}",
            String::from_utf8_lossy(msg),
            String::from_utf8_lossy(&back)
        );
    }
    Ok(())
}

/// Local addresses of the TCP sockets in LISTEN state on `port`, from `/proc/net/tcp` and
/// `/proc/net/tcp6` (this network namespace, any process). Sorted, without duplicates.
///
/// Tells whether a forward listens on `127.0.0.1`, `0.0.0.0`, `::1` or `::`.
pub fn listening_sockets(port: u16) -> Vec<SocketAddr> {
    let mut found = Vec::new();
    for file in ["/proc/net/tcp", "/proc/net/tcp6"] {
        if let Ok(text) = std::fs::read_to_string(file) {
            found.extend(parse_proc_net_tcp(&text).filter(|a| a.port() == port));
        }
    }
    found.sort();
    found.dedup();
    found
}

/// The LISTEN sockets' local addresses in one `/proc/net/tcp{,6}` table.
fn parse_proc_net_tcp(text: &str) -> impl Iterator<Item = SocketAddr> + '_ {
    const TCP_LISTEN: &str = "0A";
    text.lines().skip(1).filter_map(|line| {
        let mut fields = line.split_whitespace();
        let local = fields.nth(1)?;
        let state = fields.nth(1)?;
        if state != TCP_LISTEN {
            return None;
        }
        let (ip_hex, port_hex) = local.split_once(':')?;
        let port = u16::from_str_radix(port_hex, 16).ok()?;
        // The kernel prints each 32-bit word of the address as it sits in memory, read as a
        // host-order integer: parse each word and turn it back into memory (native) order.
        let mut bytes = Vec::with_capacity(16);
        for i in (0..ip_hex.len()).step_by(8) {
            let word = u32::from_str_radix(ip_hex.get(i..i + 8)?, 16).ok()?;
            bytes.extend_from_slice(&word.to_ne_bytes());
        }
        let ip = match bytes.len() {
            4 => IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(bytes).ok()?)),
            16 => IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(bytes).ok()?)),
            _ => return None,
        };
        Some(SocketAddr::new(ip, port))
    })
}

/// Whether a `curl` binary runs.
pub fn curl_available() -> bool {
    std::process::Command::new("curl")
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Runs `curl -sS --max-time 10 ARGS...` and returns its stdout.
///
/// # Errors
/// curl cannot be started, exits non-zero (the error has its exit code and stderr), or
/// outlives its own `--max-time` by 5 s (it is then killed).
pub async fn curl(args: &[&str]) -> anyhow::Result<String> {
    let max_time = CURL_MAX_TIME_SECS.to_string();
    let child = tokio::process::Command::new("curl")
        .args(["-sS", "--max-time", &max_time])
        .args(args)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = timeout(Duration::from_secs(CURL_MAX_TIME_SECS + 5), child)
        .await
        .with_context(|| format!("curl {args:?} did not exit"))?
        .context("run curl (is it installed?)")?;
    if !out.status.success() {
        bail!(
            "curl {args:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    String::from_utf8(out.stdout).with_context(|| format!("curl {args:?} printed non-UTF-8"))
}

/// Whether `ip` can be bound here (on Linux all of 127.0.0.0/8 is local, so normally true).
pub fn have_loopback_alias(ip: Ipv4Addr) -> bool {
    std::net::TcpListener::bind((ip, 0)).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::servers::EchoServer;

    #[test]
    fn random_bytes_is_seeded_and_exact_length() {
        assert_eq!(random_bytes(1001, 7), random_bytes(1001, 7));
        assert_ne!(random_bytes(64, 7), random_bytes(64, 8));
        assert_eq!(random_bytes(0, 1).len(), 0);
        assert_eq!(random_bytes(13, 1).len(), 13);
        assert_eq!(&random_bytes(13, 1)[..], &random_bytes(16, 1)[..13]);
    }

    #[test]
    fn sha256_of_abc() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn parses_proc_net_tcp_tables() {
        let v4 = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0 100 0 0 10 0
   1: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2 1 0 100 0 0 10 0
   2: 0100007F:1F90 0100007F:D2F0 01 00000000:00000000 00:00000000 00000000     0        0 3 1 0 100 0 0 10 0
";
        let got: Vec<_> = parse_proc_net_tcp(v4).collect();
        assert_eq!(
            got,
            vec![
                "127.0.0.1:8080".parse().unwrap(),
                "0.0.0.0:22".parse().unwrap()
            ]
        );
        let v6 = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000001000000:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4 1 0 100 0 0 10 0
   1: 00000000000000000000000000000000:0050 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 5 1 0 100 0 0 10 0
";
        let got: Vec<_> = parse_proc_net_tcp(v6).collect();
        assert_eq!(
            got,
            vec!["[::1]:8080".parse().unwrap(), "[::]:80".parse().unwrap()]
        );
    }

    #[tokio::test]
    async fn listening_sockets_finds_a_loopback_listener() {
        let echo = EchoServer::start().await.unwrap();
        let found = listening_sockets(echo.port());
        assert_eq!(found, vec![echo.addr()]);
        let free = free_port(IpAddr::V4(Ipv4Addr::LOCALHOST));
        assert_eq!(listening_sockets(free), Vec::<SocketAddr>::new());
    }

    #[tokio::test]
    async fn transfer_both_ways_4_mib_through_echo() {
        let echo = EchoServer::start().await.unwrap();
        let stream = TcpStream::connect(echo.addr()).await.unwrap();
        transfer_both_ways(stream, 4 << 20).await.unwrap();
        let mut stream = TcpStream::connect(echo.addr()).await.unwrap();
        echo_roundtrip(&mut stream, b"ping").await.unwrap();
        echo_roundtrip(&mut stream, b"pong").await.unwrap();
        assert_eq!(echo.connections(), 2);
    }

    #[tokio::test]
    async fn transfer_both_ways_detects_a_non_echo() {
        // A peer that reads everything and answers with something else.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = Vec::new();
            s.read_to_end(&mut buf).await.unwrap();
            buf[10] ^= 1;
            s.write_all(&buf).await.unwrap();
        });
        let stream = TcpStream::connect(addr).await.unwrap();
        let err = transfer_both_ways(stream, 1000)
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("first differing offset 10"), "{err}");
    }

    #[tokio::test]
    async fn waits_fail_with_the_name_of_what_was_awaited() {
        let err = wait_until(Duration::from_millis(50), "the moon", || false)
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("the moon"), "{err}");
        let mut n = 0;
        wait_until(Duration::from_secs(5), "three polls", || {
            n += 1;
            n == 3
        })
        .await
        .unwrap();
        let closed = SocketAddr::new(
            Ipv4Addr::LOCALHOST.into(),
            free_port(Ipv4Addr::LOCALHOST.into()),
        );
        assert!(
            wait_port_open(closed, Duration::from_millis(50))
                .await
                .is_err()
        );
        wait_port_closed(closed, Duration::from_secs(1))
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn curl_reports_failures_with_stderr() {
        if !curl_available() {
            eprintln!("curl not installed: skipping");
            return;
        }
        let port = free_port(Ipv4Addr::LOCALHOST.into());
        let err = curl(&[&format!("http://127.0.0.1:{port}/")])
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("failed"), "{err}");
    }

    #[test]
    fn loopback_aliases_bind() {
        assert!(have_loopback_alias(Ipv4Addr::LOCALHOST));
    }
}
