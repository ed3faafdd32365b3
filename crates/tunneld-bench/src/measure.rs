//! What the bench measures, each function one kind of figure: bulk throughput either way
//! through a forward, 1-byte ping-pong latency, new connections per second, and the PSS
//! and CPU time of process trees read from `/proc`.
//!
//! Also the one server the test-kit lacks: [`DiscardServer`], a sink that counts what it
//! reads. (The kit's `SourceServer` sends, its `EchoServer` echoes.)

use std::collections::{BTreeSet, HashMap};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::{Instant, sleep, timeout};

/// Read and write size of the bulk streams.
const BULK_CHUNK_BYTES: usize = 64 * 1024;
/// Bulk streams run this long before the window opens (slow start, window growth).
pub const BULK_WARMUP: Duration = Duration::from_millis(500);
/// Pause after a bulk test so the forwarder drains and closes what the last one left.
const BULK_SETTLE: Duration = Duration::from_millis(300);
/// Bound of one connect through a forward.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Bound of one round trip, one connection's open/echo/close, or a stream's shutdown.
const OP_TIMEOUT: Duration = Duration::from_secs(10);
/// Untimed round trips on a new ping-pong connection.
const LATENCY_WARMUP_ROUND_TRIPS: usize = 100;
/// Untimed round trips before each batch of samples.
const BATCH_WARMUP_ROUND_TRIPS: usize = 20;

/// A TCP sink on `127.0.0.1:0`: reads and discards, counting bytes over all connections.
/// Stops (with every connection) on drop.
pub struct DiscardServer {
    addr: SocketAddr,
    received: Arc<AtomicU64>,
    accept_loop: JoinHandle<()>,
}

impl DiscardServer {
    /// # Errors
    /// The bind fails.
    pub async fn start() -> anyhow::Result<Self> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .context("bind the discard server")?;
        let addr = listener.local_addr()?;
        let received = Arc::new(AtomicU64::new(0));
        let counter = received.clone();
        let accept_loop = tokio::spawn(async move {
            let mut connections = JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let Ok((mut s, _)) = accepted else {
                            tokio::task::yield_now().await;
                            continue;
                        };
                        let counter = counter.clone();
                        connections.spawn(async move {
                            let mut buf = vec![0u8; BULK_CHUNK_BYTES];
                            while let Ok(n @ 1..) = s.read(&mut buf).await {
                                counter.fetch_add(n as u64, Ordering::Relaxed);
                            }
                        });
                    }
                    Some(_) = connections.join_next(), if !connections.is_empty() => {}
                }
            }
        });
        Ok(Self {
            addr,
            received,
            accept_loop,
        })
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    fn received(&self) -> Arc<AtomicU64> {
        self.received.clone()
    }
}

impl Drop for DiscardServer {
    fn drop(&mut self) {
        // Dropping the task's JoinSet aborts every connection.
        self.accept_loop.abort();
    }
}

/// Which way bulk data flows through the forward.
#[derive(Clone, Copy, Debug)]
pub enum Direction {
    /// The bench writes into the forward; a [`DiscardServer`] behind it counts.
    ClientToServer,
    /// A `SourceServer` behind the forward sends; the bench reads and counts.
    ServerToClient,
}

/// What one bulk test measured over its window.
#[derive(Clone, Copy, Debug)]
pub struct Bulk {
    pub gbps: f64,
    /// CPU time of the contender's processes per GiB carried, in milliseconds.
    pub cpu_ms_per_gib: f64,
}

