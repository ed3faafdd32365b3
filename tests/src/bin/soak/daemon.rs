//! The daemon under test: the `tunneld` release binary, its configuration file (valid
//! variants and broken ones), its process, its control socket (`status --json`,
//! `reload`), its metrics endpoint, and what `/proc` says about it.

use std::fmt::Write as _;
use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout};
use tunneld_tests::net::free_port;
use tunneld_tests::{AfterGrace, Sshd, sigterm_then_sigkill};

/// Bound of one `tunneld status` or `tunneld reload` (the client itself waits 30 s).
const CLIENT_TIMEOUT: Duration = Duration::from_secs(40);
/// Bound of one metrics scrape.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(5);
/// Lines of tunneld's log quoted in a failure.
const LOG_TAIL_LINES: usize = 25;

/// `RUST_LOG` of the daemon.
const TUNNELD_LOG_FILTER: &str = "info,tunneld_core::forward=debug";

/// Heartbeat settings of every tunnel: a silent path is declared dead after
/// `HEARTBEAT_INTERVAL` × `HEARTBEAT_COUNT` (the SPEC allows one more second).
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(1);
pub const HEARTBEAT_COUNT: u32 = 3;

/// What the reload faults toggle; both off is the base configuration.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Extras {
    /// A third `local` forward on tunnel `direct` (a forward-only change: same session).
    pub forward: bool,
    /// A third tunnel, `extra`, with one `dynamic` forward.
    pub tunnel: bool,
}

/// The ports and paths of a run, and the configuration files made from them.
pub struct Layout {
    pub dir: PathBuf,
    pub config: PathBuf,
    pub socket: PathBuf,
    pub metrics: SocketAddr,
    pub echo: SocketAddr,
    sshd_port: u16,
    /// The proxy's port, or sshd's when there is no proxy.
    proxied_port: u16,
    user: String,
    key: PathBuf,
    known_hosts: PathBuf,
    pub local_direct: SocketAddr,
    pub remote_direct: SocketAddr,
    pub local_proxied: SocketAddr,
    pub dynamic_proxied: SocketAddr,
    pub local_extra: SocketAddr,
    pub dynamic_extra: SocketAddr,
}

/// A config broken in a way `tunneld reload` must refuse, and what is wrong with it.
pub struct Invalid {
    pub text: String,
    pub what: &'static str,
}

/// How many ways [`Layout::invalid`] can break a file.
pub const INVALID_VARIANTS: u64 = 6;

impl Layout {
    /// Free loopback ports for every listener, a known_hosts file naming sshd's key at
    /// sshd's port and at the proxy's.
    ///
    /// # Errors
    /// The known_hosts file cannot be written.
    pub fn new(
        dir: &Path,
        sshd: &Sshd,
        proxy_port: Option<u16>,
        echo: SocketAddr,
    ) -> anyhow::Result<Layout> {
        let port =
            || SocketAddr::from((Ipv4Addr::LOCALHOST, free_port(Ipv4Addr::LOCALHOST.into())));
        let known_hosts = dir.join("known_hosts");
        let mut kh = format!("[127.0.0.1]:{} {}\n", sshd.port(), sshd.host_key_pub());
        if let Some(p) = proxy_port {
            let _ = writeln!(kh, "[127.0.0.1]:{p} {}", sshd.host_key_pub());
        }
        std::fs::write(&known_hosts, kh).context("write known_hosts")?;
        Ok(Layout {
            dir: dir.to_path_buf(),
            config: dir.join("tunneld.toml"),
            socket: dir.join("tunneld.sock"),
            metrics: port(),
            echo,
            sshd_port: sshd.port(),
            proxied_port: proxy_port.unwrap_or(sshd.port()),
            user: sshd.user(),
            key: sshd.client_key().to_path_buf(),
            known_hosts,
            local_direct: port(),
            remote_direct: port(),
            local_proxied: port(),
            dynamic_proxied: port(),
            local_extra: port(),
            dynamic_extra: port(),
        })
    }

    fn local_spec(&self, entry: SocketAddr) -> String {
        format!("{entry}:{}", self.echo)
    }

