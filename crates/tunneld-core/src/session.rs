//! One SSH session to the server: handshake, host key check, authentication, and the
//! russh handler that routes the server's `forwarded-tcpip` channels to their targets.

use std::borrow::Cow;
use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use russh::client::{self, Handle, Msg};
use russh::keys::{Algorithm, HashAlg, PublicKey, PublicKeyOrCertificate};
use russh::{Channel, ChannelOpenFailure};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use tokio_util::sync::WaitForCancellationFutureOwned;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};
use tunneld_config::{Endpoint, HostPort, StrictHostKeyChecking, TunnelConfig};

use crate::error::{HandlerError, TunnelError};
use crate::forward::remote;
use crate::known_hosts::{self, Verdict};
use crate::status::ForwardCounters;

/// Where a channel the server opens for one of our remote listeners goes.
#[derive(Clone)]
pub(crate) struct Route {
    /// The local target; `None` makes the listener a reverse SOCKS proxy.
    pub target: Option<Endpoint>,
    /// The forward's counters.
    pub counters: Arc<ForwardCounters>,
    /// The forward's spec, for logs.
    pub spec: Arc<str>,
}

/// Remote listeners the server holds for us, keyed as the server reports them back.
#[derive(Default)]
pub(crate) struct Routes {
    /// `(bind address as sent, port as bound)`.
    pub tcp: HashMap<(String, u32), Route>,
    /// Server-side socket path.
    pub unix: HashMap<String, Route>,
}

/// State shared between a session's handler (running inside russh's session task) and
/// the tunnel that owns the session.
pub(crate) struct SessionShared {
    /// The tunnel's name, for logs.
    pub tunnel: Arc<str>,
    /// Remote forward routing table.
    pub routes: Mutex<Routes>,
    /// Fired when russh's session task ends, whatever the path (the handler is dropped then).
    pub closed: CancellationToken,
    /// Cancels the connections the server opened to us; a child of the tunnel's token.
    pub conn_cancel: CancellationToken,
    /// Tracks those connections.
    pub conn_tracker: TaskTracker,
    /// How long to wait for a local target to accept.
    pub connect_timeout: Duration,
    /// How long one connection's local reader may stall the session.
    pub stall: Duration,
    /// Cuts the session's TCP connection (a dead peer never answers a polite disconnect,
    /// and russh's session task would wait on it for as long as TCP retransmits).
    pub kill: CancellationToken,
    /// The server's identification string (`SSH-2.0-OpenSSH_9.2p1 ...`), for the log.
    pub server_version: Mutex<Option<String>>,
    /// Why the session ended, when russh says: the server's disconnect message or the
    /// transport error. Set before `closed` fires.
    pub end_reason: Mutex<Option<String>>,
    /// Where reverse SOCKS forwards may connect.
    pub permit_remote_open: tunneld_config::PermitRemoteOpen,
}

impl SessionShared {
    /// The state for the session to a jump host on the way: the same tunnel, kill and
    /// close signals (a jump host that goes away ends the session through it), nothing
    /// routed to it.
    fn for_hop(&self) -> Arc<SessionShared> {
        Arc::new(SessionShared {
            tunnel: Arc::clone(&self.tunnel),
            routes: Mutex::default(),
            closed: self.closed.clone(),
            conn_cancel: self.conn_cancel.clone(),
            conn_tracker: self.conn_tracker.clone(),
            connect_timeout: self.connect_timeout,
            stall: self.stall,
            kill: self.kill.clone(),
            server_version: Mutex::default(),
            end_reason: Mutex::default(),
            permit_remote_open: tunneld_config::PermitRemoteOpen::Only(Vec::new()),
        })
    }
}

/// Our russh client handler.
pub(crate) struct ClientHandler {
    shared: Arc<SessionShared>,
    host_check: HostCheck,
    /// Channels of kinds we never asked for, refused so far (logged at the first).
    unrequested: u64,
}

struct HostCheck {
    files: Vec<PathBuf>,
    name: String,
    /// The host name a host certificate must list as a principal.
    principal: String,
    /// CA keys of the `@cert-authority` lines for this host.
    authorities: Vec<PublicKey>,
    mode: StrictHostKeyChecking,
    /// Why the key was refused, for the error the caller reports.
    failure: Arc<Mutex<Option<String>>>,
    /// The accepted key's type and SHA-256 fingerprint, for the "connected" log line.
    accepted: Arc<Mutex<Option<String>>>,
}