/// Opens `streams` connections to `entry` (a forward's entry port) and moves data `dir`
/// for [`BULK_WARMUP`] + `window`; returns the goodput over the window alone, and the CPU
/// time `contender` (its processes) spent meanwhile. `sink` is the discard server behind
/// the forward, read for [`Direction::ClientToServer`].
///
/// # Errors
/// A connect fails or times out, or no byte moved during the window (a stalled forward).
pub async fn bulk(
    entry: u16,
    dir: Direction,
    streams: usize,
    window: Duration,
    sink: &DiscardServer,
    contender: &BTreeSet<i32>,
) -> anyhow::Result<Bulk> {
    let counter = match dir {
        Direction::ClientToServer => sink.received(),
        Direction::ServerToClient => Arc::new(AtomicU64::new(0)),
    };
    let mut tasks = JoinSet::new();
    for _ in 0..streams {
        let mut s = connect(entry).await?;
        let counter = counter.clone();
        tasks.spawn(async move {
            let mut buf = match dir {
                Direction::ClientToServer => tunneld_tests::net::random_bytes(BULK_CHUNK_BYTES, 7),
                Direction::ServerToClient => vec![0u8; BULK_CHUNK_BYTES],
            };
            loop {
                match dir {
                    Direction::ClientToServer => {
                        if s.write_all(&buf).await.is_err() {
                            break;
                        }
                    }
                    Direction::ServerToClient => match s.read(&mut buf).await {
                        Ok(n @ 1..) => {
                            counter.fetch_add(n as u64, Ordering::Relaxed);
                        }
                        _ => break,
                    },
                }
            }
        });
    }
    sleep(BULK_WARMUP).await;
    let (t0, b0) = (Instant::now(), counter.load(Ordering::Relaxed));
    let cpu0 = cpu_secs(contender).run_secs;
    sleep(window).await;
    let (t1, b1) = (Instant::now(), counter.load(Ordering::Relaxed));
    let cpu1 = cpu_secs(contender).run_secs;
    let ended_early = tasks.try_join_next().is_some();
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
    sleep(BULK_SETTLE).await;
    if b1 == b0 {
        bail!("no data moved through port {entry} in {window:?} ({dir:?}, {streams} streams)");
    }
    if ended_early {
        bail!("a stream through port {entry} ended during the test ({dir:?})");
    }
    let bytes = (b1 - b0) as f64;
    Ok(Bulk {
        gbps: bytes * 8.0 / (t1 - t0).as_secs_f64() / 1e9,
        cpu_ms_per_gib: (cpu1 - cpu0) * 1e3 / (bytes / f64::from(1u32 << 30)),
    })
}

/// The pace of [`SlowReader`].
pub const SLOW_READER_BYTES_PER_SEC: u64 = 1024 * 1024;
/// How often [`SlowReader`] takes its share.
const SLOW_READER_TICK: Duration = Duration::from_millis(20);

/// A download through a forward read at [`SLOW_READER_BYTES_PER_SEC`] (a phone on a bad
/// link, a receiver writing to an SD card): the sender fills the forward's buffers for it
/// and the forwarder has to hold them back without slowing anything else.
pub struct SlowReader {
    task: JoinHandle<anyhow::Result<()>>,
    read: Arc<AtomicU64>,
}

impl SlowReader {
    /// Connects to `entry`, a forward to a source server, and starts reading.
    ///
    /// # Errors
    /// The connect fails.
    pub async fn start(entry: u16) -> anyhow::Result<SlowReader> {
        let mut s = connect(entry).await?;
        let read = Arc::new(AtomicU64::new(0));
        let counter = read.clone();
        let task = tokio::spawn(async move {
            let per_tick = SLOW_READER_BYTES_PER_SEC * SLOW_READER_TICK.as_millis() as u64 / 1000;
            let mut buf = vec![0u8; per_tick as usize];
            let mut tick = tokio::time::interval(SLOW_READER_TICK);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                s.read_exact(&mut buf).await.with_context(|| {
                    let total = counter.load(Ordering::Relaxed);
                    format!("the slow reader's connection ended after {total} bytes")
                })?;
                counter.fetch_add(per_tick, Ordering::Relaxed);
            }
        });
        Ok(SlowReader { task, read })
    }

    /// Stops reading; the bytes read, or why its connection ended before.
    ///
    /// # Errors
    /// The connection ended or failed while it was reading.
    pub async fn stop(self) -> anyhow::Result<u64> {
        if self.task.is_finished() {
            self.task.await.context("the slow reader panicked")??;
        } else {
            self.task.abort();
            sleep(BULK_SETTLE).await;
        }
        Ok(self.read.load(Ordering::Relaxed))
    }
}

/// 1-byte ping-pong latency percentiles, in microseconds.
#[derive(Clone, Copy, Debug)]
pub struct Latency {
    pub p50_us: f64,
    pub p99_us: f64,
}

/// One connection through a forward to an echo server, for batches of 1-byte round trips.
pub struct PingPong {
    stream: TcpStream,
    entry: u16,
    done: usize,
}

impl PingPong {
    /// Connects through `entry` and makes [`LATENCY_WARMUP_ROUND_TRIPS`] untimed round trips.
    ///
    /// # Errors
    /// The connect or a round trip fails.
    pub async fn connect(entry: u16) -> anyhow::Result<PingPong> {
        let mut p = PingPong {
            stream: connect(entry).await?,
            entry,
            done: 0,
        };
        p.round_trips(LATENCY_WARMUP_ROUND_TRIPS, None).await?;
        Ok(p)
    }

    /// `n` sequential round trips after a few untimed ones (the first after a pause, or
    /// after the affinity changed, pays for waking up and migrating); each one's time in µs
    /// is appended to `samples`.
    ///
    /// # Errors
    /// A write or a read fails, or one round trip takes over [`OP_TIMEOUT`].
    pub async fn batch(&mut self, n: usize, samples: &mut Vec<f64>) -> anyhow::Result<()> {
        self.round_trips(BATCH_WARMUP_ROUND_TRIPS, None).await?;
        self.round_trips(n, Some(samples)).await
    }

