//! How a tunnel reaches its first hop: straight, through an HTTP CONNECT or SOCKS5 proxy
//! (`proxy`), or through a command's stdin and stdout (`proxy_command`, OpenSSH's
//! `ProxyCommand`).

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;

use crate::host::parse_host_port;

/// curl's port for a proxy URL from the environment that names none.
const ENV_DEFAULT_PORT: u16 = 1080;

/// The protocol spoken to a proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyScheme {
    /// `http://`: HTTP CONNECT, Basic auth.
    Http,
    /// `socks5://`: SOCKS5; tunneld resolves the server's name.
    Socks5,
    /// `socks5h://`: SOCKS5; the proxy resolves the server's name.
    Socks5h,
}

impl ProxyScheme {
    fn as_str(self) -> &'static str {
        match self {
            ProxyScheme::Http => "http",
            ProxyScheme::Socks5 => "socks5",
            ProxyScheme::Socks5h => "socks5h",
        }
    }
}

/// A password that is never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// `scheme://[user@]host:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyUrl {
    /// What the proxy speaks.
    pub scheme: ProxyScheme,
    /// Host name or IP literal, without brackets.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// The user to authenticate as; `None` = no authentication.
    pub user: Option<String>,
    /// A password that came with the URL (only from the environment, never from the
    /// configuration file).
    pub password: Option<Secret>,
}

impl fmt::Display for ProxyUrl {
    /// The URL without its password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://", self.scheme.as_str())?;
        if let Some(user) = &self.user {
            write!(f, "{user}@")?;
        }
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// The `no_proxy` list: hosts reached without the proxy, as curl reads it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NoProxy(Vec<String>);

impl NoProxy {
    /// Parses a comma-separated list (entries trimmed, lowercased, a leading dot dropped).
    pub fn parse(s: &str) -> NoProxy {
        NoProxy(
            s.split(',')
                .map(|e| e.trim().trim_start_matches('.').to_ascii_lowercase())
                .filter(|e| !e.is_empty())
                .collect(),
        )
    }

    /// Whether `host` is reached without the proxy: `*`, the host itself, a domain it is
    /// in, or an IP address or `addr/bits` range holding it.
    pub fn matches(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        let ip: Option<IpAddr> = host.parse().ok();
        self.0.iter().any(|entry| {
            if entry == "*" {
                return true;
            }
            let entry = entry.trim_start_matches('[').trim_end_matches(']');
            match (ip, entry.split_once('/')) {
                (Some(ip), Some((net, bits))) => in_range(ip, net, bits),
                (Some(ip), None) => entry.parse::<IpAddr>().is_ok_and(|e| e == ip),
                (None, _) => {
                    host == entry
                        || host
                            .strip_suffix(entry)
                            .is_some_and(|rest| rest.ends_with('.'))
                }
            }
        })
    }
}

fn in_range(ip: IpAddr, net: &str, bits: &str) -> bool {
    let (Ok(net), Ok(bits)) = (net.parse::<IpAddr>(), bits.parse::<u32>()) else {
        return false;
    };
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) if bits <= 32 => {
            let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) if bits <= 128 => {
            let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

/// `proxy = "env"` as the environment said when the file was loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvProxy {
    /// The proxy and the variable it came from; `None` = no proxy variable is set.
    pub url: Option<(String, ProxyUrl)>,
    /// `no_proxy` / `NO_PROXY`.
    pub no_proxy: NoProxy,
}

/// How the first hop is reached when it is not reached straight.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Proxy {
    /// `proxy = "scheme://…"`.
    Url(ProxyUrl),
    /// `proxy = "env"`.
    Env(EnvProxy),
    /// `proxy_command = "…"`: the template, `%` sequences not yet expanded.
    Command(String),
}

