//! `proxy_command`: OpenSSH's `ProxyCommand`. The command runs through `/bin/sh -c` in
//! a process group of its own; its stdin and stdout carry the SSH connection, each line
//! of its stderr goes to the log. Dropping the stream ends the whole group (SIGTERM, then
//! SIGKILL) and reaps it, so no command outlives its session. When the command exits,
//! the stream's reader fails with the exit status and the command's last stderr line.

use std::io;
use std::pin::Pin;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::process::{Child, ChildStdin, ChildStdout};
use tokio::sync::{oneshot, watch};
use tracing::{info, warn};

use crate::sync::lock;

/// How long an ended session waits for its command to leave after SIGTERM before SIGKILL.
const TERM_GRACE: Duration = Duration::from_secs(2);
/// How long the reader waits, once stdout closed, for the command's exit status.
const EXIT_WAIT: Duration = Duration::from_secs(2);
/// How long an exited command's stderr is read on before its exit is reported.
const STDERR_DRAIN: Duration = Duration::from_millis(500);
/// The longest stderr line logged (the rest is cut).
const MAX_LOG_LINE_BYTES: usize = 1024;

/// The command's stdin and stdout as one byte stream.
pub(crate) struct CommandStream {
    stdin: ChildStdin,
    stdout: ChildStdout,
    exit: watch::Receiver<Option<String>>,
    last_words: Arc<Mutex<Option<String>>>,
    /// Resolves the keeper: the group is ended when this is dropped.
    _stop: oneshot::Sender<()>,
    /// Set once stdout closed: waits for the exit status.
    ending: Option<Pin<Box<dyn Future<Output = Option<String>> + Send>>>,
    #[cfg(test)]
    pid: u32,
}

/// Starts `command` (already expanded) for `tunnel`.
///
/// # Errors
/// The shell could not be started.
pub(crate) fn spawn(tunnel: &str, command: &str) -> io::Result<CommandStream> {
    let mut child = tokio::process::Command::new("/bin/sh")
        .arg("-c")
        // As OpenSSH does: the shell becomes the command, so its pid is the command's.
        .arg(format!("exec {command}"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()?;
    let pid = child.id().unwrap_or_default();
    let (Some(stdin), Some(stdout), Some(stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        return Err(io::Error::other("the command's pipes are missing"));
    };
    info!(tunnel, pid, command, "proxy command started");
    let last_words = Arc::new(Mutex::new(None));
    let logged = tokio::spawn(log_stderr(
        tunnel.to_owned(),
        stderr,
        Arc::clone(&last_words),
    ));
    let (exit_tx, exit) = watch::channel(None);
    let (stop, stopped) = oneshot::channel();
    tokio::spawn(keep(
        tunnel.to_owned(),
        child,
        pid,
        stopped,
        exit_tx,
        logged,
    ));
    Ok(CommandStream {
        stdin,
        stdout,
        exit,
        last_words,
        _stop: stop,
        ending: None,
        #[cfg(test)]
        pid,
    })
}

/// Owns the child: publishes its exit, or ends its group when the stream goes.
async fn keep(
    tunnel: String,
    mut child: Child,
    pid: u32,
    stopped: oneshot::Receiver<()>,
    exit: watch::Sender<Option<String>>,
    logged: tokio::task::JoinHandle<()>,
) {
    let group = Group(pid);
    let status = tokio::select! {
        status = child.wait() => status,
        _ = stopped => {
            group.signal(libc::SIGTERM);
            match tokio::time::timeout(TERM_GRACE, child.wait()).await {
                Ok(status) => status,
                Err(_) => {
                    group.signal(libc::SIGKILL);
                    child.wait().await
                }
            }
        }
    };
    let text = match status {
        Ok(status) => describe(status),
        Err(e) => format!("could not be waited for: {e}"),
    };
    info!(tunnel, pid, "proxy command {text}");
    // Whatever the command left behind in its group goes with it.
    group.signal(libc::SIGKILL);
    // Its last stderr lines belong with its exit (a bound: another process may still
    // hold the pipe open).
    let _ = tokio::time::timeout(STDERR_DRAIN, logged).await;
    exit.send_replace(Some(text));
}

/// A process group, ended if its keeper is dropped (the runtime shutting down).
pub(crate) struct Group(pub u32);

impl Group {
    pub(crate) fn signal(&self, signal: libc::c_int) {
        let Ok(pgid) = libc::pid_t::try_from(self.0) else {
            return;
        };
        if pgid > 1 {
            // SAFETY: killpg has no memory effects; a group already gone is ESRCH.
            unsafe { libc::killpg(pgid, signal) };
        }
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        self.signal(libc::SIGKILL);
    }
}

pub(crate) fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(signal)) => format!("was killed by signal {signal}"),
        (None, None) => format!("ended ({status})"),
    }
}

