//! A private OpenSSH `sshd` for tests: its own tempdir, generated ed25519 host and client
//! keys, an ephemeral loopback port, its log in memory, and fault injection.
//!
//! Runs as the current user (as root too). Never touches `/etc/ssh` or port 22.

use std::fmt::Write as _;
use std::io::{self, BufRead, BufReader, Read};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock, mpsc};
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::time::{Instant, sleep, timeout};

use crate::keys;
use crate::net::{POLL_INTERVAL, free_port, wait_port_closed};
use crate::procs;

/// The sshd binary; an absolute path, which sshd needs to re-exec itself per connection.
pub const SSHD_PATH: &str = "/usr/sbin/sshd";
/// sshd's privilege-separation directory, which must exist when it runs as root.
const PRIVSEP_DIR: &str = "/run/sshd";
/// How long [`Sshd::start_with`] and [`Sshd::restart`] wait for sshd to accept SSH.
pub const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long [`Sshd::stop`] waits for the port to refuse connections.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// Fresh ports tried when another process takes the port between probing and sshd's bind.
const MAX_BIND_ATTEMPTS: usize = 5;
/// Budget of one connect-and-read-banner probe.
const BANNER_PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a killed sshd may take to be reaped before `Drop` gives up on it.
const REAP_TIMEOUT: Duration = Duration::from_secs(5);
/// The line sshd logs once it has bound its listening socket.
const LISTENING_LINE: &str = "Server listening on ";
/// The line sshd logs when it could bind nothing (port taken).
const BIND_FAILED_LINE: &str = "Cannot bind any address";

/// How to start an [`Sshd`].
#[derive(Clone, Debug)]
pub struct SshdOptions {
    /// Lines put at the **top** of `sshd_config`; sshd keeps the first value it reads for a
    /// keyword, so these override the kit's defaults (e.g. `"ClientAliveInterval 2"`,
    /// `"AllowTcpForwarding local"`, `"GatewayPorts no"`).
    pub extra_config: Vec<String>,
    /// Address sshd listens on (loopback only). Default `127.0.0.1`.
    pub listen: IpAddr,
}

impl Default for SshdOptions {
    fn default() -> Self {
        Self {
            extra_config: Vec::new(),
            listen: IpAddr::V4(Ipv4Addr::LOCALHOST),
        }
    }
}

/// A running `sshd -D -e` with everything it needs in its own tempdir.
///
/// `Drop` SIGKILLs the listener and every session process under it, and reaps the listener;
/// it never waits more than a few seconds.
pub struct Sshd {
    opts: SshdOptions,
    port: u16,
    user: String,
    config: PathBuf,
    client_key: PathBuf,
    authorized_keys: PathBuf,
    known_hosts: PathBuf,
    host_key_pub: String,
    /// Everything sshd wrote to stderr, across restarts. A std `Mutex`: it is only held to
    /// append or copy, never across an await, and the reader threads are not async.
    log: Arc<Mutex<String>>,
    /// The listener; `None` between [`Sshd::stop`] and [`Sshd::restart`].
    child: Option<Child>,
    // Last, so the files outlive the processes in drop order.
    dir: tempfile::TempDir,
}

impl Sshd {
    /// Starts an sshd with [`SshdOptions::default`].
    ///
    /// # Errors
    /// As [`Sshd::start_with`].
    pub async fn start() -> anyhow::Result<Sshd> {
        Self::start_with(SshdOptions::default()).await
    }

