//! A network lab in Linux network namespaces: a box behind real NAT routers, and a public
//! host, all private to the test that builds them and removed when it drops them.
//!
//! ```text
//!  box ─ wifi 192.168.1.2 ── lan 192.168.1.1 ─ r1 (NAT) ─ wan 198.51.100.2 ─┐
//!      └ lte  10.64.0.2 ──── lan 10.64.0.1 ─── r2 (NAT) ─ wan 203.0.113.2 ──┴ public
//!                                                             192.0.2.10 (on its lo)
//! ```
//!
//! Each router masquerades what leaves by `wan`, keeps conntrack with loose pick-up off,
//! drops invalid packets and every TCP packet from outside that belongs to no mapping: when
//! it forgets its mappings ([`NatLab::forget_mappings`]), a live connection becomes a silent
//! black hole, as behind a home router that rebooted or a 4G carrier's NAT that timed out.
//! The box's default route starts on `wifi`; the faults move it, take links down, renew the
//! address and limit the uplink's rate (`tbf`; this kernel has no netem).
//!
//! Sockets and processes are put into a namespace by a thread that entered it with
//! `setns(2)` ([`Netns::enter`]), or by `ip netns exec` ([`Netns::command`]); a socket made
//! there stays there. Needs root, `ip` (iproute2), `nft` (nftables) and `conntrack`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::process::Stdio;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;

/// Bound of one `ip`, `nft`, `tc` or `conntrack` run.
const TOOL_TIMEOUT: Duration = Duration::from_secs(20);

/// The public host's service address (on its loopback), reached through either router.
pub const PUBLIC_ADDR: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);
/// The box's address on `wifi`, and the one [`NatLab::renew_address`] replaces it with.
pub const BOX_WIFI_ADDR: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 2);
pub const BOX_WIFI_RENEWED_ADDR: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 3);
/// The box's address on `lte`.
pub const BOX_LTE_ADDR: Ipv4Addr = Ipv4Addr::new(10, 64, 0, 2);
/// The routers' outside addresses: what the public host sees as the box's source.
pub const R1_WAN_ADDR: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
pub const R2_WAN_ADDR: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 2);

const R1_LAN_ADDR: &str = "192.168.1.1";
const R2_LAN_ADDR: &str = "10.64.0.1";

/// Tells the namespaces of concurrent labs in one test process apart.
static NEXT_LAB: AtomicU32 = AtomicU32::new(0);

/// Runs `program args...` to completion within [`TOOL_TIMEOUT`]; its stdout, or an error
/// with its stderr.
async fn run(program: &str, args: &[&str]) -> anyhow::Result<String> {
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .env("LC_ALL", "C");
    let out = timeout(TOOL_TIMEOUT, cmd.output())
        .await
        .with_context(|| format!("{program} {} did not finish", args.join(" ")))?
        .with_context(|| format!("run {program} (is it installed?)"))?;
    if !out.status.success() {
        bail!(
            "{program} {}: {}: {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// One network namespace, named `/run/netns/NAME`; deleted on drop with every process in it.
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates the namespace, with its loopback up.
    ///
    /// # Errors
    /// `ip netns add` fails (not root, or the name is taken).
    pub async fn create(name: &str) -> anyhow::Result<Netns> {
        run("ip", &["netns", "add", name]).await?;
        let ns = Netns {
            name: name.to_owned(),
        };
        ns.ip(&["link", "set", "lo", "up"]).await?;
        // IPv4 only: IPv6 would add link-local addresses (and the network changes they
        // announce) a second after every link comes up.
        for key in ["all", "default"] {
            let setting = format!("net.ipv6.conf.{key}.disable_ipv6=1");
            ns.exec("sysctl", &["-qw", &setting]).await?;
        }
        Ok(ns)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `ip -n NAME ARGS...`.
    ///
    /// # Errors
    /// The command fails; the error has its stderr.
    pub async fn ip(&self, args: &[&str]) -> anyhow::Result<String> {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        run("ip", &all).await
    }

    /// `PROGRAM ARGS...` inside the namespace, to completion; its stdout.
    ///
    /// # Errors
    /// The command fails; the error has its stderr.
    pub async fn exec(&self, program: &str, args: &[&str]) -> anyhow::Result<String> {
        let mut all = vec!["netns", "exec", self.name.as_str(), program];
        all.extend_from_slice(args);
        run("ip", &all).await
    }

    /// A command that runs `program` inside the namespace (`ip netns exec NAME program`).
    pub fn command(&self, program: &str) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new("ip");
        cmd.args(["netns", "exec", &self.name, program]);
        cmd
    }

    /// The same, for `std::process`.
    pub fn std_command(&self, program: &str) -> std::process::Command {
        let mut cmd = std::process::Command::new("ip");
        cmd.args(["netns", "exec", &self.name, program]);
        cmd
    }

    /// Runs `f` on a thread that entered the namespace, and returns what it returned.
    /// Sockets `f` makes stay in the namespace; so do threads it starts.
    ///
    /// # Errors
    /// The namespace cannot be entered, or `f` failed.
    pub fn enter<T, F>(&self, f: F) -> std::io::Result<T>
    where
        T: Send + 'static,
        F: FnOnce() -> std::io::Result<T> + Send + 'static,
    {
        enter(&self.name, f)
    }

    /// A TCP connection made from inside the namespace.
    ///
    /// # Errors
    /// The connect fails or takes over 10 s.
    pub async fn connect(&self, addr: SocketAddr) -> std::io::Result<TcpStream> {
        connect_in(&self.name, addr).await
    }

    /// A TCP listener bound inside the namespace (port 0: any free one).
    ///
    /// # Errors
    /// The bind fails.
    pub fn listen(&self, addr: SocketAddr) -> std::io::Result<TcpListener> {
        let listener = self.enter(move || std::net::TcpListener::bind(addr))?;
        listener.set_nonblocking(true)?;
        TcpListener::from_std(listener)
    }

    /// A port free on `ip` inside the namespace.
    ///
    /// # Errors
    /// The bind fails.
    pub fn free_port(&self, ip: IpAddr) -> std::io::Result<u16> {
        self.enter(move || Ok(std::net::TcpListener::bind((ip, 0))?.local_addr()?.port()))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Processes left inside (a daemon, an sshd) would keep the namespace alive.
        if let Ok(out) = std::process::Command::new("ip")
            .args(["netns", "pids", &self.name])
            .stderr(Stdio::null())
            .output()
        {
            for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                if let Ok(pid) = pid.parse::<i32>() {
                    // SAFETY: kill has no memory preconditions.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
            }
        }
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &self.name])
            .stderr(Stdio::null())
            .status();
    }
}

