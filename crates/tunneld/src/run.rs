//! `tunneld run`: the daemon's own loop around the engine. It owns the [`Daemon`] and
//! serves, one at a time: signals, control-socket requests, config file changes, the
//! systemd watchdog and status updates. Pinging the watchdog from this loop means a
//! wedged loop stops the pings and systemd restarts us.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use serde_json::{Value, json};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{mpsc, watch};
use tracing::{info, warn};
use tunneld_config::Config;
use tunneld_core::{Daemon, TunnelStatus};

use crate::config_watch::{self, ConfigWatcher, Target};
use crate::control::{self, Command, ControlSocket};
use crate::render;
use crate::service::{self, Notifier};

/// Worker threads. One: a forwarded byte passes several tasks (local socket, channel
/// queue, session, server socket), and with a second worker those hops became wake-ups
/// across threads that cost more than the second core gave. Measured on two cores,
/// loopback, `tunneld-bench`: one worker carried 15-25 % more server→client, with lower
/// latency and 0.5 MiB less for 100 tunnels. The main thread runs the daemon loop.
const WORKER_THREADS: usize = 1;
/// Editors and deploy tools write in bursts; one reload per burst.
const WATCH_DEBOUNCE: Duration = Duration::from_millis(300);

/// Allocations at least this large get their own mapping, given back to the kernel when
/// freed: a channel's receive buffer grows to its window (2 MiB) under load and is freed
/// when it drains.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD_BYTES: libc::c_int = 256 * 1024;

/// glibc's malloc raises its mmap threshold to the size of each large block freed, so after
/// a busy spell the channels' megabyte buffers come from the heap, where fragmentation keeps
/// them: an hour of soak left the idle daemon at twice its starting PSS (9.2 → 19.8 MiB)
/// with every session rebuilt. A fixed threshold (which turns the adjustment off) and two
/// arenas keep idle memory where it started.
fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; called before any other thread runs.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES);
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// Runs until SIGTERM or SIGINT, then stops every tunnel and returns.
///
/// # Errors
/// When the runtime, the signal handlers or the control socket cannot be set up.
pub fn run(config: Config) -> anyhow::Result<()> {
    tune_allocator();
    service::init_logging(&config.daemon.log_level);
    check_fd_limit(&config);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(WORKER_THREADS)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(serve(config))
}

/// File descriptors a tunnel may hold besides its forwards' connections: its SSH socket
/// (one per jump hop too), listeners, and a margin for the daemon's own.
const FDS_PER_TUNNEL: u64 = 8;

/// Raises the soft limit on open files to the hard one (as a server should: each
/// forwarded connection is a socket), and warns when even that is below what the
/// forwards' `max_connections` allow, since running out would also stop reconnects.
fn check_fd_limit(config: &Config) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into `lim`.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &raw mut lim) } != 0 {
        return;
    }
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: setrlimit reads `raised`; raising the soft limit up to the hard one is
        // always permitted.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raw const raised) } == 0 {
            lim.rlim_cur = lim.rlim_max;
        }
    }
    let wanted: u64 = config
        .tunnels
        .values()
        .map(|t| {
            let forwards = (t.local.len() + t.remote.len() + t.dynamic.len()) as u64;
            forwards * u64::from(t.max_connections) + FDS_PER_TUNNEL
        })
        .sum();
    // rlim_t is 32 bits wide on 32-bit glibc (armhf), 64 elsewhere.
    #[allow(clippy::useless_conversion)]
    let limit = u64::from(lim.rlim_cur);
    if wanted > limit {
        warn!(
            limit,
            wanted,
            "the open-file limit is below what the forwards' max_connections allow; \
             raise LimitNOFILE (ulimit -n) or lower max_connections"
        );
    }
}

/// The file watcher when `[daemon] watch` asks for one.
struct Watch {
    _watcher: ConfigWatcher,
    events: mpsc::Receiver<()>,
    /// What it watches: the main file and the include folders of the config it was
    /// started for.
    targets: Vec<Target>,
}

fn start_watch(config: &Config) -> Option<Watch> {
    if !config.daemon.watch {
        return None;
    }
    let started = config_watch::targets(config).and_then(|targets| {
        let (watcher, events) = config_watch::watch_targets(&targets, WATCH_DEBOUNCE)?;
        Ok(Watch {
            _watcher: watcher,
            events,
            targets,
        })
    });
    match started {
        Ok(w) => Some(w),
        Err(e) => {
            warn!(config = %config.path.display(), error = %e, "cannot watch the configuration file; reload with tunneld reload or SIGHUP");
            None
        }
    }
}

async fn next_file_event(watch: &mut Option<Watch>) {
    match watch {
        Some(w) => {
            if w.events.recv().await.is_none() {
                *watch = None;
            }
        }
        None => std::future::pending().await,
    }
}

/// Resolves when any tunnel's status changes; drops channels of tunnels that are gone.
async fn any_change(rxs: &mut Vec<watch::Receiver<TunnelStatus>>) {
    if rxs.is_empty() {
        return std::future::pending().await;
    }
    let (result, index, _) =
        futures_util::future::select_all(rxs.iter_mut().map(|rx| Box::pin(rx.changed()))).await;
    if result.is_err() {
        rxs.swap_remove(index);
    }
}

