//! The programs under test, started against the test-kit's sshd: the `tunneld` release
//! binary, `ssh -N` with its default cipher and with AES-GCM, and fleets of tunneld
//! tunnels or autossh processes for the memory and idle-CPU figures.
//!
//! Every child is tied to the bench (SIGKILL if the bench dies), logs into the bench's
//! temporary folder, and is stopped with SIGTERM on drop (SIGKILL for its whole tree if it
//! has not exited within [`SIGTERM_GRACE`]).

use std::collections::BTreeSet;
use std::fs::File;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::net::TcpStream;
use tokio::time::{Instant, sleep, timeout};
use tunneld_tests::net::{echo_roundtrip, free_port};
use tunneld_tests::{AfterGrace, Sshd, sigterm_then_sigkill};

use crate::measure::process_trees;

/// Bound for one contender's forwards to carry traffic after it starts.
const UP_TIMEOUT: Duration = Duration::from_secs(30);
/// Bound for a fleet to be all up: this, plus [`FLEET_UP_TIMEOUT_PER_TUNNEL`] each.
const FLEET_UP_TIMEOUT_BASE: Duration = Duration::from_secs(30);
const FLEET_UP_TIMEOUT_PER_TUNNEL: Duration = Duration::from_millis(150);
/// Pause between two readiness polls.
const POLL_INTERVAL: Duration = Duration::from_millis(50);
/// How long a child may take to exit after SIGTERM before its tree gets SIGKILL.
const SIGTERM_GRACE: Duration = Duration::from_secs(10);
/// Bound of one `tunneld status --json`.
const STATUS_TIMEOUT: Duration = Duration::from_secs(10);
/// Bound of one `apt-get` run.
const APT_TIMEOUT: Duration = Duration::from_secs(300);
/// Lines of a child's log quoted in an error.
const LOG_TAIL_LINES: usize = 20;
/// The cipher the second `ssh` contender asks for.
pub const AES_GCM: &str = "aes128-gcm@openssh.com";

/// What every contender needs: the server, the tunneld binary, a folder for files.
pub struct Env<'a> {
    pub sshd: &'a Sshd,
    pub tunneld: PathBuf,
    pub dir: PathBuf,
}

/// One program that forwards the bench's traffic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Contender {
    Tunneld,
    Ssh,
    SshAesGcm,
}

impl Contender {
    pub const ALL: [Contender; 3] = [Contender::Tunneld, Contender::Ssh, Contender::SshAesGcm];

    /// Stable name, used as the JSON key.
    pub fn key(self) -> &'static str {
        match self {
            Contender::Tunneld => "tunneld",
            Contender::Ssh => "ssh",
            Contender::SshAesGcm => "ssh-aes128-gcm",
        }
    }

    /// How it is run, for the table header.
    pub fn label(self) -> &'static str {
        match self {
            Contender::Tunneld => "tunneld run",
            Contender::Ssh => "ssh -N",
            Contender::SshAesGcm => "ssh -N -c aes128-gcm",
        }
    }

    pub fn is_ssh(self) -> bool {
        self != Contender::Tunneld
    }
}

/// Ports of the three servers the forwards lead to.
#[derive(Clone, Copy)]
pub struct Targets {
    pub echo: u16,
    pub sink: u16,
    pub source: u16,
}

/// Entry ports of one side's forwards, one per target.
#[derive(Clone, Copy)]
pub struct Entries {
    pub echo: u16,
    pub sink: u16,
    pub source: u16,
}

impl Entries {
    fn fresh() -> Entries {
        let port = || free_port(Ipv4Addr::LOCALHOST.into());
        Entries {
            echo: port(),
            sink: port(),
            source: port(),
        }
    }

    /// `127.0.0.1:ENTRY:127.0.0.1:TARGET` for each target, in OpenSSH's -L/-R syntax.
    fn specs(&self, t: &Targets) -> [String; 3] {
        [
            (self.echo, t.echo),
            (self.sink, t.sink),
            (self.source, t.source),
        ]
        .map(|(entry, target)| format!("127.0.0.1:{entry}:127.0.0.1:{target}"))
    }
}

/// A contender carrying six forwards: local (-L, entries on our side) and remote (-R,
/// entries that sshd listens on) to each target.
pub struct Started {
    pub local: Entries,
    pub remote: Entries,
    /// The client→server cipher sshd logged for this connection.
    pub cipher: Option<String>,
    /// Stops the contender on drop.
    proc: Proc,
}

impl Started {
    /// Waits until a byte round-trips through the local and the remote echo forward again,
    /// after a figure failed (the session may have been lost and is being rebuilt).
    ///
    /// # Errors
    /// The program exited, or no echo within [`UP_TIMEOUT`].
    pub async fn recover(&mut self) -> anyhow::Result<()> {
        wait_echo(self.local.echo, &mut self.proc).await?;
        wait_echo(self.remote.echo, &mut self.proc).await
    }