/// [`Netns::enter`] by namespace name.
pub fn enter<T, F>(name: &str, f: F) -> std::io::Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> std::io::Result<T> + Send + 'static,
{
    let file = std::fs::File::open(format!("/run/netns/{name}"))?;
    std::thread::spawn(move || {
        // SAFETY: setns on a namespace file we hold open; it changes only this thread.
        if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        f()
    })
    .join()
    .map_err(|_| std::io::Error::other("the namespace thread panicked"))?
}

/// A TCP connection made from inside namespace `name`, bounded by 10 s.
///
/// # Errors
/// The connect fails or times out.
pub async fn connect_in(name: &str, addr: SocketAddr) -> std::io::Result<TcpStream> {
    let name = name.to_owned();
    let stream = tokio::task::spawn_blocking(move || {
        enter(&name, move || {
            std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(10))
        })
    })
    .await
    .map_err(std::io::Error::other)??;
    stream.set_nonblocking(true)?;
    stream.set_nodelay(true)?;
    TcpStream::from_std(stream)
}

/// A tokio runtime whose threads run inside a namespace: what it spawns makes its sockets
/// there (a daemon started on it listens and connects from inside). Shut down on drop.
pub struct NsRuntime {
    runtime: Option<tokio::runtime::Runtime>,
}

impl NsRuntime {
    /// A two-thread runtime inside `ns`.
    ///
    /// # Errors
    /// The namespace cannot be entered or the runtime not built.
    pub fn new(ns: &Netns) -> std::io::Result<NsRuntime> {
        // Threads inherit the namespace of the thread that starts them.
        let runtime = ns.enter(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
        })?;
        Ok(NsRuntime {
            runtime: Some(runtime),
        })
    }

    /// Runs `f` on the runtime (inside the namespace) and waits for its result.
    ///
    /// # Panics
    /// If `f` panics.
    pub async fn run<T, F>(&self, f: F) -> T
    where
        T: Send + 'static,
        F: Future<Output = T> + Send + 'static,
    {
        let handle = self.runtime.as_ref().expect("running").spawn(f);
        handle.await.expect("the task in the namespace panicked")
    }
}

impl Drop for NsRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// A router's nftables rules: masquerade out of `wan`, forward only what the inside
/// started, and drop the rest from outside without a word.
const ROUTER_RULES: &str = r#"
table ip nat {
    chain postrouting {
        type nat hook postrouting priority srcnat; policy accept;
        oifname "wan" masquerade
    }
}
table ip filter {
    chain forward {
        type filter hook forward priority filter; policy drop;
        ct state invalid drop
        iifname "lan" oifname "wan" accept
        iifname "wan" oifname "lan" ct state established,related accept
    }
    chain input {
        type filter hook input priority filter; policy accept;
        ct state invalid drop
        iifname "wan" ct state established,related accept
        iifname "wan" drop
    }
}
"#;

