//! The resolved layer: `[defaults]` and built-in defaults applied, forwards parsed,
//! cross-field and cross-tunnel checks (backoff bounds, listeners that would clash).

use std::collections::BTreeMap;
use std::path::PathBuf;

use toml::Spanned;

use crate::env::Env;
use crate::forward::{self, Listen, LocalBind, RemoteListen};
use crate::host::{DEFAULT_SSH_PORT, HostPort};
use crate::model::{
    Backoff, DEFAULT_CONNECT_TIMEOUT, DEFAULT_FAILOVER_AFTER, DEFAULT_LOG_LEVEL,
    DEFAULT_MAX_CONCURRENT_HANDSHAKES, DEFAULT_MAX_CONNECTIONS, DEFAULT_SERVER_ALIVE_COUNT_MAX,
    DEFAULT_SERVER_ALIVE_INTERVAL, DEFAULT_STABLE_AFTER, DEFAULT_STREAM_LOCAL_BIND_MASK,
    DEFAULT_UPDATE_HOST_KEYS, DaemonConfig, TunnelConfig,
};
use crate::proxy::{Proxy, ProxySettings};
use crate::raw::{Problems, RawBackoff, RawDaemon, RawDoc, RawProxy, RawTunnel};

/// Resolves a walked document (the main file's tables and the included files' tunnels;
/// `include` holds the patterns already made absolute). Problems are added to `p`; the
/// result is only meaningful when `p` stays empty. A name defined twice must have been
/// reported already: the first definition is kept.
pub(crate) fn resolve(
    doc: RawDoc,
    include: Vec<PathBuf>,
    env: &Env,
    p: &mut Problems,
) -> (DaemonConfig, BTreeMap<String, TunnelConfig>) {
    let daemon = daemon(doc.daemon, include, env);
    p.in_file(0);
    let defaults_backoff = merge_backoff(Backoff::default(), doc.defaults.backoff.as_ref(), p);
    let mut listeners = Listeners::default();
    let mut tunnels = BTreeMap::new();
    for (name, raw) in &doc.tunnels {
        if tunnels.contains_key(name.get_ref()) {
            continue;
        }
        p.in_file(raw.file);
        if let Some(t) = tunnel(
            name,
            raw,
            &doc.defaults,
            defaults_backoff,
            env,
            &mut listeners,
            p,
        ) {
            tunnels.insert(t.name.clone(), t);
        }
    }
    listeners.check(p);
    (daemon, tunnels)
}

fn daemon(raw: RawDaemon, include: Vec<PathBuf>, env: &Env) -> DaemonConfig {
    DaemonConfig {
        include,
        socket: raw.socket.unwrap_or_else(|| env.default_socket()),
        socket_group: raw.socket_group,
        watch: raw.watch.unwrap_or(false),
        metrics: raw.metrics,
        log_level: raw
            .log_level
            .unwrap_or_else(|| DEFAULT_LOG_LEVEL.to_owned()),
        max_concurrent_handshakes: raw
            .max_concurrent_handshakes
            .unwrap_or(DEFAULT_MAX_CONCURRENT_HANDSHAKES),
    }
}

/// Applies the fields written in `raw` over `base`, and checks `max >= initial`
/// (reported at `raw`, the table that made it so).
fn merge_backoff(base: Backoff, raw: Option<&Spanned<RawBackoff>>, p: &mut Problems) -> Backoff {
    let Some(raw) = raw else {
        return base;
    };
    let r = raw.get_ref();
    let b = Backoff {
        initial: r.initial.unwrap_or(base.initial),
        max: r.max.unwrap_or(base.max),
        multiplier: r.multiplier.unwrap_or(base.multiplier),
        jitter: r.jitter.unwrap_or(base.jitter),
    };
    if b.max < b.initial {
        p.push(
            raw.span(),
            format!(
                "backoff max ({:?}) is less than initial ({:?}); raise max or lower initial",
                b.max, b.initial
            ),
        );
    }
    b
}

