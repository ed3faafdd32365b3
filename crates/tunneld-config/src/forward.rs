//! Forward specifications in exactly OpenSSH's `-L`, `-R` and `-D` syntax.
//!
//! Fields are separated by `:`; a field may be a bracketed IPv6 address (`[::1]`,
//! brackets stripped); a field containing `/` is a Unix socket path; a backslash
//! takes the next character literally (as in `readconf.c` `parse_fwd_field`).
//!
//! Two deliberate differences from `ssh`: ports must be numeric (no service
//! names), and a `local`/`dynamic` listen port of 0 is accepted (the kernel picks
//! one), which `ssh -L` refuses.

use std::fmt;
use std::path::PathBuf;

/// Where a forwarded connection is sent: a TCP host and port or a Unix socket.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// A host name or IP address (without brackets) and a non-zero port.
    Tcp {
        /// Host name or IP literal, resolved by whichever side connects.
        host: String,
        /// Target port, never 0.
        port: u16,
    },
    /// A Unix socket path on the side that connects.
    Unix(PathBuf),
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Tcp { host, port } if host.contains(':') => write!(f, "[{host}]:{port}"),
            Endpoint::Tcp { host, port } => write!(f, "{host}:{port}"),
            Endpoint::Unix(path) => write!(f, "{}", path.display()),
        }
    }
}

/// Where a local or dynamic listener binds (OpenSSH client semantics).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum LocalBind {
    /// Loopback only (no bind address, or `localhost`).
    Loopback,
    /// Every interface (`*`, empty bind address, or no address with `gateway_ports`).
    Any,
    /// This address or host name, as written (brackets stripped).
    Addr(String),
}

/// The listening side of a local forward.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Listen {
    /// A TCP listener; port 0 lets the kernel pick one.
    Tcp {
        /// Bind address.
        bind: LocalBind,
        /// Listen port; 0 = any free port.
        port: u16,
    },
    /// A Unix socket listener at this path.
    Unix(PathBuf),
}

/// A `local` forward (`ssh -L`): listen here, connect from the server.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LocalForward {
    /// The specification exactly as written in the file (shown in status and logs).
    pub spec: String,
    /// Where the daemon listens.
    pub listen: Listen,
    /// Where the server connects for each accepted connection.
    pub target: Endpoint,
}

/// A `dynamic` forward (`ssh -D`): a local SOCKS4/4a/5 proxy.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DynamicForward {
    /// The specification exactly as written in the file.
    pub spec: String,
    /// Bind address of the SOCKS listener.
    pub bind: LocalBind,
    /// Listen port; 0 = any free port.
    pub port: u16,
}

/// The listening side of a remote forward, as requested from the server.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RemoteListen {
    /// `tcpip-forward`: the server's `GatewayPorts` decides what `bind` means.
    Tcp {
        /// Exactly the address string sent to the server (`"localhost"` when none
        /// was given, `""` for `*` or an empty address).
        bind: String,
        /// Port on the server; 0 asks the server to allocate one.
        port: u16,
    },
    /// `streamlocal-forward@openssh.com`: a Unix socket path on the server.
    Unix(String),
}

/// A `remote` forward (`ssh -R`): the server listens, the daemon connects.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RemoteForward {
    /// The specification exactly as written in the file.
    pub spec: String,
    /// What the server is asked to listen on.
    pub listen: RemoteListen,
    /// Where the daemon connects; `None` = reverse SOCKS proxy (`[bind:]port` only).
    pub target: Option<Endpoint>,
}

const LOCAL_FORMS: &str = "[bind_address:]port:host:hostport, [bind_address:]port:/remote.sock, \
     /local.sock:host:hostport or /local.sock:/remote.sock";
const REMOTE_FORMS: &str = "[bind_address:]port:host:hostport, [bind_address:]port:/local.sock, \
     /remote.sock:host:hostport, /remote.sock:/local.sock or [bind_address:]port (reverse SOCKS)";
