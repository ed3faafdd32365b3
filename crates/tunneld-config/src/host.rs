//! Server addresses: `host` entries and `proxy_jump` lists.

use std::fmt;
use std::net::Ipv6Addr;

/// The SSH port when neither the entry nor `port` names one.
pub(crate) const DEFAULT_SSH_PORT: u16 = 22;

/// A server to connect to: host name or IP literal (without brackets) and port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPort {
    /// Host name or IP literal, without brackets.
    pub host: String,
    /// TCP port, never 0.
    pub port: u16,
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// One hop of `proxy_jump` (`ssh -J`): `[user@]host[:port]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JumpHost {
    /// Login name on the jump host; `None` = the tunnel's `user`.
    pub user: Option<String>,
    /// Host name or IP literal, without brackets.
    pub host: String,
    /// TCP port (22 when not given).
    pub port: u16,
}

impl fmt::Display for JumpHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(user) = &self.user {
            write!(f, "{user}@")?;
        }
        let hp = HostPort {
            host: self.host.clone(),
            port: self.port,
        };
        write!(f, "{hp}")
    }
}

/// Parses `h`, `h:2222`, `[2001:db8::1]:22`, `[2001:db8::1]` or a bare IPv6 address
/// (which then has no port). Returns the host and the port if one was given.
pub(crate) fn parse_host_port(s: &str) -> Result<(String, Option<u16>), String> {
    if s.is_empty() {
        return Err("empty host name".to_owned());
    }
    if s.chars().any(char::is_whitespace) {
        return Err(format!("host \"{s}\" contains whitespace"));
    }
    if let Some(user) = s.split_once('@').map(|(u, _)| u) {
        return Err(format!(
            "host \"{s}\" contains a user name; set user = \"{user}\" instead"
        ));
    }
    let (host, port) = if let Some(after) = s.strip_prefix('[') {
        let Some((inner, tail)) = after.split_once(']') else {
            return Err(format!("host \"{s}\" has '[' without a matching ']'"));
        };
        let port = match tail {
            "" => None,
            t => match t.strip_prefix(':') {
                Some(p) => Some(p),
                None => return Err(format!("host \"{s}\": ']' must be followed by \":port\"")),
            },
        };
        (inner, port)
    } else {
        match s.matches(':').count() {
            0 => (s, None),
            1 => s
                .split_once(':')
                .map(|(h, p)| (h, Some(p)))
                .unwrap_or((s, None)),
            _ if s.parse::<Ipv6Addr>().is_ok() => (s, None),
            _ => {
                return Err(format!(
                    "host \"{s}\" has too many ':'; write IPv6 addresses in brackets, e.g. \"[2001:db8::1]:22\""
                ));
            }
        }
    };
    if host.is_empty() {
        return Err(format!("host \"{s}\" has an empty host name"));
    }
    if host.contains(['/', '[', ']']) {
        return Err(format!("host \"{s}\" is not a host name or IP address"));
    }
    let port = port
        .map(|p| parse_port(p).map_err(|e| format!("host \"{s}\": {e}")))
        .transpose()?;
    Ok((host.to_owned(), port))
}

/// A server port: 1-65535, numeric.
pub(crate) fn parse_port(p: &str) -> Result<u16, String> {
    if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("port \"{p}\" is not a number; use 1-65535"));
    }
    match p.parse::<u16>() {
        Ok(0) => Err("port 0 is not valid; use 1-65535".to_owned()),
        Ok(port) => Ok(port),
        Err(_) => Err(format!("port {p} is out of range; use 1-65535")),
    }
}