    /// Generates keys and a config in a new tempdir, validates the config with `sshd -t`, and
    /// starts sshd on a free port of `opts.listen`; returns once it answers with an OpenSSH
    /// banner.
    ///
    /// # Errors
    /// Key generation or `sshd -t` failing (its output is in the error), sshd exiting, or no
    /// banner within [`READY_TIMEOUT`] (sshd's log is in the error).
    pub async fn start_with(opts: SshdOptions) -> anyhow::Result<Sshd> {
        if !opts.listen.is_loopback() {
            bail!(
                "sshd for tests listens on loopback only, not {}",
                opts.listen
            );
        }
        let dir = tempfile::Builder::new()
            .prefix("tunneld-sshd-")
            .tempdir()
            .context("create sshd tempdir")?;
        let host_key = keys::generate(&dir.path().join("ssh_host_ed25519_key"), "ed25519", "host")?;
        let client_key = keys::generate(&dir.path().join("client_ed25519"), "ed25519", "client")?;
        let authorized_keys = dir.path().join("authorized_keys");
        std::fs::write(
            &authorized_keys,
            format!("{}\n", keys::public_key_line(&client_key)?),
        )
        .context("write authorized_keys")?;
        ensure_privsep_dir()?;
        let mut sshd = Sshd {
            port: 0,
            user: current_user(),
            config: dir.path().join("sshd_config"),
            known_hosts: dir.path().join("known_hosts"),
            host_key_pub: keys::public_key_line(&host_key)?,
            client_key,
            authorized_keys,
            log: Arc::new(Mutex::new(String::new())),
            child: None,
            dir,
            opts,
        };
        let mut last_err = None;
        for attempt in 0..MAX_BIND_ATTEMPTS {
            sshd.port = free_port(sshd.opts.listen);
            sshd.write_config(&host_key)?;
            if attempt == 0 {
                sshd.check_config()?;
            }
            match sshd.spawn_and_wait().await? {
                Ready::Yes => return Ok(sshd),
                Ready::PortTaken => last_err = Some(sshd.port),
            }
        }
        bail!(
            "sshd could not bind a free port in {MAX_BIND_ATTEMPTS} tries (last {:?}); log:\n{}",
            last_err,
            sshd.log()
        )
    }