    /// The tunnels `extras` makes, each with its forwards' specs.
    pub fn expected(&self, extras: Extras) -> Vec<(&'static str, Vec<String>)> {
        let mut direct = vec![self.local_spec(self.local_direct)];
        if extras.forward {
            direct.push(self.local_spec(self.local_extra));
        }
        direct.push(self.local_spec(self.remote_direct));
        let mut tunnels = vec![
            ("direct", direct),
            (
                "proxied",
                vec![
                    self.local_spec(self.local_proxied),
                    self.dynamic_proxied.to_string(),
                ],
            ),
        ];
        if extras.tunnel {
            tunnels.push(("extra", vec![self.dynamic_extra.to_string()]));
        }
        tunnels
    }

    /// The configuration file for `extras`.
    pub fn render(&self, extras: Extras) -> String {
        let q = |v: &[String]| {
            v.iter()
                .map(|s| format!("\"{s}\""))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut local_direct = vec![self.local_spec(self.local_direct)];
        if extras.forward {
            local_direct.push(self.local_spec(self.local_extra));
        }
        let mut text = format!(
            r#"# Written by the soak run; rewritten by its reload faults.
[daemon]
socket = "{socket}"
watch = true
metrics = "{metrics}"

[defaults]
user = "{user}"
identity_file = "{key}"
known_hosts = "{kh}"
connect_timeout = "5s"
server_alive_interval = "{hb_interval}s"
server_alive_count_max = {hb_count}
backoff = {{ initial = "100ms", max = "2s" }}

[tunnels.direct]
host = "127.0.0.1"
port = {sshd}
local = [{local_direct}]
remote = ["{remote}"]

[tunnels.proxied]
host = "127.0.0.1"
port = {proxied}
local = ["{local_proxied}"]
dynamic = ["{dynamic_proxied}"]
"#,
            socket = self.socket.display(),
            metrics = self.metrics,
            user = self.user,
            key = self.key.display(),
            kh = self.known_hosts.display(),
            hb_interval = HEARTBEAT_INTERVAL.as_secs(),
            hb_count = HEARTBEAT_COUNT,
            sshd = self.sshd_port,
            local_direct = q(&local_direct),
            remote = self.local_spec(self.remote_direct),
            proxied = self.proxied_port,
            local_proxied = self.local_spec(self.local_proxied),
            dynamic_proxied = self.dynamic_proxied,
        );
        if extras.tunnel {
            let _ = write!(
                text,
                "\n[tunnels.extra]\nhost = \"127.0.0.1\"\nport = {}\ndynamic = [\"{}\"]\n",
                self.sshd_port, self.dynamic_extra
            );
        }
        text
    }

    /// The file for `extras`, broken in way number `variant` (mod [`INVALID_VARIANTS`]).
    pub fn invalid(&self, extras: Extras, variant: u64) -> Invalid {
        let good = self.render(extras);
        let proxied = "[tunnels.proxied]\n";
        let (text, what) = match variant % INVALID_VARIANTS {
            0 => (
                good.replace("[tunnels.direct]", "[tunnels.direct"),
                "not TOML (unclosed table header)",
            ),
            1 => (
                good.replace("connect_timeout = \"5s\"", "connect_timeout = \"soon\""),
                "a duration without a unit",
            ),
            2 => (
                good.replace(proxied, &format!("{proxied}colour = \"blue\"\n")),
                "an unknown key",
            ),
            3 => (
                good.replace(
                    proxied,
                    &format!("{proxied}remote = [\"no:such:spec:here:at:all\"]\n"),
                ),
                "a malformed forward spec",
            ),
            4 => (
                good.replace(
                    &format!("server_alive_count_max = {HEARTBEAT_COUNT}"),
                    "server_alive_count_max = -1",
                ),
                "a negative heartbeat count",
            ),
            _ => (
                good.replace(proxied, "[tunnels.\"bad name!\"]\n"),
                "an invalid tunnel name",
            ),
        };
        assert_ne!(text, good, "invalid variant {variant} changed nothing");
        Invalid { text, what }
    }

    /// Writes the config file: renamed over it (as editors save) or rewritten in place.
    ///
    /// # Errors
    /// The write or rename fails.
    pub fn write(&self, text: &str, in_place: bool) -> anyhow::Result<()> {
        if in_place {
            std::fs::write(&self.config, text).context("rewrite the config in place")
        } else {
            let tmp = self.dir.join(".tunneld.toml.new");
            std::fs::write(&tmp, text).context("write the new config")?;
            std::fs::rename(&tmp, &self.config).context("rename the new config over the old")
        }
    }
}

/// A tunnel as `tunneld status --json` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TunnelView {
    pub name: String,
    pub state: String,
    pub since: String,
    pub reconnects: u64,
    pub last_error: Option<String>,
    /// `(spec, state, open connections)`.
    pub forwards: Vec<(String, String, u64)>,
}

