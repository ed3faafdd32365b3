//! `tunneld run`: logging, the tokio runtime, and signals around the core's [`Daemon`].

use std::io::IsTerminal;

use anyhow::Context;
use tokio::signal::unix::{SignalKind, signal};
use tracing::info;
use tracing_subscriber::EnvFilter;
use tunneld_config::Config;
use tunneld_core::Daemon;

/// Worker threads: the SSH packet path is CPU-bound per session, two workers cover a
/// busy tunnel, more only cost memory on the small boxes tunneld runs on.
const WORKER_THREADS: usize = 2;

fn init_logging(config: &Config) {
    // RUST_LOG overrides the file; russh's own chatter stays at warn unless asked for.
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(format!("{},russh=warn", config.daemon.log_level)));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

/// Runs until SIGTERM or SIGINT, then stops every tunnel and returns.
///
/// # Errors
/// When the runtime or the signal handlers cannot be set up.
pub fn run(config: Config) -> anyhow::Result<()> {
    init_logging(&config);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(WORKER_THREADS)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let mut term = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
        let mut int = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
        let daemon = Daemon::start(&config);
        info!(config = %config.path.display(), tunnels = config.tunnels.len(), "tunneld started");
        let why = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        info!(signal = why, "stopping");
        daemon.shutdown().await;
        info!("stopped");
        Ok(())
    })
}