fn tunnel(
    name: &Spanned<String>,
    raw: &RawTunnel,
    defaults: &RawTunnel,
    defaults_backoff: Backoff,
    env: &Env,
    listeners: &mut Listeners,
    p: &mut Problems,
) -> Option<TunnelConfig> {
    let n = name.get_ref();
    if !raw.has_host {
        p.push(
            name.span(),
            format!("tunnel \"{n}\" has no host; add host = \"server.example.com\""),
        );
    }
    if raw.forward_entries == 0 {
        let why = if raw.has_forward_key {
            "has only empty forward lists; add at least one forward"
        } else {
            "has no forwards; add local, remote or dynamic"
        };
        p.push(name.span(), format!("tunnel \"{n}\" {why}"));
    }
    let user = raw
        .user
        .clone()
        .or_else(|| defaults.user.clone())
        .or_else(|| env.user.clone());
    if user.is_none() {
        p.push(
            name.span(),
            format!("tunnel \"{n}\": cannot tell the current user name ($USER is not set); set user in the tunnel or in [defaults]"),
        );
    }
    let port = raw.port.or(defaults.port).unwrap_or(DEFAULT_SSH_PORT);
    let hosts = raw
        .host
        .iter()
        .map(|(host, p)| HostPort {
            host: host.clone(),
            port: p.unwrap_or(port),
        })
        .collect();
    let gateway_ports = raw
        .gateway_ports
        .or(defaults.gateway_ports)
        .unwrap_or(false);

    let mut local = Vec::new();
    for spec in &raw.local {
        match forward::parse_local(spec.get_ref(), gateway_ports) {
            Ok(f) => {
                let key = match &f.listen {
                    Listen::Tcp { bind, port } => ListenKey::Tcp(bind.clone(), *port),
                    Listen::Unix(path) => ListenKey::Unix(path.clone()),
                };
                listeners.add(raw.file, spec, n, "local", key);
                local.push(f);
            }
            Err(e) => p.push(spec.span(), e),
        }
    }
    let mut dynamic = Vec::new();
    for spec in &raw.dynamic {
        match forward::parse_dynamic(spec.get_ref(), gateway_ports) {
            Ok(f) => {
                let key = ListenKey::Tcp(f.bind.clone(), f.port);
                listeners.add(raw.file, spec, n, "dynamic", key);
                dynamic.push(f);
            }
            Err(e) => p.push(spec.span(), e),
        }
    }
    let mut remote: Vec<forward::RemoteForward> = Vec::new();
    for spec in &raw.remote {
        match forward::parse_remote(spec.get_ref()) {
            Ok(f) => {
                let allocated = matches!(f.listen, RemoteListen::Tcp { port: 0, .. });
                if let Some(earlier) = remote
                    .iter()
                    .find(|e| e.listen == f.listen)
                    .filter(|_| !allocated)
                {
                    p.push(
                        spec.span(),
                        format!(
                            "remote forward \"{}\" asks the server for the same listener as \"{}\"; change one of them",
                            f.spec, earlier.spec
                        ),
                    );
                }
                remote.push(f);
            }
            Err(e) => p.push(spec.span(), e),
        }
    }

    let proxy = resolve_proxy(n, raw, defaults, env, p);
    let backoff = merge_backoff(defaults_backoff, raw.backoff.as_ref(), p);
    let pick =
        |mine: Option<std::time::Duration>, theirs, builtin| mine.or(theirs).unwrap_or(builtin);
    Some(TunnelConfig {
        name: n.clone(),
        hosts,
        user: user?,
        identity_files: raw
            .identity_file
            .clone()
            .or_else(|| defaults.identity_file.clone())
            .unwrap_or_default(),
        certificate_files: raw
            .certificate_file
            .clone()
            .or_else(|| defaults.certificate_file.clone())
            .unwrap_or_default(),
        known_hosts: raw
            .known_hosts
            .clone()
            .or_else(|| defaults.known_hosts.clone())
            .unwrap_or_else(|| env.default_known_hosts()),
        strict_host_key_checking: raw
            .strict_host_key_checking
            .or(defaults.strict_host_key_checking)
            .unwrap_or_default(),
        server_alive_interval: pick(
            raw.server_alive_interval,
            defaults.server_alive_interval,
            DEFAULT_SERVER_ALIVE_INTERVAL,
        ),
        server_alive_count_max: raw
            .server_alive_count_max
            .or(defaults.server_alive_count_max)
            .unwrap_or(DEFAULT_SERVER_ALIVE_COUNT_MAX),
        failover_after: raw
            .failover_after
            .or(defaults.failover_after)
            .unwrap_or(DEFAULT_FAILOVER_AFTER),
        max_connections: raw
            .max_connections
            .or(defaults.max_connections)
            .unwrap_or(DEFAULT_MAX_CONNECTIONS),
        connect_timeout: pick(
            raw.connect_timeout,
            defaults.connect_timeout,
            DEFAULT_CONNECT_TIMEOUT,
        ),
        backoff,
        stable_after: pick(
            raw.stable_after,
            defaults.stable_after,
            DEFAULT_STABLE_AFTER,
        ),
        gateway_ports,
        local,
        remote,
        dynamic,
        proxy_jump: raw
            .proxy_jump
            .clone()
            .or_else(|| defaults.proxy_jump.clone())
            .unwrap_or_default(),
        stream_local_bind_unlink: raw
            .stream_local_bind_unlink
            .or(defaults.stream_local_bind_unlink)
            .unwrap_or(true),
        stream_local_bind_mask: raw
            .stream_local_bind_mask
            .or(defaults.stream_local_bind_mask)
            .unwrap_or(DEFAULT_STREAM_LOCAL_BIND_MASK),
        permit_remote_open: raw
            .permit_remote_open
            .clone()
            .or_else(|| defaults.permit_remote_open.clone())
            .unwrap_or_default(),
        proxy,
        update_host_keys: raw
            .update_host_keys
            .or(defaults.update_host_keys)
            .unwrap_or(DEFAULT_UPDATE_HOST_KEYS),
        on_state_change: raw
            .on_state_change
            .clone()
            .or_else(|| defaults.on_state_change.clone())
            .unwrap_or_default(),
    })
}

