//! The hook against scripts: its environment, one run at a time with later changes
//! coalesced, the kill of a run that takes too long (with what it left in the background).

use std::path::{Path, PathBuf};
use std::time::Instant;

use super::*;
use crate::tunnel::initial_status;

/// Generous bound for a script to have run, on a busy machine.
const DEADLINE: Duration = Duration::from_secs(20);

fn config(argv: &[&str]) -> TunnelConfig {
    let text = format!(
        "[tunnels.t]\nhost = \"h\"\nremote = [\"0:localhost:22\"]\non_state_change = [{}]\n",
        argv.iter()
            .map(|a| format!("{a:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    tunneld_config::parse(Path::new("t.toml"), &text)
        .unwrap()
        .tunnels["t"]
        .clone()
}

/// A script appending `STATE|PREVIOUS|HOST|LISTEN|ERROR` to `out`, then waiting while
/// the file `gate` exists.
fn recorder(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let (script, out, gate) = (dir.join("hook.sh"), dir.join("out"), dir.join("gate"));
    std::fs::write(
        &script,
        "#!/bin/sh\nprintf '%s|%s|%s|%s|%s\\n' \"$TUNNELD_STATE\" \"$TUNNELD_PREVIOUS_STATE\" \
         \"$TUNNELD_HOST\" \"$TUNNELD_REMOTE_LISTEN\" \"$TUNNELD_LAST_ERROR\" >> \"$1\"\n\
         echo \"told $TUNNELD_TUNNEL\"\nwhile [ -e \"$2\" ]; do sleep 0.02; done\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    (script, out, gate)
}

/// The hook watching a tunnel that uses the recorder: the tunnel's status sender, the
/// recorder's output and gate files, and the watching task.
fn watched(
    dir: &Path,
) -> (
    watch::Sender<TunnelStatus>,
    PathBuf,
    PathBuf,
    tokio::task::JoinHandle<()>,
) {
    let (script, out, gate) = recorder(dir);
    let cfg = config(&[
        script.to_str().unwrap(),
        out.to_str().unwrap(),
        gate.to_str().unwrap(),
    ]);
    let (tx, rx) = watch::channel(initial_status(&cfg));
    // The hook reads its argv from the tunnel's desired config at each change.
    let desired = watch::Sender::new(Arc::new(cfg)).subscribe();
    let task = tokio::spawn(follow(rx, desired, RunLock::default()));
    (tx, out, gate, task)
}

fn lines(out: &Path) -> Vec<String> {
    std::fs::read_to_string(out)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

async fn wait_lines(out: &Path, n: usize) -> Vec<String> {
    let start = Instant::now();
    loop {
        let got = lines(out);
        if got.len() >= n {
            return got;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "only {got:?} after {DEADLINE:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn set(tx: &watch::Sender<TunnelStatus>, state: TunnelState, edit: impl FnOnce(&mut TunnelStatus)) {
    tx.send_modify(|s| {
        s.state = state;
        edit(s);
    });
}

#[tokio::test]
async fn each_change_is_told_with_the_tunnels_facts() {
    let dir = tempfile::tempdir().unwrap();
    let (tx, out, _gate, task) = watched(dir.path());
    set(&tx, TunnelState::Up, |s| {
        s.host = "h:22".into();
        s.forwards[0].state = ForwardState::Active;
        s.forwards[0].listen = Some(vec!["localhost:40123".into()]);
    });
    wait_lines(&out, 1).await;
    set(&tx, TunnelState::Backoff, |s| {
        s.last_error = Some("connection lost".into());
        s.forwards[0].state = ForwardState::Pending;
        s.forwards[0].listen = None;
    });
    wait_lines(&out, 2).await;
    // Not a state change: not told.
    tx.send_modify(|s| s.retry_in = Some(Duration::from_secs(1)));
    set(&tx, TunnelState::Stopped, |_| {});
    drop(tx);
    // The tunnel is gone: its last change told, the task ends.
    tokio::time::timeout(DEADLINE, task).await.unwrap().unwrap();
    assert_eq!(
        lines(&out),
        [
            "up|connecting|h:22|localhost:40123|",
            "backoff|up|h:22||connection lost",
            "stopped|backoff|h:22||connection lost",
        ]
    );
}

#[tokio::test]
async fn changes_during_a_run_wait_for_it_and_come_as_one() {
    let dir = tempfile::tempdir().unwrap();
    let (tx, out, gate, _task) = watched(dir.path());
    std::fs::write(&gate, "").unwrap();
    set(&tx, TunnelState::Up, |_| {});
    wait_lines(&out, 1).await;
    // The run for `up` is held at the gate; three changes meanwhile.
    for state in [
        TunnelState::Backoff,
        TunnelState::Connecting,
        TunnelState::Degraded,
    ] {
        set(&tx, state, |_| {});
        tokio::task::yield_now().await;
    }
    // Nothing runs beside the held run.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(lines(&out).len(), 1);
    std::fs::remove_file(&gate).unwrap();
    let got = wait_lines(&out, 2).await;
    assert_eq!(
        got[1].split('|').take(2).collect::<Vec<_>>(),
        ["degraded", "up"]
    );
    // And nothing more comes of them.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(lines(&out).len(), 2, "{:?}", lines(&out));
}

#[tokio::test]
async fn a_tunnel_that_came_back_during_a_run_is_told_so() {
    let dir = tempfile::tempdir().unwrap();
    let (tx, out, gate, _task) = watched(dir.path());
    std::fs::write(&gate, "").unwrap();
    set(&tx, TunnelState::Up, |_| {});
    wait_lines(&out, 1).await;
    set(&tx, TunnelState::Backoff, |_| {});
    tokio::task::yield_now().await;
    set(&tx, TunnelState::Up, |s| {
        s.forwards[0].state = ForwardState::Active;
        s.forwards[0].listen = Some(vec!["localhost:40999".into()]);
    });
    std::fs::remove_file(&gate).unwrap();
    let got = wait_lines(&out, 2).await;
    assert_eq!(got[1], "up|up|h:22|localhost:40999|");
}

#[tokio::test]
async fn a_run_past_its_time_is_killed_with_what_it_left_behind() {
    let dir = tempfile::tempdir().unwrap();
    let pids = dir.path().join("pids");
    let argv: Vec<String> = [
        "/bin/sh",
        "-c",
        "sleep 600 & echo $! > \"$0\"; echo $$ >> \"$0\"; wait",
        pids.to_str().unwrap(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let change = Change::of(
        &initial_status(&config(&["/bin/true"])),
        TunnelState::Connecting,
    );
    let started = Instant::now();
    run(&argv, &change, Duration::from_millis(500)).await;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    let text = std::fs::read_to_string(&pids).unwrap();
    let pids: Vec<u32> = text
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect();
    assert_eq!(pids.len(), 2, "{text}");
    // SIGKILL lands at once; a zombie waiting for its reaper counts as dead.
    let alive = |pid: u32| {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|stat| stat.rsplit(") ").next().map(|rest| !rest.starts_with('Z')))
            .unwrap_or(false)
    };
    let start = Instant::now();
    while pids.iter().any(|&p| alive(p)) {
        assert!(
            start.elapsed() < DEADLINE,
            "{pids:?} outlived the killed run"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_program_that_cannot_start_is_logged_and_skipped() {
    let change = Change::of(
        &initial_status(&config(&["/bin/true"])),
        TunnelState::Connecting,
    );
    let argv = vec!["/nonexistent/hook".to_owned()];
    tokio::time::timeout(DEADLINE, run(&argv, &change, HOOK_TIMEOUT))
        .await
        .unwrap();
}
