//! `tunneld-bench`: tunneld against `ssh -N -L/-R` (default cipher and AES-GCM) and
//! autossh, all on one private OpenSSH sshd on loopback started by the test-kit.
//!
//! ```sh
//! cargo run -p tunneld-bench --release -- [--quick] [--out DIR]
//! ```
//!
//! Prints a Markdown report, writes `DIR/results.json` and `DIR/chart.svg`.
//!
//! Layout:
//! - `main` (this file): the command line, the order of the run.
//! - `machine`: the facts about the machine shown above the results.
//! - `contenders`: starting tunneld, ssh and autossh against the sshd, and stopping them.
//! - `measure`: throughput, latency, connection rate, PSS and CPU time.
//! - `nat`: tunneld and autossh behind NAT routers (uplink switch, lost mapping, link flap).
//! - `report`: the results as Markdown, JSON and SVG.

mod contenders;
mod machine;
mod measure;
mod nat;
mod report;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use tunneld_tests::{EchoServer, SourceServer, Sshd, SshdOptions};

use contenders::{Contender, Env, Targets};
use measure::{Direction, DiscardServer, Latency};
use report::{Fleet, IdleCpu, Results, Settings};

/// sshd lines for the fleets: up to 1000 tunnels connect, each its own TCP connection.
const SSHD_EXTRA: &[&str] = &["MaxStartups 1000:30:1000"];
/// Batches each round's ping-pong round trips are split into, the contenders taking turns.
const LATENCY_BATCHES: usize = 10;
/// Parallel streams of the multi-stream bulk tests.
const PARALLEL_STREAMS: usize = 8;
/// Let a fleet settle after the last tunnel came up, before reading its memory.
const FLEET_SETTLE: Duration = Duration::from_secs(1);
/// The fleet whose idle CPU is measured.
const IDLE_FLEET: usize = 100;

/// Benchmark tunneld against ssh -L/-R and autossh on a private local sshd.
#[derive(Parser)]
#[command(name = "tunneld-bench")]
struct Args {
    /// One round and shorter windows (2 s bulk, 2k round trips, 1 s connections, 10 s idle,
    /// no 1000-tunnel fleet).
    #[arg(long)]
    quick: bool,
    /// Where results.json and chart.svg go [default: target/bench]
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Only the per-round figures (throughput, latency, connections), only the fleets
    /// (memory, start-up, idle CPU) or only the NAT lab (network faults).
    #[arg(long, value_enum)]
    only: Option<Part>,
    /// Measure this tunneld binary (another build of it: musl, other optimisation)
    /// instead of building the workspace's release binary.
    #[arg(long, value_name = "PATH")]
    tunneld: Option<PathBuf>,
}

/// The parts of a run.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Part {
    Rounds,
    Fleets,
    /// tunneld and autossh in a box behind NAT routers (network namespaces; needs root,
    /// nftables and conntrack): uplink switch, lost mapping, link flap.
    Nat,
}

/// What a full and a quick run measure.
struct Plan {
    rounds: usize,
    bulk_window: Duration,
    round_trips: usize,
    conn_window: Duration,
    idle_window: Duration,
    fleet_sizes: &'static [usize],
    autossh_sizes: &'static [usize],
}

