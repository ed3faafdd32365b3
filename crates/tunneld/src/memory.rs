//! Handing memory back to the system after bursts of work.

use std::time::Duration;
use tokio::time::Instant;

/// Quiet time after the last tunnel state change or control request before memory is
/// handed back.
const SETTLE: Duration = Duration::from_millis(500);

/// Hands freed heap memory back to the system once tunnels have settled.
///
/// A handshake needs far more memory than an idle session (key exchange, host key and
/// authentication buffers), and so does answering `tunneld status` for many tunnels;
/// freed, it stays in the allocator's heap between live blocks, where glibc does not
/// return it by itself. Runs only after such bursts, never on a timer while idle.
#[derive(Default)]
pub struct Trim {
    at: Option<Instant>,
}

impl Trim {
    /// Asks for a trim once nothing has changed for [`SETTLE`].
    pub fn soon(&mut self) {
        self.at = Some(Instant::now() + SETTLE);
    }

    /// Resolves when a trim is due; never while none is asked for.
    pub async fn due(&self) {
        match self.at {
            Some(at) => tokio::time::sleep_until(at).await,
            None => std::future::pending().await,
        }
    }

    /// Trims now (glibc; elsewhere nothing to do).
    pub fn run(&mut self) {
        self.at = None;
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        // SAFETY: malloc_trim only walks and trims glibc's own heaps; no pointer of
        // ours is involved.
        unsafe {
            libc::malloc_trim(0);
        }
    }
}