/// What carries the connection to one host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyRoute<'a> {
    /// A proxy server.
    Url(&'a ProxyUrl),
    /// A command's stdin and stdout.
    Command(&'a str),
}

impl Proxy {
    /// What carries the connection to `host`; `None` = a TCP connection of our own.
    pub fn route(&self, host: &str) -> Option<ProxyRoute<'_>> {
        match self {
            Proxy::Url(url) => Some(ProxyRoute::Url(url)),
            Proxy::Env(env) => match &env.url {
                Some((_, url)) if !env.no_proxy.matches(host) => Some(ProxyRoute::Url(url)),
                _ => None,
            },
            Proxy::Command(command) => Some(ProxyRoute::Command(command)),
        }
    }
}

impl fmt::Display for Proxy {
    /// As `tunneld check` shows it (no password).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Proxy::Url(url) => write!(f, "{url}"),
            Proxy::Env(EnvProxy { url: None, .. }) => {
                f.write_str("env (no proxy variable set: direct)")
            }
            Proxy::Env(EnvProxy {
                url: Some((var, url)),
                no_proxy,
            }) => {
                write!(f, "env: {url} (from ${var})")?;
                if !no_proxy.0.is_empty() {
                    write!(f, ", not for {}", no_proxy.0.join(","))?;
                }
                Ok(())
            }
            Proxy::Command(command) => write!(f, "command: {command}"),
        }
    }
}

/// The proxy settings of a tunnel, resolved.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProxySettings {
    /// `None` = every connection is made straight.
    pub proxy: Option<Proxy>,
    /// The proxy user's password, read at each connect; mode 0600 or stricter.
    pub password_file: Option<PathBuf>,
}

/// The proxy variables of the environment, as curl reads them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct ProxyVars {
    /// (name, value) of the first set of `https_proxy`, `HTTPS_PROXY`, `all_proxy`,
    /// `ALL_PROXY`.
    pub proxy: Option<(String, String)>,
    /// `no_proxy`, else `NO_PROXY`.
    pub no_proxy: Option<String>,
}

impl ProxyVars {
    pub fn current() -> ProxyVars {
        let get = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let proxy = ["https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"]
            .into_iter()
            .find_map(|name| get(name).map(|v| (name.to_owned(), v)));
        ProxyVars {
            proxy,
            no_proxy: get("no_proxy").or_else(|| get("NO_PROXY")),
        }
    }

    /// `proxy = "env"` resolved.
    pub fn resolve(&self) -> Result<EnvProxy, String> {
        let url = match &self.proxy {
            None => None,
            Some((name, value)) => Some((
                name.clone(),
                parse_url(value, true).map_err(|e| format!("${name}: {e}"))?,
            )),
        };
        Ok(EnvProxy {
            url,
            no_proxy: self
                .no_proxy
                .as_deref()
                .map(NoProxy::parse)
                .unwrap_or_default(),
        })
    }
}