    /// The contender's process and its children.
    pub fn pids(&self) -> BTreeSet<i32> {
        process_trees(&[self.proc.pid()])
    }

    /// Lines of its log that say the SSH session was lost (tunneld's "session lost").
    pub fn sessions_lost(&self) -> Vec<String> {
        let text = std::fs::read_to_string(&self.proc.log).unwrap_or_default();
        text.lines()
            .filter(|l| l.contains("session lost"))
            .map(str::to_owned)
            .collect()
    }
}

/// Starts `c` with forwards to `targets` and returns once a byte round-trips through its
/// local and its remote echo forward. Its output goes to `DIR/KEY-TAG.log`.
///
/// # Errors
/// The program cannot start, exits, or does not carry traffic within [`UP_TIMEOUT`]; the
/// error ends with its log.
pub async fn start(
    c: Contender,
    env: &Env<'_>,
    targets: &Targets,
    tag: &str,
) -> anyhow::Result<Started> {
    let (local, remote) = (Entries::fresh(), Entries::fresh());
    let log_mark = env.sshd.log().len();
    let log = env.dir.join(format!("{}-{tag}.log", c.key()));
    let mut proc = match c {
        Contender::Tunneld => {
            let quote = |specs: [String; 3]| specs.map(|s| format!("\"{s}\"")).join(", ");
            let forwards = format!(
                "local = [{}]\nremote = [{}]\n",
                quote(local.specs(targets)),
                quote(remote.specs(targets))
            );
            let config = write_tunneld_config(env, "bench", &[forwards])?;
            let mut proc = Proc::spawn("tunneld", tunneld_run(env, &config), &log)?;
            wait_tunnels_up(env, &config, 1, UP_TIMEOUT, &mut proc).await?;
            proc
        }
        Contender::Ssh | Contender::SshAesGcm => {
            let mut extra = vec!["-N", "-o", "ExitOnForwardFailure=yes"];
            if c == Contender::SshAesGcm {
                extra.extend(["-c", AES_GCM]);
            }
            let mut forwards = Vec::new();
            for (flag, entries) in [("-L", &local), ("-R", &remote)] {
                for spec in entries.specs(targets) {
                    forwards.extend([flag.to_owned(), spec]);
                }
            }
            let mut cmd = Command::new("ssh");
            cmd.args(ssh_args(env.sshd, &extra, &forwards));
            Proc::spawn(c.key(), cmd, &log)?
        }
    };
    for (side, port) in [("local", local.echo), ("remote", remote.echo)] {
        wait_echo(port, &mut proc)
            .await
            .with_context(|| format!("{} {side} forward", c.key()))?;
    }
    let cipher = env.sshd.log().get(log_mark..).and_then(negotiated_cipher);
    Ok(Started {
        local,
        remote,
        cipher,
        proc,
    })
}

/// The cipher of the first `kex: client->server cipher: NAME` line in an sshd log.
fn negotiated_cipher(log: &str) -> Option<String> {
    let rest = log.split("kex: client->server cipher: ").nth(1)?;
    rest.split_whitespace().next().map(str::to_owned)
}

/// Polls a 1-byte echo through `port` until it works, failing early if `proc` exits.
async fn wait_echo(port: u16, proc: &mut Proc) -> anyhow::Result<()> {
    let deadline = Instant::now() + UP_TIMEOUT;
    loop {
        proc.check_alive()?;
        let probe = async {
            let s = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).await?;
            echo_roundtrip(s, b"?").await
        };
        let last = match timeout(Duration::from_secs(2), probe).await {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(e)) => format!("{e:#}"),
            Err(_) => "echo timed out".to_owned(),
        };
        if Instant::now() >= deadline {
            bail!(
                "no echo through 127.0.0.1:{port} within {UP_TIMEOUT:?} ({last}); {} log:\n{}",
                proc.name,
                proc.log_tail()
            );
        }
        sleep(POLL_INTERVAL).await;
    }
}

/// The kit's `ssh` options (its key and known_hosts, BatchMode, no user config), then
/// `extra` and `forwards`, then `user@127.0.0.1`.
fn ssh_args(sshd: &Sshd, extra: &[&str], forwards: &[String]) -> Vec<String> {
    let mut args = sshd.ssh_args();
    let destination = args.pop().expect("ssh_args ends with user@host");
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    args.extend(forwards.iter().cloned());
    args.push(destination);
    args
}

/// `tunneld run -c CONFIG`.
fn tunneld_run(env: &Env<'_>, config: &Path) -> Command {
    let mut cmd = Command::new(&env.tunneld);
    cmd.arg("run").arg("-c").arg(config);
    cmd
}

