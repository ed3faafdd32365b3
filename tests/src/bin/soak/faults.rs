//! The faults: what each does, which tunnels it may disturb, how recovery from it is
//! checked, and the loop that injects them at random intervals.
//!
//! A fault is survived when, within [`RECOVERY_TIMEOUT`] of being lifted, `tunneld status
//! --json` shows exactly the configured tunnels `up` with every forward `active`, a fresh
//! checked echo goes through every forward, and every tunnel the fault may not disturb
//! kept its session (same `since`, same `reconnects`), plus the fault's own checks
//! (a refused invalid file, a silent path noticed in time, a removed listener closed...).

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use tokio::time::{Instant, sleep, timeout};
use tunneld_tests::net::{free_port, wait_port_closed};
use tunneld_tests::{Fault, FaultProxy, Sshd};

use crate::daemon::{
    Extras, HEARTBEAT_COUNT, HEARTBEAT_INTERVAL, INVALID_VARIANTS, Layout, TunnelView, Tunneld,
    check_all_up, check_configured,
};
use crate::rng::Rng;
use crate::traffic::{Affects, Ctx, Forward, probe};

/// A fault not recovered from within this long (after it is lifted) fails the run.
pub const RECOVERY_TIMEOUT: Duration = Duration::from_secs(60);
/// Pause between two recovery checks.
const RECOVERY_POLL: Duration = Duration::from_millis(200);
/// Bytes of each recovery probe.
const PROBE_BYTES: u64 = 64 * 1024;
/// Bound of one recovery probe.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);
/// Pacing: pause between a recovery and the next fault, in ms.
pub const FAULT_PAUSE_MS: (u64, u64) = (3_000, 12_000);
/// How long sshd stays down when killed, in ms.
const SSHD_DOWN_MS: (u64, u64) = (0, 3_000);
/// A black hole lasts the heartbeat window, the SPEC's extra second, and this, in ms.
const BLACK_HOLE_EXTRA_MS: (u64, u64) = (1_000, 4_000);
/// Our own polling adds to the time a dead session takes to show in `tunneld status`.
const DETECTION_SLACK: Duration = Duration::from_secs(1);
/// Pause between two status polls while waiting for a dead session to be noticed.
const DETECTION_POLL: Duration = Duration::from_millis(100);
/// How long the proxy refuses connections after a reset, in ms.
const REFUSE_MS: (u64, u64) = (1_000, 5_000);
/// Garbage connections per garbage fault.
const GARBAGE_CONNECTIONS: usize = 16;
/// How long a garbage connection waits for tunneld to answer or close.
const GARBAGE_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Bound for a reload's effect to show in `tunneld status`.
const RELOAD_TIMEOUT: Duration = Duration::from_secs(30);
/// Bound for a removed listener to refuse connections.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(10);

/// The kinds of fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// SIGKILL sshd and all its sessions, wait 0–3 s, start it again on the same port.
    SshdRestart,
    /// SIGKILL every session process of sshd; the listener stays.
    SshdKillSessions,
    /// The proxy drops everything silently for longer than the heartbeat window.
    ProxyBlackHole,
    /// The proxy resets every connection through it.
    ProxyReset,
    /// The proxy resets every connection and refuses new ones for 1–5 s.
    ProxyResetRefuse,
    /// A valid changed file: a forward or a tunnel added or removed.
    ReloadChange,
    /// An invalid file; `tunneld reload` must refuse it and change nothing.
    ReloadInvalid,
    /// Garbage and abrupt closes on a -L listener.
    GarbageLocal,
    /// Malformed and hostile SOCKS requests on a -D listener.
    GarbageSocks,
}