    /// The port sshd listens on (the same across [`Sshd::restart`]).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `listen:port`.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::new(self.opts.listen, self.port)
    }

    /// The login user: the current user (sshd run by a normal user accepts only that user).
    pub fn user(&self) -> String {
        self.user.clone()
    }

    /// The tempdir with the config, keys and known_hosts; removed on drop.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The generated ed25519 client private key (mode 0600), authorized for [`Sshd::user`].
    pub fn client_key(&self) -> &Path {
        &self.client_key
    }

    /// The `authorized_keys` file sshd reads (on every login, so appends take effect at once).
    pub fn authorized_keys(&self) -> &Path {
        &self.authorized_keys
    }

    /// A known_hosts file with one line, `[HOST]:PORT ssh-ed25519 AAAA...`, for this server.
    pub fn known_hosts(&self) -> &Path {
        &self.known_hosts
    }

    /// The host public key, `ssh-ed25519 AAAA...` (no comment). It is the only host key.
    pub fn host_key_pub(&self) -> String {
        self.host_key_pub.clone()
    }

    /// Generates `dir/NAME` with `ssh-keygen -t KIND -N ""` (`kind`: "ed25519", "ecdsa" or
    /// "rsa") and, when `authorize`, appends its public key to `authorized_keys`.
    ///
    /// # Errors
    /// `name` is not a plain file name, or `ssh-keygen` or the append fails.
    pub fn generate_client_key(
        &self,
        name: &str,
        kind: &str,
        authorize: bool,
    ) -> anyhow::Result<PathBuf> {
        if name.is_empty() || name.contains('/') || name.starts_with('.') {
            bail!("key name {name:?} must be a plain file name");
        }
        let path = keys::generate(&self.dir.path().join(name), kind, name)?;
        if authorize {
            self.add_authorized_line(&keys::public_key_line(&path)?)?;
        }
        Ok(path)
    }

    /// Appends one line to `authorized_keys`, e.g. with options:
    /// `restrict,port-forwarding,permitlisten="localhost:2222" ssh-ed25519 AAAA...`.
    ///
    /// # Errors
    /// The file cannot be written.
    pub fn add_authorized_line(&self, line: &str) -> anyhow::Result<()> {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&self.authorized_keys)
            .context("open authorized_keys")?;
        writeln!(f, "{}", line.trim_end()).context("append to authorized_keys")
    }

    /// `ssh` arguments for logging in to this server non-interactively with the client key
    /// and the known_hosts file (strict checking, no user config, no agent); the last is
    /// `user@host`, so append a remote command or put options before it.
    pub fn ssh_args(&self) -> Vec<String> {
        let o = |kv: String| ["-o".to_owned(), kv];
        let mut args = vec!["-F".to_owned(), "/dev/null".to_owned()];
        args.extend(["-i".to_owned(), self.client_key.display().to_string()]);
        for kv in [
            format!("UserKnownHostsFile={}", self.known_hosts.display()),
            "GlobalKnownHostsFile=/dev/null".to_owned(),
            "StrictHostKeyChecking=yes".to_owned(),
            "BatchMode=yes".to_owned(),
            "IdentitiesOnly=yes".to_owned(),
            "IdentityAgent=none".to_owned(),
            "ConnectTimeout=10".to_owned(),
        ] {
            args.extend(o(kv));
        }
        args.extend(["-p".to_owned(), self.port.to_string()]);
        args.push(format!("{}@{}", self.user, self.opts.listen));
        args
    }

    /// An `ssh` command with [`Sshd::ssh_args`]; killed when dropped.
    pub fn ssh_command(&self) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new("ssh");
        cmd.args(self.ssh_args())
            .stdin(Stdio::null())
            .kill_on_drop(true);
        cmd
    }

    /// Everything sshd wrote to stderr so far, across restarts (LogLevel DEBUG1: logins as
    /// "Accepted publickey", each `direct-tcpip` open with its target, forwards...).
    pub fn log(&self) -> String {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// How many times `needle` occurs in [`Sshd::log`].
    pub fn count_in_log(&self, needle: &str) -> usize {
        self.log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .matches(needle)
            .count()
    }

    /// Polls the log until it contains `needle`.
    ///
    /// # Errors
    /// Not there within `timeout`; the error ends with the log.
    pub async fn wait_log(&self, needle: &str, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.count_in_log(needle) > 0 {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "sshd log has no {needle:?} after {timeout:?}; log:\n{}",
                    self.log()
                );
            }
            sleep(POLL_INTERVAL).await;
        }
    }

    /// SIGKILLs every per-connection process under the listener (session monitors, their
    /// unprivileged children, shells and commands), like sessions killed by an operator or
    /// the OOM killer. The listener keeps accepting. Returns once they are dead (bounded).
    pub fn kill_sessions(&self) {
        if let Some(child) = &self.child {
            procs::kill_tree(child.id() as i32, false);
        }
    }

    /// Pids of the per-connection processes under the listener right now.
    pub fn session_pids(&self) -> Vec<i32> {
        self.child.as_ref().map_or_else(Vec::new, |c| {
            procs::descendants(c.id() as i32).into_iter().collect()
        })
    }

    /// Whether the listener is running (false after [`Sshd::stop`] or if sshd died).
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Crashes the server: SIGKILLs the listener and all sessions, then waits until the port
    /// refuses connections. Does nothing more if already stopped.
    ///
    /// # Panics
    /// The port still accepts connections after 10 s (something else took it).
    pub async fn stop(&mut self) {
        if let Some(child) = self.child.take() {
            kill_and_reap(child).await;
        }
        if let Err(e) = wait_port_closed(self.addr(), STOP_TIMEOUT).await {
            panic!("sshd stopped but {e}");
        }
    }

    /// Starts sshd again on the same port with the same keys and config (stopping it first if
    /// it runs); returns once it answers with an OpenSSH banner. The log is kept and grows.
    ///
    /// # Errors
    /// The port stays taken by another process for [`READY_TIMEOUT`], sshd exits, or no
    /// banner within [`READY_TIMEOUT`].
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        if self.child.is_some() {
            self.stop().await;
        }
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            match self.spawn_and_wait().await? {
                Ready::Yes => return Ok(()),
                // Someone (often another test probing for a free port) holds it for a moment.
                Ready::PortTaken if Instant::now() < deadline => sleep(POLL_INTERVAL).await,
                Ready::PortTaken => bail!(
                    "sshd could not bind its port {} again within {READY_TIMEOUT:?}; log:\n{}",
                    self.port,
                    self.log()
                ),
            }
        }
    }

    fn write_config(&self, host_key: &Path) -> anyhow::Result<()> {
        let mut c = String::new();
        for line in &self.opts.extra_config {
            let _ = writeln!(c, "{line}");
        }
        let _ = write!(
            c,
            "Port {port}
ListenAddress {listen}
HostKey {host_key}
AuthorizedKeysFile {authorized_keys}
PidFile none
StrictModes no
UsePAM no
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
AllowTcpForwarding yes
AllowStreamLocalForwarding yes
GatewayPorts clientspecified
PermitRootLogin prohibit-password
LogLevel DEBUG1
UseDNS no
PrintMotd no
",
            port = self.port,
            listen = self.opts.listen,
            host_key = host_key.display(),
            authorized_keys = self.authorized_keys.display(),
        );
        std::fs::write(&self.config, c).context("write sshd_config")?;
        // `[host]:port`, the form ssh uses for a non-22 port (IPv6 without extra brackets).
        std::fs::write(
            &self.known_hosts,
            format!(
                "[{}]:{} {}\n",
                self.opts.listen, self.port, self.host_key_pub
            ),
        )
        .context("write known_hosts")
    }

    /// `sshd -t`: catches bad `extra_config` lines with sshd's own message.
    fn check_config(&self) -> anyhow::Result<()> {
        let out = Command::new(SSHD_PATH)
            .arg("-t")
            .arg("-f")
            .arg(&self.config)
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("run {SSHD_PATH} -t (is openssh-server installed?)"))?;
        if !out.status.success() {
            bail!(
                "sshd rejects its test config {} ({}):\n{}{}",
                self.config.display(),
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }

    /// Starts sshd and waits until it logged that it listens and answers with a banner.
    async fn spawn_and_wait(&mut self) -> anyhow::Result<Ready> {
        let log_start = self.log.lock().unwrap_or_else(|e| e.into_inner()).len();
        let mut cmd = Command::new(SSHD_PATH);
        cmd.arg("-D").arg("-e").arg("-f").arg(&self.config);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = spawn_tied_to_process(cmd).with_context(|| format!("start {SSHD_PATH}"))?;
        let stderr = child.stderr.take().expect("stderr is piped");
        spawn_log_reader(stderr, self.log.clone());
        self.child = Some(child);

        let deadline = Instant::now() + READY_TIMEOUT;
        let since_spawn = |log: &Arc<Mutex<String>>, needle: &str| {
            let log = log.lock().unwrap_or_else(|e| e.into_inner());
            log.get(log_start..).is_some_and(|l| l.contains(needle))
        };
        loop {
            let exited = match self.child.as_mut().map(Child::try_wait) {
                Some(Ok(Some(status))) => Some(status),
                _ => None,
            };
            if let Some(status) = exited {
                self.child = None;
                // Give the reader thread a moment to collect the last words (bounded).
                let _ =
                    crate::net::wait_until(Duration::from_secs(1), "sshd's last log line", || {
                        since_spawn(&self.log, BIND_FAILED_LINE)
                    })
                    .await;
                if since_spawn(&self.log, BIND_FAILED_LINE) {
                    return Ok(Ready::PortTaken);
                }
                bail!(
                    "sshd exited ({status}) before accepting connections; log:\n{}",
                    self.log()
                );
            }
            // Only our own sshd logs this line: a banner on the port before it could come
            // from whoever else holds the port.
            if since_spawn(&self.log, LISTENING_LINE) && probe_banner(self.addr()).await {
                return Ok(Ready::Yes);
            }
            if Instant::now() >= deadline {
                if let Some(child) = self.child.take() {
                    kill_and_reap(child).await;
                }
                bail!(
                    "sshd gave no OpenSSH banner on {} within {READY_TIMEOUT:?}; log:\n{}",
                    self.addr(),
                    self.log()
                );
            }
            sleep(POLL_INTERVAL).await;
        }
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            procs::kill_tree(child.id() as i32, true);
            let deadline = std::time::Instant::now() + REAP_TIMEOUT;
            while matches!(child.try_wait(), Ok(None)) && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }
}

