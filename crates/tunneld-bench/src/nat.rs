//! The NAT lab figures: tunneld and autossh (`ssh -N -L` under `autossh -M 0`), each run in
//! the box of a [`NatLab`] against the kit's sshd on the lab's public host, heartbeats
//! 10 s × 3 for both, a fresh lab for every fault.
//!
//! - uplink switch: Wi-Fi's address removed, link down, default route moved to the 4G
//!   router; seconds until a new connection through -L echoes again.
//! - lost mapping: the router forgets its NAT mappings (a silent black hole); the same.
//! - link flap: Wi-Fi down for 3 s, back with the same address; whether a connection open
//!   across it still echoes.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout};
use tunneld_tests::netlab::{NatLab, Netns, PUBLIC_ADDR, connect_in};
use tunneld_tests::{Sshd, SshdOptions};

use crate::contenders::Proc;

/// Heartbeats of both contenders.
const ALIVE_INTERVAL_SECS: u32 = 10;
const ALIVE_COUNT: u32 = 3;
/// Bound for a contender to carry traffic at start, and again after a fault.
const UP_TIMEOUT: Duration = Duration::from_secs(120);
/// Pause between two tries of the forward while waiting.
const POLL: Duration = Duration::from_millis(200);
/// The link flap's outage.
const FLAP: Duration = Duration::from_secs(3);

/// The NAT figures of one contender.
pub struct NatRow {
    pub tool: &'static str,
    /// Seconds until -L worked again after an uplink switch.
    pub uplink_switch: Result<f64, String>,
    /// Seconds until -L worked again after the router forgot its mappings.
    pub lost_mapping: Result<f64, String>,
    /// Whether a connection open across a 3 s link flap still worked.
    pub flap_survived: Result<bool, String>,
}

#[derive(Clone, Copy)]
enum Tool {
    Tunneld,
    Autossh,
}

#[derive(Clone, Copy)]
enum Case {
    UplinkSwitch,
    LostMapping,
    Flap,
}

/// Every figure for tunneld and, when it can run, autossh.
pub async fn run(tunneld: &Path, dir: &Path, autossh: bool) -> Vec<NatRow> {
    let mut rows = Vec::new();
    let mut tools = vec![(Tool::Tunneld, "tunneld")];
    if autossh {
        tools.push((Tool::Autossh, "autossh"));
    }
    for (tool, name) in tools {
        let secs = |r: anyhow::Result<Outcome>| match r {
            Ok(Outcome::Back(d)) => Ok(d.as_secs_f64()),
            Ok(Outcome::Survived(_)) => Err("unexpected outcome".to_owned()),
            Err(e) => Err(format!("{e:#}")),
        };
        let uplink_switch = secs(case(tool, Case::UplinkSwitch, tunneld, dir).await);
        let lost_mapping = secs(case(tool, Case::LostMapping, tunneld, dir).await);
        let flap_survived = match case(tool, Case::Flap, tunneld, dir).await {
            Ok(Outcome::Survived(s)) => Ok(s),
            Ok(Outcome::Back(_)) => Err("unexpected outcome".to_owned()),
            Err(e) => Err(format!("{e:#}")),
        };
        for (what, r) in [
            (
                "uplink switch",
                uplink_switch.as_ref().map(|s| format!("{s:.1} s")),
            ),
            (
                "lost mapping",
                lost_mapping.as_ref().map(|s| format!("{s:.1} s")),
            ),
        ] {
            eprintln!("nat {name}: {what}: {}", r.unwrap_or_else(|e| e.clone()));
        }
        eprintln!("nat {name}: 3 s link flap survived: {flap_survived:?}");
        rows.push(NatRow {
            tool: name,
            uplink_switch,
            lost_mapping,
            flap_survived,
        });
    }
    rows
}

enum Outcome {
    Back(Duration),
    Survived(bool),
}