/// Writes `DIR/NAME.toml`: a control socket in the bench's folder, the kit's key, user and
/// known_hosts as defaults, and one tunnel to the sshd per entry of `forwards` (each the
/// forward lines of that tunnel). Returns its path.
fn write_tunneld_config(env: &Env<'_>, name: &str, forwards: &[String]) -> anyhow::Result<PathBuf> {
    let sshd = env.sshd;
    let mut text = format!(
        "[daemon]\nsocket = \"{socket}\"\n\n[defaults]\nport = {port}\nuser = \"{user}\"\n\
         identity_file = \"{key}\"\nknown_hosts = \"{kh}\"\n",
        socket = env.dir.join(format!("{name}.sock")).display(),
        port = sshd.port(),
        user = sshd.user(),
        key = sshd.client_key().display(),
        kh = sshd.known_hosts().display(),
    );
    for (i, lines) in forwards.iter().enumerate() {
        text.push_str(&format!(
            "\n[tunnels.t{i:04}]\nhost = \"127.0.0.1\"\n{lines}"
        ));
    }
    let path = env.dir.join(format!("{name}.toml"));
    std::fs::write(&path, text).with_context(|| format!("write {}", path.display()))?;
    Ok(path)
}

/// Polls `tunneld status --json` until `expected` tunnels are `up`, failing early if `proc`
/// (that tunneld) exits.
async fn wait_tunnels_up(
    env: &Env<'_>,
    config: &Path,
    expected: usize,
    bound: Duration,
    proc: &mut Proc,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + bound;
    let mut up = 0;
    while Instant::now() < deadline {
        proc.check_alive()?;
        // Before the control socket listens, status fails: that is "not up yet".
        if let Ok(n) = tunnels_up(env, config).await {
            up = n;
            if up >= expected {
                return Ok(());
            }
        }
        sleep(POLL_INTERVAL).await;
    }
    bail!(
        "only {up} of {expected} tunnels up after {bound:?}; tunneld log:\n{}",
        proc.log_tail()
    )
}

