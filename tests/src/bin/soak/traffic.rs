//! Checked traffic through every forward, and the ledger that decides whether a broken
//! connection was cut by an injected fault or is a failure.
//!
//! Every connection goes to the kit's echo server behind a forward. It sends a
//! deterministic pseudo-random stream (SplitMix64 of a per-connection seed, see
//! [`Pattern`]) and checks every byte of the echo against the stream at the same offset,
//! as it arrives. So a byte that is lost, duplicated, reordered or altered is seen at the
//! first wrong offset, and a connection that ends early has delivered a checked prefix.
//!
//! Attribution: each fault opens a window in the [`Ctx`] ledger before it is injected and
//! closes it once every tunnel is up again and traffic flows (see `faults`). A connection
//! that breaks (EOF before the whole echo, reset, stall, refused connect) is **cut by a
//! fault** when a window of a fault affecting its tunnel overlaps the span from the last
//! byte it verified (or its start) to the moment the break was seen: the connection was
//! healthy until that byte, so whatever broke it happened in that span. Otherwise it is
//! a **failure**. Wrong bytes are a failure whatever the faults: a cut may shorten a
//! stream, never alter it.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::{Instant, sleep, timeout};
use tunneld_tests::socks;

use crate::rng::{Rng, word};

/// Bound of a connect through a forward, SOCKS handshake included. tunneld holds a client
/// that arrives while its tunnel is down for up to `connect_timeout` (5 s here).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// A connection that verifies no new byte for this long has stalled. Longer than any
/// injected black hole, so stalls during one are seen after tunneld has acted.
pub const STALL_TIMEOUT: Duration = Duration::from_secs(20);
/// Read buffer of the echo checker.
const READ_BUF_BYTES: usize = 64 * 1024;
/// Largest write of a short connection.
const WRITE_CHUNK_MAX_BYTES: u64 = 64 * 1024;
/// Largest round of a long-lived connection (written whole, then read back whole).
const LONG_ROUND_MAX_BYTES: u64 = 32 * 1024;
/// Short connections carry `2^k + r` bytes for `k` uniform in `0..=SIZE_MAX_LOG2`: as
/// many of a few bytes as of a megabyte.
const SIZE_MAX_LOG2: u64 = 20;
/// Percent of short connections that carry a bulk transfer instead.
const BULK_PERCENT: u64 = 1;
/// Size of such a bulk transfer.
const BULK_BYTES: u64 = 16 << 20;
/// Pacing of a short-connection worker between two connections.
const SHORT_PAUSE_MS: (u64, u64) = (0, 100);
/// Pacing of a long-lived connection between two rounds.
const LONG_PAUSE_MS: (u64, u64) = (20, 250);
/// Pause before a long-lived connection that broke is replaced.
const REOPEN_PAUSE: Duration = Duration::from_millis(100);
/// Short-connection workers per forward; each forward also has one long-lived connection.
pub const SHORT_WORKERS_PER_FORWARD: usize = 3;
/// Failure details kept for the report (all are counted).
const MAX_FAILURE_DETAILS: usize = 50;

/// How a forward is entered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `-L`: connect to tunneld's listener.
    Local,
    /// `-R`: connect to the port sshd listens on for tunneld.
    Remote,
    /// `-D`: a SOCKS request to tunneld's listener for the echo server.
    Dynamic,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Local => "local",
            Kind::Remote => "remote",
            Kind::Dynamic => "dynamic",
        }
    }
}

/// One forward of the daemon's configuration, as traffic sees it.
#[derive(Debug)]
pub struct Forward {
    /// Index into [`Ctx`]'s statistics.
    pub id: usize,
    /// Short name for the report, e.g. `-L direct`.
    pub label: String,
    pub kind: Kind,
    /// Where clients connect: tunneld's listener (-L, -D) or sshd's (-R).
    pub entry: SocketAddr,
    /// The echo server behind it (the SOCKS target for -D).
    pub target: SocketAddr,
    /// The tunnel it belongs to.
    pub tunnel: String,
    /// Whether that tunnel reaches sshd through the fault proxy.
    pub proxied: bool,
}

/// Which tunnels a fault may legitimately disturb.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Affects {
    /// Every tunnel (the server went away).
    All,
    /// Tunnels through the fault proxy.
    Proxied,
    /// None: the daemon must carry on as if nothing happened.
    Nothing,
}

