//! The first hop through a proxy: an HTTP CONNECT or SOCKS5 handshake on a TCP
//! connection to the proxy, or a command whose stdin and stdout carry the connection
//! ([`crate::proxy_command`]). Every wait here runs inside the tunnel's `connect_timeout`.

use std::io::ErrorKind;
use std::net::IpAddr;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use base64ct::Encoding;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tunneld_config::{ProxyScheme, ProxyUrl, TunnelConfig};

use crate::error::TunnelError;

/// The longest HTTP response head a proxy may send before the tunnel's data.
const MAX_HTTP_HEAD_BYTES: usize = 16 * 1024;
/// The longest password file read.
const MAX_PASSWORD_BYTES: u64 = 4096;
/// The status line as quoted in errors, at most.
const MAX_QUOTED_BYTES: usize = 200;

/// A TCP connection to `url` on which the proxy has opened the way to `host:port`.
///
/// # Errors
/// [`TunnelError::Proxy`]: the proxy is unreachable, refused our credentials (then
/// [`TunnelError::needs_operator`]), or could not reach the server; the message quotes
/// what it said.
pub(crate) async fn connect(
    cfg: &TunnelConfig,
    url: &ProxyUrl,
    host: &str,
    port: u16,
) -> Result<TcpStream, TunnelError> {
    let fail = |reason: String, auth: bool| TunnelError::Proxy {
        proxy: url.to_string(),
        reason,
        auth,
    };
    let password = match (&url.user, &url.password, &cfg.proxy.password_file) {
        (None, ..) => None,
        (Some(_), Some(p), _) => Some(p.0.clone()),
        (Some(_), None, Some(file)) => Some(read_password(file).map_err(|e| fail(e, true))?),
        (Some(user), None, None) => {
            return Err(fail(
                format!("no password for the proxy user \"{user}\""),
                true,
            ));
        }
    };
    let credentials = url.user.as_deref().zip(password.as_deref());
    let mut tcp = TcpStream::connect((url.host.as_str(), url.port))
        .await
        .map_err(|e| fail(format!("cannot connect to the proxy: {e}"), false))?;
    let target = tunneld_config::HostPort {
        host: host.to_owned(),
        port,
    };
    let lost = |e: std::io::Error| {
        let why = if e.kind() == ErrorKind::UnexpectedEof {
            "the proxy closed the connection during its handshake".to_owned()
        } else {
            format!("the proxy's handshake failed: {e}")
        };
        fail(why, false)
    };
    let refused = match url.scheme {
        ProxyScheme::Http => http_connect(&mut tcp, &target, credentials).await,
        ProxyScheme::Socks5 | ProxyScheme::Socks5h => {
            let remote_dns = url.scheme == ProxyScheme::Socks5h;
            socks5_connect(&mut tcp, &target, credentials, remote_dns).await
        }
    }
    .map_err(lost)?;
    match refused {
        None => Ok(tcp),
        Some(Refusal { reason, auth }) => Err(fail(reason, auth)),
    }
}

/// The client side of a proxy handshake to `ssh.example:22` on `stream`, for the fuzz
/// target: `Ok(None)` when the proxy opened the way, `Ok(Some(why))` when it refused.
/// SOCKS5 sends the name (nothing is resolved).
///
/// # Errors
/// The stream failed or ended during the handshake.
pub async fn handshake_for_fuzzing<S>(
    stream: &mut S,
    scheme: ProxyScheme,
    credentials: Option<(&str, &str)>,
) -> std::io::Result<Option<String>>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let target = tunneld_config::HostPort {
        host: "ssh.example".to_owned(),
        port: 22,
    };
    let refused = match scheme {
        ProxyScheme::Http => http_connect(stream, &target, credentials).await?,
        ProxyScheme::Socks5 | ProxyScheme::Socks5h => {
            socks5_connect(stream, &target, credentials, true).await?
        }
    };
    Ok(refused.map(|r| r.reason))
}

/// Why a proxy would not open the way, and whether it is about our credentials.
#[derive(Debug, PartialEq)]
struct Refusal {
    reason: String,
    auth: bool,
}

