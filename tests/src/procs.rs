//! The process tree under a pid, read from `/proc`, and killing it without leaving orphans;
//! stopping a child with SIGTERM, then SIGKILL after a grace.
//!
//! sshd's per-connection children call `setsid()`, so process groups and sessions do not
//! find them: only the parent-pid chain does.

use std::collections::{BTreeSet, HashMap};
use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

/// How long [`kill_tree`] keeps freezing new descendants before killing what it has.
const FREEZE_DEADLINE: Duration = Duration::from_secs(2);
/// How long [`kill_tree`] waits for the killed processes to be gone (or zombies).
const DEATH_DEADLINE: Duration = Duration::from_secs(5);
/// How long [`kill_tree`] lets the root reap the processes it killed.
const REAP_GRACE: Duration = Duration::from_secs(1);
/// Pause between two `/proc` scans while waiting for processes to die.
const DEATH_POLL: Duration = Duration::from_millis(2);
/// Pause between two looks at whether a child sent SIGTERM has exited.
const EXIT_POLL: Duration = Duration::from_millis(5);

/// One line of `/proc/PID/stat`: what we need from it.
struct Stat {
    ppid: i32,
    state: char,
}

fn read_stat(pid: i32) -> Option<Stat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) state ppid ...`: comm may hold spaces and parentheses, so split after the last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some(Stat { ppid, state })
}

/// Every live pid with its parent pid.
fn parent_map() -> HashMap<i32, i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return HashMap::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| Some((pid, read_stat(pid)?.ppid)))
        .collect()
}

/// A process as `/proc` shows it now.
#[derive(Debug, Clone)]
pub struct Process {
    pub pid: i32,
    pub ppid: i32,
    /// `R`, `S`, `Z` (a zombie: ended, not reaped) ...
    pub state: char,
    /// Its arguments joined by spaces (empty for zombies and kernel threads).
    pub cmdline: String,
}

/// Every process of the machine (or of this pid namespace), read from `/proc`.
pub fn processes() -> Vec<Process> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| {
            let stat = read_stat(pid)?;
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            Some(Process {
                pid,
                ppid: stat.ppid,
                state: stat.state,
                cmdline: String::from_utf8_lossy(&cmdline).replace('\0', " "),
            })
        })
        .collect()
}

/// Every process whose parent chain leads to `root` (not `root` itself).
pub(crate) fn descendants(root: i32) -> BTreeSet<i32> {
    let mut children: HashMap<i32, Vec<i32>> = HashMap::new();
    for (pid, ppid) in parent_map() {
        children.entry(ppid).or_default().push(pid);
    }
    let mut found = BTreeSet::new();
    let mut todo = vec![root];
    // Each pid is pushed at most once (the `insert` check), so this ends.
    while let Some(pid) = todo.pop() {
        for &child in children.get(&pid).into_iter().flatten() {
            if child != root && found.insert(child) {
                todo.push(child);
            }
        }
    }
    found
}

pub(crate) fn signal(pid: i32, sig: libc::c_int) {
    // SAFETY: kill(2) has no memory-safety preconditions; a stale pid only yields ESRCH.
    unsafe {
        libc::kill(pid, sig);
    }
}

fn gone_or_zombie(pid: i32) -> bool {
    read_stat(pid).is_none_or(|s| s.state == 'Z' || s.state == 'X')
}

fn gone(pid: i32) -> bool {
    read_stat(pid).is_none()
}

/// SIGKILLs every descendant of `root`, then `root` too when `include_root`; returns the
/// descendants killed, once they are dead (bounded by [`DEATH_DEADLINE`]).
///
/// The tree is frozen with SIGSTOP first (root included), rescanning until no new process
/// appears, so a process that forks while we work cannot leave an orphan behind (an orphan is
/// re-parented away from `root` and would no longer be found). Then the descendants die
/// while `root` runs again, so it can reap them: a `root` that is a child subreaper (see
/// `sshd::spawn_tied_to_process`) also reaps the grandchildren, and no zombie is left for an
/// init that does not reap (as in some containers). Only then does `root` die.
pub(crate) fn kill_tree(root: i32, include_root: bool) -> BTreeSet<i32> {
    let mut frozen = BTreeSet::new();
    signal(root, libc::SIGSTOP);
    let deadline = Instant::now() + FREEZE_DEADLINE;
    loop {
        let now = descendants(root);
        let fresh: Vec<i32> = now.difference(&frozen).copied().collect();
        if fresh.is_empty() || Instant::now() >= deadline {
            break;
        }
        for pid in fresh {
            signal(pid, libc::SIGSTOP);
            frozen.insert(pid);
        }
    }
    for &pid in &frozen {
        signal(pid, libc::SIGKILL);
    }
    signal(root, libc::SIGCONT);
    let deadline = Instant::now() + DEATH_DEADLINE;
    while Instant::now() < deadline && !frozen.iter().all(|&p| gone_or_zombie(p)) {
        std::thread::sleep(DEATH_POLL);
    }
    // Give `root` a moment to reap them; zombies it does not reap are dead all the same.
    let deadline = Instant::now() + REAP_GRACE;
    while Instant::now() < deadline && !frozen.iter().all(|&p| gone(p)) {
        std::thread::sleep(DEATH_POLL);
    }
    if include_root {
        signal(root, libc::SIGKILL);
    }
    frozen
}

/// What [`sigterm_then_sigkill`] SIGKILLs when the child outlives its grace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AfterGrace {
    /// The child alone.
    KillChild,
    /// The child and every process whose parent chain leads to it.
    KillTree,
}

/// Sends SIGTERM to `child` and waits up to `grace` for it to exit; returns its status
/// and how long after the SIGTERM it came. `None` if it was still running then: it (or its
/// tree, as `after` says) got SIGKILL and has been reaped. A child that had already exited
/// is not signalled (its pid may be another process's by now).
///
/// Blocks the calling thread, polling every `EXIT_POLL`: call it where nothing else has
/// to run on this thread meanwhile (a `Drop`, or an async caller that only waits for this).
pub fn sigterm_then_sigkill(
    child: &mut Child,
    grace: Duration,
    after: AfterGrace,
) -> Option<(ExitStatus, Duration)> {
    let start = Instant::now();
    if let Ok(Some(status)) = child.try_wait() {
        return Some((status, start.elapsed()));
    }
    let pid = child.id() as i32;
    signal(pid, libc::SIGTERM);
    let start = Instant::now();
    while start.elapsed() < grace {
        if let Ok(Some(status)) = child.try_wait() {
            return Some((status, start.elapsed()));
        }
        std::thread::sleep(EXIT_POLL);
    }
    match after {
        AfterGrace::KillChild => {
            let _ = child.kill();
        }
        AfterGrace::KillTree => {
            let mut tree = descendants(pid);
            tree.insert(pid);
            for p in tree {
                signal(p, libc::SIGKILL);
            }
        }
    }
    let _ = child.wait();
    None
}

/// Makes the program `cmd` starts die (SIGKILL) when this process does, so that nothing
/// a test, the bench or the soak starts outlives it, even if it is killed itself.
pub fn die_with_this_process(cmd: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: the closure runs between fork and exec and only calls async-signal-safe
    // functions (prctl, getppid).
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::getppid() != parent {
                // This process died between fork and prctl.
                return Err(std::io::Error::other("parent exited"));
            }
            Ok(())
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;
    use std::process::{Command, Stdio};

    #[test]
    fn finds_and_kills_grandchildren_that_left_the_session() {
        // A shell that starts a grandchild in its own session, like sshd's children do.
        let mut child = Command::new("sh")
            .args(["-c", "setsid sleep 60 & sleep 60 & wait"])
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let root = child.id() as i32;
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut found = BTreeSet::new();
        while Instant::now() < deadline {
            found = descendants(root);
            if found.len() >= 2 {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(
            found.len() >= 2,
            "expected two sleeps under {root}, found {found:?}"
        );
        let killed = kill_tree(root, false);
        assert!(killed.is_superset(&found), "{killed:?} vs {found:?}");
        for pid in &killed {
            assert!(gone_or_zombie(*pid), "{pid} still alive");
        }
        // The shell's `wait` returns once its children die; reap it.
        child.wait().unwrap();
    }

    #[test]
    fn sigterm_then_sigkill_waits_for_the_exit_or_kills_after_the_grace() {
        let mut obeys = Command::new("sleep").arg("60").spawn().unwrap();
        let got = sigterm_then_sigkill(&mut obeys, Duration::from_secs(5), AfterGrace::KillChild);
        let (status, took) = got.expect("sleep exits on SIGTERM");
        assert_eq!(status.signal(), Some(libc::SIGTERM));
        assert!(took < Duration::from_secs(5), "{took:?}");

        // A shell that ignores SIGTERM, with a child of its own: the grace runs out.
        let mut deaf = Command::new("sh")
            .args(["-c", "trap '' TERM; sleep 60 & wait"])
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let root = deaf.id() as i32;
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut under = descendants(root);
        while under.is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
            under = descendants(root);
        }
        assert!(!under.is_empty(), "no sleep under {root}");
        let start = Instant::now();
        let got = sigterm_then_sigkill(&mut deaf, Duration::from_millis(200), AfterGrace::KillTree);
        assert!(got.is_none(), "{got:?}");
        assert!(start.elapsed() >= Duration::from_millis(200));
        assert_eq!(
            deaf.try_wait().unwrap().and_then(|s| s.signal()),
            Some(libc::SIGKILL)
        );
        let deadline = Instant::now() + Duration::from_secs(5);
        while !under.iter().all(|&p| gone_or_zombie(p)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        for pid in &under {
            assert!(gone_or_zombie(*pid), "{pid} still alive");
        }
    }
}