impl Plan {
    fn new(quick: bool) -> Plan {
        if quick {
            Plan {
                rounds: 1,
                bulk_window: Duration::from_secs(2),
                round_trips: 2_000,
                conn_window: Duration::from_secs(1),
                idle_window: Duration::from_secs(10),
                fleet_sizes: &[1, 100],
                autossh_sizes: &[1, 100],
            }
        } else {
            Plan {
                rounds: 3,
                bulk_window: Duration::from_secs(5),
                round_trips: 10_000,
                conn_window: Duration::from_secs(3),
                idle_window: Duration::from_secs(60),
                fleet_sizes: &[1, 100, 1000],
                autossh_sizes: &[1, 100],
            }
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let plan = Plan::new(args.quick);
    raise_fd_limit();
    let tunneld = match &args.tunneld {
        Some(path) => std::path::absolute(path)?,
        None => tunneld_tests::build::release_tunneld("bench").await?,
    };
    let out_dir = match args.out {
        Some(d) => d,
        None => tunneld
            .parent()
            .and_then(|p| p.parent())
            .context("target directory")?
            .join("bench"),
    };
    let mut command = "cargo run -p tunneld-bench --release --".to_owned();
    if args.quick {
        command.push_str(" --quick");
    }
    if let Some(d) = std::env::args().skip_while(|a| a != "--out").nth(1) {
        command.push_str(&format!(" --out {d}"));
    }
    if let Some(path) = &args.tunneld {
        command.push_str(&format!(" --tunneld {}", path.display()));
    }
    match args.only {
        Some(Part::Rounds) => command.push_str(" --only rounds"),
        Some(Part::Fleets) => command.push_str(" --only fleets"),
        Some(Part::Nat) => command.push_str(" --only nat"),
        None => {}
    }
    let mut results = Results {
        machine: machine::machine(&tunneld),
        settings: Settings {
            command,
            quick: args.quick,
            rounds: plan.rounds,
            bulk_secs: plan.bulk_window.as_secs_f64(),
            warmup_secs: measure::BULK_WARMUP.as_secs_f64(),
            round_trips: plan.round_trips,
            conn_secs: plan.conn_window.as_secs_f64(),
            idle_secs: plan.idle_window.as_secs_f64(),
            sshd_extra: SSHD_EXTRA.iter().map(|s| (*s).to_owned()).collect(),
            rounds_run: args.only.is_none_or(|p| p == Part::Rounds),
            fleets_run: args.only.is_none_or(|p| p == Part::Fleets),
            nat_run: args.only.is_none_or(|p| p == Part::Nat) && !args.quick,
        },
        samples: BTreeMap::new(),
        ciphers: BTreeMap::new(),
        fleets: Vec::new(),
        nat: Vec::new(),
        notes: Vec::new(),
    };

    let sshd = Sshd::start_with(SshdOptions {
        extra_config: results.settings.sshd_extra.clone(),
        ..SshdOptions::default()
    })
    .await
    .context("start the test-kit sshd")?;
    let dir = tempfile::Builder::new()
        .prefix("tunneld-bench-")
        .tempdir()
        .context("create the bench's temporary folder")?;
    let env = Env {
        sshd: &sshd,
        tunneld,
        dir: dir.path().to_path_buf(),
    };
    eprintln!(
        "sshd on {}; bench files in {}",
        sshd.addr(),
        dir.path().display()
    );

    if results.settings.rounds_run {
        run_rounds(&env, &plan, &mut results).await?;
    }
    if results.settings.fleets_run {
        run_fleets(&env, &plan, &mut results).await;
    }
    if results.settings.nat_run {
        let autossh = match contenders::ensure_autossh().await {
            Ok(()) => true,
            Err(why) => {
                results
                    .notes
                    .push(format!("autossh NAT row skipped: {why}"));
                false
            }
        };
        results.nat = nat::run(&env.tunneld, &env.dir, autossh).await;
    }
    // Logs of an earlier run would mislead.
    let _ = std::fs::remove_dir_all(out_dir.join("logs"));
    if !results.notes.is_empty() {
        keep_logs(&sshd, dir.path(), &out_dir.join("logs"), &mut results);
    }

    let text = report::markdown(&results);
    println!("{text}");
    std::fs::create_dir_all(&out_dir).with_context(|| format!("create {}", out_dir.display()))?;
    let json_path = out_dir.join("results.json");
    let svg_path = out_dir.join("chart.svg");
    std::fs::write(
        &json_path,
        serde_json::to_string_pretty(&report::json(&results))? + "\n",
    )
    .with_context(|| format!("write {}", json_path.display()))?;
    std::fs::write(&svg_path, report::svg(&results))
        .with_context(|| format!("write {}", svg_path.display()))?;
    println!("Wrote {} and {}", json_path.display(), svg_path.display());
    Ok(())
}

/// Every contender, `plan.rounds` times, the order rotating each round; all per-round
/// figures. A figure that fails is noted and the run goes on.
async fn run_rounds(env: &Env<'_>, plan: &Plan, results: &mut Results) -> anyhow::Result<()> {
    let echo = EchoServer::start().await.context("start the echo server")?;
    let sink = DiscardServer::start().await?;
    let source = SourceServer::start()
        .await
        .context("start the source server")?;
    let targets = Targets {
        echo: echo.port(),
        sink: sink.port(),
        source: source.port(),
    };
    for round in 0..plan.rounds {
        let mut order = Contender::ALL;
        order.rotate_left(round % Contender::ALL.len());
        // Each contender's other figures alone; then, all of them still up, the latency
        // batches taking turns.
        let mut up = Vec::new();
        for c in order {
            let tag = format!("round {}/{} {}", round + 1, plan.rounds, c.key());
            let round_tag = format!("round{}", round + 1);
            let started = match contenders::start(c, env, &targets, &round_tag).await {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("{tag}: cannot start: {e:#}");
                    results.notes.push(format!("{tag}: cannot start: {e:#}"));
                    continue;
                }
            };
            if let Some(cipher) = &started.cipher {
                results.ciphers.insert(c.key(), cipher.clone());
            }
            up.push((c, started, tag));
        }
        run_figures(&mut up, plan, &sink, results).await;
        run_latency(env, &up, plan, results).await;
        for (_, started, tag) in &up {
            for line in started.sessions_lost() {
                results.notes.push(format!("{tag}: {line}"));
            }
        }
    }
    Ok(())
}

/// The contenders' ping-pong connections, each with the samples taken so far.
struct Lane<'a> {
    c: Contender,
    tag: &'a str,
    started: &'a contenders::Started,
    conn: anyhow::Result<measure::PingPong>,
    free: Vec<f64>,
    one_cpu: Vec<f64>,
}