impl Kind {
    pub const ALL: [Kind; 9] = [
        Kind::SshdRestart,
        Kind::SshdKillSessions,
        Kind::ProxyBlackHole,
        Kind::ProxyReset,
        Kind::ProxyResetRefuse,
        Kind::ReloadChange,
        Kind::ReloadInvalid,
        Kind::GarbageLocal,
        Kind::GarbageSocks,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::SshdRestart => "sshd-restart",
            Kind::SshdKillSessions => "sshd-kill-sessions",
            Kind::ProxyBlackHole => "proxy-black-hole",
            Kind::ProxyReset => "proxy-reset",
            Kind::ProxyResetRefuse => "proxy-reset-refuse",
            Kind::ReloadChange => "reload-change",
            Kind::ReloadInvalid => "reload-invalid",
            Kind::GarbageLocal => "garbage-local",
            Kind::GarbageSocks => "garbage-socks",
        }
    }

    fn needs_proxy(self) -> bool {
        matches!(
            self,
            Kind::ProxyBlackHole | Kind::ProxyReset | Kind::ProxyResetRefuse
        )
    }

    /// Which tunnels' connections it may cut.
    pub fn affects(self) -> Affects {
        match self {
            Kind::SshdRestart | Kind::SshdKillSessions => Affects::All,
            Kind::ProxyBlackHole | Kind::ProxyReset | Kind::ProxyResetRefuse => Affects::Proxied,
            Kind::ReloadChange | Kind::ReloadInvalid | Kind::GarbageLocal | Kind::GarbageSocks => {
                Affects::Nothing
            }
        }
    }
}

/// Draws kinds in shuffled rounds of one each, so a short run still sees every kind.
pub struct Deck {
    kinds: Vec<Kind>,
    left: Vec<Kind>,
}

impl Deck {
    pub fn new(with_proxy: bool) -> Deck {
        let kinds = Kind::ALL
            .into_iter()
            .filter(|k| with_proxy || !k.needs_proxy())
            .collect();
        Deck {
            kinds,
            left: Vec::new(),
        }
    }

    pub fn kinds(&self) -> &[Kind] {
        &self.kinds
    }

    pub fn draw(&mut self, rng: &mut Rng) -> Kind {
        if self.left.is_empty() {
            self.left = self.kinds.clone();
            rng.shuffle(&mut self.left);
        }
        self.left.pop().expect("a deck is never empty")
    }
}

/// One injected fault, for the report.
pub struct Record {
    pub kind: Kind,
    /// Its window in the ledger (for the connections it cut).
    pub window: usize,
    pub detail: String,
    /// From lifting the fault to every tunnel up and carrying traffic.
    pub recovery: Option<Duration>,
    pub survived: bool,
}

/// The extra forwards the reload faults add and remove, for probing while present.
pub struct ExtraForwards {
    pub local: Arc<Forward>,
    pub dynamic: Arc<Forward>,
}

/// Everything a fault touches.
pub struct Env<'a> {
    pub sshd: &'a mut Sshd,
    pub proxy: Option<&'a FaultProxy>,
    pub tunneld: &'a mut Tunneld,
    pub layout: &'a Layout,
    pub ctx: &'a Arc<Ctx>,
    /// The forwards the workload uses.
    pub forwards: &'a [Arc<Forward>],
    pub extra_forwards: &'a ExtraForwards,
    /// What the configuration file holds now.
    pub extras: Extras,
}

impl Env<'_> {
    /// Every forward the daemon should serve now.
    fn current_forwards(&self) -> Vec<Arc<Forward>> {
        let mut all = self.forwards.to_vec();
        if self.extras.forward {
            all.push(self.extra_forwards.local.clone());
        }
        if self.extras.tunnel {
            all.push(self.extra_forwards.dynamic.clone());
        }
        all
    }

    fn proxy(&self) -> Result<&FaultProxy, String> {
        self.proxy
            .ok_or_else(|| "harness: a proxy fault without a proxy".to_owned())
    }
}

/// Injects faults drawn from `deck` at random intervals until `until`, each followed by
/// its recovery check. Stops early after a fault that was not recovered from.
pub async fn run(
    env: &mut Env<'_>,
    deck: &mut Deck,
    rng: &mut Rng,
    until: Instant,
    records: &mut Vec<Record>,
) {
    loop {
        let pause = rng.millis(FAULT_PAUSE_MS.0, FAULT_PAUSE_MS.1);
        if Instant::now() + pause >= until {
            sleep(until.saturating_duration_since(Instant::now())).await;
            return;
        }
        sleep(pause).await;
        let kind = deck.draw(rng);
        let number = records.len() + 1;
        eprintln!(
            "soak: {} fault #{number}: {}",
            env.ctx.at(Instant::now()),
            kind.name()
        );
        let record = inject_and_recover(env, kind, number, rng).await;
        match (record.survived, record.recovery) {
            (true, Some(r)) => {
                eprintln!(
                    "soak:   {}; recovered in {:.2}s",
                    record.detail,
                    r.as_secs_f64()
                );
            }
            _ => eprintln!("soak:   NOT SURVIVED: {}", record.detail),
        }
        let recovered = record.recovery.is_some();
        records.push(record);
        if !recovered {
            eprintln!("soak: stopping early: the daemon did not recover");
            return;
        }
    }
}

