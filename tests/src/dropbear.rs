//! A private Dropbear server for interop tests: a second, independent SSH implementation
//! (Debian's `dropbear-bin`, 2022.83), run like [`crate::Sshd`]: its own tempdir, a host key
//! of the chosen type made with `dropbearkey`, an ephemeral loopback port, its log in memory,
//! and `Drop` killing it with its session processes.
//!
//! Dropbear has no option for the authorized_keys file: it reads `~/.ssh/authorized_keys` of
//! the login user from the passwd entry's home (not `$HOME`). So that the test key never goes
//! into the machine's real home, the server runs in a private mount namespace in which a
//! directory of the tempdir is bind-mounted over the user's home; the real home is never
//! written, and the mount vanishes with the server's processes. This needs root (as the
//! tests run here and in CI); a throwaway user would change `/etc/passwd` instead.

use std::ffi::CString;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::time::{Instant, sleep};

use crate::keys;
use crate::net::{POLL_INTERVAL, free_port};
use crate::procs;
use crate::sshd::{
    HostKeyType, banner_software, current_user, kill_and_reap, probe_banner, spawn_log_reader,
    spawn_tied_to_process, ssh_client_args,
};

/// The Dropbear server binary.
pub const DROPBEAR_PATH: &str = "/usr/sbin/dropbear";
/// How long [`Dropbear::start_with`] waits for the server to answer with its banner.
pub const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// Fresh ports tried when another process takes the port between probing and the bind.
const MAX_BIND_ATTEMPTS: usize = 5;
/// How long a killed server may take to be reaped before `Drop` gives up on it.
const REAP_TIMEOUT: Duration = Duration::from_secs(5);
/// What Dropbear's identification line starts with.
const DROPBEAR_BANNER_PREFIX: &str = "SSH-2.0-dropbear";
/// The line Dropbear logs (with `-F`) once its listening sockets are bound.
const LISTENING_LINE: &str = "Not backgrounding";
/// The line Dropbear logs when it could bind nothing (port taken).
const BIND_FAILED_LINE: &str = "No listening ports available";

/// How to start a [`Dropbear`].
#[derive(Clone, Debug)]
pub struct DropbearOptions {
    /// IPv4 loopback address to listen on. Default `127.0.0.1`.
    pub listen: Ipv4Addr,
    /// The type of the one host key. Default ed25519.
    pub host_key_type: HostKeyType,
    /// More command-line options, after the kit's (e.g. `["-K", "2"]` for keepalives every
    /// 2 s, `["-j"]` to refuse local forwarding, `["-a"]` for remote forwards on any address).
    pub extra_args: Vec<String>,
}

impl Default for DropbearOptions {
    fn default() -> Self {
        Self {
            listen: Ipv4Addr::LOCALHOST,
            host_key_type: HostKeyType::Ed25519,
            extra_args: Vec::new(),
        }
    }
}

/// A running `dropbear -F -E` with everything it needs in its own tempdir.
///
/// Password logins are off (`-s`); public-key logins and local and remote port forwarding
/// are on (Dropbear's defaults). `Drop` SIGKILLs the listener and every session process.
pub struct Dropbear {
    opts: DropbearOptions,
    port: u16,
    user: String,
    host_key_pub: String,
    client_key: PathBuf,
    client_key_dropbear: PathBuf,
    authorized_keys: PathBuf,
    known_hosts: PathBuf,
    dbclient_home: PathBuf,
    banner: String,
    /// Everything Dropbear wrote to stderr (std `Mutex`: held only to append or copy).
    log: Arc<Mutex<String>>,
    child: Option<Child>,
    // Last, so the files outlive the processes in drop order.
    dir: tempfile::TempDir,
}

impl Dropbear {
    /// Starts a Dropbear with [`DropbearOptions::default`].
    ///
    /// # Errors
    /// As [`Dropbear::start_with`].
    pub async fn start() -> anyhow::Result<Dropbear> {
        Self::start_with(DropbearOptions::default()).await
    }