/// Parses a proxy URL. From the configuration file (`from_env` false) the scheme and the
/// port are required and a password is refused; from the environment, as curl reads it,
/// a missing scheme is `http://`, a missing port 1080, and a password is taken.
pub(crate) fn parse_url(s: &str, from_env: bool) -> Result<ProxyUrl, String> {
    const FORMS: &str = "\"http://[user@]host:port\", \"socks5://[user@]host:port\" or \
                         \"socks5h://[user@]host:port\"";
    let s = s.trim();
    let (scheme, rest) = match s.split_once("://") {
        Some((scheme, rest)) => (scheme.to_ascii_lowercase(), rest),
        None if from_env => ("http".to_owned(), s),
        None => return Err(format!("proxy \"{s}\" has no scheme; write {FORMS}")),
    };
    let scheme = match scheme.as_str() {
        "http" => ProxyScheme::Http,
        "socks5" => ProxyScheme::Socks5,
        "socks5h" => ProxyScheme::Socks5h,
        "https" => {
            return Err(format!(
                "proxy \"{s}\": TLS to the proxy (https://) is not supported; the SSH \
                 connection inside is encrypted anyway: use http://"
            ));
        }
        other => {
            return Err(format!(
                "proxy \"{s}\": unknown scheme \"{other}\"; write {FORMS}"
            ));
        }
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.contains(['/', '?', '#']) {
        return Err(format!("proxy \"{s}\" has a path; write only {FORMS}"));
    }
    let (userinfo, hostport) = match rest.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, rest),
    };
    let (user, password) = match userinfo {
        None => (None, None),
        Some(info) => {
            let (user, password) = match info.split_once(':') {
                Some((u, p)) => (u, Some(p)),
                None => (info, None),
            };
            if password.is_some() && !from_env {
                return Err(format!(
                    "proxy \"{}://{user}:…@{hostport}\" has a password in it; put the password \
                     in a file of its own (mode 0600) and name it in proxy_password_file",
                    scheme.as_str()
                ));
            }
            let user = percent_decode(user).map_err(|e| format!("proxy user: {e}"))?;
            if user.is_empty() {
                return Err(format!("proxy \"{s}\" has an empty user name"));
            }
            let password = password
                .map(|p| percent_decode(p).map(Secret))
                .transpose()
                .map_err(|e| format!("proxy password: {e}"))?;
            (Some(user), password)
        }
    };
    let (host, port) = parse_host_port(hostport).map_err(|e| format!("proxy \"{s}\": {e}"))?;
    let port = match port {
        Some(p) => p,
        None if from_env => ENV_DEFAULT_PORT,
        None => return Err(format!("proxy \"{s}\" has no port; write {FORMS}")),
    };
    Ok(ProxyUrl {
        scheme,
        host,
        port,
        user,
        password,
    })
}

fn percent_decode(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("bad %-escape in \"{s}\""))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("\"{s}\" is not UTF-8 once decoded"))
}

/// Checks a `proxy_command` template: not empty, and only `%h %p %r %n %%` in it.
pub(crate) fn check_command(s: &str) -> Result<(), String> {
    if s.trim().is_empty() {
        return Err("proxy_command is empty; write a command, or \"none\"".to_owned());
    }
    let known = |t| matches!(t, 'h' | 'p' | 'r' | 'n' | '%').then(String::new);
    match substitute_tokens(s, known) {
        Ok(_) => Ok(()),
        Err(Some(other)) => Err(format!(
            "proxy_command has \"%{other}\"; only %h (host), %p (port), %r (user), \
             %n (host as written) and %% are expanded"
        )),
        Err(None) => {
            Err("proxy_command ends in a lone '%'; write %% for a percent sign".to_owned())
        }
    }
}

/// Walks a `proxy_command` template: text is copied, each `%X` becomes `token(X)`.
///
/// # Errors
/// `Some(X)` for a `%X` that `token` refuses (`None`), `None` for a `%` at the end.
pub fn substitute_tokens(
    template: &str,
    mut token: impl FnMut(char) -> Option<String>,
) -> Result<String, Option<char>> {
    let mut out = String::with_capacity(template.len());
    let mut chars = template.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let t = chars.next().ok_or(None)?;
        out.push_str(&token(t).ok_or(Some(t))?);
    }
    Ok(out)
}