/// The box, two NAT routers and the public host; see the module docs.
pub struct NatLab {
    pub box_ns: Netns,
    pub r1: Netns,
    pub r2: Netns,
    pub public: Netns,
}

impl NatLab {
    /// Builds the lab: namespaces, links, addresses, routes, NAT. The box's default route
    /// is on `wifi`, through r1.
    ///
    /// # Errors
    /// A tool is missing or fails (the message says which); what was made is removed.
    pub async fn start() -> anyhow::Result<NatLab> {
        let id = format!(
            "tdl{}-{}",
            std::process::id(),
            NEXT_LAB.fetch_add(1, Ordering::Relaxed)
        );
        // Each is removed on drop, also when a later step fails.
        let lab = NatLab {
            box_ns: Netns::create(&format!("{id}-box")).await?,
            r1: Netns::create(&format!("{id}-r1")).await?,
            r2: Netns::create(&format!("{id}-r2")).await?,
            public: Netns::create(&format!("{id}-pub")).await?,
        };
        lab.wire().await.context("build the network lab")?;
        Ok(lab)
    }

    async fn wire(&self) -> anyhow::Result<()> {
        let (b, r1, r2, p) = (&self.box_ns, &self.r1, &self.r2, &self.public);
        veth(b, "wifi", r1, "lan").await?;
        veth(b, "lte", r2, "lan").await?;
        veth(r1, "wan", p, "r1").await?;
        veth(r2, "wan", p, "r2").await?;
        let wifi = format!("{BOX_WIFI_ADDR}/24");
        let lte = format!("{BOX_LTE_ADDR}/24");
        for (ns, dev, addr) in [
            (b, "wifi", wifi.as_str()),
            (b, "lte", lte.as_str()),
            (r1, "lan", "192.168.1.1/24"),
            (r2, "lan", "10.64.0.1/24"),
            (r1, "wan", "198.51.100.2/24"),
            (r2, "wan", "203.0.113.2/24"),
            (p, "r1", "198.51.100.1/24"),
            (p, "r2", "203.0.113.1/24"),
        ] {
            ns.ip(&["addr", "add", addr, "dev", dev]).await?;
            ns.ip(&["link", "set", dev, "up"]).await?;
        }
        let public = format!("{PUBLIC_ADDR}/32");
        p.ip(&["addr", "add", &public, "dev", "lo"]).await?;
        let public = PUBLIC_ADDR.to_string();
        r1.ip(&["route", "add", &public, "via", "198.51.100.1"])
            .await?;
        r2.ip(&["route", "add", &public, "via", "203.0.113.1"])
            .await?;
        // A renewed address takes over the routes of the one it replaces.
        b.exec(
            "sysctl",
            &["-qw", "net.ipv4.conf.all.promote_secondaries=1"],
        )
        .await?;
        b.ip(&["route", "add", "default", "via", R1_LAN_ADDR, "dev", "wifi"])
            .await?;
        for r in [r1, r2] {
            r.exec("sysctl", &["-qw", "net.ipv4.ip_forward=1"]).await?;
            r.exec("sysctl", &["-qw", "net.netfilter.nf_conntrack_tcp_loose=0"])
                .await?;
            let rules = std::env::temp_dir().join(format!("{}.nft", r.name()));
            std::fs::write(&rules, ROUTER_RULES).context("write the router's rules")?;
            let loaded = r.exec("nft", &["-f", &rules.display().to_string()]).await;
            let _ = std::fs::remove_file(&rules);
            loaded.context("load the router's nftables rules (is nftables installed?)")?;
        }
        Ok(())
    }

    /// `PUBLIC_ADDR:port`.
    pub fn public_addr(port: u16) -> SocketAddr {
        SocketAddr::from((PUBLIC_ADDR, port))
    }

    /// The router forgets every NAT mapping (`conntrack -F`): connections through it go
    /// silent in both directions; new ones work.
    ///
    /// # Errors
    /// `conntrack` fails or is missing.
    pub async fn forget_mappings(&self, router: &Netns) -> anyhow::Result<()> {
        router
            .exec("conntrack", &["-F"])
            .await
            .context("flush the router's conntrack table (is conntrack installed?)")
            .map(drop)
    }