/// Reads the proxy password: one line of a file no one else may read.
fn read_password(path: &Path) -> Result<String, String> {
    crate::safe_fs::check_link(path, "proxy_password_file")?;
    let shown = path.display();
    let meta = std::fs::metadata(path).map_err(|e| format!("proxy_password_file {shown}: {e}"))?;
    if meta.mode() & 0o077 != 0 {
        return Err(format!(
            "permissions {:04o} for proxy_password_file {shown} are too open: others must not \
             read a password, so it is not used (chmod 600 {shown})",
            meta.mode() & 0o7777
        ));
    }
    if meta.len() > MAX_PASSWORD_BYTES {
        return Err(format!(
            "proxy_password_file {shown} is {} bytes long; it should hold only the password",
            meta.len()
        ));
    }
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("proxy_password_file {shown}: {e}"))?;
    let password = text.strip_suffix('\n').unwrap_or(&text);
    let password = password.strip_suffix('\r').unwrap_or(password);
    if password.is_empty() {
        return Err(format!("proxy_password_file {shown} is empty"));
    }
    Ok(password.to_owned())
}

/// What a peer said, fit to quote: printable, bounded.
fn quote(bytes: &[u8]) -> String {
    let text: String = String::from_utf8_lossy(bytes)
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    match text.char_indices().nth(MAX_QUOTED_BYTES) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

/// `CONNECT host:port`; `None` once the proxy answered 2xx, with its response head read
/// and nothing after it (the server's banner may follow at once).
async fn http_connect<S>(
    stream: &mut S,
    target: &tunneld_config::HostPort,
    credentials: Option<(&str, &str)>,
) -> std::io::Result<Option<Refusal>>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut request = format!(
        "CONNECT {target} HTTP/1.1\r\nHost: {target}\r\nUser-Agent: tunneld/{}\r\n",
        env!("CARGO_PKG_VERSION")
    );
    if let Some((user, password)) = credentials {
        let token = base64ct::Base64::encode_string(format!("{user}:{password}").as_bytes());
        request.push_str(&format!("Proxy-Authorization: Basic {token}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await?;
    // One byte at a time: whatever follows the head belongs to the SSH connection.
    let mut head = Vec::with_capacity(256);
    while !head.ends_with(b"\r\n\r\n") && !head.ends_with(b"\n\n") {
        if head.len() >= MAX_HTTP_HEAD_BYTES {
            return Ok(Some(Refusal {
                reason: format!(
                    "the proxy's answer to CONNECT {target} has no end within \
                     {MAX_HTTP_HEAD_BYTES} bytes (not an HTTP proxy?)"
                ),
                auth: false,
            }));
        }
        head.push(stream.read_u8().await?);
    }
    let line_end = head.iter().position(|&b| b == b'\n').unwrap_or(head.len());
    let status_line = head[..line_end]
        .strip_suffix(b"\r")
        .unwrap_or(&head[..line_end]);
    let shown = quote(status_line);
    let code = std::str::from_utf8(status_line)
        .ok()
        .filter(|l| l.starts_with("HTTP/"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse::<u16>().ok());
    let refusal = |reason: String, auth: bool| Ok(Some(Refusal { reason, auth }));
    match code {
        Some(200..=299) => Ok(None),
        None => refusal(
            format!("the proxy did not answer CONNECT {target} in HTTP: \"{shown}\""),
            false,
        ),
        // tinyproxy says 401 where RFC 9110 says 407.
        Some(401 | 407) if credentials.is_some() => refusal(
            format!(
                "the proxy refused the user \"{}\" and its password (\"{shown}\")",
                credentials.map_or("", |c| c.0)
            ),
            true,
        ),
        Some(401 | 407) => refusal(
            format!(
                "the proxy wants a user and password (\"{shown}\"): write proxy = \
                 \"http://USER@host:port\" and name the password's file in proxy_password_file"
            ),
            true,
        ),
        Some(403) => refusal(
            format!("the proxy forbids CONNECT to {target} (\"{shown}\")"),
            true,
        ),
        Some(_) => refusal(
            format!("the proxy could not open the way to {target}: \"{shown}\""),
            false,
        ),
    }
}

/// SOCKS5 (RFC 1928) with username/password authentication (RFC 1929) when
/// `credentials`; the server's name goes to the proxy when `remote_dns`, else we resolve it.
async fn socks5_connect<S>(
    stream: &mut S,
    target: &tunneld_config::HostPort,
    credentials: Option<(&str, &str)>,
    remote_dns: bool,
) -> std::io::Result<Option<Refusal>>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let refusal = |reason: String, auth: bool| Ok(Some(Refusal { reason, auth }));
    // Checked before anything is sent.
    if let Some((user, password)) = credentials
        && (user.len() > 255 || password.len() > 255)
    {
        return refusal(
            "SOCKS5 takes a user name and a password of at most 255 bytes each".to_owned(),
            true,
        );
    }
    let address = match target.host.parse::<IpAddr>() {
        Ok(ip) => Address::Ip(ip),
        Err(_) if remote_dns => {
            if target.host.len() > 255 {
                return refusal(
                    format!("the host name {} is too long for SOCKS5", target.host),
                    false,
                );
            }
            Address::Name(&target.host)
        }
        Err(_) => match tokio::net::lookup_host((target.host.as_str(), target.port))
            .await
            .map(|mut addrs| addrs.next())
        {
            Ok(Some(addr)) => Address::Ip(addr.ip()),
            Ok(None) => {
                return refusal(format!("{} has no address", target.host), false);
            }
            Err(e) => {
                return refusal(
                    format!(
                        "cannot resolve {} ({e}); with socks5h:// the proxy resolves it",
                        target.host
                    ),
                    false,
                );
            }
        },
    };
    let methods: &[u8] = if credentials.is_some() {
        &[METHOD_NONE, METHOD_PASSWORD]
    } else {
        &[METHOD_NONE]
    };
    let mut greeting = vec![SOCKS_VERSION, methods.len() as u8];
    greeting.extend_from_slice(methods);
    stream.write_all(&greeting).await?;
    let mut choice = [0u8; 2];
    stream.read_exact(&mut choice).await?;
    if choice[0] != SOCKS_VERSION {
        return refusal(
            format!("not a SOCKS5 proxy (it answered version {})", choice[0]),
            false,
        );
    }
    match (choice[1], credentials) {
        (METHOD_NONE, _) => {}
        (METHOD_PASSWORD, Some((user, password))) => {
            let mut auth = vec![1, user.len() as u8];
            auth.extend_from_slice(user.as_bytes());
            auth.push(password.len() as u8);
            auth.extend_from_slice(password.as_bytes());
            stream.write_all(&auth).await?;
            let mut status = [0u8; 2];
            stream.read_exact(&mut status).await?;
            if status[1] != 0 {
                return refusal(
                    format!("the proxy refused the user \"{user}\" and its password"),
                    true,
                );
            }
        }
        (METHOD_REFUSED, None) => {
            return refusal(
                "the proxy wants a user and password: write proxy = \"socks5://USER@host:port\" \
                 and name the password's file in proxy_password_file"
                    .to_owned(),
                true,
            );
        }
        (other, _) => {
            return refusal(
                format!("the proxy accepts none of our authentication methods (it chose {other})"),
                true,
            );
        }
    }
    let mut request = vec![SOCKS_VERSION, CMD_CONNECT, 0];
    match address {
        Address::Ip(IpAddr::V4(v4)) => {
            request.push(ATYP_V4);
            request.extend_from_slice(&v4.octets());
        }
        Address::Ip(IpAddr::V6(v6)) => {
            request.push(ATYP_V6);
            request.extend_from_slice(&v6.octets());
        }
        Address::Name(name) => {
            request.extend_from_slice(&[ATYP_NAME, name.len() as u8]);
            request.extend_from_slice(name.as_bytes());
        }
    }
    request.extend_from_slice(&target.port.to_be_bytes());
    stream.write_all(&request).await?;
    let mut reply = [0u8; 4];
    stream.read_exact(&mut reply).await?;
    if reply[1] != 0 {
        return refusal(
            format!(
                "the proxy could not open the way to {target}: {} (SOCKS5 reply {})",
                socks_reply_text(reply[1]),
                reply[1]
            ),
            reply[1] == 2,
        );
    }
    // The bound address: read and dropped, so the SSH banner is what comes next.
    let skip = match reply[3] {
        ATYP_V4 => 4,
        ATYP_V6 => 16,
        ATYP_NAME => usize::from(stream.read_u8().await?),
        other => {
            return refusal(
                format!("the proxy's reply has an unknown address type {other}"),
                false,
            );
        }
    };
    let mut bound = vec![0u8; skip + 2];
    stream.read_exact(&mut bound).await?;
    Ok(None)
}

const SOCKS_VERSION: u8 = 5;
const METHOD_NONE: u8 = 0;
const METHOD_PASSWORD: u8 = 2;
const METHOD_REFUSED: u8 = 0xff;
const CMD_CONNECT: u8 = 1;
const ATYP_V4: u8 = 1;
const ATYP_NAME: u8 = 3;
const ATYP_V6: u8 = 4;

enum Address<'a> {
    Ip(IpAddr),
    Name(&'a str),
}

/// RFC 1928 §6.
fn socks_reply_text(code: u8) -> &'static str {
    match code {
        1 => "general failure",
        2 => "not allowed by its rules",
        3 => "network unreachable",
        4 => "host unreachable",
        5 => "connection refused",
        6 => "TTL expired",
        7 => "command not supported",
        8 => "address type not supported",
        _ => "unknown error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    fn target() -> tunneld_config::HostPort {
        tunneld_config::HostPort {
            host: "ssh.example".into(),
            port: 22,
        }
    }

    /// Runs `client` against a peer that has sent `reply` (all its answers at once: the
    /// client reads only what each step needs); returns the client's result, the bytes it
    /// sent and what it left unread.
    async fn against<F, T>(reply: &[u8], client: F) -> (T, Vec<u8>, Vec<u8>)
    where
        F: AsyncFnOnce(&mut tokio::io::DuplexStream) -> T,
    {
        let (mut ours, mut theirs) = tokio::io::duplex(64 * 1024);
        let reply = reply.to_vec();
        let peer = tokio::spawn(async move {
            theirs.write_all(&reply).await.unwrap();
            theirs.shutdown().await.unwrap();
            let mut sent = Vec::new();
            theirs.read_to_end(&mut sent).await.unwrap();
            sent
        });
        let out = client(&mut ours).await;
        ours.shutdown().await.unwrap();
        let mut rest = Vec::new();
        ours.read_to_end(&mut rest).await.unwrap();
        (out, peer.await.unwrap(), rest)
    }

    #[tokio::test]
    async fn http_connect_leaves_the_banner_unread() {
        let reply = b"HTTP/1.1 200 Connection established\r\nVia: x\r\n\r\nSSH-2.0-OpenSSH_9.2\r\n";
        let (out, sent, rest) = against(reply, async |s| {
            http_connect(s, &target(), Some(("bob", "s:cret"))).await
        })
        .await;
        assert_eq!(out.unwrap(), None);
        assert!(
            String::from_utf8(sent)
                .unwrap()
                .contains("Basic Ym9iOnM6Y3JldA==\r\n")
        );
        assert_eq!(rest, b"SSH-2.0-OpenSSH_9.2\r\n");
    }

    #[tokio::test]
    async fn http_refusals_quote_the_status_line() {
        for (reply, creds, says, auth) in [
            (
                &b"HTTP/1.0 407 Proxy Authentication Required\r\n\r\n"[..],
                None,
                "wants a user and password",
                true,
            ),
            (
                b"HTTP/1.0 407 Proxy Authentication Required\r\n\r\n",
                Some(("bob", "x")),
                "refused the user \"bob\"",
                true,
            ),
            (
                b"HTTP/1.0 401 Unauthorized\r\n\r\n",
                Some(("bob", "x")),
                "refused the user \"bob\" and its password (\"HTTP/1.0 401 Unauthorized\")",
                true,
            ),
            (
                b"HTTP/1.1 403 Forbidden\r\n\r\n",
                None,
                "forbids CONNECT to ssh.example:22 (\"HTTP/1.1 403 Forbidden\")",
                true,
            ),
            (
                b"HTTP/1.1 502 Bad Gateway\r\n\r\n",
                None,
                "\"HTTP/1.1 502 Bad Gateway\"",
                false,
            ),
            (
                b"SSH-2.0-OpenSSH_9.2\r\n\r\n",
                None,
                "did not answer CONNECT ssh.example:22 in HTTP",
                false,
            ),
        ] {
            let (out, ..) = against(reply, async |s| http_connect(s, &target(), creds).await).await;
            let refusal = out.unwrap().expect("a refusal");
            assert!(refusal.reason.contains(says), "{}", refusal.reason);
            assert_eq!(refusal.auth, auth, "{}", refusal.reason);
        }
        // An answer that never ends is cut off, and a closed connection is an error.
        let endless = vec![b'a'; MAX_HTTP_HEAD_BYTES + 10];
        let (out, ..) = against(&endless, async |s| http_connect(s, &target(), None).await).await;
        assert!(out.unwrap().unwrap().reason.contains("has no end"));
        let (out, ..) = against(b"HTTP/1.1 200", async |s| {
            http_connect(s, &target(), None).await
        })
        .await;
        assert_eq!(out.unwrap_err().kind(), ErrorKind::UnexpectedEof);
    }

    #[tokio::test]
    async fn socks5_with_a_password_and_a_remote_name() {
        let reply = [
            5, 2, 1, 0, 5, 0, 0, 3, 4, b'a', b'b', b'c', b'd', 0, 22, b'S', b'S',
        ];
        let (out, sent, rest) = against(&reply, async |s| {
            socks5_connect(s, &target(), Some(("bob", "pw")), true).await
        })
        .await;
        assert_eq!(out.unwrap(), None);
        assert_eq!(&sent[..4], &[5, 2, 0, 2]);
        assert_eq!(&sent[4..12], &[1, 3, b'b', b'o', b'b', 2, b'p', b'w']);
        assert_eq!(&sent[12..17], &[5, 1, 0, 3, 11]);
        assert_eq!(&sent[17..28], b"ssh.example");
        assert_eq!(&sent[28..], &[0, 22]);
        assert_eq!(rest, b"SS");
    }

    #[tokio::test]
    async fn socks5_refusals() {
        let ip = tunneld_config::HostPort {
            host: "127.0.0.1".into(),
            port: 2222,
        };
        for (reply, creds, says, auth) in [
            (&[5u8, 0xff][..], None, "wants a user and password", true),
            (
                &[5, 2, 1, 1],
                Some(("bob", "x")),
                "refused the user \"bob\"",
                true,
            ),
            (
                &[5, 0, 5, 5, 0, 1],
                None,
                "connection refused (SOCKS5 reply 5)",
                false,
            ),
            (&[5, 0, 5, 2, 0, 1], None, "not allowed by its rules", true),
            (&[4, 90], None, "not a SOCKS5 proxy", false),
        ] {
            let (out, ..) =
                against(reply, async |s| socks5_connect(s, &ip, creds, false).await).await;
            let refusal = out.unwrap().expect("a refusal");
            assert!(refusal.reason.contains(says), "{}", refusal.reason);
            assert_eq!(refusal.auth, auth, "{}", refusal.reason);
        }
    }

    #[test]
    fn refused_credentials_wait_for_an_operator() {
        let error = |auth| TunnelError::Proxy {
            proxy: "http://p:1".into(),
            reason: "r".into(),
            auth,
        };
        assert!(error(true).needs_operator());
        assert!(!error(false).needs_operator());
    }

    #[test]
    fn password_files_must_be_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pass");
        std::fs::write(&file, "hunter2\n").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o640)).unwrap();
        let e = read_password(&file).unwrap_err();
        assert!(e.contains("too open") && !e.contains("hunter2"), "{e}");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(read_password(&file).unwrap(), "hunter2");
        std::fs::write(&file, "\n").unwrap();
        assert!(read_password(&file).unwrap_err().contains("is empty"));
        assert!(read_password(&dir.path().join("none")).is_err());
    }
}
