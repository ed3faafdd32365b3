//! A private OpenSSH `sshd` for tests: its own tempdir, a generated host key of the chosen
//! type (optionally with a host certificate), an ed25519 client key, an optional user CA, an
//! ephemeral loopback port, its log in memory, and fault injection.
//!
//! Runs as the current user (as root too). Never touches `/etc/ssh` or port 22. With
//! [`SshdOptions::root`] it runs another OpenSSH from a chroot (see [`crate::modern_sshd`]).

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

/// The chroot program, for [`SshdOptions::root`].
const CHROOT_PATH: &str = "/usr/sbin/chroot";
/// RSA keys the kit generates: accepted everywhere, and faster to make than the 3072 default.
const RSA_KEY_BITS: u32 = 2048;
/// Principals of the host certificate: the names a test client may dial.
const HOST_CERT_PRINCIPALS: &str = "127.0.0.1,::1,localhost";

/// Key types the kit generates for servers (host keys) and clients.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum HostKeyType {
    /// `ssh-ed25519`.
    #[default]
    Ed25519,
    /// `ecdsa-sha2-nistp256`.
    Ecdsa256,
    /// `ecdsa-sha2-nistp384`.
    Ecdsa384,
    /// `ecdsa-sha2-nistp521`.
    Ecdsa521,
    /// `ssh-rsa` key of [`RSA_KEY_BITS`] bits (signatures `rsa-sha2-512` / `rsa-sha2-256`).
    Rsa,
}

impl HostKeyType {
    /// Every type, ed25519 first.
    pub const ALL: [HostKeyType; 5] = [
        HostKeyType::Ed25519,
        HostKeyType::Ecdsa256,
        HostKeyType::Ecdsa384,
        HostKeyType::Ecdsa521,
        HostKeyType::Rsa,
    ];

    /// The key's type name, the first field of its public key line (`ssh-ed25519`, ...).
    pub fn key_name(self) -> &'static str {
        match self {
            HostKeyType::Ed25519 => "ssh-ed25519",
            HostKeyType::Ecdsa256 => "ecdsa-sha2-nistp256",
            HostKeyType::Ecdsa384 => "ecdsa-sha2-nistp384",
            HostKeyType::Ecdsa521 => "ecdsa-sha2-nistp521",
            HostKeyType::Rsa => "ssh-rsa",
        }
    }

    /// The type name of a certificate on such a key (`ssh-ed25519-cert-v01@openssh.com`, ...).
    pub fn cert_name(self) -> &'static str {
        match self {
            HostKeyType::Ed25519 => "ssh-ed25519-cert-v01@openssh.com",
            HostKeyType::Ecdsa256 => "ecdsa-sha2-nistp256-cert-v01@openssh.com",
            HostKeyType::Ecdsa384 => "ecdsa-sha2-nistp384-cert-v01@openssh.com",
            HostKeyType::Ecdsa521 => "ecdsa-sha2-nistp521-cert-v01@openssh.com",
            HostKeyType::Rsa => "ssh-rsa-cert-v01@openssh.com",
        }
    }

    /// Signature algorithms an OpenSSH 9.x server signs with for this key, by preference
    /// (`HostKeyAlgorithms` / `PubkeyAcceptedAlgorithms` names; SHA-1 `ssh-rsa` is off by
    /// default since OpenSSH 8.8).
    pub fn signature_algorithms(self) -> &'static [&'static str] {
        match self {
            HostKeyType::Ed25519 => &["ssh-ed25519"],
            HostKeyType::Ecdsa256 => &["ecdsa-sha2-nistp256"],
            HostKeyType::Ecdsa384 => &["ecdsa-sha2-nistp384"],
            HostKeyType::Ecdsa521 => &["ecdsa-sha2-nistp521"],
            HostKeyType::Rsa => &["rsa-sha2-512", "rsa-sha2-256"],
        }
    }

    /// A short name for file names and messages: `ed25519`, `ecdsa256`, ..., `rsa`.
    pub fn short_name(self) -> &'static str {
        match self {
            HostKeyType::Ed25519 => "ed25519",
            HostKeyType::Ecdsa256 => "ecdsa256",
            HostKeyType::Ecdsa384 => "ecdsa384",
            HostKeyType::Ecdsa521 => "ecdsa521",
            HostKeyType::Rsa => "rsa",
        }
    }

    /// `-t TYPE` and `-b`/`-s BITS` as `ssh-keygen` and `dropbearkey` spell them.
    pub fn type_and_bits(self) -> (&'static str, Option<u32>) {
        match self {
            HostKeyType::Ed25519 => ("ed25519", None),
            HostKeyType::Ecdsa256 => ("ecdsa", Some(256)),
            HostKeyType::Ecdsa384 => ("ecdsa", Some(384)),
            HostKeyType::Ecdsa521 => ("ecdsa", Some(521)),
            HostKeyType::Rsa => ("rsa", Some(RSA_KEY_BITS)),
        }
    }
}