    /// The box leaves Wi-Fi for 4G: the `wifi` address is removed, the link goes down and
    /// the default route moves to r2.
    ///
    /// # Errors
    /// An `ip` command fails.
    pub async fn switch_uplink(&self) -> anyhow::Result<()> {
        let b = &self.box_ns;
        b.ip(&["addr", "flush", "dev", "wifi"]).await?;
        b.ip(&["link", "set", "wifi", "down"]).await?;
        b.ip(&[
            "route",
            "replace",
            "default",
            "via",
            R2_LAN_ADDR,
            "dev",
            "lte",
        ])
        .await
        .map(drop)
    }

    /// Takes `wifi` down for `down` (its address stays), then up with its default route.
    ///
    /// # Errors
    /// An `ip` command fails.
    pub async fn flap_link(&self, down: Duration) -> anyhow::Result<()> {
        let b = &self.box_ns;
        b.ip(&["link", "set", "wifi", "down"]).await?;
        // The fault is the outage itself: this is its length, not a wait for something.
        tokio::time::sleep(down).await;
        b.ip(&["link", "set", "wifi", "up"]).await?;
        b.ip(&[
            "route",
            "replace",
            "default",
            "via",
            R1_LAN_ADDR,
            "dev",
            "wifi",
        ])
        .await
        .map(drop)
    }

    /// DHCP hands out a new address on the same link: [`BOX_WIFI_RENEWED_ADDR`] replaces
    /// [`BOX_WIFI_ADDR`].
    ///
    /// # Errors
    /// An `ip` command fails.
    pub async fn renew_address(&self) -> anyhow::Result<()> {
        let b = &self.box_ns;
        let new = format!("{BOX_WIFI_RENEWED_ADDR}/24");
        let old = format!("{BOX_WIFI_ADDR}/24");
        b.ip(&["addr", "add", &new, "dev", "wifi"]).await?;
        b.ip(&["addr", "del", &old, "dev", "wifi"]).await?;
        b.ip(&[
            "route",
            "replace",
            "default",
            "via",
            R1_LAN_ADDR,
            "dev",
            "wifi",
        ])
        .await
        .map(drop)
    }

    /// Limits what the box sends on `wifi` to `kbit` kbit/s (`tc tbf`).
    ///
    /// # Errors
    /// `tc` fails.
    pub async fn limit_uplink(&self, kbit: u32) -> anyhow::Result<()> {
        let rate = format!("{kbit}kbit");
        self.box_ns
            .exec(
                "tc",
                &[
                    "qdisc", "replace", "dev", "wifi", "root", "tbf", "rate", &rate, "burst",
                    "16kb", "latency", "500ms",
                ],
            )
            .await
            .map(drop)
    }
}