impl Affects {
    pub fn covers(self, proxied: bool) -> bool {
        match self {
            Affects::All => true,
            Affects::Proxied => proxied,
            Affects::Nothing => false,
        }
    }
}

/// A fault's span in the ledger.
struct Window {
    name: &'static str,
    affects: Affects,
    start: Instant,
    /// `None` while the fault is being injected or recovered from.
    end: Option<Instant>,
    /// Connections blamed on it.
    cut: u64,
}

/// Counters of one forward.
#[derive(Default)]
pub struct ForwardStats {
    pub short_completed: AtomicU64,
    pub long_completed: AtomicU64,
    pub cut: AtomicU64,
    pub failed: AtomicU64,
    /// Echoed bytes that matched the stream sent, on every connection (cut ones too).
    pub bytes_checked: AtomicU64,
}

/// Shared by the workers, the fault injector and the report.
pub struct Ctx {
    /// Time zero of the run, for the offsets in messages.
    pub t0: Instant,
    pub stats: Vec<ForwardStats>,
    windows: Mutex<Vec<Window>>,
    failures: Mutex<Vec<String>>,
    failure_count: AtomicU64,
    /// Bytes checked by recovery probes (not in the per-forward figures).
    pub probe_bytes: AtomicU64,
}

impl Ctx {
    pub fn new(t0: Instant, forwards: usize) -> Ctx {
        Ctx {
            t0,
            stats: (0..forwards).map(|_| ForwardStats::default()).collect(),
            windows: Mutex::new(Vec::new()),
            failures: Mutex::new(Vec::new()),
            failure_count: AtomicU64::new(0),
            probe_bytes: AtomicU64::new(0),
        }
    }

    /// Seconds since [`Ctx::t0`], for messages: `+12.3s`.
    pub fn at(&self, t: Instant) -> String {
        format!(
            "+{:.1}s",
            t.saturating_duration_since(self.t0).as_secs_f64()
        )
    }

    /// Opens a fault window now; returns its handle for [`Ctx::close_window`].
    pub fn open_window(&self, name: &'static str, affects: Affects) -> usize {
        let mut w = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        w.push(Window {
            name,
            affects,
            start: Instant::now(),
            end: None,
            cut: 0,
        });
        w.len() - 1
    }

    pub fn close_window(&self, handle: usize) {
        let mut w = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        w[handle].end = Some(Instant::now());
    }

    /// Connections blamed on the window `handle`.
    pub fn cut_by(&self, handle: usize) -> u64 {
        self.windows.lock().unwrap_or_else(|e| e.into_inner())[handle].cut
    }

    /// Records a failure that is not a connection's (a fault not survived, a broken rule).
    pub fn fail(&self, detail: String) {
        self.failure_count.fetch_add(1, Ordering::SeqCst);
        let mut f = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if f.len() < MAX_FAILURE_DETAILS {
            f.push(detail);
        }
    }

    pub fn failure_count(&self) -> u64 {
        self.failure_count.load(Ordering::SeqCst)
    }