/// Latency of every contender in `up`, in [`LATENCY_BATCHES`] batches that take turns, so
/// that each contender samples the same stretch of time: on a small VM where the scheduler
/// places the processes of the chain shifts the round trip by tens of µs for seconds at a
/// time, for any program. Each batch runs once with free placement and once with the whole
/// chain (bench, contender, sshd's sessions) held on one CPU, where the figure is steady.
async fn run_latency(
    env: &Env<'_>,
    up: &[(Contender, contenders::Started, String)],
    plan: &Plan,
    results: &mut Results,
) {
    let per_batch = (plan.round_trips / LATENCY_BATCHES).max(1);
    let mut lanes = Vec::new();
    for (c, started, tag) in up {
        lanes.push(Lane {
            c: *c,
            tag,
            started,
            conn: measure::PingPong::connect(started.local.echo).await,
            free: Vec::with_capacity(plan.round_trips),
            one_cpu: Vec::with_capacity(plan.round_trips),
        });
    }
    for _ in 0..LATENCY_BATCHES {
        for lane in &mut lanes {
            let Ok(conn) = &mut lane.conn else { continue };
            let mut got = conn.batch(per_batch, &mut lane.free).await;
            if got.is_ok() {
                let mut pids = lane.started.pids();
                pids.extend(env.sshd.session_pids());
                pids.insert(std::process::id() as i32);
                got = match measure::OneCpu::pin(pids) {
                    Ok(_pinned) => conn.batch(per_batch, &mut lane.one_cpu).await,
                    Err(e) => Err(e),
                };
            }
            if let Err(e) = got {
                lane.conn = Err(e);
            }
        }
    }
    for lane in lanes {
        let (free, one_cpu) = match lane.conn {
            Ok(_) => (Latency::of(lane.free), Latency::of(lane.one_cpu)),
            Err(e) => (Err(anyhow::anyhow!("{e:#}")), Err(e)),
        };
        let (p50, p99) = (&report::LATENCY_P50, &report::LATENCY_P99);
        record_latency(results, lane.tag, lane.c, [p50, p99], free);
        let (p50, p99) = (&report::LATENCY_ONE_CPU_P50, &report::LATENCY_ONE_CPU_P99);
        record_latency(results, lane.tag, lane.c, [p50, p99], one_cpu);
    }
}

/// The per-round figures of a contender, in [`report::all_metrics`] order, through its
/// forwards' entries.
fn cases(started: &contenders::Started) -> Vec<(&'static report::Metric, Figure)> {
    let mut cases = Vec::new();
    let mut bulk = report::BULK.iter();
    for entries in [started.local, started.remote] {
        for (dir, entry) in [
            (Direction::ClientToServer, entries.sink),
            (Direction::ServerToClient, entries.source),
        ] {
            for streams in [1, PARALLEL_STREAMS] {
                let metric = bulk.next().expect("one bulk metric per case");
                cases.push((metric, Figure::Bulk(entry, dir, streams)));
            }
        }
    }
    cases.push((
        &report::BESIDE_SLOW,
        Figure::BesideSlowReader(started.local.source),
    ));
    cases.push((&report::CONN_RATE, Figure::ConnRate(started.local.echo)));
    cases
}

