//! Stopping at once: a stop never waits on a client, a reload never blocks the daemon's
//! loop (nor its systemd watchdog), a reload applies exactly the change it reports, and a
//! dropped daemon stops its tunnels.

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tunneld_tests::net::{echo_roundtrip, free_port, wait_port_closed};
use tunneld_tests::{EchoServer, Sshd};

use crate::harness::*;

/// The SPEC's bound on a stop with a live server, or with none at all.
const STOP_WITHIN: Duration = Duration::from_secs(1);
/// `WATCHDOG_USEC` of the watchdog test: systemd would kill a daemon silent this long.
const WATCHDOG: Duration = Duration::from_millis(500);
/// Tunnels stopped by the watchdog test's reload.
const HUNG_TUNNELS: usize = 20;

fn connections(status: &serde_json::Value, tunnel_name: &str, kind: &str) -> u64 {
    tunnel(status, tunnel_name)["forwards"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["kind"] == kind)
        .and_then(|f| f["connections"].as_u64())
        .unwrap_or(0)
}

/// A `-L` client waiting for a session while the server is down, and a `-D` client that
/// never sends its greeting: SIGTERM still ends the daemon within a second, exit 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_waiting_clients_exits_within_a_second() {
    let nobody = free_port(std::net::Ipv4Addr::LOCALHOST.into());
    let local = free_port(std::net::Ipv4Addr::LOCALHOST.into());
    let dynamic = free_port(std::net::Ipv4Addr::LOCALHOST.into());
    let text = format!(
        "[tunnels.t]\nhost = \"127.0.0.1\"\nport = {nobody}\nuser = \"nobody\"\n\
         connect_timeout = \"15s\"\nbackoff = {{ initial = \"10s\", max = \"10s\" }}\n\
         local = [\"127.0.0.1:{local}:127.0.0.1:9\"]\ndynamic = [\"127.0.0.1:{dynamic}\"]\n"
    );
    let mut svc = Service::start(&text, false, &[]);
    svc.wait_status("both listening", |s| {
        tunnel(s, "t")["forwards"]
            .as_array()
            .is_some_and(|f| f.iter().all(|f| f["state"] == "active"))
    })
    .await;
    let _waiting = TcpStream::connect(("127.0.0.1", local)).await.unwrap();
    let _silent = TcpStream::connect(("127.0.0.1", dynamic)).await.unwrap();
    svc.wait_status("both clients taken in", |s| {
        connections(s, "t", "local") == 1 && connections(s, "t", "dynamic") == 1
    })
    .await;
    svc.run.signal(libc::SIGTERM);
    let (code, took) = svc.run.wait_exit(Duration::from_secs(10));
    assert_eq!(code, Some(0));
    assert!(took < STOP_WITHIN, "stopped in {took:?}");
}

/// Turning `gateway_ports` on changes where `PORT:host:port` listens without changing
/// its text: the reload reports the forward replaced, and the listener really moves from
/// loopback to every address (reached here through 127.0.0.2, which a listener on
/// 127.0.0.1 does not take).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_ports_reload_opens_the_listener() {
    let sshd = Sshd::start().await.unwrap();
    let echo = EchoServer::start().await.unwrap();
    let port = free_port(std::net::Ipv4Addr::UNSPECIFIED.into());
    let forward = format!("local = [\"{port}:127.0.0.1:{}\"]", echo.port());
    let svc = Service::start(&tunnel_toml(&sshd, "g", &forward), false, &[]);
    svc.wait_status("up on loopback", |s| tunnel(s, "g")["state"] == "up")
        .await;
    let other = std::net::SocketAddr::from(([127, 0, 0, 2], port));
    assert!(
        TcpStream::connect(other).await.is_err(),
        "a loopback listener took a connection to 127.0.0.2"
    );

    svc.write(&tunnel_toml(
        &sshd,
        "g",
        &format!("gateway_ports = true\n{forward}"),
    ));
    let out = svc.reload();
    assert!(out.status.success(), "{out:?}");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("updated: g (+1 -1 forwards)"), "{said}");
    let s = svc
        .wait_status("listening on every address", |s| {
            let f = &tunnel(s, "g")["forwards"][0];
            f["state"] == "active"
                && f["listen"]
                    .as_array()
                    .is_some_and(|l| l.iter().any(|a| a == &format!("0.0.0.0:{port}")))
        })
        .await;
    assert_eq!(tunnel(&s, "g")["reconnects"], 0, "{s:#}");
    let stream = TcpStream::connect(other).await.unwrap();
    echo_roundtrip(stream, b"from another address")
        .await
        .unwrap();
}

