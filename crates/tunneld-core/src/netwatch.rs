//! Watching the machine's network: rtnetlink's link, address and route groups, read as
//! they come (no polling). A burst of messages (a DHCP renewal sends several) becomes one
//! [`NetChange`] after [`DEBOUNCE`]; the tunnels react to it (see `tunnel.rs`): a session
//! whose local address is gone is rebuilt at once, the others are probed at once.
//!
//! Linux does not reset a TCP connection whose local address was removed: without this a
//! box that moved from Wi-Fi to 4G would wait out its heartbeats.
//!
//! The messages come from the kernel, but are read like any input: every length is
//! checked before use, and a message that does not parse is skipped.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// Messages closer together than this are one change.
pub(crate) const DEBOUNCE: Duration = Duration::from_millis(300);
/// Read buffer; the kernel's multicast messages are far smaller.
const BUF_BYTES: usize = 64 * 1024;
/// Descriptions kept per change, for the log.
const MAX_DESCRIBED: usize = 8;

const NLMSG_HDR_BYTES: usize = 16;
const RTM_NEWLINK: u16 = 16;
const RTM_DELLINK: u16 = 17;
const RTM_NEWADDR: u16 = 20;
const RTM_DELADDR: u16 = 21;
const RTM_NEWROUTE: u16 = 24;
const RTM_DELROUTE: u16 = 25;
const IFADDRMSG_BYTES: usize = 8;
const IFINFOMSG_BYTES: usize = 16;
const RTMSG_BYTES: usize = 12;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const RTA_DST: u16 = 1;
const RTA_GATEWAY: u16 = 5;
const RT_TABLE_MAIN: u8 = 254;
const IFF_UP: u32 = 0x1;
const IFF_LOWER_UP: u32 = 0x1_0000;

/// One debounced change of the network.
#[derive(Clone, Debug, Default)]
pub(crate) struct NetChange {
    /// What changed, in words.
    pub what: Arc<str>,
    /// Whether something came (an address, a route, a link up), not only went: only then
    /// is there a new path for a probe to find.
    pub gained: bool,
}

/// Starts watching; the receiver sees every debounced change. Without rtnetlink (a
/// sandbox that forbids `AF_NETLINK`) it says so once and nothing is ever published.
pub(crate) fn spawn(cancel: CancellationToken) -> watch::Receiver<NetChange> {
    let (tx, rx) = watch::channel(NetChange::default());
    tokio::spawn(async move {
        let socket = match open() {
            Ok(s) => s,
            Err(e) => {
                warn!(error = %e, "cannot watch the network (rtnetlink); network changes are noticed by heartbeats only");
                return;
            }
        };
        tokio::select! {
            _ = cancel.cancelled() => {}
            () = run(socket, tx) => {}
        }
    });
    rx
}

/// A non-blocking `NETLINK_ROUTE` socket joined to the link, IPv4/IPv6 address and route
/// groups.
fn open() -> std::io::Result<AsyncFd<OwnedFd>> {
    // SAFETY: socket(2) with constant arguments; the result is checked.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            libc::NETLINK_ROUTE,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh descriptor we own.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: sockaddr_nl is plain data; zeroed is a valid value.
    let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    addr.nl_groups = (libc::RTMGRP_LINK
        | libc::RTMGRP_IPV4_IFADDR
        | libc::RTMGRP_IPV6_IFADDR
        | libc::RTMGRP_IPV4_ROUTE
        | libc::RTMGRP_IPV6_ROUTE) as u32;
    // SAFETY: bind with a pointer to a sockaddr_nl and its size.
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            std::ptr::from_ref(&addr).cast(),
            std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the AsyncFd owns the descriptor: it stays open for as long as it is
    // registered, and is closed only after deregistration, on drop.
    unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }.map_err(std::io::Error::from)
}