const DYNAMIC_FORMS: &str = "[bind_address:]port";

/// `sizeof(sockaddr_un.sun_path)` on Linux; OpenSSH refuses paths that do not fit.
const MAX_UNIX_PATH_BYTES: usize = 107;
/// `NI_MAXHOST - 1`; OpenSSH refuses longer host names.
const MAX_HOST_BYTES: usize = 1024;

/// One `:`-separated field of a forward specification.
struct Field {
    arg: String,
    is_path: bool,
}

/// Splits a specification into at most four fields, as OpenSSH's `parse_fwd_field`.
fn split_fields(spec: &str) -> Result<Vec<Field>, String> {
    let mut fields = Vec::new();
    let mut rest = spec.trim_start();
    while !rest.is_empty() {
        if fields.len() == 4 {
            return Err(
                "too many ':'-separated fields; write IPv6 addresses in brackets, e.g. [::1]"
                    .to_owned(),
            );
        }
        if let Some(after) = rest.strip_prefix('[') {
            let Some(end) = after.find(']') else {
                return Err("'[' without a matching ']'".to_owned());
            };
            let inner = &after[..end];
            let tail = &after[end + 1..];
            rest = match tail.strip_prefix(':') {
                Some(t) => t,
                None if tail.is_empty() => tail,
                None => return Err(format!("']' must be followed by ':', not \"{tail}\"")),
            };
            fields.push(Field {
                arg: inner.to_owned(),
                is_path: inner.contains('/'),
            });
            continue;
        }
        let mut arg = String::new();
        let mut is_path = false;
        let mut chars = rest.chars();
        rest = "";
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some(escaped) => arg.push(escaped),
                    None => return Err("a '\\' at the end escapes nothing".to_owned()),
                },
                '/' => {
                    is_path = true;
                    arg.push('/');
                }
                ':' => {
                    rest = chars.as_str();
                    break;
                }
                c => arg.push(c),
            }
        }
        fields.push(Field { arg, is_path });
    }
    Ok(fields)
}

fn port(field: &Field, what: &str) -> Result<u16, String> {
    let s = field.arg.as_str();
    if s.is_empty() {
        return Err(format!("missing {what}"));
    }
    if !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "{what} \"{s}\" is not a number (service names are not supported; use 0-65535)"
        ));
    }
    s.parse::<u16>()
        .map_err(|_| format!("{what} {s} is out of range; use 0-65535"))
}

fn target_port(field: &Field) -> Result<u16, String> {
    match port(field, "target port")? {
        0 => Err("target port 0 is not valid; use 1-65535".to_owned()),
        p => Ok(p),
    }
}

fn target_host(field: &Field) -> Result<String, String> {
    let s = &field.arg;
    if s.is_empty() {
        Err("empty target host".to_owned())
    } else if field.is_path {
        Err(format!(
            "target host \"{s}\" looks like a path; a Unix socket target comes alone after the listen part"
        ))
    } else if s.chars().any(char::is_whitespace) {
        Err(format!("target host \"{s}\" contains whitespace"))
    } else if s.len() > MAX_HOST_BYTES {
        Err("target host is too long".to_owned())
    } else {
        Ok(s.clone())
    }
}

fn unix_path(field: &Field) -> Result<String, String> {
    if field.arg.len() > MAX_UNIX_PATH_BYTES {
        Err(format!(
            "unix socket path \"{}\" is too long (at most {MAX_UNIX_PATH_BYTES} bytes)",
            field.arg
        ))
    } else {
        Ok(field.arg.clone())
    }
}

fn bind_address(field: &Field) -> Result<&str, String> {
    let s = field.arg.as_str();
    if field.is_path {
        Err(format!("bind address \"{s}\" cannot be a path"))
    } else if s.chars().any(char::is_whitespace) {
        Err(format!("bind address \"{s}\" contains whitespace"))
    } else if s.len() > MAX_HOST_BYTES {
        Err("bind address is too long".to_owned())
    } else {
        Ok(s)
    }
}