/// Injects one fault, lifts it, waits for recovery and runs the checks.
async fn inject_and_recover(env: &mut Env<'_>, kind: Kind, number: usize, rng: &mut Rng) -> Record {
    let before = env.tunneld.status().await.ok();
    let extras_before = env.extras;
    let window = env.ctx.open_window(kind.name(), kind.affects());
    let at = Instant::now();
    let acted = inject(env, kind, rng).await;
    let lifted = Instant::now();
    let recovered = wait_recovered(env, rng).await;
    let recovery = recovered.as_ref().ok().map(|_| lifted.elapsed());
    env.ctx.close_window(window);

    let mut problems = Vec::new();
    let detail = match acted {
        Ok(d) => d,
        Err(e) => {
            problems.push(e);
            "fault check failed".to_owned()
        }
    };
    match (&recovered, &before) {
        (Ok(after), Some(before)) => {
            problems.extend(kept_sessions(kind, env.proxy.is_some(), before, after));
        }
        (Ok(_), None) => problems.push("tunneld status failed before the fault".to_owned()),
        (Err(e), _) => problems.push(format!(
            "not recovered within {RECOVERY_TIMEOUT:?} of being lifted: {e}"
        )),
    }
    for p in &problems {
        env.ctx.fail(format!(
            "fault #{number} {} at {} (config before: {extras_before:?}): {p}",
            kind.name(),
            env.ctx.at(at)
        ));
    }
    Record {
        kind,
        window,
        detail: if problems.is_empty() {
            detail
        } else {
            problems.join("; ")
        },
        recovery,
        survived: problems.is_empty(),
    }
}

/// Tunnels `kind` may not disturb must have kept their session: same `since`, same
/// `reconnects`. Tunnels present only before or only after (a reload) are skipped.
fn kept_sessions(
    kind: Kind,
    with_proxy: bool,
    before: &[TunnelView],
    after: &[TunnelView],
) -> Vec<String> {
    let mut problems = Vec::new();
    for b in before {
        let proxied = with_proxy && b.name == "proxied";
        if kind.affects().covers(proxied) {
            continue;
        }
        let Some(a) = after.iter().find(|a| a.name == b.name) else {
            continue;
        };
        if (a.since.as_str(), a.reconnects) != (b.since.as_str(), b.reconnects) {
            problems.push(format!(
                "tunnel {} lost its session although {} should not touch it (since {} -> {}, \
                 reconnects {} -> {})",
                b.name,
                kind.name(),
                b.since,
                a.since,
                b.reconnects,
                a.reconnects
            ));
        }
    }
    problems
}

/// Polls until the configured tunnels are all up and a probe goes through every forward.
///
/// # Errors
/// tunneld exited, or [`RECOVERY_TIMEOUT`] passed; the error says what was still wrong.
async fn wait_recovered(env: &mut Env<'_>, rng: &mut Rng) -> Result<Vec<TunnelView>, String> {
    let deadline = Instant::now() + RECOVERY_TIMEOUT;
    let expected = env.layout.expected(env.extras);
    let mut last;
    loop {
        if let Err(e) = env.tunneld.check_alive() {
            return Err(format!("{e:#}"));
        }
        match env.tunneld.status().await {
            Ok(views) => match check_all_up(&views, &expected) {
                Ok(()) => match probe_all(env, rng).await {
                    Ok(()) => return Ok(views),
                    Err(e) => last = e,
                },
                Err(e) => last = e,
            },
            Err(e) => last = format!("{e:#}"),
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "{last}\n--- tunneld log (end) ---\n{}\n---",
                env.tunneld.log_tail()
            ));
        }
        sleep(RECOVERY_POLL).await;
    }
}