/// A reload that stops twenty tunnels whose server has hung (each stop would wait for its
/// remote forward's cancel and its goodbye) leaves the daemon's loop free: the systemd
/// watchdog keeps being fed on time throughout, and the reload answers at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_stopping_hung_tunnels_keeps_the_watchdog_fed() {
    let sshd = Sshd::start().await.unwrap();
    let echo = EchoServer::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let notify_path = dir.path().join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    notify.set_read_timeout(Some(WATCHDOG * 4)).unwrap();
    let tunnels: String = (0..HUNG_TUNNELS)
        .map(|i| {
            tunnel_toml(
                &sshd,
                &format!("h{i:02}"),
                &format!("remote = [\"0:127.0.0.1:{}\"]", echo.port()),
            )
        })
        .collect();
    let keep = tunnel_toml(&sshd, "keep", "dynamic = [\"127.0.0.1:0\"]");
    let watchdog_usec = WATCHDOG.as_micros().to_string();
    let svc = Service::start_in(
        dir,
        "",
        &format!("{tunnels}{keep}"),
        false,
        &[
            ("NOTIFY_SOCKET", notify_path.to_str().unwrap()),
            ("WATCHDOG_USEC", &watchdog_usec),
        ],
    );
    svc.wait_status("all up", all_up).await;

    let frozen = sshd.freeze_sessions();
    svc.write(&keep);
    // Every watchdog ping for a while after the reload, with the gap before it, watched
    // while the reload runs.
    let watch_for = WATCHDOG * 8;
    let (out, answered_in, (worst, pings)) = std::thread::scope(|scope| {
        let watch = scope.spawn(|| {
            let start = Instant::now();
            let mut last = start;
            let mut worst = Duration::ZERO;
            let mut pings = 0;
            while start.elapsed() < watch_for {
                let mut buf = [0u8; 4096];
                let Ok(n) = notify.recv(&mut buf) else {
                    worst = worst.max(last.elapsed());
                    break;
                };
                if String::from_utf8_lossy(&buf[..n]).contains("WATCHDOG=1") {
                    worst = worst.max(last.elapsed());
                    last = Instant::now();
                    pings += 1;
                }
            }
            (worst, pings)
        });
        let started = Instant::now();
        let out = svc.reload();
        (out, started.elapsed(), watch.join().unwrap())
    });
    drop(frozen);
    assert!(out.status.success(), "{out:?}");
    assert!(
        worst < WATCHDOG,
        "the watchdog went {worst:?} without a ping (WATCHDOG_USEC {WATCHDOG:?}); {pings} pings"
    );
    assert!(pings >= 6, "only {pings} watchdog pings in {watch_for:?}");
    assert!(
        answered_in < WATCHDOG,
        "the reload took {answered_in:?} to answer"
    );
    let s = svc
        .wait_status("only keep left", |s| names(s) == ["keep"])
        .await;
    assert_eq!(tunnel(&s, "keep")["state"], "up", "{s:#}");
}

/// A daemon dropped without `shutdown` (a panicking caller) stops its tunnels: its
/// listener closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_daemon_stops_its_tunnels() {
    let sshd = Sshd::start().await.unwrap();
    let echo = EchoServer::start().await.unwrap();
    let spec = format!("0:127.0.0.1:{}", echo.port());
    let text = tunnel_toml(&sshd, "d", &format!("local = [\"{spec}\"]"));
    let (daemon, status) = start_up(&text, "d").await;
    let addr = bound_addr(&status, &spec);
    let mut open = TcpStream::connect(addr).await.unwrap();
    open.write_all(b"x").await.unwrap();
    drop(daemon);
    wait_port_closed(addr, STOP_WITHIN * 5).await.unwrap();
}
