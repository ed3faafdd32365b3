//! Running under systemd: logging to the journal or stderr, and the notify protocol
//! (`READY=1`, `STATUS=`, `RELOADING=1`, `STOPPING=1`, `WATCHDOG=1`).

use std::ffi::{OsStr, OsString};
use std::io::IsTerminal;
use std::os::fd::AsFd;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

use sd_notify::NotifyState;
use tracing::warn;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// A send to systemd's notify socket gives up after this long rather than stall a runtime
/// worker; systemd reads the socket promptly, so this only matters when it is wedged.
const NOTIFY_SEND_TIMEOUT: Duration = Duration::from_millis(500);

/// Sets up tracing: journald (structured fields) when stderr is the journal, else
/// human-readable lines on stderr.
///
/// `level` is the config's `log_level` (`"info"` etc.); `RUST_LOG` overrides it.
///
/// The journal is used only when `JOURNAL_STREAM` names stderr (its `dev:inode` matches
/// stderr's) and the journald socket answers. Event fields keep their names, upcased:
/// `tunnel = ..` becomes `TUNNEL=`, `forward = ..` becomes `FORWARD=`.
pub fn init_logging(level: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let journald = if stderr_is_journal() {
        tracing_journald::layer()
            .ok()
            .map(|layer| layer.with_field_prefix(None))
    } else {
        None
    };
    let registry = tracing_subscriber::registry().with(filter);
    if let Some(journald) = journald {
        registry.with(journald).init();
    } else {
        registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(std::io::stderr)
                    .with_ansi(std::io::stderr().is_terminal()),
            )
            .init();
    }
}

/// True when `JOURNAL_STREAM` is set and names the file stderr is connected to.
fn stderr_is_journal() -> bool {
    let Some(stream) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    match std::io::stderr().as_fd().try_clone_to_owned() {
        Ok(fd) => stream_names(&stream, &std::fs::File::from(fd)),
        Err(_) => false,
    }
}

/// True when `JOURNAL_STREAM`'s `"<device>:<inode>"` (both decimal) is `file`'s.
fn stream_names(stream: &OsStr, file: &std::fs::File) -> bool {
    let Some((dev, ino)) = parse_journal_stream(stream) else {
        return false;
    };
    file.metadata()
        .is_ok_and(|meta| meta.dev() == dev && meta.ino() == ino)
}

fn parse_journal_stream(value: &OsStr) -> Option<(u64, u64)> {
    let (dev, ino) = value.to_str()?.split_once(':')?;
    Some((dev.parse().ok()?, ino.parse().ok()?))
}

/// systemd's notify protocol. Every call is a no-op without `NOTIFY_SOCKET`.
///
/// Each call sends one datagram with newline-separated assignments. Failures to send are
/// logged, never returned: systemd going away must not take the daemon with it.
#[derive(Debug)]
pub struct Notifier {
    socket: Option<(UnixDatagram, SocketAddr)>,
    watchdog_usec: Option<u64>,
}

impl Notifier {
    /// Reads `NOTIFY_SOCKET` (left set, for any child that wants it) and `WATCHDOG_USEC`;
    /// the watchdog counts only when `WATCHDOG_PID` is unset or is our pid.
    pub fn from_env() -> Notifier {
        Notifier::from_vars(
            std::env::var_os("NOTIFY_SOCKET"),
            std::env::var_os("WATCHDOG_USEC"),
            std::env::var_os("WATCHDOG_PID"),
        )
    }

    fn from_vars(
        notify_socket: Option<OsString>,
        watchdog_usec: Option<OsString>,
        watchdog_pid: Option<OsString>,
    ) -> Notifier {
        let Some(path) = notify_socket.filter(|p| !p.is_empty()) else {
            return Notifier::disabled();
        };
        let number = |v: OsString| v.to_str().and_then(|v| v.trim().parse::<u64>().ok());
        let ours =
            watchdog_pid.is_none_or(|pid| number(pid) == Some(u64::from(std::process::id())));
        let watchdog_usec = watchdog_usec.and_then(number).filter(|_| ours);
        Notifier::with_socket(&path, watchdog_usec)
    }

