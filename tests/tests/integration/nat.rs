//! Behind real NAT: the daemon runs in the box of a [`NatLab`] (network namespaces, NAT
//! routers with conntrack, a public host running the kit's sshd), and meets what boxes on
//! home routers and 4G links meet: a router that forgets its mappings, a link that flaps,
//! an uplink saturated by an upload.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tunneld_core::{Daemon, TunnelState, TunnelStatus};
use tunneld_tests::net::wait_until_async;
use tunneld_tests::netlab::{NatLab, Netns, NsRuntime, PUBLIC_ADDR, R1_WAN_ADDR};
use tunneld_tests::{Sshd, SshdOptions};

use crate::harness::*;

/// One echo round trip on `s`, within `within`.
async fn echo_within(s: &mut TcpStream, msg: &[u8], within: Duration) -> bool {
    let mut got = vec![0u8; msg.len()];
    timeout(within, async {
        s.write_all(msg).await?;
        s.read_exact(&mut got).await
    })
    .await
    .is_ok_and(|r| r.is_ok())
        && got == msg
}

/// An echo server listening on `127.0.0.1` inside `ns`; its port.
fn echo_in(ns: &Netns) -> u16 {
    let listener = ns
        .listen(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    port
}

/// A sink on `127.0.0.1` inside `ns` that counts what it reads; its port and the count.
fn sink_in(ns: &Netns) -> (u16, Arc<std::sync::atomic::AtomicU64>) {
    let listener = ns
        .listen(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    let count = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counted = count.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let counted = counted.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                while let Ok(n @ 1..) = s.read(&mut buf).await {
                    counted.fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
                }
            });
        }
    });
    (port, count)
}

/// The lab, the kit's sshd on the public host, and the daemon in the box.
struct Setup {
    lab: NatLab,
    sshd: Sshd,
    runtime: NsRuntime,
    daemon: Option<Daemon>,
}

impl Setup {
    /// The lab and the sshd on its public host (`extra` at the top of its config).
    async fn new(sshd_extra: &[&str]) -> Setup {
        let lab = NatLab::start().await.unwrap();
        let sshd = Sshd::start_with(SshdOptions {
            listen: PUBLIC_ADDR.into(),
            netns: Some(lab.public.name().to_owned()),
            extra_config: sshd_extra.iter().map(|l| (*l).to_owned()).collect(),
            ..SshdOptions::default()
        })
        .await
        .unwrap();
        let runtime = NsRuntime::new(&lab.box_ns).unwrap();
        Setup {
            lab,
            sshd,
            runtime,
            daemon: None,
        }
    }

    /// Starts the daemon in the box with one tunnel `t` to the public sshd (`lines` added
    /// to its table) and waits until it is up.
    async fn start(&mut self, lines: &str) -> TunnelStatus {
        let text = tunnel_toml(&self.sshd, "t", lines)
            .replace("host = \"127.0.0.1\"", &format!("host = \"{PUBLIC_ADDR}\""));
        let config = config(&text);
        self.daemon = Some(
            self.runtime
                .run(async move { Daemon::start(&config) })
                .await,
        );
        wait_state(&mut self.watch(), TunnelState::Up).await
    }

    fn watch(&self) -> tokio::sync::watch::Receiver<TunnelStatus> {
        self.daemon
            .as_ref()
            .expect("running")
            .subscribe("t")
            .unwrap()
    }

    fn status(&self) -> TunnelStatus {
        self.watch().borrow().clone()
    }

    /// A connection to the `-L` entry of `spec`, from inside the box.
    async fn connect_local(&self, spec: &str) -> TcpStream {
        let addr = bound_addr(&self.status(), spec);
        self.lab.box_ns.connect(addr).await.unwrap()
    }

    /// Polls new connections through the `-L` entry of `spec` until one echoes (30 s).
    async fn wait_local_echoes(&self, spec: &str, what: &str) {
        let entry = bound_addr(&self.status(), spec);
        let ns = self.lab.box_ns.name().to_owned();
        wait_until_async(Duration::from_secs(30), what, || {
            let ns = ns.clone();
            async move {
                match tunneld_tests::netlab::connect_in(&ns, entry).await {
                    Ok(mut t) => echo_within(&mut t, b"again", Duration::from_millis(500)).await,
                    Err(_) => false,
                }
            }
        })
        .await
        .unwrap();
    }

