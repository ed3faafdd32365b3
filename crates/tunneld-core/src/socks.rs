//! The server side of SOCKS4, SOCKS4a and SOCKS5 (no authentication, CONNECT only).
//!
//! Host names are kept as names and handed to the SSH server unresolved, so `socks5h://`
//! clients resolve on the far side as they expect.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// A client has this long to finish its handshake (slowloris guard).
pub const SOCKS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest SOCKS4 user id or SOCKS4a host name we read.
const MAX_SOCKS4_STRING_BYTES: usize = 255;

/// Which protocol the client spoke, so the reply matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// SOCKS4 or SOCKS4a.
    V4,
    /// SOCKS5.
    V5,
}

/// A CONNECT request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Protocol of the request.
    pub version: Version,
    /// Target host: an IP address in text form, or a name to resolve on the server.
    pub host: String,
    /// Target port.
    pub port: u16,
}

/// Why a handshake failed. Where the protocol has a way to say so, the client was told.
#[derive(Debug, thiserror::Error)]
pub enum SocksError {
    /// The client did not speak SOCKS 4 or 5.
    #[error("not a SOCKS request (first byte {0:#04x})")]
    NotSocks(u8),
    /// The client asked for something we do not offer.
    #[error("unsupported SOCKS request: {0}")]
    Unsupported(&'static str),
    /// The request was malformed.
    #[error("malformed SOCKS request: {0}")]
    Malformed(&'static str),
    /// The socket failed or closed mid-handshake.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Reads a client's greeting and CONNECT request.
///
/// # Errors
/// [`SocksError`]; SOCKS5 clients asking for authentication or another command get
/// the proper refusal before the error is returned.
pub async fn read_request<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
) -> Result<Request, SocksError> {
    match s.read_u8().await? {
        4 => read_v4(s).await,
        5 => read_v5(s).await,
        other => Err(SocksError::NotSocks(other)),
    }
}

async fn read_v4<S: AsyncRead + AsyncWrite + Unpin>(s: &mut S) -> Result<Request, SocksError> {
    let command = s.read_u8().await?;
    let port = s.read_u16().await?;
    let mut ip = [0u8; 4];
    s.read_exact(&mut ip).await?;
    read_nul_terminated(s).await?; // user id, ignored
    if command != 1 {
        let _ = s.write_all(&[0, 0x5b, 0, 0, 0, 0, 0, 0]).await;
        return Err(SocksError::Unsupported("only CONNECT is supported"));
    }
    // SOCKS4a: 0.0.0.x with x != 0 means a host name follows.
    let host = if ip[..3] == [0, 0, 0] && ip[3] != 0 {
        let name = read_nul_terminated(s).await?;
        String::from_utf8(name).map_err(|_| SocksError::Malformed("host name is not UTF-8"))?
    } else {
        Ipv4Addr::from(ip).to_string()
    };
    if host.is_empty() {
        return Err(SocksError::Malformed("empty host name"));
    }
    Ok(Request {
        version: Version::V4,
        host,
        port,
    })
}

async fn read_nul_terminated<S: AsyncRead + Unpin>(s: &mut S) -> Result<Vec<u8>, SocksError> {
    let mut out = Vec::new();
    loop {
        let b = s.read_u8().await?;
        if b == 0 {
            return Ok(out);
        }
        if out.len() == MAX_SOCKS4_STRING_BYTES {
            return Err(SocksError::Malformed("SOCKS4 string longer than 255 bytes"));
        }
        out.push(b);
    }
}

async fn read_v5<S: AsyncRead + AsyncWrite + Unpin>(s: &mut S) -> Result<Request, SocksError> {
    let n = s.read_u8().await? as usize;
    let mut methods = vec![0u8; n];
    s.read_exact(&mut methods).await?;
    if !methods.contains(&0) {
        s.write_all(&[5, 0xff]).await?;
        return Err(SocksError::Unsupported(
            "client offers no \"no authentication\" method",
        ));
    }
    s.write_all(&[5, 0]).await?;
    let mut head = [0u8; 4];
    s.read_exact(&mut head).await?;
    if head[0] != 5 {
        return Err(SocksError::Malformed("bad version in request"));
    }
    let host = match head[3] {
        1 => {
            let mut ip = [0u8; 4];
            s.read_exact(&mut ip).await?;
            Ipv4Addr::from(ip).to_string()
        }
        3 => {
            let len = s.read_u8().await? as usize;
            let mut name = vec![0u8; len];
            s.read_exact(&mut name).await?;
            String::from_utf8(name).map_err(|_| SocksError::Malformed("host name is not UTF-8"))?
        }
        4 => {
            let mut ip = [0u8; 16];
            s.read_exact(&mut ip).await?;
            Ipv6Addr::from(ip).to_string()
        }
        _ => {
            let _ = reply_v5(s, 8).await;
            return Err(SocksError::Unsupported("unknown address type"));
        }
    };
    let port = s.read_u16().await?;
    if head[1] != 1 {
        let _ = reply_v5(s, 7).await;
        return Err(SocksError::Unsupported("only CONNECT is supported"));
    }
    if host.is_empty() {
        let _ = reply_v5(s, 1).await;
        return Err(SocksError::Malformed("empty host name"));
    }
    Ok(Request {
        version: Version::V5,
        host,
        port,
    })
}

async fn reply_v5<S: AsyncWrite + Unpin>(s: &mut S, code: u8) -> std::io::Result<()> {
    s.write_all(&[5, code, 0, 1, 0, 0, 0, 0, 0, 0]).await
}

/// Tells the client its connection is open.
///
/// # Errors
/// The socket's write error.
pub async fn reply_success<S: AsyncWrite + Unpin>(
    s: &mut S,
    version: Version,
) -> std::io::Result<()> {
    match version {
        Version::V4 => s.write_all(&[0, 0x5a, 0, 0, 0, 0, 0, 0]).await,
        Version::V5 => reply_v5(s, 0).await,
    }
}

/// Tells the client the target could not be reached (SOCKS5 "host unreachable").
///
/// # Errors
/// The socket's write error.
pub async fn reply_failure<S: AsyncWrite + Unpin>(
    s: &mut S,
    version: Version,
) -> std::io::Result<()> {
    reply_refusal(s, version, 4).await
}

/// Tells the client the target is not allowed (SOCKS5 "connection not allowed by
/// ruleset").
///
/// # Errors
/// The socket's write error.
pub async fn reply_not_allowed<S: AsyncWrite + Unpin>(
    s: &mut S,
    version: Version,
) -> std::io::Result<()> {
    reply_refusal(s, version, 2).await
}

/// A refusal: SOCKS5 with `code`; SOCKS4 has only "rejected or failed" (0x5b).
async fn reply_refusal<S: AsyncWrite + Unpin>(
    s: &mut S,
    version: Version,
    code: u8,
) -> std::io::Result<()> {
    match version {
        Version::V4 => s.write_all(&[0, 0x5b, 0, 0, 0, 0, 0, 0]).await,
        Version::V5 => reply_v5(s, code).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::duplex;

    async fn run(input: &[u8]) -> (Result<Request, SocksError>, Vec<u8>) {
        let (mut client, mut server) = duplex(1024);
        client.write_all(input).await.unwrap();
        // End of input: a truncated request must fail, not wait.
        client.shutdown().await.unwrap();
        let r = read_request(&mut server).await;
        drop(server);
        let mut out = Vec::new();
        client.read_to_end(&mut out).await.unwrap();
        (r, out)
    }

    #[tokio::test]
    async fn socks4_ip() {
        let (r, out) = run(&[4, 1, 0x1f, 0x90, 10, 1, 2, 3, b'u', 0]).await;
        assert_eq!(
            r.unwrap(),
            Request {
                version: Version::V4,
                host: "10.1.2.3".into(),
                port: 8080
            }
        );
        assert!(out.is_empty());
    }

    #[tokio::test]
    async fn socks4a_name() {
        let mut req = vec![4, 1, 0, 80, 0, 0, 0, 1, 0];
        req.extend_from_slice(b"example.org\0");
        let (r, _) = run(&req).await;
        assert_eq!(r.unwrap().host, "example.org");
    }

    #[tokio::test]
    async fn socks5_name_ipv4_ipv6() {
        let mut req = vec![5, 1, 0, 5, 1, 0, 3, 11];
        req.extend_from_slice(b"example.org");
        req.extend_from_slice(&[0, 80]);
        let (r, out) = run(&req).await;
        assert_eq!(
            r.unwrap(),
            Request {
                version: Version::V5,
                host: "example.org".into(),
                port: 80
            }
        );
        assert_eq!(out, vec![5, 0]);

        let (r, _) = run(&[5, 1, 0, 5, 1, 0, 1, 127, 0, 0, 1, 0, 22]).await;
        assert_eq!(r.unwrap().host, "127.0.0.1");

        let mut req = vec![5, 1, 0, 5, 1, 0, 4];
        req.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
        req.extend_from_slice(&[0, 22]);
        let (r, _) = run(&req).await;
        assert_eq!(r.unwrap().host, "::1");
    }

    #[tokio::test]
    async fn refusals_are_answered() {
        // Only username/password offered.
        let (r, out) = run(&[5, 1, 2]).await;
        assert!(matches!(r, Err(SocksError::Unsupported(_))));
        assert_eq!(out, vec![5, 0xff]);
        // BIND instead of CONNECT.
        let (r, out) = run(&[5, 1, 0, 5, 2, 0, 1, 1, 2, 3, 4, 0, 80]).await;
        assert!(matches!(r, Err(SocksError::Unsupported(_))));
        assert_eq!(out, vec![5, 0, 5, 7, 0, 1, 0, 0, 0, 0, 0, 0]);
        // Not SOCKS at all.
        let (r, _) = run(b"GET / HTTP/1.1\r\n").await;
        assert!(matches!(r, Err(SocksError::NotSocks(b'G'))));
        // Truncated.
        let (r, _) = run(&[5, 1]).await;
        assert!(matches!(r, Err(SocksError::Io(_))));
        // Over-long SOCKS4 user id.
        let mut req = vec![4, 1, 0, 80, 1, 2, 3, 4];
        req.extend(std::iter::repeat_n(b'a', 300));
        let (r, _) = run(&req).await;
        assert!(matches!(r, Err(SocksError::Malformed(_))));
    }
}