    pub fn failure_details(&self) -> Vec<String> {
        self.failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Files a finished connection under completed, cut or failed.
    fn record(&self, fwd: &Forward, long: bool, end: &Ended) {
        let stats = &self.stats[fwd.id];
        stats
            .bytes_checked
            .fetch_add(end.checked, Ordering::Relaxed);
        let broken = match &end.result {
            Ok(()) => {
                let done = if long {
                    &stats.long_completed
                } else {
                    &stats.short_completed
                };
                done.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Err(b) => b,
        };
        if !matches!(broken, Broken::Corrupt(_)) {
            let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
            let blamed = windows.iter_mut().find(|w| {
                w.affects.covers(fwd.proxied)
                    && w.start <= end.ended
                    && w.end.is_none_or(|e| e >= end.last_progress)
            });
            if let Some(w) = blamed {
                w.cut += 1;
                stats.cut.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
        stats.failed.fetch_add(1, Ordering::Relaxed);
        let nearby = self.nearby_faults(end.last_progress, end.ended);
        self.fail(format!(
            "{} (tunnel {}, {}connection opened {}): {} after {} bytes checked{}, last good \
             byte {}, seen {}; {}",
            fwd.label,
            fwd.tunnel,
            if long { "long-lived " } else { "" },
            self.at(end.opened),
            broken,
            end.checked,
            end.expected.map(|n| format!(" of {n}")).unwrap_or_default(),
            self.at(end.last_progress),
            self.at(end.ended),
            nearby
        ));
    }

    /// The faults whose windows come within 10 s of `from..=to`, for a failure message.
    fn nearby_faults(&self, from: Instant, to: Instant) -> String {
        let margin = Duration::from_secs(10);
        let windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        let near: Vec<String> = windows
            .iter()
            .filter(|w| w.start <= to + margin && w.end.is_none_or(|e| e + margin >= from))
            .map(|w| {
                format!(
                    "{} {}..{} (affects {:?})",
                    w.name,
                    self.at(w.start),
                    w.end.map_or_else(|| "now".to_owned(), |e| self.at(e)),
                    w.affects
                )
            })
            .collect();
        if near.is_empty() {
            "no fault within 10 s".to_owned()
        } else {
            format!("faults near: {}", near.join(", "))
        }
    }
}

/// Why a connection did not complete.
#[derive(Debug)]
pub enum Broken {
    /// Connect or SOCKS handshake failed.
    Connect(String),
    /// A read or write failed (reset, broken pipe).
    Io(String),
    /// The echo ended before the whole stream came back.
    Eof,
    /// No byte verified for [`STALL_TIMEOUT`].
    Stall,
    /// A byte differs from the stream sent, or more came back than was sent.
    Corrupt(String),
}

impl std::fmt::Display for Broken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Broken::Connect(e) => write!(f, "connect failed: {e}"),
            Broken::Io(e) => write!(f, "{e}"),
            Broken::Eof => write!(f, "echo ended early (EOF)"),
            Broken::Stall => write!(f, "stalled: no byte for {STALL_TIMEOUT:?}"),
            Broken::Corrupt(e) => write!(f, "CORRUPT: {e}"),
        }
    }
}

/// How one connection ended.
pub struct Ended {
    pub result: Result<(), Broken>,
    /// Bytes of echo verified.
    pub checked: u64,
    /// Bytes it meant to send (short connections).
    pub expected: Option<u64>,
    pub opened: Instant,
    /// When the last byte was verified (or the connection opened).
    pub last_progress: Instant,
    pub ended: Instant,
}

/// The stream a connection sends: byte `i` is byte `i % 8` of SplitMix64 word `i / 8`
/// from the connection's seed, so any offset can be checked without keeping what was sent.
#[derive(Clone, Copy, Debug)]
pub struct Pattern(pub u64);

impl Pattern {
    /// Fills `buf` with the stream's bytes from `offset` on.
    pub fn fill(self, offset: u64, buf: &mut [u8]) {
        let mut pos = offset;
        let mut i = 0;
        while i < buf.len() {
            let bytes = word(self.0, pos / 8).to_le_bytes();
            let skip = (pos % 8) as usize;
            let n = (8 - skip).min(buf.len() - i);
            buf[i..i + n].copy_from_slice(&bytes[skip..skip + n]);
            i += n;
            pos += n as u64;
        }
    }
}

/// Checks echoed bytes against a [`Pattern`] as they arrive.
struct Checker {
    pattern: Pattern,
    checked: u64,
    last_progress: Instant,
    expect: Vec<u8>,
}

impl Checker {
    fn new(pattern: Pattern) -> Checker {
        Checker {
            pattern,
            checked: 0,
            last_progress: Instant::now(),
            expect: vec![0; READ_BUF_BYTES],
        }
    }

    /// Checks `got`, the next bytes of the echo; `limit` is how many bytes were sent.
    fn check(&mut self, got: &[u8], limit: u64) -> Result<(), Broken> {
        if self.checked + got.len() as u64 > limit {
            return Err(Broken::Corrupt(format!(
                "{} bytes came back, only {limit} were sent",
                self.checked + got.len() as u64
            )));
        }
        let expect = &mut self.expect[..got.len()];
        self.pattern.fill(self.checked, expect);
        if let Some(i) = got.iter().zip(expect.iter()).position(|(a, b)| a != b) {
            return Err(Broken::Corrupt(format!(
                "byte {} of the echo is {:#04x}, sent {:#04x}",
                self.checked + i as u64,
                got[i],
                expect[i]
            )));
        }
        self.checked += got.len() as u64;
        self.last_progress = Instant::now();
        Ok(())
    }