    async fn stop(mut self) {
        let daemon = self.daemon.take().expect("running");
        self.runtime.run(daemon.shutdown()).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_and_remote_forwards_work_through_nat() {
    let mut s = Setup::new(&[]).await;
    let public_echo = echo_in(&s.lab.public);
    let box_echo = echo_in(&s.lab.box_ns);
    let local = format!("0:127.0.0.1:{public_echo}");
    let remote = format!("127.0.0.1:0:127.0.0.1:{box_echo}");
    let status = s
        .start(&format!("local = [\"{local}\"]\nremote = [\"{remote}\"]"))
        .await;

    let mut l = s.connect_local(&local).await;
    assert!(echo_within(&mut l, b"through -L", Duration::from_secs(5)).await);
    let port = remote_port(&status, &remote);
    let mut r = s
        .lab
        .public
        .connect(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
        .await
        .unwrap();
    assert!(echo_within(&mut r, b"through -R", Duration::from_secs(5)).await);
    // sshd saw the router's outside address, not the box's.
    let log = s.sshd.log();
    assert!(
        log.contains(&format!("Connection from {R1_WAN_ADDR}")),
        "sshd log:\n{log}"
    );
    s.stop().await;
}

/// Heartbeats 3 s x 2: the router forgets its mappings, the session goes silent both ways
/// (no reset anywhere); -L carries traffic again within the heartbeat window + 2 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_nat_mapping_is_healed_within_the_heartbeat_window() {
    let mut s = Setup::new(&[]).await;
    let echo = echo_in(&s.lab.public);
    let local = format!("0:127.0.0.1:{echo}");
    s.start(&format!(
        "local = [\"{local}\"]\nserver_alive_interval = \"3s\"\nserver_alive_count_max = 2"
    ))
    .await;
    let mut c = s.connect_local(&local).await;
    assert!(echo_within(&mut c, b"before", Duration::from_secs(5)).await);

    s.lab.forget_mappings(&s.lab.r1).await.unwrap();
    let lost = Instant::now();
    s.wait_local_echoes(&local, "traffic through -L again")
        .await;
    let back = lost.elapsed();
    eprintln!("NAT mapping lost at 3 s x 2 heartbeats: -L back after {back:?}");
    assert!(back <= Duration::from_secs(8), "{back:?}");
    let status = s.status();
    assert_eq!(status.reconnects, 1, "{status:#?}");
    s.stop().await;
}

/// Wi-Fi down for 3 s and back with the same address: the session rides it out, the open
/// connection carries on, nothing reconnects (heartbeats 10 s x 3).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_three_second_link_flap_loses_nothing() {
    let mut s = Setup::new(&[]).await;
    let echo = echo_in(&s.lab.public);
    let local = format!("0:127.0.0.1:{echo}");
    s.start(&format!("local = [\"{local}\"]")).await;
    let mut c = s.connect_local(&local).await;
    assert!(echo_within(&mut c, b"before", Duration::from_secs(5)).await);

    s.lab.flap_link(Duration::from_secs(3)).await.unwrap();
    assert!(echo_within(&mut c, b"after the flap", Duration::from_secs(10)).await);
    let status = s.status();
    assert_eq!(
        (status.state, status.reconnects),
        (TunnelState::Up, 0),
        "{status:#?}"
    );
    s.stop().await;
}

/// A 1 Mbit/s uplink saturated by an upload through -L for 20 s, heartbeats 5 s x 2: the
/// heartbeats still get through (no false dead peer, no reconnect), and so does a second
/// connection of the same tunnel.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saturated_slow_uplink_is_no_dead_peer() {
    let mut s = Setup::new(&[]).await;
    let echo = echo_in(&s.lab.public);
    let (sink, received) = sink_in(&s.lab.public);
    let to_echo = format!("0:127.0.0.1:{echo}");
    let to_sink = format!("0:127.0.0.1:{sink}");
    s.start(&format!(
        "local = [\"{to_echo}\", \"{to_sink}\"]\n\
         server_alive_interval = \"5s\"\nserver_alive_count_max = 2"
    ))
    .await;
    s.lab.limit_uplink(1_000).await.unwrap();
    let mut upload = s.connect_local(&to_sink).await;
    let uploading = tokio::spawn(async move {
        let chunk = vec![0x5au8; 64 * 1024];
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(20) {
            if upload.write_all(&chunk).await.is_err() {
                return false;
            }
        }
        true
    });
    // Meanwhile a second connection gets its answers, each within the heartbeat window.
    let mut other = s.connect_local(&to_echo).await;
    let mut worst = Duration::ZERO;
    while !uploading.is_finished() {
        let t = Instant::now();
        assert!(
            echo_within(&mut other, b"still here", Duration::from_secs(10)).await,
            "the second connection got no answer within 10 s; status: {:#?}",
            s.status()
        );
        worst = worst.max(t.elapsed());
    }
    assert!(uploading.await.unwrap(), "the upload's connection was cut");
    let sent = received.load(std::sync::atomic::Ordering::Relaxed);
    eprintln!("1 Mbit/s uplink: {sent} bytes uploaded in 20 s, worst echo {worst:?}");
    assert!(sent > 1_000_000, "only {sent} bytes got through");
    let status = s.status();
    assert_eq!(
        (status.state, status.reconnects),
        (TunnelState::Up, 0),
        "{status:#?}"
    );
    s.stop().await;
}