/// A `proxy_command` template (checked when the file was loaded) with `%h`, `%p`, `%r`,
/// `%n` and `%%` expanded.
pub fn expand_command(template: &str, host: &str, port: u16, user: &str) -> String {
    let value = |t| match t {
        'h' | 'n' => Some(host.to_owned()),
        'p' => Some(port.to_string()),
        'r' => Some(user.to_owned()),
        '%' => Some("%".to_owned()),
        _ => None,
    };
    substitute_tokens(template, value).unwrap_or_else(|_| template.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_from_the_file() {
        let u = parse_url("http://proxy.corp:3128", false).unwrap();
        assert_eq!(
            (u.scheme, u.host.as_str(), u.port, u.user),
            (ProxyScheme::Http, "proxy.corp", 3128, None)
        );
        let u = parse_url("socks5h://bob@[2001:db8::1]:1080/", false).unwrap();
        assert_eq!(
            (u.scheme, u.host.as_str(), u.port, u.user.as_deref()),
            (ProxyScheme::Socks5h, "2001:db8::1", 1080, Some("bob"))
        );
        assert_eq!(u.to_string(), "socks5h://bob@[2001:db8::1]:1080");
        let u = parse_url("SOCKS5://a%40b@h:1", false).unwrap();
        assert_eq!(
            (u.scheme, u.user.as_deref()),
            (ProxyScheme::Socks5, Some("a@b"))
        );
        for (bad, says) in [
            ("proxy.corp:3128", "has no scheme"),
            ("https://p:443", "TLS to the proxy"),
            ("socks4://p:1080", "unknown scheme \"socks4\""),
            ("http://p", "has no port"),
            ("http://p:0", "port 0"),
            ("http://p:3128/path", "has a path"),
            ("http://bob:hunter2@p:3128", "proxy_password_file"),
            ("http://@p:3128", "empty user"),
            ("http://:3128", "empty host"),
        ] {
            let e = parse_url(bad, false).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
            assert!(!e.contains("hunter2"), "{bad}: the password is echoed: {e}");
        }
    }

    #[test]
    fn urls_from_the_environment_as_curl_reads_them() {
        let u = parse_url("proxy.corp", true).unwrap();
        assert_eq!(
            (u.scheme, u.host.as_str(), u.port),
            (ProxyScheme::Http, "proxy.corp", 1080)
        );
        let u = parse_url("http://bob:s%3Acret@p:8080", true).unwrap();
        assert_eq!(u.password, Some(Secret("s:cret".to_owned())));
        assert_eq!(u.to_string(), "http://bob@p:8080");
        assert!(!format!("{u:?}").contains("s:cret"));
        let vars = ProxyVars {
            proxy: Some(("https_proxy".into(), "socks5h://p:9".into())),
            no_proxy: Some(" .internal.example, 10.0.0.0/8,*.bad ,[::1]".into()),
        };
        let env = vars.resolve().unwrap();
        let proxy = Proxy::Env(env);
        assert!(proxy.route("box.internal.example").is_none());
        assert!(proxy.route("internal.example").is_none());
        assert!(proxy.route("notinternal.example").is_some());
        assert!(proxy.route("10.1.2.3").is_none());
        assert!(proxy.route("11.1.2.3").is_some());
        assert!(proxy.route("::1").is_none());
        assert!(proxy.route("public.example").is_some());
        assert_eq!(
            proxy.to_string(),
            "env: socks5h://p:9 (from $https_proxy), not for internal.example,10.0.0.0/8,*.bad,[::1]"
        );
        let none = ProxyVars::default().resolve().unwrap();
        assert!(Proxy::Env(none).route("x").is_none());
        assert!(NoProxy::parse("*").matches("anything"));
        let bad = ProxyVars {
            proxy: Some(("ALL_PROXY".into(), "ftp://p:1".into())),
            no_proxy: None,
        };
        assert!(bad.resolve().unwrap_err().starts_with("$ALL_PROXY: "));
    }

    #[test]
    fn commands_expand_as_openssh_does() {
        assert_eq!(
            expand_command(
                "nc -X connect -x p:3128 %h %p # %r %n 100%%",
                "h.example",
                2222,
                "bob"
            ),
            "nc -X connect -x p:3128 h.example 2222 # bob h.example 100%"
        );
        check_command("socat - PROXY:p:%h:%p,proxyport=3128").unwrap();
        assert!(
            check_command("ssh -W %h:%p %j")
                .unwrap_err()
                .contains("\"%j\"")
        );
        assert!(
            check_command("nc %h %p %")
                .unwrap_err()
                .contains("lone '%'")
        );
        assert!(check_command("  ").unwrap_err().contains("empty"));
    }
}