fn receivers(daemon: &Daemon) -> Vec<watch::Receiver<TunnelStatus>> {
    daemon
        .status()
        .iter()
        .filter_map(|s| daemon.subscribe(&s.name))
        .collect()
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let notifier = Notifier::from_env();
    let mut term = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    let mut hup = signal(SignalKind::hangup()).context("cannot handle SIGHUP")?;
    let socket =
        ControlSocket::bind(&config.daemon.socket, config.daemon.socket_group.as_deref()).await?;
    let (requests, mut incoming) = mpsc::channel(16);
    let control = tokio::spawn(socket.serve(requests));
    let (snapshots, mut snapshot_requests) = mpsc::channel::<crate::metrics::Snapshot>(16);
    let metrics = match &config.daemon.metrics {
        Some(addr) => {
            let listener = crate::metrics::bind(addr).await?;
            info!(listen = %addr, "serving /metrics and /ready");
            Some(tokio::spawn(crate::metrics::serve(listener, snapshots)))
        }
        None => None,
    };

    let mut daemon = Daemon::start(&config);
    let mut file_watch = start_watch(&config);
    let mut changes = receivers(&daemon);
    let mut status_line = render::status_line(&daemon.status());
    notifier.ready(&status_line);
    info!(config = %config.path.display(), tunnels = config.tunnels.len(), socket = %config.daemon.socket.display(), "tunneld started");

    let mut watchdog = notifier.watchdog_interval().map(tokio::time::interval);
    let mut trim = crate::memory::Trim::default();
    let why = loop {
        tokio::select! {
            _ = term.recv() => break "SIGTERM",
            _ = int.recv() => break "SIGINT",
            _ = hup.recv() => {
                reload(&mut daemon, &notifier, "SIGHUP");
                after_reload(&daemon, &mut file_watch, &mut changes);
            }
            _ = next_file_event(&mut file_watch) => {
                if file_watch.is_some() {
                    reload(&mut daemon, &notifier, "file change");
                    after_reload(&daemon, &mut file_watch, &mut changes);
                }
            }
            Some(request) = incoming.recv() => {
                let response = match request.command {
                    Command::Status => json!({
                        "version": control::PROTOCOL_VERSION,
                        "ok": true,
                        "status": render::status_json(&daemon.status()),
                    }),
                    Command::Reload => {
                        let r = reload(&mut daemon, &notifier, "tunneld reload");
                        after_reload(&daemon, &mut file_watch, &mut changes);
                        r
                    }
                };
                let _ = request.reply.send(response);
                trim.soon();
            }
            _ = async { watchdog.as_mut().expect("guarded").tick().await }, if watchdog.is_some() => {
                notifier.watchdog_ping();
            }
            Some(reply) = snapshot_requests.recv() => {
                let _ = reply.send(daemon.status());
            }
            _ = any_change(&mut changes) => trim.soon(),
            () = trim.due() => trim.run(),
        }
        let line = render::status_line(&daemon.status());
        if line != status_line {
            notifier.status(&line);
            status_line = line;
        }
    };
    info!(signal = why, "stopping");
    notifier.stopping();
    control.abort();
    let _ = control.await;
    if let Some(m) = metrics {
        m.abort();
        let _ = m.await;
    }
    daemon.shutdown().await;
    info!("stopped");
    Ok(())
}

/// Re-arms what depends on the config after a reload: the file watch (started, stopped,
/// or moved to the include folders the new file names) and the list of tunnels whose
/// status feeds `STATUS=`.
fn after_reload(
    daemon: &Daemon,
    watcher: &mut Option<Watch>,
    changes: &mut Vec<watch::Receiver<TunnelStatus>>,
) {
    let config = daemon.config();
    let moved = match (&*watcher, config_watch::targets(config)) {
        (Some(w), Ok(targets)) => w.targets != targets,
        _ => true,
    };
    if config.daemon.watch != watcher.is_some() || moved {
        *watcher = start_watch(config);
    }
    *changes = receivers(daemon);
}

/// Re-reads the file the daemon was started with and applies it by difference. An
/// invalid file changes nothing; its errors are logged and returned.
fn reload(daemon: &mut Daemon, notifier: &Notifier, trigger: &str) -> Value {
    notifier.reloading();
    let path: PathBuf = daemon.config().path.clone();
    let response = match crate::load_config(&path) {
        Err(errors) => {
            for e in &errors {
                warn!(trigger, "{e}");
            }
            warn!(trigger, config = %path.display(), "reload refused: the configuration is invalid; still running the previous one");
            json!({"version": control::PROTOCOL_VERSION, "ok": false, "errors": errors})
        }
        Ok(new) => {
            let diff = daemon.apply(&new);
            for line in diff.summary().lines() {
                info!(trigger, "reload: {line}");
            }
            let names = |v: &[String]| v.to_vec();
            let files: Vec<Value> = new
                .files
                .iter()
                .map(|f| json!({"path": f.path, "tunnels": f.tunnels}))
                .collect();
            json!({
                "version": control::PROTOCOL_VERSION,
                "ok": true,
                "reload": {
                    "summary": diff.summary(),
                    "files": files,
                    "added": names(&diff.added),
                    "removed": names(&diff.removed),
                    "restarted": names(&diff.restarted),
                    "updated": diff.updated.iter().map(|u| u.name.clone()).collect::<Vec<_>>(),
                    "unchanged": names(&diff.unchanged),
                    "needs_restart": names(&diff.needs_restart),
                }
            })
        }
    };
    notifier.ready(&render::status_line(&daemon.status()));
    response
}