/// Reads messages forever, publishing one change per burst.
async fn run(socket: AsyncFd<OwnedFd>, tx: watch::Sender<NetChange>) {
    let mut buf = vec![0u8; BUF_BYTES];
    loop {
        // The first message of a burst, then whatever follows within DEBOUNCE.
        let mut events = Vec::new();
        if !read_into(&socket, &mut buf, &mut events).await {
            return;
        }
        let until = tokio::time::Instant::now() + DEBOUNCE;
        while let Ok(ok) =
            tokio::time::timeout_at(until, read_into(&socket, &mut buf, &mut events)).await
        {
            if !ok {
                return;
            }
        }
        if events.is_empty() {
            continue;
        }
        let gained = events.iter().any(|e| e.gained);
        let mut what: Vec<&str> = events.iter().map(|e| e.text.as_str()).collect();
        let more = what.len().saturating_sub(MAX_DESCRIBED);
        what.truncate(MAX_DESCRIBED);
        let mut text = what.join("; ");
        if more > 0 {
            text.push_str(&format!("; and {more} more"));
        }
        info!(change = %text, "network changed");
        tx.send_replace(NetChange {
            what: text.into(),
            gained,
        });
    }
}

/// Waits for one datagram and appends what it describes; false when the socket failed.
async fn read_into(socket: &AsyncFd<OwnedFd>, buf: &mut [u8], events: &mut Vec<Event>) -> bool {
    loop {
        let Ok(mut ready) = socket.readable().await else {
            return false;
        };
        // SAFETY: recv into a buffer we own, with its length.
        let n = unsafe {
            libc::recv(
                socket.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_DONTWAIT,
            )
        };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            match e.kind() {
                std::io::ErrorKind::WouldBlock => {
                    ready.clear_ready();
                    continue;
                }
                std::io::ErrorKind::Interrupted => continue,
                // ENOBUFS: messages were lost; something changed all the same.
                _ if e.raw_os_error() == Some(libc::ENOBUFS) => {
                    events.push(Event {
                        text: "several changes (some messages were dropped)".into(),
                        gained: true,
                    });
                    return true;
                }
                _ => {
                    warn!(error = %e, "reading rtnetlink failed; no longer watching the network");
                    return false;
                }
            }
        }
        let n = usize::try_from(n).unwrap_or(0).min(buf.len());
        events.extend(describe(&buf[..n]));
        return true;
    }
}

/// One change, in words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Event {
    pub text: String,
    pub gained: bool,
}

/// The changes in one datagram of rtnetlink messages; what does not parse is skipped.
pub(crate) fn describe(mut data: &[u8]) -> Vec<Event> {
    let mut out = Vec::new();
    while data.len() >= NLMSG_HDR_BYTES {
        let len = u32::from_ne_bytes(data[0..4].try_into().expect("4 bytes")) as usize;
        let kind = u16::from_ne_bytes(data[4..6].try_into().expect("2 bytes"));
        if len < NLMSG_HDR_BYTES || len > data.len() {
            break;
        }
        let body = &data[NLMSG_HDR_BYTES..len];
        if let Some(e) = event(kind, body) {
            out.push(e);
        }
        let next = len.saturating_add(3) & !3;
        data = data.get(next..).unwrap_or_default();
    }
    out
}