/// Every per-round figure of every contender in `up`, figure by figure, the contenders
/// taking turns at each: the host of a small VM drifts over minutes, and contenders
/// measured a minute apart would compare two machines. A contender that fails a figure and
/// does not recover sits out the rest of the round.
async fn run_figures(
    up: &mut [(Contender, contenders::Started, String)],
    plan: &Plan,
    sink: &DiscardServer,
    results: &mut Results,
) {
    let mut queues: Vec<_> = up
        .iter()
        .map(|(_, started, _)| cases(started).into_iter())
        .collect();
    let pids: Vec<_> = up.iter().map(|(_, started, _)| started.pids()).collect();
    // This round's solo figure of each contender, for the share kept beside a slow reader.
    let mut solo_s2c = vec![None; up.len()];
    let mut out = vec![false; up.len()];
    // Each pass takes the next figure of every contender; the queues are finite.
    let mut more = true;
    while more {
        more = false;
        for (i, (c, started, tag)) in up.iter_mut().enumerate() {
            let Some((metric, figure)) = queues[i].next() else {
                continue;
            };
            more = true;
            if out[i] {
                continue;
            }
            let who = Who {
                c: *c,
                tag,
                pids: &pids[i],
            };
            let ok = figure_of(&who, metric, figure, plan, sink, &mut solo_s2c[i], results).await;
            // One failure must not fail the figures after it: wait until the forwards
            // carry traffic again (a lost session is being rebuilt).
            if !ok && let Err(e) = started.recover().await {
                eprintln!("{tag}: does not recover, skipping the rest: {e:#}");
                results
                    .notes
                    .push(format!("{tag}: did not recover, rest skipped: {e:#}"));
                out[i] = true;
            }
        }
    }
}

/// The contender a figure is taken of: which, its log tag, its processes.
struct Who<'a> {
    c: Contender,
    tag: &'a str,
    pids: &'a BTreeSet<i32>,
}

/// Measures and records one figure; true if kept.
async fn figure_of(
    who: &Who<'_>,
    metric: &report::Metric,
    figure: Figure,
    plan: &Plan,
    sink: &DiscardServer,
    solo_s2c: &mut Option<f64>,
    results: &mut Results,
) -> bool {
    let Who { c, tag, pids } = *who;
    match figure {
        Figure::Bulk(entry, dir, streams) => {
            let got = measure::bulk(entry, dir, streams, plan.bulk_window, sink, pids).await;
            let cpu_metric = match (metric.key, &got) {
                ("local_c2s_1", Ok(_)) => Some(&report::CPU_PER_GIB[0]),
                ("local_s2c_1", Ok(b)) => {
                    *solo_s2c = Some(b.gbps);
                    Some(&report::CPU_PER_GIB[1])
                }
                _ => None,
            };
            if let (Some(m), Ok(b)) = (cpu_metric, &got) {
                record(results, tag, c, m, Ok(b.cpu_ms_per_gib));
            }
            record(results, tag, c, metric, got.map(|b| b.gbps))
        }
        Figure::BesideSlowReader(entry) => {
            let got = beside_slow_reader(entry, plan, sink, pids).await;
            if let (Ok(gbps), Some(solo)) = (&got, *solo_s2c) {
                let share = 100.0 * gbps / solo;
                record(results, tag, c, &report::BESIDE_SLOW_SHARE, Ok(share));
            }
            record(results, tag, c, metric, got)
        }
        Figure::ConnRate(entry) => {
            let got = measure::connections_per_sec(entry, plan.conn_window).await;
            record(results, tag, c, metric, got)
        }
    }
}

/// A ping-pong's p50 and p99 as the two metrics given, or why there are none.
fn record_latency(
    results: &mut Results,
    tag: &str,
    c: Contender,
    [p50, p99]: [&report::Metric; 2],
    got: anyhow::Result<Latency>,
) {
    match got {
        Ok(l) => {
            record(results, tag, c, p50, Ok(l.p50_us));
            record(results, tag, c, p99, Ok(l.p99_us));
        }
        Err(e) => {
            record(results, tag, c, p50, Err(e));
        }
    }
}

/// One -L server→client stream through `entry` while a [`measure::SlowReader`] reads
/// another download through it; fails if the slow reader's connection is cut meanwhile.
async fn beside_slow_reader(
    entry: u16,
    plan: &Plan,
    sink: &DiscardServer,
    pids: &BTreeSet<i32>,
) -> anyhow::Result<f64> {
    let slow = measure::SlowReader::start(entry).await?;
    let got = measure::bulk(
        entry,
        Direction::ServerToClient,
        1,
        plan.bulk_window,
        sink,
        pids,
    )
    .await;
    let read = slow.stop().await?;
    anyhow::ensure!(read > 0, "the slow reader got nothing");
    Ok(got?.gbps)
}

