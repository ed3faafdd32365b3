//! Shared set-up for the integration tests.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::sync::watch;
use tunneld_config::Config;
use tunneld_core::{Daemon, TunnelState, TunnelStatus};
use tunneld_tests::Sshd;

/// Bound for a tunnel to come up against a local sshd.
pub const UP_TIMEOUT: Duration = Duration::from_secs(20);
/// 32 MiB each way, as the bulk tests move.
pub const BULK_BYTES: usize = 32 << 20;

/// The `[tunnels.NAME]` table for a tunnel to `sshd` with the kit's key, plus `extra` lines.
pub fn tunnel_toml(sshd: &Sshd, name: &str, extra: &str) -> String {
    format!(
        r#"
[tunnels.{name}]
host = "127.0.0.1"
port = {port}
user = "{user}"
identity_file = "{key}"
known_hosts = "{kh}"
connect_timeout = "5s"
backoff = {{ initial = "50ms", max = "500ms" }}
{extra}
"#,
        port = sshd.port(),
        user = sshd.user(),
        key = sshd.client_key().display(),
        kh = sshd.known_hosts().display(),
    )
}

/// Parses a config text, panicking with every error.
pub fn config(text: &str) -> Config {
    tunneld_config::parse(Path::new("test.toml"), text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

/// Starts the daemon on a one-tunnel config and waits until that tunnel is up.
pub async fn start_up(text: &str, name: &str) -> (Daemon, TunnelStatus) {
    let daemon = Daemon::start(&config(text));
    let mut rx = daemon.watch(name).expect("tunnel exists");
    let status = wait_state(&mut rx, TunnelState::Up).await;
    (daemon, status)
}

/// Waits until the tunnel is in `state`; panics with its last status after [`UP_TIMEOUT`].
pub async fn wait_state(
    rx: &mut watch::Receiver<TunnelStatus>,
    state: TunnelState,
) -> TunnelStatus {
    let got = match tokio::time::timeout(UP_TIMEOUT, rx.wait_for(|s| s.state == state)).await {
        Ok(Ok(s)) => Some(s.clone()),
        _ => None,
    };
    got.unwrap_or_else(|| {
        panic!(
            "tunnel never reached {state:?}; last status: {:#?}",
            *rx.borrow()
        )
    })
}

/// Waits until `pred` holds for the tunnel's status.
pub async fn wait_status(
    rx: &mut watch::Receiver<TunnelStatus>,
    what: &str,
    pred: impl FnMut(&TunnelStatus) -> bool,
) -> TunnelStatus {
    let got = match tokio::time::timeout(UP_TIMEOUT, rx.wait_for(pred)).await {
        Ok(Ok(s)) => Some(s.clone()),
        _ => None,
    };
    got.unwrap_or_else(|| panic!("{what}: never happened; last status: {:#?}", *rx.borrow()))
}

/// The first socket address a forward reports it is bound to (`"127.0.0.1:4000, [::1]:4000"`).
pub fn bound_addr(status: &TunnelStatus, spec: &str) -> SocketAddr {
    let f = status
        .forward(spec)
        .unwrap_or_else(|| panic!("no forward {spec}"));
    let bound = f
        .bound
        .as_deref()
        .unwrap_or_else(|| panic!("forward {spec} not bound"));
    bound
        .split(", ")
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("cannot read bound address {bound:?}"))
}

/// The port the server allocated for a remote forward (`"localhost:41234"`).
pub fn remote_port(status: &TunnelStatus, spec: &str) -> u16 {
    let f = status
        .forward(spec)
        .unwrap_or_else(|| panic!("no forward {spec}"));
    let bound = f
        .bound
        .as_deref()
        .unwrap_or_else(|| panic!("forward {spec} not bound"));
    bound
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("cannot read port of {bound:?}"))
}

/// The `tunneld` binary, built once per test run for the profile the tests run in.
pub fn tunneld_bin() -> PathBuf {
    static BIN: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        // target/<profile>/deps/integration-xxxx -> target/<profile>/tunneld
        let exe = std::env::current_exe().expect("test executable path");
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("target/<profile>");
        let release = profile_dir.file_name().is_some_and(|n| n == "release");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = std::process::Command::new(cargo);
        cmd.args(["build", "--quiet", "-p", "tunneld", "--bin", "tunneld"]);
        if release {
            cmd.arg("--release");
        }
        let status = cmd
            .status()
            .expect("run cargo build for the tunneld binary");
        assert!(status.success(), "cargo build -p tunneld failed");
        let bin = profile_dir.join("tunneld");
        assert!(bin.exists(), "{} missing after build", bin.display());
        bin
    })
    .clone()
}