/// `proxy` / `proxy_command` and `proxy_password_file`, the tunnel's over `[defaults]`:
/// a user in the URL needs the password file, and the password file needs a user.
fn resolve_proxy(
    n: &str,
    raw: &RawTunnel,
    defaults: &RawTunnel,
    env: &Env,
    p: &mut Problems,
) -> ProxySettings {
    // A value taken from [defaults] is reported where it is written: in the main file.
    let from_defaults = |mine: bool| if mine { raw.file } else { 0 };
    let Some(chosen) = raw.proxy.as_ref().or(defaults.proxy.as_ref()) else {
        if let Some(file) = raw.proxy_password_file.as_ref() {
            p.push(
                file.span(),
                format!("tunnel \"{n}\": proxy_password_file is set but no proxy is"),
            );
        }
        return ProxySettings::default();
    };
    let chosen_file = from_defaults(raw.proxy.is_some());
    let password_file = raw
        .proxy_password_file
        .as_ref()
        .or(defaults.proxy_password_file.as_ref());
    let password_file_file = from_defaults(raw.proxy_password_file.is_some());
    let proxy = match chosen.get_ref() {
        RawProxy::Direct => None,
        RawProxy::Url(url) => Some(Proxy::Url(url.clone())),
        RawProxy::Command(command) => Some(Proxy::Command(command.clone())),
        RawProxy::Env => match env.proxy_vars.resolve() {
            Ok(e) => Some(Proxy::Env(e)),
            Err(e) => {
                p.push_at(
                    chosen_file,
                    chosen.span().start,
                    format!("tunnel \"{n}\": proxy = \"env\": {e}"),
                );
                None
            }
        },
    };
    let url = match &proxy {
        Some(Proxy::Url(url)) => Some(url),
        Some(Proxy::Env(e)) => e.url.as_ref().map(|(_, url)| url),
        _ => None,
    };
    let user = url.and_then(|u| u.user.as_deref().map(|name| (name, u.password.is_some())));
    match (user, password_file) {
        (Some((user, false)), None) => p.push_at(
            chosen_file,
            chosen.span().start,
            format!(
                "tunnel \"{n}\": the proxy user \"{user}\" needs a password: name a file \
                 holding it (mode 0600) in proxy_password_file"
            ),
        ),
        (None, Some(file)) if matches!(proxy, Some(Proxy::Url(_))) => p.push_at(
            password_file_file,
            file.span().start,
            format!(
                "tunnel \"{n}\": proxy_password_file is set but the proxy names no user; \
                 write the proxy as \"scheme://user@host:port\""
            ),
        ),
        _ => {}
    }
    ProxySettings {
        proxy,
        password_file: password_file.map(|f| f.get_ref().clone()),
    }
}