/// One figure of a round, with the entry port it goes through.
#[derive(Clone, Copy)]
enum Figure {
    Bulk(u16, Direction, usize),
    BesideSlowReader(u16),
    ConnRate(u16),
}

/// Keeps a figure, or notes why there is none; either way says so on stderr. True if kept.
fn record(
    results: &mut Results,
    tag: &str,
    c: Contender,
    metric: &report::Metric,
    got: anyhow::Result<f64>,
) -> bool {
    match got {
        Ok(v) => {
            eprintln!("{tag}: {}: {v:.3} {}", metric.label, metric.unit);
            results.push(c, metric, v);
            true
        }
        Err(e) => {
            eprintln!("{tag}: {}: FAILED: {e:#}", metric.label);
            results
                .notes
                .push(format!("{tag}: {} failed: {e:#}", metric.label));
            false
        }
    }
}

/// Copies the contenders' logs out of the temporary folder, with sshd's, for a run where
/// something failed, and says where they are.
fn keep_logs(sshd: &Sshd, from: &std::path::Path, to: &std::path::Path, results: &mut Results) {
    let copied = std::fs::create_dir_all(to).and_then(|()| {
        std::fs::write(to.join("sshd.log"), sshd.log())?;
        for entry in std::fs::read_dir(from)?.flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "log") {
                std::fs::copy(&path, to.join(entry.file_name()))?;
            }
        }
        Ok(())
    });
    results.notes.push(match copied {
        Ok(()) => format!("logs of this run: {}", to.display()),
        Err(e) => format!("could not keep the logs in {}: {e}", to.display()),
    });
}

/// Memory of tunneld and autossh fleets, and idle CPU of the [`IDLE_FLEET`] ones.
async fn run_fleets(env: &Env<'_>, plan: &Plan, results: &mut Results) {
    for &n in plan.fleet_sizes {
        let fleet = contenders::tunneld_fleet(env, n).await;
        measure_fleet(results, "tunneld", n, fleet, plan.idle_window).await;
    }
    match contenders::ensure_autossh().await {
        Ok(()) => {
            for &n in plan.autossh_sizes {
                let fleet = contenders::autossh_fleet(env, n).await;
                measure_fleet(results, "autossh", n, fleet, plan.idle_window).await;
            }
        }
        Err(why) => {
            eprintln!("skipping autossh: {why}");
            results.notes.push(format!("autossh rows skipped: {why}"));
        }
    }
}

async fn measure_fleet(
    results: &mut Results,
    tool: &'static str,
    n: usize,
    fleet: anyhow::Result<contenders::Fleet>,
    idle_window: Duration,
) {
    let fleet = match fleet {
        Ok(f) => f,
        Err(e) => {
            eprintln!("{tool} × {n}: FAILED: {e:#}");
            results
                .notes
                .push(format!("{tool} × {n} tunnels failed: {e:#}"));
            return;
        }
    };
    tokio::time::sleep(FLEET_SETTLE).await;
    let tree = measure::process_trees(&fleet.roots());
    let (pss_kib, processes) = measure::pss_kib(&tree);
    let idle_cpu = if n == IDLE_FLEET {
        eprintln!("{tool} × {n}: idle for {idle_window:?}");
        let before = measure::cpu_secs(&tree);
        let start = tokio::time::Instant::now();
        tokio::time::sleep(idle_window).await;
        let after = measure::cpu_secs(&measure::process_trees(&fleet.roots()));
        let percent = |a: f64, b: f64| (b - a) / start.elapsed().as_secs_f64() * 100.0;
        Some(IdleCpu {
            ticks_percent: percent(before.ticks_secs, after.ticks_secs),
            run_percent: percent(before.run_secs, after.run_secs),
        })
    } else {
        None
    };
    eprintln!(
        "{tool} × {n}: all up after {:.2?}, PSS {} KiB in {processes} processes, idle CPU {idle_cpu:?}",
        fleet.up_after, pss_kib
    );
    results.fleets.push(Fleet {
        tool,
        tunnels: n,
        pss_kib,
        processes,
        up_secs: fleet.up_after.as_secs_f64(),
        idle_cpu,
    });
}

/// Raises the soft open-files limit to the hard one: 1000 tunnels need a few thousand
/// descriptors in tunneld, which inherits the limit.
fn raise_fd_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write `lim`.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}
