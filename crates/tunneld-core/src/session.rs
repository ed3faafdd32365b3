//! One SSH session to the server (tunneld's own client, `tunneld-ssh`): handshake, host
//! key check against known_hosts, authentication and jump hosts.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use ssh_key::{Algorithm, EcdsaCurve};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::info;
use tunneld_config::{HostPort, ProxyRoute, TunnelConfig};
use tunneld_ssh::{ConnectError, HostKey, Incoming, OpenKind, TransportError};

use crate::error::TunnelError;
use crate::host_check::HostCheck;
use crate::known_hosts;
use crate::sync::lock;

/// State shared between a tunnel and the tasks of its current session.
pub(crate) struct SessionShared {
    /// The tunnel's name, for logs.
    pub tunnel: Arc<str>,
    /// Fired when the session has ended, whatever the path.
    pub closed: CancellationToken,
    /// Cancels the connections the server opened to us; a child of the tunnel's token.
    pub conn_cancel: CancellationToken,
    /// Tracks those connections.
    pub conn_tracker: TaskTracker,
    /// How long to wait for a local target to accept.
    pub connect_timeout: Duration,
    /// Ends the session at once (a dead peer never answers a polite disconnect).
    pub kill: CancellationToken,
    /// The server's identification string (`SSH-2.0-OpenSSH_9.2p1 ...`), for the log.
    pub server_version: Mutex<Option<String>>,
    /// Why the session ended: the server's disconnect message or the transport error.
    /// Set before `closed` fires.
    pub end_reason: Mutex<Option<String>>,
    /// Where reverse SOCKS forwards may connect.
    pub permit_remote_open: tunneld_config::PermitRemoteOpen,
}

/// An established, authenticated session.
pub(crate) struct Session {
    pub ssh: tunneld_ssh::Session,
    pub shared: Arc<SessionShared>,
    /// The server's host key, as `TYPE SHA256:...`.
    pub host_key: String,
    /// The sessions to the jump hosts this one runs through, first hop first; kept for
    /// as long as this one lives.
    pub hops: Vec<tunneld_ssh::Session>,
    /// This machine's address of the connection (to the first hop): when it disappears,
    /// so has the session.
    pub local_addr: Option<std::net::IpAddr>,
}

/// The plain host key algorithms of a key type, as offered.
fn algorithm_names(alg: &Algorithm) -> Vec<&'static str> {
    match alg {
        Algorithm::Ed25519 => vec!["ssh-ed25519"],
        Algorithm::Ecdsa {
            curve: EcdsaCurve::NistP256,
        } => vec!["ecdsa-sha2-nistp256"],
        Algorithm::Ecdsa {
            curve: EcdsaCurve::NistP384,
        } => vec!["ecdsa-sha2-nistp384"],
        Algorithm::Ecdsa {
            curve: EcdsaCurve::NistP521,
        } => vec!["ecdsa-sha2-nistp521"],
        Algorithm::Rsa { .. } => vec!["rsa-sha2-512", "rsa-sha2-256"],
        _ => Vec::new(),
    }
}

/// Host key algorithms in the order to offer them: with `@cert-authority` lines for the
/// host, certificates first; then the key types known_hosts has for it, as OpenSSH does,
/// so that the key we can check is the one the server picks.
fn host_key_algorithms(known: &[Algorithm], authorities: bool) -> Vec<String> {
    let all = tunneld_ssh::transport::TransportConfig::default().host_key_algorithms;
    let (certs, plain): (Vec<String>, Vec<String>) =
        all.into_iter().partition(|a| a.contains("-cert-v01@"));
    let mut plain_ordered: Vec<String> = known
        .iter()
        .flat_map(algorithm_names)
        .map(str::to_string)
        .collect();
    for a in plain {
        if !plain_ordered.contains(&a) {
            plain_ordered.push(a);
        }
    }
    if authorities {
        certs.into_iter().chain(plain_ordered).collect()
    } else {
        plain_ordered.into_iter().chain(certs).collect()
    }
}

/// A byte stream to the next hop: TCP to the first, a channel through a jump host after.
trait Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Stream for T {}

