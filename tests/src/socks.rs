//! SOCKS clients for tests without curl: SOCKS4, SOCKS4a and SOCKS5 (no auth) CONNECT.
//!
//! Each returns the connected stream once the proxy reports success, ready for payload.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long a handshake (connect to the proxy, request, reply) may take.
pub const SOCKS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// SOCKS4 reply code for "request granted".
const SOCKS4_GRANTED: u8 = 0x5A;

/// SOCKS4a CONNECT to `host:port`; the proxy resolves `host` (sent with IP 0.0.0.1).
///
/// # Errors
/// Connect or I/O failure, a reply code other than 0x5A (in the error), or
/// [`SOCKS_HANDSHAKE_TIMEOUT`].
pub async fn socks4a_connect(
    proxy: SocketAddr,
    host: &str,
    port: u16,
) -> anyhow::Result<TcpStream> {
    let mut req = vec![4, 1];
    req.extend_from_slice(&port.to_be_bytes());
    req.extend_from_slice(&[0, 0, 0, 1]);
    req.push(0); // empty user id
    req.extend_from_slice(host.as_bytes());
    req.push(0);
    socks4_handshake(proxy, req)
        .await
        .with_context(|| format!("socks4a via {proxy} to {host}:{port}"))
}

/// SOCKS4 CONNECT to `ip:port`.
///
/// # Errors
/// As [`socks4a_connect`].
pub async fn socks4_connect(
    proxy: SocketAddr,
    ip: Ipv4Addr,
    port: u16,
) -> anyhow::Result<TcpStream> {
    let mut req = vec![4, 1];
    req.extend_from_slice(&port.to_be_bytes());
    req.extend_from_slice(&ip.octets());
    req.push(0);
    socks4_handshake(proxy, req)
        .await
        .with_context(|| format!("socks4 via {proxy} to {ip}:{port}"))
}

async fn socks4_handshake(proxy: SocketAddr, req: Vec<u8>) -> anyhow::Result<TcpStream> {
    tokio::time::timeout(SOCKS_HANDSHAKE_TIMEOUT, async {
        let mut s = TcpStream::connect(proxy)
            .await
            .context("connect to proxy")?;
        s.set_nodelay(true)?;
        s.write_all(&req).await.context("send request")?;
        let mut reply = [0u8; 8];
        s.read_exact(&mut reply).await.context("read reply")?;
        if reply[1] != SOCKS4_GRANTED {
            bail!("proxy refused: reply code {:#04x}", reply[1]);
        }
        Ok(s)
    })
    .await
    .with_context(|| format!("no answer within {SOCKS_HANDSHAKE_TIMEOUT:?}"))?
}

/// SOCKS5 CONNECT without authentication. `host` goes as an IP address (ATYP 1 or 4) when
/// it parses as one, else as a domain name (ATYP 3) for the proxy to resolve.
///
/// # Errors
/// Connect or I/O failure, the proxy refusing no-auth, a reply code other than 0 (the error
/// names it), or [`SOCKS_HANDSHAKE_TIMEOUT`].
pub async fn socks5_connect(proxy: SocketAddr, host: &str, port: u16) -> anyhow::Result<TcpStream> {
    let mut req = vec![5, 1, 0];
    match host.parse::<IpAddr>() {
        Ok(IpAddr::V4(ip)) => {
            req.push(1);
            req.extend_from_slice(&ip.octets());
        }
        Ok(IpAddr::V6(ip)) => {
            req.push(4);
            req.extend_from_slice(&ip.octets());
        }
        Err(_) => {
            let len = u8::try_from(host.len()).context("host name longer than 255 bytes")?;
            req.push(3);
            req.push(len);
            req.extend_from_slice(host.as_bytes());
        }
    }
    req.extend_from_slice(&port.to_be_bytes());
    tokio::time::timeout(SOCKS_HANDSHAKE_TIMEOUT, async {
        let mut s = TcpStream::connect(proxy)
            .await
            .context("connect to proxy")?;
        s.set_nodelay(true)?;
        s.write_all(&[5, 1, 0]).await.context("send greeting")?;
        let mut choice = [0u8; 2];
        s.read_exact(&mut choice)
            .await
            .context("read method choice")?;
        if choice != [5, 0] {
            bail!("proxy did not accept no-auth: answered {choice:02x?}");
        }
        s.write_all(&req).await.context("send request")?;
        let mut head = [0u8; 4];
        s.read_exact(&mut head).await.context("read reply")?;
        if head[0] != 5 {
            bail!("reply version {:#04x}, expected 0x05", head[0]);
        }
        if head[1] != 0 {
            bail!(
                "proxy refused: reply code {:#04x} ({})",
                head[1],
                socks5_reply_name(head[1])
            );
        }
        // Skip the bound address: its length depends on its type.
        let addr_len = match head[3] {
            1 => 4,
            4 => 16,
            3 => usize::from(s.read_u8().await.context("read bound name length")?),
            t => bail!("reply address type {t:#04x} unknown"),
        };
        let mut rest = vec![0u8; addr_len + 2];
        s.read_exact(&mut rest)
            .await
            .context("read bound address")?;
        Ok(s)
    })
    .await
    .with_context(|| format!("no answer within {SOCKS_HANDSHAKE_TIMEOUT:?}"))?
    .with_context(|| format!("socks5 via {proxy} to {host}:{port}"))
}