/// A veth pair: `a_dev` in `a`, `b_dev` in `b`.
async fn veth(a: &Netns, a_dev: &str, b: &Netns, b_dev: &str) -> anyhow::Result<()> {
    run(
        "ip",
        &[
            "link",
            "add",
            a_dev,
            "netns",
            a.name(),
            "type",
            "veth",
            "peer",
            "name",
            b_dev,
            "netns",
            b.name(),
        ],
    )
    .await
    .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// An echo server inside the public host; each connection first says where it came
    /// from (the source address it sees), then echoes.
    async fn public_echo(lab: &NatLab) -> u16 {
        let listener = lab.public.listen(NatLab::public_addr(0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut s, peer)) = listener.accept().await {
                tokio::spawn(async move {
                    let hello = format!("{}\n", peer.ip());
                    if s.write_all(hello.as_bytes()).await.is_err() {
                        return;
                    }
                    let mut buf = [0u8; 4096];
                    while let Ok(n @ 1..) = s.read(&mut buf).await {
                        if s.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        port
    }

    async fn hello(s: &mut TcpStream) -> String {
        let mut line = Vec::new();
        let mut byte = [0u8; 1];
        while line.len() < 64 {
            timeout(Duration::from_secs(5), s.read_exact(&mut byte))
                .await
                .expect("the greeting in time")
                .expect("read the greeting");
            if byte[0] == b'\n' {
                break;
            }
            line.push(byte[0]);
        }
        String::from_utf8(line).unwrap()
    }

    async fn echoes(s: &mut TcpStream, within: Duration) -> bool {
        let mut got = [0u8; 4];
        timeout(within, async {
            s.write_all(b"ping").await?;
            s.read_exact(&mut got).await
        })
        .await
        .is_ok_and(|r| r.is_ok())
            && &got == b"ping"
    }

    /// The box reaches the public host through r1's NAT; after an uplink switch, new
    /// connections go through r2's; the namespaces are gone once the lab is dropped.
    #[tokio::test]
    async fn the_box_is_behind_nat_and_can_switch_uplinks() {
        let lab = NatLab::start().await.unwrap();
        let port = public_echo(&lab).await;
        let mut s = lab.box_ns.connect(NatLab::public_addr(port)).await.unwrap();
        assert_eq!(hello(&mut s).await, R1_WAN_ADDR.to_string());
        assert!(echoes(&mut s, Duration::from_secs(5)).await);

        lab.switch_uplink().await.unwrap();
        let mut t = lab.box_ns.connect(NatLab::public_addr(port)).await.unwrap();
        assert_eq!(hello(&mut t).await, R2_WAN_ADDR.to_string());
        assert!(echoes(&mut t, Duration::from_secs(5)).await);

        let names: Vec<String> = [&lab.box_ns, &lab.r1, &lab.r2, &lab.public]
            .iter()
            .map(|n| n.name().to_owned())
            .collect();
        drop(lab);
        let left = run("ip", &["netns", "list"]).await.unwrap();
        for n in names {
            assert!(!left.contains(&n), "{n} is still there: {left}");
        }
    }

    /// A router that forgets its mappings turns a live connection into a black hole: no
    /// reset reaches either end, nothing gets through; a new connection works.
    #[tokio::test]
    async fn a_forgotten_mapping_is_a_silent_black_hole() {
        let lab = NatLab::start().await.unwrap();
        let port = public_echo(&lab).await;
        let mut s = lab.box_ns.connect(NatLab::public_addr(port)).await.unwrap();
        hello(&mut s).await;
        assert!(echoes(&mut s, Duration::from_secs(5)).await);

        lab.forget_mappings(&lab.r1).await.unwrap();
        let mut got = [0u8; 4];
        s.write_all(b"ping").await.unwrap();
        let read = timeout(Duration::from_secs(2), s.read(&mut got)).await;
        assert!(read.is_err(), "something came back: {read:?}");

        let mut t = lab.box_ns.connect(NatLab::public_addr(port)).await.unwrap();
        assert_eq!(hello(&mut t).await, R1_WAN_ADDR.to_string());
        assert!(echoes(&mut t, Duration::from_secs(5)).await);
    }

    /// A renewed address replaces the old one on the same link, with the default route.
    #[tokio::test]
    async fn an_address_renewal_keeps_the_box_online_under_its_new_address() {
        let lab = NatLab::start().await.unwrap();
        let port = public_echo(&lab).await;
        lab.renew_address().await.unwrap();
        let addrs = lab
            .box_ns
            .ip(&["-4", "addr", "show", "dev", "wifi"])
            .await
            .unwrap();
        assert!(
            addrs.contains(&BOX_WIFI_RENEWED_ADDR.to_string()),
            "{addrs}"
        );
        assert!(!addrs.contains(&format!("{BOX_WIFI_ADDR}/")), "{addrs}");
        let mut s = lab.box_ns.connect(NatLab::public_addr(port)).await.unwrap();
        assert_eq!(hello(&mut s).await, R1_WAN_ADDR.to_string());
        assert!(echoes(&mut s, Duration::from_secs(5)).await);
    }

    /// A link flap keeps the address and brings the route back.
    #[tokio::test]
    async fn a_link_flap_keeps_the_address() {
        let lab = NatLab::start().await.unwrap();
        let port = public_echo(&lab).await;
        let mut s = lab.box_ns.connect(NatLab::public_addr(port)).await.unwrap();
        hello(&mut s).await;
        lab.flap_link(Duration::from_millis(500)).await.unwrap();
        assert!(echoes(&mut s, Duration::from_secs(10)).await);
    }

    /// The rate limit holds the uplink near its rate: 256 KiB at 1 Mbit/s take about 2 s.
    #[tokio::test]
    async fn the_uplink_rate_limit_applies() {
        let lab = NatLab::start().await.unwrap();
        let listener = lab.public.listen(NatLab::public_addr(0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        let sink = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut all = Vec::new();
            s.read_to_end(&mut all).await.unwrap();
            all.len()
        });
        lab.limit_uplink(1_000).await.unwrap();
        let mut s = lab.box_ns.connect(NatLab::public_addr(port)).await.unwrap();
        let start = tokio::time::Instant::now();
        s.write_all(&vec![0u8; 256 * 1024]).await.unwrap();
        s.shutdown().await.unwrap();
        let n = timeout(Duration::from_secs(30), sink)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(n, 256 * 1024);
        // 2 Mbit at 1 Mbit/s: at least 1.5 s however the burst is counted.
        assert!(
            start.elapsed() >= Duration::from_millis(1_500),
            "{:?}",
            start.elapsed()
        );
    }
}
