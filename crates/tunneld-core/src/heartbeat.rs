//! Dead-peer detection with `keepalive@openssh.com`, as `ServerAliveInterval` and
//! `ServerAliveCountMax` do in ssh: a path that silently drops everything (a NAT that
//! forgot us, no FIN, no RST) is noticed within `interval × count`.
//!
//! A probe goes out every `interval`; the session is dead when nothing came from the
//! server for `interval × count`: neither a probe's answer nor anything else. As in
//! OpenSSH, any packet is a sign of life: behind a saturated slow uplink a probe's answer
//! can take longer than the window while the server's window adjusts keep arriving.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::future::FusedFuture;
use tokio::time::Instant;

/// Something that can be probed: `ping` resolves when the peer answers.
pub(crate) trait Probe: Send + Sync {
    /// Sends one probe and waits for its answer. `false` when the session is gone.
    fn ping(&self) -> impl Future<Output = bool> + Send;
    /// When the peer last sent anything at all.
    fn last_heard(&self) -> Instant;
}

/// Why [`monitor`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// No answer to any probe for `interval × count`.
    Silent {
        /// Probes sent since the last answer.
        unanswered: u32,
    },
    /// The session ended by itself (the probe could not be sent).
    Closed,
}

/// Probes `peer` every `interval` until it stays silent for `interval × count` or closes.
///
/// # Cancellation
/// Drop the future to stop probing; nothing is left running.
/// Each answered probe's round trip is stored in `rtt_us` (microseconds).
pub(crate) async fn monitor<P: Probe>(
    peer: &P,
    interval: Duration,
    count: u32,
    tunnel: &str,
    rtt_us: &AtomicU64,
) -> Verdict {
    let window = interval * count.max(1);
    let mut last_answer = Instant::now();
    let mut sent = last_answer;
    let mut unanswered = 0u32;
    let mut ticks = tokio::time::interval_at(Instant::now() + interval, interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // At most one probe in flight: if it is still pending, the peer is not answering and
    // a second one would only queue behind it.
    let mut in_flight = std::pin::pin!(futures_util::future::Fuse::terminated());
    loop {
        tokio::select! {
            _ = ticks.tick() => {
                if in_flight.is_terminated() {
                    sent = Instant::now();
                    in_flight.set(futures_util::FutureExt::fuse(peer.ping()));
                } else {
                    tracing::warn!(tunnel, unanswered, of = count, "heartbeat unanswered");
                }
                unanswered += 1;
            }
            answered = &mut in_flight => {
                if !answered {
                    return Verdict::Closed;
                }
                last_answer = Instant::now();
                let rtt = u64::try_from(last_answer.duration_since(sent).as_micros()).unwrap_or(u64::MAX);
                rtt_us.store(rtt.max(1), Ordering::Relaxed);
                unanswered = 0;
            }
            _ = tokio::time::sleep_until(last_answer + window) => {
                let heard = peer.last_heard();
                if heard > last_answer {
                    last_answer = heard;
                    continue;
                }
                return Verdict::Silent { unanswered };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicU32};

    /// A peer that answers after `delay`, or never while `silent` is set.
    struct FakePeer {
        delay: Duration,
        silent: AtomicBool,
        closed: AtomicBool,
        pings: AtomicU32,
        heard: std::sync::Mutex<Option<Instant>>,
    }

    impl FakePeer {
        fn new(delay: Duration) -> Self {
            FakePeer {
                delay,
                silent: AtomicBool::new(false),
                closed: AtomicBool::new(false),
                pings: AtomicU32::new(0),
                heard: std::sync::Mutex::new(None),
            }
        }
    }

    impl Probe for FakePeer {
        async fn ping(&self) -> bool {
            self.pings.fetch_add(1, Ordering::SeqCst);
            if self.closed.load(Ordering::SeqCst) {
                return false;
            }
            if self.silent.load(Ordering::SeqCst) {
                std::future::pending::<()>().await;
            }
            tokio::time::sleep(self.delay).await;
            true
        }

        fn last_heard(&self) -> Instant {
            // Nothing but the answers, unless a test says otherwise.
            let never = Instant::now() - Duration::from_secs(3600);
            self.heard.lock().unwrap().unwrap_or(never)
        }
    }

    const INTERVAL: Duration = Duration::from_secs(2);

    #[tokio::test(start_paused = true)]
    async fn a_silent_peer_is_declared_dead_after_interval_times_count() {
        let peer = FakePeer::new(Duration::from_millis(50));
        peer.silent.store(true, Ordering::SeqCst);
        let start = Instant::now();
        let verdict = monitor(&peer, INTERVAL, 2, "t", &AtomicU64::new(0)).await;
        assert!(matches!(verdict, Verdict::Silent { .. }), "{verdict:?}");
        assert_eq!(start.elapsed(), INTERVAL * 2);
        // One probe pending is enough: no pile-up behind an unanswered one.
        assert_eq!(peer.pings.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn silence_after_answers_is_counted_from_the_last_answer() {
        let peer = std::sync::Arc::new(FakePeer::new(Duration::from_millis(100)));
        let p = std::sync::Arc::clone(&peer);
        let rtt = std::sync::Arc::new(AtomicU64::new(0));
        let r = std::sync::Arc::clone(&rtt);
        let watcher = tokio::spawn(async move { monitor(&*p, INTERVAL, 3, "t", &r).await });
        // Healthy for a while: probes at 2, 4, 6 s answered 100 ms later.
        tokio::time::sleep(Duration::from_millis(6_500)).await;
        assert!(!watcher.is_finished());
        assert_eq!(rtt.load(Ordering::Relaxed), 100_000, "round trip in µs");
        peer.silent.store(true, Ordering::SeqCst);
        let went_silent = Instant::now();
        let verdict = watcher.await.unwrap();
        assert!(matches!(verdict, Verdict::Silent { .. }));
        // Last answer at 6.1 s; dead at 6.1 + 3 × 2 = 12.1 s, 5.6 s after going silent:
        // within interval × count of the path dying.
        assert_eq!(went_silent.elapsed(), Duration::from_millis(5_600));
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_but_answering_peer_stays_alive() {
        // Answers take 1.9 s of a 2 s interval: never dead.
        let peer = FakePeer::new(Duration::from_millis(1_900));
        let r = tokio::time::timeout(
            Duration::from_secs(600),
            monitor(&peer, INTERVAL, 2, "t", &AtomicU64::new(0)),
        )
        .await;
        assert!(r.is_err(), "declared dead: {r:?}");
    }

    /// Probes unanswered for a minute while other traffic keeps coming (an upload on a
    /// saturated uplink: the server's window adjusts arrive, the answers wait in line):
    /// alive; once the traffic stops too, dead one window after the last of it.
    #[tokio::test(start_paused = true)]
    async fn traffic_from_the_peer_counts_as_an_answer() {
        let peer = std::sync::Arc::new(FakePeer::new(Duration::ZERO));
        peer.silent.store(true, Ordering::SeqCst);
        let p = std::sync::Arc::clone(&peer);
        let watcher =
            tokio::spawn(async move { monitor(&*p, INTERVAL, 2, "t", &AtomicU64::new(0)).await });
        for _ in 0..600 {
            *peer.heard.lock().unwrap() = Some(Instant::now());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(
            !watcher.is_finished(),
            "declared dead while traffic arrived"
        );
        let last = Instant::now() - Duration::from_millis(100);
        let verdict = watcher.await.unwrap();
        assert!(matches!(verdict, Verdict::Silent { .. }), "{verdict:?}");
        assert_eq!(Instant::now() - last, INTERVAL * 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_closed_session_is_reported_at_the_next_probe() {
        let peer = FakePeer::new(Duration::ZERO);
        peer.closed.store(true, Ordering::SeqCst);
        let start = Instant::now();
        assert_eq!(
            monitor(&peer, INTERVAL, 3, "t", &AtomicU64::new(0)).await,
            Verdict::Closed
        );
        assert_eq!(start.elapsed(), INTERVAL);
    }
}