    /// Reads once (bounded by [`STALL_TIMEOUT`]) and checks what came; `Ok(0)` is EOF.
    async fn read_some(
        &mut self,
        rd: &mut OwnedReadHalf,
        buf: &mut [u8],
        limit: u64,
    ) -> Result<usize, Broken> {
        let n = match timeout(STALL_TIMEOUT, rd.read(buf)).await {
            Err(_) => return Err(Broken::Stall),
            Ok(Err(e)) => return Err(Broken::Io(format!("read: {e}"))),
            Ok(Ok(n)) => n,
        };
        self.check(&buf[..n], limit)?;
        Ok(n)
    }
}

/// Connects to `fwd`'s entry, through SOCKS for -D (a SOCKS version picked by `rng`).
async fn open(fwd: &Forward, rng: &mut Rng) -> Result<TcpStream, Broken> {
    let target = fwd.target;
    let connect = async {
        let stream = match fwd.kind {
            Kind::Local | Kind::Remote => TcpStream::connect(fwd.entry)
                .await
                .map_err(anyhow::Error::from)?,
            Kind::Dynamic => {
                let ip = match target.ip() {
                    std::net::IpAddr::V4(ip) => ip,
                    std::net::IpAddr::V6(_) => Ipv4Addr::LOCALHOST,
                };
                match rng.below(4) {
                    0 => socks::socks4_connect(fwd.entry, ip, target.port()).await?,
                    1 => socks::socks4a_connect(fwd.entry, "localhost", target.port()).await?,
                    2 => socks::socks5_connect(fwd.entry, "localhost", target.port()).await?,
                    _ => socks::socks5_connect(fwd.entry, &ip.to_string(), target.port()).await?,
                }
            }
        };
        stream.set_nodelay(true)?;
        anyhow::Ok(stream)
    };
    match timeout(CONNECT_TIMEOUT, connect).await {
        Ok(Ok(s)) => Ok(s),
        Ok(Err(e)) => Err(Broken::Connect(format!("{e:#}"))),
        Err(_) => Err(Broken::Connect(format!(
            "no connection within {CONNECT_TIMEOUT:?}"
        ))),
    }
}

/// One short connection: sends `size` bytes of `pattern` in random chunks while checking
/// the echo, half-closes, and expects the echo to end right after the last byte.
pub async fn short_connection(fwd: &Forward, size: u64, rng: &mut Rng) -> Ended {
    let opened = Instant::now();
    let pattern = Pattern(rng.next_u64());
    let mut checker = Checker::new(pattern);
    let result = match open(fwd, rng).await {
        Err(e) => Err(e),
        Ok(stream) => {
            let (mut rd, mut wr) = stream.into_split();
            let chunk_seed = rng.next_u64();
            exchange(&mut rd, &mut wr, &mut checker, size, chunk_seed).await
        }
    };
    Ended {
        result,
        checked: checker.checked,
        expected: Some(size),
        opened,
        last_progress: checker.last_progress.max(opened),
        ended: Instant::now(),
    }
}

/// Writes and checks concurrently; the reader decides the outcome, the writer's error is
/// reported only when the echo then ends early.
async fn exchange(
    rd: &mut OwnedReadHalf,
    wr: &mut OwnedWriteHalf,
    checker: &mut Checker,
    size: u64,
    chunk_seed: u64,
) -> Result<(), Broken> {
    let pattern = checker.pattern;
    let writer = async move {
        let mut rng = Rng::new(chunk_seed);
        let mut buf = vec![0u8; WRITE_CHUNK_MAX_BYTES as usize];
        let mut sent = 0;
        while sent < size {
            let n = rng.between(1, WRITE_CHUNK_MAX_BYTES).min(size - sent);
            let chunk = &mut buf[..n as usize];
            pattern.fill(sent, chunk);
            match timeout(STALL_TIMEOUT, wr.write_all(chunk)).await {
                Ok(Ok(())) => sent += n,
                Ok(Err(e)) => return Err(format!("write: {e}")),
                Err(_) => return Err(format!("write blocked for {STALL_TIMEOUT:?}")),
            }
        }
        wr.shutdown()
            .await
            .map_err(|e| format!("shutdown write: {e}"))
    };
    let reader = async {
        let mut buf = vec![0u8; READ_BUF_BYTES];
        loop {
            if checker.read_some(rd, &mut buf, size).await? == 0 {
                return if checker.checked == size {
                    Ok(())
                } else {
                    Err(Broken::Eof)
                };
            }
        }
    };
    tokio::pin!(writer, reader);
    let mut written = None;
    let read = loop {
        tokio::select! {
            r = &mut reader => break r,
            w = &mut writer, if written.is_none() => written = Some(w),
        }
    };
    match (read, written) {
        (Err(Broken::Eof), Some(Err(w))) => Err(Broken::Io(format!("{w}, then the echo ended"))),
        (r, _) => r,
    }
}

/// A connection kept open for a whole phase, carrying a round of bytes now and then.
struct LongLived {
    rd: OwnedReadHalf,
    wr: OwnedWriteHalf,
    checker: Checker,
    sent: u64,
    buf: Vec<u8>,
}

impl LongLived {
    async fn open(fwd: &Forward, rng: &mut Rng) -> Result<LongLived, Broken> {
        let pattern = Pattern(rng.next_u64());
        let stream = open(fwd, rng).await?;
        let (rd, wr) = stream.into_split();
        Ok(LongLived {
            rd,
            wr,
            checker: Checker::new(pattern),
            sent: 0,
            buf: vec![0; READ_BUF_BYTES],
        })
    }