/// How many tunnels `tunneld status --json` reports `up`.
async fn tunnels_up(env: &Env<'_>, config: &Path) -> anyhow::Result<usize> {
    let out = timeout(
        STATUS_TIMEOUT,
        tokio::process::Command::new(&env.tunneld)
            .args(["status", "--json", "-c"])
            .arg(config)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .context("tunneld status timed out")?
    .context("run tunneld status")?;
    if !out.status.success() {
        bail!("tunneld status: {}", String::from_utf8_lossy(&out.stderr));
    }
    let doc: serde_json::Value =
        serde_json::from_slice(&out.stdout).context("parse tunneld status --json")?;
    let tunnels = doc["tunnels"].as_array().context("no tunnels array")?;
    Ok(tunnels.iter().filter(|t| t["state"] == "up").count())
}

/// N tunnels, each its own SSH connection holding one dynamic forward, all up.
pub struct Fleet {
    /// From the first spawn until every tunnel was up.
    pub up_after: Duration,
    procs: Vec<Proc>,
}

impl Fleet {
    /// The top processes (one tunneld, or one autossh per tunnel); their children count too.
    pub fn roots(&self) -> Vec<i32> {
        self.procs.iter().map(Proc::pid).collect()
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        // Signal them all first, so their exits overlap; each `Proc` drop then waits.
        for p in &self.procs {
            p.signal(libc::SIGTERM);
        }
    }
}

/// One `tunneld run` with `n` tunnels, each `dynamic = ["127.0.0.1:0"]`; returns once
/// `tunneld status --json` shows all `up`.
///
/// # Errors
/// tunneld exits, or not all are up within the fleet bound.
pub async fn tunneld_fleet(env: &Env<'_>, n: usize) -> anyhow::Result<Fleet> {
    let forwards = vec!["dynamic = [\"127.0.0.1:0\"]\n".to_owned(); n];
    let name = format!("fleet-{n}");
    let config = write_tunneld_config(env, &name, &forwards)?;
    let start = Instant::now();
    let log = env.dir.join(format!("{name}.log"));
    let mut proc = Proc::spawn("tunneld", tunneld_run(env, &config), &log)?;
    wait_tunnels_up(env, &config, n, fleet_bound(n), &mut proc).await?;
    Ok(Fleet {
        up_after: start.elapsed(),
        procs: vec![proc],
    })
}

/// `n` × `autossh -M 0 -N -o ServerAliveInterval=10 ... -D 127.0.0.1:PORT`; returns once
/// every SOCKS port accepts (ssh listens only after authentication).
///
/// # Errors
/// An autossh exits, or not all listen within the fleet bound.
pub async fn autossh_fleet(env: &Env<'_>, n: usize) -> anyhow::Result<Fleet> {
    let start = Instant::now();
    let mut procs = Vec::with_capacity(n);
    let mut pending = Vec::with_capacity(n);
    for i in 0..n {
        let port = free_port(Ipv4Addr::LOCALHOST.into());
        let mut cmd = Command::new("autossh");
        cmd.args(["-M", "0"]);
        cmd.args(ssh_args(
            env.sshd,
            &["-N", "-o", "ServerAliveInterval=10"],
            &["-D".to_owned(), format!("127.0.0.1:{port}")],
        ));
        let log = env.dir.join(format!("autossh-{n}-{i}.log"));
        procs.push(Proc::spawn("autossh", cmd, &log)?);
        pending.push(port);
    }
    let bound = fleet_bound(n);
    let deadline = start + bound;
    while !pending.is_empty() {
        for p in &mut procs {
            p.check_alive()?;
        }
        let mut still = Vec::new();
        for port in pending {
            let probe = timeout(
                Duration::from_millis(500),
                TcpStream::connect((Ipv4Addr::LOCALHOST, port)),
            );
            if !matches!(probe.await, Ok(Ok(_))) {
                still.push(port);
            }
        }
        pending = still;
        if !pending.is_empty() {
            if Instant::now() >= deadline {
                bail!(
                    "{} of {n} autossh SOCKS ports not listening after {bound:?}; first log:\n{}",
                    pending.len(),
                    procs[0].log_tail()
                );
            }
            sleep(POLL_INTERVAL).await;
        }
    }
    Ok(Fleet {
        up_after: start.elapsed(),
        procs,
    })
}

fn fleet_bound(n: usize) -> Duration {
    FLEET_UP_TIMEOUT_BASE + FLEET_UP_TIMEOUT_PER_TUNNEL * n as u32
}

/// A child process with its output in a file; SIGTERM, then SIGKILL for its tree, on drop.
pub struct Proc {
    name: String,
    child: Child,
    log: PathBuf,
}

impl Proc {
    /// Spawns `cmd` with stdin from /dev/null and stdout and stderr into `log`, tied to the
    /// bench: the kernel SIGKILLs it if the bench's main thread dies.
    pub(crate) fn spawn(name: &str, mut cmd: Command, log: &Path) -> anyhow::Result<Proc> {
        let out = File::create(log).with_context(|| format!("create {}", log.display()))?;
        cmd.stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out);
        tunneld_tests::die_with_this_process(&mut cmd);
        let child = cmd
            .spawn()
            .with_context(|| format!("start {name} ({:?})", cmd.get_program()))?;
        Ok(Proc {
            name: name.to_owned(),
            child,
            log: log.to_path_buf(),
        })
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// # Errors
    /// The process has exited; the error carries its status and log.
    fn check_alive(&mut self) -> anyhow::Result<()> {
        if let Ok(Some(status)) = self.child.try_wait() {
            bail!("{} exited ({status}); log:\n{}", self.name, self.log_tail());
        }
        Ok(())
    }

    fn signal(&self, sig: libc::c_int) {
        // SAFETY: kill(2) on our own child, which we have not reaped yet.
        unsafe {
            libc::kill(self.pid(), sig);
        }
    }

    /// The last [`LOG_TAIL_LINES`] lines of its output.
    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let pid = self.pid();
        // Drop cannot await, so this blocks; the bench does nothing else while a
        // contender stops.
        let exited = sigterm_then_sigkill(&mut self.child, SIGTERM_GRACE, AfterGrace::KillTree);
        if exited.is_none() {
            eprintln!(
                "{} (pid {pid}) ignored SIGTERM for {SIGTERM_GRACE:?}: killing its tree",
                self.name
            );
        }
    }
}

/// Whether `autossh` can run; as root, installs it with apt-get when missing. `Err` says
/// why the autossh rows are skipped.
pub async fn ensure_autossh() -> Result<(), String> {
    if have("autossh").await {
        return Ok(());
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err("autossh is not installed and the bench is not root: \
                    `sudo apt-get install autossh` to get these rows"
            .to_owned());
    }
    eprintln!("autossh missing: apt-get install -y autossh");
    for attempt in [
        &["install", "-y", "-q", "autossh"][..],
        &["update", "-q"],
        &["install", "-y", "-q", "autossh"],
    ] {
        if attempt[0] == "install" && have("autossh").await {
            break;
        }
        let run = tokio::process::Command::new("apt-get")
            .args(attempt)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .status();
        let _ = timeout(APT_TIMEOUT, run).await;
    }
    if have("autossh").await {
        Ok(())
    } else {
        Err("autossh is not installed and `apt-get install -y autossh` failed".to_owned())
    }
}

/// Whether `program -V` runs (autossh and ssh both answer it).
async fn have(program: &str) -> bool {
    let run = tokio::process::Command::new(program)
        .arg("-V")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .status();
    matches!(timeout(Duration::from_secs(10), run).await, Ok(Ok(_)))
}