fn socks5_reply_name(code: u8) -> &'static str {
    match code {
        1 => "general failure",
        2 => "not allowed by ruleset",
        3 => "network unreachable",
        4 => "host unreachable",
        5 => "connection refused",
        6 => "TTL expired",
        7 => "command not supported",
        8 => "address type not supported",
        _ => "unassigned",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    /// A one-shot fake proxy: for each step, checks the bytes it expects and answers;
    /// then echoes.
    async fn fake_proxy(steps: Vec<(Vec<u8>, Vec<u8>)>) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            for (expect, reply) in steps {
                let mut got = vec![0u8; expect.len()];
                s.read_exact(&mut got).await.unwrap();
                assert_eq!(got, expect);
                s.write_all(&reply).await.unwrap();
            }
            let (mut r, mut w) = s.split();
            let _ = tokio::io::copy(&mut r, &mut w).await;
        });
        addr
    }

    #[tokio::test]
    async fn socks4a_sends_hostname_and_accepts_5a() {
        let mut expect = vec![4, 1, 0x1F, 0x90, 0, 0, 0, 1, 0];
        expect.extend_from_slice(b"example.test\0");
        let proxy = fake_proxy(vec![(expect, vec![0, 0x5A, 0, 0, 0, 0, 0, 0])]).await;
        let s = socks4a_connect(proxy, "example.test", 8080).await.unwrap();
        crate::net::echo_roundtrip(s, b"payload").await.unwrap();
    }

    #[tokio::test]
    async fn socks4_reports_refusal_code() {
        let expect = vec![4, 1, 0, 80, 127, 0, 0, 1, 0];
        let proxy = fake_proxy(vec![(expect, vec![0, 0x5B, 0, 0, 0, 0, 0, 0])]).await;
        let err = socks4_connect(proxy, Ipv4Addr::LOCALHOST, 80)
            .await
            .unwrap_err();
        assert!(format!("{err:#}").contains("0x5b"), "{err:#}");
    }

    #[tokio::test]
    async fn socks5_domain_and_ip() {
        let greeting = (vec![5, 1, 0], vec![5, 0]);
        let mut expect = vec![5, 1, 0, 3, 9];
        expect.extend_from_slice(b"localhost");
        expect.extend_from_slice(&[0, 22]);
        // A reply with a domain-name bound address, to exercise the variable-length skip.
        let ok_name = vec![5, 0, 0, 3, 3, b'a', b'b', b'c', 0, 0];
        let proxy = fake_proxy(vec![greeting.clone(), (expect, ok_name)]).await;
        let s = socks5_connect(proxy, "localhost", 22).await.unwrap();
        crate::net::echo_roundtrip(s, b"x").await.unwrap();

        let expect = vec![5, 1, 0, 1, 127, 0, 0, 1, 0, 22];
        let ok_v4 = vec![5, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        let proxy = fake_proxy(vec![greeting, (expect, ok_v4)]).await;
        let s = socks5_connect(proxy, "127.0.0.1", 22).await.unwrap();
        crate::net::echo_roundtrip(s, b"after reply").await.unwrap();
    }

    #[tokio::test]
    async fn socks5_reports_refusal_code() {
        let mut expect = vec![5, 1, 0, 4];
        expect.extend_from_slice(&std::net::Ipv6Addr::LOCALHOST.octets());
        expect.extend_from_slice(&[0, 1]);
        let refused = vec![5, 5, 0, 1, 0, 0, 0, 0, 0, 0];
        let proxy = fake_proxy(vec![(vec![5, 1, 0], vec![5, 0]), (expect, refused)]).await;
        let err = socks5_connect(proxy, "::1", 1).await.unwrap_err();
        assert!(
            format!("{err:#}").contains("0x05 (connection refused)"),
            "{err:#}"
        );
    }
}