impl Drop for ClientHandler {
    fn drop(&mut self) {
        self.shared.closed.cancel();
    }
}

impl HostCheck {
    /// A host certificate against the `@cert-authority` lines for this host: `None`
    /// when there are none, else the signing CA's fingerprint or why it is refused.
    fn verify_certificate(
        &self,
        cert: &russh::keys::Certificate,
    ) -> Option<Result<String, String>> {
        if self.authorities.is_empty() {
            return None;
        }
        let public = PublicKey::from(cert.public_key().clone());
        if let Verdict::Revoked { file, line } =
            known_hosts::check(&self.files, &self.name, &public)
        {
            return Some(Err(format!(
                "the server's certified key is marked @revoked ({}:{line})",
                file.display()
            )));
        }
        let fingerprints: Vec<_> = self
            .authorities
            .iter()
            .map(|ca| ca.fingerprint(HashAlg::Sha256))
            .collect();
        let verdict = if cert.cert_type() != russh::keys::ssh_key::certificate::CertType::Host {
            Err("the server presented a user certificate as its host key".to_string())
        } else if let Err(e) = cert.validate(fingerprints.iter()) {
            Err(format!(
                "host certificate not accepted: {e} (trusted authorities for {}: {})",
                self.name,
                fingerprints
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        } else if !cert
            .valid_principals()
            .iter()
            .any(|p| p.eq_ignore_ascii_case(&self.principal))
        {
            Err(format!(
                "host certificate is not valid for {} (principals: {})",
                self.principal,
                cert.valid_principals().join(", ")
            ))
        } else {
            let ca = PublicKey::from(cert.signature_key().clone());
            Ok(ca.fingerprint(HashAlg::Sha256).to_string())
        };
        Some(verdict)
    }

    fn verify(&self, key: &PublicKey) -> Result<(), String> {
        let fingerprint = key.fingerprint(HashAlg::Sha256);
        let verdict = known_hosts::check(&self.files, &self.name, key);
        match (verdict, self.mode) {
            (Verdict::Revoked { file, line }, _) => Err(format!(
                "the server's {} key {fingerprint} is marked @revoked ({}:{line})",
                key.algorithm(),
                file.display()
            )),
            (Verdict::Trusted, _) => Ok(()),
            (Verdict::Changed { file, line }, StrictHostKeyChecking::No) => {
                warn!(host = %self.name, %fingerprint, known = %format!("{}:{line}", file.display()),
                      "host key does not match known_hosts; accepted because strict_host_key_checking = \"no\"");
                Ok(())
            }
            (Verdict::Changed { file, line }, _) => Err(format!(
                "REMOTE HOST IDENTIFICATION HAS CHANGED: the server offered {} key {fingerprint}, \
                 which does not match {}:{line}; someone may be intercepting the connection, or the \
                 host key was replaced (check it, then fix that line)",
                key.algorithm(),
                file.display()
            )),
            (Verdict::Unknown, StrictHostKeyChecking::Yes) => Err(format!(
                "no {} key for {} in {}: the server offered {fingerprint}; add it (e.g. \
                 ssh-keyscan), or set strict_host_key_checking = \"accept-new\"",
                key.algorithm(),
                self.name,
                self.files
                    .iter()
                    .map(|f| f.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
            (Verdict::Unknown, StrictHostKeyChecking::AcceptNew) => {
                let Some(file) = self.files.first() else {
                    return Err("accept-new needs a known_hosts file to record the key in".into());
                };
                let recorded =
                    known_hosts::record(&self.files, file, &self.name, key).map_err(|e| {
                        format!("cannot record the new host key in {}: {e}", file.display())
                    })?;
                match recorded {
                    Verdict::Unknown => {
                        info!(host = %self.name, %fingerprint, file = %file.display(), "new host key recorded (accept-new)");
                        Ok(())
                    }
                    Verdict::Trusted => Ok(()),
                    // Another tunnel recorded a different key for this host meanwhile.
                    Verdict::Changed { file, line } | Verdict::Revoked { file, line } => {
                        Err(format!(
                            "the server's {} key {fingerprint} does not match the key just recorded for it by another tunnel ({}:{line})",
                            key.algorithm(),
                            file.display()
                        ))
                    }
                }
            }
            (Verdict::Unknown, StrictHostKeyChecking::No) => {
                warn!(host = %self.name, %fingerprint,
                      "unknown host key accepted because strict_host_key_checking = \"no\"");
                Ok(())
            }
        }
    }
}

impl client::Handler for ClientHandler {
    type Error = HandlerError;

    async fn disconnected(
        &mut self,
        reason: client::DisconnectReason<Self::Error>,
    ) -> Result<(), Self::Error> {
        let (text, result) = match reason {
            client::DisconnectReason::ReceivedDisconnect(info) => (
                format!(
                    "server disconnected: {} ({:?})",
                    info.message.trim(),
                    info.reason_code
                ),
                Ok(()),
            ),
            client::DisconnectReason::Error(e) => (describe_transport_error(&e), Err(e)),
        };
        *self
            .shared
            .end_reason
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(text);
        result
    }

    async fn check_server_key(
        &mut self,
        key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let checked = match key {
            PublicKeyOrCertificate::PublicKey { key, .. } => {
                self.host_check.verify(key).map(|()| key.clone())
            }
            PublicKeyOrCertificate::Certificate(cert) => {
                let public = PublicKey::from(cert.public_key().clone());
                match self.host_check.verify_certificate(cert) {
                    Some(Ok(ca)) => {
                        info!(host = %self.host_check.name, ca = %ca, "host certificate signed by a trusted authority");
                        Ok(public)
                    }
                    Some(Err(reason)) => Err(reason),
                    // Without a @cert-authority line OpenSSH checks the certified key itself.
                    None => self.host_check.verify(&public).map(|()| public),
                }
            }
        };
        match checked {
            Ok(public) => {
                let seen = format!(
                    "{} {}",
                    public.algorithm(),
                    public.fingerprint(HashAlg::Sha256)
                );
                *self
                    .host_check
                    .accepted
                    .lock()
                    .unwrap_or_else(|e| e.into_inner()) = Some(seen);
                Ok(true)
            }
            Err(reason) => {
                *self
                    .host_check
                    .failure
                    .lock()
                    .unwrap_or_else(|e| e.into_inner()) = Some(reason);
                Ok(false)
            }
        }
    }

    async fn openssh_ext_host_keys_announced(
        &mut self,
        _keys: Vec<PublicKey>,
        session: &mut client::Session,
    ) -> Result<(), Self::Error> {
        // OpenSSH announces its keys right after authentication: a good moment to note
        // who we are talking to. The keys themselves are not trusted or used.
        let id = String::from_utf8_lossy(session.remote_sshid())
            .trim()
            .to_string();
        *self
            .shared
            .server_version
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(id);
        Ok(())
    }

    async fn server_channel_open_forwarded_tcpip(
        &mut self,
        channel: Channel<Msg>,
        connected_address: &str,
        connected_port: u32,
        originator_address: &str,
        originator_port: u32,
        reply: client::ChannelOpenHandle,
        _session: &mut client::Session,
    ) -> Result<(), Self::Error> {
        let route = {
            let routes = self.shared.routes.lock().unwrap_or_else(|e| e.into_inner());
            routes
                .tcp
                .get(&(connected_address.to_string(), connected_port))
                .or_else(|| {
                    // Servers may report the address differently from how we asked
                    // ("localhost" vs "127.0.0.1"): fall back to a unique port match.
                    let mut by_port = routes.tcp.iter().filter(|((_, p), _)| *p == connected_port);
                    match (by_port.next(), by_port.next()) {
                        (Some((_, r)), None) => Some(r),
                        _ => None,
                    }
                })
                .cloned()
        };
        let Some(route) = route else {
            warn!(tunnel = %self.shared.tunnel, address = connected_address, port = connected_port,
                  "server opened a channel for a listener we did not request; rejected");
            reply
                .reject(ChannelOpenFailure::AdministrativelyProhibited)
                .await;
            return Ok(());
        };
        let origin = format!("{originator_address}:{originator_port}");
        remote::spawn_incoming(&self.shared, route, channel, reply, origin);
        Ok(())
    }

    async fn server_channel_open_forwarded_streamlocal(
        &mut self,
        channel: Channel<Msg>,
        socket_path: &str,
        reply: client::ChannelOpenHandle,
        _session: &mut client::Session,
    ) -> Result<(), Self::Error> {
        let route = self
            .shared
            .routes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .unix
            .get(socket_path)
            .cloned();
        let Some(route) = route else {
            warn!(tunnel = %self.shared.tunnel, path = socket_path,
                  "server opened a channel for a socket we did not request; rejected");
            reply
                .reject(ChannelOpenFailure::AdministrativelyProhibited)
                .await;
            return Ok(());
        };
        remote::spawn_incoming(&self.shared, route, channel, reply, socket_path.to_string());
        Ok(())
    }

    // Channels we never ask for. russh's defaults accept them and then leave them open
    // with nobody reading: a hostile server could pile them up. OpenSSH's client refuses
    // what it did not request; so do we.

    async fn server_channel_open_session(
        &mut self,
        _channel: Channel<Msg>,
        reply: client::ChannelOpenHandle,
        _session: &mut client::Session,
    ) -> Result<(), Self::Error> {
        self.refuse_unrequested("session", reply).await;
        Ok(())
    }

    async fn server_channel_open_direct_tcpip(
        &mut self,
        _channel: Channel<Msg>,
        _host_to_connect: &str,
        _port_to_connect: u32,
        _originator_address: &str,
        _originator_port: u32,
        reply: client::ChannelOpenHandle,
        _session: &mut client::Session,
    ) -> Result<(), Self::Error> {
        self.refuse_unrequested("direct-tcpip", reply).await;
        Ok(())
    }

    async fn server_channel_open_direct_streamlocal(
        &mut self,
        _channel: Channel<Msg>,
        _socket_path: &str,
        reply: client::ChannelOpenHandle,
        _session: &mut client::Session,
    ) -> Result<(), Self::Error> {
        self.refuse_unrequested("direct-streamlocal", reply).await;
        Ok(())
    }

    async fn server_channel_open_x11(
        &mut self,
        _channel: Channel<Msg>,
        _originator_address: &str,
        _originator_port: u32,
        reply: client::ChannelOpenHandle,
        _session: &mut client::Session,
    ) -> Result<(), Self::Error> {
        self.refuse_unrequested("x11", reply).await;
        Ok(())
    }

    async fn server_channel_open_agent_forward(
        &mut self,
        _channel: Channel<Msg>,
        reply: client::ChannelOpenHandle,
        _session: &mut client::Session,
    ) -> Result<(), Self::Error> {
        self.refuse_unrequested("auth-agent", reply).await;
        Ok(())
    }
}

impl ClientHandler {
    /// Refuses a channel type the server may only open when asked (X11, agent, ...);
    /// warns once per session, so that a server opening thousands cannot flood the log.
    async fn refuse_unrequested(&mut self, kind: &str, reply: client::ChannelOpenHandle) {
        self.unrequested += 1;
        if self.unrequested == 1 {
            warn!(tunnel = %self.shared.tunnel, channel = kind,
                  "server opened a channel we did not ask for; rejected (further ones at debug level)");
        } else {
            debug!(tunnel = %self.shared.tunnel, channel = kind, count = self.unrequested,
                   "server opened a channel we did not ask for; rejected");
        }
        reply
            .reject(ChannelOpenFailure::AdministrativelyProhibited)
            .await;
    }
}

/// An established, authenticated session.
pub(crate) struct Session {
    pub handle: Handle<ClientHandler>,
    pub shared: Arc<SessionShared>,
    /// The server's host key, as `TYPE SHA256:...`.
    pub host_key: String,
    /// The sessions to the jump hosts this one runs through, first hop first; kept for
    /// as long as this one lives.
    pub hops: Vec<Handle<ClientHandler>>,
}

fn cipher_preference() -> Cow<'static, [russh::cipher::Name]> {
    use russh::cipher::{AES_128_CTR, AES_128_GCM, AES_256_CTR, AES_256_GCM, CHACHA20_POLY1305};
    #[cfg(target_arch = "x86_64")]
    let aes_in_hardware = std::arch::is_x86_feature_detected!("aes");
    #[cfg(target_arch = "aarch64")]
    let aes_in_hardware = std::arch::is_aarch64_feature_detected!("aes");
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    let aes_in_hardware = false;
    if aes_in_hardware {
        Cow::Borrowed(&[
            AES_128_GCM,
            AES_256_GCM,
            CHACHA20_POLY1305,
            AES_128_CTR,
            AES_256_CTR,
        ])
    } else {
        Cow::Borrowed(&[
            CHACHA20_POLY1305,
            AES_128_GCM,
            AES_256_GCM,
            AES_128_CTR,
            AES_256_CTR,
        ])
    }
}

/// `authorities`: known_hosts has `@cert-authority` lines for this host, so ask for a
/// host certificate first (as ssh does).
fn ssh_config(known: Vec<Algorithm>, authorities: bool) -> client::Config {
    let mut preferred = russh::Preferred {
        cipher: cipher_preference(),
        ..Default::default()
    };
    if authorities {
        preferred.host_key_certificates = preferred.key.clone();
    }
    if !known.is_empty() {
        // Ask for the key types we can verify first, as OpenSSH does.
        let mut keys = known;
        for alg in preferred.key.iter() {
            if !keys.contains(alg) {
                keys.push(alg.clone());
            }
        }
        preferred.key = Cow::Owned(keys);
    }
    client::Config {
        client_id: russh::SshId::Standard(Cow::Borrowed(concat!(
            "SSH-2.0-tunneld_",
            env!("CARGO_PKG_VERSION")
        ))),
        preferred,
        // Heartbeats are ours (see `heartbeat`): russh's wait one interval longer.
        keepalive_interval: None,
        inactivity_timeout: None,
        // Without it new connections through a forward crawl (Nagle + delayed ACK).
        nodelay: true,
        limits: rekey_limits(),
        ..Default::default()
    }
}

/// What a session-ending error means, in the words an operator needs.
fn describe_transport_error(e: &HandlerError) -> String {
    match e {
        HandlerError::Ssh(russh::Error::HUP) => {
            "connection closed by the server or the network".to_string()
        }
        HandlerError::Ssh(russh::Error::IO(io)) => format!("connection lost: {io}"),
        HandlerError::Ssh(russh::Error::Pending) => {
            "more data in flight during a key re-exchange than russh buffers".to_string()
        }
        HandlerError::Ssh(other) => format!("ssh protocol error: {other}"),
    }
}

/// Bytes either way after which we start a rekey ourselves: a backstop only.
///
/// sshd rekeys both directions after 2^32 cipher blocks (64 GiB) with AES and after 1 GiB
/// with chacha20-poly1305 (RFC 4344 3.2), or sooner by its `RekeyLimit`, and russh follows
/// such a rekey without a hitch. A rekey russh starts itself is another matter: until the
/// server's KEXINIT arrives it accepts no more than two channel windows of data still in
/// flight, across all channels, and drops the session beyond that. A few busy channels
/// have more in flight than that, so a client-side limit at or under the server's turns a
/// long bulk transfer into a reconnect. Twice the largest server default leaves the server
/// to go first.
const REKEY_BACKSTOP_BYTES: u64 = 128 << 30;

/// Rekey limits: the server drives rekeys (see [`REKEY_BACKSTOP_BYTES`]); like `ssh`
/// (`RekeyLimit default none`), no rekey on time alone.
fn rekey_limits() -> russh::Limits {
    let bytes = usize::try_from(REKEY_BACKSTOP_BYTES).unwrap_or(usize::MAX);
    russh::Limits {
        rekey_write_limit: bytes,
        rekey_read_limit: bytes,
        rekey_time_limit: Duration::MAX,
    }
}

/// Connects to `host` (through `proxy_jump` hops, first hop first), checks every host
/// key and authenticates to every host, all within `connect_timeout`.
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
) -> Result<Session, TunnelError> {
    let addr = host.to_string();
    let attempt = async {
        let mut hops: Vec<Handle<ClientHandler>> = Vec::new();
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
            let transport = match (hops.last(), &via) {
                (Some(hop), Some(through)) => {
                    let channel = hop
                        .channel_open_direct_tcpip(name, u32::from(port), "127.0.0.1", 0)
                        .await
                        .map_err(|e| TunnelError::Jump {
                            via: through.clone(),
                            to: here.clone(),
                            reason: e.to_string(),
                        })?;
                    Killable::boxed(Box::pin(channel.into_stream()), shared.kill.clone())
                }
                _ => {
                    let tcp = TcpStream::connect((name, port)).await.map_err(|source| {
                        TunnelError::Connect {
                            addr: here.clone(),
                            source,
                        }
                    })?;
                    tcp.set_nodelay(true).ok();
                    Killable::new(tcp, shared.kill.clone())
                }
            };
            let last = index == cfg.proxy_jump.len();
            let hop_shared = if last {
                Arc::clone(&shared)
            } else {
                shared.for_hop()
            };
            let (handle, host_key) =
                handshake(cfg, name, port, user, transport, hop_shared).await?;
            if last {
                return Ok(Session {
                    handle,
                    shared: Arc::clone(&shared),
                    host_key,
                    hops,
                });
            }
            info!(tunnel = %shared.tunnel, hop = %here, host_key = %host_key, "jump host connected");
            hops.push(handle);
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

/// One SSH handshake over `transport`: key exchange, host key check against known_hosts
/// for `host:port`, authentication as `user`. Returns the handle and the accepted key.
async fn handshake(
    cfg: &TunnelConfig,
    host: &str,
    port: u16,
    user: &str,
    transport: Killable,
    shared: Arc<SessionShared>,
) -> Result<(Handle<ClientHandler>, String), TunnelError> {
    let name = known_hosts::lookup_name(host, port);
    let known = known_hosts::known_algorithms(&cfg.known_hosts, &name);
    let authorities = known_hosts::cert_authorities(&cfg.known_hosts, &name);
    let config = Arc::new(ssh_config(known, !authorities.is_empty()));
    let failure = Arc::new(Mutex::new(None));
    let accepted = Arc::new(Mutex::new(None));
    let handler = ClientHandler {
        shared,
        host_check: HostCheck {
            files: cfg.known_hosts.clone(),
            name: name.clone(),
            principal: host.to_ascii_lowercase(),
            authorities,
            mode: cfg.strict_host_key_checking,
            failure: Arc::clone(&failure),
            accepted: Arc::clone(&accepted),
        },
        unrequested: 0,
    };

    let mut handle = match client::connect_stream(config, transport, handler).await {
        Ok(h) => h,
        Err(e) => {
            if let Some(reason) = failure.lock().unwrap_or_else(|e| e.into_inner()).take() {
                return Err(TunnelError::HostKey { host: name, reason });
            }
            return Err(match e {
                HandlerError::Ssh(e) => TunnelError::Ssh(e),
            });
        }
    };
    crate::auth::authenticate(
        &mut handle,
        user,
        &cfg.identity_files,
        &cfg.certificate_files,
    )
    .await
    .map_err(|reason| TunnelError::Auth {
        user: user.to_owned(),
        host: HostPort {
            host: host.to_owned(),
            port,
        }
        .to_string(),
        reason,
    })?;
    let host_key = accepted
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take()
        .unwrap_or_default();
    Ok((handle, host_key))
}

impl crate::heartbeat::Probe for Session {
    async fn ping(&self) -> bool {
        // send_ping also returns Ok when the session dies with the probe pending.
        self.handle.send_ping().await.is_ok() && !self.handle.is_closed()
    }
}

/// Bytes read from the server's socket ahead of russh, which asks for each packet in two
/// exact reads (its length, then the rest): one system call then serves several packets.
const READ_AHEAD_BYTES: usize = 64 * 1024;
/// The read-ahead buffer of a session that is not busy: enough for heartbeats and
/// handshake packets.
const READ_AHEAD_IDLE_BYTES: usize = 4 * 1024;
/// A fill at least this large, or one that filled the buffer, means the session is busy.
/// A session that is not busy holds no buffer while it waits, so idle sessions cost none.
const READ_AHEAD_BUSY_BYTES: usize = 16 * 1024;

/// A TCP stream whose every read and write fails once `kill` is cancelled, waking any
/// that is pending: the way to end a russh session stuck on a silent peer. Reads go
/// through a read-ahead buffer that exists only while data is flowing.
/// What a session runs over besides TCP: a channel through a jump host.
trait Transport: AsyncRead + AsyncWrite + Send {}
impl<T: AsyncRead + AsyncWrite + Send> Transport for T {}

enum Inner {
    Tcp(TcpStream),
    /// Message-based already: read straight through, no read-ahead.
    Other(Pin<Box<dyn Transport>>),
}

impl AsyncRead for Inner {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Inner::Tcp(t) => Pin::new(t).poll_read(cx, buf),
            Inner::Other(o) => o.as_mut().poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Inner {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Inner::Tcp(t) => Pin::new(t).poll_write(cx, buf),
            Inner::Other(o) => o.as_mut().poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Inner::Tcp(t) => Pin::new(t).poll_flush(cx),
            Inner::Other(o) => o.as_mut().poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Inner::Tcp(t) => Pin::new(t).poll_shutdown(cx),
            Inner::Other(o) => o.as_mut().poll_shutdown(cx),
        }
    }
}

struct Killable {
    inner: Inner,
    killed: Pin<Box<WaitForCancellationFutureOwned>>,
    ahead: Vec<u8>,
    /// `ahead[pos..end]` is read but not yet handed out.
    pos: usize,
    end: usize,
    /// Whether the last fill of `ahead` says data is flowing (see [`READ_AHEAD_BUSY_BYTES`]).
    busy: bool,
}

impl Killable {
    fn new(inner: TcpStream, kill: CancellationToken) -> Self {
        Self::with(Inner::Tcp(inner), kill)
    }

    fn boxed(inner: Pin<Box<dyn Transport>>, kill: CancellationToken) -> Self {
        Self::with(Inner::Other(inner), kill)
    }

    fn with(inner: Inner, kill: CancellationToken) -> Self {
        Killable {
            inner,
            killed: Box::pin(kill.cancelled_owned()),
            ahead: Vec::new(),
            pos: 0,
            end: 0,
            busy: false,
        }
    }

    fn check(&mut self, cx: &mut Context<'_>) -> std::io::Result<()> {
        match self.killed.as_mut().poll(cx) {
            Poll::Ready(()) => Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionAborted,
                "session cut: the server stopped answering",
            )),
            Poll::Pending => Ok(()),
        }
    }

    /// Nothing to read now: a session that is not busy gives its buffer back.
    fn idle(&mut self) {
        if !self.busy {
            self.ahead = Vec::new();
        }
    }

    /// Hands out what is read ahead; true if there was any.
    fn take_ahead(&mut self, buf: &mut ReadBuf<'_>) -> bool {
        if self.pos == self.end {
            return false;
        }
        let n = (self.end - self.pos).min(buf.remaining());
        buf.put_slice(&self.ahead[self.pos..self.pos + n]);
        self.pos += n;
        if self.pos == self.end {
            self.pos = 0;
            self.end = 0;
        }
        true
    }
}

impl AsyncRead for Killable {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        this.check(cx)?;
        if this.take_ahead(buf) {
            return Poll::Ready(Ok(()));
        }
        let Inner::Tcp(tcp) = &mut this.inner else {
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        };
        if buf.remaining() >= READ_AHEAD_BYTES {
            return Pin::new(tcp).poll_read(cx, buf);
        }
        // Allocate only for a read that will not wait.
        if tcp.poll_read_ready(cx)?.is_pending() {
            this.idle();
            return Poll::Pending;
        }
        let size = if this.busy {
            READ_AHEAD_BYTES
        } else {
            READ_AHEAD_IDLE_BYTES
        };
        if this.ahead.len() != size {
            this.ahead = vec![0; size];
        }
        let mut fill = ReadBuf::new(&mut this.ahead);
        match Pin::new(&mut this.inner).poll_read(cx, &mut fill) {
            Poll::Ready(Ok(())) => {
                let n = fill.filled().len();
                this.end = n;
                this.busy = n == size || n >= READ_AHEAD_BUSY_BYTES;
                // Nothing filled is end of file: `buf` stays empty, as it should.
                this.take_ahead(buf);
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                this.idle();
                Poll::Pending
            }
        }
    }
}

impl AsyncWrite for Killable {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        this.check(cx)?;
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        this.check(cx)?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn pair() -> (Killable, TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (ours, theirs) = tokio::join!(TcpStream::connect(addr), listener.accept());
        let ours = Killable::new(ours.unwrap(), CancellationToken::new());
        (ours, theirs.unwrap().0)
    }