enum Ready {
    Yes,
    PortTaken,
}

/// Connects and reads the first bytes: true when they are an OpenSSH banner.
async fn probe_banner(addr: SocketAddr) -> bool {
    let probe = async {
        let mut s = TcpStream::connect(addr).await.ok()?;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 256];
        while !buf.contains(&b'\n') && buf.len() < 1024 {
            let n = s.read(&mut chunk).await.ok()?;
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        Some(buf.starts_with(b"SSH-2.0-OpenSSH"))
    };
    matches!(timeout(BANNER_PROBE_TIMEOUT, probe).await, Ok(Some(true)))
}

/// SIGKILLs `child` and its whole tree, then reaps it (bounded, without blocking the runtime).
async fn kill_and_reap(mut child: Child) {
    // Blocks for the few milliseconds the kills take (bounded inside).
    procs::kill_tree(child.id() as i32, true);
    let deadline = Instant::now() + REAP_TIMEOUT;
    while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
        sleep(Duration::from_millis(2)).await;
    }
}

/// Copies sshd's stderr into `log` on a std thread; it ends when every writer has closed
/// the pipe (the listener and its session processes).
fn spawn_log_reader(stderr: impl Read + Send + 'static, log: Arc<Mutex<String>>) {
    let spawned = std::thread::Builder::new()
        .name("sshd-log".into())
        .spawn(move || {
            let mut reader = BufReader::new(stderr);
            let mut line = Vec::new();
            while matches!(reader.read_until(b'\n', &mut line), Ok(n) if n > 0) {
                log.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push_str(&String::from_utf8_lossy(&line));
                line.clear();
            }
        });
    if let Err(e) = spawned {
        eprintln!("tunneld-tests: cannot start the sshd log reader: {e}");
    }
}

