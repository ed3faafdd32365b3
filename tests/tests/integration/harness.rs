//! Shared set-up for the integration tests.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;
use std::time::Instant;

use serde_json::Value;
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
    let mut rx = daemon.subscribe(name).expect("tunnel exists");
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

/// Where a forward reports it is bound (its status's `listen`).
fn bound<'a>(status: &'a TunnelStatus, spec: &str) -> &'a [String] {
    status
        .forward(spec)
        .unwrap_or_else(|| panic!("no forward {spec}"))
        .listen
        .as_deref()
        .unwrap_or_else(|| panic!("forward {spec} not bound"))
}

/// The first socket address a forward reports it is bound to (`127.0.0.1:4000` of
/// `["127.0.0.1:4000", "[::1]:4000"]`).
pub fn bound_addr(status: &TunnelStatus, spec: &str) -> SocketAddr {
    let bound = bound(status, spec);
    bound
        .first()
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("cannot read bound address {bound:?}"))
}

/// The port the server allocated for a remote forward (`"localhost:41234"`).
pub fn remote_port(status: &TunnelStatus, spec: &str) -> u16 {
    let bound = bound(status, spec);
    bound
        .first()
        .and_then(|a| a.rsplit(':').next())
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

/// A running `tunneld run` whose stderr lines arrive on a channel.
pub struct Running {
    pub child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Running {
    pub fn start(config: &std::path::Path, env: &[(&str, &str)]) -> Running {
        let mut cmd = Self::command(config);
        for (k, v) in env {
            cmd.env(k, v);
        }
        Self::spawn(cmd)
    }

    /// Like [`Running::start`], with soft and hard `RLIMIT_NOFILE` set to `limit`.
    pub fn start_with_fd_limit(config: &std::path::Path, limit: u64) -> Running {
        use std::os::unix::process::CommandExt;
        let mut cmd = Self::command(config);
        // SAFETY: setrlimit is async-signal-safe; the closure touches nothing else.
        unsafe {
            cmd.pre_exec(move || {
                let lim = libc::rlimit {
                    rlim_cur: limit,
                    rlim_max: limit,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &raw const lim) == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            });
        }
        Self::spawn(cmd)
    }

    /// `cmd` (a tunneld, maybe under an emulator) with its stderr read like `start`'s.
    pub fn start_command(mut cmd: Command) -> Running {
        cmd.env("RUST_LOG", "info").stderr(Stdio::piped());
        Self::spawn(cmd)
    }

    fn command(config: &std::path::Path) -> Command {
        let mut cmd = Command::new(tunneld_bin());
        cmd.args(["run", "-c"])
            .arg(config)
            .env("RUST_LOG", "info")
            .stderr(Stdio::piped());
        cmd
    }

    fn spawn(mut cmd: Command) -> Running {
        let mut child = cmd.spawn().unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Running {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits for a log line containing `needle`, and returns it.
    pub fn wait_line(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + UP_TIMEOUT;
        while Instant::now() < deadline {
            match self.lines.recv_timeout(deadline - Instant::now()) {
                Ok(line) => {
                    let hit = line.contains(needle);
                    self.seen.push(line);
                    if hit {
                        return self.seen.last().cloned().unwrap_or_default();
                    }
                }
                Err(_) => break,
            }
        }
        panic!(
            "no log line with {needle:?}; saw:\n{}",
            self.seen.join("\n")
        );
    }

    /// Whether a line seen so far contains `needle`.
    pub fn seen_line(&self, needle: &str) -> bool {
        self.seen.iter().any(|l| l.contains(needle))
    }

    /// Stops the process (SIGKILL) and returns every line it wrote.
    pub fn finish(mut self) -> Vec<String> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // The reader thread ends at EOF, which the exit brought.
        let mut lines = std::mem::take(&mut self.seen);
        while let Ok(line) = self.lines.recv_timeout(UP_TIMEOUT) {
            lines.push(line);
        }
        lines
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child's pid.
        assert_eq!(unsafe { libc::kill(self.child.id() as i32, sig) }, 0);
    }

    /// Waits for exit within `bound`; returns the exit code and how long it took.
    pub fn wait_exit(&mut self, bound: Duration) -> (Option<i32>, Duration) {
        let start = Instant::now();
        while start.elapsed() < bound {
            if let Some(status) = self.child.try_wait().unwrap() {
                return (status.code(), start.elapsed());
            }
            // Polling a child's exit: there is no async wait on std::process::Child.
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        panic!("tunneld did not exit within {bound:?}");
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A daemon binary running on a config file in a temp folder.
pub struct Service {
    pub dir: tempfile::TempDir,
    pub run: Running,
}

impl Service {
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("tunneld.toml")
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("tunneld.sock")
    }

    pub fn write(&self, text: &str) {
        std::fs::write(
            self.config_path(),
            daemon_table(self.dir.path(), false) + text,
        )
        .unwrap();
    }

    pub fn start(tunnels: &str, watch: bool, env: &[(&str, &str)]) -> Service {
        Self::start_in(tempfile::tempdir().unwrap(), "", tunnels, watch, env)
    }

    /// Starts on `dir`'s `tunneld.toml`: the `[daemon]` table with `daemon_extra` lines,
    /// then `tunnels`.
    pub fn start_in(
        dir: tempfile::TempDir,
        daemon_extra: &str,
        tunnels: &str,
        watch: bool,
        env: &[(&str, &str)],
    ) -> Service {
        let path = dir.path().join("tunneld.toml");
        let text = format!(
            "{}{daemon_extra}\n{tunnels}",
            daemon_table(dir.path(), watch)
        );
        std::fs::write(&path, text).unwrap();
        let mut run = Running::start(&path, env);
        run.wait_line("tunneld started");
        Service { dir, run }
    }

    pub fn tunneld(&self, args: &[&str]) -> std::process::Output {
        Command::new(tunneld_bin())
            .args(args)
            .arg("--socket")
            .arg(self.socket())
            .output()
            .unwrap()
    }

    pub fn status(&self) -> Value {
        let out = self.tunneld(&["status", "--json"]);
        assert!(out.status.success(), "{out:?}");
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// Polls `tunneld status --json` until `pred` holds.
    pub async fn wait_status(&self, what: &str, mut pred: impl FnMut(&Value) -> bool) -> Value {
        let deadline = Instant::now() + UP_TIMEOUT;
        loop {
            let s = self.status();
            if pred(&s) {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: never happened; last status {s:#}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn reload(&self) -> std::process::Output {
        self.tunneld(&["reload"])
    }
}

pub fn daemon_table(dir: &Path, watch: bool) -> String {
    format!(
        "[daemon]\nsocket = \"{}\"\nwatch = {watch}\n",
        dir.join("tunneld.sock").display()
    )
}

pub fn tunnel<'a>(status: &'a Value, name: &str) -> &'a Value {
    status["tunnels"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == name)
        .unwrap_or_else(|| panic!("no tunnel {name} in {status:#}"))
}

pub fn names(status: &Value) -> Vec<String> {
    status["tunnels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_string())
        .collect()
}

pub fn all_up(status: &Value) -> bool {
    status["tunnels"]
        .as_array()
        .unwrap()
        .iter()
        .all(|t| t["state"] == "up")
}