/// OpenSSH `channel_fwd_bind_addr` with `is_client = 1`.
fn local_bind(field: Option<&Field>, gateway_ports: bool) -> Result<LocalBind, String> {
    Ok(match field {
        None if gateway_ports => LocalBind::Any,
        None => LocalBind::Loopback,
        Some(f) => match bind_address(f)? {
            "localhost" => LocalBind::Loopback,
            "" | "*" => LocalBind::Any,
            other => LocalBind::Addr(other.to_owned()),
        },
    })
}

/// OpenSSH `channel_rfwd_bind_host`.
fn remote_bind(field: Option<&Field>) -> Result<String, String> {
    Ok(match field {
        None => "localhost".to_owned(),
        Some(f) => match bind_address(f)? {
            "" | "*" => String::new(),
            other => other.to_owned(),
        },
    })
}

fn tcp_target(host: &Field, port: &Field) -> Result<Endpoint, String> {
    Ok(Endpoint::Tcp {
        host: target_host(host)?,
        port: target_port(port)?,
    })
}

fn unix_target(field: &Field) -> Result<Endpoint, String> {
    Ok(Endpoint::Unix(unix_path(field)?.into()))
}

fn invalid(kind: &str, spec: &str, why: &str) -> String {
    format!("invalid {kind} forward \"{spec}\": {why}")
}

fn bad_shape(kind: &str, spec: &str, why: &str, forms: &str) -> String {
    format!("invalid {kind} forward \"{spec}\": {why}; expected {forms}")
}

/// Parses a `local` forward (`ssh -L`). `gateway_ports` (`ssh -g`) makes a forward
/// without a bind address listen on every interface.
///
/// # Errors
/// A lower-case message naming the specification and what is wrong with it.
pub fn parse_local(spec: &str, gateway_ports: bool) -> Result<LocalForward, String> {
    const KIND: &str = "local";
    let fields = split_fields(spec).map_err(|e| bad_shape(KIND, spec, &e, LOCAL_FORMS))?;
    let tcp_listen = |bind: Option<&Field>, p: &Field| -> Result<Listen, String> {
        Ok(Listen::Tcp {
            bind: local_bind(bind, gateway_ports)?,
            port: port(p, "listen port")?,
        })
    };
    let unix_listen =
        |f: &Field| -> Result<Listen, String> { Ok(Listen::Unix(unix_path(f)?.into())) };
    let shape = |why: &str| Err(bad_shape(KIND, spec, why, LOCAL_FORMS));
    let parsed = match fields.as_slice() {
        [] => return shape("empty specification"),
        [only] if only.is_path => return shape("a unix socket listener needs a target"),
        [_] => return shape("missing target"),
        [l, t] if l.is_path && t.is_path => unix_listen(l).and_then(|l| Ok((l, unix_target(t)?))),
        [p, t] if t.is_path => tcp_listen(None, p).and_then(|l| Ok((l, unix_target(t)?))),
        [_, _] => return shape("missing target port"),
        [l, h, p] if l.is_path => unix_listen(l).and_then(|l| Ok((l, tcp_target(h, p)?))),
        [b, p, t] if t.is_path => tcp_listen(Some(b), p).and_then(|l| Ok((l, unix_target(t)?))),
        [p, h, hp] => tcp_listen(None, p).and_then(|l| Ok((l, tcp_target(h, hp)?))),
        [b, p, h, hp] => tcp_listen(Some(b), p).and_then(|l| Ok((l, tcp_target(h, hp)?))),
        [..] => unreachable!("split_fields returns at most four fields"),
    };
    let (listen, target) = parsed.map_err(|e| invalid(KIND, spec, &e))?;
    Ok(LocalForward {
        spec: spec.to_owned(),
        listen,
        target,
    })
}