/// The tunnels of a status document.
///
/// # Errors
/// The document does not have the SPEC's shape.
pub fn tunnels(doc: &Value) -> anyhow::Result<Vec<TunnelView>> {
    let list = doc["tunnels"].as_array().context("no \"tunnels\" array")?;
    list.iter()
        .map(|t| {
            let forwards = t["forwards"]
                .as_array()
                .context("no \"forwards\" array")?
                .iter()
                .map(|f| {
                    (
                        f["spec"].as_str().unwrap_or("?").to_owned(),
                        f["state"].as_str().unwrap_or("?").to_owned(),
                        f["connections"].as_u64().unwrap_or(0),
                    )
                })
                .collect();
            Ok(TunnelView {
                name: t["name"]
                    .as_str()
                    .context("tunnel without name")?
                    .to_owned(),
                state: t["state"].as_str().unwrap_or("?").to_owned(),
                since: t["since"].as_str().unwrap_or("").to_owned(),
                reconnects: t["reconnects"].as_u64().unwrap_or(0),
                last_error: t["last_error"].as_str().map(str::to_owned),
                forwards,
            })
        })
        .collect()
}

/// `Ok` when the daemon runs exactly the `expected` tunnels with exactly their forwards,
/// whatever their states; else the first difference.
///
/// # Errors
/// The first difference.
pub fn check_configured(
    views: &[TunnelView],
    expected: &[(&'static str, Vec<String>)],
) -> Result<(), String> {
    let mut names: Vec<&str> = views.iter().map(|v| v.name.as_str()).collect();
    let mut want: Vec<&str> = expected.iter().map(|(n, _)| *n).collect();
    names.sort_unstable();
    want.sort_unstable();
    if names != want {
        return Err(format!("tunnels are {names:?}, expected {want:?}"));
    }
    for (name, specs) in expected {
        let v = views.iter().find(|v| v.name == *name).expect("names match");
        let mut have: Vec<&str> = v.forwards.iter().map(|f| f.0.as_str()).collect();
        let mut want: Vec<&str> = specs.iter().map(String::as_str).collect();
        have.sort_unstable();
        want.sort_unstable();
        if have != want {
            return Err(format!(
                "tunnel {name} has forwards {have:?}, expected {want:?}"
            ));
        }
    }
    Ok(())
}

/// `Ok` when the daemon runs exactly the `expected` tunnels and forwards, each tunnel
/// `up` and each forward `active`; else what is not so.
///
/// # Errors
/// The first difference, with the tunnel's state and last error.
pub fn check_all_up(
    views: &[TunnelView],
    expected: &[(&'static str, Vec<String>)],
) -> Result<(), String> {
    check_configured(views, expected)?;
    for v in views {
        if v.state != "up" {
            return Err(format!(
                "tunnel {} is {} (last error: {})",
                v.name,
                v.state,
                v.last_error.as_deref().unwrap_or("none")
            ));
        }
        if let Some(f) = v.forwards.iter().find(|f| f.1 != "active") {
            return Err(format!("tunnel {}: forward {} is {}", v.name, f.0, f.1));
        }
    }
    Ok(())
}

/// The running `tunneld run`, its log in a file, SIGKILLed on drop if still running.
pub struct Tunneld {
    bin: PathBuf,
    socket: PathBuf,
    child: Child,
    log: PathBuf,
}

impl Tunneld {
    /// Starts `BIN run -c CONFIG` with its output in `DIR/tunneld.log`, tied to this
    /// process: the kernel SIGKILLs it if the soak dies. Call from the thread that lives
    /// as long as the process (the main thread): the tie is to the forking thread.
    ///
    /// # Errors
    /// The log cannot be created or the binary cannot be started.
    pub fn spawn(bin: &Path, layout: &Layout) -> anyhow::Result<Tunneld> {
        let log = layout.dir.join("tunneld.log");
        let out = File::create(&log).with_context(|| format!("create {}", log.display()))?;
        let mut cmd = Command::new(bin);
        cmd.arg("run")
            .arg("-c")
            .arg(&layout.config)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out);
        // Plain log lines into the file, no systemd; the forwards at debug level, which
        // says why each connection that ended badly ended (a few lines per fault).
        cmd.env("RUST_LOG", TUNNELD_LOG_FILTER);
        for var in [
            "JOURNAL_STREAM",
            "NOTIFY_SOCKET",
            "WATCHDOG_USEC",
            "WATCHDOG_PID",
        ] {
            cmd.env_remove(var);
        }
        tunneld_tests::die_with_this_process(&mut cmd);
        let child = cmd
            .spawn()
            .with_context(|| format!("start {}", bin.display()))?;
        Ok(Tunneld {
            bin: bin.to_path_buf(),
            socket: layout.socket.clone(),
            child,
            log,
        })
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// # Errors
    /// tunneld has exited; the error has its status and the end of its log.
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        if let Ok(Some(status)) = self.child.try_wait() {
            bail!("tunneld exited ({status}); log:\n{}", self.log_tail());
        }
        Ok(())
    }

    /// The last lines of its log.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
    }

    /// Runs `tunneld ARGS --socket SOCKET` (bounded).
    ///
    /// # Errors
    /// It cannot be run or does not exit within [`CLIENT_TIMEOUT`].
    pub async fn client(&self, args: &[&str]) -> anyhow::Result<Output> {
        let run = tokio::process::Command::new(&self.bin)
            .args(args)
            .arg("--socket")
            .arg(&self.socket)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output();
        timeout(CLIENT_TIMEOUT, run)
            .await
            .with_context(|| format!("tunneld {args:?} did not exit within {CLIENT_TIMEOUT:?}"))?
            .with_context(|| format!("run tunneld {args:?}"))
    }

    /// `tunneld status --json`, parsed.
    ///
    /// # Errors
    /// The command fails or prints something else than the SPEC's document.
    pub async fn status(&self) -> anyhow::Result<Vec<TunnelView>> {
        let out = self.client(&["status", "--json"]).await?;
        if !out.status.success() {
            bail!(
                "tunneld status --json: {} {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let doc: Value =
            serde_json::from_slice(&out.stdout).context("parse tunneld status --json")?;
        tunnels(&doc)
    }

    /// SIGTERM, then waits for the exit; returns its code and how long it took. Blocks
    /// the thread: the soak's main future calls it, with nothing else to do meanwhile.
    ///
    /// # Errors
    /// Not exited within `bound` (it is then SIGKILLed).
    pub fn terminate(&mut self, bound: Duration) -> anyhow::Result<(Option<i32>, Duration)> {
        match sigterm_then_sigkill(&mut self.child, bound, AfterGrace::KillChild) {
            Some((status, took)) => Ok((status.code(), took)),
            None => bail!("tunneld did not exit within {bound:?} of SIGTERM"),
        }
    }
}

impl Drop for Tunneld {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// What `/proc` and the metrics say about the daemon at one moment.
#[derive(Clone, Copy, Debug, Default)]
pub struct Sample {
    /// Since the start of the run.
    pub at: Duration,
    pub fds: u64,
    pub threads: u64,
    pub pss_kib: u64,
    pub rss_kib: u64,
    /// Sum of `tunneld_forward_connections_active`; `None` if the scrape failed.
    pub active: Option<u64>,
}

/// Entries of a `/proc` directory.
fn count_entries(path: &str) -> Option<u64> {
    Some(std::fs::read_dir(path).ok()?.count() as u64)
}

/// The value in kB of the line `key:` of a `/proc` file.
fn kib_field(path: &str, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// Reads fds, threads, PSS and RSS of `pid`, and scrapes the active connections.
/// `None` when the process is gone.
pub async fn sample(pid: i32, metrics: SocketAddr, t0: Instant) -> Option<Sample> {
    let active = scrape(metrics).await.ok().map(|m| m.active);
    Some(Sample {
        at: t0.elapsed(),
        fds: count_entries(&format!("/proc/{pid}/fd"))?,
        threads: count_entries(&format!("/proc/{pid}/task"))?,
        pss_kib: kib_field(&format!("/proc/{pid}/smaps_rollup"), "Pss")?,
        rss_kib: kib_field(&format!("/proc/{pid}/status"), "VmRSS")?,
        active,
    })
}

/// Sums over every forward from `/metrics`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Metrics {
    pub active: u64,
    pub connections_total: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub reconnects: u64,
}

/// `GET /metrics` and the sums the report wants.
///
/// # Errors
/// Connect, I/O, a non-200 answer, or [`SCRAPE_TIMEOUT`].
pub async fn scrape(addr: SocketAddr) -> anyhow::Result<Metrics> {
    let body = timeout(SCRAPE_TIMEOUT, async {
        let mut s = TcpStream::connect(addr).await?;
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: soak\r\nConnection: close\r\n\r\n")
            .await?;
        let mut text = String::new();
        s.read_to_string(&mut text).await?;
        anyhow::Ok(text)
    })
    .await
    .context("metrics scrape timed out")??;
    if !body.starts_with("HTTP/1.1 200") {
        bail!(
            "metrics answered {:?}",
            body.lines().next().unwrap_or_default()
        );
    }
    let mut m = Metrics::default();
    for line in body.lines().filter(|l| !l.starts_with('#')) {
        let Some((name, value)) = line.split_once(' ') else {
            continue;
        };
        let Ok(value) = value.trim().parse::<f64>() else {
            continue;
        };
        let family = name.split('{').next().unwrap_or_default();
        let slot = match family {
            "tunneld_forward_connections_active" => &mut m.active,
            "tunneld_forward_connections_total" => &mut m.connections_total,
            "tunneld_forward_bytes_in_total" => &mut m.bytes_in,
            "tunneld_forward_bytes_out_total" => &mut m.bytes_out,
            "tunneld_tunnel_reconnects_total" => &mut m.reconnects,
            _ => continue,
        };
        *slot += value as u64;
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_kib_fields() {
        let pid = std::process::id();
        assert!(kib_field(&format!("/proc/{pid}/status"), "VmRSS").unwrap() > 0);
        assert!(kib_field(&format!("/proc/{pid}/smaps_rollup"), "Pss").unwrap() > 0);
        assert!(kib_field(&format!("/proc/{pid}/status"), "NoSuchField").is_none());
    }

    #[test]
    fn all_up_names_what_is_not() {
        let view = |name: &str, state: &str, fwd: &str| TunnelView {
            name: name.into(),
            state: state.into(),
            since: String::new(),
            reconnects: 0,
            last_error: Some("boom".into()),
            forwards: vec![(fwd.into(), "active".into(), 0)],
        };
        let expected = vec![("a", vec!["1".to_owned()]), ("b", vec!["2".to_owned()])];
        assert!(check_all_up(&[view("a", "up", "1"), view("b", "up", "2")], &expected).is_ok());
        let err = check_all_up(
            &[view("a", "up", "1"), view("b", "backoff", "2")],
            &expected,
        );
        assert!(err.unwrap_err().contains("b is backoff (last error: boom)"));
        let err = check_all_up(&[view("a", "up", "1")], &expected).unwrap_err();
        assert!(err.contains("expected [\"a\", \"b\"]"), "{err}");
        let err = check_all_up(&[view("a", "up", "1"), view("b", "up", "3")], &expected);
        assert!(err.unwrap_err().contains("forwards [\"3\"]"));
    }
}