/// Generates an unencrypted OpenSSH key pair of type `kind` at `path` (mode 0600) and
/// `path.pub`, replacing an existing pair.
///
/// # Errors
/// `ssh-keygen` failing (its stderr is in the error).
pub fn generate_key(path: &Path, kind: HostKeyType, comment: &str) -> anyhow::Result<PathBuf> {
    for p in [path.to_path_buf(), keys::pub_path(path)] {
        match std::fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("remove old key {}", p.display())),
        }
    }
    let (t, bits) = kind.type_and_bits();
    let mut cmd = Command::new("ssh-keygen");
    cmd.args(["-q", "-t", t, "-N", "", "-C", comment]);
    if let Some(bits) = bits {
        cmd.arg("-b").arg(bits.to_string());
    }
    let out = cmd
        .arg("-f")
        .arg(path)
        .stdin(Stdio::null())
        .output()
        .context("run ssh-keygen (is OpenSSH installed?)")?;
    if !out.status.success() {
        bail!(
            "ssh-keygen -t {t} -f {} failed ({}): {}",
            path.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(path.to_path_buf())
}

/// How to start an [`Sshd`].
#[derive(Clone, Debug)]
pub struct SshdOptions {
    /// Lines put at the **top** of `sshd_config`; sshd keeps the first value it reads for a
    /// keyword, so these override the kit's defaults (e.g. `"ClientAliveInterval 2"`,
    /// `"AllowTcpForwarding local"`, `"GatewayPorts no"`, `"KexAlgorithms curve25519-sha256"`,
    /// `"Ciphers aes128-gcm@openssh.com"`, `"MACs hmac-sha2-256-etm@openssh.com"`,
    /// `"HostKeyAlgorithms rsa-sha2-256"`, `"PubkeyAcceptedAlgorithms ssh-ed25519"`,
    /// `"RekeyLimit 1M"`).
    pub extra_config: Vec<String>,
    /// Address sshd listens on (loopback only). Default `127.0.0.1`.
    pub listen: IpAddr,
    /// The type of the one host key. Default ed25519.
    pub host_key_type: HostKeyType,
    /// Also serve a host certificate for the host key, signed by an ed25519 CA the kit makes
    /// (see [`Sshd::host_ca_pub`], [`Sshd::cert_authority_known_hosts`]). Default off.
    pub host_certificate: bool,
    /// Trust an ed25519 user CA the kit makes (`TrustedUserCAKeys`); sign client keys with
    /// [`Sshd::sign_user_key`]. Default off.
    pub user_ca: bool,
    /// Run the sshd of this root directory with `chroot` (its own `/usr/sbin/sshd`, libraries
    /// and passwd; needs root). The tempdir is made under `ROOT/tmp`, and the paths in the
    /// config are as seen from inside. Default `None`: this system's sshd. See
    /// [`crate::modern_sshd::ModernSshd`].
    pub root: Option<PathBuf>,
    /// Run sshd inside this network namespace (a [`crate::netlab::Netns`] name); `listen`
    /// is then an address inside it, not necessarily loopback. Default `None`.
    pub netns: Option<String>,
}

impl Default for SshdOptions {
    fn default() -> Self {
        Self {
            extra_config: Vec::new(),
            listen: IpAddr::V4(Ipv4Addr::LOCALHOST),
            host_key_type: HostKeyType::Ed25519,
            host_certificate: false,
            user_ca: false,
            root: None,
            netns: None,
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
    host_key: PathBuf,
    host_key_pub: String,
    /// Every `HostKey` line of the config, in order: `host_key` first until
    /// [`Sshd::remove_host_key`] takes it out.
    host_keys: Vec<PathBuf>,
    /// The host CA's private key and the host certificate, with [`SshdOptions::host_certificate`].
    host_cert: Option<(PathBuf, PathBuf)>,
    /// `@cert-authority` known_hosts file, with [`SshdOptions::host_certificate`].
    known_hosts_ca: PathBuf,
    /// The user CA's private key, with [`SshdOptions::user_ca`].
    user_ca: Option<PathBuf>,
    /// The identification line sshd sent to the last banner probe, without CR LF.
    banner: String,
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
        if !opts.listen.is_loopback() && opts.netns.is_none() {
            bail!(
                "sshd for tests listens on loopback only, not {}",
                opts.listen
            );
        }
        let mut builder = tempfile::Builder::new();
        builder.prefix("tunneld-sshd-");
        let dir = match &opts.root {
            Some(root) => {
                if !root.join("usr/sbin/sshd").is_file() {
                    bail!(
                        "{} has no usr/sbin/sshd (run tests/setup-servers as root)",
                        root.display()
                    );
                }
                builder.tempdir_in(root.join("tmp"))
            }
            None => builder.tempdir(),
        }
        .context("create sshd tempdir")?;
        let host_key = generate_key(
            &dir.path()
                .join(format!("ssh_host_{}_key", opts.host_key_type.short_name())),
            opts.host_key_type,
            "host",
        )?;
        let host_cert = if opts.host_certificate {
            let ca = generate_key(&dir.path().join("host_ca"), HostKeyType::Ed25519, "host-ca")?;
            let cert = keys::sign_host(&ca, &host_key, HOST_CERT_PRINCIPALS)?;
            Some((ca, cert))
        } else {
            None
        };
        let user_ca = if opts.user_ca {
            Some(generate_key(
                &dir.path().join("user_ca"),
                HostKeyType::Ed25519,
                "user-ca",
            )?)
        } else {
            None
        };
        let client_key = keys::generate(&dir.path().join("client_ed25519"), "ed25519", "client")?;
        let authorized_keys = dir.path().join("authorized_keys");
        std::fs::write(
            &authorized_keys,
            format!("{}\n", keys::public_key_line(&client_key)?),
        )
        .context("write authorized_keys")?;
        match &opts.root {
            Some(root) => ensure_dir(&root.join(PRIVSEP_DIR.trim_start_matches('/')))?,
            None => ensure_privsep_dir()?,
        }
        let mut sshd = Sshd {
            port: 0,
            user: current_user(),
            config: dir.path().join("sshd_config"),
            known_hosts: dir.path().join("known_hosts"),
            known_hosts_ca: dir.path().join("known_hosts_ca"),
            host_key_pub: keys::public_key_line(&host_key)?,
            host_keys: vec![host_key.clone()],
            host_key,
            host_cert,
            user_ca,
            banner: String::new(),
            client_key,
            authorized_keys,
            log: Arc::new(Mutex::new(String::new())),
            child: None,
            dir,
            opts,
        };
        let mut last_err = None;
        for attempt in 0..MAX_BIND_ATTEMPTS {
            sshd.port = match &sshd.opts.netns {
                Some(ns) => {
                    let ip = sshd.opts.listen;
                    crate::netlab::enter(ns, move || {
                        Ok(std::net::TcpListener::bind((ip, 0))?.local_addr()?.port())
                    })
                    .with_context(|| format!("find a free port in namespace {ns}"))?
                }
                None => free_port(sshd.opts.listen),
            };
            sshd.write_config()?;
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

    /// Makes another host key of `kind`, `name` in the tempdir, and lists it after the
    /// others in sshd's config (sshd signs key exchanges with its first key of each type,
    /// and announces all of them after authentication); sshd serves it from its next
    /// [`Sshd::restart`]. Returns the public key line.
    ///
    /// # Errors
    /// `ssh-keygen` failing, or the config not being written.
    pub fn add_host_key(&mut self, name: &str, kind: HostKeyType) -> anyhow::Result<String> {
        check_file_name(name)?;
        let key = generate_key(&self.dir.path().join(name), kind, "host")?;
        let line = keys::public_key_line(&key)?;
        self.host_keys.push(key);
        self.write_sshd_config()?;
        Ok(line)
    }

    /// Takes the host key `path` out of sshd's config, from its next [`Sshd::restart`].
    ///
    /// # Errors
    /// It is not one of the keys, or it is the last one.
    pub fn remove_host_key(&mut self, path: &Path) -> anyhow::Result<()> {
        if self.host_keys.len() < 2 || !self.host_keys.iter().any(|k| k == path) {
            bail!("{} is not a host key sshd can do without", path.display());
        }
        self.host_keys.retain(|k| k != path);
        self.write_sshd_config()
    }

    /// The host key files sshd serves (from its next restart, after a change).
    pub fn host_keys(&self) -> &[PathBuf] {
        &self.host_keys
    }

    /// The options it was started with.
    pub fn options(&self) -> &SshdOptions {
        &self.opts
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

    /// The host key's type ([`SshdOptions::host_key_type`]).
    pub fn host_key_type(&self) -> HostKeyType {
        self.opts.host_key_type
    }

    /// The host private key file (mode 0600; its public half is next to it as `.pub`).
    pub fn host_key_path(&self) -> &Path {
        &self.host_key
    }

    /// The host CA public key line, `ssh-ed25519 AAAA...`, with [`SshdOptions::host_certificate`].
    pub fn host_ca_pub(&self) -> Option<String> {
        let (ca, _) = self.host_cert.as_ref()?;
        keys::public_key_line(ca).ok()
    }

    /// The host certificate line, `ssh-ed25519-cert-v01@openssh.com AAAA...`, with
    /// [`SshdOptions::host_certificate`]. Principals `127.0.0.1`, `::1` and `localhost`,
    /// valid from five minutes ago for an hour.
    pub fn host_cert_pub(&self) -> Option<String> {
        let (_, cert) = self.host_cert.as_ref()?;
        let text = std::fs::read_to_string(cert).ok()?;
        let mut fields = text.split_whitespace();
        Some(format!("{} {}", fields.next()?, fields.next()?))
    }

    /// With [`SshdOptions::host_certificate`]: a known_hosts file with only the line
    /// `@cert-authority [HOST]:PORT ssh-ed25519 CA...`, which trusts the host certificate and
    /// not the bare host key.
    pub fn cert_authority_known_hosts(&self) -> Option<&Path> {
        self.host_cert
            .as_ref()
            .map(|_| self.known_hosts_ca.as_path())
    }

    /// The user CA public key line, with [`SshdOptions::user_ca`].
    pub fn user_ca_pub(&self) -> Option<String> {
        keys::public_key_line(self.user_ca.as_ref()?).ok()
    }

    /// Signs the public half of the client key `key` with the user CA: writes and returns
    /// `KEY-cert.pub`, a user certificate for `principal` (usually [`Sshd::user`]), valid from
    /// five minutes ago for an hour. `ssh -i KEY` then offers it on its own.
    ///
    /// # Errors
    /// The server has no user CA ([`SshdOptions::user_ca`] off), or `ssh-keygen` fails.
    pub fn sign_user_key(&self, key: &Path, principal: &str) -> anyhow::Result<PathBuf> {
        let Some(ca) = &self.user_ca else {
            bail!("this sshd has no user CA: start it with SshdOptions::user_ca");
        };
        keys::sign(ca, key, principal)
    }

    /// As [`Sshd::generate_client_key`], with any [`HostKeyType`] (ecdsa 384/521 too).
    ///
    /// # Errors
    /// `name` is not a plain file name, or `ssh-keygen` or the append fails.
    pub fn generate_client_key_of(
        &self,
        name: &str,
        kind: HostKeyType,
        authorize: bool,
    ) -> anyhow::Result<PathBuf> {
        check_file_name(name)?;
        let path = generate_key(&self.dir.path().join(name), kind, name)?;
        if authorize {
            self.add_authorized_line(&keys::public_key_line(&path)?)?;
        }
        Ok(path)
    }

    /// The identification line the server sent, without CR LF: `SSH-2.0-OpenSSH_9.2p1
    /// Debian-2+deb12u10` (read by the readiness probe, again after each restart).
    pub fn banner(&self) -> &str {
        &self.banner
    }

    /// The software version from [`Sshd::banner`]: `OpenSSH_9.2p1`, `OpenSSH_10.0p2`.
    pub fn version(&self) -> &str {
        banner_software(&self.banner)
    }

    /// The effective configuration, `sshd -T` (lower-case keywords, one per line): shows
    /// which value of a keyword sshd uses.
    ///
    /// # Errors
    /// `sshd -T` fails (its output is in the error).
    pub fn effective_config(&self) -> anyhow::Result<String> {
        let out = self
            .sshd_command(&["-T"])
            .stdin(Stdio::null())
            .output()
            .context("run sshd -T")?;
        if !out.status.success() {
            bail!(
                "sshd -T failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
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
        check_file_name(name)?;
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
        ssh_client_args(
            &self.client_key,
            &self.known_hosts,
            SocketAddr::new(self.opts.listen, self.port),
            &self.user,
        )
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

    /// Stops the session processes (SIGSTOP) until the returned guard is dropped: a server
    /// that holds its connections and never answers on them. New connections are still
    /// accepted (the listener runs), each in a session of its own that is not frozen.
    pub fn freeze_sessions(&self) -> FrozenSessions {
        let pids = self.session_pids();
        for &pid in &pids {
            procs::signal(pid, libc::SIGSTOP);
        }
        FrozenSessions(pids)
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

    /// `path` as sshd sees it: the same, or under [`SshdOptions::root`] the path inside it.
    fn inside(&self, path: &Path) -> PathBuf {
        match self
            .opts
            .root
            .as_ref()
            .and_then(|r| path.strip_prefix(r).ok())
        {
            Some(rel) => Path::new("/").join(rel),
            None => path.to_path_buf(),
        }
    }

    /// A command running this server's sshd binary with `-f CONFIG` and `args`.
    fn sshd_command(&self, args: &[&str]) -> Command {
        let mut cmd = match (&self.opts.root, &self.opts.netns) {
            (Some(root), _) => {
                let mut c = Command::new(CHROOT_PATH);
                c.arg(root).arg(SSHD_PATH);
                c
            }
            (None, Some(ns)) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, SSHD_PATH]);
                c
            }
            (None, None) => Command::new(SSHD_PATH),
        };
        cmd.args(args).arg("-f").arg(self.inside(&self.config));
        cmd
    }

    fn write_sshd_config(&self) -> anyhow::Result<()> {
        let mut c = String::new();
        for line in &self.opts.extra_config {
            let _ = writeln!(c, "{line}");
        }
        let _ = write!(
            c,
            "Port {port}
ListenAddress {listen}
{host_keys}{host_cert}{user_ca}AuthorizedKeysFile {authorized_keys}
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
            host_keys = self
                .host_keys
                .iter()
                .map(|k| format!("HostKey {}\n", self.inside(k).display()))
                .collect::<String>(),
            host_cert = match &self.host_cert {
                Some((_, cert)) => format!("HostCertificate {}\n", self.inside(cert).display()),
                None => String::new(),
            },
            user_ca = match &self.user_ca {
                Some(ca) => format!(
                    "TrustedUserCAKeys {}\n",
                    self.inside(&keys::pub_path(ca)).display()
                ),
                None => String::new(),
            },
            authorized_keys = self.inside(&self.authorized_keys).display(),
        );
        std::fs::write(&self.config, c).context("write sshd_config")?;
        Ok(())
    }

    /// The kit's config files: `sshd_config`, `known_hosts` and the CA's.
    fn write_config(&self) -> anyhow::Result<()> {
        self.write_sshd_config()?;
        // `[host]:port`, the form ssh uses for a non-22 port (IPv6 without extra brackets).
        std::fs::write(
            &self.known_hosts,
            format!(
                "[{}]:{} {}\n",
                self.opts.listen, self.port, self.host_key_pub
            ),
        )
        .context("write known_hosts")?;
        if let Some(ca) = self.host_ca_pub() {
            std::fs::write(
                &self.known_hosts_ca,
                format!(
                    "@cert-authority [{}]:{} {ca}\n",
                    self.opts.listen, self.port
                ),
            )
            .context("write known_hosts_ca")?;
        }
        Ok(())
    }

    /// `sshd -t`: catches bad `extra_config` lines with sshd's own message.
    fn check_config(&self) -> anyhow::Result<()> {
        let out = self
            .sshd_command(&["-t"])
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
        let mut cmd = self.sshd_command(&["-D", "-e"]);
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
            if since_spawn(&self.log, LISTENING_LINE)
                && let Some(banner) = self.probe_banner().await
            {
                self.banner = banner;
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

/// What an OpenSSH server's identification line starts with.
const OPENSSH_BANNER_PREFIX: &str = "SSH-2.0-OpenSSH";
/// The longest identification line a probe reads (RFC 4253 section 4.2: 255 bytes with CR LF).
const MAX_BANNER_BYTES: usize = 255;

/// Connects and reads the server's identification line: `Some(line)` without CR LF when it
/// starts with `prefix`.
impl Sshd {
    /// [`probe_banner`] from wherever sshd runs (its namespace, if it has one).
    async fn probe_banner(&self) -> Option<String> {
        match &self.opts.netns {
            Some(ns) => {
                let s = crate::netlab::connect_in(ns, self.addr()).await.ok()?;
                read_banner(s, OPENSSH_BANNER_PREFIX).await
            }
            None => probe_banner(self.addr(), OPENSSH_BANNER_PREFIX).await,
        }
    }
}

pub(crate) async fn probe_banner(addr: SocketAddr, prefix: &str) -> Option<String> {
    let s = timeout(BANNER_PROBE_TIMEOUT, TcpStream::connect(addr))
        .await
        .ok()?
        .ok()?;
    read_banner(s, prefix).await
}

/// The first line `s` sends, if it starts with `prefix` (bounded in size and time).
async fn read_banner(mut s: TcpStream, prefix: &str) -> Option<String> {
    let probe = async {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 256];
        while !buf.contains(&b'\n') && buf.len() < MAX_BANNER_BYTES {
            let n = s.read(&mut chunk).await.ok()?;
            if n == 0 {
                break;
            }
            buf.extend_from_slice(chunk.get(..n)?);
        }
        let line = buf.split(|&b| b == b'\n').next()?;
        let line = String::from_utf8_lossy(line)
            .trim_end_matches('\r')
            .to_owned();
        line.starts_with(prefix).then_some(line)
    };
    timeout(BANNER_PROBE_TIMEOUT, probe).await.ok().flatten()
}

/// `OpenSSH_9.2p1` from `SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u10` (the softwareversion field
/// of RFC 4253 section 4.2); empty when the line is not `SSH-2.0-...`.
pub(crate) fn banner_software(banner: &str) -> &str {
    banner
        .strip_prefix("SSH-2.0-")
        .and_then(|rest| rest.split(' ').next())
        .unwrap_or("")
}

/// A key file name inside the kit's tempdir: no path separators, not hidden.
pub(crate) fn check_file_name(name: &str) -> anyhow::Result<()> {
    if name.is_empty() || name.contains('/') || name.starts_with('.') {
        bail!("key name {name:?} must be a plain file name");
    }
    Ok(())
}

/// `ssh` arguments for a non-interactive login to `addr` as `user` with `client_key` and
/// `known_hosts` (strict checking, no user config, no agent); the last is `user@host`.
pub(crate) fn ssh_client_args(
    client_key: &Path,
    known_hosts: &Path,
    addr: SocketAddr,
    user: &str,
) -> Vec<String> {
    let o = |kv: String| ["-o".to_owned(), kv];
    let mut args = vec!["-F".to_owned(), "/dev/null".to_owned()];
    args.extend(["-i".to_owned(), client_key.display().to_string()]);
    for kv in [
        format!("UserKnownHostsFile={}", known_hosts.display()),
        "GlobalKnownHostsFile=/dev/null".to_owned(),
        "StrictHostKeyChecking=yes".to_owned(),
        "BatchMode=yes".to_owned(),
        "IdentitiesOnly=yes".to_owned(),
        "IdentityAgent=none".to_owned(),
        "ConnectTimeout=10".to_owned(),
    ] {
        args.extend(o(kv));
    }
    args.extend(["-p".to_owned(), addr.port().to_string()]);
    args.push(format!("{user}@{}", addr.ip()));
    args
}

/// SIGKILLs `child` and its whole tree, then reaps it (bounded, without blocking the runtime).
pub(crate) async fn kill_and_reap(mut child: Child) {
    // Blocks for the few milliseconds the kills take (bounded inside).
    procs::kill_tree(child.id() as i32, true);
    let deadline = Instant::now() + REAP_TIMEOUT;
    while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
        sleep(Duration::from_millis(2)).await;
    }
}

/// Copies sshd's stderr into `log` on a std thread; it ends when every writer has closed
/// the pipe (the listener and its session processes).
pub(crate) fn spawn_log_reader(stderr: impl Read + Send + 'static, log: Arc<Mutex<String>>) {
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
    if unsafe { libc::geteuid() } != 0 {
        return Ok(());
    }
    ensure_dir(Path::new(PRIVSEP_DIR))
}

/// Creates `dir` (mode 0755) unless it is there.
fn ensure_dir(dir: &Path) -> anyhow::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    use std::os::unix::fs::DirBuilderExt;
    match std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(dir)
    {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e).with_context(|| format!("create {}", dir.display())),
    }
}

/// The effective user's login name (from the passwd database, else `$USER`).
pub(crate) fn current_user() -> String {
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
pub(crate) fn spawn_tied_to_process(mut cmd: Command) -> io::Result<Child> {
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

/// Sessions stopped by [`Sshd::freeze_sessions`]; dropping it lets them run again.
#[must_use = "the sessions run again as soon as this is dropped"]
pub struct FrozenSessions(Vec<i32>);

impl Drop for FrozenSessions {
    fn drop(&mut self) {
        for &pid in &self.0 {
            procs::signal(pid, libc::SIGCONT);
        }
    }
}

#[cfg(test)]
#[path = "sshd_tests.rs"]
mod tests;

/// Tests of the host key types, certificates and algorithm restrictions.
#[cfg(test)]
mod kit_tests {
    use super::*;
    use crate::client_run::{assert_ran, run};

    /// `ssh EXTRA... SSH_ARGS... true`: `sshd.ssh_args()` with `extra` options before them.
    fn ssh(sshd: &Sshd, extra: &[&str]) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new("ssh");
        cmd.args(extra).args(sshd.ssh_args()).arg("true");
        cmd
    }

    #[tokio::test]
    async fn every_host_key_type_is_offered_as_known_hosts_says() {
        for kind in HostKeyType::ALL {
            let sshd = Sshd::start_with(SshdOptions {
                host_key_type: kind,
                ..Default::default()
            })
            .await
            .unwrap();
            assert_eq!(sshd.host_key_type(), kind);
            assert!(
                sshd.host_key_pub()
                    .starts_with(&format!("{} AAAA", kind.key_name())),
                "{kind:?}: {}",
                sshd.host_key_pub()
            );
            assert!(
                sshd.banner().starts_with("SSH-2.0-OpenSSH_"),
                "{}",
                sshd.banner()
            );
            let mut scan = tokio::process::Command::new("ssh-keyscan");
            scan.args(["-t", kind.key_name(), "-p"])
                .arg(sshd.port().to_string())
                .arg("127.0.0.1");
            let out = run(scan, &[]).await;
            assert_ran(&out, "ssh-keyscan", "sshd", &sshd.log());
            assert_eq!(
                String::from_utf8_lossy(&out.stdout),
                std::fs::read_to_string(sshd.known_hosts()).unwrap(),
                "{kind:?}"
            );
            let alg = format!("HostKeyAlgorithms={}", kind.signature_algorithms()[0]);
            let out = run(ssh(&sshd, &["-v", "-o", &alg]), &[]).await;
            assert_ran(
                &out,
                &format!("login, host key {kind:?}"),
                "sshd",
                &sshd.log(),
            );
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(
                stderr.contains(&format!(
                    "kex: host key algorithm: {}",
                    kind.signature_algorithms()[0]
                )),
                "{stderr}"
            );
        }
    }

    #[tokio::test]
    async fn host_certificate_is_trusted_through_the_ca_line_alone() {
        let sshd = Sshd::start_with(SshdOptions {
            host_key_type: HostKeyType::Ecdsa256,
            host_certificate: true,
            ..Default::default()
        })
        .await
        .unwrap();
        let cert = sshd.host_cert_pub().unwrap();
        assert!(
            cert.starts_with(HostKeyType::Ecdsa256.cert_name()),
            "{cert}"
        );
        let ca = sshd.host_ca_pub().unwrap();
        let ca_file = sshd.cert_authority_known_hosts().unwrap();
        assert_eq!(
            std::fs::read_to_string(ca_file).unwrap(),
            format!("@cert-authority [127.0.0.1]:{} {ca}\n", sshd.port())
        );
        let kh = format!("UserKnownHostsFile={}", ca_file.display());
        let out = run(ssh(&sshd, &["-v", "-o", &kh]), &[]).await;
        assert_ran(&out, "login trusting the host CA", "sshd", &sshd.log());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("Server host certificate: ecdsa-sha2-nistp256-cert-v01@openssh.com"),
            "{stderr}"
        );
        // Without a host certificate there is nothing for the CA line to trust.
        let plain = Sshd::start().await.unwrap();
        assert_eq!(plain.host_ca_pub(), None);
        assert_eq!(plain.cert_authority_known_hosts(), None);
        std::fs::write(
            plain.known_hosts(),
            format!("@cert-authority [127.0.0.1]:{} {ca}\n", plain.port()),
        )
        .unwrap();
        let out = run(ssh(&plain, &[]), &[]).await;
        assert!(!out.status.success(), "a CA line trusted a bare host key");
    }

    #[tokio::test]
    async fn user_certificate_logs_in_a_key_not_in_authorized_keys() {
        let sshd = Sshd::start_with(SshdOptions {
            user_ca: true,
            ..Default::default()
        })
        .await
        .unwrap();
        assert!(sshd.user_ca_pub().unwrap().starts_with("ssh-ed25519 AAAA"));
        let key = sshd
            .generate_client_key_of("certified", HostKeyType::Ecdsa521, false)
            .unwrap();
        let with_key = |key: &Path| {
            let mut args = sshd.ssh_args();
            let i = args.iter().position(|a| a == "-i").unwrap();
            args[i + 1] = key.display().to_string();
            let mut cmd = tokio::process::Command::new("ssh");
            cmd.args(args).arg("true");
            cmd
        };
        let out = run(with_key(&key), &[]).await;
        assert!(
            !out.status.success(),
            "an unlisted key logged in without a cert"
        );
        let cert = sshd.sign_user_key(&key, &sshd.user()).unwrap();
        assert!(cert.is_file());
        let out = run(with_key(&key), &[]).await;
        assert_ran(&out, "login with the user certificate", "sshd", &sshd.log());
        sshd.wait_log("ECDSA-CERT", Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(sshd.count_in_log("Accepted publickey"), 1);

        let plain = Sshd::start().await.unwrap();
        let err = plain.sign_user_key(plain.client_key(), "x").unwrap_err();
        assert!(err.to_string().contains("no user CA"), "{err}");
    }

    #[tokio::test]
    async fn algorithm_restrictions_at_the_top_win() {
        let sshd = Sshd::start_with(SshdOptions {
            host_key_type: HostKeyType::Rsa,
            extra_config: vec![
                "KexAlgorithms curve25519-sha256".into(),
                "Ciphers aes256-ctr".into(),
                "MACs hmac-sha2-512-etm@openssh.com".into(),
                "HostKeyAlgorithms rsa-sha2-256".into(),
                "PubkeyAcceptedAlgorithms ssh-ed25519".into(),
                "RekeyLimit 1M 30".into(),
            ],
            ..Default::default()
        })
        .await
        .unwrap();
        let config = sshd.effective_config().unwrap();
        for line in [
            "kexalgorithms curve25519-sha256",
            "ciphers aes256-ctr",
            "macs hmac-sha2-512-etm@openssh.com",
            "hostkeyalgorithms rsa-sha2-256",
            "pubkeyacceptedalgorithms ssh-ed25519",
            "rekeylimit 1048576 30",
        ] {
            assert_eq!(
                config.lines().filter(|l| *l == line).count(),
                1,
                "sshd -T has no {line:?}:\n{config}"
            );
        }
        let out = run(ssh(&sshd, &["-v"]), &[]).await;
        assert_ran(&out, "login within the restrictions", "sshd", &sshd.log());
        let stderr = String::from_utf8_lossy(&out.stderr);
        for needle in [
            "kex: algorithm: curve25519-sha256",
            "kex: host key algorithm: rsa-sha2-256",
            "kex: server->client cipher: aes256-ctr MAC: hmac-sha2-512-etm@openssh.com",
        ] {
            assert!(stderr.contains(needle), "no {needle:?} in:\n{stderr}");
        }
        let out = run(
            ssh(
                &sshd,
                &["-o", "KexAlgorithms=diffie-hellman-group14-sha256"],
            ),
            &[],
        )
        .await;
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("no matching key exchange method found"),
            "{stderr}"
        );
        // An ecdsa client key is outside PubkeyAcceptedAlgorithms.
        let ecdsa = sshd.generate_client_key("k-ecdsa", "ecdsa", true).unwrap();
        let mut args = sshd.ssh_args();
        let i = args.iter().position(|a| a == "-i").unwrap();
        args[i + 1] = ecdsa.display().to_string();
        let mut cmd = tokio::process::Command::new("ssh");
        cmd.args(args).arg("true");
        let out = run(cmd, &[]).await;
        assert!(
            !out.status.success(),
            "an ecdsa key passed PubkeyAcceptedAlgorithms ssh-ed25519"
        );
    }

    #[test]
    fn banner_software_field() {
        assert_eq!(
            banner_software("SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u10"),
            "OpenSSH_9.2p1"
        );
        assert_eq!(
            banner_software("SSH-2.0-dropbear_2022.83"),
            "dropbear_2022.83"
        );
        assert_eq!(banner_software("SSH-1.99-x"), "");
    }
}