fn event(kind: u16, body: &[u8]) -> Option<Event> {
    match kind {
        RTM_NEWADDR | RTM_DELADDR => {
            let head = body.get(..IFADDRMSG_BYTES)?;
            let (family, prefix) = (head[0], head[1]);
            let index = u32::from_ne_bytes(head[4..8].try_into().ok()?);
            let attrs = attributes(body.get(IFADDRMSG_BYTES..)?);
            let addr = attrs
                .iter()
                .find(|(t, _)| *t == IFA_LOCAL)
                .or_else(|| attrs.iter().find(|(t, _)| *t == IFA_ADDRESS))
                .and_then(|(_, v)| ip(family, v))?;
            // Link-local addresses come and go with every link and carry no session.
            if is_link_local(addr) {
                return None;
            }
            let added = kind == RTM_NEWADDR;
            Some(Event {
                text: format!(
                    "address {addr}/{prefix} {} (interface {index})",
                    if added { "added" } else { "removed" }
                ),
                gained: added,
            })
        }
        RTM_NEWLINK | RTM_DELLINK => {
            let head = body.get(..IFINFOMSG_BYTES)?;
            let index = i32::from_ne_bytes(head[4..8].try_into().ok()?);
            let flags = u32::from_ne_bytes(head[8..12].try_into().ok()?);
            let up = kind == RTM_NEWLINK && flags & IFF_UP != 0 && flags & IFF_LOWER_UP != 0;
            Some(Event {
                text: format!(
                    "interface {index} {}",
                    match (kind, up) {
                        (RTM_DELLINK, _) => "removed",
                        (_, true) => "up",
                        _ => "down",
                    }
                ),
                gained: up,
            })
        }
        RTM_NEWROUTE | RTM_DELROUTE => {
            let head = body.get(..RTMSG_BYTES)?;
            let (family, dst_len, table) = (head[0], head[1], head[4]);
            // The local and broadcast tables follow the addresses; only main matters.
            if table != RT_TABLE_MAIN {
                return None;
            }
            let attrs = attributes(body.get(RTMSG_BYTES..)?);
            let dst = attrs
                .iter()
                .find(|(t, _)| *t == RTA_DST)
                .and_then(|(_, v)| ip(family, v))
                .map_or_else(|| "default".to_owned(), |a| format!("{a}/{dst_len}"));
            if attrs
                .iter()
                .find(|(t, _)| *t == RTA_DST)
                .and_then(|(_, v)| ip(family, v))
                .is_some_and(is_link_local)
            {
                return None;
            }
            let via = attrs
                .iter()
                .find(|(t, _)| *t == RTA_GATEWAY)
                .and_then(|(_, v)| ip(family, v))
                .map(|g| format!(" via {g}"))
                .unwrap_or_default();
            let added = kind == RTM_NEWROUTE;
            Some(Event {
                text: format!(
                    "route {dst}{via} {}",
                    if added { "added" } else { "removed" }
                ),
                gained: added,
            })
        }
        _ => None,
    }
}

/// `(type, value)` of each rtattr in `data`, stopping at the first malformed one.
fn attributes(mut data: &[u8]) -> Vec<(u16, &[u8])> {
    let mut out = Vec::new();
    while data.len() >= 4 {
        let len = usize::from(u16::from_ne_bytes([data[0], data[1]]));
        let kind = u16::from_ne_bytes([data[2], data[3]]);
        if len < 4 || len > data.len() {
            break;
        }
        out.push((kind, &data[4..len]));
        let next = len.saturating_add(3) & !3;
        data = data.get(next..).unwrap_or_default();
    }
    out
}

fn ip(family: u8, v: &[u8]) -> Option<IpAddr> {
    match (i32::from(family), v.len()) {
        (libc::AF_INET, 4) => Some(IpAddr::V4(Ipv4Addr::new(v[0], v[1], v[2], v[3]))),
        (libc::AF_INET6, 16) => {
            let octets: [u8; 16] = v.try_into().ok()?;
            Some(IpAddr::V6(Ipv6Addr::from(octets)))
        }
        _ => None,
    }
}

fn is_link_local(addr: IpAddr) -> bool {
    match addr {
        IpAddr::V4(a) => a.is_link_local(),
        IpAddr::V6(a) => a.is_unicast_link_local(),
    }
}

