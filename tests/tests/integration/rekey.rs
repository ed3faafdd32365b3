//! Rekeying while many channels are busy: the session must carry on, whoever starts it.
//!
//! OpenSSH rekeys after an amount of data that depends on the cipher (1 GiB for
//! chacha20-poly1305, 64 GiB for AES) or after sshd's `RekeyLimit`. A client that starts a
//! rekey of its own while the server has several channel windows of data in flight must
//! take that data, not drop the session.

use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tunneld_core::TunnelState;
use tunneld_tests::net::random_bytes;
use tunneld_tests::sshd::SshdOptions;
use tunneld_tests::{SourceServer, Sshd};

use crate::harness::*;

/// Parallel connections, as a download manager or a backup tool opens them.
const STREAMS: usize = 8;
/// Time allowed per MiB read through the tunnel (debug build, two cores, eight readers).
const READ_TIMEOUT_PER_MIB: Duration = Duration::from_millis(200);

/// Reads `bytes` from `addr` and checks they are the source's repeated chunk.
async fn drain(addr: std::net::SocketAddr, bytes: usize) -> anyhow::Result<()> {
    let chunk = random_bytes(tunneld_tests::servers::SOURCE_CHUNK_BYTES, 1);
    let mut stream = TcpStream::connect(addr).await?;
    let mut buf = vec![0u8; 64 << 10];
    let mut got = 0usize;
    while got < bytes {
        let want = buf.len().min(bytes - got);
        let n = stream.read(&mut buf[..want]).await?;
        anyhow::ensure!(n > 0, "connection closed after {got} of {bytes} bytes");
        for (i, b) in buf[..n].iter().enumerate() {
            let at = (got + i) % chunk.len();
            anyhow::ensure!(*b == chunk[at], "byte {} differs from the source", got + i);
        }
        got += n;
    }
    Ok(())
}

/// Pulls `per_stream` bytes through each of [`STREAMS`] connections of one local forward at
/// once; returns the tunnel's reconnect count afterwards.
async fn pull_in_parallel(sshd: &Sshd, per_stream: usize) -> u64 {
    let source = SourceServer::start().await.unwrap();
    let spec = format!("0:127.0.0.1:{}", source.port());
    let text = tunnel_toml(sshd, "r", &format!("local = [\"{spec}\"]"));
    let (daemon, status) = start_up(&text, "r").await;
    let addr = bound_addr(&status, &spec);
    let bound = READ_TIMEOUT_PER_MIB * u32::try_from((per_stream * STREAMS) >> 20).unwrap();
    let pulls = (0..STREAMS).map(|_| tokio::spawn(drain(addr, per_stream)));
    let results = tokio::time::timeout(bound, futures_join(pulls.collect()))
        .await
        .unwrap_or_else(|_| panic!("{STREAMS} streams did not finish within {bound:?}"));
    for (i, r) in results.into_iter().enumerate() {
        r.unwrap_or_else(|e| panic!("stream {i}: {e:#}"));
    }
    let tunnel = &daemon.status()[0];
    assert_eq!(tunnel.state, TunnelState::Up, "{tunnel:?}");
    let reconnects = tunnel.reconnects;
    daemon.shutdown().await;
    reconnects
}

async fn futures_join(
    handles: Vec<tokio::task::JoinHandle<anyhow::Result<()>>>,
) -> Vec<anyhow::Result<()>> {
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        out.push(
            h.await
                .unwrap_or_else(|e| Err(anyhow::anyhow!("task: {e}"))),
        );
    }
    out
}

/// More than the 1 GiB of chacha20-poly1305 after which both sides start a rekey on their
/// own, so a re-exchange (ours, the server's or both at once) meets eight full windows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_busy_streams_outlive_a_gibibyte() {
    let sshd = Sshd::start_with(SshdOptions {
        extra_config: vec!["Ciphers chacha20-poly1305@openssh.com".into()],
        ..SshdOptions::default()
    })
    .await
    .unwrap();
    let reconnects = pull_in_parallel(&sshd, 160 << 20).await;
    assert_eq!(reconnects, 0, "the session dropped under load");
    assert_eq!(sshd.count_in_log("Accepted publickey"), 1, "{}", sshd.log());
    // sshd logs the volume limit of every new key (debug1): the first and at least one more.
    let exchanges = sshd.count_in_log("rekey out after 134217728 blocks");
    assert!(
        exchanges >= 2,
        "{exchanges} key exchange(s)\n{}",
        sshd.log()
    );
}

/// The server rekeys every 32 MiB while eight channels pull data: every rekey completes
/// and the session stays the same one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_rekeys_under_load_are_taken_in_stride() {
    let sshd = Sshd::start_with(SshdOptions {
        extra_config: vec!["RekeyLimit 32M".into()],
        ..Default::default()
    })
    .await
    .unwrap();
    let reconnects = pull_in_parallel(&sshd, 32 << 20).await;
    assert_eq!(reconnects, 0, "the session dropped under load");
    assert_eq!(sshd.count_in_log("Accepted publickey"), 1, "{}", sshd.log());
    // 256 MiB at 32 MiB a key: several rekeys, each one's KEXINIT logged by sshd.
    let rekeys = sshd.count_in_log("SSH2_MSG_KEXINIT sent") - 1;
    eprintln!("sshd rekeyed {rekeys} times under load");
    assert!(rekeys >= 4, "only {rekeys} rekeys:\n{}", sshd.log());
}