/// Wi-Fi gone, 4G in its place (address removed, link down, default route moved): the
/// daemon hears it from rtnetlink and rebuilds the session at once, instead of waiting
/// out its heartbeats (10 s x 3): -L works again within 5 s; -R as soon as the server
/// has reaped the old session (ClientAlive 2 s x 2 here) and freed the port.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_uplink_switch_is_acted_on_at_once() {
    let mut s = Setup::new(&["ClientAliveInterval 2", "ClientAliveCountMax 2"]).await;
    let public_echo = echo_in(&s.lab.public);
    let box_echo = echo_in(&s.lab.box_ns);
    let local = format!("0:127.0.0.1:{public_echo}");
    let remote_port_wanted = s.lab.public.free_port(Ipv4Addr::LOCALHOST.into()).unwrap();
    let remote = format!("127.0.0.1:{remote_port_wanted}:127.0.0.1:{box_echo}");
    s.start(&format!("local = [\"{local}\"]\nremote = [\"{remote}\"]"))
        .await;
    let mut c = s.connect_local(&local).await;
    assert!(echo_within(&mut c, b"on wifi", Duration::from_secs(5)).await);

    s.lab.switch_uplink().await.unwrap();
    let switched = Instant::now();
    s.wait_local_echoes(&local, "traffic through -L after the switch")
        .await;
    let local_back = switched.elapsed();
    eprintln!("uplink switch: -L back after {local_back:?}");
    // Heartbeats alone would have taken 30 s.
    assert!(local_back <= Duration::from_secs(5), "{local_back:?}");
    assert_eq!(s.status().reconnects, 1, "{:#?}", s.status());

    // Knocking on the port meanwhile would keep the stale session busy, and sshd probes
    // (and reaps) only idle ones: wait for the daemon to report the forward active.
    let mut rx = s.watch();
    let wait = rx.wait_for(|st| {
        st.reconnects == 1
            && st
                .forward(&remote)
                .is_some_and(|f| f.state == tunneld_core::ForwardState::Active)
    });
    let reaped = async {
        wait_until_async(
            Duration::from_secs(40),
            "sshd reaping the old session",
            || async { s.sshd.log().contains("Timeout, client not responding") },
        )
        .await
        .unwrap();
        Instant::now()
    };
    let active = async {
        timeout(Duration::from_secs(40), wait)
            .await
            .expect("-R active again within 40 s")
            .unwrap();
        Instant::now()
    };
    let (reaped, active) = tokio::join!(reaped, active);
    let after_reap = active.saturating_duration_since(reaped);
    eprintln!(
        "uplink switch: sshd reaped the old session after {:?}, -R active {after_reap:?} later",
        reaped - switched
    );
    assert!(after_reap <= Duration::from_secs(3), "{after_reap:?}");
    let target = SocketAddr::from((Ipv4Addr::LOCALHOST, remote_port_wanted));
    let mut r = s.lab.public.connect(target).await.unwrap();
    assert!(echo_within(&mut r, b"-R on 4g", Duration::from_secs(5)).await);
    eprintln!("uplink switch: -R back after {:?}", switched.elapsed());
    s.stop().await;
}

/// DHCP renews the Wi-Fi address with a new one: -L works again within 5 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewed_address_is_acted_on_at_once() {
    let mut s = Setup::new(&[]).await;
    let echo = echo_in(&s.lab.public);
    let local = format!("0:127.0.0.1:{echo}");
    s.start(&format!("local = [\"{local}\"]")).await;
    let mut c = s.connect_local(&local).await;
    assert!(echo_within(&mut c, b"before", Duration::from_secs(5)).await);

    s.lab.renew_address().await.unwrap();
    let renewed = Instant::now();
    s.wait_local_echoes(&local, "traffic through -L after the renewal")
        .await;
    let back = renewed.elapsed();
    eprintln!("address renewed: -L back after {back:?}");
    assert!(back <= Duration::from_secs(5), "{back:?}");
    assert_eq!(s.status().reconnects, 1);
    s.stop().await;
}