/// Connects to `host` (through `proxy_jump` hops, first hop first), checks every host
/// key and authenticates to every host, all within `connect_timeout`. Returns the session
/// and the channels the server opens to us (for the remote forwards to take).
///
/// # Errors
/// [`TunnelError`] saying which step failed, and on which host.
///
/// # Cancellation
/// Dropping the future abandons the attempt; nothing outlives it.
pub(crate) async fn connect(
    cfg: &TunnelConfig,
    host: &HostPort,
    shared: Arc<SessionShared>,
) -> Result<(Session, Incoming), TunnelError> {
    let addr = host.to_string();
    let credentials = crate::auth::credentials(&cfg.identity_files, &cfg.certificate_files).await;
    let attempt = async {
        let mut hops: Vec<tunneld_ssh::Session> = Vec::new();
        let mut local_addr = None;
        let mut via: Option<String> = None;
        let stops = cfg
            .proxy_jump
            .iter()
            .map(|j| {
                (
                    j.host.as_str(),
                    j.port,
                    j.user.as_deref().unwrap_or(&cfg.user),
                )
            })
            .chain(std::iter::once((
                host.host.as_str(),
                host.port,
                cfg.user.as_str(),
            )));
        for (index, (name, port, user)) in stops.enumerate() {
            let here = HostPort {
                host: name.to_owned(),
                port,
            }
            .to_string();
            let stream: Box<dyn Stream> = match (hops.last(), &via) {
                (Some(hop), Some(through)) => {
                    let channel = hop
                        .open(OpenKind::DirectTcpip {
                            host: name.to_owned(),
                            port: u32::from(port),
                            originator: "127.0.0.1".into(),
                            originator_port: 0,
                        })
                        .await
                        .map_err(|e| TunnelError::Jump {
                            via: through.clone(),
                            to: here.clone(),
                            reason: e.to_string(),
                        })?;
                    Box::new(channel)
                }
                _ => {
                    first_hop(
                        cfg,
                        &shared.tunnel,
                        name,
                        port,
                        user,
                        &here,
                        &mut local_addr,
                    )
                    .await?
                }
            };
            let (ssh, incoming, host_key) =
                handshake(cfg, name, port, user, stream, &credentials).await?;
            let last = index == cfg.proxy_jump.len();
            if last {
                *lock(&shared.server_version) = Some(ssh.info().server_version.clone());
                watch_end(&shared, &ssh, &hops);
                let session = Session {
                    ssh,
                    shared: Arc::clone(&shared),
                    host_key,
                    hops,
                    local_addr,
                };
                return Ok((session, incoming));
            }
            // A jump host opens no channels to us: its offers are refused as they come.
            drop(incoming);
            info!(tunnel = %shared.tunnel, hop = %here, host_key = %host_key, "jump host connected");
            hops.push(ssh);
            via = Some(here);
        }
        unreachable!("the host itself is the last stop")
    };
    match tokio::time::timeout(cfg.connect_timeout, attempt).await {
        Ok(r) => r,
        Err(_) => Err(TunnelError::Timeout {
            addr,
            after: cfg.connect_timeout,
        }),
    }
}

/// The byte stream to the first hop: a TCP connection of our own, one a proxy opened,
/// or a proxy command's stdin and stdout. Sets `local_addr` to our end of the TCP
/// connection (to the server or to the proxy) when there is one.
async fn first_hop(
    cfg: &TunnelConfig,
    tunnel: &str,
    name: &str,
    port: u16,
    user: &str,
    here: &str,
    local_addr: &mut Option<std::net::IpAddr>,
) -> Result<Box<dyn Stream>, TunnelError> {
    let tcp = match cfg.proxy.proxy.as_ref().and_then(|p| p.route(name)) {
        Some(ProxyRoute::Command(template)) => {
            let command = tunneld_config::expand_command(template, name, port, user);
            let stream =
                crate::proxy_command::spawn(tunnel, &command).map_err(|e| TunnelError::Proxy {
                    proxy: format!("command \"{command}\""),
                    reason: format!("cannot start /bin/sh: {e}"),
                    auth: false,
                })?;
            return Ok(Box::new(stream));
        }
        Some(ProxyRoute::Url(url)) => crate::proxy::connect(cfg, url, name, port).await?,
        None => TcpStream::connect((name, port))
            .await
            .map_err(|source| TunnelError::Connect {
                addr: here.to_owned(),
                source,
            })?,
    };
    tune_socket(&tcp, cfg);
    *local_addr = tcp.local_addr().ok().map(|a| a.ip());
    Ok(Box::new(tcp))
}

/// Publishes the session's end on `shared` (its reason, then `closed`), and ends the
/// session and its jump hosts at once when `kill` fires.
fn watch_end(
    shared: &Arc<SessionShared>,
    ssh: &tunneld_ssh::Session,
    hops: &[tunneld_ssh::Session],
) {
    let shared = Arc::clone(shared);
    let ssh = ssh.clone();
    let hops = hops.to_vec();
    tokio::spawn(async move {
        let why = tokio::select! {
            why = ssh.closed() => why,
            _ = shared.kill.cancelled() => {
                ssh.kill();
                ssh.closed().await
            }
        };
        for hop in &hops {
            hop.kill();
        }
        *lock(&shared.end_reason) = Some(why.to_string());
        shared.closed.cancel();
    });
}

