//! `permit_remote_open`: where a reverse SOCKS forward may connect, as OpenSSH's
//! `PermitRemoteOpen` (ssh_config): `host:port`, `IPv4:port` or `[IPv6]:port`, with `*`
//! for any host or any port; `any` allows everything, `none` nothing. Names are compared
//! as written (case aside): no patterns and no address lookups.

use std::fmt;

/// The destinations a reverse SOCKS forward may open.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum PermitRemoteOpen {
    /// No restriction (the default, as OpenSSH).
    #[default]
    Any,
    /// Only these; empty for `none`.
    Only(Vec<PermitEntry>),
}

/// One `host:port` entry; `None` is the `*` wildcard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PermitEntry {
    /// Lower-case host, IPv6 without brackets; `None` for any.
    pub host: Option<String>,
    /// `None` for any.
    pub port: Option<u16>,
}

impl PermitRemoteOpen {
    /// Whether a connection to `host:port` (as the SOCKS client asked) is allowed.
    pub fn allows(&self, host: &str, port: u16) -> bool {
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host)
            .to_ascii_lowercase();
        match self {
            PermitRemoteOpen::Any => true,
            PermitRemoteOpen::Only(entries) => entries.iter().any(|e| {
                e.host.as_deref().is_none_or(|h| h == host) && e.port.is_none_or(|p| p == port)
            }),
        }
    }

    /// Parses the written entries (one `any` or `none`, or `host:port` entries).
    ///
    /// # Errors
    /// The index of the first bad entry and what is wrong with it.
    pub fn parse(entries: &[&str]) -> Result<PermitRemoteOpen, (usize, String)> {
        if let [only] = entries {
            match only.trim() {
                "any" => return Ok(PermitRemoteOpen::Any),
                "none" => return Ok(PermitRemoteOpen::Only(Vec::new())),
                _ => {}
            }
        }
        let mut out = Vec::with_capacity(entries.len());
        for (i, e) in entries.iter().enumerate() {
            if matches!(e.trim(), "any" | "none") {
                return Err((i, format!("\"{e}\" must be the only entry")));
            }
            out.push(entry(e).map_err(|why| (i, why))?);
        }
        Ok(PermitRemoteOpen::Only(out))
    }
}

fn entry(s: &str) -> Result<PermitEntry, String> {
    let bad = |why: &str| {
        format!(
            "permit_remote_open entry \"{s}\": {why} (expected host:port, [IPv6]:port, * for any host or port)"
        )
    };
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (h, after) = rest.split_once(']').ok_or_else(|| bad("unclosed ["))?;
        let port = after.strip_prefix(':').ok_or_else(|| bad("no port"))?;
        (h, port)
    } else {
        let (h, p) = s.rsplit_once(':').ok_or_else(|| bad("no port"))?;
        if h.contains(':') {
            return Err(bad("an IPv6 address needs brackets"));
        }
        (h, p)
    };
    if host.is_empty() {
        return Err(bad("empty host"));
    }
    let port = match port {
        "*" => None,
        p => match p.parse::<u16>() {
            Ok(n) if n > 0 => Some(n),
            _ => return Err(bad("the port must be 1-65535 or *")),
        },
    };
    let host = (host != "*").then(|| host.to_ascii_lowercase());
    Ok(PermitEntry { host, port })
}

impl fmt::Display for PermitRemoteOpen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PermitRemoteOpen::Any => f.write_str("any"),
            PermitRemoteOpen::Only(v) if v.is_empty() => f.write_str("none"),
            PermitRemoteOpen::Only(v) => {
                for (i, e) in v.iter().enumerate() {
                    if i > 0 {
                        f.write_str(" ")?;
                    }
                    match &e.host {
                        Some(h) if h.contains(':') => write!(f, "[{h}]")?,
                        Some(h) => f.write_str(h)?,
                        None => f.write_str("*")?,
                    }
                    match e.port {
                        Some(p) => write!(f, ":{p}")?,
                        None => f.write_str(":*")?,
                    }
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn permit(entries: &[&str]) -> PermitRemoteOpen {
        PermitRemoteOpen::parse(entries).unwrap()
    }

    #[test]
    fn entries_match_as_openssh_does() {
        let p = permit(&["localhost:22", "10.0.0.5:*", "*:8080", "[2001:DB8::1]:443"]);
        assert!(p.allows("localhost", 22));
        assert!(p.allows("LOCALHOST", 22));
        assert!(!p.allows("localhost", 23));
        assert!(!p.allows("127.0.0.1", 22), "no address lookups");
        assert!(p.allows("10.0.0.5", 1));
        assert!(p.allows("anything.example", 8080));
        assert!(p.allows("2001:db8::1", 443));
        assert!(p.allows("[2001:db8::1]", 443));
        assert!(!p.allows("2001:db8::1", 80));
        assert_eq!(
            p.to_string(),
            "localhost:22 10.0.0.5:* *:8080 [2001:db8::1]:443"
        );
    }

    #[test]
    fn any_and_none() {
        assert!(permit(&["any"]).allows("x", 1));
        assert!(!permit(&["none"]).allows("x", 1));
        assert_eq!(permit(&["none"]).to_string(), "none");
        assert!(PermitRemoteOpen::parse(&["none", "a:1"]).is_err());
    }

    #[test]
    fn bad_entries_say_why() {
        for (e, why) in [
            ("localhost", "no port"),
            ("a:0", "1-65535"),
            ("a:b", "1-65535"),
            ("2001:db8::1:22", "brackets"),
            ("[::1:22", "unclosed"),
            (":22", "empty host"),
        ] {
            let (i, msg) = PermitRemoteOpen::parse(&["ok:1", e]).unwrap_err();
            assert_eq!(i, 1);
            assert!(msg.contains(why), "{e}: {msg}");
        }
    }
}
