//! `on_state_change`: a program run at each state change of a tunnel, with the change in
//! its environment (`TUNNELD_TUNNEL`, `TUNNELD_STATE`, `TUNNELD_PREVIOUS_STATE`,
//! `TUNNELD_HOST`, `TUNNELD_LAST_ERROR`, `TUNNELD_REMOTE_LISTEN`).
//!
//! The hook watches the tunnel's status channel from a task of its own, so it never
//! delays the tunnel. One run per tunnel at a time (across restarts of the tunnel too):
//! changes during a run are coalesced into one run after it, with the state then and, as
//! the previous state, the one the last run reported. A run is killed (its whole process
//! group) after [`HOOK_TIMEOUT`]; its output lines and its exit go to the log.

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Mutex, watch};
use tracing::{info, warn};
use tunneld_config::TunnelConfig;

use crate::proxy_command::{Group, describe, for_each_line};
use crate::status::{ForwardKind, ForwardState, TunnelState, TunnelStatus};

/// How long one run may take before its process group is killed.
pub const HOOK_TIMEOUT: Duration = Duration::from_secs(30);
/// Output lines of one run that are logged; the rest is counted.
const MAX_LOGGED_LINES: usize = 100;
/// How long the output of a run that exited is still read (a child it left in the
/// background may hold the pipes open).
const OUTPUT_DRAIN: Duration = Duration::from_millis(500);

/// One run at a time per tunnel name, shared by the successive runs of a tunnel.
pub(crate) type RunLock = Arc<Mutex<()>>;

/// What a run is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Change {
    pub tunnel: String,
    pub state: TunnelState,
    pub previous: TunnelState,
    pub host: String,
    pub last_error: String,
    pub remote_listen: String,
}

impl Change {
    fn of(status: &TunnelStatus, previous: TunnelState) -> Change {
        let remote_listen: Vec<&str> = status
            .forwards
            .iter()
            .filter(|f| f.kind == ForwardKind::Remote && f.state == ForwardState::Active)
            .flat_map(|f| f.listen.iter().flatten())
            .map(String::as_str)
            .collect();
        Change {
            tunnel: status.name.clone(),
            state: status.state,
            previous,
            host: status.host.clone(),
            last_error: status.last_error.clone().unwrap_or_default(),
            remote_listen: remote_listen.join(" "),
        }
    }

    fn env(&self) -> [(&'static str, &str); 6] {
        [
            ("TUNNELD_TUNNEL", &self.tunnel),
            ("TUNNELD_STATE", self.state.as_str()),
            ("TUNNELD_PREVIOUS_STATE", self.previous.as_str()),
            ("TUNNELD_HOST", &self.host),
            ("TUNNELD_LAST_ERROR", &self.last_error),
            ("TUNNELD_REMOTE_LISTEN", &self.remote_listen),
        ]
    }
}

/// Delivers the state changes of one run of a tunnel to its hook (read from `desired` at
/// each change, so a reload may set, change or remove it). Ends once the tunnel's status
/// channel is closed and its last change delivered.
pub(crate) async fn follow(
    mut status: watch::Receiver<TunnelStatus>,
    desired: watch::Receiver<Arc<TunnelConfig>>,
    lock: RunLock,
) {
    // Every tunnel starts `connecting`; what changed before this task first ran is seen
    // as a change all the same (the receiver was made with the channel).
    let mut told = TunnelState::Connecting;
    let mut open = true;
    // A state change happened during the last run.
    let mut missed = false;
    loop {
        if !missed {
            if !open {
                return;
            }
            open = status.changed().await.is_ok();
        }
        let state = status.borrow_and_update().state;
        if state == told && !missed {
            continue;
        }
        missed = false;
        let change = Change::of(&status.borrow(), told);
        told = state;
        let argv = desired.borrow().on_state_change.clone();
        if argv.is_empty() {
            continue;
        }
        let _turn = lock.lock().await;
        let mut run = std::pin::pin!(run(&argv, &change, HOOK_TIMEOUT));
        loop {
            tokio::select! {
                () = &mut run => break,
                changed = status.changed(), if open => {
                    open = changed.is_ok();
                    if status.borrow_and_update().state != told {
                        missed = true;
                    }
                }
            }
        }
    }
}

/// Runs the hook once for `change`, killing its process group after `timeout`; logs its
/// output and how it ended.
pub(crate) async fn run(argv: &[String], change: &Change, timeout: Duration) {
    let Some((program, args)) = argv.split_first() else {
        return;
    };
    let tunnel = change.tunnel.as_str();
    let (state, previous) = (change.state.as_str(), change.previous.as_str());
    let spawned = tokio::process::Command::new(program)
        .args(args)
        .envs(change.env())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) => {
            warn!(tunnel, program, state, error = %e, "on_state_change: cannot start the program");
            return;
        }
    };
    let group = child.id().map(Group);
    let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
    let lines = std::sync::atomic::AtomicUsize::new(0);
    let log = |text: String, stream: &str| {
        let n = lines.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if n < MAX_LOGGED_LINES {
            info!(tunnel, state, stream, "on_state_change: {text}");
        }
    };
    let output = async {
        let out = async {
            if let Some(o) = stdout {
                for_each_line(o, |t| log(t, "stdout")).await;
            }
        };
        let err = async {
            if let Some(e) = stderr {
                for_each_line(e, |t| log(t, "stderr")).await;
            }
        };
        tokio::join!(out, err);
    };
    let mut output = std::pin::pin!(output);
    let mut output_done = false;
    let waited = tokio::time::timeout(timeout, async {
        // The output is read while the program runs; it ends with the program, or with
        // a child it left behind.
        loop {
            tokio::select! {
                status = child.wait() => return status,
                () = &mut output, if !output_done => output_done = true,
            }
        }
    })
    .await;
    let status = match waited {
        Ok(status) => status,
        Err(_) => {
            if let Some(g) = &group {
                g.signal(libc::SIGKILL);
            }
            let _ = child.wait().await;
            if !output_done {
                let _ = tokio::time::timeout(OUTPUT_DRAIN, &mut output).await;
            }
            warn!(
                tunnel,
                program,
                state,
                previous,
                ?timeout,
                "on_state_change: killed, still running after the timeout"
            );
            return;
        }
    };
    if !output_done {
        let _ = tokio::time::timeout(OUTPUT_DRAIN, &mut output).await;
    }
    let dropped_lines = lines
        .load(std::sync::atomic::Ordering::Relaxed)
        .saturating_sub(MAX_LOGGED_LINES);
    match status {
        Ok(status) if status.success() => {
            info!(
                tunnel,
                program,
                state,
                previous,
                dropped_lines,
                "on_state_change: {}",
                describe(status)
            );
        }
        Ok(status) => {
            warn!(
                tunnel,
                program,
                state,
                previous,
                dropped_lines,
                "on_state_change: {}",
                describe(status)
            );
        }
        Err(e) => warn!(tunnel, program, state, error = %e, "on_state_change: cannot wait for it"),
    }
}

#[cfg(test)]
mod tests;