    /// Generates keys in a new tempdir and starts Dropbear on a free port of `opts.listen`;
    /// returns once it answers with a Dropbear banner.
    ///
    /// # Errors
    /// Not root (the private mount namespace needs it), `dropbearkey`, `ssh-keygen` or
    /// `dropbearconvert` failing, Dropbear exiting, or no banner within [`READY_TIMEOUT`]
    /// (its log is in the error).
    pub async fn start_with(opts: DropbearOptions) -> anyhow::Result<Dropbear> {
        if !opts.listen.is_loopback() {
            bail!(
                "dropbear for tests listens on loopback only, not {}",
                opts.listen
            );
        }
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            bail!("the kit's dropbear needs root: it mounts a private home for authorized_keys");
        }
        let dir = tempfile::Builder::new()
            .prefix("tunneld-dropbear-")
            .tempdir()
            .context("create dropbear tempdir")?;
        let host_key = dir.path().join(format!(
            "dropbear_{}_host_key",
            opts.host_key_type.short_name()
        ));
        let host_key_pub = dropbear_key(&host_key, opts.host_key_type)?;

        // The home the server sees: only `.ssh/authorized_keys`.
        let home = dir.path().join("home");
        let ssh_dir = home.join(".ssh");
        std::fs::create_dir_all(&ssh_dir).context("create dropbear home")?;
        let authorized_keys = ssh_dir.join("authorized_keys");
        let client_key = keys::generate(&dir.path().join("client_ed25519"), "ed25519", "client")?;
        std::fs::write(
            &authorized_keys,
            format!("{}\n", keys::public_key_line(&client_key)?),
        )
        .context("write authorized_keys")?;
        let client_key_dropbear = dir.path().join("client_ed25519.dropbear");
        convert_to_dropbear(&client_key, &client_key_dropbear)?;
        let dbclient_home = dir.path().join("dbclient-home");
        std::fs::create_dir_all(dbclient_home.join(".ssh")).context("create dbclient home")?;