    /// Packets as russh reads them: a 4-byte length, then exactly that many bytes.
    #[tokio::test]
    async fn read_ahead_hands_out_exactly_what_was_sent() {
        let (mut ours, mut theirs) = pair().await;
        let sizes: Vec<usize> = (0..200)
            .map(|i| [4, 1500, 32_768, 70_000, 9][i % 5])
            .collect();
        let mut sent = Vec::new();
        for (i, n) in sizes.iter().enumerate() {
            sent.extend_from_slice(&(*n as u32).to_be_bytes());
            sent.extend((0..*n).map(|j| (i * 31 + j) as u8));
        }
        let writer = tokio::spawn(async move {
            theirs.write_all(&sent).await.unwrap();
            sent
        });
        let mut got = Vec::new();
        for _ in &sizes {
            let mut len = [0u8; 4];
            ours.read_exact(&mut len).await.unwrap();
            let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
            ours.read_exact(&mut body).await.unwrap();
            got.extend_from_slice(&len);
            got.extend_from_slice(&body);
        }
        assert_eq!(got, writer.await.unwrap());
        // The peer is gone: end of file once everything was read.
        assert_eq!(ours.read(&mut [0u8; 8]).await.unwrap(), 0);
    }

    #[tokio::test]
    async fn an_idle_session_holds_no_read_ahead_buffer() {
        let (mut ours, mut theirs) = pair().await;
        theirs.write_all(&[0, 0, 0, 3, 1, 2, 3]).await.unwrap();
        let mut len = [0u8; 4];
        ours.read_exact(&mut len).await.unwrap();
        let mut body = [0u8; 3];
        ours.read_exact(&mut body).await.unwrap();
        assert_eq!(body, [1, 2, 3]);
        assert_nothing_to_read(&mut ours).await;
        assert!(ours.ahead.is_empty(), "buffer kept after a small fill");
        assert_eq!(ours.ahead.capacity(), 0);
    }