async fn log_stderr(
    tunnel: String,
    stderr: tokio::process::ChildStderr,
    last_words: Arc<Mutex<Option<String>>>,
) {
    for_each_line(stderr, |text| {
        warn!(tunnel, "proxy command: {text}");
        *lock(&last_words) = Some(text);
    })
    .await;
}

/// Calls `each` with every line of `output` that is not blank, trimmed at the end, cut at
/// [`MAX_LOG_LINE_BYTES`] (the rest of a longer line comes as the next ones); until end of
/// file or an error.
pub(crate) async fn for_each_line(output: impl AsyncRead + Unpin, mut each: impl FnMut(String)) {
    let mut lines = tokio::io::BufReader::new(output);
    let mut line = Vec::new();
    loop {
        line.clear();
        match (&mut lines)
            .take(MAX_LOG_LINE_BYTES as u64)
            .read_until(b'\n', &mut line)
            .await
        {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let text = String::from_utf8_lossy(&line).trim_end().to_owned();
        if !text.is_empty() {
            each(text);
        }
    }
}

impl CommandStream {
    /// The error a read returns once stdout closed: how the command ended.
    fn ended(&self, how: Option<String>) -> io::Error {
        let how = how.unwrap_or_else(|| "closed its output".to_owned());
        let last = lock(&self.last_words).clone();
        let text = match last {
            Some(words) => format!("proxy command {how}; it said: {words}"),
            None => format!("proxy command {how}"),
        };
        io::Error::new(io::ErrorKind::ConnectionAborted, text)
    }
}

impl CommandStream {
    /// Once the command's output or input closed: waits (boundedly) for its exit status
    /// and gives the error that says how it ended.
    fn poll_ended(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        let ending = self.ending.get_or_insert_with(|| {
            let mut exit = self.exit.clone();
            Box::pin(async move {
                let waited = tokio::time::timeout(EXIT_WAIT, exit.wait_for(Option::is_some)).await;
                waited.ok().and_then(|r| r.ok()).and_then(|s| s.clone())
            })
        });
        let how = std::task::ready!(ending.as_mut().poll(cx));
        Poll::Ready(self.ended(how))
    }
}

impl AsyncRead for CommandStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.ending.is_none() {
            let before = buf.filled().len();
            std::task::ready!(Pin::new(&mut self.stdout).poll_read(cx, buf))?;
            if buf.filled().len() > before || buf.remaining() == 0 {
                return Poll::Ready(Ok(()));
            }
        }
        self.poll_ended(cx).map(Err)
    }
}

impl AsyncWrite for CommandStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.ending.is_none() {
            match std::task::ready!(Pin::new(&mut self.stdin).poll_write(cx, buf)) {
                Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {}
                other => return Poll::Ready(other),
            }
        }
        self.poll_ended(cx).map(Err)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stdin).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stdin).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn alive(pid: u32) -> bool {
        // Zombies are not alive: the keeper reaps.
        std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
            !s.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
    }

    async fn until(what: &str, mut cond: impl FnMut() -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !cond() {
            assert!(tokio::time::Instant::now() < deadline, "{what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test]
    async fn carries_bytes_and_reports_how_it_ended() {
        // `exec` goes first, as in OpenSSH: a list of commands needs a shell of its own.
        let mut s = spawn("t", "sh -c \"echo 'going away' >&2; head -c 5; exit 3\"").unwrap();
        s.write_all(b"hello, and more").await.unwrap();
        // `head` passes on its first 5 bytes, then ends.
        let mut got = [0u8; 5];
        s.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"hello");
        let e = s.read(&mut got).await.unwrap_err();
        assert_eq!(
            e.to_string(),
            "proxy command exited with status 3; it said: going away"
        );
    }

    #[tokio::test]
    async fn dropping_the_stream_ends_the_whole_group() {
        // A pipeline: the shell's children too must go.
        let s = spawn("t", "sleep 600 | sleep 601").unwrap();
        let pid = s.pid;
        let children = || {
            std::fs::read_dir("/proc")
                .unwrap()
                .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
                .filter(|p| {
                    std::fs::read_to_string(format!("/proc/{p}/stat")).is_ok_and(|st| {
                        let fields: Vec<&str> = st
                            .rsplit(')')
                            .next()
                            .unwrap_or("")
                            .split_whitespace()
                            .collect();
                        fields.get(2) == Some(&pid.to_string().as_str())
                    })
                })
                .filter(|p| alive(*p))
                .count()
        };
        until("the pipeline started", || children() >= 2).await;
        drop(s);
        until("the group ended and was reaped", || {
            !alive(pid) && children() == 0
        })
        .await;
    }
}