    /// A notifier sending to `path`; a leading `@` names an abstract socket, as in
    /// `NOTIFY_SOCKET`. `watchdog_usec` is `WATCHDOG_USEC` (0 or `None`: no watchdog).
    pub fn with_socket(path: impl AsRef<OsStr>, watchdog_usec: Option<u64>) -> Notifier {
        let path = path.as_ref();
        let addr = match path.as_bytes().strip_prefix(b"@") {
            Some(name) => SocketAddr::from_abstract_name(name),
            None => SocketAddr::from_pathname(path),
        };
        let socket = addr.and_then(|addr| {
            let socket = UnixDatagram::unbound()?;
            socket.set_write_timeout(Some(NOTIFY_SEND_TIMEOUT))?;
            Ok((socket, addr))
        });
        match socket {
            Ok(socket) => Notifier {
                socket: Some(socket),
                watchdog_usec: watchdog_usec.filter(|&usec| usec > 0),
            },
            Err(e) => {
                warn!(socket = %path.to_string_lossy(), error = %e, "cannot use systemd's notify socket");
                Notifier::disabled()
            }
        }
    }

    /// A notifier that sends nothing.
    pub fn disabled() -> Notifier {
        Notifier {
            socket: None,
            watchdog_usec: None,
        }
    }

    /// `READY=1` with `STATUS=<status>`.
    pub fn ready(&self, status: &str) {
        self.send(&[NotifyState::Ready, NotifyState::Status(status)]);
    }

    /// `STATUS=<status>`.
    pub fn status(&self, status: &str) {
        self.send(&[NotifyState::Status(status)]);
    }

    /// `RELOADING=1` with `MONOTONIC_USEC=` now; follow with [`Notifier::ready`] when done.
    pub fn reloading(&self) {
        if self.socket.is_none() {
            return;
        }
        match NotifyState::monotonic_usec_now() {
            Ok(now) => self.send(&[NotifyState::Reloading, now]),
            Err(e) => {
                warn!(error = %e, "cannot read CLOCK_MONOTONIC");
                self.send(&[NotifyState::Reloading]);
            }
        }
    }

    /// `STOPPING=1`.
    pub fn stopping(&self) {
        self.send(&[NotifyState::Stopping]);
    }

    /// `WATCHDOG=1`.
    pub fn watchdog_ping(&self) {
        self.send(&[NotifyState::Watchdog]);
    }

    /// How often to call [`Notifier::watchdog_ping`]: half of `WATCHDOG_USEC`, `None` when
    /// systemd's watchdog is off for us.
    pub fn watchdog_interval(&self) -> Option<Duration> {
        self.socket.as_ref()?;
        self.watchdog_usec
            .map(|usec| Duration::from_micros(usec / 2))
    }