/// Whether `addr` is still an address of this machine (binding to it works).
pub(crate) fn is_local(addr: IpAddr) -> bool {
    match std::net::UdpSocket::bind((addr, 0)) {
        Ok(_) => true,
        // Only "not available" says it is gone; anything else is not evidence of that.
        Err(e) => e.raw_os_error() != Some(libc::EADDRNOTAVAIL),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nlmsg(kind: u16, body: &[u8]) -> Vec<u8> {
        let len = (NLMSG_HDR_BYTES + body.len()) as u32;
        let mut m = Vec::new();
        m.extend_from_slice(&len.to_ne_bytes());
        m.extend_from_slice(&kind.to_ne_bytes());
        m.extend_from_slice(&[0u8; 10]);
        m.extend_from_slice(body);
        while m.len() % 4 != 0 {
            m.push(0);
        }
        m
    }

    fn rtattr(kind: u16, value: &[u8]) -> Vec<u8> {
        let mut a = Vec::new();
        a.extend_from_slice(&((4 + value.len()) as u16).to_ne_bytes());
        a.extend_from_slice(&kind.to_ne_bytes());
        a.extend_from_slice(value);
        while a.len() % 4 != 0 {
            a.push(0);
        }
        a
    }

    fn addr_msg(kind: u16, addr: [u8; 4], index: u32) -> Vec<u8> {
        let mut body = vec![libc::AF_INET as u8, 24, 0, 0];
        body.extend_from_slice(&index.to_ne_bytes());
        body.extend(rtattr(IFA_LOCAL, &addr));
        nlmsg(kind, &body)
    }

    #[test]
    fn address_link_and_route_messages_are_described() {
        let mut data = addr_msg(RTM_DELADDR, [192, 168, 1, 2], 3);
        let mut link = vec![0u8; IFINFOMSG_BYTES];
        link[4..8].copy_from_slice(&3i32.to_ne_bytes());
        link[8..12].copy_from_slice(&(IFF_UP | IFF_LOWER_UP).to_ne_bytes());
        data.extend(nlmsg(RTM_NEWLINK, &link));
        let mut route = vec![
            libc::AF_INET as u8,
            0,
            0,
            0,
            RT_TABLE_MAIN,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
        ];
        route.extend(rtattr(RTA_GATEWAY, &[10, 64, 0, 1]));
        data.extend(nlmsg(RTM_NEWROUTE, &route));
        let mut local_table = vec![libc::AF_INET as u8, 32, 0, 0, 255, 0, 0, 0, 0, 0, 0, 0];
        local_table.extend(rtattr(RTA_DST, &[192, 168, 1, 2]));
        data.extend(nlmsg(RTM_DELROUTE, &local_table));
        let got = describe(&data);
        let texts: Vec<&str> = got.iter().map(|e| e.text.as_str()).collect();
        assert_eq!(
            texts,
            [
                "address 192.168.1.2/24 removed (interface 3)",
                "interface 3 up",
                "route default via 10.64.0.1 added",
            ]
        );
        assert_eq!(
            got.iter().map(|e| e.gained).collect::<Vec<_>>(),
            [false, true, true]
        );
    }

    #[test]
    fn link_local_addresses_and_routes_are_not_changes() {
        let mut body = vec![libc::AF_INET6 as u8, 64, 0, 0];
        body.extend_from_slice(&2u32.to_ne_bytes());
        let mut fe80 = [0u8; 16];
        fe80[0] = 0xfe;
        fe80[1] = 0x80;
        fe80[15] = 1;
        body.extend(rtattr(IFA_ADDRESS, &fe80));
        let mut data = nlmsg(RTM_NEWADDR, &body);
        let mut route = vec![
            libc::AF_INET6 as u8,
            64,
            0,
            0,
            RT_TABLE_MAIN,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
        ];
        route.extend(rtattr(RTA_DST, &fe80));
        data.extend(nlmsg(RTM_NEWROUTE, &route));
        assert_eq!(describe(&data), []);
    }

    /// Truncated and lying lengths end the parse; nothing panics, nothing is read past
    /// the end.
    #[test]
    fn malformed_datagrams_are_skipped_without_panic() {
        let good = addr_msg(RTM_NEWADDR, [10, 0, 0, 1], 2);
        for cut in 0..good.len() {
            let _ = describe(&good[..cut]);
        }
        let mut lying = good.clone();
        lying[0..4].copy_from_slice(&10_000u32.to_ne_bytes());
        assert!(describe(&lying).is_empty());
        let mut short_attr = good.clone();
        // The rtattr's own length: below its header.
        short_attr[NLMSG_HDR_BYTES + IFADDRMSG_BYTES] = 2;
        assert!(describe(&short_attr).is_empty());
        // Every byte value in every position of a small message.
        for i in 0..good.len() {
            for b in [0u8, 1, 3, 4, 0x7f, 0xff] {
                let mut m = good.clone();
                m[i] = b;
                let _ = describe(&m);
            }
        }
    }

    #[test]
    fn loopback_is_local_and_a_test_net_address_is_not() {
        assert!(is_local(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        assert!(!is_local(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 77))));
    }
}