/// Parses a `proxy_jump` value like `ssh -J`: a comma-separated list of
/// `[user@]host[:port]` (optionally `ssh://`-prefixed). `"none"` means no jump.
pub(crate) fn parse_jump_list(s: &str) -> Result<Vec<JumpHost>, String> {
    if s == "none" {
        return Ok(Vec::new());
    }
    if s.trim().is_empty() {
        return Err("empty proxy_jump; write \"[user@]host[:port]\" or \"none\"".to_owned());
    }
    s.split(',')
        .map(|hop| {
            let hop = hop.trim();
            let hop = hop.strip_prefix("ssh://").unwrap_or(hop);
            if hop.is_empty() {
                return Err(format!("proxy_jump \"{s}\" has an empty hop"));
            }
            let (user, hostport) = match hop.rsplit_once('@') {
                Some(("", _)) => {
                    return Err(format!("proxy_jump hop \"{hop}\" has an empty user name"));
                }
                Some((u, hp)) => (Some(u.to_owned()), hp),
                None => (None, hop),
            };
            let (host, port) =
                parse_host_port(hostport).map_err(|e| format!("proxy_jump hop \"{hop}\": {e}"))?;
            Ok(JumpHost {
                user,
                host,
                port: port.unwrap_or(DEFAULT_SSH_PORT),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_entries() {
        let ok: &[(&str, &str, Option<u16>)] = &[
            ("h", "h", None),
            ("h.example.com:2222", "h.example.com", Some(2222)),
            ("10.0.0.1:22", "10.0.0.1", Some(22)),
            ("[2001:db8::1]:22", "2001:db8::1", Some(22)),
            ("[2001:db8::1]", "2001:db8::1", None),
            ("2001:db8::1", "2001:db8::1", None),
            ("::1", "::1", None),
        ];
        for &(input, host, port) in ok {
            assert_eq!(
                parse_host_port(input),
                Ok((host.to_owned(), port)),
                "{input:?}"
            );
        }
        let bad: &[(&str, &str)] = &[
            ("", "empty host name"),
            ("user@h", "set user = \"user\" instead"),
            ("h:0", "port 0 is not valid"),
            ("h:99999", "out of range"),
            ("h:ssh", "is not a number"),
            ("h:", "is not a number"),
            (":22", "empty host name"),
            ("[::1", "without a matching ']'"),
            ("[::1]22", "must be followed by \":port\""),
            ("[]:22", "empty host name"),
            ("a:b:c", "write IPv6 addresses in brackets"),
            ("a b", "whitespace"),
        ];
        for &(input, want) in bad {
            let err = parse_host_port(input).expect_err(input);
            assert!(err.contains(want), "{input:?}: {err}");
        }
    }

    #[test]
    fn host_port_display() {
        let v4 = HostPort {
            host: "h".into(),
            port: 22,
        };
        let v6 = HostPort {
            host: "::1".into(),
            port: 2222,
        };
        assert_eq!(v4.to_string(), "h:22");
        assert_eq!(v6.to_string(), "[::1]:2222");
    }

    #[test]
    fn jump_lists() {
        let jh = |user: Option<&str>, host: &str, port| JumpHost {
            user: user.map(str::to_owned),
            host: host.to_owned(),
            port,
        };
        let ok: &[(&str, Vec<JumpHost>)] = &[
            ("gw", vec![jh(None, "gw", 22)]),
            (
                "jump@gw.example.com:2222",
                vec![jh(Some("jump"), "gw.example.com", 2222)],
            ),
            (
                "user@a:22,user@b",
                vec![jh(Some("user"), "a", 22), jh(Some("user"), "b", 22)],
            ),
            (
                "a, ssh://u@[2001:db8::1]:23",
                vec![jh(None, "a", 22), jh(Some("u"), "2001:db8::1", 23)],
            ),
            ("u@x@h", vec![jh(Some("u@x"), "h", 22)]),
            ("none", vec![]),
        ];
        for (input, want) in ok {
            assert_eq!(&parse_jump_list(input).expect(input), want, "{input:?}");
        }
        let bad: &[(&str, &str)] = &[
            ("", "empty proxy_jump"),
            ("a,,b", "has an empty hop"),
            ("@h", "empty user name"),
            ("u@h:0", "port 0 is not valid"),
            ("u@", "empty host name"),
        ];
        for &(input, want) in bad {
            let err = parse_jump_list(input).expect_err(input);
            assert!(err.contains(want), "{input:?}: {err}");
        }
        assert_eq!(jh(Some("u"), "::1", 22).to_string(), "u@[::1]:22");
    }
}