    fn send(&self, states: &[NotifyState<'_>]) {
        let Some((socket, addr)) = &self.socket else {
            return;
        };
        let message = states
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n");
        if let Err(e) = socket.send_to_addr(message.as_bytes(), addr) {
            warn!(error = %e, "cannot notify systemd");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn receiver() -> (tempfile::TempDir, std::path::PathBuf, UnixDatagram) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let socket = UnixDatagram::bind(&path).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        (dir, path, socket)
    }

    fn recv(socket: &UnixDatagram) -> String {
        let mut buf = [0u8; 4096];
        let n = socket.recv(&mut buf).unwrap();
        String::from_utf8(buf[..n].to_vec()).unwrap()
    }

    fn monotonic_usec() -> i128 {
        match NotifyState::monotonic_usec_now().unwrap() {
            NotifyState::MonotonicUsec(usec) => usec,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn sends_one_datagram_per_state_change() {
        let (_dir, path, socket) = receiver();
        let notifier = Notifier::with_socket(&path, None);

        notifier.ready("0/2 tunnels up");
        assert_eq!(recv(&socket), "READY=1\nSTATUS=0/2 tunnels up");
        notifier.status("2/2 tunnels up");
        assert_eq!(recv(&socket), "STATUS=2/2 tunnels up");
        notifier.stopping();
        assert_eq!(recv(&socket), "STOPPING=1");
        notifier.watchdog_ping();
        assert_eq!(recv(&socket), "WATCHDOG=1");
    }

    #[test]
    fn reloading_carries_the_monotonic_clock() {
        let (_dir, path, socket) = receiver();
        let notifier = Notifier::with_socket(&path, None);
        let before = monotonic_usec();
        notifier.reloading();
        let after = monotonic_usec();
        let message = recv(&socket);
        let (first, second) = message.split_once('\n').unwrap();
        assert_eq!(first, "RELOADING=1");
        let usec: i128 = second
            .strip_prefix("MONOTONIC_USEC=")
            .unwrap()
            .parse()
            .unwrap();
        assert!(
            before <= usec && usec <= after,
            "{before} <= {usec} <= {after}"
        );
    }

    #[test]
    fn abstract_socket_names_start_with_at() {
        let name = format!("tunneld-test-{}", std::process::id());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let socket = UnixDatagram::bind_addr(&addr).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let notifier = Notifier::with_socket(format!("@{name}"), None);
        notifier.stopping();
        assert_eq!(recv(&socket), "STOPPING=1");
    }

    #[test]
    fn watchdog_interval_is_half_of_watchdog_usec() {
        let (_dir, path, _socket) = receiver();
        let notifier = Notifier::with_socket(&path, Some(30_000_000));
        assert_eq!(notifier.watchdog_interval(), Some(Duration::from_secs(15)));
        assert_eq!(Notifier::with_socket(&path, None).watchdog_interval(), None);
        assert_eq!(
            Notifier::with_socket(&path, Some(0)).watchdog_interval(),
            None
        );
    }

    #[test]
    fn without_a_socket_nothing_happens() {
        let notifier = Notifier::disabled();
        notifier.ready("ready");
        notifier.status("status");
        notifier.reloading();
        notifier.stopping();
        notifier.watchdog_ping();
        assert_eq!(notifier.watchdog_interval(), None);
    }

    #[test]
    fn a_vanished_socket_is_not_fatal() {
        let (dir, path, socket) = receiver();
        let notifier = Notifier::with_socket(&path, Some(1_000_000));
        drop(socket);
        drop(dir);
        notifier.ready("ready");
        notifier.watchdog_ping();
    }

    #[test]
    fn from_env_reads_the_watchdog_only_for_our_pid() {
        let (_dir, path, socket) = receiver();
        let os = |s: &str| Some(OsString::from(s));
        let pid = std::process::id().to_string();
        let sock = || Some(path.clone().into_os_string());

        let n = Notifier::from_vars(sock(), os("4000000"), None);
        assert_eq!(n.watchdog_interval(), Some(Duration::from_secs(2)));
        n.ready("up");
        assert_eq!(recv(&socket), "READY=1\nSTATUS=up");

        let n = Notifier::from_vars(sock(), os("4000000"), os(&pid));
        assert_eq!(n.watchdog_interval(), Some(Duration::from_secs(2)));
        let n = Notifier::from_vars(sock(), os("4000000"), os("1"));
        assert_eq!(n.watchdog_interval(), None);
        let n = Notifier::from_vars(sock(), os("soon"), None);
        assert_eq!(n.watchdog_interval(), None);

        let n = Notifier::from_vars(None, os("4000000"), None);
        assert_eq!(n.watchdog_interval(), None);
        n.ready("nowhere");
        let n = Notifier::from_vars(os(""), None, None);
        n.ready("nowhere");
    }

    #[test]
    fn journal_stream_names_a_file_by_device_and_inode() {
        let file = tempfile::tempfile().unwrap();
        let meta = file.metadata().unwrap();
        let stream = format!("{}:{}", meta.dev(), meta.ino());
        assert!(stream_names(OsStr::new(&stream), &file));
        let other = format!("{}:{}", meta.dev(), meta.ino() + 1);
        assert!(!stream_names(OsStr::new(&other), &file));
        assert!(!stream_names(OsStr::new("garbage"), &file));
    }

    #[test]
    fn journal_stream_is_device_colon_inode() {
        assert_eq!(
            parse_journal_stream(OsStr::new("8:123456")),
            Some((8, 123456))
        );
        assert_eq!(parse_journal_stream(OsStr::new("8")), None);
        assert_eq!(parse_journal_stream(OsStr::new("x:1")), None);
        assert_eq!(parse_journal_stream(OsStr::new("")), None);
    }
}