    /// Writes `n` more bytes of the stream and reads their echo back.
    async fn round(&mut self, n: u64) -> Result<(), Broken> {
        let mut chunk = vec![0u8; n as usize];
        self.checker.pattern.fill(self.sent, &mut chunk);
        match timeout(STALL_TIMEOUT, self.wr.write_all(&chunk)).await {
            Ok(Ok(())) => self.sent += n,
            Ok(Err(e)) => return Err(Broken::Io(format!("write: {e}"))),
            Err(_) => return Err(Broken::Stall),
        }
        while self.checker.checked < self.sent {
            let want = ((self.sent - self.checker.checked) as usize).min(self.buf.len());
            let got = self
                .checker
                .read_some(&mut self.rd, &mut self.buf[..want], self.sent)
                .await?;
            if got == 0 {
                return Err(Broken::Eof);
            }
        }
        Ok(())
    }

    /// Half-closes and expects the echo to end with nothing more.
    async fn close(&mut self) -> Result<(), Broken> {
        if let Err(e) = self.wr.shutdown().await {
            return Err(Broken::Io(format!("shutdown write: {e}")));
        }
        let got = self
            .checker
            .read_some(&mut self.rd, &mut self.buf, self.sent)
            .await?;
        if got != 0 {
            return Err(Broken::Corrupt("bytes after the whole echo".to_owned()));
        }
        Ok(())
    }
}

/// The size of the next short connection.
fn pick_size(rng: &mut Rng) -> u64 {
    if rng.percent(BULK_PERCENT) {
        return BULK_BYTES;
    }
    let base = 1u64 << rng.below(SIZE_MAX_LOG2 + 1);
    base + rng.below(base)
}

/// Sleeps `d` unless told to stop first; true when told to stop.
async fn pause(d: Duration, stop: &mut watch::Receiver<bool>) -> bool {
    if *stop.borrow() {
        return true;
    }
    tokio::select! {
        () = sleep(d) => *stop.borrow(),
        _ = stop.changed() => true,
    }
}

async fn short_worker(
    ctx: Arc<Ctx>,
    fwd: Arc<Forward>,
    mut rng: Rng,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let size = pick_size(&mut rng);
        let end = short_connection(&fwd, size, &mut rng).await;
        ctx.record(&fwd, false, &end);
        if pause(rng.millis(SHORT_PAUSE_MS.0, SHORT_PAUSE_MS.1), &mut stop).await {
            return;
        }
    }
}

async fn long_worker(
    ctx: Arc<Ctx>,
    fwd: Arc<Forward>,
    mut rng: Rng,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let opened = Instant::now();
        let mut conn = match LongLived::open(&fwd, &mut rng).await {
            Ok(c) => c,
            Err(e) => {
                let now = Instant::now();
                let end = Ended {
                    result: Err(e),
                    checked: 0,
                    expected: None,
                    opened,
                    last_progress: opened,
                    ended: now,
                };
                ctx.record(&fwd, true, &end);
                if pause(REOPEN_PAUSE, &mut stop).await {
                    return;
                }
                continue;
            }
        };
        let result = loop {
            if pause(rng.millis(LONG_PAUSE_MS.0, LONG_PAUSE_MS.1), &mut stop).await {
                break conn.close().await;
            }
            if let Err(e) = conn.round(rng.between(1, LONG_ROUND_MAX_BYTES)).await {
                break Err(e);
            }
        };
        let stopping = result.is_ok();
        let end = Ended {
            result,
            checked: conn.checker.checked,
            expected: None,
            opened,
            last_progress: conn.checker.last_progress.max(opened),
            ended: Instant::now(),
        };
        ctx.record(&fwd, true, &end);
        if stopping || pause(REOPEN_PAUSE, &mut stop).await {
            return;
        }
    }
}