/// One fault on one contender, in a lab of its own.
async fn case(tool: Tool, case: Case, tunneld: &Path, dir: &Path) -> anyhow::Result<Outcome> {
    let lab = NatLab::start().await?;
    let sshd = Sshd::start_with(SshdOptions {
        listen: PUBLIC_ADDR.into(),
        netns: Some(lab.public.name().to_owned()),
        ..SshdOptions::default()
    })
    .await?;
    let (echo_port, _echo_server) = echo_in(&lab.public)?;
    let entry_port = lab.box_ns.free_port(Ipv4Addr::LOCALHOST.into())?;
    let entry = SocketAddr::from((Ipv4Addr::LOCALHOST, entry_port));
    let spec = format!("127.0.0.1:{entry_port}:127.0.0.1:{echo_port}");
    let tag = lab.box_ns.name().to_owned();
    let _proc = match tool {
        Tool::Tunneld => {
            let config = dir.join(format!("{tag}.toml"));
            std::fs::write(
                &config,
                format!(
                    "[daemon]\nsocket = \"{socket}\"\n\n[tunnels.nat]\nhost = \"{PUBLIC_ADDR}\"\n\
                     port = {port}\nuser = \"{user}\"\nidentity_file = \"{key}\"\n\
                     known_hosts = \"{kh}\"\nlocal = [\"{spec}\"]\n\
                     server_alive_interval = \"{ALIVE_INTERVAL_SECS}s\"\n\
                     server_alive_count_max = {ALIVE_COUNT}\n",
                    socket = dir.join(format!("{tag}.sock")).display(),
                    port = sshd.port(),
                    user = sshd.user(),
                    key = sshd.client_key().display(),
                    kh = sshd.known_hosts().display(),
                ),
            )
            .context("write the tunneld config")?;
            let mut cmd = lab.box_ns.std_command(&tunneld.display().to_string());
            cmd.arg("run").arg("-c").arg(&config);
            Proc::spawn("tunneld", cmd, &dir.join(format!("{tag}-tunneld.log")))?
        }
        Tool::Autossh => {
            let mut cmd = lab.box_ns.std_command("autossh");
            let mut args = sshd.ssh_args();
            let destination = args.pop().expect("ssh_args ends with user@host");
            cmd.env("AUTOSSH_GATETIME", "0")
                .args(["-M", "0", "-N", "-o", "ExitOnForwardFailure=yes"])
                .arg("-o")
                .arg(format!("ServerAliveInterval={ALIVE_INTERVAL_SECS}"))
                .arg("-o")
                .arg(format!("ServerAliveCountMax={ALIVE_COUNT}"))
                .args(&args)
                .args(["-L", &spec])
                .arg(destination);
            Proc::spawn("autossh", cmd, &dir.join(format!("{tag}-autossh.log")))?
        }
    };
    let ns = lab.box_ns.name().to_owned();
    works_again(&ns, entry, Instant::now())
        .await
        .context("the forward never carried traffic")?;
    match case {
        Case::UplinkSwitch => {
            lab.switch_uplink().await?;
            Ok(Outcome::Back(
                works_again(&ns, entry, Instant::now()).await?,
            ))
        }
        Case::LostMapping => {
            lab.forget_mappings(&lab.r1).await?;
            Ok(Outcome::Back(
                works_again(&ns, entry, Instant::now()).await?,
            ))
        }
        Case::Flap => {
            let mut open = connect_in(&ns, entry).await?;
            anyhow::ensure!(
                echo(&mut open, Duration::from_secs(5)).await,
                "no echo before the flap"
            );
            lab.flap_link(FLAP).await?;
            Ok(Outcome::Survived(
                echo(&mut open, Duration::from_secs(20)).await,
            ))
        }
    }
}

/// How long after `since` a new connection through `entry` first echoes.
async fn works_again(ns: &str, entry: SocketAddr, since: Instant) -> anyhow::Result<Duration> {
    while since.elapsed() < UP_TIMEOUT {
        if let Ok(mut s) = connect_in(ns, entry).await
            && echo(&mut s, Duration::from_millis(500)).await
        {
            return Ok(since.elapsed());
        }
        tokio::time::sleep(POLL).await;
    }
    anyhow::bail!("no traffic through the forward within {UP_TIMEOUT:?}")
}

async fn echo(s: &mut TcpStream, within: Duration) -> bool {
    let mut got = [0u8; 4];
    timeout(within, async {
        s.write_all(b"ping").await?;
        s.read_exact(&mut got).await
    })
    .await
    .is_ok_and(|r| r.is_ok())
        && &got == b"ping"
}

/// Stops a task when dropped.
struct Aborting(tokio::task::JoinHandle<()>);

impl Drop for Aborting {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// An echo server on 127.0.0.1 inside `ns`; its port, and the server (stops on drop).
fn echo_in(ns: &Netns) -> anyhow::Result<(u16, Aborting)> {
    let listener = ns.listen(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))?;
    let port = listener.local_addr()?.port();
    let task = tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    Ok((port, Aborting(task)))
}