/// Parses a `remote` forward (`ssh -R`), including the reverse SOCKS form `[bind:]port`.
///
/// # Errors
/// A lower-case message naming the specification and what is wrong with it.
pub fn parse_remote(spec: &str) -> Result<RemoteForward, String> {
    const KIND: &str = "remote";
    let fields = split_fields(spec).map_err(|e| bad_shape(KIND, spec, &e, REMOTE_FORMS))?;
    let tcp_listen = |bind: Option<&Field>, p: &Field| -> Result<RemoteListen, String> {
        Ok(RemoteListen::Tcp {
            bind: remote_bind(bind)?,
            port: port(p, "listen port")?,
        })
    };
    let unix_listen =
        |f: &Field| -> Result<RemoteListen, String> { Ok(RemoteListen::Unix(unix_path(f)?)) };
    let parsed = match fields.as_slice() {
        [] => return Err(bad_shape(KIND, spec, "empty specification", REMOTE_FORMS)),
        [l] if l.is_path => unix_listen(l).map(|l| (l, None)),
        [p] => tcp_listen(None, p).map(|l| (l, None)),
        [l, t] if l.is_path && t.is_path => {
            unix_listen(l).and_then(|l| Ok((l, Some(unix_target(t)?))))
        }
        [p, t] if t.is_path => tcp_listen(None, p).and_then(|l| Ok((l, Some(unix_target(t)?)))),
        [l, _] if l.is_path => {
            return Err(bad_shape(KIND, spec, "missing target port", REMOTE_FORMS));
        }
        [b, p] => {
            // `port:host` is more likely a forward missing its port than a SOCKS bind.
            if port(b, "").is_ok() && port(p, "").is_err() {
                return Err(bad_shape(KIND, spec, "missing target port", REMOTE_FORMS));
            }
            tcp_listen(Some(b), p).map(|l| (l, None))
        }
        [l, h, p] if l.is_path => unix_listen(l).and_then(|l| Ok((l, Some(tcp_target(h, p)?)))),
        [b, p, t] if t.is_path => {
            tcp_listen(Some(b), p).and_then(|l| Ok((l, Some(unix_target(t)?))))
        }
        [p, h, hp] => tcp_listen(None, p).and_then(|l| Ok((l, Some(tcp_target(h, hp)?)))),
        [b, p, h, hp] => tcp_listen(Some(b), p).and_then(|l| Ok((l, Some(tcp_target(h, hp)?)))),
        [..] => unreachable!("split_fields returns at most four fields"),
    };
    let (listen, target) = parsed.map_err(|e| invalid(KIND, spec, &e))?;
    Ok(RemoteForward {
        spec: spec.to_owned(),
        listen,
        target,
    })
}

/// Parses a `dynamic` forward (`ssh -D`): `[bind_address:]port`.
///
/// # Errors
/// A lower-case message naming the specification and what is wrong with it.
pub fn parse_dynamic(spec: &str, gateway_ports: bool) -> Result<DynamicForward, String> {
    const KIND: &str = "dynamic";
    let fields = split_fields(spec).map_err(|e| bad_shape(KIND, spec, &e, DYNAMIC_FORMS))?;
    let parsed = match fields.as_slice() {
        [] => return Err(bad_shape(KIND, spec, "empty specification", DYNAMIC_FORMS)),
        [p] if p.is_path => {
            Err("unix socket listeners are not supported for dynamic forwards".to_owned())
        }
        [p] => local_bind(None, gateway_ports).and_then(|b| Ok((b, port(p, "listen port")?))),
        [b, p] => local_bind(Some(b), gateway_ports).and_then(|b| Ok((b, port(p, "listen port")?))),
        [..] => {
            return Err(bad_shape(
                KIND,
                spec,
                "too many ':'-separated fields; write an IPv6 bind address in brackets, e.g. [::1]:1080",
                DYNAMIC_FORMS,
            ));
        }
    };
    let (bind, port) = parsed.map_err(|e| invalid(KIND, spec, &e))?;
    Ok(DynamicForward {
        spec: spec.to_owned(),
        bind,
        port,
    })
}

#[cfg(test)]
#[path = "forward_tests.rs"]
mod tests;