/// One SSH handshake over `stream`: key exchange, host key check against known_hosts
/// for `host:port`, authentication as `user`. Returns the session, the channels the
/// server offers, and the accepted key.
async fn handshake(
    cfg: &TunnelConfig,
    host: &str,
    port: u16,
    user: &str,
    stream: Box<dyn Stream>,
    credentials: &crate::auth::Credentials,
) -> Result<(tunneld_ssh::Session, Incoming, String), TunnelError> {
    let name = known_hosts::lookup_name(host, port);
    let known = known_hosts::known_algorithms(&cfg.known_hosts, &name);
    let authorities = known_hosts::cert_authorities(&cfg.known_hosts, &name);
    let mut config = tunneld_ssh::Config::default();
    config.transport.host_key_algorithms = host_key_algorithms(&known, !authorities.is_empty());
    let accepted = Arc::new(Mutex::new(None));
    let trusted_by_line = Arc::new(Mutex::new(None));
    let check = HostCheck {
        files: cfg.known_hosts.clone(),
        name: name.clone(),
        principal: host.to_ascii_lowercase(),
        authorities,
        mode: cfg.strict_host_key_checking,
        accepted: Arc::clone(&accepted),
        trusted_by_line: Arc::clone(&trusted_by_line),
    };
    let connected = tunneld_ssh::connect(
        stream,
        config,
        user,
        &credentials.list,
        Box::new(move |key: &HostKey| check.decide(key)),
    )
    .await;
    let (ssh, incoming) = match connected {
        Ok(s) => s,
        Err(ConnectError::Transport(TransportError::HostKeyRejected(reason))) => {
            return Err(TunnelError::HostKey { host: name, reason });
        }
        Err(ConnectError::Auth(e)) => {
            return Err(TunnelError::Auth {
                user: user.to_owned(),
                host: HostPort {
                    host: host.to_owned(),
                    port,
                }
                .to_string(),
                reason: crate::auth::failure(&e, credentials),
            });
        }
        Err(e) => return Err(TunnelError::Ssh(e.to_string())),
    };
    let host_key = lock(&accepted).take().unwrap_or_default();
    match lock(&trusted_by_line).take() {
        Some(key) if cfg.update_host_keys => {
            let trusted = crate::key_rotation::Trusted {
                tunnel: Arc::from(cfg.name.as_str()),
                files: cfg.known_hosts.clone(),
                name,
                key,
            };
            tokio::spawn(crate::key_rotation::follow(
                ssh.host_key_announcement(),
                trusted,
            ));
        }
        Some(_) => {}
        None if cfg.update_host_keys => {
            tracing::debug!(tunnel = %cfg.name, host = %name, "host key not trusted through a known_hosts line; update_host_keys does not apply");
        }
        None => {}
    }
    Ok((ssh, incoming, host_key))
}

impl crate::heartbeat::Probe for Session {
    async fn ping(&self) -> bool {
        self.ssh.ping().await.is_ok()
    }

    fn last_heard(&self) -> tokio::time::Instant {
        tokio::time::Instant::from_std(self.ssh.last_heard())
    }
}

/// Unsent bytes the kernel may hold on the SSH socket. The rest waits in the session's own
/// output, which takes channel data only while less than 256 KiB are queued there; so on a
/// slow uplink a heartbeat or a window adjust waits behind about 384 KiB, not behind the
/// kernel's whole send buffer (megabytes: half a minute at 1 Mbit/s, enough for a false
/// "dead peer").
const NOTSENT_LOWAT_BYTES: libc::c_int = 128 * 1024;

/// The SSH socket's options: no Nagle delay (keystrokes and heartbeats go at once), the
/// unsent-data bound above, and `TCP_USER_TIMEOUT` at the heartbeat window, so data left
/// unacknowledged that long fails the session as the heartbeats would.
fn tune_socket(tcp: &TcpStream, cfg: &TunnelConfig) {
    use std::os::fd::AsRawFd;
    tcp.set_nodelay(true).ok();
    let fd = tcp.as_raw_fd();
    let set = |option: libc::c_int, value: libc::c_int| {
        // SAFETY: setsockopt on an open socket with a pointer to a c_int and its size.
        let rc = unsafe {
            libc::setsockopt(
                fd,
                libc::IPPROTO_TCP,
                option,
                std::ptr::from_ref(&value).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            tracing::debug!(option, error = %std::io::Error::last_os_error(), "setsockopt");
        }
    };
    set(libc::TCP_NOTSENT_LOWAT, NOTSENT_LOWAT_BYTES);
    let window = cfg.server_alive_interval * cfg.server_alive_count_max.max(1);
    if !window.is_zero() {
        let ms = libc::c_int::try_from(window.as_millis()).unwrap_or(libc::c_int::MAX);
        set(libc::TCP_USER_TIMEOUT, ms);
    }
}