/// The traffic of one phase: per forward, [`SHORT_WORKERS_PER_FORWARD`] workers opening
/// connection after connection, and one long-lived connection.
pub struct Workers {
    stop: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

impl Workers {
    pub fn start(ctx: &Arc<Ctx>, forwards: &[Arc<Forward>], rng: &mut Rng) -> Workers {
        let (stop, rx) = watch::channel(false);
        let mut tasks = JoinSet::new();
        for fwd in forwards {
            for _ in 0..SHORT_WORKERS_PER_FORWARD {
                tasks.spawn(short_worker(
                    ctx.clone(),
                    fwd.clone(),
                    rng.fork(),
                    rx.clone(),
                ));
            }
            tasks.spawn(long_worker(
                ctx.clone(),
                fwd.clone(),
                rng.fork(),
                rx.clone(),
            ));
        }
        Workers { stop, tasks }
    }

    /// Tells every worker to finish its connection and stop; long-lived connections are
    /// closed cleanly (and counted as completed).
    ///
    /// # Errors
    /// Workers still running after `bound` (they are aborted).
    pub async fn stop(mut self, bound: Duration) -> anyhow::Result<()> {
        self.stop.send_replace(true);
        let all = async { while self.tasks.join_next().await.is_some() {} };
        if timeout(bound, all).await.is_err() {
            let left = self.tasks.len();
            self.tasks.abort_all();
            anyhow::bail!(
                "{left} traffic workers still running {bound:?} after being told to stop"
            );
        }
        Ok(())
    }
}

/// A checked echo of `size` bytes through `fwd` outside the workload, for recovery
/// checks; its bytes count in [`Ctx::probe_bytes`].
///
/// # Errors
/// Whatever broke it, named.
pub async fn probe(ctx: &Ctx, fwd: &Forward, size: u64, rng: &mut Rng) -> Result<(), String> {
    let end = short_connection(fwd, size, rng).await;
    ctx.probe_bytes.fetch_add(end.checked, Ordering::Relaxed);
    end.result.map_err(|e| {
        format!(
            "probe through {} ({}): {e} after {} of {size} bytes",
            fwd.label, fwd.entry, end.checked
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pattern_is_the_same_stream_at_any_offset() {
        let mut whole = vec![0u8; 1000];
        Pattern(9).fill(0, &mut whole);
        for (offset, len) in [(0, 1), (3, 5), (7, 9), (8, 8), (13, 400), (999, 1)] {
            let mut part = vec![0u8; len];
            Pattern(9).fill(offset as u64, &mut part);
            assert_eq!(part, whole[offset..offset + len], "offset {offset}");
        }
        assert_eq!(whole, tunneld_tests::net::random_bytes(1000, 9));
    }

    #[test]
    fn checker_finds_the_first_wrong_byte_and_extra_bytes() {
        let mut sent = vec![0u8; 100];
        Pattern(5).fill(0, &mut sent);
        let mut c = Checker::new(Pattern(5));
        c.check(&sent[..40], 100).unwrap();
        let mut bad = sent[40..].to_vec();
        bad[17] ^= 0x20;
        let err = c.check(&bad, 100).unwrap_err().to_string();
        assert!(err.contains("byte 57 "), "{err}");
        let mut c = Checker::new(Pattern(5));
        c.check(&sent, 100).unwrap();
        assert!(c.check(&[0], 100).unwrap_err().to_string().contains("101"));
    }

    #[test]
    fn sizes_span_bytes_to_megabytes() {
        let mut rng = Rng::new(3);
        let sizes: Vec<u64> = (0..10_000).map(|_| pick_size(&mut rng)).collect();
        assert!(sizes.iter().all(|&s| (1..=BULK_BYTES).contains(&s)));
        assert!(sizes.iter().any(|&s| s < 16));
        assert!(sizes.iter().any(|&s| s > 1 << 20));
    }
}