/// What a local or dynamic forward listens on, for clash detection.
#[derive(Debug, Clone, PartialEq, Eq)]
enum ListenKey {
    Tcp(LocalBind, u16),
    Unix(PathBuf),
}

impl ListenKey {
    /// Would binding both fail? Port 0 never clashes (the kernel picks); `Any`
    /// clashes with every address on the same port, loopback with its literals.
    fn clashes(&self, other: &ListenKey) -> bool {
        match (self, other) {
            (ListenKey::Unix(a), ListenKey::Unix(b)) => a == b,
            (ListenKey::Tcp(a, pa), ListenKey::Tcp(b, pb)) => {
                let loopback = |x: &LocalBind| match x {
                    LocalBind::Loopback => true,
                    LocalBind::Addr(s) => s == "127.0.0.1" || s == "::1",
                    LocalBind::Any => false,
                };
                *pa != 0
                    && pa == pb
                    && (a == b
                        || matches!(a, LocalBind::Any)
                        || matches!(b, LocalBind::Any)
                        || (loopback(a) && loopback(b)))
            }
            _ => false,
        }
    }
}

/// One local listener of a file: where its spec is (file, offset), whose it is, what.
struct Listener {
    at: (usize, usize),
    tunnel: String,
    spec: String,
    kind: &'static str,
    key: ListenKey,
}

/// Every local listener in the files, to find those that would fail to bind.
#[derive(Default)]
struct Listeners(Vec<Listener>);

impl Listeners {
    fn add(
        &mut self,
        file: usize,
        spec: &Spanned<String>,
        tunnel: &str,
        kind: &'static str,
        key: ListenKey,
    ) {
        self.0.push(Listener {
            at: (file, spec.span().start),
            tunnel: tunnel.to_owned(),
            spec: spec.get_ref().clone(),
            kind,
            key,
        });
    }

    /// Reports each listener that clashes with an earlier one (in an earlier file, or
    /// earlier in the same file).
    fn check(mut self, p: &mut Problems) {
        self.0.sort_by_key(|l| l.at);
        for (i, l) in self.0.iter().enumerate() {
            let Some(earlier) = self.0[..i].iter().find(|e| e.key.clashes(&l.key)) else {
                continue;
            };
            let whose = if earlier.tunnel == l.tunnel {
                String::new()
            } else {
                format!(" in tunnel \"{}\"", earlier.tunnel)
            };
            let fix = match l.key {
                ListenKey::Tcp(..) => "change one of the ports",
                ListenKey::Unix(_) => "use another socket path",
            };
            p.push_at(
                l.at.0,
                l.at.1,
                format!(
                    "{} forward \"{}\" would listen on the same address as {} forward \"{}\"{whose}; {fix}",
                    l.kind, l.spec, earlier.kind, earlier.spec
                ),
            );
        }
    }
}