    async fn round_trips(
        &mut self,
        n: usize,
        mut samples: Option<&mut Vec<f64>>,
    ) -> anyhow::Result<()> {
        let mut byte = [0u8; 1];
        for _ in 0..n {
            let (i, entry) = (self.done, self.entry);
            let start = Instant::now();
            timeout(OP_TIMEOUT, async {
                self.stream.write_all(&[i as u8]).await?;
                self.stream.read_exact(&mut byte).await
            })
            .await
            .with_context(|| format!("round trip {i} through port {entry} timed out"))?
            .with_context(|| format!("round trip {i} through port {entry}"))?;
            if let Some(samples) = samples.as_deref_mut() {
                samples.push(start.elapsed().as_secs_f64() * 1e6);
            }
            self.done += 1;
        }
        Ok(())
    }
}

impl Latency {
    /// p50 and p99 of round-trip times in µs.
    ///
    /// # Errors
    /// No samples.
    pub fn of(mut samples: Vec<f64>) -> anyhow::Result<Latency> {
        if samples.is_empty() {
            bail!("no round trips measured");
        }
        samples.sort_by(f64::total_cmp);
        Ok(Latency {
            p50_us: percentile(&samples, 0.50),
            p99_us: percentile(&samples, 0.99),
        })
    }
}

/// Nearest-rank percentile of sorted samples.
fn percentile(sorted: &[f64], q: f64) -> f64 {
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// Connections per second through `entry` to an echo server, one at a time for `window`:
/// connect, 1-byte round trip, half-close, wait for the far side's close.
///
/// # Errors
/// Any connection fails or takes over [`OP_TIMEOUT`] (the count so far is in the error).
pub async fn connections_per_sec(entry: u16, window: Duration) -> anyhow::Result<f64> {
    let start = Instant::now();
    let mut done = 0u64;
    while start.elapsed() < window {
        timeout(OP_TIMEOUT, async {
            let mut s = connect(entry).await?;
            let mut byte = [0u8; 1];
            s.write_all(b"x").await?;
            s.read_exact(&mut byte).await?;
            s.shutdown().await?;
            // The echo server closes after our EOF: wait for it, so the close is counted.
            let n = s.read(&mut byte).await?;
            anyhow::ensure!(n == 0, "echo sent more than it was sent");
            anyhow::Ok(())
        })
        .await
        .with_context(|| format!("connection {done} through port {entry} timed out"))?
        .with_context(|| format!("connection {done} through port {entry}"))?;
        done += 1;
    }
    Ok(done as f64 / start.elapsed().as_secs_f64())
}

/// A connection to `127.0.0.1:port` with Nagle off, as an interactive client would.
async fn connect(port: u16) -> anyhow::Result<TcpStream> {
    let s = timeout(
        CONNECT_TIMEOUT,
        TcpStream::connect((Ipv4Addr::LOCALHOST, port)),
    )
    .await
    .with_context(|| format!("connect to 127.0.0.1:{port} timed out"))?
    .with_context(|| format!("connect to 127.0.0.1:{port}"))?;
    s.set_nodelay(true)?;
    Ok(s)
}

/// `roots` and every process whose parent chain leads to one of them.
pub fn process_trees(roots: &[i32]) -> BTreeSet<i32> {
    let mut children: HashMap<i32, Vec<i32>> = HashMap::new();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for pid in entries
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        {
            if let Some(ppid) = stat_fields(pid).and_then(|f| f.first()?.parse().ok()) {
                children.entry(ppid).or_default().push(pid);
            }
        }
    }
    let mut found: BTreeSet<i32> = roots.iter().copied().collect();
    let mut todo: Vec<i32> = roots.to_vec();
    while let Some(pid) = todo.pop() {
        for &child in children.get(&pid).into_iter().flatten() {
            if found.insert(child) {
                todo.push(child);
            }
        }
    }
    found
}

/// The fields of `/proc/PID/stat` after `comm`, from `ppid` (field 4) on.
fn stat_fields(pid: i32) -> Option<Vec<String>> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // comm may hold spaces and parentheses: split after the last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    // Skip the state field.
    Some(rest.split_whitespace().skip(1).map(str::to_owned).collect())
}

