//! Real proxy servers from Debian packages, each on an ephemeral loopback port with its
//! own configuration in a temporary folder: tinyproxy (HTTP CONNECT, optionally Basic
//! auth) and microsocks (SOCKS5, optionally username/password). They can be stopped and
//! started again on the same port, to take the proxy away from a tunnel for a while.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use tempfile::TempDir;
use tokio::time::{Instant, sleep};

use crate::net::{POLL_INTERVAL, free_port, wait_port_closed};
use crate::sshd::{kill_and_reap, spawn_log_reader, spawn_tied_to_process};

/// How long a proxy may take to accept connections.
const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// Fresh ports tried when another process takes the port between probing and the bind.
const MAX_BIND_ATTEMPTS: usize = 5;

/// Which proxy, and the user and password it demands (none when `None`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProxyKind {
    /// tinyproxy: HTTP CONNECT, `BasicAuth USER PASSWORD`.
    Tinyproxy,
    /// microsocks: SOCKS5, `-u USER -P PASSWORD`.
    Microsocks,
}

/// A running (or stopped) proxy server.
pub struct ProxyServer {
    kind: ProxyKind,
    auth: Option<(String, String)>,
    dir: TempDir,
    port: u16,
    child: Option<Child>,
    log: Arc<Mutex<String>>,
}

impl ProxyServer {
    /// Starts `kind` on a free loopback port, demanding `auth` when given.
    ///
    /// # Errors
    /// The program is missing or never accepts connections.
    pub async fn start(kind: ProxyKind, auth: Option<(&str, &str)>) -> anyhow::Result<ProxyServer> {
        let mut server = ProxyServer {
            kind,
            auth: auth.map(|(u, p)| (u.to_owned(), p.to_owned())),
            dir: tempfile::Builder::new()
                .prefix("tunneld-proxy-")
                .tempdir()
                .context("temp dir for the proxy")?,
            port: 0,
            child: None,
            log: Arc::new(Mutex::new(String::new())),
        };
        for _ in 0..MAX_BIND_ATTEMPTS {
            server.port = free_port(IpAddr::V4(Ipv4Addr::LOCALHOST));
            if server.spawn_and_wait().await? {
                return Ok(server);
            }
        }
        bail!(
            "{:?} could not bind a free port in {MAX_BIND_ATTEMPTS} tries; log:\n{}",
            server.kind,
            server.log()
        )
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), self.port)
    }

    /// The URL for tunneld's `proxy` key, with the user (never the password) when the
    /// proxy demands one.
    pub fn url(&self) -> String {
        let scheme = match self.kind {
            ProxyKind::Tinyproxy => "http",
            ProxyKind::Microsocks => "socks5h",
        };
        match &self.auth {
            Some((user, _)) => format!("{scheme}://{user}@{}", self.addr()),
            None => format!("{scheme}://{}", self.addr()),
        }
    }

    /// The folder of its configuration and log.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Writes `password` to a file of mode 0600 in [`ProxyServer::dir`], for
    /// `proxy_password_file`.
    ///
    /// # Errors
    /// The file cannot be written.
    pub fn password_file(&self, password: &str) -> anyhow::Result<PathBuf> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let path = self.dir.path().join(format!("password-{}", password.len()));
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)
            .context("create the password file")?;
        writeln!(f, "{password}").context("write the password file")?;
        Ok(path)
    }

    /// What the proxy logged so far (tinyproxy's log file, microsocks' stderr).
    pub fn log(&self) -> String {
        let mut text = self.log.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if let Ok(file) = std::fs::read_to_string(self.dir.path().join("tinyproxy.log")) {
            text.push_str(&file);
        }
        text
    }

    /// Stops the proxy; returns once its port refuses connections.
    ///
    /// # Errors
    /// The port still accepts connections after the bound.
    pub async fn stop(&mut self) -> anyhow::Result<()> {
        if let Some(child) = self.child.take() {
            kill_and_reap(child).await;
        }
        wait_port_closed(self.addr(), READY_TIMEOUT).await
    }

    /// Starts it again on the same port after [`ProxyServer::stop`].
    ///
    /// # Errors
    /// It does not accept connections again (the port may have been taken).
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        if self.child.is_some() {
            self.stop().await?;
        }
        if !self.spawn_and_wait().await? {
            bail!(
                "{:?} could not bind port {} again; log:\n{}",
                self.kind,
                self.port,
                self.log()
            );
        }
        Ok(())
    }

    fn command(&self) -> anyhow::Result<Command> {
        let cmd = match self.kind {
            ProxyKind::Tinyproxy => {
                let conf = self.dir.path().join("tinyproxy.conf");
                let mut text = format!(
                    "Port {port}\nListen 127.0.0.1\nTimeout 600\nMaxClients 100\n\
                     Allow 127.0.0.1\nLogLevel Info\nLogFile \"{log}\"\n\
                     PidFile \"{pid}\"\nDisableViaHeader Yes\n",
                    port = self.port,
                    log = self.dir.path().join("tinyproxy.log").display(),
                    pid = self.dir.path().join("tinyproxy.pid").display(),
                );
                if let Some((user, password)) = &self.auth {
                    text.push_str(&format!("BasicAuth {user} {password}\n"));
                }
                std::fs::write(&conf, text).context("write tinyproxy.conf")?;
                let mut cmd = Command::new("tinyproxy");
                cmd.arg("-d").arg("-c").arg(conf);
                cmd
            }
            ProxyKind::Microsocks => {
                let mut cmd = Command::new("microsocks");
                cmd.args(["-i", "127.0.0.1", "-p", &self.port.to_string()]);
                if let Some((user, password)) = &self.auth {
                    cmd.args(["-u", user, "-P", password]);
                }
                cmd
            }
        };
        Ok(cmd)
    }

    /// Starts the program; true once its port accepts, false when it exited (port taken).
    async fn spawn_and_wait(&mut self) -> anyhow::Result<bool> {
        let mut cmd = self.command()?;
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = spawn_tied_to_process(cmd)
            .with_context(|| format!("start {:?} (is its package installed?)", self.kind))?;
        if let Some(stderr) = child.stderr.take() {
            spawn_log_reader(stderr, Arc::clone(&self.log));
        }
        self.child = Some(child);
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(Ok(Some(_))) = self.child.as_mut().map(Child::try_wait) {
                self.child = None;
                return Ok(false);
            }
            if tokio::net::TcpStream::connect(self.addr()).await.is_ok() {
                return Ok(true);
            }
            if Instant::now() >= deadline {
                if let Some(child) = self.child.take() {
                    kill_and_reap(child).await;
                }
                bail!(
                    "{:?} did not accept connections on {} within {READY_TIMEOUT:?}; log:\n{}",
                    self.kind,
                    self.addr(),
                    self.log()
                );
            }
            sleep(POLL_INTERVAL).await;
        }
    }
}

impl Drop for ProxyServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