/// As root, sshd refuses to start without its privilege-separation directory.
fn ensure_privsep_dir() -> anyhow::Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 || Path::new(PRIVSEP_DIR).is_dir() {
        return Ok(());
    }
    use std::os::unix::fs::DirBuilderExt;
    match std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(PRIVSEP_DIR)
    {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e).with_context(|| format!("create {PRIVSEP_DIR}")),
    }
}

/// The effective user's login name (from the passwd database, else `$USER`).
fn current_user() -> String {
    // SAFETY: getpwuid_r writes into our buffers only; `result` is null or points into `pwd`.
    unsafe {
        let uid = libc::geteuid();
        let mut pwd: libc::passwd = std::mem::zeroed();
        let mut buf = vec![0 as libc::c_char; 16 * 1024];
        let mut result = std::ptr::null_mut();
        if libc::getpwuid_r(uid, &mut pwd, buf.as_mut_ptr(), buf.len(), &mut result) == 0
            && !result.is_null()
        {
            return std::ffi::CStr::from_ptr(pwd.pw_name)
                .to_string_lossy()
                .into_owned();
        }
    }
    std::env::var("USER").unwrap_or_else(|_| "root".to_owned())
}

type SpawnRequest = (Command, mpsc::SyncSender<io::Result<Child>>);

/// Spawns `cmd` so that it gets SIGKILL when this test process dies, even by SIGKILL or a
/// panic=abort (no orphan sshd left holding ports), as a child subreaper.
///
/// `PR_SET_PDEATHSIG` fires when the *thread* that forked exits, and test threads come and
/// go (an `Sshd` may be shared by tests through a static): so every fork happens on one
/// thread that lives as long as the process.
fn spawn_tied_to_process(mut cmd: Command) -> io::Result<Child> {
    static SPAWNER: OnceLock<mpsc::Sender<SpawnRequest>> = OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnRequest>();
        std::thread::Builder::new()
            .name("sshd-spawner".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    let _ = reply.send(cmd.spawn());
                }
            })
            .expect("start the sshd spawner thread");
        tx
    });
    crate::procs::die_with_this_process(&mut cmd);
    // SAFETY: the closure runs between fork and exec and only calls prctl.
    unsafe {
        cmd.pre_exec(|| {
            // Kept across exec: processes orphaned when we kill a session's monitor are
            // re-parented to the listener, whose SIGCHLD loop reaps them, instead of
            // becoming zombies under a container init that never reaps.
            if libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let (tx, rx) = mpsc::sync_channel(1);
    spawner
        .send((cmd, tx))
        .map_err(|_| io::Error::other("sshd spawner thread is gone"))?;
    rx.recv()
        .map_err(|_| io::Error::other("sshd spawner thread is gone"))?
}

#[cfg(test)]
#[path = "sshd_tests.rs"]
mod tests;