/// One probe through every current forward, concurrently.
async fn probe_all(env: &Env<'_>, rng: &mut Rng) -> Result<(), String> {
    let mut probes = JoinSet::new();
    for fwd in env.current_forwards() {
        let ctx = env.ctx.clone();
        let mut rng = rng.fork();
        probes.spawn(async move {
            timeout(PROBE_TIMEOUT, probe(&ctx, &fwd, PROBE_BYTES, &mut rng))
                .await
                .unwrap_or_else(|_| {
                    Err(format!(
                        "probe through {} took over {PROBE_TIMEOUT:?}",
                        fwd.label
                    ))
                })
        });
    }
    let mut first_error = None;
    while let Some(done) = probes.join_next().await {
        let result = done.unwrap_or_else(|e| Err(format!("probe task: {e}")));
        if let (Err(e), None) = (result, &first_error) {
            first_error = Some(e);
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// Does the fault and lifts it; `Ok` describes what was done, `Err` a check that failed.
async fn inject(env: &mut Env<'_>, kind: Kind, rng: &mut Rng) -> Result<String, String> {
    match kind {
        Kind::SshdRestart => {
            let down = rng.millis(SSHD_DOWN_MS.0, SSHD_DOWN_MS.1);
            env.sshd.stop().await;
            sleep(down).await;
            env.sshd
                .restart()
                .await
                .map_err(|e| format!("harness: sshd did not start again: {e:#}"))?;
            Ok(format!("sshd killed, down for {:.1}s", down.as_secs_f64()))
        }
        Kind::SshdKillSessions => {
            let sshd = &*env.sshd;
            let pids = sshd.session_pids().len();
            // Blocks for the few milliseconds the kills take (bounded inside).
            tokio::task::block_in_place(|| sshd.kill_sessions());
            Ok(format!("{pids} sshd session processes killed"))
        }
        Kind::ProxyBlackHole => black_hole(env, rng).await,
        Kind::ProxyReset => {
            let proxy = env.proxy()?;
            let live = proxy.live();
            proxy.reset_all();
            Ok(format!("{live} proxied connections reset"))
        }
        Kind::ProxyResetRefuse => {
            let proxy = env.proxy()?;
            let refuse = rng.millis(REFUSE_MS.0, REFUSE_MS.1);
            let live = proxy.live();
            proxy.set_fault(Fault::Refuse);
            proxy.reset_all();
            sleep(refuse).await;
            proxy.set_fault(Fault::None);
            Ok(format!(
                "{live} proxied connections reset, new ones refused for {:.1}s",
                refuse.as_secs_f64()
            ))
        }
        Kind::ReloadChange => reload_change(env, rng).await,
        Kind::ReloadInvalid => reload_invalid(env, rng).await,
        Kind::GarbageLocal => garbage_local(env, rng).await,
        Kind::GarbageSocks => garbage_socks(env, rng).await,
    }
}

/// Black-holes the proxy past the heartbeat window and checks that the proxied tunnel
/// notices within the SPEC's bound (`interval × count + 1 s`).
async fn black_hole(env: &mut Env<'_>, rng: &mut Rng) -> Result<String, String> {
    let proxy = env.proxy()?;
    let bound = HEARTBEAT_INTERVAL * HEARTBEAT_COUNT + Duration::from_secs(1);
    let hole = bound + rng.millis(BLACK_HOLE_EXTRA_MS.0, BLACK_HOLE_EXTRA_MS.1);
    proxy.set_fault(Fault::BlackHole);
    let start = Instant::now();
    let mut noticed = None;
    while start.elapsed() < hole {
        if let Ok(views) = env.tunneld.status().await
            && views.iter().any(|v| v.name == "proxied" && v.state != "up")
        {
            noticed = Some(start.elapsed());
            break;
        }
        sleep(DETECTION_POLL).await;
    }
    sleep(hole.saturating_sub(start.elapsed())).await;
    proxy.set_fault(Fault::None);
    let hole_s = hole.as_secs_f64();
    match noticed {
        None => Err(format!(
            "the proxied tunnel still showed up after a {hole_s:.1}s black hole (SPEC: a silent \
             path is noticed within {bound:?})"
        )),
        Some(n) if n > bound + DETECTION_SLACK => Err(format!(
            "the proxied tunnel noticed a silent path after {:.2}s (SPEC: within {bound:?}, \
             allowed {:?} with polling)",
            n.as_secs_f64(),
            bound + DETECTION_SLACK
        )),
        Some(n) => Ok(format!(
            "black hole for {hole_s:.1}s, dead session noticed after {:.2}s",
            n.as_secs_f64()
        )),
    }
}

/// Adds or removes the extra forward (on `direct`) or the extra tunnel, by `tunneld
/// reload` or by the file watch alone; checks the reload's summary, that the change
/// shows, and that a removed listener is closed.
async fn reload_change(env: &mut Env<'_>, rng: &mut Rng) -> Result<String, String> {
    let mut next = env.extras;
    let tunnel = rng.percent(50);
    if tunnel {
        next.tunnel = !next.tunnel;
    } else {
        next.forward = !next.forward;
    }
    let in_place = rng.percent(30);
    let explicit = rng.percent(50);
    env.layout
        .write(&env.layout.render(next), in_place)
        .map_err(|e| format!("harness: {e:#}"))?;
    env.extras = next;
    let (what, allowed, named): (&str, &[&str], &str) = match (tunnel, next) {
        (true, Extras { tunnel: true, .. }) => ("tunnel extra added", &["added"], "extra"),
        (true, _) => ("tunnel extra removed", &["removed"], "extra"),
        (false, Extras { forward: true, .. }) => {
            ("forward added to tunnel direct", &["updated"], "direct")
        }
        (false, _) => ("forward removed from tunnel direct", &["updated"], "direct"),
    };
    if explicit {
        let out = env
            .tunneld
            .client(&["reload"])
            .await
            .map_err(|e| format!("{e:#}"))?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            return Err(format!(
                "tunneld reload of a valid file ({what}) failed: {}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        // The file watch may have applied the change first: then nothing is left to do.
        for line in stdout.lines() {
            let (label, names) = line.split_once(": ").unwrap_or((line, ""));
            let fine = label == "no changes"
                || label == "unchanged"
                || (allowed.contains(&label) && names.starts_with(named));
            if !fine {
                return Err(format!(
                    "tunneld reload ({what}) answered {:?}",
                    stdout.trim()
                ));
            }
        }
    }
    let expected = env.layout.expected(next);
    let deadline = Instant::now() + RELOAD_TIMEOUT;
    loop {
        let shape = match env.tunneld.status().await {
            Ok(views) => check_configured(&views, &expected),
            Err(e) => Err(format!("{e:#}")),
        };
        match shape {
            Ok(()) => break,
            Err(e) if Instant::now() >= deadline => {
                return Err(format!(
                    "{what}: not applied within {RELOAD_TIMEOUT:?}: {e}"
                ));
            }
            Err(_) => sleep(RECOVERY_POLL).await,
        }
    }
    let removed = match (tunnel, next.tunnel, next.forward) {
        (true, false, _) => Some(env.layout.dynamic_extra),
        (false, _, false) => Some(env.layout.local_extra),
        _ => None,
    };
    if let Some(addr) = removed {
        wait_port_closed(addr, CLOSE_TIMEOUT)
            .await
            .map_err(|e| format!("{what}, but the listener was not closed: {e:#}"))?;
    }
    Ok(format!(
        "{what} by {} (file {})",
        if explicit {
            "tunneld reload"
        } else {
            "the file watch"
        },
        if in_place {
            "rewritten in place"
        } else {
            "renamed over"
        }
    ))
}

/// Writes a broken file; `tunneld reload` must refuse it (exit 78, errors on stderr).
/// Then the good file goes back and a reload must report no change.
async fn reload_invalid(env: &mut Env<'_>, rng: &mut Rng) -> Result<String, String> {
    let bad = env.layout.invalid(env.extras, rng.below(INVALID_VARIANTS));
    let in_place = rng.percent(30);
    env.layout
        .write(&bad.text, in_place)
        .map_err(|e| format!("harness: {e:#}"))?;
    let refused = env.tunneld.client(&["reload"]).await;
    // Put the good file back whatever happened, so the run can go on.
    env.layout
        .write(&env.layout.render(env.extras), false)
        .map_err(|e| format!("harness: {e:#}"))?;
    let restored = env.tunneld.client(&["reload"]).await;

    let refused = refused.map_err(|e| format!("{e:#}"))?;
    let stderr = String::from_utf8_lossy(&refused.stderr);
    if refused.status.code() != Some(78) || stderr.trim().is_empty() {
        return Err(format!(
            "tunneld reload of a file with {} answered {} (expected exit 78 with the errors): \
             stdout {:?}, stderr {:?}",
            bad.what,
            refused.status,
            String::from_utf8_lossy(&refused.stdout).trim(),
            stderr.trim()
        ));
    }
    let restored = restored.map_err(|e| format!("{e:#}"))?;
    let summary = String::from_utf8_lossy(&restored.stdout);
    if !restored.status.success() {
        return Err(format!(
            "tunneld reload of the restored good file failed: {}: {}",
            restored.status,
            String::from_utf8_lossy(&restored.stderr).trim()
        ));
    }
    if let Some(line) = summary
        .lines()
        .find(|l| !(l.starts_with("unchanged") || l.starts_with("no changes")))
    {
        return Err(format!(
            "after a refused reload, reloading the unchanged good file changed something: {line:?}"
        ));
    }
    Ok(format!(
        "file with {} (written {}) refused: {}",
        bad.what,
        if in_place { "in place" } else { "by rename" },
        stderr.lines().next().unwrap_or_default()
    ))
}

/// Connects with a bound; `None` if it did not work.
async fn connect(addr: SocketAddr) -> Option<TcpStream> {
    timeout(GARBAGE_READ_TIMEOUT, TcpStream::connect(addr))
        .await
        .ok()?
        .ok()
}

/// Closes with a RST rather than a FIN.
fn reset(s: TcpStream) {
    let _ = s.set_zero_linger();
    drop(s);
}

/// Garbage on a -L listener: random bytes then a reset, connects closed at once, random
/// bytes then a half-close with the echo read back.
async fn garbage_local(env: &mut Env<'_>, rng: &mut Rng) -> Result<String, String> {
    let locals: Vec<&Arc<Forward>> = env
        .forwards
        .iter()
        .filter(|f| f.kind == crate::traffic::Kind::Local)
        .collect();
    let fwd = locals[rng.below(locals.len() as u64) as usize].clone();
    let mut set = JoinSet::new();
    for _ in 0..GARBAGE_CONNECTIONS {
        let variant = rng.below(3);
        let junk =
            tunneld_tests::net::random_bytes(rng.between(1, 64 * 1024) as usize, rng.next_u64());
        let entry = fwd.entry;
        set.spawn(async move {
            let Some(mut s) = connect(entry).await else {
                return false;
            };
            match variant {
                0 => {
                    let _ = timeout(GARBAGE_READ_TIMEOUT, s.write_all(&junk)).await;
                    reset(s);
                }
                1 => drop(s),
                _ => {
                    let _ = timeout(GARBAGE_READ_TIMEOUT, async {
                        s.write_all(&junk).await?;
                        s.shutdown().await?;
                        let mut sink = Vec::new();
                        s.read_to_end(&mut sink).await
                    })
                    .await;
                }
            }
            true
        });
    }
    let mut made = 0;
    while let Some(done) = set.join_next().await {
        made += usize::from(done.unwrap_or(false));
    }
    Ok(format!(
        "{made} of {GARBAGE_CONNECTIONS} garbage connections made to {}",
        fwd.label
    ))
}

/// What tunneld did with one hostile SOCKS request.
#[derive(Clone, Copy, PartialEq, Eq)]
enum SocksEnd {
    Closed,
    Answered,
    Held,
    NoConnect,
    /// A SOCKS5 success answer to a CONNECT towards a closed port.
    FalseSuccess,
}

/// Malformed and hostile SOCKS requests on the proxied -D listener.
async fn garbage_socks(env: &mut Env<'_>, rng: &mut Rng) -> Result<String, String> {
    let entry = env.layout.dynamic_proxied;
    let closed_port = free_port(Ipv4Addr::LOCALHOST.into());
    let mut set = JoinSet::new();
    for _ in 0..GARBAGE_CONNECTIONS {
        let variant = rng.below(8);
        let junk = tunneld_tests::net::random_bytes(rng.between(1, 4096) as usize, rng.next_u64());
        let request = socks_garbage(variant, &junk, closed_port);
        set.spawn(async move {
            let Some(mut s) = connect(entry).await else {
                return SocksEnd::NoConnect;
            };
            let _ = timeout(GARBAGE_READ_TIMEOUT, s.write_all(&request)).await;
            let mut answer = Vec::new();
            let mut buf = [0u8; 512];
            let end = loop {
                match timeout(GARBAGE_READ_TIMEOUT, s.read(&mut buf)).await {
                    Err(_) => {
                        break if answer.is_empty() {
                            SocksEnd::Held
                        } else {
                            SocksEnd::Answered
                        };
                    }
                    Ok(Ok(0) | Err(_)) => {
                        break if answer.is_empty() {
                            SocksEnd::Closed
                        } else {
                            SocksEnd::Answered
                        };
                    }
                    Ok(Ok(n)) => answer.extend_from_slice(&buf[..n]),
                }
                if variant == 5 && answer.len() >= 4 {
                    // Method choice [5, 0], then the reply [5, code, ...].
                    let code = answer.get(3).copied();
                    break if code == Some(0) {
                        SocksEnd::FalseSuccess
                    } else {
                        SocksEnd::Answered
                    };
                }
            };
            reset(s);
            end
        });
    }
    let mut counts = [0usize; 5];
    while let Some(done) = set.join_next().await {
        let end = done.unwrap_or(SocksEnd::NoConnect);
        counts[end as usize] += 1;
    }
    let [closed, answered, held, no_connect, false_success] = counts;
    if false_success > 0 {
        return Err(format!(
            "the -D forward answered success to {false_success} SOCKS5 CONNECTs towards a closed \
             port (127.0.0.1:{closed_port})"
        ));
    }
    Ok(format!(
        "{GARBAGE_CONNECTIONS} hostile SOCKS requests: {closed} closed by tunneld, {answered} \
         answered then closed or held, {held} held open for {GARBAGE_READ_TIMEOUT:?}, \
         {no_connect} could not connect"
    ))
}

/// Request number `variant` of the hostile SOCKS set.
fn socks_garbage(variant: u64, junk: &[u8], closed_port: u16) -> Vec<u8> {
    let mut r = Vec::new();
    match variant {
        // Random bytes.
        0 => r.extend_from_slice(junk),
        // SOCKS5 greeting that promises 255 methods and sends three.
        1 => r.extend_from_slice(&[5, 255, 0, 1, 2]),
        // SOCKS5 CONNECT to a 255-byte host name of random bytes.
        2 => {
            r.extend_from_slice(&[5, 1, 0, 5, 1, 0, 3, 255]);
            r.extend((0..255).map(|i| junk[i % junk.len()]));
            r.extend_from_slice(&[0, 80]);
        }
        // SOCKS4 CONNECT with a 64 KiB user id and no terminating NUL.
        3 => {
            r.extend_from_slice(&[4, 1, 0, 80, 127, 0, 0, 1]);
            r.extend(std::iter::repeat_n(b'u', 64 * 1024));
        }
        // SOCKS5 UDP ASSOCIATE, which a -D forward does not offer.
        4 => r.extend_from_slice(&[5, 1, 0, 5, 3, 0, 1, 127, 0, 0, 1, 0, 0]),
        // SOCKS5 CONNECT to a closed port: must get a failure reply, never success.
        5 => {
            r.extend_from_slice(&[5, 1, 0, 5, 1, 0, 1, 127, 0, 0, 1]);
            r.extend_from_slice(&closed_port.to_be_bytes());
        }
        // An HTTP request on the SOCKS port.
        6 => r.extend_from_slice(b"GET / HTTP/1.1\r\nHost: soak\r\n\r\n"),
        // SOCKS4a with a host name that never ends.
        _ => {
            r.extend_from_slice(&[4, 1, 0, 80, 0, 0, 0, 1, 0]);
            r.extend(std::iter::repeat_n(b'h', 8 * 1024));
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deck_deals_every_kind_once_per_round() {
        let mut rng = Rng::new(11);
        let mut deck = Deck::new(true);
        let mut first: Vec<Kind> = (0..Kind::ALL.len()).map(|_| deck.draw(&mut rng)).collect();
        first.sort();
        assert_eq!(first, Kind::ALL);
        let mut deck = Deck::new(false);
        let drawn: Vec<Kind> = (0..20).map(|_| deck.draw(&mut rng)).collect();
        assert!(drawn.iter().all(|k| !k.needs_proxy()));
    }

    #[test]
    fn sessions_kept_is_checked_only_where_the_fault_may_not_reach() {
        let view = |name: &str, since: &str| TunnelView {
            name: name.into(),
            state: "up".into(),
            since: since.into(),
            reconnects: 0,
            last_error: None,
            forwards: vec![],
        };
        let before = [view("direct", "a"), view("proxied", "a")];
        let after = [view("direct", "a"), view("proxied", "b")];
        assert!(kept_sessions(Kind::ProxyReset, true, &before, &after).is_empty());
        let p = kept_sessions(Kind::GarbageLocal, true, &before, &after);
        assert_eq!(p.len(), 1);
        assert!(p[0].contains("tunnel proxied lost its session"), "{p:?}");
        let after = [view("direct", "b"), view("proxied", "b")];
        assert_eq!(
            kept_sessions(Kind::ProxyReset, true, &before, &after).len(),
            1
        );
        assert!(kept_sessions(Kind::SshdRestart, true, &before, &after).is_empty());
    }
}