        let mut server = Dropbear {
            port: 0,
            user: current_user(),
            host_key_pub,
            client_key,
            client_key_dropbear,
            authorized_keys,
            known_hosts: dir.path().join("known_hosts"),
            dbclient_home,
            banner: String::new(),
            log: Arc::new(Mutex::new(String::new())),
            child: None,
            dir,
            opts,
        };
        let real_home = user_home()?;
        for _ in 0..MAX_BIND_ATTEMPTS {
            server.port = free_port(IpAddr::V4(server.opts.listen));
            server.write_known_hosts()?;
            if server.spawn_and_wait(&host_key, &home, &real_home).await? {
                return Ok(server);
            }
        }
        bail!(
            "dropbear could not bind a free port in {MAX_BIND_ATTEMPTS} tries (last {}); log:\n{}",
            server.port,
            server.log()
        )
    }

    /// The port Dropbear listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `listen:port`.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(self.opts.listen), self.port)
    }

    /// The login user: the current user (root).
    pub fn user(&self) -> String {
        self.user.clone()
    }

    /// The tempdir with the keys, the server's home and the known_hosts files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The ed25519 client private key in OpenSSH format (mode 0600), authorized for the user.
    pub fn client_key(&self) -> &Path {
        &self.client_key
    }

    /// The same client key in Dropbear's format, for `dbclient -i`.
    pub fn client_key_dropbear(&self) -> &Path {
        &self.client_key_dropbear
    }

    /// The `authorized_keys` file Dropbear reads (at each login, so appends take effect).
    pub fn authorized_keys(&self) -> &Path {
        &self.authorized_keys
    }

    /// A known_hosts file (OpenSSH form) with one line, `[HOST]:PORT TYPE AAAA...`.
    pub fn known_hosts(&self) -> &Path {
        &self.known_hosts
    }

    /// The host public key, `ssh-ed25519 AAAA...` (no comment). It is the only host key.
    pub fn host_key_pub(&self) -> String {
        self.host_key_pub.clone()
    }

    /// The host key's type ([`DropbearOptions::host_key_type`]).
    pub fn host_key_type(&self) -> HostKeyType {
        self.opts.host_key_type
    }

    /// The identification line the server sent, without CR LF: `SSH-2.0-dropbear_2022.83`.
    pub fn banner(&self) -> &str {
        &self.banner
    }

    /// The software version from [`Dropbear::banner`]: `dropbear_2022.83`.
    pub fn version(&self) -> &str {
        banner_software(&self.banner)
    }

    /// Generates `dir/NAME` (OpenSSH format) of type `kind` and, when `authorize`, appends
    /// its public key to `authorized_keys`.
    ///
    /// # Errors
    /// `name` is not a plain file name, or `ssh-keygen` or the append fails.
    pub fn generate_client_key(
        &self,
        name: &str,
        kind: HostKeyType,
        authorize: bool,
    ) -> anyhow::Result<PathBuf> {
        crate::sshd::check_file_name(name)?;
        let path = crate::sshd::generate_key(&self.dir.path().join(name), kind, name)?;
        if authorize {
            self.add_authorized_line(&keys::public_key_line(&path)?)?;
        }
        Ok(path)
    }

    /// Appends one line to `authorized_keys` (Dropbear knows `no-port-forwarding`,
    /// `command="..."`, `permitopen="host:port"` and a few more options).
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

    /// OpenSSH `ssh` arguments for a non-interactive login with the client key and
    /// [`Dropbear::known_hosts`]; the last is `user@host`.
    pub fn ssh_args(&self) -> Vec<String> {
        ssh_client_args(&self.client_key, &self.known_hosts, self.addr(), &self.user)
    }

    /// An OpenSSH `ssh` command with [`Dropbear::ssh_args`]; killed when dropped.
    pub fn ssh_command(&self) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new("ssh");
        cmd.args(self.ssh_args())
            .stdin(Stdio::null())
            .kill_on_drop(true);
        cmd
    }

    /// A Dropbear client command, `dbclient -i KEY -p PORT user@host`, with strict host key
    /// checking against this server's key: `HOME` is a folder of the tempdir whose
    /// `.ssh/known_hosts` holds only this server's line (dbclient reads no other file). It
    /// runs in a new session without a terminal, so it fails instead of prompting; killed
    /// when dropped. Append a remote command or put options before the last argument.
    pub fn dbclient_command(&self) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new("dbclient");
        cmd.arg("-i")
            .arg(&self.client_key_dropbear)
            .arg("-p")
            .arg(self.port.to_string())
            .arg(format!("{}@{}", self.user, self.opts.listen))
            .env("HOME", &self.dbclient_home)
            .stdin(Stdio::null())
            .kill_on_drop(true);
        // SAFETY: the closure runs between fork and exec and only calls setsid.
        unsafe {
            cmd.pre_exec(|| {
                if libc::setsid() < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        cmd
    }

    /// Everything Dropbear wrote to stderr so far (connections, "Pubkey auth succeeded for
    /// 'USER' with KEYTYPE key", exits).
    pub fn log(&self) -> String {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// How many times `needle` occurs in [`Dropbear::log`].
    pub fn count_in_log(&self, needle: &str) -> usize {
        self.log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .matches(needle)
            .count()
    }

    /// Pids of the per-connection processes under the listener right now.
    pub fn session_pids(&self) -> Vec<i32> {
        self.child.as_ref().map_or_else(Vec::new, |c| {
            procs::descendants(c.id() as i32).into_iter().collect()
        })
    }

    /// SIGKILLs every per-connection process under the listener; the listener keeps accepting.
    pub fn kill_sessions(&self) {
        if let Some(child) = &self.child {
            procs::kill_tree(child.id() as i32, false);
        }
    }

    /// The known_hosts files for this port: OpenSSH's `[HOST]:PORT KEY` and dbclient's
    /// `HOST KEY` (dbclient 2022.83 matches the host name only, whatever the port).
    fn write_known_hosts(&self) -> anyhow::Result<()> {
        std::fs::write(
            &self.known_hosts,
            format!(
                "[{}]:{} {}\n",
                self.opts.listen, self.port, self.host_key_pub
            ),
        )
        .context("write known_hosts")?;
        std::fs::write(
            self.dbclient_home.join(".ssh/known_hosts"),
            format!("{} {}\n", self.opts.listen, self.host_key_pub),
        )
        .context("write dbclient known_hosts")
    }

    /// Starts Dropbear; true once it listens and answers, false when its port was taken.
    async fn spawn_and_wait(
        &mut self,
        host_key: &Path,
        home: &Path,
        real_home: &Path,
    ) -> anyhow::Result<bool> {
        let log_start = self.log.lock().unwrap_or_else(|e| e.into_inner()).len();
        let mut cmd = Command::new(DROPBEAR_PATH);
        cmd.args(["-F", "-E", "-s", "-P"])
            .arg(self.dir.path().join("dropbear.pid"))
            .arg("-r")
            .arg(host_key)
            .arg("-p")
            .arg(format!("{}:{}", self.opts.listen, self.port))
            .args(&self.opts.extra_args);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        bind_home_in_private_namespace(&mut cmd, home, real_home)?;
        let mut child =
            spawn_tied_to_process(cmd).with_context(|| format!("start {DROPBEAR_PATH}"))?;
        let stderr = child.stderr.take().context("dropbear's stderr is piped")?;
        spawn_log_reader(stderr, self.log.clone());
        self.child = Some(child);

        let since_spawn = |log: &Arc<Mutex<String>>, needle: &str| {
            let log = log.lock().unwrap_or_else(|e| e.into_inner());
            log.get(log_start..).is_some_and(|l| l.contains(needle))
        };
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let exited = match self.child.as_mut().map(Child::try_wait) {
                Some(Ok(Some(status))) => Some(status),
                _ => None,
            };
            if let Some(status) = exited {
                self.child = None;
                let _ = crate::net::wait_until(
                    Duration::from_secs(1),
                    "dropbear's last log line",
                    || since_spawn(&self.log, BIND_FAILED_LINE),
                )
                .await;
                if since_spawn(&self.log, BIND_FAILED_LINE) {
                    return Ok(false);
                }
                bail!(
                    "dropbear exited ({status}) before accepting connections; log:\n{}",
                    self.log()
                );
            }
            if since_spawn(&self.log, LISTENING_LINE)
                && let Some(banner) = probe_banner(self.addr(), DROPBEAR_BANNER_PREFIX).await
            {
                self.banner = banner;
                return Ok(true);
            }
            if Instant::now() >= deadline {
                if let Some(child) = self.child.take() {
                    kill_and_reap(child).await;
                }
                bail!(
                    "dropbear gave no banner on {} within {READY_TIMEOUT:?}; log:\n{}",
                    self.addr(),
                    self.log()
                );
            }
            sleep(POLL_INTERVAL).await;
        }
    }
}

impl Drop for Dropbear {
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

/// Makes `cmd` run in a new mount namespace (private propagation, so nothing leaks to the
/// host's) with `home` bind-mounted over `real_home`.
fn bind_home_in_private_namespace(
    cmd: &mut Command,
    home: &Path,
    real_home: &Path,
) -> anyhow::Result<()> {
    let source = CString::new(home.as_os_str().as_bytes()).context("home path has a NUL")?;
    let target = CString::new(real_home.as_os_str().as_bytes()).context("home path has a NUL")?;
    // SAFETY: the closure runs between fork and exec and only makes system calls with
    // pointers to C strings built before the fork (no allocation in the child).
    unsafe {
        cmd.pre_exec(move || {
            if libc::unshare(libc::CLONE_NEWNS) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            let root = c"/";
            if libc::mount(
                std::ptr::null(),
                root.as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            if libc::mount(
                source.as_ptr(),
                target.as_ptr(),
                std::ptr::null(),
                libc::MS_BIND,
                std::ptr::null(),
            ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    Ok(())
}

/// The current user's home from the passwd database (what Dropbear uses).
fn user_home() -> anyhow::Result<PathBuf> {
    // SAFETY: getpwuid_r writes into our buffers only; `result` is null or points into `pwd`.
    let home = unsafe {
        let mut pwd: libc::passwd = std::mem::zeroed();
        let mut buf = vec![0 as libc::c_char; 16 * 1024];
        let mut result = std::ptr::null_mut();
        if libc::getpwuid_r(
            libc::geteuid(),
            &mut pwd,
            buf.as_mut_ptr(),
            buf.len(),
            &mut result,
        ) != 0
            || result.is_null()
            || pwd.pw_dir.is_null()
        {
            bail!("the current user has no passwd entry");
        }
        PathBuf::from(std::ffi::OsStr::from_bytes(
            std::ffi::CStr::from_ptr(pwd.pw_dir).to_bytes(),
        ))
    };
    // Bind-mounting over `/` would hide the whole system from the server.
    if !home.is_absolute() || home == Path::new("/") || !home.is_dir() {
        bail!(
            "the current user's home {} cannot hold a private authorized_keys",
            home.display()
        );
    }
    Ok(home)
}

/// Generates a Dropbear host key of type `kind` at `path`; returns its public key line.
fn dropbear_key(path: &Path, kind: HostKeyType) -> anyhow::Result<String> {
    let (t, bits) = kind.type_and_bits();
    let mut cmd = Command::new("dropbearkey");
    cmd.args(["-t", t, "-f"]).arg(path);
    if let Some(bits) = bits {
        cmd.arg("-s").arg(bits.to_string());
    }
    run(cmd, "dropbearkey")?;
    let mut cmd = Command::new("dropbearkey");
    cmd.args(["-y", "-f"]).arg(path);
    let out = run(cmd, "dropbearkey -y")?;
    // "Public key portion is:\nTYPE BASE64 COMMENT\nFingerprint: ...".
    let text = String::from_utf8_lossy(&out);
    let prefix = format!("{} ", kind.key_name());
    let line = text
        .lines()
        .find(|l| l.starts_with(&prefix))
        .with_context(|| format!("dropbearkey -y printed no {} key: {text}", kind.key_name()))?;
    let mut fields = line.split_whitespace();
    match (fields.next(), fields.next()) {
        (Some(t), Some(blob)) => Ok(format!("{t} {blob}")),
        _ => bail!("dropbearkey -y printed a bad key line: {line}"),
    }
}

/// Converts an OpenSSH private key to Dropbear's format (dbclient 2022.83 reads only that).
fn convert_to_dropbear(openssh: &Path, out: &Path) -> anyhow::Result<()> {
    let mut cmd = Command::new("dropbearconvert");
    cmd.args(["openssh", "dropbear"]).arg(openssh).arg(out);
    run(cmd, "dropbearconvert").map(|_| ())
}

/// Runs `cmd` to completion; its stdout, or an error with its stderr.
fn run(mut cmd: Command, what: &str) -> anyhow::Result<Vec<u8>> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("run {what} (is dropbear-bin installed?)"))?;
    if !out.status.success() {
        bail!(
            "{what} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(out.stdout)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client_run::{CLIENT_RUN_TIMEOUT, assert_ran, run};
    use crate::net::{echo_roundtrip, free_port, wait_port_open, wait_until};
    use tokio::time::timeout;

    /// The version Debian 12's dropbear-bin reports.
    const DROPBEAR_VERSION: &str = "dropbear_2022.83";

    #[tokio::test]
    async fn every_host_key_type_is_offered_as_known_hosts_says() {
        for kind in HostKeyType::ALL {
            let server = Dropbear::start_with(DropbearOptions {
                host_key_type: kind,
                ..Default::default()
            })
            .await
            .unwrap();
            assert_eq!(server.banner(), format!("SSH-2.0-{DROPBEAR_VERSION}"));
            assert_eq!(server.version(), DROPBEAR_VERSION);
            assert_eq!(server.host_key_type(), kind);
            assert!(
                server
                    .host_key_pub()
                    .starts_with(&format!("{} AAAA", kind.key_name())),
                "{kind:?}: {}",
                server.host_key_pub()
            );
            let mut scan = tokio::process::Command::new("ssh-keyscan");
            scan.args(["-t", kind.key_name(), "-p"])
                .arg(server.port().to_string())
                .arg("127.0.0.1")
                .kill_on_drop(true);
            let out = run(scan, &[]).await;
            assert_ran(&out, "ssh-keyscan", "dropbear", &server.log());
            assert_eq!(
                String::from_utf8_lossy(&out.stdout),
                std::fs::read_to_string(server.known_hosts()).unwrap(),
                "{kind:?}"
            );
            let out = run(server.ssh_command(), &["true"]).await;
            assert_ran(
                &out,
                &format!("ssh login, host key {kind:?}"),
                "dropbear",
                &server.log(),
            );
        }
    }

    #[tokio::test]
    async fn dbclient_logs_in_with_strict_checking_and_the_real_home_is_untouched() {
        let server = Dropbear::start().await.unwrap();
        let out = run(server.dbclient_command(), &["echo", "dbclient-in"]).await;
        assert_ran(&out, "dbclient login", "dropbear", &server.log());
        assert_eq!(String::from_utf8_lossy(&out.stdout), "dbclient-in\n");
        wait_until(Duration::from_secs(5), "the auth line", || {
            server.count_in_log("Pubkey auth succeeded for") == 1
        })
        .await
        .unwrap();

        // Another server's key under this address: dbclient must refuse, not prompt.
        let other = Dropbear::start().await.unwrap();
        std::fs::write(
            server.dbclient_home.join(".ssh/known_hosts"),
            format!("127.0.0.1 {}\n", other.host_key_pub()),
        )
        .unwrap();
        let out = run(server.dbclient_command(), &["true"]).await;
        assert!(!out.status.success(), "dbclient accepted a wrong host key");
        assert_eq!(server.count_in_log("Pubkey auth succeeded for"), 1);

        // The key lives only in the server's private home.
        let key = keys::public_key_line(server.client_key()).unwrap();
        let real = user_home().unwrap().join(".ssh/authorized_keys");
        let real_text = std::fs::read_to_string(&real).unwrap_or_default();
        assert!(
            !real_text.contains(&key),
            "{} has the test key",
            real.display()
        );
        assert!(
            std::fs::read_to_string(server.authorized_keys())
                .unwrap()
                .contains(&key)
        );
    }

    #[tokio::test]
    async fn local_forward_round_trip_and_drop_kills_sessions() {
        let server = Dropbear::start().await.unwrap();
        let echo = crate::EchoServer::start().await.unwrap();
        let local = SocketAddr::from(([127, 0, 0, 1], free_port(IpAddr::V4(Ipv4Addr::LOCALHOST))));
        let mut ssh = server.ssh_command();
        ssh.args(["-N", "-o", "ExitOnForwardFailure=yes", "-L"])
            .arg(format!("{local}:{}", echo.addr()));
        let mut ssh = ssh.spawn().unwrap();
        wait_port_open(local, Duration::from_secs(10))
            .await
            .unwrap();
        let stream = tokio::net::TcpStream::connect(local).await.unwrap();
        echo_roundtrip(stream, b"through dropbear").await.unwrap();
        // wait_port_open's probe went through the forward too.
        assert_eq!(echo.connections(), 2);

        let sessions = server.session_pids();
        assert!(!sessions.is_empty(), "no session process under dropbear");
        drop(server);
        for pid in sessions {
            assert!(
                !Path::new(&format!("/proc/{pid}")).exists()
                    || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                        .is_ok_and(|s| s.contains(") Z ")),
                "session {pid} outlived the server"
            );
        }
        let status = timeout(CLIENT_RUN_TIMEOUT, ssh.wait())
            .await
            .unwrap()
            .unwrap();
        assert!(!status.success(), "ssh -N ended well after the server died");
    }

    #[tokio::test]
    async fn unauthorized_key_is_refused() {
        let server = Dropbear::start().await.unwrap();
        let stranger = server
            .generate_client_key("stranger", HostKeyType::Ecdsa384, false)
            .unwrap();
        let mut args = server.ssh_args();
        let i = args.iter().position(|a| a == "-i").unwrap();
        args[i + 1] = stranger.display().to_string();
        let mut cmd = tokio::process::Command::new("ssh");
        cmd.args(&args).kill_on_drop(true);
        let out = run(cmd, &["true"]).await;
        assert!(!out.status.success(), "an unauthorized key logged in");
        server
            .add_authorized_line(&keys::public_key_line(&stranger).unwrap())
            .unwrap();
        let mut cmd = tokio::process::Command::new("ssh");
        cmd.args(&args).kill_on_drop(true);
        let out = run(cmd, &["true"]).await;
        assert_ran(
            &out,
            "ssh with the now authorized ecdsa-384 key",
            "dropbear",
            &server.log(),
        );
    }
}