/// Sum of `Pss:` in `/proc/PID/smaps_rollup` over `pids`, in KiB; also how many were read.
pub fn pss_kib(pids: &BTreeSet<i32>) -> (u64, usize) {
    let mut total = 0;
    let mut read = 0;
    for pid in pids {
        let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")) else {
            continue;
        };
        let pss = text.lines().find_map(|l| {
            l.strip_prefix("Pss:")?
                .trim()
                .strip_suffix("kB")?
                .trim()
                .parse::<u64>()
                .ok()
        });
        if let Some(kib) = pss {
            total += kib;
            read += 1;
        }
    }
    (total, read)
}

/// CPU time used so far by a set of processes, two ways.
#[derive(Clone, Copy, Debug)]
pub struct CpuTime {
    /// utime + stime from `/proc/PID/stat`: every thread, dead ones included, but in whole
    /// clock ticks (10 ms) per process, so many nearly idle processes read as zero.
    pub ticks_secs: f64,
    /// Run time of the live threads from `/proc/PID/task/TID/schedstat`, in nanoseconds.
    pub run_secs: f64,
}

/// [`CpuTime`] of `pids` (those still alive).
pub fn cpu_secs(pids: &BTreeSet<i32>) -> CpuTime {
    // SAFETY: sysconf has no preconditions.
    let ticks_per_sec = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let ticks: u64 = pids
        .iter()
        .filter_map(|&pid| {
            // From ppid (field 4): utime is field 14, stime field 15.
            let f = stat_fields(pid)?;
            Some(f.get(10)?.parse::<u64>().ok()? + f.get(11)?.parse::<u64>().ok()?)
        })
        .sum();
    let run_ns: u64 = pids
        .iter()
        .filter_map(|pid| std::fs::read_dir(format!("/proc/{pid}/task")).ok())
        .flat_map(|tasks| tasks.flatten())
        .filter_map(|task| {
            let text = std::fs::read_to_string(task.path().join("schedstat")).ok()?;
            text.split_whitespace().next()?.parse::<u64>().ok()
        })
        .sum();
    CpuTime {
        ticks_secs: ticks as f64 / ticks_per_sec,
        run_secs: run_ns as f64 / 1e9,
    }
}

/// Median of the values (the mean of the middle two for an even count); `None` if empty.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(v[n / 2]),
        _ => Some((v[n / 2 - 1] + v[n / 2]) / 2.0),
    }
}

/// Every thread of some processes held on one CPU (the first the bench may use), so a
/// ping-pong through them runs without cross-CPU wake-ups; the affinity the bench started
/// with is given back to all of them on drop.
///
/// On a small VM the free-placement latency is bimodal (one mode ~40 µs slower per round
/// trip, for ssh and tunneld alike, lasting seconds) depending on where the scheduler wakes
/// each process of the chain; on one CPU the figure is steady and compares the programs'
/// own work.
pub struct OneCpu {
    pids: BTreeSet<i32>,
    restore: libc::cpu_set_t,
}

impl OneCpu {
    /// Pins every thread of `pids` (threads started later inherit it).
    ///
    /// # Errors
    /// The bench's own affinity cannot be read, or it allows no CPU.
    pub fn pin(pids: BTreeSet<i32>) -> anyhow::Result<OneCpu> {
        // SAFETY: an all-zero cpu_set_t is a valid empty set.
        let mut restore: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        // SAFETY: the pointer and size describe `restore`.
        let rc = unsafe {
            libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &raw mut restore)
        };
        if rc != 0 {
            return Err(std::io::Error::last_os_error()).context("read the bench's CPU affinity");
        }
        // SAFETY: CPU_ISSET reads within the set for any index below CPU_SETSIZE.
        let cpu = (0..libc::CPU_SETSIZE as usize)
            .find(|&c| unsafe { libc::CPU_ISSET(c, &restore) })
            .context("the bench may run on no CPU")?;
        // SAFETY: as above.
        let mut one: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        // SAFETY: `cpu` is below CPU_SETSIZE.
        unsafe { libc::CPU_SET(cpu, &mut one) };
        set_affinity(&pids, &one);
        Ok(OneCpu { pids, restore })
    }
}

impl Drop for OneCpu {
    fn drop(&mut self) {
        set_affinity(&self.pids, &self.restore);
    }
}

/// Sets the affinity of every live thread of `pids`; threads that exited meanwhile are
/// skipped.
fn set_affinity(pids: &BTreeSet<i32>, set: &libc::cpu_set_t) {
    for pid in pids {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
            continue;
        };
        for tid in tasks
            .flatten()
            .filter_map(|t| t.file_name().to_str()?.parse::<libc::pid_t>().ok())
        {
            // SAFETY: the pointer and size describe `set`; a gone thread gives ESRCH.
            unsafe { libc::sched_setaffinity(tid, std::mem::size_of::<libc::cpu_set_t>(), set) };
        }
    }
}
