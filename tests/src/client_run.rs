//! For the kit's own tests: running a client against a server of the kit, bounded, and
//! failing with the server's log when it did not succeed.

use std::process::{Output, Stdio};
use std::time::Duration;

use tokio::time::timeout;

/// Upper bound for one client run.
pub(crate) const CLIENT_RUN_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs `cmd ARGS...` with no input and returns its output; panics after
/// [`CLIENT_RUN_TIMEOUT`] (the client is killed).
pub(crate) async fn run(mut cmd: tokio::process::Command, args: &[&str]) -> Output {
    cmd.args(args).kill_on_drop(true).stdin(Stdio::null());
    timeout(CLIENT_RUN_TIMEOUT, cmd.output())
        .await
        .expect("the client did not exit in time")
        .expect("run the client")
}

/// Panics unless the client succeeded, quoting its stderr and `server`'s log.
pub(crate) fn assert_ran(out: &Output, what: &str, server: &str, log: &str) {
    assert!(
        out.status.success(),
        "{what}: {}\nstderr: {}\n{server} log:\n{log}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
    );
}