    /// Polls one read of `len` bytes, expecting it to find nothing for now.
    async fn assert_nothing_to_read(ours: &mut Killable) {
        let mut len = [0u8; 4];
        let pending = std::future::poll_fn(|cx| {
            let mut buf = ReadBuf::new(&mut len);
            Poll::Ready(Pin::new(&mut *ours).poll_read(cx, &mut buf).is_pending())
        })
        .await;
        assert!(pending);
    }

    #[tokio::test]
    async fn a_busy_session_reads_ahead_and_gives_the_buffer_back_once_quiet() {
        let (mut ours, mut theirs) = pair().await;
        let bulk = vec![7u8; 1 << 20];
        let writer = tokio::spawn({
            let bulk = bulk.clone();
            async move {
                theirs.write_all(&bulk).await.unwrap();
                theirs
            }
        });
        let mut got = vec![0u8; bulk.len()];
        let mut largest = 0;
        for chunk in got.chunks_mut(4) {
            ours.read_exact(chunk).await.unwrap();
            largest = largest.max(ours.ahead.len());
        }
        assert_eq!(got, bulk);
        assert_eq!(
            largest, READ_AHEAD_BYTES,
            "bulk data never switched to the large buffer"
        );
        let mut theirs = writer.await.unwrap();
        // Then only a heartbeat's worth: the next wait gives the buffer back.
        theirs.write_all(&[1, 2, 3]).await.unwrap();
        let mut small = [0u8; 3];
        ours.read_exact(&mut small).await.unwrap();
        assert_nothing_to_read(&mut ours).await;
        assert_eq!(ours.ahead.capacity(), 0, "buffer kept by a quiet session");
    }

    #[tokio::test]
    async fn a_kill_fails_pending_reads() {
        let (ours, _theirs) = pair().await;
        let kill = CancellationToken::new();
        let mut ours = Killable {
            killed: Box::pin(kill.clone().cancelled_owned()),
            ..ours
        };
        let read = tokio::spawn(async move { ours.read(&mut [0u8; 4]).await });
        kill.cancel();
        let err = read.await.unwrap().unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::ConnectionAborted);
    }
}
